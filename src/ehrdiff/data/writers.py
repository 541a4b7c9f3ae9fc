"""Writers for (synthetic) tables: wide Parquet/CSV/TSV/NPZ, long (subject, code) rows, and a MEDS dataset.

    write_synthetic(table, "synthetic.parquet")                 # wide, original column names and kinds
    write_synthetic(table, "synthetic_long.csv", format="long")  # subject_id, code[, numeric_value]
    write_synthetic(table, "synthetic_meds/", format="meds")     # data/0.parquet + metadata/ (dataset.json,
                                                                 # codes.parquet, subject_splits.parquet)

    with open_synthetic_writer("big.parquet", rows=n) as writer:    # a sample larger than memory, chunk by chunk
        for chunk in chunks:
            writer.write(chunk)

Every format is written into a staging path beside the output (a temporary file, or a temporary folder for MEDS)
that becomes the output only when every chunk is in: a failure or a kill leaves the old output (or nothing).
What a format holds in memory while writing: nothing but the current chunk, except wide Parquet (chunks up to
``ROW_GROUP_BYTES``, one row group, and the file's footer) and MEDS (8 bytes per subject, to check that no subject
id repeats). NPZ is streamed into the archive's ``data.npy`` member, whose header needs the
number of rows up front (``rows``).

Formats are registered in ``WRITERS``: format name -> a :class:`SyntheticWriter` subclass, or "module:Class" for a
writer imported on first use; a format written from the whole table at once is wrapped by
:func:`whole_table_writer` (its chunks are joined in memory first).

How a wide row becomes events (long and MEDS): a binary column (and a 0/1 label) gives one event whose code is the
column name when its value is 1; a continuous column gives the column name with ``numeric_value``; a categorical
column gives ``NAME//VALUE``; missing values give no event. ``ehrdiff prepare meds`` / ``prepare codes`` read such
files back into the same matrix. The long format has a ``numeric_value`` column when the table has a continuous
column.

Subject ids: the table's first id column (sampled tables carry synthetic ids). Pass ``reserved_ids`` (the real
ids) and any colliding or missing id is replaced by new ids above all of them.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import importlib
import json
import logging
import os
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ehrdiff import __version__
from ehrdiff.data.io import table_format, table_metadata
from ehrdiff.data.table import Table, _is_binary, dates_as_days
from ehrdiff.errors import DataError
from ehrdiff.fileio import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

MEDS_VERSION = "0.4.1"  # the MEDS schema version these files follow (meds.DataSchema, CodeMetadataSchema)
SEPARATOR = "//"
LONG_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz")
# Wide Parquet row groups hold at least this much data (or the whole table): the footer a Parquet writer keeps in
# memory grows by about 1 KB per column and row group, so row groups as small as a sampling chunk (4,755 rows of
# UCI diabetes' 883 columns) would add about 300 MB over 2,000,000 rows; at 256 MiB (38,000 such rows) about 40 MB.
ROW_GROUP_BYTES = 256 * 2**20

MEDS_DATA_SCHEMA = pa.schema([
    pa.field("subject_id", pa.int64(), nullable=False),
    pa.field("time", pa.timestamp("us"), nullable=True),
    pa.field("code", pa.string(), nullable=False),
    pa.field("numeric_value", pa.float32(), nullable=True),
])
MEDS_SPLITS_SCHEMA = pa.schema([
    pa.field("subject_id", pa.int64(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
])
MEDS_CODES_SCHEMA = pa.schema([
    pa.field("code", pa.string(), nullable=False),
    pa.field("description", pa.string()),
    pa.field("parent_codes", pa.list_(pa.string())),
])


# ---- folders written all at once -------------------------------------------------------------------------------
@contextlib.contextmanager
def staged_dir(target: str | os.PathLike, *, merge: bool, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success its content appears at ``target``.

    A new target is one rename (all or nothing). ``merge=True`` lets the target exist already: each staged file
    replaces its namesake atomically and other files stay. ``merge=False`` needs a missing or empty target, unless
    ``replace=True``: then an existing target is swapped for the new folder (two renames) and removed.
    On failure the temporary folder is removed and the target is untouched.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: exists and is not a folder; choose another output path")
    if not merge and not replace and target.exists() and any(target.iterdir()):
        raise DataError(f"{target}: folder exists and is not empty; choose a new folder or remove it first")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        if target.exists() and merge:
            for item in sorted(tmp.iterdir()):
                os.replace(item, target / item.name)
        elif target.exists() and replace:
            _swap_in(tmp, target)
        else:
            if target.exists():
                target.rmdir()
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _sibling(target: Path, suffix: str) -> Path:
    """A fresh hidden name beside ``target``."""
    return target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.{suffix}"


def _swap_in(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target`` and remove the old ``target`` (put back if the second rename fails)."""
    old = _sibling(target, "old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def concat_tables(chunks: list[Table]) -> Table:
    """Chunks of one table (same columns and kinds) as one Table; a single chunk is returned as it is."""
    if len(chunks) == 1:
        return chunks[0]
    return Table(pd.concat([c.frame for c in chunks], ignore_index=True), dict(chunks[0].kinds))


# ---- subject ids -----------------------------------------------------------------------------------------------
def subject_column(table: Table) -> str | None:
    ids = table.columns_of("id")
    return ids[0] if ids else None


def _as_int_ids(values: pd.Series) -> np.ndarray | None:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.isna().any() or not (numeric % 1 == 0).all():
        return None
    return numeric.to_numpy(dtype=np.int64)


def safe_subject_ids(table: Table, reserved_ids: Iterable | None = None, *,
                     integers: bool = False, offset: int = 0) -> tuple[str, np.ndarray]:
    """(column name, ids) for writing: the table's first id column unless it is absent, collides with
    ``reserved_ids`` or (``integers=True``) is not whole numbers; then fresh ids above every reserved id.
    ``offset``: rows of the same output written before this table (a chunk's fresh ids run on from there)."""
    name = subject_column(table) or "subject_id"
    reserved = pd.Series(list(reserved_ids)) if reserved_ids is not None else pd.Series([], dtype=object)
    reserved_int = pd.to_numeric(reserved, errors="coerce").dropna()
    start = int(reserved_int.max()) + 1 if len(reserved_int) else 0
    if subject_column(table) is not None:
        values = table.frame[name]
        ids = _as_int_ids(values) if integers else values.to_numpy()
        clash = values.isin(set(reserved.tolist())).any() if len(reserved) else False
        if ids is not None and not clash:
            return name, ids
        if ids is not None and integers:
            start = max(start, int(ids.max()) + 1)
        if offset == 0:     # said once per output, not once per chunk
            log.warning("subject ids in column '%s' %s; writing fresh ids from %d", name,
                        "collide with real ids" if clash else "are not whole numbers", start)
    return name, np.arange(start + offset, start + offset + table.n_rows, dtype=np.int64)


# ---- events ----------------------------------------------------------------------------------------------------
def table_to_events(table: Table, reserved_ids: Iterable | None = None, *,
                    integer_ids: bool = False, offset: int = 0) -> tuple[str, pd.DataFrame]:
    """Long events (subject, code, numeric_value) of a wide table, in row order then column order."""
    table.validate("table to write")
    id_name, ids = safe_subject_ids(table, reserved_ids, integers=integer_ids, offset=offset)
    return id_name, _events(table, id_name, ids)


def _events(table: Table, id_name: str, ids: np.ndarray) -> pd.DataFrame:
    pieces = []
    for position, column in enumerate(table.columns):
        kind, values = table.kinds[column], table.frame[column]
        if kind == "id":
            continue
        if kind == "binary" or (kind == "label" and _is_binary(values) and values.notna().all()):
            rows = np.flatnonzero(values.to_numpy(dtype=float) == 1)
            codes, numbers = np.full(len(rows), column, dtype=object), np.full(len(rows), np.nan)
        elif kind == "continuous":
            raw = values.to_numpy(dtype=float, na_value=np.nan)
            rows = np.flatnonzero(~np.isnan(raw))
            codes, numbers = np.full(len(rows), column, dtype=object), raw[rows]
        else:  # categorical, or a label that is not 0/1
            rows = np.flatnonzero(values.notna().to_numpy())
            codes = (f"{column}{SEPARATOR}" + values.iloc[rows].astype(str)).to_numpy(dtype=object)
            numbers = np.full(len(rows), np.nan)
        pieces.append(pd.DataFrame({"row": rows, "position": position, "code": codes, "numeric_value": numbers}))
    events = pd.concat(pieces, ignore_index=True).sort_values(["row", "position"], kind="stable") if pieces \
        else pd.DataFrame({"row": np.zeros(0, np.int64), "code": np.zeros(0, object), "numeric_value": np.zeros(0)})
    return pd.DataFrame({id_name: ids[events["row"].to_numpy()], "code": events["code"].astype(str).to_numpy(),
                         "numeric_value": events["numeric_value"].to_numpy(dtype=float)})


# ---- files written chunk by chunk ------------------------------------------------------------------------------
class _ParquetSink:
    """A Parquet file in the schema of the first chunk (or ``schema``), one row group per ``row_group_bytes`` of
    chunks (each chunk its own row group when 0). The writer keeps every row group's footer entry, about 1 KB per
    column, until the file is closed: a wide table written in small row groups would grow that with the rows."""

    def __init__(self, path: Path, *, schema: pa.Schema | None = None, metadata: dict | None = None,
                 row_group_bytes: int = 0, **options):
        self.path, self.schema, self.metadata, self.options = path, schema, metadata or {}, options
        self.row_group_bytes = row_group_bytes
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.Table] = []           # chunks of the next row group

    def write_frame(self, frame: pd.DataFrame) -> None:
        if self.schema is None:
            first = pa.Table.from_pandas(frame, preserve_index=False)
            self.schema = first.schema.with_metadata({**(first.schema.metadata or {}), **self.metadata})
        self.write_arrow(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))

    def write_arrow(self, table: pa.Table) -> None:
        self.schema = self.schema or table.schema
        self.pending.append(table.cast(self.schema) if table.schema != self.schema else table)
        if sum(t.nbytes for t in self.pending) >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema, **self.options)
        if self.pending:
            group = pa.concat_tables(self.pending)
            self.writer.write_table(group, row_group_size=max(group.num_rows, 1))
            self.pending = []

    def close(self) -> None:
        if self.schema is None:                 # no chunk at all and no schema: nothing to write
            return
        self._flush()                           # no chunk at all: an empty file of the schema
        self.abort()

    def abort(self) -> None:
        self.pending = []
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _TextSink:
    """A CSV or TSV file (gzipped when the name ends in .gz), the header written with the first chunk."""

    def __init__(self, path: Path, *, sep: str, compressed: bool):
        self.sep = sep
        self.handle = gzip.open(path, "wt", encoding="utf-8", newline="") if compressed else \
            open(path, "w", encoding="utf-8", newline="")
        self.header = True

    def write_frame(self, frame: pd.DataFrame) -> None:
        frame.to_csv(self.handle, index=False, sep=self.sep, header=self.header)
        self.header = False

    def close(self) -> None:
        self.handle.close()

    abort = close


