"""The one training loop. What a step does is a small strategy object (a :class:`TrainingStep`): an ordinary
minibatch step (``MinibatchStep``), a differentially private step (ehrdiff.models.ehrdiff.private) or a GAN's
phases (ehrdiff.models.gan_common). The loop owns what they share: resuming from the last checkpoint, writing
checkpoints (one format, ``checkpoint.py``), the progress bar, the loss log and timings, and stopping a run that
diverges (:class:`TrainingDiverged`: a loss that is not finite or explodes, weights that are not finite) before a
checkpoint or a model of it is written.

    log = run_steps(step, total, identity={...}, checkpoint_dir="run/checkpoints", resume=True)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from ehrdiff.errors import EhrdiffError
from ehrdiff.fileio import remove_stale_temporaries
from ehrdiff.training.checkpoint import CHECKPOINT_FILE, check_identity, read_checkpoint, save_checkpoint
from ehrdiff.training.distributed import DistContext, distributed_context

log = logging.getLogger(__name__)

# A step whose loss per row is this many times the first step's (in magnitude, and at least this much) is a run
# that has exploded: a margin far beyond the swings of a healthy run's loss.
EXPLODING_FACTOR = 1e6


class TrainingDiverged(EhrdiffError):
    """The run diverged: a loss that is not finite or exploded, or weights that are no longer finite numbers.
    Raised before anything of it is written: the last checkpoint (from before) stays, no model is saved."""


@dataclass
class StepLog:
    """What one step reports: its loss summed over this process's ``rows``, and values for the progress bar."""

    loss_sum: torch.Tensor | float
    rows: int
    shown: dict[str, str] = field(default_factory=dict)


class TrainingStep(Protocol):
    """One optimiser step of some model, and the state a checkpoint keeps of it."""

    description: str                                      # the progress bar's label

    def __call__(self, step: int) -> StepLog: ...         # take 0-based step ``step``

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...   # (tensors, JSON) to checkpoint

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None: ...


@dataclass
class RunLog:
    start_step: int                         # 0, or the step the run resumed from
    final_loss: float | None                # mean loss per row over the last logging window (rank 0's rows)
    end_step: int = 0                       # steps done at the end: ``total``, or fewer when the step stopped it
    timings: list[tuple[int, float]] = field(default_factory=list)  # (steps done, time.perf_counter())


