"""Where the commands write: checked before any work, never over an input, locked while being written.

Every command that writes (prepare, train, sample, evaluate, demo, experiment) follows one policy (docs/guarantees.md):

- **Nothing is written over without --overwrite.** A file output that exists, and in a folder output any of the
  files or folders the command writes there (``writes``), is replaced only with ``--overwrite``; a folder that the
  command replaces as a whole (``sample --format meds``) must be missing or empty. Other files in an output folder
  are never touched. A run folder of ``train`` and an experiment folder also take their own ``--resume``.
- **Inputs never, not even with --overwrite.** An output that is one of the command's inputs, or whose writing would
  replace one, is refused (``inputs``).
- **Checked first.** The output's type (file or folder), its parent, room on the disk where it can be estimated and
  (by creating the lock file) that the folder takes new files, before the command reads, trains or samples.
- **Locked.** :func:`output_lock` holds an OS lock (``fcntl.flock``) for the whole command, so a second ehrdiff
  process writing the same output is refused with one line naming the first one's pid. POSIX only: elsewhere
  there is no lock (said once in the log).

Each refusal is one line that names the path and the flag that would allow it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from ehrdiff.errors import EhrdiffError

log = logging.getLogger(__name__)

LOCK_NAME = ".ehrdiff.lock"            # inside a locked folder (a run folder)
LOCK_SUFFIX = ".ehrdiff-lock"          # beside a locked file or folder: .NAME.ehrdiff-lock
# Fewest bytes a value takes in an uncompressed output, per file type (one character and a separator in CSV, a
# float32 in NPZ): a lower bound of the output's size. Compressed outputs (Parquet, .gz, MEDS) are not estimated.
BYTES_PER_VALUE = {"csv": 2, "tsv": 2, "npz": 4}


class OutputError(EhrdiffError):
    """An output location that cannot or may not be written."""


# ---- the checks ------------------------------------------------------------------------------------------------
def check_file_output(path: str | os.PathLike, *, overwrite: bool, inputs: Iterable = (),
                      flag: str = "-o") -> Path:
    """Refuse a file output that is a folder, sits under a file, is (or would replace) an input, or exists without
    ``overwrite``. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for {flag} (e.g. {path / 'synthetic.parquet'})")
    check_parent(path, flag)
    refuse_inputs(path, [path], inputs, flag)
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: exists; pass --overwrite to replace it, or choose another {flag}")
    return path


def check_folder_output(path: str | os.PathLike, *, overwrite: bool, writes: Iterable[str] | None,
                        inputs: Iterable = (), flag: str = "-o") -> Path:
    """Refuse a folder output that is a file, is (or holds) an input it would replace, or would have its
    ``writes`` (names of files and folders the command writes into it) replaced without ``overwrite``.
    ``writes=None``: the command replaces the whole folder, which must then be missing or empty without
    ``overwrite``. Returns the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; choose another {flag}")
    check_parent(path, flag)
    replaced = [path] if writes is None else [path / name for name in writes]
    refuse_inputs(path, replaced, inputs, flag)
    if overwrite or not path.is_dir():
        return path
    if writes is None:
        if any(path.iterdir()):
            raise OutputError(f"{path}: folder exists and is not empty; pass --overwrite to replace it, or choose "
                              f"another {flag}")
        return path
    present = [p.name for p in replaced if p.exists()]
    if present:
        raise OutputError(f"{path}: already holds {_names(present)}; pass --overwrite to replace "
                          f"{'them' if len(present) > 1 else 'it'}, or choose another {flag}")
    return path


def check_parent(path: Path, flag: str = "-o") -> None:
    """Refuse an output whose nearest existing ancestor is not a folder (it could never be created)."""
    ancestor = existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise OutputError(f"{path}: {ancestor} is a file, not a folder; choose another {flag}")


def refuse_inputs(path: Path, replaced: list[Path], inputs: Iterable, flag: str = "-o") -> None:
    """Refuse writing ``replaced`` (the files and folders the output replaces) when that would replace an input:
    an input is one of them or lies inside one, or one of them is an existing file inside an input folder."""
    for given in inputs:
        source = Path(given)
        if not source.exists():
            continue
        for target in replaced:
            inside_output = _same(source, target) or _within(source, target)
            inside_input = source.is_dir() and target.exists() and _within(target, source)
            if inside_output or inside_input:
                raise OutputError(f"{path}: writing it would replace {source}, an input of this command (even with "
                                  f"--overwrite); choose another {flag}")


def refuse_prepared_data(path: Path, flag: str = "-o") -> None:
    """Refuse a file that ``ehrdiff prepare`` wrote as real data (listed in the summary.json beside it), even with
    --overwrite."""
    summary = path.parent / "summary.json"
    if not (path.is_file() and summary.is_file()):
        return
    try:
        files = json.loads(summary.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(files, dict) and path.name in files:
        raise OutputError(f"{path}: real data written by 'ehrdiff prepare' (listed in {summary}); it is never "
                          f"replaced, even with --overwrite; choose another {flag}")


def holds_training_data(model, path: Path) -> bool:
    """Whether the table at ``path`` is the one ``model`` was fitted on: its encoded rows have the model's data
    fingerprint (stored by every built-in model). False when it cannot be read or encoded as the model's data."""
    import numpy as np

    from ehrdiff.data.io import read_table
    from ehrdiff.models.ehrdiff.conditioning import split_condition
    from ehrdiff.models.persistence import data_fingerprint

    fingerprint = getattr(model, "data_fingerprint_", None) or getattr(model, "fingerprint_", None)
    encoder, spec = getattr(model, "encoder_", None), getattr(model, "condition_", None)
    if not isinstance(fingerprint, str) or encoder is None or not path.is_file():
        return False
    try:
        table = read_table(path)
        labels = None
        if spec is not None:        # a conditional EHRDiff fingerprints its features and the class index
            table, labels, _ = split_condition(table, spec.column)
        matrix = encoder.transform(table)
        if labels is not None:
            matrix = np.column_stack([matrix, labels.astype(np.float32)])
    except (EhrdiffError, ValueError, KeyError, TypeError):
        return False
    return data_fingerprint(matrix) == fingerprint


