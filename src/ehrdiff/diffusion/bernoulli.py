"""Binary columns as Bernoulli variables inside EDM: ehrdiff's default model (not in the EHRDiff paper).

The paper's denoiser treats a 0/1 code like a real number: D is trained by squared error and the sampler's output is
rounded at 0.5, so a code whose probability stays under one half is almost never generated, and synthetic patients
get too few codes (docs/results.md). Here a binary column's denoised value is a probability:

    D_i(x; sigma) = P(x0_i = 1 | x) = sigmoid( (x_i - 1/2) / sigma^2  +  F_i(c_in x; c_noise) )

The first term is exact: the log-likelihood ratio of the noisy value x_i = x0_i + sigma n under x0_i = 1 against
x0_i = 0 (the Gaussian densities differ by exp((2 x_i - 1) / (2 sigma^2))). The network adds the prior log-odds of
the code given the rest of the noisy row, so it only has to learn what the other codes say about this one; its output
bias starts at the code's log-odds in the training data (``init_output``), which makes the untrained model the
independent-marginals model. Training minimises binary cross-entropy for these columns (the probability is the
target's conditional mean, as for squared error, but the loss is proper for 0/1 data), and the EDM loss for the
continuous ones. Sampling ends by drawing each binary column from its probability instead of rounding it
(``draw_discrete``), and a one-hot group from its normalised probabilities.

Categorical columns (``onehot`` blocks, optional): the counterpart for a one-hot block of K columns. Under x0 = e_k
the noisy block's Gaussian log-density is -(||x - e_k||^2) / (2 sigma^2), which differs between categories by
(x_k - 1/2) / sigma^2, the same evidence as for a binary column; so P(x0 = e_k | x) = softmax_k(F_k + (x_k - 1/2) /
sigma^2), trained by the categorical cross-entropy and drawn as one category at the end. Without it each column of
the block is its own Bernoulli variable and the draw normalises their probabilities.

Continuous columns may have a scale of their own (``normal_sigma_data``): a column scaled to a standard normal
(encoding "normal") has sigma_data 1, and with the output layer's zero weights the untrained model is then the
exact posterior mean of N(0, 1) data: each marginal right before training starts, as the Bernoulli bias does for
codes. Missing values (``missing``: value and indicator columns) are left out of the squared error: the value of a
missing entry is noise (refresh.RowRefresh), not something to learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ehrdiff.diffusion.gaussian_prior import GaussianSkip
from ehrdiff.diffusion.panels import xor_panels
from ehrdiff.diffusion.preconditioning import Denoiser, c_in, c_noise, c_out, c_skip, training_sigma


# Log-odds beyond +-30 mean probability 1 - 1e-13; clamping there keeps the cross-entropy's gradient (p - x) out of
# the subnormal floats (sigmoid(-90) ~ 1e-39), which made every backward matrix product of a step twice as slow on CPU.
MAX_LOG_ODDS = 30.0


def noise_log_odds(x: torch.Tensor, sigma) -> torch.Tensor:
    """log p(x | x0 = 1) - log p(x | x0 = 0) for x = x0 + sigma n, n ~ N(0, 1)."""
    return (x - 0.5) / sigma ** 2


def code_log_odds(f: torch.Tensor, x: torch.Tensor, sigma) -> torch.Tensor:
    """log-odds of x0_i = 1 given the noisy row: the network's prior log-odds plus the noise's evidence."""
    return (f + noise_log_odds(x, sigma)).clamp(-MAX_LOG_ODDS, MAX_LOG_ODDS)


class BernoulliDenoiser(Denoiser):
    """D(x; sigma) with probabilities for the columns in ``binary`` (a bool mask over the encoded columns) and EDM's
    preconditioned output for the rest. ``raw=True`` returns F, as for :class:`Denoiser`. ``onehot``: (start, stop)
    of one-hot blocks (within ``binary``) whose probabilities are a softmax over the block; ``column_sigma_data``:
    sigma_data of each encoded column (None: ``sigma_data`` for all)."""

    def __init__(self, net: nn.Module, sigma_data: float, binary: torch.Tensor | np.ndarray,
                 onehot: list[tuple[int, int]] | tuple = (), column_sigma_data: np.ndarray | None = None) -> None:
        super().__init__(net, sigma_data)
        binary = torch.as_tensor(np.asarray(binary, dtype=bool))
        self.register_buffer("binary", binary, persistent=False)     # derived from the table encoder, not saved
        self.all_binary = bool(binary.all())
        self.onehot = [(int(a), int(b)) for a, b in onehot]
        sd = None if column_sigma_data is None else torch.as_tensor(np.asarray(column_sigma_data, dtype=np.float32))
        self.register_buffer("column_sd", sd, persistent=False)
        self.prior: GaussianSkip | None = None

    def set_prior(self, columns, loadings, diagonal) -> None:
        """A Gaussian prior (diffusion/gaussian_prior.py) as the skip of ``columns``, which must be scaled to unit
        variance (sigma_data 1): their denoised value is Sigma (Sigma + sigma^2 I)^-1 x + c_out F."""
        columns = np.asarray(columns, dtype=np.int64)
        if self.column_sd is None or not torch.all(self.column_sd[torch.as_tensor(columns)] == 1.0):
            raise ValueError("a Gaussian prior needs its columns at sigma_data 1 (normal-scaled, private models)")
        self.prior = GaussianSkip(columns, loadings, diagonal)

    def skip(self, x: torch.Tensor, sigma: torch.Tensor, sd) -> torch.Tensor:
        """c_skip x, with the prior's columns given their Gaussian posterior mean instead."""
        out = x * c_skip(sigma, sd)
        if self.prior is not None:
            columns = self.prior.prior_columns
            out[:, columns] = self.prior(x[:, columns], sigma)
        return out

    def scale_of(self, sigma: torch.Tensor):
        """sigma_data for the preconditioning: one number, or one per encoded column."""
        return self.sigma_data if self.column_sd is None else self.column_sd

    def raw_output(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None,
                   plain: bool = False) -> torch.Tensor:
        """F(c_in x; c_noise), with c_in per column when the columns have scales of their own."""
        if self.column_sd is None:
            return super().forward(x, sigma, class_labels, raw=True, plain=plain)
        dtype = next(self.net.parameters()).dtype
        sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device)
        extra = {"class_labels": class_labels} if class_labels is not None else {}
        if plain:
            extra["plain"] = True
        return self.net(x.to(dtype) * c_in(sigma, self.column_sd), c_noise(sigma).reshape(-1), None, **extra)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """sigmoid of each 0/1 column's log-odds, softmax over each one-hot block's."""
        probs = torch.sigmoid(logits)
        if not self.onehot:
            return probs
        parts, at = [], 0
        for start, stop in self.onehot:
            parts += [probs[:, at:start], torch.softmax(logits[:, start:stop], dim=1)]
            at = stop
        return torch.cat(parts + [probs[:, at:]], dim=1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None,
                raw: bool = False, plain: bool = False) -> torch.Tensor:
        f = self.raw_output(x, sigma, class_labels, plain=plain)
        if raw:
            return f
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        f = f.to(x.dtype)
        probs = self.probabilities(code_log_odds(f, x, sigma))
        if self.all_binary:
            return probs
        sd = self.scale_of(sigma)
        if not isinstance(sd, float):
            sd = sd.to(x.dtype)
        out = self.skip(x, sigma, sd) + f * c_out(sigma, sd)
        return torch.where(self.binary, probs, out)

    @torch.no_grad()
    def init_output(self, prevalence: np.ndarray) -> None:
        """Last layer: zero weights, bias = log-odds of each binary column's prevalence (its log for a one-hot
        block's columns, whose softmax is then the prevalences; 0 for the others)."""
        last = self.net.layers[-1]
        last.weight.zero_()
        p = torch.as_tensor(np.clip(prevalence, 1e-4, 1 - 1e-4), dtype=last.bias.dtype)
        bias = torch.where(self.binary, torch.log(p) - torch.log1p(-p), torch.zeros_like(p))
        for start, stop in self.onehot:
            bias[start:stop] = torch.log(p[start:stop])
        last.bias.copy_(bias)