@contextlib.contextmanager
def flush_denormals():
    """Treat subnormal floats as zero on the CPU while training. Saturated sigmoids and their gradients (a GAN's
    discriminator, cross-entropy on confident codes) produce numbers below 1e-38, and x86 arithmetic on them is
    many times slower. Flushing changes values only below 1e-38. PyTorch offers no getter, so the mode is switched
    off again afterwards (its default)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def resume_point(step: TrainingStep, checkpoint_dir: str | os.PathLike | None, resume: bool, identity: dict,
                 ctx: DistContext) -> tuple[Path | None, int]:
    """(checkpoint file or None, first step): with ``resume`` and a checkpoint of the same ``identity``, its state
    is restored into ``step``; a checkpoint of another run is refused."""
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if checkpoint is not None and ctx.is_main and checkpoint.parent.is_dir():
        remove_stale_temporaries(checkpoint)     # left by a process killed mid-write (not another one's, writing)
    if not (resume and checkpoint is not None and checkpoint.exists()):
        if resume and ctx.is_main:
            log.info("no checkpoint in %s yet: starting from step 0", checkpoint_dir)
        return checkpoint, 0
    meta, tensors = read_checkpoint(checkpoint)
    check_identity(checkpoint, meta["identity"], identity)
    step.restore(tensors, meta, checkpoint)
    start = int(meta["step"])
    if ctx.is_main:
        log.info("resuming from step %d of %d (%s)", start, meta["total_steps"], checkpoint)
    return checkpoint, start


def run_steps(step: TrainingStep, total: int, *, identity: dict, checkpoint_dir: str | os.PathLike | None = None,
              resume: bool = False, progress: bool = True, context: DistContext | None = None,
              checkpoint_every: int | None = None, log_every: int = 10,
              on_log: Callable[[int], None] | None = None) -> RunLog:
    """Take steps 0 .. ``total`` - 1 of ``step`` (from the checkpoint's step when resuming), writing a checkpoint
    every ``checkpoint_every`` steps and at the end (rank 0 only). ``on_log(steps_done)`` is called after every
    logging window of ``log_every`` steps (benchmarks measure between windows). The losses are checked at the end
    of each window and before each checkpoint, the weights before each checkpoint and at the end:
    :class:`TrainingDiverged` naming the step when the run has diverged. A step with a true ``stop_requested``
    (a stopping rule, ehrdiff.training.stopping) ends the run early: a checkpoint of that step is written, and a
    run resumed from it stops again at once."""
    from tqdm.auto import tqdm

    ctx = context or distributed_context()
    if total <= 0:
        raise EhrdiffError(f"the number of training steps must be positive, got {total}")
    identity = json.loads(json.dumps(identity))
    checkpoint, start = resume_point(step, checkpoint_dir, resume, identity, ctx)
    write = checkpoint is not None and ctx.is_main
    bar = tqdm(total=total, initial=min(start, total), disable=not (progress and ctx.is_main), unit="step",
               desc=step.description, dynamic_ncols=True, smoothing=0.05)
    timings = [(start, time.perf_counter())]
    window: torch.Tensor | float = 0.0
    window_rows, final_loss = 0, None
    watch = DivergenceWatch(start, total, checkpoint if write else None)
    done = start
    with flush_denormals(), contextlib.closing(bar):
        for index in range(start, total):
            if getattr(step, "stop_requested", False):      # resumed from the checkpoint of a stopped run
                break
            taken = step(index)
            loss = taken.loss_sum.detach() if torch.is_tensor(taken.loss_sum) else taken.loss_sum
            window, window_rows = window + loss, window_rows + taken.rows
            watch.add(loss, taken.rows)
            done = index + 1
            last = done == total or bool(getattr(step, "stop_requested", False))
            saving = write and (last or bool(checkpoint_every and done % checkpoint_every == 0))
            if done % log_every == 0 or last or saving:
                watch.check_losses()                            # one host sync per logging window
            if done % log_every == 0 or last:
                final_loss = float(window) / max(window_rows, 1)      # one host sync per logging window
                window, window_rows = 0.0, 0
                timings.append((done, time.perf_counter()))
                bar.set_postfix(loss=f"{final_loss:.4f}", **taken.shown, refresh=False)
                bar.update(done - bar.n)
                if on_log is not None:
                    on_log(done)
            if saving or last:
                tensors, extra = step.state()
                watch.check_weights(tensors, done)
                if saving:
                    save_checkpoint(checkpoint, done, total, identity, tensors, extra)
            if last:
                break
    return RunLog(start_step=start, final_loss=final_loss, timings=timings, end_step=done)


class DivergenceWatch:
    """The loop's check that a run has not diverged: each step's loss per row is finite and below
    ``EXPLODING_FACTOR`` times the first step's (at least 1), and the weights are finite numbers."""

    def __init__(self, start: int, total: int, checkpoint: Path | None) -> None:
        self.total, self.checkpoint = total, checkpoint
        self.pending: list[tuple[torch.Tensor | float, int]] = []     # (loss sum, rows) of unchecked steps
        self.next_index = start                  # the step of pending[0]
        self.limit: float | None = None          # set from the first step's loss

    def add(self, loss: torch.Tensor | float, rows: int) -> None:
        self.pending.append((loss, rows))

    def check_losses(self) -> None:
        for loss, rows in self.pending:
            per_row = float(loss) / max(rows, 1)
            if self.limit is None:
                self.limit = EXPLODING_FACTOR * max(abs(per_row), 1.0)
            if not math.isfinite(per_row):
                self.fail(self.next_index, f"the loss became {per_row}")
            if abs(per_row) > self.limit:
                self.fail(self.next_index, f"the loss exploded to {per_row:.3g} per row, over "
                                           f"{EXPLODING_FACTOR:.0e} times the first step's")
            self.next_index += 1
        self.pending = []

    def check_weights(self, tensors: dict[str, torch.Tensor], done: int) -> None:
        # one tensor at a time: a GPU run's state mixes devices (Adam keeps its step counts on the CPU)
        if not all(bool(torch.isfinite(t.detach()).all()) for t in tensors.values() if torch.is_floating_point(t)):
            self.fail(done - 1, "the weights are no longer finite numbers")

    def fail(self, index: int, what: str) -> None:
        kept = (f"; the checkpoint from before, {self.checkpoint}, is kept" if self.checkpoint is not None
                and self.checkpoint.exists() else "")
        raise TrainingDiverged(f"training diverged at step {index + 1} of {self.total}: {what}; no model was "
                               f"saved{kept}. Lower the learning rate (e.g. --set lr=...) or check the data")


def rate(timings: list[tuple[int, float]], skip: int = 1) -> float:
    """Optimiser steps per second from ``RunLog.timings``, skipping the first ``skip`` windows (warm-up)."""
    if len(timings) < skip + 2:
        raise ValueError("not enough timing records; run more steps than log_every * (skip + 1)")
    (s0, t0), (s1, t1) = timings[skip], timings[-1]
    return (s1 - s0) / (t1 - t0)


__all__ = ["EXPLODING_FACTOR", "DivergenceWatch", "RunLog", "StepLog", "TrainingDiverged", "TrainingStep",
           "flush_denormals", "rate", "resume_point", "run_steps"]
