"""EHRDiff's settings, in small sections: diffusion, network, optimisation, sampling, running, conditioning, privacy.

Each setting has one flat name, unique over the sections, which is what users write (``EHRDiff(lr=1e-4)``,
``--set lr=1e-4``) and what model.json stores; ``config.lr`` reads it from its section (``config.optimisation.lr``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ehrdiff.diffusion.sampler import SAMPLERS
from ehrdiff.errors import EhrdiffError
from ehrdiff.settings import check_seed, coerce

PAPER_MIMIC_WIDTHS = (1024, 384, 384, 384, 1024)

# Settings that change how a run is carried out, not what it computes: a run may resume with other values.
RUNTIME_SETTINGS = ("checkpoint_every", "device", "sample_batch_size")
# Settings added after runs were recorded, with the value that does what runs made before they existed did.
ADDED_LATER = {"continuous_scaling": "minmax", "dp_bounds": None, "missing_values": "fill",
               "categorical_head": "independent", "normal_sigma_data": None, "missing_indicators": "per_column",
               "dp_marginals_share": 0.05, "order_encoding": "values", "continuous_marginals": "model",
               "dp_pairs_share": 0.0, "dp_prior_share": 0.0, "dp_tree_share": 0.0,
               "dp_tail_floor": 0.0}
# values earlier versions recorded for a DP-only setting as its default (kept in every run's model.json): in a run
# without DP they are no request for DP, so its model still loads
PAST_DP_DEFAULTS = {"dp_marginals_share": (0.5,)}
DP_ACCOUNTANTS = ("rdp", "prv")


def _positive(section: Any, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if not value > 0:
            raise EhrdiffError(f"setting '{name}' must be positive, got {value!r}")


def _finite(section: Any, *names: str) -> None:
    for name in names:
        if not math.isfinite(getattr(section, name)):
            raise EhrdiffError(f"setting '{name}' must be a finite number")


def _one_of(section: Any, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(section, name) not in allowed:
        choices = " or ".join(f"'{a}'" for a in allowed)
        raise EhrdiffError(f"setting '{name}' must be {choices}, got {getattr(section, name)!r}")


@dataclass
class DiffusionSettings:
    """EDM's noise distribution and preconditioning, and how columns are put in the diffused space."""

    sigma_data: float = 0.14
    P_mean: float = -1.2
    P_std: float = 1.2
    binary_head: str = "gaussian"         # "gaussian": EDM's D for every column (the paper); "bernoulli": D_i is
                                          # P(x0_i = 1 | x) (ehrdiff.diffusion.bernoulli)
    continuous_scaling: str = "minmax"  # "minmax" (the paper's), "quantile" (through the training quantiles) or
                                        # "normal" (quantiles on to a standard normal, dequantised in training)
    missing_values: str = "fill"        # "fill": a missing value is the training median's (the paper's); "noise":
                                        # fresh noise each step, left out of the loss (diffusion/refresh.py)
    missing_indicators: str = "per_column"  # "per_column": each continuous column with missing values has its own
                                           # indicator; "shared": columns missing in the same training rows share one;
                                           # "panels": shared, and indicators that nearly always agree modelled as
                                           # disagreements with a leader's (diffusion/panels.py; not under DP)
    categorical_head: str = "independent"  # "independent": a one-hot block's columns as the binary ones;
                                           # "softmax": one categorical variable (Bernoulli head only)
    normal_sigma_data: float | None = None  # sigma_data of columns scaled to a normal (None: sigma_data;
                                            # Bernoulli head only)
    order_encoding: str = "values"      # "values": a declared order's columns as they are (the sampler keeps it);
                                        # "chains": lo <= x <= hi as lo, spread hi - lo, positions (data/chains.py)

    def validate(self) -> None:
        _positive(self, "sigma_data", "P_std")
        _finite(self, "sigma_data", "P_mean", "P_std")
        _one_of(self, "binary_head", ("gaussian", "bernoulli"))
        _one_of(self, "continuous_scaling", ("minmax", "quantile", "normal"))
        _one_of(self, "missing_values", ("fill", "noise"))
        _one_of(self, "missing_indicators", ("per_column", "shared", "panels"))
        _one_of(self, "categorical_head", ("independent", "softmax"))
        _one_of(self, "order_encoding", ("values", "chains"))
        if self.normal_sigma_data is not None:
            _positive(self, "normal_sigma_data")
            _finite(self, "normal_sigma_data")


