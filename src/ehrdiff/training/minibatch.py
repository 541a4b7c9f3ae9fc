"""The ordinary training step: AdamW on the global batch's mean loss, the learning-rate schedule, an EMA of the
weights, and torch.distributed.

    result = train(module, data, loss_fn, TrainSettings(steps=..., batch_size=..., lr=...),
                   checkpoint_dir="run/checkpoints", resume=True)
    module.load_state_dict(result.ema_state)

The checkpoint holds the model, the EMA, the optimiser moments and the step; the learning rate and the random
streams (``randomness.py``) follow from the step, so a resumed run continues exactly like an uninterrupted one.

Distributed: the module is wrapped in DistributedDataParallel and each process takes a contiguous slice of the same
global batch, with the noise those rows get in a single-process run. Each process's loss is scaled so that DDP's
gradient average equals the gradient of the global batch mean: 1 and N processes train the same weights (to float
rounding).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ehrdiff.errors import EhrdiffError, ModelFileError
from ehrdiff.training.checkpoint import load_optimizer_state, optimizer_state
from ehrdiff.training.distributed import DistContext, distributed_context
from ehrdiff.training.loop import StepLog, run_steps
from ehrdiff.training.randomness import BatchNoise, BatchOrder
from ehrdiff.training.schedule import ema_decay, learning_rate

LossFn = Callable[[nn.Module, torch.Tensor, BatchNoise], torch.Tensor]
"""loss_fn(model, rows, noise) -> the loss of each row, shape (rows,)."""


@dataclass
class TrainSettings:
    steps: int
    batch_size: int                   # the global batch (split over processes)
    lr: float
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    ema_decay: float = 0.999          # upper bound; the decay at update n is min(ema_decay, (1 + n) / (10 + n))
    seed: int = 0
    checkpoint_every: int | None = None
    log_every: int = 10

    def identity(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("checkpoint_every")
        values.pop("log_every")
        values["betas"] = list(values["betas"])
        return values


@dataclass
class TrainResult:
    ema_state: dict[str, torch.Tensor]      # the module's state dict with EMA weights (on the CPU)
    steps: int                              # total optimiser steps of the run
    start_step: int                         # 0, or the step the run resumed from
    final_loss: float | None                # mean training loss over the last logging window (rank 0's rows)
    timings: list[tuple[int, float]] = field(default_factory=list)  # (steps done, time.perf_counter())


class AdamWithEMA:
    """(Fused) AdamW on a module's parameters with the warm-up + cosine learning rate, and an exponential moving
    average of the weights; its checkpoint state is the module, the EMA and the optimiser."""

    def __init__(self, module: nn.Module, settings: TrainSettings, device: torch.device) -> None:
        self.module, self.settings = module, settings
        self.names = [n for n, _ in module.named_parameters()]
        self.params = list(module.parameters())
        fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
        self.optimizer = torch.optim.AdamW(self.params, lr=settings.lr, betas=tuple(settings.betas),
                                           eps=settings.eps, weight_decay=settings.weight_decay, **fused)
        self.ema = [p.detach().clone() for p in self.params]

    def set_learning_rate(self, step: int) -> float:
        lr = learning_rate(step, self.settings.lr, self.settings.warmup_steps, self.settings.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def update(self, step: int) -> None:
        """The optimiser step with the gradients in place, then the EMA update."""
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, self.params, 1.0 - ema_decay(step + 1, self.settings.ema_decay))

    def ema_state(self) -> dict[str, torch.Tensor]:
        """The module's state dict with the EMA weights, on the CPU."""
        state = {k: v.detach().to("cpu").clone() for k, v in self.module.state_dict().items()}
        for name, e in zip(self.names, self.ema):
            state[name] = e.detach().to("cpu").clone()
        return state

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"model.{k}": v for k, v in self.module.state_dict().items()}
        tensors.update({f"ema.{n}": e for n, e in zip(self.names, self.ema)})
        optim, meta = optimizer_state(self.optimizer, "optim.")
        return {**tensors, **optim}, {"parameters": self.names, "optimizer_groups": meta["groups"],
                                      "optimizer_scalars": meta["scalars"]}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
        if meta.get("parameters") != self.names:
            raise ModelFileError(f"{path}: checkpoint was written for another network; delete it or drop --resume")
        try:
            self.module.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
            for name, e in zip(self.names, self.ema):
                e.copy_(tensors[f"ema.{name}"])
            load_optimizer_state(self.optimizer, tensors, "optim.", meta["optimizer_groups"],
                                 meta["optimizer_scalars"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ModelFileError(f"{path}: checkpoint does not fit this model ({str(exc).splitlines()[0]}); "
                                 "delete it or drop --resume") from None


class MinibatchStep:
    """One AdamW step on the mean of ``loss_fn`` over the global batch (this process's slice of it)."""

    description = "training"

    def __init__(self, module: nn.Module, data: torch.Tensor, loss_fn: LossFn, settings: TrainSettings,
                 ctx: DistContext) -> None:
        if settings.steps <= 0 or settings.batch_size <= 0:
            raise EhrdiffError(f"steps and batch size must be positive (got {settings.steps}, {settings.batch_size})")
        if settings.batch_size < ctx.world_size:
            raise EhrdiffError(f"batch size {settings.batch_size} is smaller than the {ctx.world_size} processes")
        self.device, self.settings, self.loss_fn = ctx.device, settings, loss_fn
        module.to(self.device)
        self.data = data.to(device=self.device, dtype=torch.float32).contiguous()
        self.adam = AdamWithEMA(module, settings, self.device)
        self.model: nn.Module = module
        if ctx.world_size > 1:
            self.model = nn.parallel.DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        B = settings.batch_size
        self.lo, self.hi = ctx.rank * B // ctx.world_size, (ctx.rank + 1) * B // ctx.world_size
        self.scale = ctx.world_size / B          # DDP averages over processes: sum of row losses / B overall
        self.order = BatchOrder(self.data.shape[0], B, settings.seed)
        self.generator = torch.Generator(device=self.device)
        self.model.train()

    def __call__(self, step: int) -> StepLog:
        lr = self.adam.set_learning_rate(step)
        rows = self.order.indices(step)[self.lo:self.hi].to(self.device, non_blocking=True)
        batch = self.data.index_select(0, rows)
        noise = BatchNoise(self.generator, self.settings.seed, step, self.lo, self.hi, self.device)
        row_losses = self.loss_fn(self.model, batch, noise)
        self.adam.optimizer.zero_grad(set_to_none=True)
        (row_losses.sum() * self.scale).backward()
        self.adam.update(step)
        return StepLog(row_losses.detach().sum(), self.hi - self.lo, {"lr": f"{lr:.2e}"})

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self.adam.state()

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
        self.adam.restore(tensors, meta, path)


def train(module: nn.Module, data: torch.Tensor, loss_fn: LossFn, settings: TrainSettings, *,
          checkpoint_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
          identity: dict | None = None, context: DistContext | None = None,
          on_log: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``module`` (in place) on the rows of ``data`` with :class:`MinibatchStep` and return the EMA weights.
    ``identity`` describes what is being trained (model settings, data fingerprint); resuming from a checkpoint
    with a different identity is refused rather than silently mixing two runs."""
    ctx = context or distributed_context()
    step = MinibatchStep(module, data, loss_fn, settings, ctx)
    run = run_steps(step, settings.steps, identity={**(identity or {}), "training": settings.identity()},
                    checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, context=ctx,
                    checkpoint_every=settings.checkpoint_every, log_every=settings.log_every, on_log=on_log)
    return TrainResult(step.adam.ema_state(), settings.steps, run.start_step, run.final_loss, run.timings)


__all__ = ["AdamWithEMA", "LossFn", "MinibatchStep", "TrainResult", "TrainSettings", "train"]
