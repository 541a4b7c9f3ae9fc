"""The one checkpoint format every training run writes: a safetensors file of tensors plus JSON metadata.

The metadata holds the format, the step, the run's total steps, its ``identity`` (what is being trained: model
settings, data fingerprint; a checkpoint of another run is never resumed) and whatever JSON the training step
keeps beside its tensors. ``optimizer_state`` / ``load_optimizer_state`` store an optimiser in the same file.
Writes go to a temporary file that is renamed into place, so a kill mid-write leaves the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from ehrdiff.errors import EhrdiffError, ModelFileError
from ehrdiff.fileio import PRIVATE_MODE, atomic_path

CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_FORMAT = 1
METADATA_KEY = "ehrdiff.checkpoint"


def save_checkpoint(path: Path, step: int, total_steps: int, identity: dict, tensors: dict[str, torch.Tensor],
                    extra: dict[str, Any]) -> None:
    """Write ``tensors`` and the metadata (``extra`` merged in) to ``path`` atomically, fsynced, readable by its
    owner only (the state of a model of patient data)."""
    from safetensors.torch import save_file

    meta = {"format": CHECKPOINT_FORMAT, "step": step, "total_steps": total_steps, "identity": identity, **extra,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path, mode=PRIVATE_MODE) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())


def read_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors); ModelFileError naming the file when it is damaged or of an unknown format."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[METADATA_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors / json raise several types for a damaged file
        raise ModelFileError(f"{path}: damaged checkpoint ({type(exc).__name__}); delete it to start over") from None
    version = meta.get("format") if isinstance(meta, dict) else None
    if isinstance(version, bool) or version != CHECKPOINT_FORMAT:     # True == 1 in Python
        raise ModelFileError(f"{path}: checkpoint format {version!r} is not supported by this version; delete it "
                             "to start over")
    if not (_whole(meta.get("step")) and _whole(meta.get("total_steps")) and isinstance(meta.get("identity"), dict)):
        raise ModelFileError(f"{path}: checkpoint without a valid step, total_steps or identity; delete it to start "
                             "over")
    return meta, tensors


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_identity(path: Path, saved: Any, current: dict) -> None:
    """Refuse to resume a checkpoint of another run, naming what differs."""
    if not same_identity(saved, current):
        raise EhrdiffError(f"{path}: cannot resume, the checkpoint is of a different run "
                           f"({_identity_difference(saved, current)}); use the same data and settings, or start "
                           "over without --resume")


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
        elif k == "data":
            parts.append(f"different data: fingerprint {saved.get(k)!r} in the checkpoint, {current.get(k)!r} now")
        else:
            parts.append(f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}")
    return "; ".join(parts)


def optimizer_state(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimiser's state as tensors named ``{prefix}{index}.{key}`` and JSON (its groups, scalar state)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"groups": groups, "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str,
                         groups: list[dict], scalars: dict[str, dict]) -> None:
    """Restore what :func:`optimizer_state` saved."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, what = key[len(prefix):].split(".", 1)
            state.setdefault(int(index), {})[what] = value
    for index, values in scalars.items():
        state.setdefault(int(index), {}).update(values)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


__all__ = ["CHECKPOINT_FILE", "check_identity", "load_optimizer_state", "optimizer_state", "read_checkpoint",
           "same_identity", "save_checkpoint"]
