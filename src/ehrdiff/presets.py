"""EHRDiff's hyperparameters as one dataclass, and the named presets.

The paper presets hold the values of the official EHRDiff configs (github.com/sczzz3/EHRDiff,
configs/{mimic,cinc,ecg}/train_edm.yaml, arXiv 2303.05656) and EDM (Karras et al. 2022):

                 sigma_data  widths                     noise embedding                    batch
  paper-mimic    0.14        1024-384-384-384-1024      sinusoidal (d features) -> 384     1024
  paper-cinc     0.03        512-768-1024-768-512       32 random Fourier features -> 128  256
  paper-ecg      0.003       512-768-1024-768-512       32 random Fourier features -> 128  256

  all: ln sigma ~ N(-1.2, 1.2^2); AdamW lr 3e-4, no weight decay; 20,000 warm-up steps then cosine decay to 0
  over 5,000 epochs; EMA decay min(0.999, (1+n)/(10+n)); Heun sampler with 32 levels, sigma in [0.02, 80], rho 7.

``default`` (the default) and ``cpu-fast`` are ours: 0/1 columns modelled as Bernoulli probabilities
(ehrdiff.diffusion.bernoulli) by a network of a third of paper-mimic's FLOPs per row (widths 512-256-256-512, 64
sinusoidal features into width 128), at batch 1,024 with lr 1e-3, or, for demos and quick checks on a laptop CPU,
at batch 256 for a short run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ehrdiff.errors import EhrdiffError

PAPER_MIMIC_WIDTHS = (1024, 384, 384, 384, 1024)
PAPER_CINC_WIDTHS = (512, 768, 1024, 768, 512)
SMALL_WIDTHS = (512, 256, 256, 512)       # ours: the default and cpu-fast network

# Settings that change how a run is carried out, not what it computes: a run may resume with other values.
RUNTIME_SETTINGS = ("checkpoint_every", "device", "sample_batch_size")
# Settings read only when sampling: a trained model (or a finished checkpoint) can be sampled with other values.
SAMPLING_SETTINGS = ("sigma_min", "sigma_max", "rho", "num_noise_levels", "final_draw", "min_codes", "codes_per_row",
                     "sampler")


# Settings added after runs were recorded, with the value that does what runs made before they existed did.
ADDED_LATER = {"continuous_scaling": "minmax"}


def without_inert(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` less those of ADDED_LATER at their old behaviour's value: runs recorded before those settings
    existed still match (resume, experiment folders)."""
    return {k: v for k, v in settings.items() if not (k in ADDED_LATER and v == ADDED_LATER[k])}


# Settings with two allowed values (the first one is the paper's).
CHOICES = {"binary_head": ("gaussian", "bernoulli"), "min_codes": ("none", "data"), "codes_per_row": ("model", "data"),
           "sampler": ("heun", "ancestral"), "final_draw": ("round", "sample"), "embedding": ("sinusoidal", "fourier"),
           "continuous_scaling": ("minmax", "quantile")}


