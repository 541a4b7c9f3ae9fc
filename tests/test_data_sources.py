"""Every source on the small fixtures in tests/fixtures: exact row, column and label counts computed here with plain
Python (csv, tarfile, zipfile), the full matrices compared with independently built code sets, patient-disjoint
seeded splits, and decode(encode(x)) == x on every prepared table."""

from __future__ import annotations

import csv
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

from ehrdiff.data.sources import prepare, split_subjects  # noqa: E402
from ehrdiff.errors import DataError  # noqa: E402

F = h.FIXTURES


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- MIMIC ---------------------------------------------------------------------------------------------------
def test_mimic3_patient_level_matrix_counts_and_values(tmp_path):
    rows = rows_of(F / "mimic3/diagnoses_icd.csv")
    expected = defaultdict(set)
    for r in rows:
        expected[int(r["subject_id"])].add("ICD9:" + h.mimic_category(r["icd9_code"]))
    categories = sorted(set().union(*expected.values()))

    summary = prepare("mimic", tmp_path, diagnoses=F / "mimic3/diagnoses_icd.csv")
    train, test, written = h.load(tmp_path)
    assert written == summary
    n = len(expected)
    assert (test.n_rows, train.n_rows) == (h.n_test(n), n - h.n_test(n))
    assert train.columns == test.columns == ["subject_id"] + categories
    assert train.kinds["subject_id"] == "id" and set(train.kinds.values()) == {"id", "binary"}
    h.assert_disjoint(train, test, "subject_id")
    for part in (train, test):
        got = h.positives(part.frame, categories)
        for i, subject in enumerate(part.frame["subject_id"]):
            assert got[i] == expected[subject]
    assert summary["codes"]["kept"] == len(categories) and summary["rows"]["total"] == n
    h.assert_roundtrip(train)


def test_mimic3_upper_case_columns_and_admission_level_with_procedures(tmp_path):
    # full MIMIC-III spells its columns in upper case: write such a copy of the fixture
    upper = tmp_path / "DIAGNOSES_ICD.csv"
    text = (F / "mimic3/diagnoses_icd.csv").read_text()
    header, _, body = text.partition("\n")
    upper.write_text(header.upper() + "\n" + body)
    diagnoses, procedures = rows_of(F / "mimic3/diagnoses_icd.csv"), rows_of(F / "mimic3/procedures_icd.csv")
    expected = defaultdict(set)
    owner = {}
    for r in diagnoses:
        expected[int(r["hadm_id"])].add("ICD9:" + h.mimic_category(r["icd9_code"]))
        owner[int(r["hadm_id"])] = int(r["subject_id"])
    for r in procedures:
        expected[int(r["hadm_id"])].add("ICD9PROC:" + r["icd9_code"][:2])
        owner[int(r["hadm_id"])] = int(r["subject_id"])
    columns = sorted(set().union(*expected.values()))

    prepare("mimic", tmp_path / "out", diagnoses=upper, procedures=F / "mimic3/procedures_icd.csv", level="admission")
    train, test, summary = h.load(tmp_path / "out")
    assert train.n_rows + test.n_rows == len(expected)
    assert train.columns == ["subject_id", "hadm_id"] + columns
    n_subjects = len(set(owner.values()))
    assert summary["subjects"] == {"total": n_subjects, "train": n_subjects - h.n_test(n_subjects),
                                   "test": h.n_test(n_subjects)}
    h.assert_disjoint(train, test, "subject_id")
    for part in (train, test):
        got = h.positives(part.frame, columns)
        for i, (subject, admission) in enumerate(zip(part.frame["subject_id"], part.frame["hadm_id"])):
            assert owner[admission] == subject and got[i] == expected[admission]


def _mimic4_expected(keep_icd10: bool):
    expected = defaultdict(set)
    for r in rows_of(F / "mimic4/diagnoses_icd.csv"):
        if r["icd_version"] == "9":
            expected[int(r["subject_id"])].add("ICD9:" + h.mimic_category(r["icd_code"]))
        elif keep_icd10:
            expected[int(r["subject_id"])].add("ICD10:" + r["icd_code"][:3])
    return expected


