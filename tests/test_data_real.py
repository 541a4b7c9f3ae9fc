"""Every source on the real public data sets in ../shared/data (skipped with a reason when the folder is absent):
exact row, column and label counts computed here with the csv / gzip / tarfile / zipfile modules, patient-disjoint
splits, the full code matrices, and decode(encode(x)) == x on every prepared training table."""

from __future__ import annotations

import csv
import gzip
import io
import sys
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import datahelp as h  # noqa: E402

from ehrdiff.data.sources import prepare  # noqa: E402


def gz_rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def check_matrix(train, test, key: str, expected: dict, columns: list[str]) -> None:
    for part in (train, test):
        got = h.positives(part.frame, columns)
        for i, subject in enumerate(part.frame[key]):
            assert got[i] == expected[subject], subject


# ---- MIMIC demos ---------------------------------------------------------------------------------------------
def test_mimic3_demo_patient_level(tmp_path):
    path = h.shared("mimic-iii-demo-1.4/diagnoses_icd.csv.gz")
    expected = defaultdict(set)
    for r in gz_rows(path):
        expected[int(r["subject_id"])].add("ICD9:" + h.mimic_category(r["icd9_code"]))
    columns = sorted(set().union(*expected.values()))
    assert (len(expected), len(columns)) == (100, 275)  # the demo's documented 100 patients
    summary = prepare("mimic", tmp_path, diagnoses=path)
    train, test, _ = h.load(tmp_path)
    assert (train.n_rows, test.n_rows) == (100 - h.n_test(100), h.n_test(100))
    assert train.columns == ["subject_id"] + columns
    assert summary["shapes"] == {"train": [80, 276], "test": [20, 276]}
    h.assert_disjoint(train, test, "subject_id")
    check_matrix(train, test, "subject_id", expected, columns)
    h.assert_roundtrip(train)


def test_mimic3_demo_admission_level_with_procedures_and_titles(tmp_path):
    base = h.shared("mimic-iii-demo-1.4")
    expected, owner = defaultdict(set), {}
    for r in gz_rows(base / "diagnoses_icd.csv.gz"):
        expected[int(r["hadm_id"])].add("ICD9:" + h.mimic_category(r["icd9_code"]))
        owner[int(r["hadm_id"])] = int(r["subject_id"])
    for r in gz_rows(base / "procedures_icd.csv.gz"):
        expected[int(r["hadm_id"])].add("ICD9PROC:" + r["icd9_code"][:2])
        owner[int(r["hadm_id"])] = int(r["subject_id"])
    columns = sorted(set().union(*expected.values()))
    summary = prepare("mimic", tmp_path, diagnoses=base / "diagnoses_icd.csv.gz",
                      procedures=base / "procedures_icd.csv.gz", level="admission",
                      titles=base / "d_icd_diagnoses.csv.gz")
    train, test, _ = h.load(tmp_path)
    assert train.n_rows + test.n_rows == len(expected) == 129
    assert train.columns == ["subject_id", "hadm_id"] + columns
    h.assert_disjoint(train, test, "subject_id")
    check_matrix(train, test, "hadm_id", expected, columns)
    assert set(summary["titles"]) <= set(columns) and len(summary["titles"]) > 200
    h.assert_roundtrip(train)


@pytest.mark.parametrize("choice", ["drop", "keep"])
def test_mimic4_demo_icd10_choices(tmp_path, choice):
    path = h.shared("mimic-iv-demo-2.2/hosp/diagnoses_icd.csv.gz")
    rows = gz_rows(path)
    expected = defaultdict(set)
    for r in rows:
        if r["icd_version"] == "9":
            expected[int(r["subject_id"])].add("ICD9:" + h.mimic_category(r["icd_code"]))
        elif choice == "keep":
            expected[int(r["subject_id"])].add("ICD10:" + r["icd_code"][:3])
    columns = sorted(set().union(*expected.values()))
    summary = prepare("mimic", tmp_path, diagnoses=path, icd10=choice)
    train, test, _ = h.load(tmp_path)
    n = len(expected)
    assert (train.n_rows, test.n_rows) == (n - h.n_test(n), h.n_test(n))
    assert train.columns == ["subject_id"] + columns
    assert summary["codes"]["icd10_rows_dropped"] == (sum(r["icd_version"] == "10" for r in rows)
                                                      if choice == "drop" else 0)
    check_matrix(train, test, "subject_id", expected, columns)
    h.assert_roundtrip(train)


# ---- PTB sample ----------------------------------------------------------------------------------------------
def test_ptb_sample(tmp_path):
    base = h.shared("ptbdb-heartbeat-kaggle-sample")
    normal = list(csv.reader(open(base / "ptbdb_normal_sample.csv")))
    abnormal = list(csv.reader(open(base / "ptbdb_abnormal_sample.csv")))
    summary = prepare("ptb", tmp_path, normal=base / "ptbdb_normal_sample.csv",
                      abnormal=base / "ptbdb_abnormal_sample.csv")
    train, test, _ = h.load(tmp_path)
    n = len(normal) + len(abnormal)
    assert (train.n_rows, test.n_rows, len(train.columns)) == (n - h.n_test(n), h.n_test(n), 1 + 187 + 1)
    assert summary["label"]["all"] == {"0": len(normal), "1": len(abnormal)}
    h.assert_roundtrip(train)