class _NpzSink:
    """An NPZ archive as ``np.savez(data=float32 matrix, columns=names, kinds=JSON)`` writes it, with ``data``
    streamed into the archive chunk by chunk: its .npy header, written first, holds the number of ``rows``."""

    def __init__(self, path: Path, target: Path, *, rows: int | None, kinds: dict[str, str]):
        if rows is None:
            raise ValueError("an NPZ output needs its number of rows up front (rows=...)")
        self.target, self.rows, self.kinds = target, rows, kinds
        self.archive = zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True)
        self.data: Any = None
        self.columns: list[str] = []
        self.written = 0

    def write_frame(self, frame: pd.DataFrame) -> None:
        frame = dates_as_days(frame, self.kinds)     # NPZ holds numbers: dates as day counts since 1970-01-01
        numeric = frame.apply(pd.to_numeric, errors="coerce")
        if numeric.isna().to_numpy().sum() > frame.isna().to_numpy().sum():
            raise DataError(f"{self.target}: NPZ holds numbers only; this table has text columns "
                            "(write .parquet or .csv)")
        if self.data is None:
            self.columns = list(frame.columns)
            self.data = self.archive.open("data.npy", "w", force_zip64=True)
            np.lib.format.write_array_header_2_0(self.data, {"descr": "<f4", "fortran_order": False,
                                                             "shape": (self.rows, len(self.columns))})
        self.data.write(np.ascontiguousarray(numeric.to_numpy(dtype=np.float32), dtype="<f4").tobytes())
        self.written += len(frame)

    def close(self) -> None:
        if self.written != self.rows:
            raise ValueError(f"NPZ output declared {self.rows} rows but {self.written} were written")
        if self.data is not None:
            self.data.close()
        members = {"columns": np.array(self.columns, dtype=str), "kinds": np.array(json.dumps(self.kinds))}
        for name, array in members.items():
            with self.archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
        self.archive.close()

    def abort(self) -> None:
        if self.data is not None:
            self.data.close()
        self.archive.close()


