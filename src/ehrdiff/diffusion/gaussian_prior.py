"""A Gaussian prior for the normal-scaled continuous columns: EDM's skip connection made a matrix.

EDM's denoiser is D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) with c_skip = sigma_data^2 / (sigma^2 +
sigma_data^2): with F = 0 it is the exact posterior mean of N(0, sigma_data^2 I) data, so an untrained network
samples independent columns. For data N(0, Sigma) the posterior mean is Sigma (Sigma + sigma^2 I)^-1 x, which
keeps the columns' relations; with Sigma = U diag(lambda) U' it is U diag(lambda / (lambda + sigma^2)) U' x, EDM's
c_skip when Sigma = sigma_data^2 I. A private model's DP-SGD network stays near its start (its rows keep next to no
relation between variables: benchmarks/cinc_probe.py ``linked``), so the prior is what carries them; the network
learns what the Gaussian misses. Trained diffusion models behave like such linear denoisers at high noise (Wang
and Vastola 2023, "The hidden linear structure in score-based models").

Sigma comes from a noisy second moment (privacy: models/ehrdiff/private_release.py): its ``rank`` largest
eigencomponents, the rest of each column's variance on the diagonal, scaled to unit variances (the columns'
sigma_data is 1). The components are kept as they come, noise included: on CinC 2012 at epsilon 1, where the
noise swamps the moment, the private model's metrics stayed where they were without the prior
(benchmarks/results/private_release_cinc.md, variant ``no-prior``).
"""

from __future__ import annotations

import numpy as np
import torch

MIN_RESIDUAL = 0.05     # a column's variance left outside the kept components: at least this much


def low_rank_correlation(moment: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(loadings d x k, diagonal d) of the correlation kept from a (noisy) second ``moment`` (d x d): its ``rank``
    largest positive eigencomponents, the rest of each column's variance (at least MIN_RESIDUAL) on the diagonal,
    scaled to unit variances."""
    w, u = np.linalg.eigh((moment + moment.T) / 2)
    keep = [i for i in np.argsort(w)[::-1][:rank] if w[i] > 0]
    loadings = u[:, keep] * np.sqrt(w[keep])
    common = np.sum(loadings ** 2, axis=1)
    residual = np.maximum(np.diag(moment) - common, MIN_RESIDUAL)
    scale = np.sqrt(common + residual)
    return loadings / scale[:, None], residual / scale ** 2


class GaussianSkip(torch.nn.Module):
    """Sigma (Sigma + sigma^2 I)^-1 x on ``columns`` of the encoded rows, Sigma = L L' + diag(r) (saved as the
    buffers prior_columns, prior_loadings, prior_diagonal; the eigenbasis is derived, not saved)."""

    def __init__(self, columns, loadings, diagonal) -> None:
        super().__init__()
        self.register_buffer("prior_columns", torch.as_tensor(np.asarray(columns), dtype=torch.long))
        self.register_buffer("prior_loadings", torch.as_tensor(np.asarray(loadings), dtype=torch.float32))
        self.register_buffer("prior_diagonal", torch.as_tensor(np.asarray(diagonal), dtype=torch.float32))
        self._derive()

    def _derive(self) -> None:
        sigma = self.prior_loadings.double() @ self.prior_loadings.double().T + torch.diag(self.prior_diagonal.double())
        values, basis = torch.linalg.eigh(sigma)
        self.register_buffer("values", values.float(), persistent=False)
        self.register_buffer("basis", basis.float(), persistent=False)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._derive()

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The skip of the prior's columns of ``x`` (rows x those columns); ``sigma`` a number, 0-d or (rows, 1)."""
        basis = self.basis.to(x.dtype)
        shrink = self.values.to(x.dtype) / (self.values.to(x.dtype) + torch.as_tensor(sigma, dtype=x.dtype) ** 2)
        return ((x @ basis) * shrink) @ basis.T


__all__ = ["GaussianSkip", "low_rank_correlation"]
