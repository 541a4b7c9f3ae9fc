"""Issue 24: ICD-10-CM kept by default as 3-character categories, date columns as a kind of their own (inferred,
encoded as day counts, written back as dates) and id columns inferred from ``person_id`` and distinct ``*_id``."""

from __future__ import annotations

import csv
import datetime
import gzip
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import datahelp as h  # noqa: E402

from ehrdiff.cli import main  # noqa: E402
from ehrdiff.data import Table, TableEncoder, read_table, write_synthetic, write_table  # noqa: E402
from ehrdiff.data import icd  # noqa: E402
from ehrdiff.data.sources import prepare  # noqa: E402
from ehrdiff.data.table import infer_kind  # noqa: E402
from ehrdiff.errors import DataError  # noqa: E402
from ehrdiff.models.ehrdiff import EHRDiff  # noqa: E402

F = h.FIXTURES
BUNDLED_MIMIC_IV = h.REPO / "src/ehrdiff/demo_data/diagnoses_icd.csv.gz"
TINY = dict(steps=20, batch_size=32, hidden_dims=(16,), embedding_features=8, embedding_width=8)
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


# ---- ICD-10-CM ---------------------------------------------------------------------------------------------------
def test_icd10_codes_group_into_their_three_character_categories():
    codes = pd.Series(["I10", "E119", "E11.9", "C4A1", "T380X5A", "z87891"])
    categories, bad = icd.icd10_diagnosis(codes)
    assert categories.tolist() == ["I10", "E11", "E11", "C4A", "T38", "Z87"] and not bad.any()
    # a 2-character code is no ICD-10-CM code: before, it became a category "I1" of its own
    categories, bad = icd.icd10_diagnosis(pd.Series(["I1", "T380X5AA"]))
    assert bad.tolist() == [True, True] and categories.isna().all()


def test_both_vocabularies_are_kept_by_default_in_columns_named_by_vocabulary(tmp_path):
    rows = list(csv.DictReader(open(F / "mimic4/diagnoses_icd.csv")))
    expected: dict[int, set] = {}
    for r in rows:      # written out by hand: ICD-9 by the paper's rule, ICD-10-CM by its first 3 characters
        column = ("ICD9:" + h.mimic_category(r["icd_code"]) if r["icd_version"] == "9"
                  else "ICD10:" + r["icd_code"][:3])
        expected.setdefault(int(r["subject_id"]), set()).add(column)
    summary = prepare("mimic", tmp_path, diagnoses=F / "mimic4/diagnoses_icd.csv")
    train, test, _ = h.load(tmp_path)
    columns = sorted(set().union(*expected.values()))
    assert train.columns == ["subject_id"] + columns
    assert train.n_rows + test.n_rows == len(expected)
    for part in (train, test):
        got = h.positives(part.frame, columns)
        assert all(got[i] == expected[s] for i, s in enumerate(part.frame["subject_id"]))
    codes = summary["codes"]
    assert summary["options"]["icd10"] == "keep" and codes["icd10_rows_dropped"] == 0
    assert codes["rows_kept"] == {"icd9": sum(r["icd_version"] == "9" for r in rows),
                                  "icd10": sum(r["icd_version"] == "10" for r in rows)}
    assert codes["columns_by_vocabulary"] == {p: sum(c.startswith(p + ":") for c in columns) for p in ("ICD10", "ICD9")}


def test_prepare_mimic_on_the_bundled_mimic_iv_demo_keeps_all_100_patients(tmp_path, capsys):
    with gzip.open(BUNDLED_MIMIC_IV, "rt") as f:
        rows = list(csv.DictReader(f))
    assert main(["prepare", "mimic", "--diagnoses", str(BUNDLED_MIMIC_IV), "-o", str(tmp_path)]) == 0, \
        capsys.readouterr().err
    train, test, summary = h.load(tmp_path)
    assert train.n_rows + test.n_rows == len({r["subject_id"] for r in rows}) == 100
    assert summary["codes"]["rows_kept"] == {"icd9": 2193, "icd10": 2313}
    assert sum(r["icd_version"] == "10" for r in rows) == 2313
    vocabularies = {c.split(":")[0] for c in train.columns_of("binary")}
    assert vocabularies == {"ICD9", "ICD10"}