# ---- the formats -----------------------------------------------------------------------------------------------
class SyntheticWriter:
    """One output format, written chunk by chunk into ``staging``: a temporary file beside the output, or (class
    attribute ``folder``) an empty temporary folder; :func:`open_synthetic_writer` moves it into place after
    :meth:`close`. ``rows``: the rows that will be written in all (None where unknown)."""

    folder: ClassVar[bool] = False
    sink: Any = None        # the file being written, once the first chunk came

    def __init__(self, staging: Path, target: Path, *, rows: int | None = None, reserved_ids: list | None = None,
                 titles: dict[str, str] | None = None) -> None:
        self.staging, self.target, self.rows = staging, target, rows
        self.reserved_ids, self.titles = reserved_ids, titles
        self.rows_written = 0

    @classmethod
    def check_target(cls, path: Path) -> None:
        """Refuse an output path this format cannot write (a folder for a file, an unknown file type), before any
        work."""
        if not cls.folder and path.is_dir():
            raise DataError(f"{path}: is a folder; give a file name (e.g. {path / 'synthetic.parquet'})")

    def write(self, table: Table) -> None:
        """Append the rows of ``table`` (every chunk has the same columns and kinds)."""
        table.validate("table to write")
        self._write(table)
        self.rows_written += table.n_rows

    def _write(self, table: Table) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the staging file or folder (after the last chunk)."""
        if self.sink is not None:
            self.sink.close()

    def abort(self) -> None:
        """Release open files after a failure (the staging path is then removed)."""
        if self.sink is not None:
            self.sink.abort()


class WideWriter(SyntheticWriter):
    """One row per patient with the table's own columns: Parquet (with the kinds), CSV, TSV or NPZ by extension."""

    @classmethod
    def check_target(cls, path: Path) -> None:
        super().check_target(path)
        table_format(path)

    def _write(self, table: Table) -> None:
        if self.sink is None:
            self.sink = self._sink(table)
        name = subject_column(table)
        frame = table.frame
        if name is not None and self.reserved_ids is not None:
            frame = frame.copy()
            frame[name] = safe_subject_ids(table, self.reserved_ids, offset=self.rows_written)[1]
        self.sink.write_frame(frame)

    def _sink(self, table: Table):
        fmt, kinds = table_format(self.target), table.kinds
        if fmt == "parquet":    # zstd without dictionary pages, as data.io.write_table: small files of 0/1 columns
            return _ParquetSink(self.staging, metadata=table_metadata(kinds, table.rules),
                                row_group_bytes=ROW_GROUP_BYTES, compression="zstd", use_dictionary=False)
        if fmt in ("csv", "tsv"):
            return _TextSink(self.staging, sep="\t" if fmt == "tsv" else ",",
                             compressed=self.target.name.lower().endswith(".gz"))
        return _NpzSink(self.staging, self.target, rows=self.rows, kinds=kinds)


