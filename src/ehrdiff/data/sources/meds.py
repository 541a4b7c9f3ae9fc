"""A MEDS dataset (``ROOT/data/**/*.parquet`` with ``subject_id``, ``time``, ``code``, ``numeric_value``; the
``meds`` package's DataSchema) -> one row per subject, one column per code (1 if the subject has it; counts with
``counts=True``).

Options: ``prefixes`` keeps only codes starting with one of them (e.g. ``("DIAGNOSIS//",)``); ``label_code`` turns
one code into the label (1 if the subject has it) and drops its column; ``min_count`` drops codes held by fewer
subjects. Every subject in the data or in ``metadata/subject_splits.parquet`` gets a row, even one with no kept
code. Descriptions from ``metadata/codes.parquet`` (when present) become the column titles in summary.json. Times
and numeric values are not used by this matrix.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ehrdiff.data.io import first_line
from ehrdiff.data.sources.arguments import add_counts, add_min_count
from ehrdiff.data.sources.matrix import check_no_clash, code_matrix
from ehrdiff.data.sources.registry import data_source
from ehrdiff.data.sources.split import Prepared
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError


def _read_shard(path: Path) -> pd.DataFrame:
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DataError(f"{path}: could not read as Parquet ({first_line(exc)})") from None
    for name, check, want in (("subject_id", pa.types.is_integer, "integers"), ("code", _is_text, "text")):
        if name not in schema.names:
            raise DataError(f"{path}: required MEDS column '{name}' is missing (columns found: "
                            f"{', '.join(schema.names[:8])}); is this a MEDS data shard?")
        if not check(schema.field(name).type):
            raise DataError(f"{path}: MEDS column '{name}' holds {schema.field(name).type}, expected {want}")
    frame = pq.read_table(path, columns=["subject_id", "code"]).to_pandas()
    if frame["subject_id"].isna().any() or frame["code"].isna().any():
        row = int((frame["subject_id"].isna() | frame["code"].isna()).to_numpy().argmax())
        raise DataError(f"{path}: row {row} has no subject_id or no code; MEDS requires both")
    return frame


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or (
        pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)))


def _listed_subjects(root: Path) -> np.ndarray:
    """Subjects named in metadata/subject_splits.parquet (they may have no events at all)."""
    path = root / "metadata" / "subject_splits.parquet"
    if not path.exists():
        return np.array([], dtype=np.int64)
    try:
        ids = pq.read_table(path, columns=["subject_id"]).column("subject_id").to_numpy()
    except Exception as exc:  # a foreign file: say which one
        raise DataError(f"{path}: could not read its subject_id column ({first_line(exc)})") from None
    return ids.astype(np.int64)


def _descriptions(root: Path) -> dict[str, str]:
    path = root / "metadata" / "codes.parquet"
    if not path.exists():
        return {}
    try:
        table = pq.read_table(path)
    except Exception:  # a broken optional metadata file must not stop the data from loading
        return {}
    if "code" not in table.column_names or "description" not in table.column_names:
        return {}
    frame = table.select(["code", "description"]).to_pandas().dropna()
    return dict(zip(frame["code"].astype(str), frame["description"].astype(str)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, metavar="PATH", help="MEDS root folder (holds data/)")
    parser.add_argument("--prefix", dest="prefixes", action="append", default=[], metavar="P",
                        help="keep only codes starting with P; repeatable")
    parser.add_argument("--label-code", metavar="CODE", help="a code that becomes the label (1 if the subject has it)")
    add_counts(parser)
    add_min_count(parser, "a code", "subjects")


@data_source("meds", help="a MEDS dataset folder -> subject x code matrix", arguments=add_arguments)
def prepare_meds(root: str | os.PathLike, *, prefixes: tuple[str, ...] | list[str] = (), label_code: str | None = None,
                 counts: bool = False, min_count: int = 1) -> Prepared:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: MEDS root folder not found")
    shards = sorted((root / "data").rglob("*.parquet")) if (root / "data").is_dir() else []
    if not shards:
        raise DataError(f"{root}: no data/**/*.parquet files; a MEDS root holds its events under data/")
    events = pd.concat([_read_shard(p) for p in shards], ignore_index=True)
    if len(events) == 0:
        raise DataError(f"{root}: the data files have no rows")
    subjects = events["subject_id"].astype(np.int64)
    codes = events["code"].astype(str)
    all_subjects = np.unique(np.concatenate([subjects.to_numpy(), _listed_subjects(root)]))

    label = None
    if label_code is not None:
        has_label = codes == label_code
        if not has_label.any():
            raise DataError(f"{root}: label code '{label_code}' never occurs; check the code (it is case-sensitive)")
        positive = np.unique(subjects[has_label].to_numpy())
        label = np.isin(all_subjects, positive).astype(np.int64)
        codes = codes.where(~has_label)
    kept = codes.notna()
    if prefixes:
        kept &= codes.str.startswith(tuple(prefixes)).fillna(False).astype(bool)
    n_filtered = int(codes.notna().sum() - kept.sum())
    matrix = code_matrix(subjects[kept].reset_index(drop=True), codes[kept].reset_index(drop=True),
                         all_subjects=all_subjects, counts=counts, min_count=min_count)
    if matrix.frame.shape[1] == 0:
        shown = f" starting with {', '.join(prefixes)}" if prefixes else ""
        raise DataError(f"{root}: no code{shown} is held by at least {min_count} subject(s); "
                        "check --prefix and --min-count")
    check_no_clash(matrix.frame.columns, ["subject_id", "label"], str(root))
    frame = pd.concat([pd.DataFrame({"subject_id": matrix.subjects}), matrix.frame], axis=1)
    kinds = {"subject_id": "id", **{c: ("continuous" if counts else "binary") for c in matrix.frame.columns}}
    if label is not None:
        frame["label"] = label
        kinds["label"] = "label"
    details = {
        "options": {"prefixes": list(prefixes), "label_code": label_code, "counts": counts, "min_count": min_count},
        "events": {"shards": len(shards), "rows": int(len(events)), "filtered_out_by_prefix": n_filtered},
        "codes": {"kept": int(matrix.frame.shape[1]), "dropped_below_min_count": len(matrix.dropped_min_count)},
        "subjects_without_codes": int((matrix.frame.to_numpy() == 0).all(axis=1).sum()),
    }
    if label_code is not None:
        details["label_definition"] = f"1 if the subject has code '{label_code}', else 0"
    descriptions = _descriptions(root)
    titles = {c: descriptions[c] for c in matrix.frame.columns if c in descriptions}
    if titles:
        details["titles"] = titles
    return Prepared(table=Table(frame, kinds), source="meds", subject_column="subject_id", details=details,
                    inputs={"root": str(root)})