# ---- date columns ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [
    ["2019-03-07", "2020-12-31", None],
    ["2019-03-07 14:30", "2019-03-08T09:05:12", None],
    ["2019-03-07T14:30Z", "2019-03-07T16:30+02:00"],
    [datetime.date(2019, 3, 7), None],
    pd.to_datetime(["2019-03-07", None]),
])
def test_dates_are_recognised(values):
    assert infer_kind("admitted", pd.Series(values)) == "date"


@pytest.mark.parametrize("values", [["2019-02-30", "2019-03-01"], ["03/07/2019"], ["2019-03-07", "soon"],
                                    [20190307, 20190308], ["a", "b"]])
def test_other_values_are_not_dates(values):
    assert infer_kind("admitted", pd.Series(values)) != "date"


def dated_table(n: int = 60, seed: int = 0) -> Table:
    """Admission dates (some missing), discharge times to the minute, a UTC timestamp and a lab value."""
    rng = np.random.default_rng(seed)
    admitted = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 2000, n), unit="D")
    admitted_text = pd.Series(admitted.strftime("%Y-%m-%d"), dtype=object).where(rng.random(n) > 0.2, None)
    discharged = admitted + pd.to_timedelta(rng.integers(60, 20 * 24 * 60, n), unit="min")
    frame = pd.DataFrame({"admitted": admitted_text, "discharged": discharged,
                          "drawn": (discharged - pd.Timedelta(hours=3)).tz_localize("UTC"),
                          "lab": rng.normal(size=n)})
    return Table.from_frame(frame)


@pytest.mark.parametrize("scaling", ["minmax", "quantile"])
def test_date_encoding_is_invertible(scaling):
    table = dated_table()
    assert {c: table.kinds[c] for c in ("admitted", "discharged", "drawn")} == dict.fromkeys(
        ("admitted", "discharged", "drawn"), "date")
    encoder = TableEncoder(scaling).fit(table)
    assert encoder.encoded_columns == ["admitted", "admitted__missing", "discharged", "drawn", "lab"]
    assert [c.date_unit for c in encoder.codings_[:3]] == ["D", "min", "min"]
    back = encoder.inverse_transform(encoder.transform(table, dtype=np.float64)).frame
    for column in ("admitted", "discharged", "drawn"):
        pd.testing.assert_series_equal(back[column], table.frame[column], check_dtype=False, check_names=False)
    assert str(back["drawn"].dt.tz) == "UTC"


def test_decoded_dates_lie_in_the_training_range_at_the_training_resolution():
    table = dated_table()
    encoder = TableEncoder().fit(table)
    noise = np.random.default_rng(1).normal(0.5, 1.0, (500, encoder.width))     # well outside [0, 1] too
    back = encoder.inverse_transform(noise).frame
    for column, unit in (("admitted", "D"), ("discharged", "min")):
        real, fake = table.frame[column].dropna(), back[column].dropna()
        assert real.min() <= fake.min() and fake.max() <= real.max()
        assert (fake == fake.dt.floor(unit)).all()


def test_a_value_that_is_no_date_names_its_row():
    frame = pd.DataFrame({"admitted": ["2019-03-07", "07/03/2019"], "x": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"dates.csv: date column 'admitted' row 1 has '07/03/2019'.*YYYY-MM-DD"):
        Table.from_frame(frame, {"admitted": "date"}, source="dates.csv")


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".npz"])
def test_date_columns_are_written_and_read_back_as_dates(tmp_path, suffix):
    table = Table.from_frame(dated_table().frame[["admitted", "discharged", "lab"]])
    path = write_table(table, tmp_path / f"t{suffix}")
    back = read_table(path)
    assert back.kinds == table.kinds and back.kinds["admitted"] == back.kinds["discharged"] == "date"
    assert back.frame["admitted"].equals(table.frame["admitted"].astype(back.frame["admitted"].dtype))
    # NPZ holds float32 day counts: minutes survive to within a few minutes
    error = (back.frame["discharged"] - table.frame["discharged"]).abs().max()
    assert error <= (pd.Timedelta(minutes=3) if suffix == ".npz" else pd.Timedelta(0))


