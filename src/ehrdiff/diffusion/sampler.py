"""Samplers: each one function ``sampler(denoise, x, sigmas, generator)`` that integrates from ``x`` (already scaled
to noise level ``sigmas[0]``) through the levels ``sigmas`` (ending in 0), registered by name with ``@sampler``.

heun       the deterministic Heun sampler of the paper (Karras et al. 2022, Algorithm 1 with S_churn = 0): the
           probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma integrated with Heun's second-order method,
           the step into sigma = 0 a plain Euler step; N noise levels cost 2N - 1 denoiser calls.
ancestral  stochastic, one denoiser call per level (ours).

``denoise(x, sigma)`` gets a 0-d tensor ``sigma`` of ``x``'s dtype and returns D(x; sigma). A new sampler is one
function here with ``@sampler("name")`` above it; the model's ``sampler`` setting then accepts its name.
"""

from __future__ import annotations

from typing import Callable

import torch

DenoiserFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SamplerFn = Callable[[DenoiserFn, torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]

SAMPLERS: dict[str, SamplerFn] = {}


def sampler(name: str):
    """Register a sampler function under ``name``."""

    def wrap(fn: SamplerFn) -> SamplerFn:
        SAMPLERS[name] = fn
        return fn

    return wrap


@sampler("heun")
@torch.no_grad()
def heun_sampler(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The deterministic Heun sampler (``generator`` is not used: nothing is drawn)."""
    levels = sigmas.tolist()                                      # host floats: no device syncs in the loop
    sigmas = sigmas.to(dtype=x.dtype, device=x.device)
    for i in range(len(levels) - 1):
        t_cur, t_next, h = levels[i], levels[i + 1], levels[i + 1] - levels[i]
        d_cur = torch.sub(x, denoiser(x, sigmas[i])).div_(t_cur)          # dx/dsigma at t_cur
        x_next = torch.add(x, d_cur, alpha=h)                               # Euler step
        if t_next > 0:                                                      # second-order correction (not into 0)
            d_next = torch.sub(x_next, denoiser(x_next, sigmas[i + 1])).div_(t_next)
            x_next = torch.add(x, d_cur.add_(d_next), alpha=0.5 * h)        # x + h (d_cur + d_next) / 2
        x = x_next
    return x


@sampler("ancestral")
@torch.no_grad()
def ancestral_sampler(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic sampling, one denoiser call per level (ours; not in the EHRDiff paper): from x at sigma to the
    next level s, draw from the Gaussian posterior of the variance-exploding process given the denoised estimate D,
        x_s = D + (s / sigma)^2 (x - D) + s sqrt(1 - (s / sigma)^2) n,     n ~ N(0, I)
    (Ho et al. 2020's ancestral step written for x_sigma = x_0 + sigma n). The last step, into sigma = 0, returns D.
    The fresh noise corrects errors of an imperfect denoiser that the deterministic flow carries to the end
    (Karras et al. 2022, Sec. 4)."""
    levels = sigmas.tolist()
    sigmas = sigmas.to(dtype=x.dtype, device=x.device)
    for i in range(len(levels) - 1):
        denoised = denoiser(x, sigmas[i])
        if levels[i + 1] == 0:
            return denoised
        ratio = (levels[i + 1] / levels[i]) ** 2
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = torch.lerp(denoised, x, ratio).add_(noise, alpha=levels[i + 1] * (1 - ratio) ** 0.5)
    return x


__all__ = ["SAMPLERS", "ancestral_sampler", "heun_sampler", "sampler"]
