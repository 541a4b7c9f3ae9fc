"""Long (subject, code) rows -> a subject x code matrix: the shared step of the code-based sources (codes, mimic,
uci-diabetes, meds). ``code_matrix`` is vectorised: one scatter into a numpy matrix, no per-row Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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


def maybe_integers(values: pd.Series) -> pd.Series:
    """Labels and ids read from CSV arrive as strings; turn whole numbers into integers, keep anything else."""
    converted = pd.to_numeric(values, errors="coerce")
    if converted.notna().all() and (converted % 1 == 0).all():
        return converted.astype("int64")
    return values