@dataclass
class EHRDiffConfig:
    # diffusion (EDM)
    sigma_data: float = 0.14
    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_min: float = 0.02
    sigma_max: float = 80.0
    rho: float = 7.0
    num_noise_levels: int = 32            # Heun sampler: 2 * 32 - 1 = 63 network calls
    # how 0/1 columns are modelled (ours, issue 7; the paper: "gaussian" and "round")
    binary_head: str = "gaussian"         # "gaussian": EDM's D for every column; "bernoulli": D_i = P(x0_i = 1 | x)
    final_draw: str = "round"             # "round": the encoder rounds at 0.5; "sample": draw 0/1 from D(x; sigma_min)
    min_codes: str = "none"               # "data": with final_draw "sample", rows with fewer codes than any training
                                          # row are drawn again from their probabilities; "none": no floor
    codes_per_row: str = "model"          # "data": select sampled rows so that the numbers of codes per row follow
                                          # the training histogram (ehrdiff.diffusion.count_matching); "model": as drawn
    sampler: str = "heun"                 # "heun": deterministic, 2N - 1 calls; "ancestral": stochastic, N calls
    # how continuous columns are put on [0, 1] (ehrdiff.data.encoding): "minmax" (the paper's) or "quantile"
    # (ours: through the training quantiles, so skewed columns are spread evenly: closer continuous marginals, a
    # lower TSTR on CinC 2012, benchmarks/results/cinc_continuous.md; under DP min-max is used, as the quantiles
    # would leak without noise)
    continuous_scaling: str = "minmax"
    # denoiser network
    hidden_dims: tuple[int, ...] = PAPER_MIMIC_WIDTHS
    embedding: str = "sinusoidal"         # "sinusoidal" or "fourier"
    embedding_features: int | None = None  # None: the data width for "sinusoidal" (official), 32 for "fourier"
    embedding_width: int = 384
    # optimisation
    lr: float = 3e-4
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    batch_size: int = 1024
    steps: int | None = None              # None: ``epochs`` passes over the data (official: 5,000)
    epochs: int = 5000
    warmup_steps: int = 20000
    warmup_max_fraction: float = 0.25     # short runs: warm-up is at most this share of all steps
    ema_decay: float = 0.999
    # running
    seed: int = 0
    checkpoint_every: int = 1000
    sample_batch_size: int = 4096
    device: str = "auto"                  # "auto": CUDA when available (under torchrun: the local rank's GPU)
    # conditional generation (ehrdiff.conditioning): a label/categorical column, dropped to "null" this often
    condition: str | None = None
    condition_dropout: float = 0.1
    # differentially private training (ehrdiff.dp): DP-SGD to (dp_epsilon, dp_delta)
    dp: bool = False
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    dp_noise_draws: int = 4
    dp_accountant: str = "rdp"

    def total_steps(self, n_rows: int) -> int:
        """The official code runs ``epochs`` epochs of ``n_rows // batch_size + 1`` batches each."""
        if self.steps is not None:
            return self.steps
        return (n_rows // self.batch_size + 1) * self.epochs

    def effective_warmup(self, total: int) -> int:
        return min(self.warmup_steps, int(self.warmup_max_fraction * total))

    def embedding_size(self, data_width: int) -> int:
        if self.embedding_features is not None:
            return self.embedding_features
        return data_width if self.embedding == "sinusoidal" else 32

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def identity(self) -> dict[str, Any]:
        """The settings that determine the trained weights (compared when a run resumes), less settings added
        later at the value that does what runs without them did (``without_inert``)."""
        return without_inert({k: v for k, v in self.to_dict().items() if k not in RUNTIME_SETTINGS + SAMPLING_SETTINGS})

    def validate(self) -> "EHRDiffConfig":
        positive = ("sigma_data", "P_std", "sigma_min", "sigma_max", "rho", "lr", "adam_eps", "embedding_width",
                    "batch_size", "epochs", "checkpoint_every", "sample_batch_size")
        for name in positive:
            if not getattr(self, name) > 0:
                raise EhrdiffError(f"setting '{name}' must be positive, got {getattr(self, name)!r}")
        if self.steps is not None and self.steps <= 0:
            raise EhrdiffError(f"setting 'steps' must be positive, got {self.steps!r}")
        if self.sigma_min >= self.sigma_max:
            raise EhrdiffError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if self.num_noise_levels < 2:
            raise EhrdiffError(f"setting 'num_noise_levels' must be at least 2, got {self.num_noise_levels}")
        if not self.hidden_dims or any(w <= 0 for w in self.hidden_dims):
            raise EhrdiffError(f"setting 'hidden_dims' must be a list of positive widths, got {list(self.hidden_dims)}")
        for name, (first, second) in CHOICES.items():
            if getattr(self, name) not in (first, second):
                raise EhrdiffError(f"setting '{name}' must be '{first}' or '{second}', got {getattr(self, name)!r}")
        if self.embedding_features is not None and self.embedding_features <= 0:
            raise EhrdiffError(f"setting 'embedding_features' must be positive, got {self.embedding_features}")
        if self.warmup_steps < 0 or not 0 <= self.warmup_max_fraction <= 1:
            raise EhrdiffError("warm-up settings must be >= 0 (warmup_max_fraction between 0 and 1)")
        if self.weight_decay < 0 or not 0 <= self.ema_decay < 1:
            raise EhrdiffError("weight_decay must be >= 0 and ema_decay in [0, 1)")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise EhrdiffError(f"setting 'adam_betas' must be two numbers in [0, 1), got {list(self.adam_betas)}")
        for name in ("sigma_data", "P_mean", "P_std", "lr", "sigma_min", "sigma_max"):
            if not math.isfinite(getattr(self, name)):
                raise EhrdiffError(f"setting '{name}' must be a finite number")
        self._validate_condition_and_dp()
        return self

    def _validate_condition_and_dp(self) -> None:
        if not 0 <= self.condition_dropout < 1:
            raise EhrdiffError(f"setting 'condition_dropout' must be in [0, 1), got {self.condition_dropout}")
        if self.condition is not None and not self.condition:
            raise EhrdiffError("setting 'condition' must name a column")
        if not self.dp:
            changed = [f for f in ("dp_epsilon", "dp_delta", "dp_max_grad_norm", "dp_noise_draws", "dp_accountant")
                       if getattr(self, f) != getattr(EHRDiffConfig, f)]
            if changed:
                raise EhrdiffError(f"setting '{changed[0]}' needs DP training: add --dp (or dp=True)")
            return
        if self.dp_epsilon is None:
            raise EhrdiffError("DP training needs a target epsilon: give --epsilon E (or dp_epsilon=E)")
        from ehrdiff.dp import PrivacySettings
        PrivacySettings(self.dp_epsilon, self.dp_delta, self.dp_max_grad_norm, self.dp_noise_draws,
                        self.dp_accountant).validate()


PRESETS: dict[str, dict[str, Any]] = {
    # ours, the default model (issue 7, docs/results.md): 0/1 columns modelled as Bernoulli probabilities
    # (ehrdiff.diffusion.bernoulli) and drawn at the end instead of rounded; codes per row matched to the training
    # histogram (ehrdiff.diffusion.count_matching); 16 noise levels down to 0.1 (31 network calls instead of 63: the
    # same quality in the ablation). The network is cpu-fast's, a third of paper-mimic's FLOPs per row, trained at
    # lr 1e-3: the co-occurrence structure is learned by the number of optimiser steps, so three times the steps in
    # the same compute learn it far better (UCI diabetes: dim-wise gap 0.02 at 15,000 steps against 0.10 for the
    # paper network at 5,000)
    "default": dict(binary_head="bernoulli", final_draw="sample", min_codes="data", codes_per_row="data",
                    num_noise_levels=16, sigma_min=0.1, hidden_dims=SMALL_WIDTHS, embedding_features=64,
                    embedding_width=128, lr=1e-3),
    "paper-mimic": {},
    "paper-cinc": dict(sigma_data=0.03, hidden_dims=PAPER_CINC_WIDTHS, embedding="fourier", embedding_features=32,
                       embedding_width=128, batch_size=256),
    "paper-ecg": dict(sigma_data=0.003, hidden_dims=PAPER_CINC_WIDTHS, embedding="fourier", embedding_features=32,
                      embedding_width=128, batch_size=256),
    # ours: the default model with about 60x fewer FLOPs per row than paper-mimic at d = 900; a few thousand steps
    # learn code prevalences and co-occurrence of small data sets in a minute or two on two CPU cores
    "cpu-fast": dict(binary_head="bernoulli", final_draw="sample", min_codes="data", codes_per_row="data",
                     hidden_dims=SMALL_WIDTHS, embedding_features=64, embedding_width=128, batch_size=256,
                     steps=3000, warmup_steps=100, lr=1e-3, checkpoint_every=500),
}


def _coerce(name: str, value: Any, default: Any, annotation: str) -> Any:
    """Convert values that came through JSON or the command line to the field's type, or raise EhrdiffError."""
    bad = EhrdiffError(f"setting '{name}' has the wrong type: got {value!r}, expected {annotation}")
    if value is None:
        if "None" in annotation:
            return None
        raise bad
    if annotation.startswith("tuple"):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise bad
        items = list(value)
        kind = float if "float" in annotation else int
        return tuple(_coerce(name, v, kind(0), kind.__name__) for v in items)
    if isinstance(default, bool) or annotation == "bool":
        if isinstance(value, bool):
            return value
        raise bad
    if annotation.startswith("int") or (isinstance(default, int) and not isinstance(default, bool)):
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if annotation.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if annotation.startswith("str"):
        if not isinstance(value, str):
            raise bad
        return value
    return value


def make_config(preset: str = "paper-mimic", **overrides: Any) -> EHRDiffConfig:
    """The named preset with ``overrides`` applied, type-checked and validated (EhrdiffError on any problem)."""
    if preset not in PRESETS:
        raise EhrdiffError(f"unknown preset '{preset}' (choose one of {', '.join(PRESETS)})")
    return config_from_dict({**PRESETS[preset], **overrides})


def config_from_dict(values: dict[str, Any]) -> EHRDiffConfig:
    fields = {f.name: f for f in dataclasses.fields(EHRDiffConfig)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise EhrdiffError(f"unknown EHRDiff setting '{unknown[0]}' (known settings: {', '.join(fields)})")
    base = EHRDiffConfig()
    kwargs = {k: _coerce(k, v, getattr(base, k), str(fields[k].type)) for k, v in values.items()}
    return EHRDiffConfig(**kwargs).validate()


__all__ = ["EHRDiffConfig", "PRESETS", "RUNTIME_SETTINGS", "config_from_dict", "make_config"]
