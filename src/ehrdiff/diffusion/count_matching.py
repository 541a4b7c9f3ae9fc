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

Screening makes the surplus cheaper. The count is decided late along the trajectory (UCI diabetes, the trained
default model, benchmarks/results/count_screening.md: the denoised estimate's expected count rounds to the final one
for 41% of rows at sigma 0.7 and 95% at 0.2), but the chances it gives are already honest: at sigma 0.7 none of
4,096 rows ends with a count to which the estimate's code probabilities, drawn independently (a Poisson-binomial
distribution), give a chance under 0.1% (0.27% under 1%; at sigma 1.2, 0.24% under 0.1%).
So the candidates of a round run to the first level at or below ``SCREEN_SIGMA`` and stop there (``Candidates``);
they are finished in their order, a batch at a time, skipping a candidate whose chance of ending with a count still
wanted is under ``SCREEN_CHANCE``. Skipping changes nothing else: a finished candidate is exactly the row the whole
trajectory gives, and the rows are still kept by their final counts, in order. What it saves is the rest of the
trajectory of candidates whose count is already full: on UCI, the many 2- and 4-code rows once those counts are
full, and most candidates of the later rounds, which hunt for the rare counts (3 codes, and 15 or more).

A large sample is drawn in chunks (bounded memory): ``split_counts`` splits the rows wanted per count over the
chunks, so that the chunks together hold exactly ``apportion(histogram, n)``, and each chunk is selected with
``select_code_counts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# Screening (see the module docstring): candidates stop at the first noise level at or below SCREEN_SIGMA, and one
# is finished only when its chance of ending with a number of codes still wanted is at least SCREEN_CHANCE; they are
# finished FINISH_BATCH at a time, so that a count filled part-way through a round stops taking candidates at once.
SCREEN_SIGMA = 0.75
SCREEN_CHANCE = 1e-3
FINISH_BATCH = 512


def screening_level(levels: Sequence[float]) -> int | None:
    """Index of the first noise level at or below SCREEN_SIGMA in a decreasing schedule ending in 0, where
    candidates are screened; None when there is none before the 0 or the schedule starts there."""
    for i, level in enumerate(levels[:-1]):
        if level <= SCREEN_SIGMA:
            return i if i > 0 else None
    return None


def count_chances(probabilities: np.ndarray, top: int) -> np.ndarray:
    """Rows x (top + 1): the chance of 0..top ones among independent 0/1 draws with these probabilities (one row
    per candidate, one column per code; the Poisson-binomial distribution, its mass above ``top`` left out)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    chances = np.zeros((p.shape[0], top + 1))
    chances[:, 0] = 1.0
    for column in p[:, p.max(axis=0, initial=0.0) > 1e-9].T:    # codes no candidate is likely to have: skipped
        q = column[:, None]
        chances[:, 1:] = chances[:, 1:] * (1 - q) + chances[:, :-1] * q
        chances[:, 0] *= 1 - column
    return chances


@dataclass
class Candidates:
    """Rows stopped part-way along the sampling trajectory: ``chances`` (rows x counts wanted) of each ending with
    each number of codes, and ``finish(indices)``, the final rows of those candidates in that order."""

    chances: np.ndarray
    finish: Callable[[np.ndarray], np.ndarray]


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
                      code_columns: np.ndarray, *, max_factor: float = 4.0, min_batch: int = 256) -> np.ndarray:
    """``n`` rows chosen from rounds of ``generate(rows, round_number)`` (0/1 in ``code_columns``) so that their
    numbers of codes follow ``histogram`` (rows with k codes: ``histogram[k]``; rows with more codes than it covers
    are not wanted). Rows keep the order in which they were generated. At most ``max_factor * n`` rows are generated
    in all."""
    return select_code_counts(generate, apportion(histogram, n), code_columns, max_factor=max_factor,
                              min_batch=min_batch)


def select_code_counts(generate: Callable[[int, int], "np.ndarray | Candidates"], want: np.ndarray,
                       code_columns: np.ndarray, *, max_factor: float = 4.0, min_batch: int = 256,
                       screen: float = SCREEN_CHANCE, finish_batch: int = FINISH_BATCH) -> np.ndarray:
    """``want.sum()`` rows from rounds of ``generate``, ``want[k]`` of them with k codes (see match_code_counts).
    ``generate`` may return :class:`Candidates` instead of finished rows: then the candidates are finished
    ``finish_batch`` at a time, in order, skipping those whose chance of ending with a count still short is under
    ``screen``."""
    want = np.asarray(want, dtype=np.int64)
    n = int(want.sum())
    top = len(want) - 1                         # the most codes a wanted row has
    have = np.zeros_like(want)
    seen = np.zeros_like(want)                  # rows per count per row generated: the model's own histogram
    kept, left = [], []

    def absorb(batch: np.ndarray) -> None:
        """Keep the rows of ``batch`` whose count is still short (in order), the others as stand-ins."""
        k = (batch[:, code_columns] >= 0.5).sum(axis=1)
        seen[:] += np.bincount(k[k <= top], minlength=len(want))
        take = np.zeros(len(batch), dtype=bool)
        for count in np.flatnonzero(have < want):
            picks = np.flatnonzero(k == count)[:want[count] - have[count]]
            take[picks] = True
            have[count] += picks.size
        kept.append(batch[take])
        left.append((batch[~take], k[~take]))

    generated, budget, round_number = 0, max(int(np.ceil(max_factor * n)), n), 0
    while (have < want).any() and generated < budget:
        need = want - have
        rate = seen / max(generated, 1)
        fillable = (need > 0) & (rate > 0)
        # first round: n rows; then enough to fill the slowest group the model does produce, at its observed rate
        rows = n if generated == 0 else (int(np.ceil((need[fillable] / rate[fillable]).max() * 1.05))
                                         if fillable.any() else budget)
        rows = int(min(max(rows, min_batch), budget - generated))
        out = generate(rows, round_number)
        round_number += 1
        generated += rows
        if not isinstance(out, Candidates):
            absorb(out)
            continue
        finished = np.zeros(rows, dtype=bool)
        for start in range(0, rows, finish_batch):
            short = np.flatnonzero(have < want)
            if short.size == 0:
                break
            part = np.arange(start, min(start + finish_batch, rows))
            near = out.chances[np.ix_(part, short)].sum(axis=1) >= screen
            if near.any():
                finished[part[near]] = True
                absorb(out.finish(part[near]))
    if (have < want).any() and isinstance(out, Candidates):
        # stand-ins must be finished rows: finish the last round's candidates likeliest to have the short counts, at
        # most as many as are still short (a row found of a short count is kept as such)
        short = np.flatnonzero(have < want)
        spare = int(sum(len(b) for b, _ in left))
        missing = int((want - have).sum()) - spare
        if missing > 0:
            order = np.argsort(-out.chances[:, short].sum(axis=1), kind="stable")
            extra = np.sort(order[~finished[order]][:missing])
            if extra.size:
                absorb(out.finish(extra))
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
