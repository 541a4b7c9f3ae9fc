"""Reading and writing wide tables by file extension: Parquet, CSV (optionally gzipped), NPZ.

Parquet files written by ehrdiff carry the column kinds in their schema metadata, so a table prepared by
``ehrdiff prepare`` keeps its kinds through training and sampling. CSV and NPZ kinds are inferred.

Reading never changes a user's table without a word: a CSV header that pandas renames (a name given twice, an
empty name) and a column of 0s and 1s that inference reads as continuous (because of a 2, a -1 or a gap) are each
said in one warning line naming the column, the rows and what to do.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ehrdiff.data.rules import RULES_ATTR, carried_rules, rules_to_json
from ehrdiff.data.table import Table, carried_kinds, dates_as_days
from ehrdiff.errors import DataError
from ehrdiff.fileio import atomic_path

log = logging.getLogger(__name__)
def check_spans(table: Table, source: str) -> None:
    """DataError for a continuous column whose values span more than a float holds (largest minus smallest
    overflows, e.g. 1e308 and -1e308): every encoder scales by that span, and would turn the column into NaN."""
    for name in table.columns_of("continuous"):
        raw = table.frame[name].to_numpy(dtype=float, na_value=np.nan)
        finite = np.where(np.isfinite(raw), raw, np.nan)
        if np.isnan(finite).all():
            continue
        low, high = int(np.nanargmin(finite)), int(np.nanargmax(finite))
        if not math.isfinite(float(raw[high]) - float(raw[low])):
            raise DataError(f"{source}: column '{name}' spans from {raw[low]:g} (row {low}) to {raw[high]:g} "
                            f"(row {high}), more than a number can hold once scaled; fix those rows or rescale the "
                            "column (other units)")


MOSTLY_ONE_KIND = 0.95    # a column whose other values fill at most 5% of rows is taken for a 0/1 (number) column
WARNED_COLUMNS = 5        # columns named one by one in a warning; the rest are counted

KINDS_METADATA_KEY = b"ehrdiff.kinds"
RULES_METADATA_KEY = b"ehrdiff.rules"      # the table's rules (data/rules.py), a JSON array; absent when none
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
            kinds = stored_kinds(meta[KINDS_METADATA_KEY], path, PARQUET_KINDS) if KINDS_METADATA_KEY in meta else {}
            frame = pa_table.to_pandas()
            if RULES_METADATA_KEY in meta:      # carried like Table.to_frame's, checked by Table.from_frame
                frame.attrs[RULES_ATTR] = stored_rules(meta[RULES_METADATA_KEY], path)
            return frame, kinds
        if fmt in ("csv", "tsv"):
            return _read_delimited(path, "\t" if fmt == "tsv" else ","), {}
        with np.load(path, allow_pickle=False) as npz:
            if "data" not in npz:
                raise DataError(f"{path}: NPZ file has no 'data' array "
                                "(write the matrix as data=..., columns optional)")
            data = npz["data"]
            if data.ndim != 2:
                raise DataError(f"{path}: 'data' must be a 2-D matrix (patients x features), got shape {data.shape}")
            columns = [str(c) for c in npz["columns"]] if "columns" in npz else [f"x{i}" for i in range(data.shape[1])]
            kinds = stored_kinds(str(npz["kinds"]), path, NPZ_KINDS) if "kinds" in npz else {}
            return pd.DataFrame(data, columns=columns), kinds
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file has no rows or columns") from None
    except Exception as exc:  # pyarrow, pandas and numpy raise many types for a corrupt file
        raise DataError(f"{path}: could not read as {fmt.upper()} ({first_line(exc)})") from None


PARQUET_KINDS = f"the column kinds in its metadata ('{KINDS_METADATA_KEY.decode()}')"
NPZ_KINDS = "its 'kinds' array"


def stored_kinds(text: str | bytes, path: Path, where: str) -> dict[str, str]:
    """The column kinds stored in a file (``where`` says where, for the message): a JSON object of column name ->
    kind name, or a DataError."""
    try:
        kinds = json.loads(text)
    except (ValueError, RecursionError):
        found = "text that is not JSON"
    else:
        if isinstance(kinds, dict) and all(isinstance(kind, str) for kind in kinds.values()):
            return kinds
        found = "an object with kinds that are not text" if isinstance(kinds, dict) else f"a JSON {_json_type(kinds)}"
    raise DataError(f"{path}: {where} must be a JSON object of column name -> kind, found {found}; write the file "
                    "again with ehrdiff's write_table, or without the kinds")


def stored_rules(text: bytes, path: Path) -> list:
    """The rules stored in a Parquet file's metadata: a JSON array (each rule is checked when the table is made)."""
    try:
        rules = json.loads(text)
    except (ValueError, RecursionError):
        rules = None
    if not isinstance(rules, list):
        raise DataError(f"{path}: the rules in its metadata ('{RULES_METADATA_KEY.decode()}') must be a JSON array of "
                        "rule objects; write the file again with ehrdiff's write_table")
    return rules