def test_mimic4_icd10_rows_dropped_on_request_and_counted(tmp_path):
    n10 = sum(r["icd_version"] == "10" for r in rows_of(F / "mimic4/diagnoses_icd.csv"))
    assert n10 > 0  # the fixture mixes versions
    expected = _mimic4_expected(keep_icd10=False)
    summary = prepare("mimic", tmp_path, diagnoses=F / "mimic4/diagnoses_icd.csv", icd10="drop")
    train, test, _ = h.load(tmp_path)
    assert summary["codes"]["icd10_rows_dropped"] == n10
    assert train.n_rows + test.n_rows == len(expected)
    assert train.columns[1:] == sorted(set().union(*expected.values()))
    assert any("ICD-10" in note for note in summary["notes"])


def test_mimic4_keep_icd10_uses_separate_prefixed_columns_and_titles(tmp_path):
    expected = _mimic4_expected(keep_icd10=True)
    columns = sorted(set().union(*expected.values()))
    summary = prepare("mimic", tmp_path, diagnoses=F / "mimic4/diagnoses_icd.csv", icd10="keep",
                      titles=F / "mimic4/d_icd_diagnoses.csv")
    train, test, _ = h.load(tmp_path)
    assert train.columns == ["subject_id"] + columns
    assert any(c.startswith("ICD10:") for c in columns) and any(c.startswith("ICD9:") for c in columns)
    for part in (train, test):
        got = h.positives(part.frame, columns)
        assert all(got[i] == expected[s] for i, s in enumerate(part.frame["subject_id"]))
    # a category listed in the titles file gets its own title
    titles = {(r["icd_version"], r["icd_code"]): r["long_title"] for r in rows_of(F / "mimic4/d_icd_diagnoses.csv")}
    exact = [c for c in columns if (("10" if c.startswith("ICD10") else "9"), c.split(":")[1]) in titles]
    assert exact
    for column in exact:
        version = "10" if column.startswith("ICD10") else "9"
        assert summary["titles"][column] == titles[(version, column.split(":")[1])]
    assert set(summary["titles"]) <= set(columns)


def test_mimic4_mixed_versions_with_error_choice_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"mixes ICD versions .* --icd10 drop .* --icd10 keep"):
        prepare("mimic", tmp_path / "out", diagnoses=F / "mimic4/diagnoses_icd.csv", icd10="error")
    assert not (tmp_path / "out").exists()


def test_mimic_min_count_drops_rare_categories(tmp_path):
    expected = defaultdict(set)
    for r in rows_of(F / "mimic3/diagnoses_icd.csv"):
        expected[int(r["subject_id"])].add("ICD9:" + h.mimic_category(r["icd9_code"]))
    counts = defaultdict(int)
    for codes in expected.values():
        for c in codes:
            counts[c] += 1
    kept = sorted(c for c, n in counts.items() if n >= 3)
    summary = prepare("mimic", tmp_path, diagnoses=F / "mimic3/diagnoses_icd.csv", min_count=3)
    train, _, _ = h.load(tmp_path)
    assert train.columns[1:] == kept
    assert summary["codes"]["dropped_below_min_count"] == len(counts) - len(kept)


# ---- CinC 2012 -----------------------------------------------------------------------------------------------
DESCRIPTORS = ("RecordID", "Age", "Gender", "Height", "ICUType", "Weight")


def _cinc_records(files: dict[str, bytes]) -> dict[int, dict]:
    """record id -> {"desc": {...}, "series": {var: [(minute, value), ...]}}, parsed with the csv module."""
    out = {}
    for name, content in files.items():
        lines = list(csv.reader(io.StringIO(content.decode())))[1:]
        desc, series = {}, defaultdict(list)
        for time, parameter, value in lines:
            hours, minutes = time.split(":")
            minute = int(hours) * 60 + int(minutes)
            if minute == 0 and parameter in DESCRIPTORS and parameter not in desc:
                desc[parameter] = float(value)
            else:
                series[parameter].append((minute, float(value)))
        out[int(desc["RecordID"])] = {"desc": desc, "series": series}
    return out