class LongWriter(SyntheticWriter):
    """One row per event: SUBJECT_COLUMN, code[, numeric_value] (the value column when the table has a continuous
    column). CSV, CSV.GZ, TSV or Parquet by extension."""

    @classmethod
    def check_target(cls, path: Path) -> None:
        super().check_target(path)
        if not path.name.lower().endswith(LONG_SUFFIXES):
            raise DataError(f"{path}: unknown file type for long format; use .csv, .csv.gz, .tsv or .parquet")

    def _write(self, table: Table) -> None:
        _, events = table_to_events(table, self.reserved_ids, offset=self.rows_written)
        if not table.columns_of("continuous"):
            events = events.drop(columns="numeric_value")
        if self.sink is None:
            name = self.target.name.lower()
            self.sink = _ParquetSink(self.staging) if name.endswith((".parquet", ".pq")) else \
                _TextSink(self.staging, sep="\t" if ".tsv" in name else ",", compressed=name.endswith(".gz"))
        self.sink.write_frame(events)


class MedsWriter(SyntheticWriter):
    """A MEDS dataset: data/0.parquet, metadata/dataset.json, metadata/codes.parquet and
    metadata/subject_splits.parquet (every subject, split "train", so subjects without any event are kept).

    Synthetic patients have no timeline, so every event is static (``time`` null, as MEDS allows); each subject's
    events are contiguous. ``titles`` (column -> text) fill codes.parquet's ``description``."""

    folder = True

    def __init__(self, staging: Path, target: Path, **options) -> None:
        super().__init__(staging, target, **options)
        (staging / "data").mkdir()
        (staging / "metadata").mkdir()
        self.data = _ParquetSink(staging / "data" / "0.parquet", schema=MEDS_DATA_SCHEMA)
        self.splits = _ParquetSink(staging / "metadata" / "subject_splits.parquet", schema=MEDS_SPLITS_SCHEMA)
        self.codes: dict[str, None] = {}            # in order of first appearance
        self.subjects: list[np.ndarray] = []

    def _write(self, table: Table) -> None:
        id_name, subjects = safe_subject_ids(table, self.reserved_ids, integers=True, offset=self.rows_written)
        if len(np.unique(subjects)) != len(subjects):
            raise _repeated_subjects()
        events = _events(table, id_name, subjects)
        self.data.write_arrow(pa.Table.from_arrays([
            pa.array(events[id_name].to_numpy(dtype=np.int64), pa.int64()),
            pa.nulls(len(events), pa.timestamp("us")),
            pa.array(events["code"].to_numpy(), pa.string()),
            pa.array(events["numeric_value"].to_numpy(dtype=np.float32), pa.float32(), from_pandas=True),
        ], schema=MEDS_DATA_SCHEMA))
        self.splits.write_arrow(pa.Table.from_arrays(
            [pa.array(subjects, pa.int64()), pa.array(["train"] * len(subjects), pa.string())],
            schema=MEDS_SPLITS_SCHEMA))
        self.codes.update(dict.fromkeys(events["code"]))
        self.subjects.append(subjects)

    def close(self) -> None:
        if len(self.subjects) > 1:      # ids of one chunk were checked as it came
            every = np.concatenate(self.subjects)
            if len(np.unique(every)) != len(every):
                raise _repeated_subjects()
        self.data.close()
        self.splits.close()
        codes, titles = list(self.codes), self.titles or {}
        pq.write_table(pa.Table.from_arrays([
            pa.array(codes, pa.string()),
            pa.array([titles.get(c) for c in codes], pa.string()),
            pa.nulls(len(codes), pa.list_(pa.string())),
        ], schema=MEDS_CODES_SCHEMA), self.staging / "metadata" / "codes.parquet")
        created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        metadata = {"dataset_name": "ehrdiff synthetic data", "dataset_version": "1", "etl_name": "ehrdiff",
                    "etl_version": __version__, "meds_version": MEDS_VERSION, "created_at": created.isoformat()}
        write_text_atomic(self.staging / "metadata" / "dataset.json", json.dumps(metadata, indent=2) + "\n")

    def abort(self) -> None:
        self.data.abort()
        self.splits.abort()


