"""EDM preconditioning and training loss (Karras et al. 2022, "Elucidating the design space...", Table 1, column
"Ours"), as used by EHRDiff (Yuan et al. 2023, arXiv 2303.05656, Sec. 3).

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))
    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)       c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in   = 1 / sqrt(sigma^2 + sigma_data^2)              c_noise = ln(sigma) / 4
    training:  ln sigma ~ N(P_mean, P_std^2),  lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2
    loss = E[ lambda(sigma) || D(x + sigma n; sigma) - x ||^2 ],  n ~ N(0, I)

Every function takes a float or a tensor (anything that broadcasts against the data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def c_skip(sigma, sigma_data: float):
    return sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2)


def c_out(sigma, sigma_data: float):
    return sigma * sigma_data / (sigma ** 2 + sigma_data ** 2) ** 0.5


def c_in(sigma, sigma_data: float):
    return 1 / (sigma ** 2 + sigma_data ** 2) ** 0.5


def c_noise(sigma):
    return torch.log(torch.as_tensor(sigma)) / 4


def loss_weight(sigma, sigma_data: float):
    """lambda(sigma): makes the effective training target of F unit-variance at every noise level (EDM eq. 8)."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def training_sigma(standard_normal: torch.Tensor, P_mean: float, P_std: float) -> torch.Tensor:
    """Training noise levels: ln sigma ~ N(P_mean, P_std^2), from standard normal draws."""
    return torch.exp(P_mean + P_std * standard_normal)


class Denoiser(nn.Module):
    """D_theta(x; sigma): wraps the raw network F with EDM's preconditioning.

    ``sigma`` is a 0-d tensor (one level for the whole batch, as in sampling) or one value per row, shape (B, 1);
    ``class_labels`` (optional) one class index, or one per row, for a conditional network (EDM's ``class_labels``).
    The network runs in its own dtype (float32); the result comes back in the dtype of ``x``.
    ``raw=True`` returns F(c_in x; c_noise) itself (what the training loss needs; an argument rather than a method
    so that DistributedDataParallel, which hooks ``forward``, sees the call); ``plain=True`` runs the network's
    plain-module forward (for per-example gradients).
    """

    def __init__(self, net: nn.Module, sigma_data: float) -> None:
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None,
                raw: bool = False, plain: bool = False) -> torch.Tensor:
        dtype = next(self.net.parameters()).dtype
        xs = x.to(dtype)
        sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device)
        sd = self.sigma_data
        # F(c_in x; c_noise), the optional arguments only when used: any network of (x, c_noise, scale) fits
        extra = {"class_labels": class_labels} if class_labels is not None else {}
        if plain:
            extra["plain"] = True
        f = self.net(xs, c_noise(sigma).reshape(-1), c_in(sigma, sd), **extra)
        if raw:
            return f
        return torch.addcmul(f.mul_(c_out(sigma, sd)), xs, c_skip(sigma, sd)).to(x.dtype)


@dataclass
class EDMLoss:
    """The EDM training loss per row: lambda(sigma) times the squared error of D, averaged over features
    (the official EHRDiff code averages over features, then over the batch).

    Computed in EDM's equivalent form (Karras et al. 2022, eq. 8): with y the clean rows and x = y + sigma n,
        lambda (D(x; sigma) - y)^2 = lambda c_out^2 (F(c_in x; c_noise) - (y - c_skip x) / c_out)^2
    and lambda c_out^2 = 1, so the loss is the squared distance between F and its effective target, which needs no
    gradient: the same number with fewer full-size operations in the forward and backward passes.
    """

    sigma_data: float = 0.14
    P_mean: float = -1.2
    P_std: float = 1.2

    def __call__(self, denoiser: nn.Module, x: torch.Tensor, sigma_normal: torch.Tensor, noise: torch.Tensor,
                 class_labels: torch.Tensor | None = None, plain: bool = False) -> torch.Tensor:
        """``sigma_normal``: (B, 1) standard normal draws for ln sigma; ``noise``: (B, d) standard normal;
        ``class_labels``: (B,) class indices of a conditional denoiser; ``plain``: see :class:`Denoiser`."""
        sigma = training_sigma(sigma_normal, self.P_mean, self.P_std)
        noisy = torch.addcmul(x, sigma, noise)                      # x + sigma n
        f = denoiser(noisy, sigma, class_labels, raw=True, plain=plain)
        with torch.no_grad():                                       # (x - c_skip noisy) / c_out
            target = torch.addcmul(x, noisy, -c_skip(sigma, self.sigma_data)).div_(c_out(sigma, self.sigma_data))
        return _RowMSE.apply(f, target)


class _RowMSE(torch.autograd.Function):
    """mean over features of (f - target)^2 per row, with ``target`` needing no gradient. The residual is written
    into ``target``'s buffer and reused by the backward: two passes over the batch instead of autograd's five."""

    @staticmethod
    def forward(ctx, f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        residual = torch.sub(f, target, out=target)
        ctx.save_for_backward(residual)
        return torch.linalg.vector_norm(residual, dim=1).square_().div_(residual.shape[1])

    @staticmethod
    def backward(ctx, grad_rows: torch.Tensor):
        (residual,) = ctx.saved_tensors
        return residual * (grad_rows * (2.0 / residual.shape[1])).unsqueeze(1), None
