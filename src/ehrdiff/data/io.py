"""Reading and writing wide tables by file extension: Parquet, CSV (optionally gzipped), NPZ.

Parquet files written by ehrdiff carry the column kinds in their schema metadata, so a table prepared by
``ehrdiff prepare`` keeps its kinds through training and sampling. CSV and NPZ kinds are inferred.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ehrdiff.data.table import Table
from ehrdiff.errors import DataError
from ehrdiff.fileio import atomic_path

KINDS_METADATA_KEY = b"ehrdiff.kinds"
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv", ".tsv": "tsv", ".npz": "npz"}


def existing_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path when it is a non-empty file; otherwise a DataError naming it (``what`` says what it
    should have been, e.g. "outcomes file")."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a {what}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    return path


def first_line(exc: Exception) -> str:
    """The first line of an exception's message (or its type when it has none), for one-line DataErrors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def table_format(path: str | os.PathLike) -> str:
    name = Path(path).name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise DataError(f"{path}: unknown file type; use .parquet, .csv, .csv.gz, .tsv or .npz")


def read_frame(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a wide table and the kinds stored with it (empty for CSV/NPZ)."""
    fmt = table_format(path)
    path = existing_file(path)
    try:
        if fmt == "parquet":
            pa_table = pq.read_table(path)
            meta = pa_table.schema.metadata or {}
            kinds = json.loads(meta[KINDS_METADATA_KEY]) if KINDS_METADATA_KEY in meta else {}
            return pa_table.to_pandas(), kinds
        if fmt in ("csv", "tsv"):
            return pd.read_csv(path, sep="\t" if fmt == "tsv" else ","), {}
        with np.load(path, allow_pickle=False) as npz:
            if "data" not in npz:
                raise DataError(f"{path}: NPZ file has no 'data' array "
                                "(write the matrix as data=..., columns optional)")
            data = npz["data"]
            if data.ndim != 2:
                raise DataError(f"{path}: 'data' must be a 2-D matrix (patients x features), got shape {data.shape}")
            columns = [str(c) for c in npz["columns"]] if "columns" in npz else [f"x{i}" for i in range(data.shape[1])]
            kinds = json.loads(str(npz["kinds"])) if "kinds" in npz else {}
            return pd.DataFrame(data, columns=columns), kinds
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file has no rows or columns") from None
    except Exception as exc:  # pyarrow, pandas and numpy raise many types for a corrupt file
        raise DataError(f"{path}: could not read as {fmt.upper()} ({first_line(exc)})") from None


def read_table(path: str | os.PathLike, kinds: dict[str, str] | None = None) -> Table:
    """Read and validate a table; ``kinds`` overrides stored or inferred kinds."""
    frame, stored = read_frame(path)
    return Table.from_frame(frame, {**stored, **(kinds or {})}, source=str(path))


def write_table(table: Table | pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write atomically in the format named by the extension; Parquet keeps the kinds."""
    path = Path(path)
    fmt = table_format(path)
    frame = table.frame if isinstance(table, Table) else table
    kinds = table.kinds if isinstance(table, Table) else {}
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            pa_table = pa.Table.from_pandas(frame, preserve_index=False)
            meta = dict(pa_table.schema.metadata or {})
            meta[KINDS_METADATA_KEY] = json.dumps(kinds).encode()
            # zstd without dictionary pages: faster than the defaults on wide 0/1 tables, and smaller files
            pq.write_table(pa_table.replace_schema_metadata(meta), tmp, compression="zstd", use_dictionary=False)
        elif fmt in ("csv", "tsv"):
            compression = "gzip" if path.name.lower().endswith(".gz") else None
            frame.to_csv(tmp, index=False, sep="\t" if fmt == "tsv" else ",", compression=compression)
        else:
            numeric = frame.apply(pd.to_numeric, errors="coerce")
            if numeric.isna().to_numpy().sum() > frame.isna().to_numpy().sum():
                raise DataError(f"{path}: NPZ holds numbers only; this table has text columns (write .parquet or .csv)")
            with open(tmp, "wb") as f:
                np.savez(f, data=numeric.to_numpy(dtype=np.float32), columns=np.array(frame.columns, dtype=str),
                         kinds=np.array(json.dumps(kinds)))
    return path
