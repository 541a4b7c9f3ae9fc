"""The ``codes`` source: any long table with one (subject, code) pair per row (CSV, TSV or Parquet) -> one row per
subject, one column per code."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd

from ehrdiff.data.sources._files import find_column, read_long
from ehrdiff.data.sources.arguments import add_counts, add_min_count
from ehrdiff.data.sources.matrix import check_no_clash, code_matrix, maybe_integers
from ehrdiff.data.sources.registry import data_source
from ehrdiff.data.sources.split import Prepared
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError


def subject_labels(subjects: pd.Series, labels: pd.Series, source: str, column: str) -> pd.Series:
    """One label per subject; a subject with two different labels is an error."""
    frame = pd.DataFrame({"s": subjects.to_numpy(), "y": labels.to_numpy()}).dropna()
    per_subject = frame.drop_duplicates()
    clash = per_subject["s"].duplicated(keep=False)
    if clash.any():
        subject = per_subject.loc[clash, "s"].iloc[0]
        raise DataError(f"{source}: subject {subject!r} has more than one value in label column '{column}'; "
                        "a long table needs one label per subject")
    return per_subject.set_index("s")["y"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="PATH", help="long table (.csv, .csv.gz, .tsv, .parquet)")
    parser.add_argument("--subject-col", required=True, metavar="C", help="subject id column")
    parser.add_argument("--code-col", required=True, metavar="C", help="code column (read as text)")
    parser.add_argument("--label-col", metavar="C", help="optional label column (one value per subject)")
    add_counts(parser)
    add_min_count(parser, "a code", "subjects")


@data_source("codes", help="any long (subject, code) CSV/Parquet -> binary or count matrix", arguments=add_arguments)
def prepare_codes(input: str | os.PathLike, subject_col: str, code_col: str, *, label_col: str | None = None,
                  counts: bool = False, min_count: int = 1) -> Prepared:
    """Any long table with one (subject, code) pair per row -> one row per subject, one column per code.

    Extra columns (a time, a value) are ignored. Codes are read as strings and stripped; empty codes are dropped.
    """
    frame = read_long(input)
    source = str(input)
    subject_col = find_column(frame, source, subject_col)
    code_col = find_column(frame, source, code_col)
    if label_col is not None:
        label_col = find_column(frame, source, label_col)
    subjects = frame[subject_col]
    if subjects.isna().any():
        raise DataError(f"{source}: subject column '{subject_col}' is empty in row {int(subjects.isna().argmax())}; "
                        "every row needs a subject")
    subjects = maybe_integers(subjects)
    codes = frame[code_col].astype("string").str.strip().replace("", pd.NA)
    matrix = code_matrix(subjects, codes, counts=counts, min_count=min_count)
    if matrix.frame.shape[1] == 0:
        raise DataError(f"{source}: no code is left in column '{code_col}' (min count {min_count}); "
                        "check the column or lower --min-count")
    code_columns = list(matrix.frame.columns)
    check_no_clash(code_columns, [subject_col, "label"], source)
    out = matrix.frame.copy()
    out.insert(0, subject_col, matrix.subjects)
    kinds = {subject_col: "id", **{c: ("continuous" if counts else "binary") for c in code_columns}}
    if label_col is not None:
        per_subject = subject_labels(subjects, maybe_integers(frame[label_col]), source, label_col)
        labels = per_subject.reindex(matrix.subjects)
        if labels.isna().any():
            missing = matrix.subjects[int(np.argmax(labels.isna().to_numpy()))]
            raise DataError(f"{source}: subject {missing!r} has no value in label column '{label_col}'")
        out["label"] = labels.to_numpy()
        kinds["label"] = "label"
    table = Table(out, kinds)
    details = {
        "options": {"subject_col": subject_col, "code_col": code_col, "label_col": label_col, "counts": counts,
                    "min_count": min_count},
        "codes": {"kept": len(code_columns), "rows_without_code": int(codes.isna().sum()),
                  "dropped_below_min_count": len(matrix.dropped_min_count)},
        "subjects_without_codes": int((matrix.frame.to_numpy() == 0).all(axis=1).sum()),
    }
    if label_col is not None:
        details["label_definition"] = f"the value of column '{label_col}' (one per subject)"
    return Prepared(table=table, source="codes", subject_column=subject_col, details=details,
                    inputs={"input": source})
