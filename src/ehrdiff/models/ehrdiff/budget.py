"""How long EHRDiff trains when no ``steps`` are given: a budget derived from the data, and the held-out slice that
the stopping rule (ehrdiff.training.stopping) watches.

The measured anchor is UCI diabetes (57,214 rows, 882 encoded columns): the default model reaches its reported
quality in 15,000 steps of batch 1,024 (benchmarks/results/uci_comparison.md), about ``PASSES`` passes over the
rows. A table gets that many passes, at most ``MAX_STEPS`` steps: a larger table needs no more steps than UCI did,
and a small one gets far fewer passes than a fixed number of steps gives it (2,000 steps of 1,024 rows, 25,600
passes, memorised the 80-patient MIMIC demos: benchmarks/results/default_vs_paper.md). Passes are not what a model
needs to learn, though; steps are: a mid-sized table (CinC 2012, 3,040 rows) stays undertrained at 270 passes (2,160
steps: its held-out loss still falls at the end, and a classifier tells its rows from real ones by how the first and
last values sit between the minimum and the maximum), and still at 7,200 steps, where twice as many took the trees
discriminator from 0.741 to 0.706 (six seeds before row selection, benchmarks/results/default_training.md). So a
table of at least SMALL_TABLE_ROWS rows trained with the stopping rule watching gets at least ``MIN_STEPS`` steps
(at the derived batch, an eighth of a small table, at most MIN_STEPS / 8 passes, below where fit() warns of
memorisation); smaller tables keep their 270 passes, and under DP the step count is the accountant's business. The
batch is at most a ``BATCHES_PER_PASS``-th of the rows, and at least ``MIN_BATCH`` (never more than the rows): a
batch of 1,024 over 80 rows would pass over them 13 times per step, and small tables learn more per row in more,
smaller steps (benchmarks/results/gpu_sweep.md: batch 256 over 1,024 at the same compute). ``epochs=E`` asks for
the official schedule instead; ``steps=N`` for N steps, with no held-out slice and no stopping rule, as before.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch

from ehrdiff.models.ehrdiff.calibrate import SMALL_TABLE_ROWS

PASSES = 270                # UCI diabetes: 15,000 steps x 1,024 rows / 57,214 rows = 268 passes
MAX_STEPS = 15_000          # UCI diabetes's measured budget; larger tables are not given more
MIN_STEPS = 14_400          # the floor of a table of SMALL_TABLE_ROWS or more (1,800 passes at an eighth per batch)
BATCHES_PER_PASS = 8        # a pass over a small table is at least this many optimiser steps ...
MIN_BATCH = 64              # ... of batches no smaller than this (or all the rows)
# The held-out slice: this share of the rows, at least HOLDOUT_MIN rows (a table under HOLDOUT_FROM rows has none:
# it cannot spare them) and at most HOLDOUT_MAX (1.8% of UCI diabetes: large tables lose next to nothing).
HOLDOUT_SHARE, HOLDOUT_MIN, HOLDOUT_MAX, HOLDOUT_FROM = 0.05, 8, 1024, 40
HOLDOUT_STREAM = 0x401D     # the split's own random stream, from the training seed
# The stopping rule scores the held-out rows about EVALUATIONS times over the budget and stops after PATIENCE scores
# in a row worse than the best (a sixth of the budget); each score averages the loss over at least SCORED_ROWS noise
# draws.
EVALUATIONS, PATIENCE, SCORED_ROWS = 30, 5, 2048
SCORE_STEP = 1 << 40        # the noise of the scores: a step number no run reaches, so not a training step's draws


@dataclass(frozen=True)
class TrainingBudget:
    """Steps and batch of a run, why, and how many rows are held out for the stopping rule (0: none)."""

    steps: int
    batch_size: int
    held_out: int
    source: str                 # "data" (derived here), "steps" (given) or "epochs" (the official schedule)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def holdout_size(n_rows: int) -> int:
    """Rows held out of ``n_rows`` for the stopping rule."""
    if n_rows < HOLDOUT_FROM:
        return 0
    return int(min(HOLDOUT_MAX, max(HOLDOUT_MIN, round(HOLDOUT_SHARE * n_rows))))


def data_budget(n_rows: int, width: int, batch_size: int | None, hold_out: bool = True) -> TrainingBudget:
    """The default budget for ``n_rows`` rows of ``width`` encoded columns; ``batch_size``: the user's batch (None:
    derived, at most the preset's 1,024)."""
    held_out = holdout_size(n_rows) if hold_out else 0
    train_rows = n_rows - held_out
    batch = batch_size or min(1024, max(MIN_BATCH, math.ceil(train_rows / BATCHES_PER_PASS)))
    batch = min(batch, train_rows)
    wanted = math.ceil(PASSES * train_rows / batch)
    floor = MIN_STEPS if held_out and n_rows >= SMALL_TABLE_ROWS else 0     # only where the stopping rule watches
    steps = min(MAX_STEPS, max(wanted, floor))
    adjusted = (f", capped at {MAX_STEPS:,} steps" if wanted > MAX_STEPS else
                f", raised to the {MIN_STEPS:,} steps a table of {SMALL_TABLE_ROWS:,} rows or more gets"
                if floor > wanted else "")
    watched = (f"; {held_out:,} of the {n_rows:,} rows are held out and training stops where their denoising loss "
               "turns up" if held_out else "; no rows held out" + (
                   f" (fewer than {HOLDOUT_FROM})" if hold_out else " (private training)"))
    reason = (f"{steps:,} steps of batch {batch:,} over {train_rows:,} training rows x {width:,} columns: "
              f"{steps * batch / train_rows:,.0f} passes (the default budget: {PASSES} passes, the default model's "
              f"reported UCI diabetes run{adjusted}){watched}")
    return TrainingBudget(steps, batch, held_out, "data", reason)


