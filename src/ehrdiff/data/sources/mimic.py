"""MIMIC-III ``DIAGNOSES_ICD`` / ``PROCEDURES_ICD`` and MIMIC-IV ``diagnoses_icd`` / ``procedures_icd`` -> a binary
patient (or admission) x ICD-category matrix, the EHRDiff paper's MIMIC input.

Column names are matched case-insensitively (full MIMIC-III: ``SUBJECT_ID, HADM_ID, ICD9_CODE``; the demo copy:
lower case; MIMIC-IV: ``subject_id, hadm_id, icd_code, icd_version``). Codes are read as strings.

ICD-10 rows (MIMIC-IV ``icd_version`` 10) need a choice, ``icd10=``:
  "keep"   (default) ICD-10-CM rows become 3-character ICD-10 categories in their own columns (``ICD10:I10``),
           never mixed with ICD-9 categories (``ICD9:401``), so every MIMIC-IV patient keeps a row
  "drop"   keep ICD-9 rows only, the EHRDiff paper's vocabulary; the number dropped goes into summary.json
  "error"  stop with an error when a file mixes ICD-9 and ICD-10 rows
summary.json counts the rows of each vocabulary that became table cells (``codes.rows_kept``) and the columns of
each (``codes.columns_by_vocabulary``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ehrdiff.data import icd
from ehrdiff.data.io import existing_file
from ehrdiff.data.sources._files import find_column, line_of, read_long
from ehrdiff.data.sources.arguments import add_min_count
from ehrdiff.data.sources.matrix import CodeMatrix, code_matrix, maybe_integers
from ehrdiff.data.sources.registry import data_source
from ehrdiff.data.sources.split import Prepared
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError

LEVELS = ("patient", "admission")
ICD10_CHOICES = ("drop", "keep", "error")

# (kind of file, ICD version) -> (category rule, column prefix, what the code is called in messages)
RULES = {
    ("diagnoses", 9): (icd.icd9_diagnosis, icd.PREFIX["icd9"], "ICD-9-CM diagnosis"),
    ("diagnoses", 10): (icd.icd10_diagnosis, icd.PREFIX["icd10"], "ICD-10-CM diagnosis"),
    ("procedures", 9): (icd.icd9_procedure, icd.PREFIX["icd9proc"], "ICD-9-CM procedure"),
    ("procedures", 10): (icd.icd10_procedure, icd.PREFIX["icd10pcs"], "ICD-10-PCS procedure"),
}


@dataclass
class _Rows:
    """Category rows read from one file, plus what was dropped on the way."""

    subjects: pd.Series
    admissions: pd.Series
    categories: pd.Series
    raw_codes: pd.Series
    stats: dict = field(default_factory=dict)


def _read_rows(path: str | os.PathLike, kind: str, icd10: str) -> _Rows:
    source = str(path)
    frame = read_long(path)
    subject = find_column(frame, source, "subject_id")
    admission = find_column(frame, source, "hadm_id")
    code = find_column(frame, source, "icd9_code", "icd_code")
    version_col = find_column(frame, source, "icd_version", required=False)
    if code.lower() == "icd_code" and version_col is None:
        raise DataError(f"{source}: required column 'icd_version' is missing (MIMIC-IV files name the ICD version "
                        "of each code); check that this is the right file")
    for column in (subject, admission):
        empty = frame[column].isna()
        if empty.any():
            raise DataError(f"{source}: line {line_of(frame, empty)}: column '{column}' is empty; "
                            "every row needs a subject and an admission id")
    if version_col is None:
        versions = pd.Series(9, index=frame.index)
    else:
        versions = pd.to_numeric(frame[version_col], errors="coerce")
        bad = ~versions.isin([9, 10])
        if bad.any():
            raise DataError(f"{source}: line {line_of(frame, bad)}: column '{version_col}' has "
                            f"{frame[version_col][bad].iloc[0]!r}; expected 9 or 10")
    stats = {"rows": int(len(frame)), "rows_without_code": int(frame[code].isna().sum()),
             "icd9_rows": int((versions == 9).sum()), "icd10_rows": int((versions == 10).sum())}
    n9, n10 = stats["icd9_rows"], stats["icd10_rows"]
    if icd10 == "error" and n9 and n10:
        raise DataError(f"{source}: mixes ICD versions ({n9} ICD-9 and {n10} ICD-10 rows); choose what to do with "
                        "the ICD-10 rows: --icd10 drop (ICD-9 only) or --icd10 keep (separate ICD-10 columns)")
    categories = pd.Series(pd.NA, index=frame.index, dtype="string")
    for version in (9, 10):
        rows = (versions == version).to_numpy()
        if not rows.any() or (version == 10 and icd10 == "drop"):
            continue
        rule, prefix, name = RULES[(kind, version)]
        cats, bad = rule(frame.loc[rows, code])
        if bad.any():
            line = int(np.flatnonzero(rows)[int(bad.to_numpy().argmax())]) + 2
            raise DataError(f"{source}: line {line}: column '{code}' has unreadable {name} code "
                            f"{frame.loc[rows, code][bad].iloc[0]!r}; fix or remove that row")
        categories[rows] = prefix + cats
    stats["icd10_rows_dropped"] = n10 if icd10 == "drop" else 0
    keep = categories.notna().to_numpy()
    return _Rows(subjects=maybe_integers(frame[subject])[keep].reset_index(drop=True),
                 admissions=maybe_integers(frame[admission])[keep].reset_index(drop=True),
                 categories=categories[keep].reset_index(drop=True),
                 raw_codes=frame[code][keep].astype(str).str.strip().str.upper().reset_index(drop=True),
                 stats=stats)


def read_titles(path: str | os.PathLike) -> dict[tuple[int, str], str]:
    """(ICD version, undotted code) -> title from a MIMIC ``d_icd_diagnoses`` / ``d_icd_procedures`` file."""
    source = str(path)
    frame = read_long(existing_file(path, "titles file"))
    code = find_column(frame, source, "icd9_code", "icd_code")
    title = find_column(frame, source, "long_title", "short_title", "title")
    version_col = find_column(frame, source, "icd_version", required=False)
    versions = pd.to_numeric(frame[version_col], errors="coerce").fillna(9).astype(int) if version_col \
        else pd.Series(9, index=frame.index)
    codes = frame[code].astype(str).str.strip().str.upper().str.replace(".", "", regex=False)
    return dict(zip(zip(versions.tolist(), codes.tolist()), frame[title].astype(str).tolist()))


def category_titles(rows: _Rows, titles: dict[tuple[int, str], str]) -> dict[str, str]:
    """A title per category column: the category's own title when the titles file lists it, otherwise the
    title of the category's most frequent code in the data, marked with that code."""
    out: dict[str, str] = {}
    counts = pd.DataFrame({"cat": rows.categories, "raw": rows.raw_codes}).value_counts()
    for (category, raw), _ in counts.items():
        if category in out:
            continue
        prefix, bare = category.split(":", 1)
        version = 10 if prefix.startswith("ICD10") else 9
        if (version, bare) in titles:
            out[category] = titles[(version, bare)]
        elif (version, raw.replace(".", "")) in titles:
            out[category] = f"{titles[(version, raw.replace('.', ''))]} (most frequent code {raw})"
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--diagnoses", required=True, metavar="PATH",
                        help="DIAGNOSES_ICD / diagnoses_icd (.csv[.gz])")
    parser.add_argument("--procedures", metavar="PATH", help="PROCEDURES_ICD / procedures_icd (optional)")
    parser.add_argument("--level", choices=LEVELS, default="patient",
                        help="one row per patient (default) or per admission")
    parser.add_argument("--icd10", choices=ICD10_CHOICES, default="keep",
                        help="MIMIC-IV ICD-10 rows: keep as separate 3-character ICD-10 columns (default), drop "
                             "(ICD-9 only; counted in summary.json), or error when a file mixes versions")
    add_min_count(parser, "a code category", "rows")
    parser.add_argument("--titles", metavar="PATH", help="d_icd_diagnoses file: code titles into summary.json")
    parser.add_argument("--procedure-titles", metavar="PATH", help="d_icd_procedures file (with --procedures)")


