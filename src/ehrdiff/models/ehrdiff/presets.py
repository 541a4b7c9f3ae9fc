"""EHRDiff's named presets: the paper's configurations and ours.

The paper presets hold the values of the official EHRDiff configs (github.com/sczzz3/EHRDiff,
configs/{mimic,cinc,ecg}/train_edm.yaml, arXiv 2303.05656) and EDM (Karras et al. 2022):

                 sigma_data  widths                     noise embedding                    batch
  paper-mimic    0.14        1024-384-384-384-1024      sinusoidal (d features) -> 384     1024
  paper-cinc     0.03        512-768-1024-768-512       32 random Fourier features -> 128  256
  paper-ecg      0.003       512-768-1024-768-512       32 random Fourier features -> 128  256

  all: ln sigma ~ N(-1.2, 1.2^2); AdamW lr 3e-4, no weight decay; 20,000 warm-up steps then cosine decay to 0
  over 5,000 epochs; EMA decay min(0.999, (1+n)/(10+n)); Heun sampler with 32 levels, sigma in [0.02, 80], rho 7.

``default`` (the default) and ``cpu-fast`` are ours: 0/1 columns modelled as Bernoulli probabilities
(ehrdiff.diffusion.bernoulli) and drawn at the end, codes per row matched to the training histogram
(ehrdiff.diffusion.count_matching), by a network of a third of paper-mimic's FLOPs per row (widths 512-256-256-512,
64 sinusoidal features into width 128) at lr 1e-3: in the same compute it takes three times the optimiser steps,
and the co-occurrence structure is learned by the number of steps (docs/results.md). Continuous columns go through
their training quantiles to a standard normal, missing values are fresh noise out of the loss with one indicator per
set of columns missing together, categorical columns are softmax variables, and sampled values are calibrated to
the training quantiles and made to keep the declared rules (calibrate.py; encoding an order lo <= x <= hi as lo, the
spread and x's position, ``order_encoding="chains"``, is an option; issue 20, benchmarks/results/cinc_icu.md; EDM's
sigma_data of 1 for the normal-scaled columns, ``normal_sigma_data``, cost TSTR there and is not the default).
On a table without code columns the sample is chosen from a draw four times larger by a discriminator fitted at
the end of training (``row_selection``, selection.py). ``default`` samples 16 noise levels down to 0.1 (31 network
calls instead of 63) at batch 1,024 (the data's budget may choose a smaller one: budget.py); ``cpu-fast`` is the
same model at batch 256 for a short run, for demos and quick checks on a laptop CPU.

A preset without ``steps`` (all but ``cpu-fast``) trains for the budget derived from the data, with the held-out
stopping rule (budget.py); ``epochs=5000`` asks for the official schedule instead.
"""

from __future__ import annotations

from typing import Any

from ehrdiff.errors import EhrdiffError
from ehrdiff.models.ehrdiff.config import EHRDiffConfig, config_from_dict

PAPER_CINC_WIDTHS = (512, 768, 1024, 768, 512)
SMALL_WIDTHS = (512, 256, 256, 512)       # ours: the default and cpu-fast network

_OURS = dict(binary_head="bernoulli", final_draw="sample", min_codes="data", codes_per_row="data",
             hidden_dims=SMALL_WIDTHS, embedding_features=64, embedding_width=128, lr=1e-3,
             continuous_scaling="normal", missing_values="noise", missing_indicators="panels",
             categorical_head="softmax", row_selection="discriminator")

PRESETS: dict[str, dict[str, Any]] = {
    "default": dict(_OURS, num_noise_levels=16, sigma_min=0.1),
    "paper-mimic": {},
    "paper-cinc": dict(sigma_data=0.03, hidden_dims=PAPER_CINC_WIDTHS, embedding="fourier", embedding_features=32,
                       embedding_width=128, batch_size=256),
    "paper-ecg": dict(sigma_data=0.003, hidden_dims=PAPER_CINC_WIDTHS, embedding="fourier", embedding_features=32,
                      embedding_width=128, batch_size=256),
    "cpu-fast": dict(_OURS, batch_size=256, steps=3000, warmup_steps=100, checkpoint_every=500),
}


def make_config(preset: str = "paper-mimic", **overrides: Any) -> EHRDiffConfig:
    """The named preset with ``overrides`` applied, type-checked and validated (EhrdiffError on any problem)."""
    if preset not in PRESETS:
        raise EhrdiffError(f"unknown preset '{preset}' (choose one of {', '.join(PRESETS)})")
    return config_from_dict({**PRESETS[preset], **overrides})


__all__ = ["PRESETS", "make_config"]