def test_a_table_with_dates_round_trips_through_prepare_train_and_sample(tmp_path, capsys, one_thread):
    table = dated_table(n=80)
    source = tmp_path / "stays.csv"
    table.frame.assign(stay_id=np.arange(80)).to_csv(source, index=False)
    assert main(["prepare", "table", "--input", str(source), "-o", str(tmp_path / "data")]) == 0, \
        capsys.readouterr().err
    train = read_table(tmp_path / "data/train.parquet")
    assert train.kinds["admitted"] == train.kinds["discharged"] == "date" and train.kinds["stay_id"] == "id"
    settings = json.dumps(list(TINY["hidden_dims"]))
    assert main(["train", str(tmp_path / "data/train.parquet"), "--steps", "20", "--batch-size", "32",
                 "--set", f"hidden_dims={settings}", "-o", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    assert main(["sample", str(tmp_path / "run"), "-n", "40", "-o", str(tmp_path / "synthetic.csv")]) == 0, \
        capsys.readouterr().err
    written = pd.read_csv(tmp_path / "synthetic.csv", dtype=str)
    admitted = written["admitted"].dropna()
    assert len(admitted) and admitted.str.fullmatch(ISO_DAY).all()       # plain dates: YYYY-MM-DD
    for column in ("admitted", "discharged"):
        dates = pd.to_datetime(written[column]).dropna()
        real = train.frame[column].dropna()
        assert real.min() <= dates.min() and dates.max() <= real.max()
    assert read_table(tmp_path / "synthetic.csv").kinds["admitted"] == "date"


@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
def test_sampled_dates_are_dates_in_other_formats(tmp_path, suffix, one_thread):
    table = Table.from_frame(dated_table(n=64).frame[["admitted", "lab"]])
    synthetic = EHRDiff("default", **TINY).fit(table, progress=False).sample(30, seed=0)
    back = read_table(write_synthetic(synthetic, tmp_path / f"s{suffix}"))
    assert back.kinds["admitted"] == "date"
    dates = back.frame["admitted"].dropna()
    assert len(dates) and (dates == dates.dt.floor("D")).all()
    assert table.frame["admitted"].min() <= dates.min() and dates.max() <= table.frame["admitted"].max()


def test_evaluation_compares_date_columns_as_day_counts():
    from ehrdiff.evaluation import evaluate

    table = Table.from_frame(dated_table(n=90).frame[["admitted", "discharged", "lab"]])
    train, test = table.subset(range(60)), table.subset(range(60, 90))
    shifted = test.frame.assign(admitted=test.frame["admitted"] + pd.Timedelta(days=400))  # a year too late
    report = evaluate(train, test, {"same": test, "shifted": shifted}, references=False, figures=False)
    for name in ("same", "shifted"):
        assert not [w for w in report.metrics[name].get("warnings", []) if "admitted" in w]
    assert report.metrics["shifted"]["continuous_ks_max"] > report.metrics["same"]["continuous_ks_max"]


# ---- id columns --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, values, kind", [
    ("person_id", [7, 7, 9], "id"),                               # a known name: an id even where it repeats
    ("patient_nbr", [8222157, 55629189, 86047875], "id"),         # UCI diabetes' patient number (no _id suffix)
    ("visit_occurrence_id", [31, 12, 45], "id"),                  # *_id, distinct whole numbers
    ("Encounter_ID", ["e-1", "e-2", "e-3"], "id"),                # *_id, distinct text, any case
    ("care_site_id", [3, 3, 5], "categorical"),                   # shared by several rows: not an id
    ("provider_id", ["p1", "p2", "p1"], "categorical"),
    ("score_id", [0.5, 1.5, 2.5], "continuous"),                  # not whole numbers or text
    ("visit_id", [1.0, None, 3.0], "continuous"),                 # a gap: no id
    ("idiom", [1, 2, 3], "continuous"),                           # no _id suffix
])
def test_id_columns_are_inferred_from_their_names_and_distinct_values(name, values, kind):
    assert infer_kind(name, pd.Series(values)) == kind
