"""Where training runs: one process, or one of several started by torchrun (WORLD_SIZE > 1), each on its device.

Under torchrun the processes join a process group (NCCL on GPUs, gloo on CPUs); each takes a contiguous slice of
the same global batch, and only rank 0 writes checkpoints and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ehrdiff.errors import EhrdiffError


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


__all__ = ["DistContext", "distributed_context", "is_main_process", "resolve_device"]
