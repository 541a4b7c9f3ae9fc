"""Reading the user's raw files for the sources: every failure becomes one DataError line naming the file."""

from __future__ import annotations

import os
from typing import IO

import pandas as pd
import pyarrow.parquet as pq

from ehrdiff.data.io import existing_file, first_line
from ehrdiff.errors import DataError


def read_csv(source: str | os.PathLike | IO[bytes], name: str, *, all_strings: bool = True, header: bool = True,
             sep: str | None = None, dtype: dict | None = None) -> pd.DataFrame:
    """Read a CSV (gzip inferred from the name). ``all_strings`` keeps codes such as ``0389`` intact."""
    if sep is None:
        sep = "\t" if ".tsv" in str(name).lower() else ","
    options: dict = {"sep": sep, "header": 0 if header else None}
    if all_strings:
        options.update(dtype=str, keep_default_na=False, na_values=[""])
    elif dtype:
        options["dtype"] = dtype
    try:
        frame = pd.read_csv(source, **options)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: file is empty (no header or rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{name}: could not read as CSV ({first_line(exc)})") from None
    if len(frame) == 0:
        raise DataError(f"{name}: file has a header but no rows")
    return frame


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except Exception as exc:  # pyarrow raises many types for a corrupt or foreign file
        raise DataError(f"{path}: could not read as Parquet ({first_line(exc)})") from None


def read_long(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV/TSV (strings kept as strings) or Parquet file, chosen by extension."""
    path = existing_file(path)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        frame = read_parquet(path)
        if len(frame) == 0:
            raise DataError(f"{path}: file has no rows")
        return frame
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        return read_csv(path, str(path))
    raise DataError(f"{path}: unknown file type; use .csv, .csv.gz, .tsv or .parquet")


def find_column(frame: pd.DataFrame, source: str, *names: str, required: bool = True) -> str | None:
    """The frame's column matching any of ``names`` case-insensitively (MIMIC-III upper case, demo lower case)."""
    lower = {str(c).lower(): c for c in frame.columns}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    if required:
        shown = ", ".join(map(str, list(frame.columns)[:8]))
        raise DataError(f"{source}: required column '{names[0]}' is missing (columns found: {shown}); "
                        "check that this is the right file")
    return None


def line_of(frame: pd.DataFrame, mask: pd.Series) -> int:
    """The file line (header = line 1) of the first True in ``mask`` for a frame read with a default index."""
    position = int(mask.to_numpy().argmax())
    return position + 2
