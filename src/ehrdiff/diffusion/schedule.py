"""Noise levels for sampling (Karras et al. 2022, eq. 5):

    sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,  i = 0..N-1,  sigma_N = 0

EHRDiff uses N = 32, sigma_min = 0.02, sigma_max = 80, rho = 7 (official configs, ``sampler`` section).
"""

from __future__ import annotations

import torch


def karras_sigmas(num_steps: int = 32, sigma_min: float = 0.02, sigma_max: float = 80.0, rho: float = 7.0,
                  dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
    """The ``num_steps`` decreasing noise levels followed by a final 0 (length ``num_steps + 1``)."""
    if num_steps < 2:
        raise ValueError(f"num_steps must be at least 2, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    i = torch.arange(num_steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + i / (num_steps - 1) * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype=dtype, device=device)
