"""The training loop generators share: AdamW, warm-up + cosine learning rate, EMA, checkpoints, resume,
torch.distributed, progress.

    result = train(module, data, loss_fn, TrainSettings(steps=..., batch_size=..., lr=...),
                   checkpoint_dir="run/checkpoints", resume=True)
    module.load_state_dict(result.ema_state)

Determinism. Every random draw comes from generators seeded by the seed and a position: the batch rows (epoch e is
a permutation of the data seeded by (seed, e); epochs follow each other without gaps) and the loss function's
normal draws at step s (``BatchNoise``, seeded by (seed, s, ...)). So the state after step s is a function of the
seed, the data and s alone, and a run resumed from any checkpoint (even after kill -9) continues exactly like an
uninterrupted one: the checkpoint holds the model, the EMA, the optimiser moments and the step; the learning rate
and the random streams follow from the step.

Distributed. Under ``torchrun`` (WORLD_SIZE > 1) the loop joins the process group (NCCL on GPUs, gloo on CPUs),
wraps the module in DistributedDataParallel and gives each process a contiguous slice of the same global batch,
with the same noise those rows get in a single-process run. Each process's loss is scaled so that DDP's gradient
average equals the gradient of the global batch mean: 1 and N processes train the same weights (to float
rounding). Only rank 0 writes checkpoints and shows progress.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ehrdiff.errors import EhrdiffError, ModelFileError
from ehrdiff.fileio import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_FORMAT = 1
_METADATA_KEY = "ehrdiff.checkpoint"

# stream tags for the per-step seeds
_BATCH_STREAM, _NOISE_STREAM = 1, 2


# ---- settings and schedules --------------------------------------------------------------------------------
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


def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero, for 0-based ``step`` (the formula of transformers'
    ``get_cosine_schedule_with_warmup``, which the official EHRDiff code uses)."""
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def ema_decay(n_updates: int, max_decay: float = 0.999) -> float:
    """EMA decay for update number ``n_updates`` (1 for the first): min(max_decay, (1 + n) / (10 + n)),
    the warm-started EMA of the official code (as in score_sde's ExponentialMovingAverage)."""
    return min(max_decay, (1 + n_updates) / (10 + n_updates))


def step_seed(seed: int, step: int, stream: int, *more: int) -> int:
    """An independent 63-bit seed for (seed, step, stream, ...)."""
    words = [seed & 0xFFFFFFFFFFFFFFFF, step, stream, *more]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


