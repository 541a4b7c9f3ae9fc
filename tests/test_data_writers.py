"""Writers: wide Parquet/CSV with the original names and kinds, long (subject, code) rows, and a MEDS dataset that
the `meds` package's schemas accept and that reads back to the same matrix; synthetic ids never collide."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import datahelp as h  # noqa: E402

from ehrdiff.data import Table, TableEncoder, read_table  # noqa: E402
from ehrdiff.data.sources import prepare, prepare_codes, prepare_meds  # noqa: E402
from ehrdiff.data.writers import write_synthetic  # noqa: E402
from ehrdiff.errors import DataError  # noqa: E402

meds = pytest.importorskip("meds", reason="the meds package is not installed (pip install ehrdiff[meds])")

F = h.FIXTURES


@pytest.fixture(scope="module")
def uci(tmp_path_factory):
    """The UCI fixture at patient level: binary codes plus a 0/1 label."""
    out = tmp_path_factory.mktemp("uci")
    prepare("uci-diabetes", out, path=F / "uci/dataset_diabetes.zip")
    return h.load(out)


@pytest.fixture(scope="module")
def synthetic(uci):
    """Stand-in for sampled rows: the training rows pushed through encode/decode, so ids are fresh synthetic ids."""
    train = uci[0]
    encoder = TableEncoder().fit(train)
    return encoder.inverse_transform(encoder.transform(train)), train


def test_wide_parquet_and_csv_keep_names_kinds_and_values(tmp_path, synthetic):
    table, _ = synthetic
    write_synthetic(table, tmp_path / "s.parquet")
    back = read_table(tmp_path / "s.parquet")
    assert back.kinds == table.kinds
    pd.testing.assert_frame_equal(back.frame, table.frame)
    write_synthetic(table, tmp_path / "s.csv")
    frame = pd.read_csv(tmp_path / "s.csv", dtype={c: str for c in ["patient_nbr"]})
    assert list(frame.columns) == table.columns
    assert np.array_equal(frame[table.columns[1:]].to_numpy(), table.frame[table.columns[1:]].to_numpy())


def test_synthetic_ids_never_collide_with_real_ones(tmp_path, synthetic):
    table, train = synthetic
    real = set(train.frame["patient_nbr"])
    assert not (set(table.frame["patient_nbr"]) & real)
    # a table whose ids do collide (real rows written as if synthetic) gets fresh ids above every real id
    write_synthetic(train, tmp_path / "w.parquet", reserved_ids=real)
    written = read_table(tmp_path / "w.parquet").frame["patient_nbr"]
    assert written.min() > max(real) and written.is_unique
    write_synthetic(train, tmp_path / "m", format="meds", reserved_ids=real)
    ids = pq.read_table(tmp_path / "m/data/0.parquet").column("subject_id").to_numpy()
    assert ids.min() > max(real)


def test_long_format_rows_and_read_back_to_the_same_matrix(tmp_path, synthetic):
    table, _ = synthetic
    codes = [c for c in table.columns if c.startswith("ICD9:")]
    write_synthetic(table, tmp_path / "long.csv", format="long")
    long = pd.read_csv(tmp_path / "long.csv", dtype=str)
    assert list(long.columns) == ["patient_nbr", "code"]
    assert len(long) == int(table.frame[codes + ["label"]].to_numpy().sum())
    assert set(long["code"]) <= set(codes) | {"label"}
    # read back (label rows removed) through the codes source: the same subjects x codes matrix
    long[long["code"] != "label"].to_csv(tmp_path / "codes.csv", index=False)
    prepared = prepare_codes(tmp_path / "codes.csv", "patient_nbr", "code")
    back = prepared.table.frame.set_index("patient_nbr")
    expected = table.frame.set_index("patient_nbr")
    expected = expected[expected[codes].sum(axis=1) > 0]   # a patient without codes has no long rows
    present = [c for c in codes if expected[c].any()]
    assert list(back.columns) == present
    pd.testing.assert_frame_equal(back.sort_index(), expected[present].sort_index(), check_dtype=False,
                                  check_names=False)


def test_long_format_of_a_mixed_table_has_values_and_categories(tmp_path):
    table = Table.from_frame(pd.DataFrame({"subject_id": [10, 11], "age": [50.5, np.nan], "sex": ["F", "M"],
                                           "dx": [1, 0]}))
    write_synthetic(table, tmp_path / "long.parquet", format="long")
    long = pd.read_parquet(tmp_path / "long.parquet")
    assert long["subject_id"].tolist() == [10, 10, 10, 11]
    assert long["code"].tolist() == ["age", "sex//F", "dx", "sex//M"]  # a missing age gives no event
    assert long["numeric_value"].iloc[0] == 50.5 and long["numeric_value"].iloc[1:].isna().all()


def test_meds_output_passes_the_meds_schemas_and_reads_back(tmp_path, synthetic):
    table, _ = synthetic
    codes = [c for c in table.columns if c.startswith("ICD9:")]
    titles = {codes[0]: "first code"}
    write_synthetic(table, tmp_path / "meds", format="meds", titles=titles)
    root = tmp_path / "meds"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "data/0.parquet", "metadata/codes.parquet", "metadata/dataset.json", "metadata/subject_splits.parquet"]
    data = pq.read_table(root / "data/0.parquet")
    meds.DataSchema.validate(data)                      # raises on a wrong column or type
    assert data.schema.field("subject_id").type == meds.DataSchema.schema().field("subject_id").type
    code_table = pq.read_table(root / "metadata/codes.parquet")
    meds.CodeMetadataSchema.validate(code_table)
    meds.SubjectSplitSchema.validate(pq.read_table(root / "metadata/subject_splits.parquet"))
    meta = json.loads((root / "metadata/dataset.json").read_text())
    meds.DatasetMetadataSchema.validate(meta)
    assert meta["etl_name"] == "ehrdiff" and meta["meds_version"]
    assert set(code_table.column("code").to_pylist()) == set(data.column("code").to_pylist())
    assert dict(zip(code_table.column("code").to_pylist(), code_table.column("description").to_pylist()))[
        codes[0]] == "first code"
    # each subject's events are contiguous
    ids = data.column("subject_id").to_numpy()
    assert np.all(np.diff(ids) >= 0)

    # read back with the meds source: the same subjects, the same code matrix, the same label
    prepared = prepare_meds(root, label_code="label")
    back = prepared.table.frame.set_index("subject_id").sort_index()
    expected = table.frame.set_index("patient_nbr").sort_index()
    present = [c for c in codes if expected[c].any()]
    assert list(back.columns) == present + ["label"]
    assert np.array_equal(back.index.to_numpy(), expected.index.to_numpy())
    assert np.array_equal(back[present + ["label"]].to_numpy(), expected[present + ["label"]].to_numpy())


def test_meds_of_a_mixed_table_keeps_values_as_float32(tmp_path):
    table = Table.from_frame(pd.DataFrame({"subject_id": [3, 4], "age": [50.25, 61.0], "sex": ["F", "M"]}))
    write_synthetic(table, tmp_path / "m", format="meds")
    data = pq.read_table(tmp_path / "m/data/0.parquet")
    meds.DataSchema.validate(data)
    frame = data.to_pandas()
    assert frame["code"].tolist() == ["age", "sex//F", "age", "sex//M"]
    assert frame["numeric_value"].iloc[[0, 2]].tolist() == [50.25, 61.0]


def test_meds_refuses_a_non_empty_folder_and_repeated_subjects(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/keep.txt").write_text("x")
    good = Table.from_frame(pd.DataFrame({"subject_id": [1, 2], "dx": [1, 0]}))
    with pytest.raises(DataError, match="not empty"):
        write_synthetic(good, tmp_path / "m", format="meds")
    repeated = Table.from_frame(pd.DataFrame({"subject_id": [1, 1], "dx": [1, 0]}))
    with pytest.raises(DataError, match="one row per subject"):
        write_synthetic(repeated, tmp_path / "n", format="meds")
    assert not (tmp_path / "n").exists() and (tmp_path / "m/keep.txt").read_text() == "x"


def test_unknown_format_is_a_clear_error(tmp_path, synthetic):
    with pytest.raises(DataError, match="unknown output format 'xml'"):
        write_synthetic(synthetic[0], tmp_path / "x", format="xml")


def test_meds_keeps_subjects_without_any_event(tmp_path):
    table = Table.from_frame(pd.DataFrame({"subject_id": [100, 101, 102], "A01": [1, 0, 0], "B02": [0, 0, 1],
                                           "label": [1, 0, 0]}))
    write_synthetic(table, tmp_path / "m", format="meds")
    back = prepare_meds(tmp_path / "m", label_code="label").table.frame
    assert back.to_dict("list") == {"subject_id": [100, 101, 102], "A01": [1, 0, 0], "B02": [0, 0, 1],
                                    "label": [1, 0, 0]}
