"""``dp-marginals``: the private baseline every private generator must beat. Every column is drawn independently
from its noisy one-way histogram (ehrdiff.privacy.release: Gaussian noise, the ranges and categories declared or
estimated privately), so the whole model is an (epsilon, delta) release of the training rows and nothing between
columns is kept. The private counterpart of the ``marginals`` reference (models/reference.py).

    ehrdiff train data.parquet -o run/ --model dp-marginals --dp --epsilon 1 --delta 1e-5 [--bounds FILE]
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from ehrdiff.data.table import Table
from ehrdiff.models.base import as_table, check_sample_size, register
from ehrdiff.models.noisy_release import NoisyRelease, check_release_settings
from ehrdiff.privacy.accounting import Ledger
from ehrdiff.privacy.declared import read_declarations
from ehrdiff.privacy.release import BINS, ColumnMarginal, point_in_bin, private_encoder
from ehrdiff.privacy.secret import noise_seed

log = logging.getLogger(__name__)


@dataclass
class DPMarginalsConfig:
    dp: bool = True                  # always private; accepted so that ``--dp`` works as for EHRDiff
    dp_epsilon: float = 1.0          # target epsilon of the whole release
    dp_delta: float = 1e-5
    dp_accountant: str = "rdp"       # Opacus accountant composing the mechanisms: "rdp" or "prv"
    dp_bounds: str | None = None     # public ranges and categories (JSON, ehrdiff.privacy.declared)
    bounds_share: float = 0.1        # share of epsilon for ranges estimated privately (when any is not declared)
    seed: int = 0                    # not the noise's: the release draws from a secret seed (ehrdiff.privacy.secret);
                                     # kept as every model's setting

    def validate(self) -> None:
        check_release_settings(self, "dp-marginals", 1.0)


@register("dp-marginals")
class DPMarginals(NoisyRelease):
    """Independent columns from noisy one-way counts, an (epsilon, delta)-DP release (see the module docstring)."""

    config_class = DPMarginalsConfig

    def fit(self, data, *, checkpoint_dir=None, resume=False, progress=True) -> "DPMarginals":
        cfg = self.config
        table = as_table(data)
        declarations = read_declarations(cfg.dp_bounds, table)
        ledger = Ledger(cfg.dp_epsilon, cfg.dp_delta, cfg.dp_accountant)
        release = private_encoder(table, ledger, declarations, cfg.bounds_share, None, noise_seed())   # secret.py
        self.keep_release(release, table)
        self.marginals_ = release.marginals
        log.info("dp-marginals: epsilon %.4g, delta %.3g spent (target %g, %g)", self.release_["epsilon"],
                 self.release_["delta"], cfg.dp_epsilon, cfg.dp_delta)
        return self

    def sample_table(self, n: int, seed: int = 0, **kwargs) -> Table:
        n = check_sample_size(n)
        self.check_fitted()
        rng = np.random.default_rng(seed)
        columns = []
        for c in self.encoder_.codings_:
            if c.coding == "id":
                continue
            m = self.marginals_[c.name]
            if c.coding == "binary":
                p = _shares(m.counts)[[v for v in m.cells].index(1)]
                columns.append((rng.random(n) < p).astype(np.float64)[:, None])
            elif c.coding == "onehot":
                picked = rng.choice(len(m.cells), size=n, p=_shares(m.counts))
                columns.append(np.eye(len(m.cells))[picked])
            else:       # a bin of the range (or missing), then a uniform point inside the bin
                counts = m.counts if c.has_missing else m.counts[:-1]
                picked = rng.choice(len(counts), size=n, p=_shares(counts))
                missing = picked == BINS
                value = np.where(missing, c.fill, point_in_bin(c, np.minimum(picked, BINS - 1), rng.random(n)))
                columns.append(np.column_stack([value, missing.astype(float)]) if c.has_missing else value[:, None])
        return self.encoder_.inverse_transform(np.hstack(columns))

    def save(self, path: str | os.PathLike) -> None:
        self.check_fitted()
        marginals = {name: {"cells": m.cells, "counts": m.counts.tolist()} for name, m in self.marginals_.items()}
        self.save_release(path, {"marginals": marginals})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DPMarginals":
        model, metadata = cls.load_release(path)
        stored = metadata.typed("marginals", dict, "an object of noisy histograms")
        model.marginals_ = {}
        for c in model.encoder_.codings_:
            if c.coding == "id":
                continue
            entry = stored.get(c.name)
            expected = {"binary": 2, "onehot": c.width, "continuous": BINS + 1}[c.coding]
            if not (isinstance(entry, dict) and isinstance(entry.get("cells"), list)
                    and isinstance(entry.get("counts"), list) and len(entry["cells"]) == len(entry["counts"])
                    == expected and all(isinstance(v, (int, float)) and v >= 0 for v in entry["counts"])):
                raise metadata.invalid("marginals", f"{expected} noisy counts for column '{c.name}'", entry)
            model.marginals_[c.name] = ColumnMarginal(entry["cells"], np.asarray(entry["counts"], dtype=float))
        return model


def _shares(counts: np.ndarray) -> np.ndarray:
    """Noisy counts as probabilities (uniform when the noise left nothing)."""
    total = counts.sum()
    return counts / total if total > 0 else np.full(len(counts), 1 / len(counts))


__all__ = ["DPMarginals", "DPMarginalsConfig"]
