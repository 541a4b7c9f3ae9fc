"""Writers for (synthetic) tables: wide Parquet/CSV, long (subject, code) rows, and a MEDS dataset.

    write_synthetic(table, "synthetic.parquet")                 # wide, original column names and kinds
    write_synthetic(table, "synthetic_long.csv", format="long")  # subject_id, code[, numeric_value]
    write_synthetic(table, "synthetic_meds/", format="meds")     # data/0.parquet + metadata/ (dataset.json,
                                                                 # codes.parquet, subject_splits.parquet)

How a wide row becomes events (long and MEDS): a binary column (and a 0/1 label) gives one event whose code is the
column name when its value is 1; a continuous column gives the column name with ``numeric_value``; a categorical
column gives ``NAME//VALUE``; missing values give no event. ``ehrdiff prepare meds`` / ``prepare codes`` read such
files back into the same matrix.

Subject ids: the table's first id column (sampled tables carry fresh synthetic ids past every real one). Pass
``reserved_ids`` (the real ids) and any colliding or missing id is replaced by new ids above all of them.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ehrdiff import __version__
from ehrdiff.data.io import write_table
from ehrdiff.data.table import Table, _is_binary
from ehrdiff.errors import DataError
from ehrdiff.fileio import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

FORMATS = ("wide", "long", "meds")
MEDS_VERSION = "0.4.1"  # the MEDS schema version these files follow (meds.DataSchema, CodeMetadataSchema)
SEPARATOR = "//"

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
def staged_dir(target: str | os.PathLike, *, merge: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success its content appears at ``target``.

    A new target is one rename (all or nothing). ``merge=True`` lets the target exist already: each staged file
    replaces its namesake atomically and other files stay. ``merge=False`` needs a missing or empty target.
    On failure the temporary folder is removed and the target is untouched.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: exists and is not a folder; choose another output path")
    if not merge and target.exists() and any(target.iterdir()):
        raise DataError(f"{target}: folder exists and is not empty; choose a new folder or remove it first")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        if target.exists() and merge:
            for item in sorted(tmp.iterdir()):
                os.replace(item, target / item.name)
        else:
            if target.exists():
                target.rmdir()
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


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
                     integers: bool = False) -> tuple[str, np.ndarray]:
    """(column name, ids) for writing: the table's first id column unless it is absent, collides with
    ``reserved_ids`` or (``integers=True``) is not whole numbers; then fresh ids above every reserved id."""
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
        log.warning("subject ids in column '%s' %s; writing fresh ids from %d", name,
                    "collide with real ids" if clash else "are not whole numbers", start)
    return name, np.arange(start, start + table.n_rows, dtype=np.int64)


# ---- events ----------------------------------------------------------------------------------------------------
def table_to_events(table: Table, reserved_ids: Iterable | None = None, *,
                    integer_ids: bool = False) -> tuple[str, pd.DataFrame]:
    """Long events (subject, code, numeric_value) of a wide table, in row order then column order."""
    table.validate("table to write")
    id_name, ids = safe_subject_ids(table, reserved_ids, integers=integer_ids)
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
    events = pd.concat(pieces, ignore_index=True).sort_values(["row", "position"], kind="stable")
    return pd.DataFrame({id_name: ids[events["row"].to_numpy()], "code": events["code"].astype(str).to_numpy(),
                         "numeric_value": events["numeric_value"].to_numpy(dtype=float)})


def write_long(table: Table, path: str | os.PathLike, *, reserved_ids: Iterable | None = None) -> Path:
    """One row per event: SUBJECT_COLUMN, code[, numeric_value] (the value column only when a column is continuous).
    CSV, CSV.GZ, TSV or Parquet by extension."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        raise DataError(f"{path}: unknown file type for long format; use .csv, .csv.gz, .tsv or .parquet")
    _, events = table_to_events(table, reserved_ids)
    if events["numeric_value"].isna().all():
        events = events.drop(columns="numeric_value")
    with atomic_path(path) as tmp:
        if name.endswith((".parquet", ".pq")):
            pq.write_table(pa.Table.from_pandas(events, preserve_index=False), tmp)
        else:
            events.to_csv(tmp, index=False, sep="\t" if ".tsv" in name else ",",
                          compression="gzip" if name.endswith(".gz") else None)
    return path