# ---- CinC 2012 set-a -----------------------------------------------------------------------------------------
DESCRIPTORS = ("RecordID", "Age", "Gender", "Height", "ICUType", "Weight")


def test_cinc2012_set_a(tmp_path):
    base = h.shared("physionet-challenge-2012")
    counts: dict[int, dict[str, int]] = {}
    first: dict[int, dict[str, float]] = {}
    desc: dict[int, dict[str, float]] = {}
    with tarfile.open(base / "set-a.tar.gz") as archive:
        for member in archive:
            if not (member.isfile() and member.name.endswith(".txt")):
                continue
            d, c, f = {}, defaultdict(int), {}
            for time, parameter, value in list(csv.reader(io.TextIOWrapper(archive.extractfile(member))))[1:]:
                if time == "00:00" and parameter in DESCRIPTORS and parameter not in d:
                    d[parameter] = float(value)
                else:
                    c[parameter] += 1
                    f.setdefault(parameter, float(value))  # files are in time order
            desc[int(d["RecordID"])], counts[int(d["RecordID"])], first[int(d["RecordID"])] = d, c, f
    with open(base / "Outcomes-a.txt") as f:
        outcomes = {int(r["RecordID"]): int(r["In-hospital_death"]) for r in csv.DictReader(f)}
    variables = sorted({v for c in counts.values() for v in c}, key=str.lower)
    assert (len(desc), len(variables), sum(outcomes.values())) == (4000, 37, 554)

    summary = prepare("cinc2012", tmp_path, records=base / "set-a.tar.gz", outcomes=base / "Outcomes-a.txt")
    train, test, _ = h.load(tmp_path)
    assert (train.n_rows, test.n_rows) == (4000 - h.n_test(4000), h.n_test(4000))
    assert len(train.columns) == 1 + 5 + 6 * len(variables) + 1 == 229
    assert summary["label"]["all"] == {"0": 4000 - 554, "1": 554}
    assert summary["records"]["without_time_series_kept"] == sum(1 for c in counts.values() if not c) == 3
    assert summary["time_series"]["rows"] == sum(sum(c.values()) for c in counts.values())
    h.assert_disjoint(train, test, "record_id")
    frame = pd.concat([train.frame, test.frame]).set_index("record_id")
    for record, row in frame.iterrows():
        assert row["label"] == outcomes[record]
        assert row["Gender"] == desc[record]["Gender"] or (desc[record]["Gender"] == -1 and np.isnan(row["Gender"]))
        for variable in variables:
            assert row[f"{variable}_count"] == counts[record].get(variable, 0)
        if "HR" in first[record]:
            assert row["HR_first"] == first[record]["HR"]
    h.assert_roundtrip(train)


# ---- UCI diabetes --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uci_rows():
    path = h.shared("uci-diabetes-130-us-hospitals/dataset_diabetes.zip")
    with zipfile.ZipFile(path) as z:
        text = z.read("dataset_diabetes/diabetic_data.csv").decode()
    return path, list(csv.DictReader(io.StringIO(text)))


@pytest.mark.slow  # reads the full UCI file
def test_uci_patient_level(tmp_path, uci_rows):
    path, rows = uci_rows
    codes, label = defaultdict(set), defaultdict(int)
    for r in rows:
        patient = int(r["patient_nbr"])
        codes[patient] |= {"ICD9:" + h.uci_category(r[c]) for c in ("diag_1", "diag_2", "diag_3") if r[c] != "?"}
        label[patient] = max(label[patient], int(r["readmitted"] == "<30"))
    columns = sorted(set().union(*codes.values()))
    assert (len(rows), len(codes), len(columns)) == (101_766, 71_518, 881)
    summary = prepare("uci-diabetes", tmp_path, path=path)
    train, test, _ = h.load(tmp_path)
    n = len(codes)
    assert (train.n_rows, test.n_rows) == (n - h.n_test(n), h.n_test(n)) == (57_214, 14_304)
    assert train.columns == ["patient_nbr"] + columns + ["label"]
    assert summary["label"]["all"] == {"0": n - sum(label.values()), "1": sum(label.values())}
    h.assert_disjoint(train, test, "patient_nbr")
    check_matrix(train, test, "patient_nbr", codes, columns)
    assert all(part.frame["label"].tolist() == [label[p] for p in part.frame["patient_nbr"]] for part in (train, test))
    h.assert_roundtrip(train)


@pytest.mark.slow  # reads the full UCI file
def test_uci_encounter_level(tmp_path, uci_rows):
    path, rows = uci_rows
    patients = {r["encounter_id"]: int(r["patient_nbr"]) for r in rows}
    summary = prepare("uci-diabetes", tmp_path, path=path, level="encounter")
    train, test, _ = h.load(tmp_path)
    assert train.n_rows + test.n_rows == len(rows) == 101_766
    assert len(train.columns) == 2 + 8 + 23 + 3 + 8 + 2 + 881 + 1 == 928
    assert summary["label"]["all"]["1"] == sum(r["readmitted"] == "<30" for r in rows) == 11_357
    h.assert_disjoint(train, test, "patient_nbr")
    # the split is by patient: each side holds all encounters of its patients
    per_patient = defaultdict(int)
    for p in patients.values():
        per_patient[p] += 1
    assert train.n_rows == sum(per_patient[p] for p in set(train.frame["patient_nbr"]))
    assert test.n_rows == sum(per_patient[p] for p in set(test.frame["patient_nbr"]))
    h.assert_roundtrip(train)
