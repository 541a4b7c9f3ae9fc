"""Settings of one evaluation: sample caps (for speed on large tables), metric parameters, compute device."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ehrdiff.errors import DataError


@dataclass(frozen=True)
class EvaluationConfig:
    # fidelity
    # training prevalence: rare < 0.1% <= medium < 1% <= common
    prevalence_buckets: tuple[float, float] = (0.001, 0.01)
    correlation_max_columns: int = 2000   # correlation / co-occurrence use the commonest columns up to this many
    discriminator_max_rows: int = 4000    # rows per class (real, synthetic) in the discriminator's sample
    discriminator_folds: int = 3
    discriminator_iterations: int = 100   # boosting rounds
    dimwise_codes: int = 50               # dimension-wise prediction on the K commonest codes (medGAN, EHRDiff)
    dimwise_max_rows: int = 20_000        # training rows per set of K models
    dimwise_iterations: int = 50          # L-BFGS iterations of the K models fitted together
    # utility
    utility_model: str = "logistic"       # "logistic" (L2, C=1) or "gbt" (HistGradientBoosting)
    utility_max_rows: int = 100_000
    # privacy
    mia_max_rows: int = 10_000            # members and non-members, each (balanced)
    nnaa_max_rows: int = 5_000            # rows per set (training, test, synthetic), equal sizes as in Yale et al.
    nnaa_draws: int = 5                   # NNAA averaged over this many independent samples of those rows
    aia_max_rows: int = 5_000             # attacked training records and test records, each
    aia_known_codes: int = 256            # the attacker knows this many commonest codes (at most half the codes)
    aia_neighbours: int = 1               # k nearest synthetic records vote on each unknown code
    # computation
    dense_columns: int = 64               # commonest 0/1 columns multiplied densely, the rest as sparse
    block_elements: int = 16_000_000      # distance-block size (floats) for nearest neighbours
    device: str = "cpu"                   # torch device for nearest neighbours ("cuda" when available)
    threads: int | None = None            # CPU threads for torch, BLAS and OpenMP (None: the libraries' defaults;
                                          # 1 avoids OpenMP's busy-waiting on a machine shared with other jobs)
    figures: bool = True
    # confidence intervals (bootstrap.py): 0 = none; else this many resamples and an interval at this level
    bootstrap: int = 0
    confidence: float = 0.95

    def with_options(self, **options) -> "EvaluationConfig":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DataError(f"unknown evaluation option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        config = replace(self, **options)
        config.check()
        return config

    def check(self) -> None:
        low, high = self.prevalence_buckets
        if not 0 < low < high < 1:
            raise DataError("prevalence_buckets must be two increasing numbers between 0 and 1, "
                            f"got {self.prevalence_buckets}")
        if self.utility_model not in ("logistic", "gbt"):
            raise DataError(f"utility_model must be 'logistic' or 'gbt', got {self.utility_model!r}")
        for name in ("dimwise_codes", "mia_max_rows", "nnaa_max_rows", "nnaa_draws", "aia_max_rows", "aia_known_codes",
                     "aia_neighbours", "discriminator_max_rows", "discriminator_folds", "discriminator_iterations",
                     "dimwise_max_rows", "dimwise_iterations", "utility_max_rows", "correlation_max_columns",
                     "block_elements", "dense_columns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"evaluation option {name} must be a positive whole number, got {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise DataError(f"evaluation option threads must be a positive whole number or None, got {self.threads!r}")
        if self.discriminator_folds < 2:
            raise DataError("discriminator_folds must be at least 2")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise DataError(f"evaluation option bootstrap must be a whole number of resamples (0: no intervals), "
                            f"got {self.bootstrap!r}")
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) \
                or not 0 < self.confidence < 1:
            raise DataError(f"evaluation option confidence must be a level between 0 and 1 (e.g. 0.95), "
                            f"got {self.confidence!r}")
