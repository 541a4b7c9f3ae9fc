"""Each code's synthetic prevalence calibrated to a target: a private release's noisy one-way marginals.

DP-SGD's noise leaves a private model's code prevalences off, most of all for rare codes (prevalence Spearman 0.32 at
epsilon 1, benchmarks/results/private_release_uci.md), while the release already holds a noisy count of every code.
Moving codes between synthetic rows to meet those counts reads nothing but the released numbers and the model's
output: post-processing, free in privacy.

Each row keeps its number of codes (count matching's histogram), so every change is a swap inside one row: a code
of a column with too many ones leaves, a code of a column with too few comes in. The swaps are chosen by scores,
the model's log-odds of each code given the rest of its row: a column short of ones takes the rows where it is most
plausible relative to the least plausible surplus code that row holds (greedy, the shortest columns first). The
targets are the prevalences apportioned to the sample's own total of codes, so that swaps can meet them exactly.
"""

from __future__ import annotations

import numpy as np

from ehrdiff.diffusion.count_matching import apportion


def code_targets(prevalence: np.ndarray, total: int) -> np.ndarray:
    """Ones wanted per code column: ``total`` codes split in proportion to ``prevalence`` (whole numbers adding up
    to ``total``; equal shares when every prevalence is 0)."""
    shares = np.clip(np.asarray(prevalence, dtype=np.float64), 0.0, None)
    if not shares.sum() > 0:
        shares = np.ones_like(shares)
    return apportion(shares, int(total))


def swap_to_targets(codes: np.ndarray, scores: np.ndarray, targets: np.ndarray, max_passes: int = 20) -> np.ndarray:
    """``codes`` (rows x code columns, 0/1) with codes swapped inside rows until each column holds ``targets[j]``
    ones (as far as swaps can get there); ``scores``: each code's log-odds given its row (higher: more plausible).
    Row sums never change. Returns a new bool matrix."""
    x = np.asarray(codes) >= 0.5
    scores = np.asarray(scores, dtype=np.float64)
    excess = x.sum(axis=0).astype(np.int64) - np.asarray(targets, dtype=np.int64)
    for _ in range(max_passes):
        short, surplus = np.flatnonzero(excess < 0), excess > 0
        if not short.size or not surplus.any():
            break
        leave_col, leave_score = _least_plausible(x, scores, surplus)
        moved = 0
        for k in short[np.argsort(excess[short], kind="stable")]:
            gain = scores[:, k] - leave_score
            gain[x[:, k]] = -np.inf
            for i in np.argsort(-gain, kind="stable"):
                if excess[k] >= 0 or not np.isfinite(gain[i]):
                    break
                j = leave_col[i]
                if excess[j] <= 0:        # that column is full now: the row's next surplus code leaves instead
                    leave_col[i], leave_score[i] = _row_least(x[i], scores[i], excess > 0)
                    j = leave_col[i]
                    if not np.isfinite(leave_score[i]):
                        continue
                x[i, j], x[i, k] = False, True
                excess[j] -= 1
                excess[k] += 1
                moved += 1
                leave_col[i], leave_score[i] = _row_least(x[i], scores[i], excess > 0)
        if not moved:
            break
    return x


def _least_plausible(x: np.ndarray, scores: np.ndarray, surplus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the column of its lowest-scored code among the ``surplus`` columns, and that score (inf: none)."""
    held = np.where(x & surplus[None, :], scores, np.inf)
    col = held.argmin(axis=1)
    return col, held[np.arange(len(x)), col]


def _row_least(row: np.ndarray, scores: np.ndarray, surplus: np.ndarray) -> tuple[int, float]:
    col, score = _least_plausible(row[None, :], scores[None, :], surplus)
    return int(col[0]), float(score[0])


__all__ = ["code_targets", "swap_to_targets"]