class BatchOrder:
    """Row indices of the global batch at each step: epoch e is a permutation of the rows seeded by (seed, e),
    and batches walk through the concatenated epochs (a batch may span an epoch boundary)."""

    def __init__(self, n_rows: int, batch_size: int, seed: int) -> None:
        self.n_rows, self.batch_size, self.seed = n_rows, batch_size, seed
        self._cache: dict[int, torch.Tensor] = {}
        self._generator = torch.Generator()

    def _epoch(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            self._generator.manual_seed(step_seed(self.seed, epoch, _BATCH_STREAM))
            self._cache = {e: p for e, p in self._cache.items() if e >= epoch - 1}
            self._cache[epoch] = torch.randperm(self.n_rows, generator=self._generator)
        return self._cache[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch_size
        end = start + self.batch_size
        first, last = start // self.n_rows, (end - 1) // self.n_rows
        if first == last:
            offset = start - first * self.n_rows
            return self._epoch(first)[offset:offset + self.batch_size]
        joined = torch.cat([self._epoch(e) for e in range(first, last + 1)])
        offset = start - first * self.n_rows
        return joined[offset:offset + self.batch_size]


class BatchNoise:
    """Standard normal draws for one optimiser step, made in blocks of ``BLOCK`` rows of the global batch, each
    block from its own generator seeded by (seed, step, draw number, block). A process makes only the blocks
    that overlap its rows, and a row gets the same numbers however many processes share the batch."""

    BLOCK = 128

    def __init__(self, generator: torch.Generator, seed: int, step: int, lo: int, hi: int,
                 device: torch.device) -> None:
        self.generator, self.seed, self.step, self.lo, self.hi, self.device = generator, seed, step, lo, hi, device
        self.draws = 0

    # below this many numbers per block the draws stay in this thread (a thread hand-off costs more than it saves)
    PARALLEL_MIN = 1 << 16

    def randn(self, *row_shape: int) -> torch.Tensor:
        """(this process's rows, *row_shape) standard normal numbers; each call gives fresh numbers."""
        self.draws += 1
        out = torch.empty((self.hi - self.lo, *row_shape), device=self.device)
        blocks = range(self.lo // self.BLOCK, (self.hi - 1) // self.BLOCK + 1)
        workers = torch.get_num_threads()
        if (self.device.type == "cpu" and workers > 1 and len(blocks) > 1
                and self.BLOCK * math.prod(row_shape) >= self.PARALLEL_MIN):
            # PyTorch draws CPU normals in one thread per generator (a quarter of a paper-mimic step's non-matrix
            # time at d = 1,782); the blocks have their own seeds, so they are drawn side by side with the same
            # numbers as one after another
            list(_noise_threads(workers).map(lambda block: self._fill(out, block, row_shape, torch.Generator()),
                                             blocks))
        else:
            for block in blocks:
                self._fill(out, block, row_shape, self.generator)
        return out

    def _fill(self, out: torch.Tensor, block: int, row_shape: tuple, generator: torch.Generator) -> None:
        start, end = block * self.BLOCK, (block + 1) * self.BLOCK
        generator.manual_seed(step_seed(self.seed, self.step, _NOISE_STREAM, self.draws, block))
        if start >= self.lo and end <= self.hi:     # the whole block is ours: draw straight into the output
            out[start - self.lo:end - self.lo].normal_(generator=generator)
        else:                                       # a block cut by this process's rows: draw it whole, keep ours
            rows = torch.randn((self.BLOCK, *row_shape), generator=generator, device=self.device)
            a, b = max(start, self.lo), min(end, self.hi)
            out[a - self.lo:b - self.lo] = rows[a - start:b - start]


@functools.lru_cache(maxsize=None)
def _noise_threads(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ehrdiff-noise")


LossFn = Callable[[nn.Module, torch.Tensor, BatchNoise], torch.Tensor]
"""loss_fn(model, rows, noise) -> the loss of each row, shape (rows,)."""


# ---- distributed ---------------------------------------------------------------------------------------------
@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise EhrdiffError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise EhrdiffError(f"device '{device}' asked for, but PyTorch sees no CUDA GPU (use --set device=cpu)")
        if resolved.index is None:
            resolved = torch.device(f"cuda:{local_rank}")
    return resolved


def distributed_context(device: str = "auto") -> DistContext:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), resolved)
    return DistContext(0, 1, resolved)


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


# ---- checkpoints ---------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, module: nn.Module, ema: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                    step: int, total_steps: int, identity: dict) -> None:
    """One safetensors file (tensors + JSON metadata), written to a temporary file and renamed into place."""
    from safetensors.torch import save_file

    names = [n for n, _ in module.named_parameters()]
    tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
    tensors.update({f"ema.{n}": e for n, e in zip(names, ema)})
    opt_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt_state["param_groups"]]
    meta = {"format": CHECKPOINT_FORMAT, "step": step, "total_steps": total_steps, "identity": identity,
            "parameters": names, "optimizer_groups": groups, "optimizer_scalars": scalars,
            "random_state": "generators seeded by (seed, step, ...) at every step; nothing else to restore",
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_METADATA_KEY: json.dumps(meta)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())


def read_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_METADATA_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors / json raise several types for a damaged file
        raise ModelFileError(f"{path}: damaged checkpoint ({type(exc).__name__}); delete it to start over") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path}: checkpoint format {meta.get('format')} is not supported by this version")
    return meta, tensors