def table_metadata(kinds: dict[str, str], rules) -> dict[bytes, bytes]:
    """What a Parquet file written by ehrdiff carries in its schema metadata: the kinds, and the rules if any."""
    meta = {KINDS_METADATA_KEY: json.dumps(kinds).encode()}
    if rules:
        meta[RULES_METADATA_KEY] = json.dumps(rules_to_json(tuple(rules))).encode()
    return meta


def _json_type(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    """A CSV/TSV table whose columns are the header's, one for one (said in a warning where pandas renamed one)."""
    frame = pd.read_csv(path, sep=sep)
    if not frame.index.equals(pd.RangeIndex(len(frame))):  # pandas made the first field(s) an index: longer rows
        raise DataError(f"{path}: the rows have more fields than the header has names ({len(frame.columns)}); "
                        "add the missing names to the header")
    warn_renamed_columns(path, sep, list(frame.columns))
    return frame


def warn_renamed_columns(path: str | os.PathLike, sep: str, columns: list) -> None:
    """One warning line when pandas read the header of a delimited file as other ``columns`` than it says: a name
    given twice becomes ``a.1``, an empty one ``Unnamed: 2``."""
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    renamed = [(i, name, str(column)) for i, (name, column) in enumerate(zip(header, columns)) if name != str(column)]
    if not renamed:
        return
    shown = ", ".join(f"column {i + 1} {name!r} as {column!r}" if name else f"column {i + 1} (no name) as {column!r}"
                      for i, name, column in renamed[:WARNED_COLUMNS])
    more = f" and {len(renamed) - WARNED_COLUMNS} more" if len(renamed) > WARNED_COLUMNS else ""
    log.warning("warning: %s: the header repeats or leaves out column names, so they were renamed: %s%s; "
                "give every column its own name in the file's header", path, shown, more)


def read_table(path: str | os.PathLike, kinds: dict[str, str] | None = None, *,
               explain_kinds: bool = True) -> Table:
    """Read and validate a table; ``kinds`` overrides stored or inferred kinds. ``explain_kinds``: warn where
    inference reads a column of 0s and 1s as continuous, or of numbers as categorical (off for tables whose kinds
    another table decides)."""
    frame, stored = read_frame(path)
    given = {**stored, **(kinds or {})}
    table = Table.from_frame(frame, given, source=str(path))
    check_spans(table, str(path))
    if explain_kinds:
        warn_about_inferred_kinds(table, set(given), path)
    return table


def warn_about_inferred_kinds(table: Table, given: set[str], path: str | os.PathLike) -> None:
    """One warning line per column whose inferred kind a few of its values changed: 0s and 1s read as continuous
    (because of a 2, a -1 or a gap), numbers read as categorical (because of a word, or a whole number too large
    for 64 bits). Columns in ``given`` have the kind their user or file stated and are left alone."""
    found = []
    for name in table.columns:
        kind, values = table.kinds[name], table.frame[name]
        if name in given or kind not in ("continuous", "categorical"):
            continue
        rows = _non_binary_rows(values) if kind == "continuous" else _non_number_rows(values)
        if rows is not None:
            found.append((name, kind, rows))
    for name, kind, rows in found[:WARNED_COLUMNS]:
        values = table.frame[name]
        meant = "binary" if _zeros_and_ones(values.drop(values.index[rows])) else "continuous"
        held, column = {"binary": ("0 and 1", "a 0/1 column"), "continuous": ("numbers", "a number column")}[meant]
        log.warning("warning: %s: column '%s' holds %s except in %d row(s) (%s), so it is read as %s, not %s; if "
                    "it is %s fix those rows, otherwise give its kind (kinds={'%s': '%s'}) or ignore this", path,
                    name, held, len(rows), _some_rows(values, rows), kind, meant, column, name, kind)
    if len(found) > WARNED_COLUMNS:
        log.warning("warning: %s: %d more columns read as another kind than most of their values suggest (%s)",
                    path, len(found) - WARNED_COLUMNS, ", ".join(n for n, _, _ in found[WARNED_COLUMNS:][:10]))


def _some_rows(values: pd.Series, rows: np.ndarray, shown: int = 3) -> str:
    """'row 4: 2, row 9: missing and 3 more': the first ``shown`` of ``rows`` with their values."""
    text = ", ".join(f"row {row}: {'missing' if pd.isna(values.iloc[row]) else repr(plain_value(values.iloc[row]))}"
                     for row in rows[:shown])
    return text + (f" and {len(rows) - shown} more" if len(rows) > shown else "")


def _zeros_and_ones(values: pd.Series) -> bool:
    """Every value is the number 0 or 1 (text '0' and '1' included), and there is one."""
    numbers = pd.to_numeric(values, errors="coerce")
    return len(values) > 0 and bool(numbers.isin([0, 1]).all())


def _non_binary_rows(values: pd.Series) -> np.ndarray | None:
    """The rows that keep a column of 0s and 1s from being binary: all its values but a few (or its gaps) are 0
    and 1, both present. None for any other column."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return None
    raw = values.to_numpy(dtype=float, na_value=np.nan)
    zero, one = raw == 0, raw == 1
    if not zero.any() or not one.any():
        return None
    wrong = ~(zero | one)
    only_gaps = not (wrong & ~np.isnan(raw)).any()
    if not only_gaps and wrong.mean() > 1 - MOSTLY_ONE_KIND:
        return None
    return np.flatnonzero(wrong)


def _non_number_rows(values: pd.Series) -> np.ndarray | None:
    """The rows that keep a column of numbers from being continuous: words among numbers (all but a few values
    numbers), or whole numbers too large for 64 bits (which pandas keeps as text). None for any other column."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return None
    present = values.notna().to_numpy()
    numbers = pd.to_numeric(values, errors="coerce").notna().to_numpy()
    words = present & ~numbers
    if not numbers.any() or words.sum() > (1 - MOSTLY_ONE_KIND) * present.sum():
        return None
    if not words.any():   # every value a number: some too large for pandas' 64-bit whole numbers
        words = np.array([isinstance(v, int) and not -2**63 <= v < 2**63 for v in values], dtype=bool)
    return np.flatnonzero(words) if words.any() else None


def plain_value(value) -> object:
    """numpy scalars as plain Python values, so a message reads 2.0 rather than np.float64(2.0)."""
    return value.item() if isinstance(value, np.generic) else value


def write_table(table: Table | pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write atomically in the format named by the extension; Parquet keeps the kinds."""
    path = Path(path)
    fmt = table_format(path)
    frame = table.frame if isinstance(table, Table) else table
    kinds = table.kinds if isinstance(table, Table) else carried_kinds(table)
    rules = table.rules if isinstance(table, Table) else carried_rules(table, str(path))
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            pa_table = pa.Table.from_pandas(frame, preserve_index=False)
            meta = {**(pa_table.schema.metadata or {}), **table_metadata(kinds, rules)}
            # zstd without dictionary pages: faster than the defaults on wide 0/1 tables, and smaller files
            pq.write_table(pa_table.replace_schema_metadata(meta), tmp, compression="zstd", use_dictionary=False)
        elif fmt in ("csv", "tsv"):
            compression = "gzip" if path.name.lower().endswith(".gz") else None
            frame.to_csv(tmp, index=False, sep="\t" if fmt == "tsv" else ",", compression=compression)
        else:
            frame = dates_as_days(frame, kinds)     # NPZ holds numbers: dates as day counts since 1970-01-01
            numeric = frame.apply(pd.to_numeric, errors="coerce")
            if numeric.isna().to_numpy().sum() > frame.isna().to_numpy().sum():
                raise DataError(f"{path}: NPZ holds numbers only; this table has text columns (write .parquet or .csv)")
            with open(tmp, "wb") as f:
                np.savez(f, data=numeric.to_numpy(dtype=np.float32), columns=np.array(frame.columns, dtype=str),
                         kinds=np.array(json.dumps(kinds)))
    return path