def _repeated_subjects() -> DataError:
    return DataError("MEDS output needs one row per subject, but subject ids repeat in this table "
                     "(admission-level data?); write it in wide format instead")


def whole_table_writer(write: Callable[..., Any], *, folder: bool) -> type[SyntheticWriter]:
    """A ``WRITERS`` entry for a format written from the whole table by ``write(table, path, reserved_ids=...)``
    (``path``: the staging file, or the empty staging folder when ``folder``). Its chunks are joined in memory
    first: such a format's memory grows with the rows."""

    class WholeTable(SyntheticWriter):
        def _write(self, table: Table) -> None:
            self.chunks = getattr(self, "chunks", []) + [table]

        def close(self) -> None:
            write(concat_tables(self.chunks), self.staging, reserved_ids=self.reserved_ids)

    WholeTable.folder = folder
    WholeTable.__name__ = WholeTable.__qualname__ = f"WholeTable_{getattr(write, '__name__', 'writer')}"
    return WholeTable


WRITERS: dict[str, type[SyntheticWriter] | str] = {"wide": WideWriter, "long": LongWriter, "meds": MedsWriter,
                                                    "omop": "ehrdiff.data.omop:OmopWriter"}
FORMATS = tuple(WRITERS)


def writer_class(format: str) -> type[SyntheticWriter]:
    """The writer registered for ``format`` (a "module:Class" entry is imported now); DataError for an unknown one."""
    entry = WRITERS.get(format)
    if entry is None:
        raise DataError(f"unknown output format '{format}'; choose one of {', '.join(WRITERS)}")
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = WRITERS[format] = getattr(importlib.import_module(module), name)
    return entry


