"""Model directories: ``weights.safetensors`` (tensors only, never pickled) + ``model.json`` (metadata).

model.json holds the generator's name and config, the encoder (column specs), the training table's rules (kept
by the sampler, data/rules.py), the data shape and fingerprint,
the library version, the SHA-256 of the weights file and the SHA-256 of its own content, so a truncated or
modified directory is refused. :func:`read_model_metadata` is the one reader of model.json: every command that
trusts what it says (``sample``, ``evaluate --model``, ``load_model``) reads it there, verified. Both files are
written atomically, readable by their owner only (they are derived from patient data); model.json last, so a
directory without it is an unfinished save.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ehrdiff.data.encoding import TableEncoder
from ehrdiff.data.rules import Rule, parse_rules
from ehrdiff.errors import DataError, ModelFileError
from ehrdiff.fileio import PRIVATE_MODE, atomic_path, sha256_file, write_text_atomic

WEIGHTS_FILE = "weights.safetensors"
METADATA_FILE = "model.json"
FORMAT_VERSION = 1
KNOWN_FORMATS = (1,)
# Written by save_model_dir beside the model's own content, and not part of the content hash.
SAVE_FIELDS = ("content_sha256", "format_version", "ehrdiff_version", "weights_sha256")


def content_hash(content: dict) -> str:
    """SHA-256 of a JSON-able dict (keys sorted): model.json's check that its content was not edited."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def data_fingerprint(matrix: np.ndarray) -> str:
    """A short hash of the training matrix, so a model says which data it was fitted on."""
    contiguous = np.ascontiguousarray(matrix, dtype=np.float32)
    return hashlib.sha256(contiguous.tobytes()).hexdigest()[:16]


class ModelMetadata(dict):
    """A verified model.json (a dict) that knows its ``file``, with the type checks every model's ``load`` uses,
    so a crafted file whose fields have the wrong types is refused with one line naming the field."""

    def __init__(self, content: dict, file: Path) -> None:
        super().__init__(content)
        self.file = file

    def typed(self, key: str, kind: type | tuple[type, ...], what: str, *, optional: bool = False) -> Any:
        """``self[key]`` when it is of type ``kind`` (a bool is not a number), None when missing and ``optional``;
        ModelFileError naming the key and ``what`` it should be otherwise."""
        value = self.get(key)
        if value is None and optional:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.invalid(key, what, value)
        return value

    def invalid(self, key: str, what: str, value: Any) -> ModelFileError:
        text = repr(value)
        shown = text if len(text) <= 60 else text[:57] + "..."
        return ModelFileError(f"{self.file}: '{key}' must be {what}, got {shown}; the file was not written by "
                              "ehrdiff as it is (restore it or train again)")

    def encoder(self) -> TableEncoder:
        """The column encoding (``encoder``), checked field by field."""
        try:
            return TableEncoder.from_dict(self.typed("encoder", dict, "an object"))
        except ValueError as exc:
            raise ModelFileError(f"{self.file}: 'encoder' is not a valid column encoding ({exc}); the file was not "
                                 "written by ehrdiff as it is (restore it or train again)") from None

    def rules(self) -> tuple[Rule, ...]:
        """The training table's rules (``rules``, data/rules.py) that the sampler keeps; none in older files."""
        try:
            return parse_rules(self.typed("rules", list, "a list of rules", optional=True) or [], str(self.file))
        except DataError as exc:
            raise ModelFileError(f"{exc}; the file was not written by ehrdiff as it is (restore it or train "
                                 "again)") from None

    def privacy(self) -> dict[str, float] | None:
        """{dp_epsilon, dp_delta} of a model trained with differential privacy (None without): the guarantee
        this model.json states, each a positive finite number."""
        if self.get("dp_epsilon") is None:
            return None
        values = {key: self.typed(key, (int, float), "a positive number") for key in ("dp_epsilon", "dp_delta")}
        for key, value in values.items():
            if not (math.isfinite(value) and value > 0):
                raise self.invalid(key, "a positive number", value)
        return {key: float(value) for key, value in values.items()}


