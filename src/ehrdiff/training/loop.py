"""The one training loop. What a step does is a small strategy object (a :class:`TrainingStep`): an ordinary
minibatch step (``MinibatchStep``), a differentially private step (ehrdiff.models.ehrdiff.private) or a GAN's
phases (ehrdiff.models.gan_common). The loop owns what they share: resuming from the last checkpoint, writing
checkpoints (one format, ``checkpoint.py``), the progress bar, the loss log and timings.

    log = run_steps(step, total, identity={...}, checkpoint_dir="run/checkpoints", resume=True)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from ehrdiff.errors import EhrdiffError
from ehrdiff.training.checkpoint import CHECKPOINT_FILE, check_identity, read_checkpoint, save_checkpoint
from ehrdiff.training.distributed import DistContext, distributed_context

log = logging.getLogger(__name__)


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
        for stale in checkpoint.parent.glob(f".{CHECKPOINT_FILE}.*.tmp"):   # left by a process killed mid-write
            stale.unlink(missing_ok=True)
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
    logging window of ``log_every`` steps (benchmarks measure between windows)."""
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
    with flush_denormals(), contextlib.closing(bar):
        for index in range(start, total):
            taken = step(index)
            loss = taken.loss_sum.detach() if torch.is_tensor(taken.loss_sum) else taken.loss_sum
            window, window_rows = window + loss, window_rows + taken.rows
            done = index + 1
            if done % log_every == 0 or done == total:
                final_loss = float(window) / max(window_rows, 1)      # one host sync per logging window
                window, window_rows = 0.0, 0
                timings.append((done, time.perf_counter()))
                bar.set_postfix(loss=f"{final_loss:.4f}", **taken.shown, refresh=False)
                bar.update(done - bar.n)
                if on_log is not None:
                    on_log(done)
            if write and (done == total or (checkpoint_every and done % checkpoint_every == 0)):
                tensors, extra = step.state()
                save_checkpoint(checkpoint, done, total, identity, tensors, extra)
    return RunLog(start_step=start, final_loss=final_loss, timings=timings)


def rate(timings: list[tuple[int, float]], skip: int = 1) -> float:
    """Optimiser steps per second from ``RunLog.timings``, skipping the first ``skip`` windows (warm-up)."""
    if len(timings) < skip + 2:
        raise ValueError("not enough timing records; run more steps than log_every * (skip + 1)")
    (s0, t0), (s1, t1) = timings[skip], timings[-1]
    return (s1 - s0) / (t1 - t0)


__all__ = ["RunLog", "StepLog", "TrainingStep", "flush_denormals", "rate", "resume_point", "run_steps"]
