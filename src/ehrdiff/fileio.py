"""Atomic file writes: write to a temporary file beside the target, then rename into place.

A crash mid-write leaves the old file (or nothing), never a half-written one. The temporary file is named
``.NAME.PID.RANDOM.tmp`` after the writing process, so that a later write of the same target can tell the
leftovers of a process killed mid-write (removed) from the file of a process still writing (kept).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

# Files a write of ehrdiff's own holds patient-derived data in, such as a model folder's (docs/guarantees.md):
# readable by their owner only.
PRIVATE_MODE = 0o600
# When this process began writing files: a temporary file last changed before then is not one of its writes.
_STARTED = time.time()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``. ``mode``: the file's
    permissions (default: what the umask gives a new file, usually 0644; ``PRIVATE_MODE`` for patient-derived
    files). Leftovers of earlier writes of ``path`` by processes that are gone are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # after the write: mkstemp makes 0600, and some writers (safetensors) replace the file with their own
        os.chmod(tmp_path, 0o666 & ~_umask() if mode is None else mode)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writes of ``path`` left behind when their process was killed: those whose
    writing process no longer runs and that were last changed before this process started. Best effort (a file
    that cannot be removed stays); returns the removed ones."""
    path = Path(path)
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if not _is_stale(candidate, path.name):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _is_stale(candidate: Path, target_name: str) -> bool:
    try:
        info = candidate.lstat()
    except OSError:
        return False
    if not candidate.is_file() or info.st_mtime >= _STARTED:
        return False
    writer = candidate.name[len(target_name) + 2:-len(".tmp")].split(".")[0]
    # a name without a process id is from an older ehrdiff, whose writer is gone if the file predates this process
    return not (writer.isdigit() and _process_running(int(writer)))


def _process_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)               # signal 0: only asks whether the process exists
    except PermissionError:           # it does, under another user
        return True
    except (ProcessLookupError, OverflowError):
        return False
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> None:
    with atomic_path(path, mode=mode) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text_atomic(path: str | os.PathLike, text: str, *, mode: int | None = None) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode)