def given_budget(steps: int, batch_size: int, n_rows: int, epochs: int | None = None) -> TrainingBudget:
    """The budget the user gave: ``steps`` (or the official ``epochs`` converted to them), no held-out rows."""
    passes = steps * batch_size / n_rows
    what = f"the official schedule's {epochs:,} epochs" if epochs else "as given"
    return TrainingBudget(steps, batch_size, 0, "epochs" if epochs else "steps",
                          f"{steps:,} steps of batch {batch_size:,} ({what}): {passes:,.0f} passes over "
                          f"{n_rows:,} rows; no stopping rule")


def plan_budget(optimisation, epochs_given: bool, batch_given: bool, n_rows: int, width: int,
                private: bool) -> TrainingBudget:
    """The run's budget from its ``OptimisationSettings``: their ``steps`` when set, the official schedule of their
    ``epochs`` when ``epochs_given``, else the data's (with their batch when ``batch_given``; under DP no rows are
    held out: choosing weights by them would use them without the privacy noise)."""
    if optimisation.steps is not None or epochs_given:
        return given_budget(optimisation.total_steps(n_rows), optimisation.batch_size, n_rows,
                            None if optimisation.steps is not None else optimisation.epochs)
    return data_budget(n_rows, width, optimisation.batch_size if batch_given or private else None,
                       hold_out=not private)


def split_holdout(n_rows: int, held_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training row indices, held-out row indices), both sorted: a permutation drawn from ``seed`` alone, so a
    resumed run holds out the same rows."""
    order = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, HOLDOUT_STREAM])).permutation(n_rows)
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def stopping_schedule(total: int) -> tuple[int, int]:
    """(evaluate every this many steps, patience in evaluations) for a budget of ``total`` steps."""
    return max(1, math.ceil(total / EVALUATIONS)), PATIENCE


def held_out_score(denoiser: torch.nn.Module, row_loss: Callable, held_out: torch.Tensor, training: torch.Tensor,
                   ema_weights: Callable[[], dict[str, torch.Tensor]], seed: int,
                   device: torch.device) -> Callable[[], tuple[float, float]]:
    """``score()`` -> (mean loss per held-out row, the same on ``training`` rows) of the current EMA weights, with
    the same noise at every call (``row_loss(model, rows, noise)``, the training loss): each row repeated so that
    at least SCORED_ROWS (row, noise) pairs are averaged."""
    import copy

    from ehrdiff.training.randomness import BatchNoise

    scorer = copy.deepcopy(denoiser).to(device).eval()
    repeats = max(1, math.ceil(SCORED_ROWS / held_out.shape[0]))
    sets = [rows.to(device=device, dtype=torch.float32).repeat(repeats, 1) for rows in (held_out, training)]
    generator = torch.Generator(device=device)

    def score() -> tuple[float, float]:
        scorer.load_state_dict(ema_weights())
        losses = []
        with torch.no_grad():
            for rows in sets:
                noise = BatchNoise(generator, seed, SCORE_STEP, 0, rows.shape[0], device)
                losses.append(float(row_loss(scorer, rows, noise).mean()))
        return losses[0], losses[1]

    return score


__all__ = ["MAX_STEPS", "MIN_STEPS", "PASSES", "TrainingBudget", "data_budget", "given_budget", "held_out_score",
           "holdout_size", "plan_budget", "split_holdout", "stopping_schedule"]