@data_source("mimic", help="MIMIC-III/IV diagnoses (and procedures) -> binary patient x ICD-category matrix",
             arguments=add_arguments)
def prepare_mimic(diagnoses: str | os.PathLike, procedures: str | os.PathLike | None = None, *,
                  level: str = "patient", icd10: str = "keep", min_count: int = 1,
                  titles: str | os.PathLike | None = None,
                  procedure_titles: str | os.PathLike | None = None) -> Prepared:
    """Binary matrix: one row per patient (``level="patient"``) or admission, one column per ICD category."""
    if level not in LEVELS:
        raise DataError(f"unknown level '{level}' for MIMIC; choose one of {', '.join(LEVELS)}")
    if icd10 not in ICD10_CHOICES:
        raise DataError(f"unknown --icd10 choice '{icd10}'; choose one of {', '.join(ICD10_CHOICES)}")
    parts = {"diagnoses": _read_rows(diagnoses, "diagnoses", icd10)}
    if procedures is not None:
        parts["procedures"] = _read_rows(procedures, "procedures", icd10)
    matrix, keys = _category_matrix(parts, level, icd10, min_count, diagnoses)
    frame = pd.concat([keys, matrix.frame], axis=1)
    kinds = {c: "id" for c in keys.columns} | {c: "binary" for c in matrix.frame.columns}
    details = _details(parts, matrix, level=level, icd10=icd10, min_count=min_count)
    title_map: dict[str, str] = {}
    for kind, path in (("diagnoses", titles), ("procedures", procedure_titles)):
        if path is not None and kind in parts:
            title_map.update(category_titles(parts[kind], read_titles(path)))
    if title_map:
        details["titles"] = {c: title_map[c] for c in matrix.frame.columns if c in title_map}
    inputs = {"diagnoses": str(diagnoses)} | ({"procedures": str(procedures)} if procedures else {})
    return Prepared(table=Table(frame, kinds), source="mimic", subject_column="subject_id", details=details,
                    inputs=inputs)