def _restore(meta: dict, tensors: dict[str, torch.Tensor], module: nn.Module, ema: list[torch.Tensor],
             optimizer: torch.optim.Optimizer, path: Path) -> None:
    names = [n for n, _ in module.named_parameters()]
    if meta["parameters"] != names:
        raise ModelFileError(f"{path}: checkpoint was written for another network; delete it or drop --resume")
    try:
        module.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        for name, e in zip(names, ema):
            e.copy_(tensors[f"ema.{name}"])
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, what = key.split(".", 2)
                state.setdefault(int(index), {})[what] = value
        for index, values in meta["optimizer_scalars"].items():
            state.setdefault(int(index), {}).update(values)
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["optimizer_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModelFileError(f"{path}: checkpoint does not fit this model ({str(exc).splitlines()[0]}); "
                             "delete it or drop --resume") from None


def same_identity(saved: Any, current: Any) -> bool:
    """Every entry of ``current`` equals the checkpoint's; entries only the checkpoint has are ignored (older
    versions recorded settings that are now known not to change the weights, such as the sampler's)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return all(k in saved and same_identity(saved[k], current[k]) for k in current)
    return saved == current


def _identity_difference(saved: dict, current: dict) -> str:
    current = json.loads(json.dumps(current))
    diffs = [k for k in sorted(current, key=str) if not same_identity(saved.get(k), current[k])]
    parts = []
    for k in diffs[:3]:
        if isinstance(saved.get(k), dict) and isinstance(current.get(k), dict):
            parts.append(_identity_difference(saved[k], current[k]))
        else:
            parts.append(f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}")
    return "; ".join(parts)


# ---- the loop ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def flush_denormals():
    """Treat subnormal floats as zero on the CPU while training. Saturated sigmoids and their gradients (a GAN's
    discriminator, cross-entropy on confident codes) produce numbers below 1e-38, and x86 arithmetic on them is
    up to 100 times slower: measured here, medGAN's steps went from 7 to 0.5 per second once its discriminator
    saturated. Flushing changes values only below 1e-38. PyTorch offers no getter, so the mode is switched off
    again afterwards (its default)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def optimiser_and_ema(module: nn.Module, settings: TrainSettings, device: torch.device
                      ) -> tuple[list[nn.Parameter], torch.optim.Optimizer, list[torch.Tensor]]:
    """The module's parameters, their (fused) AdamW and their EMA copies."""
    params = list(module.parameters())
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=tuple(settings.betas), eps=settings.eps,
                                  weight_decay=settings.weight_decay, **fused)
    return params, optimizer, [p.detach().clone() for p in params]


def resume_point(checkpoint_dir: str | os.PathLike | None, resume: bool, identity: dict, module: nn.Module,
                 ema: list[torch.Tensor], optimizer: torch.optim.Optimizer, ctx: DistContext
                 ) -> tuple[Path | None, int]:
    """(checkpoint file or None, first step): with ``resume`` and a checkpoint of the same ``identity``, its state
    is restored into module, EMA and optimiser; a checkpoint of another run is refused."""
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if checkpoint is not None and ctx.is_main and checkpoint.parent.is_dir():
        for stale in checkpoint.parent.glob(f".{CHECKPOINT_FILE}.*.tmp"):   # left by a process killed mid-write
            stale.unlink(missing_ok=True)
    if not (resume and checkpoint is not None and checkpoint.exists()):
        if resume and ctx.is_main:
            log.info("no checkpoint in %s yet: starting from step 0", checkpoint_dir)
        return checkpoint, 0
    meta, tensors = read_checkpoint(checkpoint)
    if not same_identity(meta["identity"], identity):
        raise EhrdiffError(f"{checkpoint}: cannot resume, the checkpoint is of a different run "
                           f"({_identity_difference(meta['identity'], identity)}); use the same data and "
                           "settings, or start over without --resume")
    _restore(meta, tensors, module, ema, optimizer, checkpoint)
    start = int(meta["step"])
    if ctx.is_main:
        log.info("resuming from step %d of %d (%s)", start, meta["total_steps"], checkpoint)
    return checkpoint, start

@dataclass
class TrainResult:
    ema_state: dict[str, torch.Tensor]      # the module's state dict with EMA weights (on the CPU)
    steps: int                              # total optimiser steps of the run
    start_step: int                         # 0, or the step the run resumed from
    final_loss: float | None                # mean training loss over the last logging window (rank 0's rows)
    timings: list[tuple[int, float]] = field(default_factory=list)  # (steps done, time.perf_counter())