def refuse_training_data(model, path: Path, flag: str = "-o") -> None:
    """Refuse ``path`` when it holds real data: written by ``ehrdiff prepare``, or the model's own training table."""
    refuse_prepared_data(path, flag)
    if holds_training_data(model, path):
        raise OutputError(f"{path}: holds the table this model was trained on; it is never replaced, even with "
                          f"--overwrite; choose another {flag}")


def check_free_space(path: Path, needed: int, what: str, flag: str = "-o") -> None:
    """Refuse an output of about ``needed`` bytes (``what`` says how that was estimated) where the disk has less."""
    free = shutil.disk_usage(existing_ancestor(path.parent)).free
    if needed > free:
        raise OutputError(f"{path}: needs at least {_size(needed)} ({what}) but its disk has {_size(free)} free; "
                          f"choose another {flag} or write less")


def estimated_bytes(path: Path, file_type: str, rows: int, columns: int) -> int:
    """A lower bound of the size of ``rows`` x ``columns`` values written as ``file_type`` (0: not estimated)."""
    if path.name.lower().endswith(".gz"):
        return 0
    return rows * columns * BYTES_PER_VALUE.get(file_type, 0)


def probe_writable(folder: Path, flag: str = "-o") -> None:
    """Refuse an existing folder in which no file can be created (read-only, full, not ours), by creating one."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise _not_writable(folder, exc, flag) from None


# ---- the lock --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def output_lock(path: str | os.PathLike, *, inside: bool = False, flag: str = "-o") -> Iterator[None]:
    """Hold an exclusive OS lock on output ``path`` for the block: a lock file inside the folder ``path``
    (``inside``, e.g. a run folder, created here if missing and removed again if left empty) or beside the file or
    folder ``path``. Another ehrdiff process holding it is refused with one line naming its pid; a folder where the
    lock file cannot be created is refused as not writable. The lock file is removed on release."""
    path = Path(path)
    folder = path if inside else path.parent
    created = _make_folder(folder, flag)
    lock_file = folder / LOCK_NAME if inside else lock_beside(path)
    try:
        handle = _acquire(lock_file, path, flag)
        try:
            yield
        finally:
            _release(handle, lock_file)
    finally:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def lock_beside(path: Path) -> Path:
    return path.parent / f".{path.name}{LOCK_SUFFIX}"


def _make_folder(folder: Path, flag: str) -> bool:
    """Create ``folder`` (and its parents) if missing; True when this call created it."""
    if folder.is_dir():
        return False
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError as exc:
        raise _not_writable(existing_ancestor(folder), exc, flag) from None
    return True


def _acquire(lock_file: Path, path: Path, flag: str) -> int | None:
    """The open, locked lock file (None where the system has no flock). Loops while another process removes the
    file between our open and our lock, so that two processes never hold locks on different files of one name."""
    try:
        import fcntl
    except ImportError:
        log.info("no file lock on this system: another ehrdiff process writing %s at the same time is not refused",
                 path)
        return None
    while True:
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _not_writable(lock_file.parent, exc, flag) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise OutputError(f"{path}: is being written by another ehrdiff process (pid {holder}); wait for it to "
                              f"finish or choose another {flag}") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)        # the holder released and removed it in between: lock the new file


def _release(fd: int | None, lock_file: Path) -> None:
    if fd is None:
        return
    with contextlib.suppress(FileNotFoundError):
        lock_file.unlink()          # while still holding the lock, so nobody locks a file that is going away
    os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


# ---- small helpers ---------------------------------------------------------------------------------------------
def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _same(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _within(inner: Path, outer: Path) -> bool:
    """``inner`` lies strictly inside folder ``outer`` (symbolic links resolved)."""
    inner, outer = inner.resolve(), outer.resolve()
    return inner != outer and outer in inner.parents


def _not_writable(folder: Path, exc: OSError, flag: str) -> OutputError:
    return OutputError(f"{folder}: cannot write there ({exc.strerror or exc}); choose another {flag} or change "
                       "its permissions")


def _names(names: list[str]) -> str:
    return ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


__all__ = ["OutputError", "check_file_output", "check_folder_output", "check_free_space", "estimated_bytes",
           "holds_training_data", "output_lock", "probe_writable", "refuse_inputs", "refuse_prepared_data",
           "refuse_training_data"]
