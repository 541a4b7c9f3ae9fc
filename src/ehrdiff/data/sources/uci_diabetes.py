"""UCI "Diabetes 130-US hospitals 1999-2008" (id 296, CC BY 4.0): ``dataset_diabetes.zip`` (or the bare
``diabetic_data.csv``) -> a patient-level ICD-9 category matrix or an encounter-level mixed table.

Codes: ``diag_1..diag_3`` hold ICD-9-CM codes written without leading zeros and with a decimal point (``250.83``,
``8``, ``V57``, ``E909``); the 3-digit category is the integer part zero-padded (``008``), V and E codes keep their
letter (``V57``, ``E909``); ``?`` is missing. Columns are named ``ICD9:CATEGORY``.

Label (both levels): ``label = 1`` when ``readmitted`` is ``<30`` (readmitted within 30 days), else 0 (``NO`` and
``>30``). At patient level a patient's label is 1 when any of their encounters has ``<30``.

patient level    one row per ``patient_nbr``: the categories of all their encounters (1 if any), the label
encounter level  one row per ``encounter_id``: demographics and admission fields (categorical), counts
                 (continuous), lab results and the 23 medications (categorical), ``change`` and ``diabetesMed``
                 (binary), the encounter's categories, the label. ``?`` in a categorical column is missing.
Both levels carry ``patient_nbr`` (kind id); the split is always by patient.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ehrdiff.data import icd
from ehrdiff.data.io import existing_file
from ehrdiff.data.sources._files import find_column, read_csv
from ehrdiff.data.sources.arguments import add_min_count
from ehrdiff.data.sources.matrix import CodeMatrix, code_matrix
from ehrdiff.data.sources.registry import data_source
from ehrdiff.data.sources.split import Prepared
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError

LEVELS = ("patient", "encounter")
DIAGNOSES = ("diag_1", "diag_2", "diag_3")
READMITTED = ("NO", ">30", "<30")
LABEL_DEFINITION = "1 if readmitted is '<30' (within 30 days) on the encounter; at patient level on any encounter"
CATEGORICAL_TEXT = ("race", "gender", "age", "weight", "payer_code", "medical_specialty", "max_glu_serum",
                    "A1Cresult")
CATEGORICAL_CODED = ("admission_type_id", "discharge_disposition_id", "admission_source_id")  # integer codes
COUNTS = ("time_in_hospital", "num_lab_procedures", "num_procedures", "num_medications", "number_outpatient",
          "number_emergency", "number_inpatient", "number_diagnoses")
MEDICATIONS = ("metformin", "repaglinide", "nateglinide", "chlorpropamide", "glimepiride", "acetohexamide",
               "glipizide", "glyburide", "tolbutamide", "pioglitazone", "rosiglitazone", "acarbose", "miglitol",
               "troglitazone", "tolazamide", "examide", "citoglipton", "insulin", "glyburide-metformin",
               "glipizide-metformin", "glimepiride-pioglitazone", "metformin-rosiglitazone", "metformin-pioglitazone")
BINARY = {"change": ("Ch", "No"), "diabetesMed": ("Yes", "No")}  # column: (value meaning 1, value meaning 0)


def read_uci(path: str | os.PathLike) -> tuple[pd.DataFrame, str]:
    """The encounter table as strings (``?`` kept), from the UCI zip or a bare ``diabetic_data.csv``."""
    path = existing_file(path, "UCI diabetes file")
    if path.name.lower().endswith((".csv", ".csv.gz")):
        return read_csv(path, str(path)), str(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not a zip file; give the UCI dataset_diabetes.zip or diabetic_data.csv") from None
    with archive:
        members = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "diabetic_data.csv"]
        if not members:
            raise DataError(f"{path}: the zip holds no diabetic_data.csv; give the UCI dataset_diabetes.zip")
        name = f"{path}:{members[0]}"
        with archive.open(members[0]) as f:
            return read_csv(f, name), name


def _line(mask: pd.Series) -> int:
    return int(mask.to_numpy().argmax()) + 2


def diagnosis_categories(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Long (row, category) pairs from diag_1..3; '?' and empty are missing; anything unreadable is an error."""
    pieces = []
    for column in DIAGNOSES:
        raw = frame[column].str.strip()
        present = raw.notna() & (raw != "?") & (raw != "")
        categories, bad = icd.icd9_diagnosis_uci(raw.where(present))
        if bad.any():
            raise DataError(f"{source}: line {_line(bad)}: column '{column}' has unreadable ICD-9 code "
                            f"{raw[bad].iloc[0]!r}; fix the row (use '?' for a missing code)")
        keep = present.to_numpy()
        pieces.append(pd.DataFrame({"row": np.flatnonzero(keep), "category": categories[keep].to_numpy()}))
    return pd.concat(pieces, ignore_index=True)


def _integers(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    try:  # the fast path (a pyarrow cast); the slow one below only finds the offending row
        return frame[column].astype("int64").to_numpy()
    except (ValueError, TypeError, ArithmeticError, pa.ArrowException):
        pass
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | (values % 1 != 0)
    if bad.any():
        raise DataError(f"{source}: line {_line(bad)}: column '{column}' has {frame[column][bad].iloc[0]!r}; "
                        "expected a whole number")
    return values.to_numpy(dtype=np.int64)


def _labels(frame: pd.DataFrame, source: str) -> np.ndarray:
    values = frame["readmitted"].str.strip()
    bad = ~values.isin(READMITTED)
    if bad.any():
        raise DataError(f"{source}: line {_line(bad)}: column 'readmitted' has {values[bad].iloc[0]!r}; "
                        f"expected one of {', '.join(READMITTED)}")
    return (values == "<30").to_numpy().astype(np.int64)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zip", dest="path", required=True, metavar="PATH",
                        help="dataset_diabetes.zip (or diabetic_data.csv)")
    parser.add_argument("--level", choices=LEVELS, default="patient",
                        help="patient: ICD-9 category matrix + label (default); encounter: mixed table")
    add_min_count(parser, "a code category", "rows")