@dataclass
class NetworkSettings:
    """The denoiser MLP F and its noise-level embedding."""

    hidden_dims: tuple[int, ...] = PAPER_MIMIC_WIDTHS
    embedding: str = "sinusoidal"         # "sinusoidal" or "fourier"
    embedding_features: int | None = None  # None: the data width for "sinusoidal" (official), 32 for "fourier"
    embedding_width: int = 384

    def embedding_size(self, data_width: int) -> int:
        if self.embedding_features is not None:
            return self.embedding_features
        return data_width if self.embedding == "sinusoidal" else 32

    def validate(self) -> None:
        _positive(self, "embedding_width")
        if not self.hidden_dims or any(w <= 0 for w in self.hidden_dims):
            raise EhrdiffError(f"setting 'hidden_dims' must be a list of positive widths, got {list(self.hidden_dims)}")
        _one_of(self, "embedding", ("sinusoidal", "fourier"))
        if self.embedding_features is not None and self.embedding_features <= 0:
            raise EhrdiffError(f"setting 'embedding_features' must be positive, got {self.embedding_features}")


@dataclass
class OptimisationSettings:
    """AdamW, the batch, the length of training and its schedule, the EMA."""

    lr: float = 3e-4
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    batch_size: int = 1024
    steps: int | None = None              # None: a budget derived from the data (budget.py), or the official
    epochs: int = 5000                    # schedule of ``epochs`` passes when epochs is given
    warmup_steps: int = 20000
    warmup_max_fraction: float = 0.25     # short runs: warm-up is at most this share of all steps
    ema_decay: float = 0.999

    def total_steps(self, n_rows: int) -> int:
        """``steps``, or the official code's ``epochs`` epochs of ``n_rows // batch_size + 1`` batches each."""
        if self.steps is not None:
            return self.steps
        return (n_rows // self.batch_size + 1) * self.epochs

    def effective_warmup(self, total: int) -> int:
        return min(self.warmup_steps, int(self.warmup_max_fraction * total))

    def validate(self) -> None:
        _positive(self, "lr", "adam_eps", "batch_size", "epochs")
        _finite(self, "lr")
        if self.steps is not None and self.steps <= 0:
            raise EhrdiffError(f"setting 'steps' must be positive, got {self.steps!r}")
        if self.warmup_steps < 0 or not 0 <= self.warmup_max_fraction <= 1:
            raise EhrdiffError("warm-up settings must be >= 0 (warmup_max_fraction between 0 and 1)")
        if self.weight_decay < 0 or not 0 <= self.ema_decay < 1:
            raise EhrdiffError("weight_decay must be >= 0 and ema_decay in [0, 1)")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise EhrdiffError(f"setting 'adam_betas' must be two numbers in [0, 1), got {list(self.adam_betas)}")


@dataclass
class SamplingSettings:
    """Read only when sampling: a trained model can be sampled with other values."""

    sigma_min: float = 0.02
    sigma_max: float = 80.0
    rho: float = 7.0
    num_noise_levels: int = 32            # Heun sampler: 2 * 32 - 1 = 63 network calls
    sampler: str = "heun"                 # a name in ehrdiff.diffusion.SAMPLERS
    final_draw: str = "round"             # "round": the encoder rounds at 0.5; "sample": draw 0/1 from D(x; sigma_min)
    min_codes: str = "none"               # "data": with final_draw "sample", rows with fewer codes than any training
                                          # row are drawn again from their probabilities; "none": no floor
    codes_per_row: str = "model"          # "data": select sampled rows so that the numbers of codes per row follow
                                          # the training histogram (ehrdiff.diffusion.count_matching)
    code_prevalence: str = "auto"         # "data": codes swapped inside rows until each code's synthetic prevalence
                                          # is the one the model keeps (noisy under DP; ehrdiff.diffusion.calibration);
                                          # "model": as sampled; "auto": "data" for a private model or one
                                          # trained on under 1,000 rows (calibrate.py), else "model"
    continuous_marginals: str = "auto"    # "data": each continuous column's sampled values put, in their own order,
                                          # on evenly spread levels of the distribution the model keeps (training
                                          # quantiles; the noisy histogram's under DP: calibrate.py); "model": as
                                          # sampled; "auto": "data" where the columns are quantile-scaled (the
                                          # default preset, any private model), else "model"
    row_selection: str = "none"           # "discriminator": rows drawn from a pool 4 times larger, each kept with the
                                          # odds a classifier fitted at training gives it of being real (selection.py;
                                          # tables of 1,000 rows or more without code columns, no condition, no
                                          # DP); "none": as sampled

    def validate(self) -> None:
        _positive(self, "sigma_min", "sigma_max", "rho")
        _finite(self, "sigma_min", "sigma_max")
        if self.sigma_min >= self.sigma_max:
            raise EhrdiffError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if self.num_noise_levels < 2:
            raise EhrdiffError(f"setting 'num_noise_levels' must be at least 2, got {self.num_noise_levels}")
        _one_of(self, "sampler", tuple(SAMPLERS))
        _one_of(self, "final_draw", ("round", "sample"))
        _one_of(self, "min_codes", ("none", "data"))
        _one_of(self, "codes_per_row", ("model", "data"))
        _one_of(self, "code_prevalence", ("auto", "model", "data"))
        _one_of(self, "continuous_marginals", ("auto", "model", "data"))
        _one_of(self, "row_selection", ("none", "discriminator"))


@dataclass
class RunSettings:
    seed: int = 0
    checkpoint_every: int = 1000
    sample_batch_size: int = 4096
    device: str = "auto"                  # "auto": CUDA when available (under torchrun: the local rank's GPU)

    def validate(self) -> None:
        _positive(self, "checkpoint_every", "sample_batch_size")
        check_seed(self.seed, "setting 'seed'")


@dataclass
class ConditionSettings:
    """Conditional generation (``conditioning.py``): a label or categorical column, dropped to "null" this often."""

    condition: str | None = None
    condition_dropout: float = 0.1

    def validate(self) -> None:
        if not 0 <= self.condition_dropout < 1:
            raise EhrdiffError(f"setting 'condition_dropout' must be in [0, 1), got {self.condition_dropout}")
        if self.condition is not None and not self.condition:
            raise EhrdiffError("setting 'condition' must name a column")


@dataclass
class PrivacySettings:
    """Differentially private training (``private.py``): DP-SGD to (dp_epsilon, dp_delta)."""

    dp: bool = False
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0         # C: per-example clipping bound
    dp_noise_draws: int = 4               # K: (sigma, noise) draws averaged per example before clipping
    dp_accountant: str = "rdp"            # an Opacus accountant: "rdp" or "prv"
    dp_bounds: str | None = None          # public column ranges and categories (JSON; ehrdiff.privacy.declared)
    dp_marginals_share: float = 0.85      # share of epsilon (alone) for the noisy one-way marginals (private_release)
    dp_pairs_share: float = 0.3           # share of epsilon (alone) for the noisy pair counts of the commonest codes
                                          # (private_release; 0: none released, none met at sampling)
    dp_prior_share: float = 0.3           # ... for the second moments of the normal-scaled continuous columns, the
                                          # Gaussian prior's (private_release; 0: none released, no prior)
    dp_tree_share: float = 0.1            # ... for the noisy counts of rows measuring each pair of variables, the
                                          # measuring tree's (patterns.py; 0: none released, patterns as drawn)
    dp_tail_floor: float = 0.0            # noise deviations of each class's counts put back in every bin a
                                          # continuous column's support cleared (privacy/release.py; no budget)

    def validate(self) -> None:
        if not self.dp:
            # a value an old run records for a setting added later (ADDED_LATER), or an old default, is no request
            # for DP either
            changed = [f.name for f in dataclasses.fields(self) if f.name != "dp" and getattr(self, f.name) not in
                       (f.default, ADDED_LATER.get(f.name, f.default), *PAST_DP_DEFAULTS.get(f.name, ()))]
            if changed:
                raise EhrdiffError(f"setting '{changed[0]}' needs DP training: add --dp (or dp=True)")
            return
        if self.dp_epsilon is None:
            raise EhrdiffError("DP training needs a target epsilon: give --epsilon E (or dp_epsilon=E)")
        if not (math.isfinite(self.dp_epsilon) and self.dp_epsilon > 0):
            raise EhrdiffError(f"DP epsilon must be a positive number, got {self.dp_epsilon!r}")
        if not 0 < self.dp_delta < 1:
            raise EhrdiffError(f"DP delta must be between 0 and 1 (e.g. 1e-5), got {self.dp_delta!r}")
        if not (math.isfinite(self.dp_max_grad_norm) and self.dp_max_grad_norm > 0):
            raise EhrdiffError(f"max_grad_norm must be positive, got {self.dp_max_grad_norm!r}")
        if self.dp_noise_draws < 1:
            raise EhrdiffError(f"noise draws per example must be at least 1, got {self.dp_noise_draws!r}")
        if self.dp_accountant not in DP_ACCOUNTANTS:
            raise EhrdiffError(f"unknown DP accountant '{self.dp_accountant}' (use rdp or prv)")
        if not 0 < self.dp_marginals_share < 0.9:
            raise EhrdiffError(f"dp_marginals_share must be above 0 and below 0.9 (DP-SGD needs the rest), got "
                               f"{self.dp_marginals_share!r}")
        if not 0 <= self.dp_tail_floor <= 1:
            raise EhrdiffError(f"dp_tail_floor must be between 0 and 1 (noise deviations per bin), got "
                               f"{self.dp_tail_floor!r}")
        for name in ("dp_pairs_share", "dp_prior_share", "dp_tree_share"):
            if not 0 <= getattr(self, name) < 0.9:
                raise EhrdiffError(f"{name} must be at least 0 and below 0.9 (DP-SGD needs the rest), got "
                                   f"{getattr(self, name)!r}")


SECTIONS = {"diffusion": DiffusionSettings, "network": NetworkSettings, "optimisation": OptimisationSettings,
            "sampling": SamplingSettings, "running": RunSettings, "conditioning": ConditionSettings,
            "privacy": PrivacySettings}
SECTION_OF = {f.name: section for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
SAMPLING_SETTINGS = tuple(f.name for f in dataclasses.fields(SamplingSettings))


@dataclass
class EHRDiffConfig:
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    optimisation: OptimisationSettings = field(default_factory=OptimisationSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    running: RunSettings = field(default_factory=RunSettings)
    conditioning: ConditionSettings = field(default_factory=ConditionSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)

    def __getattr__(self, name: str) -> Any:
        """A setting (or a section's method) by its flat name: ``config.lr`` is ``config.optimisation.lr``."""
        section = SECTION_OF.get(name) or next((s for s, cls in SECTIONS.items() if hasattr(cls, name)), None)
        if section is None or name.startswith("_") or section not in self.__dict__:
            raise AttributeError(f"EHRDiffConfig has no setting '{name}'")
        return getattr(self.__dict__[section], name)

    def __setattr__(self, name: str, value: Any) -> None:
        """``config.lr = x`` sets ``config.optimisation.lr`` (unchecked: ``validate`` checks)."""
        if name in SECTION_OF:
            setattr(getattr(self, SECTION_OF[name]), name, value)
        else:
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its flat name (what model.json stores)."""
        flat: dict[str, Any] = {}
        for section in SECTIONS:
            for k, v in dataclasses.asdict(getattr(self, section)).items():
                flat[k] = list(v) if isinstance(v, tuple) else v
        return flat

    def identity(self) -> dict[str, Any]:
        """The settings that determine the trained weights (compared when a run resumes), less settings added
        later at the value that does what runs without them did."""
        return without_inert({k: v for k, v in self.to_dict().items()
                              if k not in RUNTIME_SETTINGS + SAMPLING_SETTINGS})

    def validate(self) -> "EHRDiffConfig":
        for section in SECTIONS:
            getattr(self, section).validate()
        return self


def without_inert(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` less those of ADDED_LATER at their old behaviour's value: runs recorded before those settings
    existed still match (resume, experiment folders)."""
    return {k: v for k, v in settings.items() if not (k in ADDED_LATER and v == ADDED_LATER[k])}


def config_from_dict(values: dict[str, Any]) -> EHRDiffConfig:
    """A validated config from flat settings (type-checked; EhrdiffError naming an unknown or bad setting)."""
    unknown = sorted(set(values) - set(SECTION_OF))
    if unknown:
        raise EhrdiffError(f"unknown EHRDiff setting '{unknown[0]}' (known settings: {', '.join(SECTION_OF)})")
    grouped: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for name, value in values.items():
        section = SECTION_OF[name]
        kind = {f.name: str(f.type) for f in dataclasses.fields(SECTIONS[section])}[name]
        grouped[section][name] = coerce(name, value, kind)
    return EHRDiffConfig(**{s: SECTIONS[s](**v) for s, v in grouped.items()}).validate()


__all__ = ["ADDED_LATER", "RUNTIME_SETTINGS", "SAMPLING_SETTINGS", "SECTIONS", "ConditionSettings",
           "DiffusionSettings", "EHRDiffConfig", "NetworkSettings", "OptimisationSettings", "PrivacySettings",
           "RunSettings", "SamplingSettings", "config_from_dict", "without_inert"]