def _check_cinc(train, test, summary, records, outcomes):
    frame = pd.concat([train.frame, test.frame], ignore_index=True).set_index("record_id")
    assert len(frame) == len(records)
    variables = sorted({v for r in records.values() for v in r["series"]}, key=str.lower)
    expected_columns = (["record_id", "Age", "Gender", "Height", "Weight", "ICUType"]
                        + [f"{v}_{s}" for v in variables for s in ("first", "last", "min", "max", "mean", "count")]
                        + ["label"])
    # a variable never measured in the training records has no training values: its summaries are dropped
    train_ids = set(train.frame["record_id"])
    unseen = [v for v in variables if not any(v in records[r]["series"] for r in train_ids)]
    dropped = {f"{v}_{s}" for v in unseen for s in ("first", "last", "min", "max", "mean")}
    assert train.columns == test.columns == [c for c in expected_columns if c not in dropped]
    assert summary["label"]["all"] == {"0": sum(1 for r in records if outcomes[r] == 0),
                                       "1": sum(1 for r in records if outcomes[r] == 1)}
    assert train.kinds["ICUType"] == "categorical" and train.kinds["label"] == "label"
    assert {train.kinds[c] for c in train.columns if c.endswith(("_mean", "_count"))} == {"continuous"}
    h.assert_disjoint(train, test, "record_id")
    for record_id, record in records.items():
        row = frame.loc[record_id]
        assert row["label"] == outcomes[record_id]
        for name in ("Age", "Gender", "Height", "Weight"):
            value = record["desc"][name]
            assert (np.isnan(row[name]) if value == -1 else row[name] == value), (record_id, name)
        for variable in variables:
            points = sorted(record["series"].get(variable, []), key=lambda p: p[0])
            assert row[f"{variable}_count"] == len(points)
            if points and f"{variable}_mean" in frame.columns:
                values = [v for _, v in points]
                assert row[f"{variable}_first"] == values[0] and row[f"{variable}_last"] == values[-1]
                assert row[f"{variable}_min"] == min(values) and row[f"{variable}_max"] == max(values)
                assert abs(row[f"{variable}_mean"] - sum(values) / len(values)) < 1e-9
            elif f"{variable}_mean" in frame.columns:
                assert np.isnan(row[f"{variable}_mean"])


def _outcomes(path: Path) -> dict[int, int]:
    return {int(r["RecordID"]): int(r["In-hospital_death"]) for r in rows_of(path)}


def test_cinc2012_from_a_folder_exact_features(tmp_path):
    folder = F / "cinc2012/set-a"
    records = _cinc_records({p.name: p.read_bytes() for p in folder.glob("*.txt")})
    outcomes = _outcomes(F / "cinc2012/Outcomes-a.txt")
    summary = prepare("cinc2012", tmp_path, records=folder, outcomes=F / "cinc2012/Outcomes-a.txt")
    train, test, _ = h.load(tmp_path)
    _check_cinc(train, test, summary, records, outcomes)
    empty = [r for r, rec in records.items() if not rec["series"]]
    assert len(empty) == 2 and summary["records"]["without_time_series_kept"] == 2
    h.assert_roundtrip(train)


def test_cinc2012_from_a_tar_gz_equals_the_folder(tmp_path):
    archive = tmp_path / "set-a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(F / "cinc2012/set-a", arcname="set-a")
    prepare("cinc2012", tmp_path / "a", records=archive, outcomes=F / "cinc2012/Outcomes-a.txt")
    prepare("cinc2012", tmp_path / "b", records=F / "cinc2012/set-a", outcomes=F / "cinc2012/Outcomes-a.txt")
    for name in ("train.parquet", "test.parquet"):
        a, b = pd.read_parquet(tmp_path / "a" / name), pd.read_parquet(tmp_path / "b" / name)
        pd.testing.assert_frame_equal(a, b)


# ---- PTB -----------------------------------------------------------------------------------------------------
def test_ptb_counts_labels_and_values(tmp_path):
    normal = list(csv.reader(open(F / "ptb/ptbdb_normal.csv")))
    abnormal = list(csv.reader(open(F / "ptb/ptbdb_abnormal.csv")))
    summary = prepare("ptb", tmp_path, normal=F / "ptb/ptbdb_normal.csv", abnormal=F / "ptb/ptbdb_abnormal.csv")
    train, test, _ = h.load(tmp_path)
    n = len(normal) + len(abnormal)
    assert (train.n_rows, test.n_rows) == (n - h.n_test(n), h.n_test(n))
    assert train.columns == ["beat_id"] + [f"s{i:03d}" for i in range(187)] + ["label"]
    assert summary["label"]["all"] == {"0": len(normal), "1": len(abnormal)}
    frame = pd.concat([train.frame, test.frame]).set_index("beat_id").sort_index()
    raw = [[float(v) for v in row[:187]] for row in normal + abnormal]
    assert np.array_equal(frame[[f"s{i:03d}" for i in range(187)]].to_numpy(), np.array(raw))
    assert frame["label"].tolist() == [0] * len(normal) + [1] * len(abnormal)
    h.assert_roundtrip(train)


# ---- UCI diabetes --------------------------------------------------------------------------------------------
def _uci_rows(path: Path) -> list[dict]:
    with zipfile.ZipFile(path) as z:
        return list(csv.DictReader(io.StringIO(z.read("dataset_diabetes/diabetic_data.csv").decode())))