@data_source("uci-diabetes", help="UCI diabetes 130-US hospitals zip -> patient-level codes or encounter-level mixed "
                                  "table", arguments=add_arguments)
def prepare_uci_diabetes(path: str | os.PathLike, *, level: str = "patient", min_count: int = 1) -> Prepared:
    if level not in LEVELS:
        raise DataError(f"unknown level '{level}' for uci-diabetes; choose one of {', '.join(LEVELS)}")
    frame, source = read_uci(path)
    required = ("encounter_id", "patient_nbr", *DIAGNOSES, "readmitted")
    if level == "encounter":
        required += CATEGORICAL_TEXT + CATEGORICAL_CODED + COUNTS + MEDICATIONS + tuple(BINARY)
    for column in required:
        find_column(frame, source, column)
    frame = frame.rename(columns={find_column(frame, source, c): c for c in required})
    patients = _integers(frame, "patient_nbr", source)
    labels = _labels(frame, source)
    pairs = diagnosis_categories(frame, source)
    details = {"level": level, "options": {"level": level, "min_count": min_count},
               "label_definition": LABEL_DEFINITION}
    codes_stats = {"rule": "integer part of the UCI code zero-padded to 3 digits (V codes: V + 2 digits, "
                           "E codes: E + 3 digits); '?' is missing",
                   "missing_diagnoses": int(len(frame) * len(DIAGNOSES) - len(pairs))}
    if level == "patient":
        out, kinds, matrix = _patient_table(patients, labels, pairs, min_count)
        details["encounters"] = int(len(frame))
    else:
        out, kinds, matrix = _encounter_table(frame, patients, labels, pairs, min_count, source)
        details["patients"] = int(len(np.unique(patients)))
    codes_stats |= {"kept": int(matrix.frame.shape[1]), "dropped_below_min_count": len(matrix.dropped_min_count)}
    details["codes"] = codes_stats
    details["rows_without_codes"] = int((matrix.frame.to_numpy() == 0).all(axis=1).sum())
    if matrix.frame.shape[1] == 0:
        raise DataError(f"{source}: no ICD-9 category holds at least {min_count} rows; lower --min-count")
    return Prepared(table=Table(out, kinds), source="uci-diabetes", subject_column="patient_nbr", details=details,
                    inputs={"zip": str(Path(path))})


def _patient_table(patients: np.ndarray, labels: np.ndarray, pairs: pd.DataFrame,
                   min_count: int) -> tuple[pd.DataFrame, dict[str, str], CodeMatrix]:
    """One row per patient: the categories of all their encounters (1 if any) and the label (1 if any is)."""
    matrix = code_matrix(pd.Series(patients[pairs["row"].to_numpy()]), pairs["category"],
                         all_subjects=patients, min_count=min_count, prefix=icd.PREFIX["icd9"])
    label = pd.Series(labels).groupby(patients).max().reindex(matrix.subjects).to_numpy()
    out = pd.concat([pd.DataFrame({"patient_nbr": matrix.subjects}), matrix.frame,
                     pd.DataFrame({"label": label})], axis=1)
    kinds = {"patient_nbr": "id", **{c: "binary" for c in matrix.frame.columns}, "label": "label"}
    return out, kinds, matrix


def _encounter_table(frame: pd.DataFrame, patients: np.ndarray, labels: np.ndarray, pairs: pd.DataFrame,
                     min_count: int, source: str) -> tuple[pd.DataFrame, dict[str, str], CodeMatrix]:
    """One row per encounter: ids, the admission fields, counts, medications, the categories and the label."""
    encounters = _integers(frame, "encounter_id", source)
    if len(np.unique(encounters)) != len(encounters):
        raise DataError(f"{source}: column 'encounter_id' repeats an encounter; each row must be one encounter")
    matrix = code_matrix(pd.Series(pairs["row"].to_numpy()), pairs["category"], all_subjects=np.arange(len(frame)),
                         min_count=min_count, prefix=icd.PREFIX["icd9"])
    columns: dict[str, object] = {"patient_nbr": patients, "encounter_id": encounters}
    kinds = {"patient_nbr": "id", "encounter_id": "id"}
    for column in CATEGORICAL_TEXT + MEDICATIONS:
        values = frame[column].str.strip()
        columns[column] = values.where(values != "?")
        kinds[column] = "categorical"
    for column in CATEGORICAL_CODED:
        columns[column] = _integers(frame, column, source)
        kinds[column] = "categorical"
    for column in COUNTS:
        columns[column] = _integers(frame, column, source)
        kinds[column] = "continuous"
    for column, (one, zero) in BINARY.items():
        values = frame[column].str.strip()
        bad = ~values.isin([one, zero])
        if bad.any():
            raise DataError(f"{source}: line {_line(bad)}: column '{column}' has {values[bad].iloc[0]!r}; "
                            f"expected {one} or {zero}")
        columns[column] = (values == one).to_numpy().astype(np.int8)
        kinds[column] = "binary"
    out = pd.concat([pd.DataFrame(columns), matrix.frame, pd.DataFrame({"label": labels})], axis=1)
    kinds |= {c: "binary" for c in matrix.frame.columns} | {"label": "label"}
    return out, kinds, matrix