def write_meds(table: Table, root: str | os.PathLike, *, reserved_ids: Iterable | None = None,
               titles: dict[str, str] | None = None, dataset_name: str = "ehrdiff synthetic data",
               split: str = "train", created_at: datetime.datetime | None = None) -> Path:
    """A MEDS dataset at ``root``: data/0.parquet, metadata/dataset.json, metadata/codes.parquet and
    metadata/subject_splits.parquet (every subject, split ``split``, so subjects without any event are kept).

    Synthetic patients have no timeline, so every event is static (``time`` null, as MEDS allows); each subject's
    events are contiguous. ``titles`` (column -> text) fill codes.parquet's ``description``.
    """
    root = Path(root)
    table.validate("table to write")
    id_name, subjects = safe_subject_ids(table, reserved_ids, integers=True)
    if len(np.unique(subjects)) != len(subjects):
        raise DataError("MEDS output needs one row per subject, but subject ids repeat in this table "
                        "(admission-level data?); write it in wide format instead")
    events = _events(table, id_name, subjects)
    ids = events[id_name]
    data = pa.Table.from_arrays([
        pa.array(ids.to_numpy(dtype=np.int64), pa.int64()),
        pa.nulls(len(events), pa.timestamp("us")),
        pa.array(events["code"].to_numpy(), pa.string()),
        pa.array(events["numeric_value"].to_numpy(dtype=np.float32), pa.float32(), from_pandas=True),
    ], schema=MEDS_DATA_SCHEMA)
    unique_codes = list(dict.fromkeys(events["code"]))
    titles = titles or {}
    codes = pa.Table.from_arrays([
        pa.array(unique_codes, pa.string()),
        pa.array([titles.get(c) for c in unique_codes], pa.string()),
        pa.nulls(len(unique_codes), pa.list_(pa.string())),
    ], schema=MEDS_CODES_SCHEMA)
    splits = pa.Table.from_arrays([pa.array(subjects, pa.int64()), pa.array([split] * len(subjects), pa.string())],
                                  schema=MEDS_SPLITS_SCHEMA)
    created = (created_at or datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0)
    metadata = {"dataset_name": dataset_name, "dataset_version": "1", "etl_name": "ehrdiff",
                "etl_version": __version__, "meds_version": MEDS_VERSION, "created_at": created.isoformat()}
    with staged_dir(root, merge=False) as tmp:
        (tmp / "data").mkdir()
        (tmp / "metadata").mkdir()
        pq.write_table(data, tmp / "data" / "0.parquet")
        pq.write_table(codes, tmp / "metadata" / "codes.parquet")
        pq.write_table(splits, tmp / "metadata" / "subject_splits.parquet")
        write_text_atomic(tmp / "metadata" / "dataset.json", json.dumps(metadata, indent=2) + "\n")
    return root


def write_wide(table: Table, path: str | os.PathLike, *, reserved_ids: Iterable | None = None) -> Path:
    """The table as it is (original column names; Parquet keeps the kinds), ids made safe."""
    table.validate("table to write")
    name = subject_column(table)
    if name is not None and reserved_ids is not None:
        frame = table.frame.copy()
        frame[name] = safe_subject_ids(table, reserved_ids)[1]
        table = Table(frame, dict(table.kinds))
    return write_table(table, path)


def write_synthetic(table: Table | pd.DataFrame, path: str | os.PathLike, format: str = "wide", *,
                    reserved_ids: Iterable | None = None, titles: dict[str, str] | None = None) -> Path:
    """Write a (sampled) table as ``wide`` (Parquet/CSV/TSV/NPZ by extension), ``long`` or ``meds`` (a folder)."""
    if isinstance(table, pd.DataFrame):
        table = Table.from_frame(table)
    if format == "wide":
        return write_wide(table, path, reserved_ids=reserved_ids)
    if format == "long":
        return write_long(table, path, reserved_ids=reserved_ids)
    if format == "meds":
        return write_meds(table, path, reserved_ids=reserved_ids, titles=titles)
    raise DataError(f"unknown output format '{format}'; choose one of {', '.join(FORMATS)}")