def uci_expected(rows):
    codes, label = defaultdict(set), defaultdict(int)
    for r in rows:
        patient = int(r["patient_nbr"])
        codes[patient] |= {"ICD9:" + h.uci_category(r[c]) for c in ("diag_1", "diag_2", "diag_3") if r[c] != "?"}
        label[patient] = max(label[patient], int(r["readmitted"] == "<30"))
    return codes, label


def test_uci_patient_level_exact_matrix_and_label(tmp_path):
    rows = _uci_rows(F / "uci/dataset_diabetes.zip")
    codes, label = uci_expected(rows)
    columns = sorted(set().union(*codes.values()))
    summary = prepare("uci-diabetes", tmp_path, path=F / "uci/dataset_diabetes.zip")
    train, test, _ = h.load(tmp_path)
    n = len(codes)
    assert (train.n_rows, test.n_rows) == (n - h.n_test(n), h.n_test(n))
    assert train.columns == ["patient_nbr"] + columns + ["label"]
    assert summary["label"]["all"] == {"0": n - sum(label.values()), "1": sum(label.values())}
    h.assert_disjoint(train, test, "patient_nbr")
    for part in (train, test):
        got = h.positives(part.frame, columns)
        for i, patient in enumerate(part.frame["patient_nbr"]):
            assert got[i] == codes[patient] and part.frame["label"].iloc[i] == label[patient]
    h.assert_roundtrip(train)


def test_uci_encounter_level_mixed_table_split_by_patient(tmp_path):
    rows = _uci_rows(F / "uci/dataset_diabetes.zip")
    categories = sorted({"ICD9:" + h.uci_category(r[c]) for r in rows for c in ("diag_1", "diag_2", "diag_3")
                         if r[c] != "?"})
    summary = prepare("uci-diabetes", tmp_path, path=F / "uci/dataset_diabetes.zip", level="encounter")
    train, test, _ = h.load(tmp_path)
    assert train.n_rows + test.n_rows == len(rows)
    # 2 ids + 8 text categoricals + 23 medications + 3 coded categoricals + 8 counts + 2 binary + codes + label
    assert len(train.columns) == 2 + 8 + 23 + 3 + 8 + 2 + len(categories) + 1
    assert summary["label"]["all"]["1"] == sum(r["readmitted"] == "<30" for r in rows)
    h.assert_disjoint(train, test, "patient_nbr")
    kinds = train.kinds
    assert kinds["race"] == kinds["insulin"] == kinds["admission_type_id"] == "categorical"
    assert kinds["num_medications"] == "continuous" and kinds["change"] == "binary"
    by_encounter = {int(r["encounter_id"]): r for r in rows}
    frame = pd.concat([train.frame, test.frame], ignore_index=True)
    for _, row in frame.sample(50, random_state=0).iterrows():
        raw = by_encounter[row["encounter_id"]]
        assert row["patient_nbr"] == int(raw["patient_nbr"])
        assert row["num_lab_procedures"] == int(raw["num_lab_procedures"])
        assert (pd.isna(row["medical_specialty"]) if raw["medical_specialty"] == "?"
                else row["medical_specialty"] == raw["medical_specialty"])
        assert row["change"] == int(raw["change"] == "Ch") and row["label"] == int(raw["readmitted"] == "<30")
        assert {c for c in categories if row[c] == 1} == {"ICD9:" + h.uci_category(raw[c])
                                                          for c in ("diag_1", "diag_2", "diag_3") if raw[c] != "?"}
    # every test category is known to train, so an encoder fitted on train encodes the test split
    for column in train.columns_of("categorical"):
        assert set(test.frame[column].dropna()) <= set(train.frame[column].dropna()), column
    h.assert_roundtrip(train)


