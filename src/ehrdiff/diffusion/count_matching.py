"""Matching the number of codes per synthetic row to the training data's histogram.

A diffusion model of 0/1 code vectors learns the codes' prevalences and co-occurrences well but spreads the number
of codes per row: on UCI diabetes (three diagnosis slots) most real patients have exactly 3 codes, while the
default model's rows spread over 2 to 4. The count is fixed by the sampling trajectory, not by the final draw
(the last denoised probabilities are 0 or 1 to within 1e-9), so it cannot be repaired row by row.

Stratified selection instead: sample more rows than asked, group them by their number of codes k, and keep
round(n * h(k)) rows of each group, h being the training histogram. The kept rows are draws from the model given
their count, and their counts follow h exactly: the model's distribution reweighted by h(k) / q(k), q being the
model's own count histogram. The price is sampling time: about max_k h(k) / q(k) times the rows (bounded by
``max_factor``); a group the model still leaves short at that bound takes rows of the nearest count instead.

The tail: a trained model rarely makes the largest counts (UCI diabetes: 0.2% of patients have 14 to 27 codes, and
rows with 19 or more did not occur in 8,192 of the default model's rows), so hunting them alone would always spend
the whole ``max_factor`` budget (4.00 rows generated per row kept, where the common counts need 1.6). Extra rounds
therefore leave out the costliest short groups as long as their rows together are at most ``tail_share`` of n
(default 0.25%); those take rows of the nearest count, every other group is exact.

A large sample is drawn in chunks (bounded memory): ``split_counts`` splits the rows wanted per count over the
chunks, so that the chunks together hold exactly ``apportion(histogram, n)``, and each chunk is selected with
``select_code_counts``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def apportion(shares: np.ndarray, n: int) -> np.ndarray:
    """``n`` split in proportion to ``shares``: n * s(k) / sum(s), rounded by the largest-remainder rule (ties to
    the earlier entry) so that the parts add up to exactly n."""
    shares = np.asarray(shares, dtype=np.float64)
    exact = n * shares / shares.sum()
    counts = np.floor(exact).astype(np.int64)
    short = n - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


def split_counts(total: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """``total`` (whole counts per group, summing to ``sum(sizes)``) split into one part per entry of ``sizes``,
    part j summing to ``sizes[j]`` and the parts adding up to ``total`` exactly: each part is apportioned from what
    the earlier ones left (never more than is left, so the last part is the exact remainder)."""
    left = np.asarray(total, dtype=np.int64).copy()
    if int(left.sum()) != int(sum(sizes)):
        raise ValueError(f"cannot split counts summing to {int(left.sum())} into parts of {int(sum(sizes))} rows")
    parts = []
    for size in sizes:
        part = apportion(left, size) if size else np.zeros_like(left)
        left -= part
        parts.append(part)
    return parts


def match_code_counts(generate: Callable[[int, int], np.ndarray], n: int, histogram: np.ndarray,
                      code_columns: np.ndarray, *, max_factor: float = 4.0, tail_share: float = 0.0025,
                      min_batch: int = 256) -> np.ndarray:
    """``n`` rows chosen from rounds of ``generate(rows, round_number)`` (0/1 in ``code_columns``) so that their
    numbers of codes follow ``histogram`` (rows with k codes: ``histogram[k]``; rows with more codes than it covers
    are not wanted), but for at most ``tail_share * n`` rows of the model's rarest counts (the module's docstring).
    Rows keep the order in which they were generated. At most ``max_factor * n`` rows are generated in all."""
    return select_code_counts(generate, apportion(histogram, n), code_columns, max_factor=max_factor,
                              tail_share=tail_share, min_batch=min_batch)


def select_code_counts(generate: Callable[[int, int], np.ndarray], want: np.ndarray, code_columns: np.ndarray, *,
                       max_factor: float = 4.0, tail_share: float = 0.0025, min_batch: int = 256) -> np.ndarray:
    """``want.sum()`` rows from rounds of ``generate``, ``want[k]`` of them with k codes (see match_code_counts)."""
    want = np.asarray(want, dtype=np.int64)
    n = int(want.sum())
    top = len(want) - 1                         # the most codes a wanted row has
    have = np.zeros_like(want)
    seen = np.zeros_like(want)                  # rows generated per count: the model's own histogram
    kept, left = [], []
    generated, budget, round_number = 0, max(int(np.ceil(max_factor * n)), n), 0
    spare = int(tail_share * n)                 # rows of the rarest counts allowed to take the nearest count
    while generated < budget:
        need = np.maximum(want - have, 0)
        rate = seen / max(generated, 1)
        hunted = need > 0 if generated == 0 else _hunted(need, rate, spare)
        if not hunted.any():
            break
        fillable = hunted & (rate > 0)
        # first round: n rows; then enough to fill the slowest hunted group the model does produce, at its rate
        rows = n if generated == 0 else (int(np.ceil((need[fillable] / rate[fillable]).max() * 1.05))
                                         if fillable.any() else budget)
        rows = int(min(max(rows, min_batch), budget - generated))
        batch = generate(rows, round_number)
        round_number += 1
        generated += rows
        k = (batch[:, code_columns] >= 0.5).sum(axis=1)
        seen += np.bincount(k[k <= top], minlength=len(want))
        take = np.zeros(rows, dtype=bool)
        for count in np.flatnonzero(need > 0):
            picks = np.flatnonzero(k == count)[:need[count]]
            take[picks] = True
            have[count] += picks.size
        kept.append(batch[take])
        left.append((batch[~take], k[~take]))
    chosen = np.concatenate(kept)
    if (have < want).any():     # counts the model rarely reaches within the budget: rows of the nearest count
        rest = np.concatenate([b for b, _ in left])
        rest_k = np.concatenate([c for _, c in left]).astype(np.float64)
        extra = []
        for count in np.flatnonzero(have < want):
            nearest = np.argsort(np.abs(rest_k - count), kind="stable")[:want[count] - have[count]]
            extra.append(rest[nearest])
            rest_k[nearest] = np.inf            # each row stands in once
        chosen = np.concatenate([chosen, *extra])
    return chosen


def _hunted(need: np.ndarray, rate: np.ndarray, spare: int) -> np.ndarray:
    """The short groups worth another round: all of them but the costliest to fill (most rows to generate at the
    group's observed rate, never-seen counts first), left out while their shortfall adds up to at most ``spare``."""
    hunted = need > 0
    cost = np.where(rate > 0, need / np.where(rate > 0, rate, 1.0), np.inf)
    given_up = 0
    for count in sorted(np.flatnonzero(hunted), key=lambda c: -cost[c]):
        if given_up + need[count] > spare:
            break
        given_up += int(need[count])
        hunted[count] = False
    return hunted