def train(module: nn.Module, data: torch.Tensor, loss_fn: LossFn, settings: TrainSettings, *,
          checkpoint_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
          identity: dict | None = None, context: DistContext | None = None,
          on_log: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``module`` (in place) on the rows of ``data`` and return the EMA weights.

    ``on_log(steps_done)`` is called after every logging window (benchmarks use it to measure between windows).

    ``identity`` describes what is being trained (model settings, data fingerprint); resuming from a checkpoint
    with a different identity is refused rather than silently mixing two runs.
    """
    from tqdm.auto import tqdm

    ctx = context or distributed_context()
    if settings.steps <= 0 or settings.batch_size <= 0:
        raise EhrdiffError(f"steps and batch size must be positive (got {settings.steps}, {settings.batch_size})")
    if settings.batch_size < ctx.world_size:
        raise EhrdiffError(f"batch size {settings.batch_size} is smaller than the {ctx.world_size} processes")
    identity = json.loads(json.dumps({**(identity or {}), "training": settings.identity()}))
    device = ctx.device
    module.to(device)
    data = data.to(device=device, dtype=torch.float32).contiguous()
    params, optimizer, ema = optimiser_and_ema(module, settings, device)
    checkpoint, start = resume_point(checkpoint_dir, resume, identity, module, ema, optimizer, ctx)

    model: nn.Module = module
    if ctx.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)

    B = settings.batch_size
    lo, hi = ctx.rank * B // ctx.world_size, (ctx.rank + 1) * B // ctx.world_size
    scale = ctx.world_size / B          # DDP averages over processes: sum of row losses / B overall
    order = BatchOrder(data.shape[0], B, settings.seed)
    generator = torch.Generator(device=device)
    warmup = settings.warmup_steps
    total = settings.steps
    write = checkpoint is not None and ctx.is_main

    bar = tqdm(total=total, initial=start, disable=not (progress and ctx.is_main), unit="step", desc="training",
               dynamic_ncols=True, smoothing=0.05)
    timings = [(start, time.perf_counter())]
    window = torch.zeros((), device=device)
    window_rows = 0
    final_loss: float | None = None
    model.train()
    with flush_denormals(), contextlib.closing(bar):
        for step in range(start, total):
            lr = learning_rate(step, settings.lr, warmup, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = order.indices(step)[lo:hi].to(device, non_blocking=True)
            batch = data.index_select(0, rows)
            row_losses = loss_fn(model, batch, BatchNoise(generator, settings.seed, step, lo, hi, device))
            loss = row_losses.sum() * scale
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1.0 - ema_decay(step + 1, settings.ema_decay))
                window += row_losses.detach().sum()
            window_rows += hi - lo
            done = step + 1
            if done % settings.log_every == 0 or done == total:
                final_loss = float(window) / window_rows      # one host sync per logging window
                window.zero_()
                window_rows = 0
                timings.append((done, time.perf_counter()))
                bar.set_postfix(loss=f"{final_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                bar.update(done - bar.n)
                if on_log is not None:
                    on_log(done)
            if write and (done == total or (settings.checkpoint_every and done % settings.checkpoint_every == 0)):
                save_checkpoint(checkpoint, module, ema, optimizer, done, total, identity)

    ema_state = {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}
    for (name, _), e in zip(module.named_parameters(), ema):
        ema_state[name] = e.detach().to("cpu").clone()
    return TrainResult(ema_state=ema_state, steps=total, start_step=start, final_loss=final_loss, timings=timings)


def rate(timings: list[tuple[int, float]], skip: int = 1) -> float:
    """Optimiser steps per second from ``TrainResult.timings``, skipping the first ``skip`` windows (warm-up)."""
    if len(timings) < skip + 2:
        raise ValueError("not enough timing records; run more steps than log_every * (skip + 1)")
    (s0, t0), (s1, t1) = timings[skip], timings[-1]
    return (s1 - s0) / (t1 - t0)
