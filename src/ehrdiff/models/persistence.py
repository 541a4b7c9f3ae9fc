"""Model directories: ``weights.safetensors`` (tensors only, never pickled) + ``model.json`` (metadata).

model.json holds the generator's name and config, the encoder (column specs), the data shape and fingerprint,
the library version and the SHA-256 of the weights file, so a truncated or modified directory is refused.
Both files are written atomically; model.json last, so a directory without it is an unfinished save.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ehrdiff.errors import ModelFileError
from ehrdiff.fileio import atomic_path, sha256_file, write_text_atomic

WEIGHTS_FILE = "weights.safetensors"
METADATA_FILE = "model.json"
FORMAT_VERSION = 1


def content_hash(content: dict) -> str:
    """SHA-256 of a JSON-able dict (keys sorted): model.json's check that its content was not edited."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def data_fingerprint(matrix: np.ndarray) -> str:
    """A short hash of the training matrix, so a model says which data it was fitted on."""
    contiguous = np.ascontiguousarray(matrix, dtype=np.float32)
    return hashlib.sha256(contiguous.tobytes()).hexdigest()[:16]


def save_model_dir(path: str | os.PathLike, metadata: dict, tensors: dict[str, torch.Tensor]) -> Path:
    from ehrdiff import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = path / WEIGHTS_FILE
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    full = {**metadata, "format_version": FORMAT_VERSION, "ehrdiff_version": __version__,
            "weights_sha256": sha256_file(weights)}
    write_text_atomic(path / METADATA_FILE, json.dumps(full, indent=2, sort_keys=True))
    return path


def load_model_dir(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{path}: model folder not found (train one with 'ehrdiff train DATA -o {path}')")
    meta_path, weights = path / METADATA_FILE, path / WEIGHTS_FILE
    for required in (meta_path, weights):
        if not required.exists():
            raise ModelFileError(f"{path}: incomplete model folder, {required.name} is missing (re-run training "
                                 "or point to the right folder)")
    try:
        metadata = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{meta_path}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(metadata, dict) or "model" not in metadata or "weights_sha256" not in metadata:
        raise ModelFileError(f"{meta_path}: not an ehrdiff model file (missing 'model' or 'weights_sha256')")
    if sha256_file(weights) != metadata["weights_sha256"]:
        raise ModelFileError(f"{weights}: checksum does not match model.json; the weights were modified or "
                             "truncated (re-run training or restore the folder)")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:
        raise ModelFileError(f"{weights}: could not read the weights ({exc})") from None
    return metadata, tensors