def block_log_probabilities(logits: torch.Tensor, onehot: list[tuple[int, int]]) -> torch.Tensor:
    """log_softmax over each one-hot block (other columns: the logits unchanged)."""
    parts, at = [], 0
    for start, stop in onehot:
        parts += [logits[:, at:start], torch.log_softmax(logits[:, start:stop], dim=1)]
        at = stop
    return torch.cat(parts + [logits[:, at:]], dim=1)


@dataclass
class BernoulliEDMLoss:
    """Per row, the mean over columns of: binary cross-entropy of D_i for binary columns (for a one-hot block with
    the softmax head, -x_k log P_k, which adds up to the block's cross-entropy), EDM's weighted squared error (in
    its effective-target form, see :class:`ehrdiff.diffusion.EDMLoss`) for the others, left out for a value whose
    indicator in ``missing`` (value columns, indicator columns) says it is missing. ``panels`` (members, leaders:
    diffusion/panels.py): indicator columns the model sees as their disagreement with a leader's."""

    sigma_data: float = 0.14
    P_mean: float = -1.2
    P_std: float = 1.2
    missing: tuple[torch.Tensor, torch.Tensor] | None = None
    panels: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, denoiser: BernoulliDenoiser, x: torch.Tensor, sigma_normal: torch.Tensor, noise: torch.Tensor,
                 class_labels: torch.Tensor | None = None, plain: bool = False) -> torch.Tensor:
        sigma = training_sigma(sigma_normal, self.P_mean, self.P_std)
        rows = x                                              # the indicators as they are, for the missing mask
        if self.panels is not None:
            x = xor_panels(x, *(t.to(x.device) for t in self.panels))
        noisy = torch.addcmul(x, sigma, noise)
        f = denoiser(noisy, sigma, class_labels, raw=True, plain=plain)
        head = getattr(denoiser, "module", denoiser)           # under DDP the denoiser is wrapped
        logits = code_log_odds(f, noisy, sigma)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
        if head.onehot:
            blocks = torch.zeros_like(head.binary)
            for start, stop in head.onehot:
                blocks[start:stop] = True
            bce = torch.where(blocks, -x * block_log_probabilities(logits, head.onehot), bce)
        if head.all_binary:                                   # known at construction: no device sync per step
            return bce.mean(dim=1)
        sd = head.scale_of(sigma)
        with torch.no_grad():
            target = (x - head.skip(noisy, sigma, sd)) / c_out(sigma, sd)
        squared = (f - target) ** 2
        if self.missing is not None and len(self.missing[0]):
            values, indicators = (t.to(x.device) for t in self.missing)
            observed = torch.ones_like(squared)
            observed[:, values] = 1.0 - rows[:, indicators]
            squared = squared * observed
        return torch.where(head.binary, bce, squared).mean(dim=1)