def _category_matrix(parts: dict[str, _Rows], level: str, icd10: str, min_count: int,
                     diagnoses: str | os.PathLike) -> tuple[CodeMatrix, pd.DataFrame]:
    """The category matrix, one row per patient or per admission, and its id columns (subject_id[, hadm_id])."""
    subjects = pd.concat([p.subjects for p in parts.values()], ignore_index=True)
    admissions = pd.concat([p.admissions for p in parts.values()], ignore_index=True)
    categories = pd.concat([p.categories for p in parts.values()], ignore_index=True)
    if len(categories) == 0:
        hint = " (all rows are ICD-10: use --icd10 keep)" if icd10 == "drop" else ""
        raise DataError(f"{diagnoses}: no usable code rows{hint}")
    if level == "patient":
        matrix = code_matrix(subjects, categories, min_count=min_count)
        keys = pd.DataFrame({"subject_id": matrix.subjects})
    else:
        matrix, keys = _admission_matrix(subjects, admissions, categories, min_count, diagnoses)
    if matrix.frame.shape[1] == 0:
        raise DataError(f"{diagnoses}: no code category holds at least {min_count} rows; lower --min-count")
    return matrix, keys


def _admission_matrix(subjects: pd.Series, admissions: pd.Series, categories: pd.Series, min_count: int,
                      diagnoses: str | os.PathLike) -> tuple[CodeMatrix, pd.DataFrame]:
    """One row per admission, sorted by (subject_id, hadm_id); an admission must belong to one subject."""
    pair = pd.DataFrame({"s": subjects, "a": admissions}).drop_duplicates()
    owners = pair.groupby("a")["s"].nunique()
    if (owners > 1).any():
        raise DataError(f"{diagnoses}: admission {owners.index[int(np.argmax(owners.to_numpy() > 1))]} "
                        "belongs to more than one subject; check the subject_id and hadm_id columns")
    matrix = code_matrix(admissions, categories, min_count=min_count)
    owner = pair.drop_duplicates("a").set_index("a")["s"]
    keys = pd.DataFrame({"subject_id": owner.reindex(matrix.subjects).to_numpy(), "hadm_id": matrix.subjects})
    order = keys.sort_values(["subject_id", "hadm_id"], kind="stable").index.to_numpy()
    matrix.frame = matrix.frame.iloc[order].reset_index(drop=True)
    return matrix, keys.iloc[order].reset_index(drop=True)


def _details(parts: dict[str, _Rows], matrix: CodeMatrix, *, level: str, icd10: str, min_count: int) -> dict:
    """summary.json entries: options, codes kept and dropped per file, and a note when ICD-10 rows were dropped."""
    details: dict = {
        "level": level,
        "options": {"level": level, "icd10": icd10, "min_count": min_count, "procedures": "procedures" in parts},
        "codes": {
            "kept": int(matrix.frame.shape[1]),
            "rule": "ICD-9-CM diagnoses: 3-character categories, E codes 4 (the EHRDiff paper's rule); ICD-9 "
                    "procedures: 2 digits; ICD-10-CM and ICD-10-PCS: 3 characters",
            "dropped_below_min_count": len(matrix.dropped_min_count),
            "files": {name: p.stats | _rows_kept(p, matrix) for name, p in parts.items()},
            "rows_kept": {vocabulary: sum(_rows_kept(p, matrix)[f"{vocabulary}_rows_kept"] for p in parts.values())
                          for vocabulary in ("icd9", "icd10")},
            "columns_by_vocabulary": _columns_by_vocabulary(matrix),
            "icd10_rows_dropped": int(sum(p.stats["icd10_rows_dropped"] for p in parts.values())),
            "rows_without_code_dropped": int(sum(p.stats["rows_without_code"] for p in parts.values())),
        },
        "rows_without_codes": int((matrix.frame.to_numpy() == 0).all(axis=1).sum()),
    }
    if details["codes"]["icd10_rows_dropped"]:
        details["notes"] = [f"{details['codes']['icd10_rows_dropped']} ICD-10 row(s) dropped (--icd10 drop); "
                            "use --icd10 keep to keep them as separate ICD-10 category columns"]
    return details


def _rows_kept(rows: _Rows, matrix: CodeMatrix) -> dict[str, int]:
    """Rows of each ICD version whose category is a column of the table (after ``--min-count``)."""
    in_table = rows.categories.isin(set(matrix.frame.columns)).to_numpy()
    icd10 = rows.categories.str.startswith("ICD10").to_numpy(dtype=bool, na_value=False)
    return {"icd9_rows_kept": int((in_table & ~icd10).sum()), "icd10_rows_kept": int((in_table & icd10).sum())}


def _columns_by_vocabulary(matrix: CodeMatrix) -> dict[str, int]:
    """Category columns per vocabulary prefix, e.g. {"ICD9": 325, "ICD10": 379}."""
    prefixes = pd.Series([c.split(":", 1)[0] for c in matrix.frame.columns], dtype=object)
    return {str(k): int(v) for k, v in prefixes.value_counts(sort=False).items()}
