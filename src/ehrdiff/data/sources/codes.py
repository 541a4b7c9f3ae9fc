"""Long (subject, code) rows -> a subject x code matrix; the ``codes`` source for any long CSV/Parquet table.

``code_matrix`` is shared by the mimic, uci-diabetes and meds sources: it is vectorised (one scatter into a numpy
matrix), so 300,000 code rows take well under a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ehrdiff.data.sources._files import find_column, read_long
from ehrdiff.data.sources.split import Prepared
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError


@dataclass
class CodeMatrix:
    frame: pd.DataFrame                 # one row per subject (sorted), one column per kept code
    subjects: np.ndarray                # the row labels
    dropped_min_count: list[str] = field(default_factory=list)


def code_matrix(subjects: pd.Series, codes: pd.Series, *, all_subjects=None, counts: bool = False,
                min_count: int = 1, prefix: str = "") -> CodeMatrix:
    """Binary (or count) matrix of ``subjects`` x ``codes``; rows for ``all_subjects`` without codes stay zero.

    ``min_count``: a code is kept when at least this many rows (subjects) hold it.
    """
    if min_count < 1:
        raise DataError(f"minimum code count must be at least 1, got {min_count}")
    keep = codes.notna().to_numpy()
    subjects, codes = subjects[keep], codes[keep]
    universe = pd.unique(pd.concat([pd.Series(subjects), pd.Series(all_subjects)]) if all_subjects is not None
                         else pd.Series(subjects))
    universe = np.sort(np.asarray(universe))
    rows = np.searchsorted(universe, np.asarray(subjects))
    code_index, code_values = pd.factorize(codes.astype(str), sort=True)
    if counts:
        pairs = pd.DataFrame({"r": rows, "c": code_index}).value_counts()
        matrix = np.zeros((len(universe), len(code_values)), dtype=np.int32)
        r, c = np.asarray(pairs.index.get_level_values(0)), np.asarray(pairs.index.get_level_values(1))
        matrix[r, c] = pairs.to_numpy()
    else:
        matrix = np.zeros((len(universe), len(code_values)), dtype=np.int8)
        matrix[rows, code_index] = 1
    present = np.count_nonzero(matrix, axis=0)
    kept = present >= min_count
    names = [prefix + str(c) for c in code_values]
    if not kept.all():  # selecting columns copies the whole matrix: only when some are dropped
        matrix = matrix[:, kept]
    frame = pd.DataFrame(matrix, columns=[n for n, k in zip(names, kept) if k])
    return CodeMatrix(frame=frame, subjects=universe,
                      dropped_min_count=[n for n, k in zip(names, kept) if not k])


def check_no_clash(code_columns, reserved: list[str], source: str) -> None:
    clash = sorted(set(code_columns) & set(reserved))
    if clash:
        raise DataError(f"{source}: code '{clash[0]}' has the same name as the column '{clash[0]}'; "
                        "rename that code or column")


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


def maybe_integers(values: pd.Series) -> pd.Series:
    """Labels and ids read from CSV arrive as strings; turn whole numbers into integers, keep anything else."""
    converted = pd.to_numeric(values, errors="coerce")
    if converted.notna().all() and (converted % 1 == 0).all():
        return converted.astype("int64")
    return values


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