def draw_discrete(matrix: np.ndarray, groups: list[tuple[str, int, int]], generator: np.random.Generator
                  ) -> np.ndarray:
    """Replace probabilities by draws: ("binary", start, stop) columns each from Bernoulli(p); a ("onehot", start,
    stop) group as one categorical draw from its probabilities (normalised; uniform when all are zero)."""
    out = matrix.copy()
    for kind, start, stop in groups:
        p = np.clip(matrix[:, start:stop], 0.0, 1.0)
        if kind == "binary":
            out[:, start:stop] = generator.random(p.shape) < p
        else:
            total = p.sum(axis=1, keepdims=True)
            p = np.where(total > 0, p / np.where(total > 0, total, 1), 1.0 / p.shape[1])
            picks = (generator.random((p.shape[0], 1)) > np.cumsum(p, axis=1)).sum(axis=1)
            one_hot = np.zeros_like(p)
            one_hot[np.arange(p.shape[0]), np.minimum(picks, p.shape[1] - 1)] = 1
            out[:, start:stop] = one_hot
    return out


def redraw_short_rows(draws: np.ndarray, probs: np.ndarray, columns: np.ndarray, minimum: int,
                      generator: np.random.Generator, max_rounds: int = 1000) -> np.ndarray:
    """Rows with fewer than ``minimum`` ones among ``columns`` are drawn again from their own probabilities:
    rejection sampling, i.e. exact draws from the product of Bernoullis given at least ``minimum`` codes. A row still
    short after ``max_rounds`` gets its most probable codes. Changes ``draws`` in place and returns it."""
    p = np.clip(probs[:, columns], 0.0, 1.0)
    short = np.flatnonzero(draws[:, columns].sum(axis=1) < minimum)
    for _ in range(max_rounds):
        if short.size == 0:
            break
        fresh = generator.random((short.size, len(columns))) < p[short]
        draws[np.ix_(short, columns)] = fresh
        short = short[fresh.sum(axis=1) < minimum]
    for row in short:
        draws[row, columns[np.argsort(-p[row], kind="stable")[:minimum]]] = 1
    return draws


__all__ = ["BernoulliDenoiser", "BernoulliEDMLoss", "block_log_probabilities", "code_log_odds", "draw_discrete",
           "noise_log_odds", "redraw_short_rows"]