# ---- codes, table, meds --------------------------------------------------------------------------------------
def test_codes_source_binary_counts_and_label(tmp_path):
    long = pd.DataFrame({"pid": ["p1", "p1", "p1", "p2", "p3", "p3", "p4"],
                         "code": ["0389", "0389", "V57", "4019", "0389", "E849", "4019"],
                         "time": range(7), "died": [1, 1, 1, 0, 1, 1, 0]})
    long.to_csv(tmp_path / "long.csv", index=False)
    prepare("codes", tmp_path / "bin", input=tmp_path / "long.csv", subject_col="pid", code_col="code",
            label_col="died", test_fraction=0.25)
    train, test, summary = h.load(tmp_path / "bin")
    frame = pd.concat([train.frame, test.frame]).set_index("pid").sort_index()
    assert list(frame.columns) == ["0389", "4019", "E849", "V57", "label"]  # leading zero kept
    assert frame.loc["p1"].tolist() == [1, 0, 0, 1, 1] and frame.loc["p4"].tolist() == [0, 1, 0, 0, 0]
    assert (train.n_rows, test.n_rows) == (3, 1) and summary["label"]["all"] == {"0": 2, "1": 2}

    long.to_parquet(tmp_path / "long.parquet")
    prepare("codes", tmp_path / "cnt", input=tmp_path / "long.parquet", subject_col="pid", code_col="code",
            counts=True, test_fraction=0.25)
    train, test, _ = h.load(tmp_path / "cnt")
    frame = pd.concat([train.frame, test.frame]).set_index("pid").sort_index()
    assert frame.loc["p1", "0389"] == 2 and train.kinds["0389"] == "continuous"


def test_table_source_infers_and_overrides_kinds(tmp_path):
    frame = pd.DataFrame({"patient_id": [1, 1, 2, 3, 4, 5, 6, 7], "age": [50.5, 51, 60, 70, np.nan, 40, 30, 20],
                          "sex": ["F", "F", "M", "M", "F", "M", "F", "M"], "icd": ["0389"] * 4 + ["4019"] * 4,
                          "flag": [0, 1, 0, 1, 0, 1, 0, 1], "outcome": [0, 0, 1, 0, 1, 0, 1, 1]})
    frame.to_csv(tmp_path / "wide.csv", index=False)
    prepare("table", tmp_path / "out", input=tmp_path / "wide.csv", kinds={"icd": "categorical"},
            label_col="outcome", test_fraction=0.3)
    train, test, summary = h.load(tmp_path / "out")
    assert train.kinds == {"patient_id": "id", "age": "continuous", "sex": "categorical", "icd": "categorical",
                           "flag": "binary", "label": "label"}
    assert set(pd.concat([train.frame, test.frame])["icd"]) == {"0389", "4019"}  # text, leading zero kept
    assert summary["split"]["by"] == "patient_id" and summary["subjects"]["total"] == 7
    h.assert_disjoint(train, test, "patient_id")


def test_table_source_without_id_adds_row_id(tmp_path):
    pd.DataFrame({"x": np.arange(10.0), "label": [0, 1] * 5}).to_parquet(tmp_path / "wide.parquet")
    summary = prepare("table", tmp_path / "out", input=tmp_path / "wide.parquet")
    train, test, _ = h.load(tmp_path / "out")
    assert train.columns == ["row_id", "x", "label"] and (train.n_rows, test.n_rows) == (8, 2)
    assert summary["notes"]