def save_model_dir(path: str | os.PathLike, metadata: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``tensors`` and ``metadata`` (the model's JSON content) with their checksums, both files mode 0600."""
    from ehrdiff import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    content = json.loads(json.dumps({k: v for k, v in metadata.items() if k not in SAVE_FIELDS}))
    weights = path / WEIGHTS_FILE
    with atomic_path(weights, mode=PRIVATE_MODE) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    full = {**content, "content_sha256": content_hash(content), "format_version": FORMAT_VERSION,
            "ehrdiff_version": __version__, "weights_sha256": sha256_file(weights)}
    write_text_atomic(path / METADATA_FILE, json.dumps(full, indent=2, sort_keys=True), mode=PRIVATE_MODE)
    return path


def read_model_metadata(path: str | os.PathLike) -> ModelMetadata:
    """model.json of the model folder ``path``, verified: valid JSON of a known format whose content hash matches
    (ModelFileError, one line naming the file, otherwise). The weights are not read."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{path}: model folder not found (train one with 'ehrdiff train DATA -o {path}')")
    meta_path = path / METADATA_FILE
    _require_file(path, meta_path)
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{meta_path}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    except RecursionError:
        raise ModelFileError(f"{meta_path}: nested too deeply to be a model file") from None
    except OSError as exc:
        raise ModelFileError(f"{meta_path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("model"), str) \
            or not isinstance(metadata.get("weights_sha256"), str):
        raise ModelFileError(f"{meta_path}: not an ehrdiff model file (missing 'model' or 'weights_sha256')")
    _check_format(meta_path, metadata.get("format_version"))
    _check_content_hash(meta_path, metadata)
    return ModelMetadata(metadata, meta_path)


def load_model_dir(path: str | os.PathLike) -> tuple[ModelMetadata, dict[str, torch.Tensor]]:
    """(verified model.json, weights): the weights only when their checksum is the one model.json records."""
    metadata = read_model_metadata(path)
    weights = Path(path) / WEIGHTS_FILE
    _require_file(Path(path), weights)
    try:
        matches = sha256_file(weights) == metadata["weights_sha256"]
    except OSError as exc:
        raise ModelFileError(f"{weights}: cannot be read ({exc.strerror or exc})") from None
    if not matches:
        raise ModelFileError(f"{weights}: checksum does not match model.json; the weights were modified or "
                             "truncated (re-run training or restore the folder)")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:
        raise ModelFileError(f"{weights}: could not read the weights ({exc})") from None
    return metadata, tensors


def _require_file(folder: Path, required: Path) -> None:
    if not required.exists():
        raise ModelFileError(f"{folder}: incomplete model folder, {required.name} is missing (re-run training "
                             "or point to the right folder)")
    if not required.is_file():
        raise ModelFileError(f"{required}: not a file; this is not a model folder written by ehrdiff (re-run "
                             "training or restore the folder)")


def _check_format(meta_path: Path, version: Any) -> None:
    if isinstance(version, bool) or version not in KNOWN_FORMATS:
        raise ModelFileError(f"{meta_path}: model format {version!r} is not one this version of ehrdiff reads "
                             f"(it reads format {', '.join(map(str, KNOWN_FORMATS))}); use the ehrdiff version "
                             "that wrote it, or train again")


def _check_content_hash(meta_path: Path, metadata: dict) -> None:
    """The content hash must match. ehrdiff 0.1 wrote none for its baselines (GANs, references); such a file is
    read without one unless it states privacy facts (``dp_*``), which nothing unverified may claim."""
    content = {k: v for k, v in metadata.items() if k not in SAVE_FIELDS}
    stated = metadata.get("content_sha256")
    legacy = stated is None and metadata["model"] != "ehrdiff" and not any(k.startswith("dp_") for k in content)
    try:
        if legacy or stated == content_hash(content):
            return
    except RecursionError:          # json.loads took it, but hashing nests deeper
        pass
    raise ModelFileError(f"{meta_path} was modified after saving (checksum mismatch); restore it or train again")