@contextlib.contextmanager
def open_synthetic_writer(path: str | os.PathLike, format: str = "wide", *, rows: int | None = None,
                          reserved_ids: Iterable | None = None, titles: dict[str, str] | None = None,
                          replace: bool = False) -> Iterator[SyntheticWriter]:
    """A writer of ``format`` for ``path``: ``writer.write(chunk)`` for every chunk, and on leaving the block
    the output appears at ``path`` all at once (a file replaces an existing one; a folder output needs a missing or
    empty folder, or ``replace=True`` to swap an existing one). On an error nothing at ``path`` changes."""
    path = Path(path)
    cls = writer_class(format)
    cls.check_target(path)
    options = {"rows": rows, "reserved_ids": None if reserved_ids is None else list(reserved_ids),
               "titles": titles}
    staging = staged_dir(path, merge=False, replace=replace) if cls.folder else atomic_path(path)
    with staging as tmp:
        writer = cls(tmp, path, **options)
        try:
            yield writer
            writer.close()
        except BaseException:
            writer.abort()
            raise


def write_synthetic(table: Table | pd.DataFrame, path: str | os.PathLike, format: str = "wide", *,
                    reserved_ids: Iterable | None = None, titles: dict[str, str] | None = None) -> Path:
    """Write a (sampled) table as ``wide`` (Parquet/CSV/TSV/NPZ by extension), ``long`` or ``meds`` (a folder)."""
    if isinstance(table, pd.DataFrame):
        table = Table.from_frame(table)
    with open_synthetic_writer(path, format, rows=table.n_rows, reserved_ids=reserved_ids, titles=titles) as writer:
        writer.write(table)
    return Path(path)