def test_meds_source_prefix_filter_and_label_code(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    events = pd.DataFrame({"subject_id": [5, 5, 5, 6, 7, 7, 8], "code": ["DX//038", "DX//401", "LAB//HR", "DX//401",
                                                                          "DX//038", "MEDS_DEATH", "LAB//HR"]})
    (tmp_path / "meds/data/train").mkdir(parents=True)
    table = pa.table({"subject_id": pa.array(events["subject_id"], pa.int64()),
                      "time": pa.nulls(len(events), pa.timestamp("us")), "code": events["code"],
                      "numeric_value": pa.nulls(len(events), pa.float32())})
    pq.write_table(table.slice(0, 3), tmp_path / "meds/data/train/0.parquet")
    pq.write_table(table.slice(3), tmp_path / "meds/data/train/1.parquet")
    prepare("meds", tmp_path / "out", root=tmp_path / "meds", prefixes=["DX//"], label_code="MEDS_DEATH",
            test_fraction=0.25)
    train, test, summary = h.load(tmp_path / "out")
    frame = pd.concat([train.frame, test.frame]).set_index("subject_id").sort_index()
    assert list(frame.columns) == ["DX//038", "DX//401", "label"]
    assert frame.to_dict("index") == {5: {"DX//038": 1, "DX//401": 1, "label": 0},
                                      6: {"DX//038": 0, "DX//401": 1, "label": 0},
                                      7: {"DX//038": 1, "DX//401": 0, "label": 1},
                                      8: {"DX//038": 0, "DX//401": 0, "label": 0}}
    assert summary["events"]["filtered_out_by_prefix"] == 2


# ---- split ---------------------------------------------------------------------------------------------------
def test_split_is_seeded_by_subject_and_independent_of_row_order():
    subjects = pd.Series(np.repeat(np.arange(100), 3))
    a = split_subjects(subjects, 0.2, seed=1)
    assert len(set(subjects[a])) == 20 and not (set(subjects[a]) & set(subjects[~a]))
    shuffled = subjects.sample(frac=1, random_state=0).reset_index(drop=True)
    b = split_subjects(shuffled, 0.2, seed=1)
    assert set(shuffled[b]) == set(subjects[a])
    assert set(subjects[split_subjects(subjects, 0.2, seed=2)]) != set(subjects[a])


def test_same_seed_gives_identical_files_and_another_seed_a_different_split(tmp_path):
    args = dict(diagnoses=F / "mimic3/diagnoses_icd.csv")
    one = prepare("mimic", tmp_path / "a", seed=3, **args)
    two = prepare("mimic", tmp_path / "b", seed=3, **args)
    three = prepare("mimic", tmp_path / "c", seed=4, **args)
    assert one["files"] == two["files"]
    assert one["files"]["test.parquet"] != three["files"]["test.parquet"]


def test_rewriting_an_output_folder_keeps_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    prepare("ptb", tmp_path, normal=F / "ptb/ptbdb_normal.csv", abnormal=F / "ptb/ptbdb_abnormal.csv")
    prepare("ptb", tmp_path, normal=F / "ptb/ptbdb_normal.csv", abnormal=F / "ptb/ptbdb_abnormal.csv", seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "summary.json", "test.parquet",
                                                          "train.parquet"]
    assert (tmp_path / "notes.txt").read_text() == "mine"



def test_split_moves_test_subjects_with_unseen_categories_and_drops_columns_without_training_values(tmp_path):
    subjects = np.arange(20)
    in_test = subjects[split_subjects(pd.Series(subjects), 0.2, seed=0)]
    rare, lonely = int(in_test[0]), int(in_test[1])
    frame = pd.DataFrame({"subject_id": subjects, "ward": ["A"] * 20, "lab": np.nan, "x": np.arange(20.0),
                          "label": [0, 1] * 10})
    frame.loc[rare, "ward"] = "Z"           # a category only a test subject has
    frame.loc[lonely, "lab"] = 4.2          # a value only a test subject has
    frame.to_parquet(tmp_path / "wide.parquet")
    summary = prepare("table", tmp_path / "out", input=tmp_path / "wide.parquet", subject_col="subject_id")
    train, test, _ = h.load(tmp_path / "out")
    assert rare in set(train.frame["subject_id"]) and lonely in set(test.frame["subject_id"])
    assert (train.n_rows, test.n_rows) == (17, 3)
    assert "lab" not in train.columns and "lab" not in test.columns
    assert any("moved to train" in n and "ward: Z" in n for n in summary["notes"])
    assert any("no training row has a value: lab" in n for n in summary["notes"])


def test_cinc2012_descriptors_interleaved_and_a_second_weight_line_is_a_measurement(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "1.txt").write_text("Time,Parameter,Value\n00:00,RecordID,1\n00:00,Age,70\n00:00,HR,80\n"
                                  "00:00,Gender,-1\n00:00,Height,-1\n00:00,ICUType,2\n00:00,Weight,81.5\n"
                                  "00:00,Weight,82\n01:30,HR,90\n47:59,Weight,80\n")
    (folder / "2.txt").write_text("Time,Parameter,Value\n00:00,RecordID,2\n00:00,Age,50\n00:00,Gender,1\n"
                                  "00:00,Height,170\n00:00,ICUType,3\n00:00,Weight,-1\n02:00,HR,70\n")
    (tmp_path / "outcomes.txt").write_text("RecordID,In-hospital_death\n1,1\n2,0\n")
    from ehrdiff.data.sources import prepare_cinc2012
    frame = prepare_cinc2012(folder, tmp_path / "outcomes.txt").table.frame.set_index("record_id")
    one, two = frame.loc[1], frame.loc[2]
    assert one["Age"] == 70 and np.isnan(one["Gender"]) and np.isnan(one["Height"]) and one["Weight"] == 81.5
    assert one["Weight_count"] == 2 and one["Weight_first"] == 82 and one["Weight_last"] == 80
    assert one["HR_count"] == 2 and one["HR_first"] == 80 and one["HR_mean"] == 85
    assert np.isnan(two["Weight"]) and two["Weight_count"] == 0 and np.isnan(two["Weight_mean"])
    assert list(frame["label"]) == [1, 0] and list(frame["ICUType"]) == [2, 3]
