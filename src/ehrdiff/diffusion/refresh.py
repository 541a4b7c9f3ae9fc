"""What a training step does to its batch of encoded rows before the loss (ehrdiff's default model, not the paper):

dequantisation  a continuous column scaled to a normal (encoding "normal") has values many rows share (a count of
                0, a Glasgow score of 15, a lab value given to one decimal): each sits at the middle of its stretch
                of quantile levels. Each step spreads it uniformly over that stretch, afresh, and maps it back
                through Phi^-1, so that the model learns a continuous density whose every point of a stretch decodes
                to the shared value (uniform dequantisation, Theis et al. 2016; Ho et al. 2019) and each column's
                training marginal is an exact standard normal.
missing values  a continuous value the data does not have is replaced by a fresh standard normal draw each step
                (the loss masks it out, bernoulli.BernoulliEDMLoss), so nothing of an imputed fill value is learned
                and the value channel carries no trace of missingness: whether a value is observed is the missing
                indicator's job, a Bernoulli column learned jointly with the rest.

The draws come from the step's BatchNoise after the draws of the loss itself, so a table without such columns
trains exactly as before.
"""

from __future__ import annotations

import numpy as np
import torch


class RowRefresh:
    """Built from the encoder's tables (``TableEncoder.normal_stretches`` and ``missing_pairs``); called with a
    batch (rows x encoded columns) and the step's noise, returns a refreshed copy. ``tail``: levels are kept in
    [tail, 1 - tail] before Phi^-1, as the encoder keeps them (encoding.NORMAL_TAIL)."""

    def __init__(self, stretches: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
                 missing: tuple[np.ndarray, np.ndarray], tail: float) -> None:
        self.tail = tail
        self.columns = torch.tensor([s[0] for s in stretches], dtype=torch.long)
        width = max((len(s[1]) for s in stretches), default=0)
        # one row per column, padded on the right: knots' encoded values with +inf, the stretch levels with 0
        self.mids = torch.full((len(stretches), width), float("inf"), dtype=torch.float32)
        self.low = torch.zeros((len(stretches), width), dtype=torch.float64)
        self.high = torch.zeros((len(stretches), width), dtype=torch.float64)
        for row, (_, mids, low, high) in enumerate(stretches):
            self.mids[row, :len(mids)] = torch.as_tensor(mids, dtype=torch.float32)
            self.low[row, :len(low)] = torch.as_tensor(low)
            self.high[row, :len(high)] = torch.as_tensor(high)
        self.values, self.indicators = (torch.as_tensor(a, dtype=torch.long) for a in missing)

    @property
    def active(self) -> bool:
        return bool(len(self.columns) or len(self.values))

    def to(self, device: torch.device) -> "RowRefresh":
        for name in ("columns", "mids", "low", "high", "values", "indicators"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def __call__(self, rows: torch.Tensor, noise) -> torch.Tensor:
        if self.columns.device != rows.device:
            self.to(rows.device)
        rows = rows.clone()
        uniform = torch.special.ndtr(noise.randn(rows.shape[1]).to(torch.float64))
        fill = noise.randn(rows.shape[1]).to(rows.dtype)
        if len(self.columns):
            rows[:, self.columns] = self._dequantise(rows[:, self.columns], uniform[:, self.columns])
        if len(self.values):
            missing = rows[:, self.indicators] > 0.5
            rows[:, self.values] = torch.where(missing, fill[:, self.values], rows[:, self.values])
        return rows

    def _dequantise(self, z: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """Each value equal to a knot's encoded value drawn afresh from its stretch; other values unchanged."""
        zt = z.t().contiguous()
        index = torch.searchsorted(self.mids, zt).clamp_(max=self.mids.shape[1] - 1)
        below = (index - 1).clamp_(min=0)                 # the nearer of the two neighbouring knots
        nearer = torch.where((self.mids.gather(1, below) - zt).abs() < (self.mids.gather(1, index) - zt).abs(),
                             below, index)
        match = (self.mids.gather(1, nearer) - zt).abs() <= 1e-5 * zt.abs().clamp(min=1.0)
        low, high = self.low.gather(1, nearer), self.high.gather(1, nearer)
        level = (low + (high - low) * uniform.t()).clamp_(self.tail, 1 - self.tail)
        spread = torch.special.ndtri(level).to(z.dtype)
        return torch.where(match, spread, zt).t()


__all__ = ["RowRefresh"]
