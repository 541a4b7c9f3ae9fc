"""Stopping on held-out rows: a training step wrapped so that every ``every`` steps the EMA weights are scored on
rows kept out of training, and the run stops once the score has stayed worse than its best for ``patience``
evaluations in a row. The weights kept are the latest whose score is as good as the best: within ``TOLERANCE`` of it.

The score is a denoising loss with fixed noise (the same draws at every evaluation), so it moves only with the
weights. A model that starts to reproduce its training rows fits them better and the held-out rows worse (the
generalisation gap of diffusion models that memorise: Carlini et al. 2023, "Extracting training data from
diffusion models"; van den Burg & Williams 2021 on memorisation as the gap between training and held-out
likelihood), so the held-out loss turns up there, and training stops. On a flat curve it does not stop: scores
within ``TOLERANCE`` of the best are the last digits of the same loss, and the latest weights among them are kept,
because more steps keep teaching the co-occurrence of codes that the loss barely registers (UCI diabetes: the
held-out loss of a default run, in model.json's ``stopping``, moves by less than 0.1% over the second half of its
budget, while the dimension-wise prediction gap falls from about 0.1 at 5,000 steps to 0.02 at 15,000:
benchmarks/results/gpu_sweep.md). The training rows' loss on as many rows, with the
same draws, is logged next to it as the gap.

The monitor's state (the best weights, its history, whether it stopped) goes into the step's checkpoint, so a run
resumed from any checkpoint takes the same decisions as an uninterrupted one.

    step = HeldOutStopping(MinibatchStep(...), score, ema_weights, every=200, patience=5)
    run_steps(step, total, ...)          # stops early when step.stop_requested
    step.best_weights()                  # the EMA weights at the best held-out loss
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ehrdiff.errors import ModelFileError
from ehrdiff.training.loop import StepLog, TrainingStep

# A held-out loss within this share of the best counts as good as the best (fixed noise makes the score smooth, and
# smaller differences are the last digits of a flat curve); above it, as worse.
TOLERANCE = 1e-3
PREFIX = "stopping."


@dataclass
class Evaluation:
    step: int                   # steps done
    held_out: float             # mean denoising loss per held-out row
    training: float             # the same on as many training rows

    def to_list(self) -> list[float]:
        return [self.step, round(self.held_out, 6), round(self.training, 6)]


class HeldOutStopping:
    """``inner`` (a TrainingStep) with the stopping rule. ``score()`` -> (held-out loss, training loss) of the
    current EMA weights; ``ema_weights()`` -> those weights (a state dict, copied when they are the best)."""

    def __init__(self, inner: TrainingStep, score: Callable[[], tuple[float, float]],
                 ema_weights: Callable[[], dict[str, torch.Tensor]], every: int, patience: int) -> None:
        if every <= 0 or patience <= 0:
            raise ValueError(f"every and patience must be positive, got {every}, {patience}")
        self.inner, self.score, self.ema_weights = inner, score, ema_weights
        self.every, self.patience = every, patience
        self.description = inner.description
        self.history: list[Evaluation] = []
        self.lowest: float | None = None            # the lowest held-out loss so far
        self.best: Evaluation | None = None         # the kept evaluation: the latest within TOLERANCE of the lowest
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stop_requested = False

    def __call__(self, step: int) -> StepLog:
        taken = self.inner(step)
        if (step + 1) % self.every == 0:
            self.evaluate(step + 1)
        return taken

    def evaluate(self, done: int) -> Evaluation:
        held_out, training = self.score()
        now = Evaluation(done, float(held_out), float(training))
        self.history.append(now)
        self.lowest = now.held_out if self.lowest is None else min(self.lowest, now.held_out)
        if now.held_out <= self.lowest * (1 + TOLERANCE):
            self.best, self.best_state = now, {k: v.detach().to("cpu").clone() for k, v in self.ema_weights().items()}
        elif sum(e.step > self.best.step for e in self.history) >= self.patience:
            self.stop_requested = True      # worse than the best at each of the last `patience` scores
        return now

    def finish(self, done: int) -> None:
        """Score the last weights too (a run that ends between evaluations)."""
        if not self.history or self.history[-1].step != done:
            self.evaluate(done)

    def best_weights(self) -> dict[str, torch.Tensor]:
        if self.best_state is None:
            raise RuntimeError("no evaluation yet: call finish() after training")
        return self.best_state

    def summary(self, total: int) -> dict[str, Any]:
        """What model.json records: the rule, the chosen step, where training ended, and every evaluation
        ([steps, held-out loss, training loss])."""
        last = self.history[-1].step if self.history else 0
        return {"rule": "held-out denoising loss", "every": self.every, "patience": self.patience,
                "budget_steps": total, "stopped_at": last, "stopped_early": last < total,
                "chosen_step": self.best.step if self.best else None,
                "held_out_loss": round(self.best.held_out, 6) if self.best else None,
                "training_loss": round(self.best.training, 6) if self.best else None,
                "evaluations": [e.to_list() for e in self.history]}

    # ---- checkpoint state ------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = self.inner.state()
        if self.best_state is not None:
            tensors = {**tensors, **{PREFIX + k: v for k, v in self.best_state.items()}}
        meta = {**meta, "stopping": {"history": [e.to_list() for e in self.history],
                                     "best": self.best.to_list() if self.best else None,
                                     "stop_requested": self.stop_requested}}
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
        own = meta.get("stopping")
        if not isinstance(own, dict):
            raise ModelFileError(f"{path}: checkpoint of a run without the stopping rule; delete it or drop --resume")
        self.inner.restore({k: v for k, v in tensors.items() if not k.startswith(PREFIX)}, meta, path)
        try:
            self.history = [Evaluation(int(s), float(h), float(t)) for s, h, t in own["history"]]
            self.best = Evaluation(*own["best"]) if own["best"] else None
            self.best.step = int(self.best.step) if self.best else 0
            self.lowest = min((e.held_out for e in self.history), default=None)
            state = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
            self.best_state = state or None
            self.stop_requested = bool(own["stop_requested"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: the stopping rule's state is damaged ({exc}); delete the checkpoint or "
                                 "drop --resume") from None


__all__ = ["TOLERANCE", "Evaluation", "HeldOutStopping"]
