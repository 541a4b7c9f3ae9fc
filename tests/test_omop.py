"""The OMOP CDM reader (``ehrdiff prepare omop``) and writer (``write_omop``, ``ehrdiff sample --format omop``).

The CDM is built here by tests/fixtures/omop_cdm.py from rows written to the OMOP CDM 5.4 table definitions
(https://ohdsi.github.io/CommonDataModel/cdm54.html): person, condition_occurrence, drug_exposure,
procedure_occurrence, measurement, observation, death and concept, 48 persons; its docstring lists every column
written (all CDM 5.4 required columns plus a few optional ones: month/day_of_birth, birth_datetime, value_as_number,
*_source_value). The same rows are written as CSV (upper-case file and column names, dates as YYYY-MM-DD text,
condition_occurrence gzipped) and as Parquet (lower case, date32 and timestamp columns). The expected tables are
computed below from those rows in plain Python, not with the code under test.
"""

from __future__ import annotations

import datetime
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import omop_cdm  # noqa: E402

from ehrdiff.cli import main  # noqa: E402
from ehrdiff.data.omop import write_omop  # noqa: E402
from ehrdiff.data.io import read_table  # noqa: E402
from ehrdiff.data.writers import write_synthetic  # noqa: E402
from ehrdiff.data.sources import prepare  # noqa: E402
from ehrdiff.data.sources.omop import prepare_omop  # noqa: E402
from ehrdiff.errors import DataError  # noqa: E402

# domain -> (CDM table, concept column, date column), as CDM 5.4 names them
DOMAIN_TABLES = {
    "condition": ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    "drug": ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_date"),
    "observation": ("observation", "observation_concept_id", "observation_date"),
    "measurement": ("measurement", "measurement_concept_id", "measurement_date"),
}
# CDM 5.4 required columns of the tables the writer writes (OMOP_CDMv5.4_Field_Level.csv, isRequired = Yes)
REQUIRED = {
    "person": ["person_id", "gender_concept_id", "year_of_birth", "race_concept_id", "ethnicity_concept_id"],
    "condition_occurrence": ["condition_occurrence_id", "person_id", "condition_concept_id", "condition_start_date",
                             "condition_type_concept_id"],
    "drug_exposure": ["drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date",
                      "drug_exposure_end_date", "drug_type_concept_id"],
    "procedure_occurrence": ["procedure_occurrence_id", "person_id", "procedure_concept_id", "procedure_date",
                             "procedure_type_concept_id"],
    "observation": ["observation_id", "person_id", "observation_concept_id", "observation_date",
                    "observation_type_concept_id"],
    "measurement": ["measurement_id", "person_id", "measurement_concept_id", "measurement_date",
                    "measurement_type_concept_id"],
    "death": ["person_id", "death_date"],
}
ALL_DOMAINS = "condition,drug,procedure,observation,measurement"
TINY = ["--preset", "cpu-fast", "--steps", "20", "--batch-size", "16", "--set", "hidden_dims=[16,16]",
        "--set", "embedding_features=8", "--set", "embedding_width=16"]


@pytest.fixture(scope="module")
def rows():
    return omop_cdm.build(persons=48, seed=0)


@pytest.fixture(scope="module")
def csv_dir(rows, tmp_path_factory):
    return omop_cdm.write_csv(rows, tmp_path_factory.mktemp("cdm_csv"))


@pytest.fixture(scope="module")
def parquet_dir(rows, tmp_path_factory):
    return omop_cdm.write_parquet(rows, tmp_path_factory.mktemp("cdm_parquet"))


# ---- the expected table, by hand ----------------------------------------------------------------------------------
def _as_date(value) -> datetime.date:
    return value.date() if isinstance(value, datetime.datetime) else value


def birth_date(person: dict) -> datetime.date:
    """CDM 5.4: birth_datetime if given; else the parts, the 1st when the day is missing, 15 June without a month."""
    if person["birth_datetime"] is not None:
        return _as_date(person["birth_datetime"])
    if person["month_of_birth"] is None:
        return datetime.date(person["year_of_birth"], 6, 15)
    return datetime.date(person["year_of_birth"], person["month_of_birth"], person["day_of_birth"] or 1)


def age_on(birth: datetime.date, day: datetime.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def expected_table(rows, domains: list[str], *, reference: datetime.date | None = None) -> dict[int, dict]:
    """person_id -> {age, sex, column: 1 for each concept held} from the raw rows."""
    persons = {p["person_id"]: p for p in rows["person"]}
    held, last = defaultdict(set), {}
    for domain in domains:
        table, concept_column, date_column = DOMAIN_TABLES[domain]
        for row in rows[table]:
            pid, concept = row["person_id"], row[concept_column]
            if concept in (0, None) or pid not in persons:
                continue
            held[pid].add(f"{domain}:{concept}")
            last[pid] = max(last.get(pid, row[date_column]), row[date_column])
    latest = max(last.values())
    out = {}
    for pid, person in persons.items():
        day = reference or last.get(pid, latest)
        sex = {8507: "male", 8532: "female"}.get(person["gender_concept_id"], "unknown")
        out[pid] = {"age": age_on(birth_date(person), day), "sex": sex, **{c: 1 for c in held[pid]}}
    return out


def last_value(rows, concept: int) -> dict[int, float]:
    """person -> value_as_number of the latest dated measurement of ``concept`` with a value (later row on a tie)."""
    best: dict[int, tuple] = {}
    for position, row in enumerate(rows["measurement"]):
        if row["measurement_concept_id"] == concept and row["value_as_number"] is not None:
            key = (row["measurement_date"], position)
            if row["person_id"] not in best or key > best[row["person_id"]][0]:
                best[row["person_id"]] = (key, row["value_as_number"])
    return {pid: value for pid, (_, value) in best.items()}


def both_sides(out: Path) -> pd.DataFrame:
    train, test = read_table(out / "train.parquet"), read_table(out / "test.parquet")
    return pd.concat([train.frame, test.frame]).sort_values("person_id").reset_index(drop=True)


def check_matches(frame: pd.DataFrame, expected: dict[int, dict]) -> None:
    assert sorted(frame["person_id"]) == sorted(expected)
    codes = sorted({c for person in expected.values() for c in person if ":" in c})
    assert [c for c in frame.columns if ":" in c and not c.startswith("measurement_value")] == codes
    for _, row in frame.iterrows():
        want = expected[row["person_id"]]
        assert row["age"] == want["age"] and row["sex"] == want["sex"], row["person_id"]
        assert {c for c in codes if row[c] == 1} == {c for c in want if ":" in c}, row["person_id"]


# ---- reading ------------------------------------------------------------------------------------------------------
def test_csv_cdm_gives_one_row_per_person_with_concepts_age_sex_and_death_label(rows, csv_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "omop", str(csv_dir), "--domains", "condition,drug", "--names", "ids",
                 "--label", "death", "-o", str(out)]) == 0
    assert "train.parquet 38 x" in capsys.readouterr().out
    frame = both_sides(out)
    check_matches(frame, expected_table(rows, ["condition", "drug"]))
    died = {r["person_id"] for r in rows["death"]}
    assert dict(zip(frame["person_id"], frame["label"])) == {p: int(p in died) for p in frame["person_id"]}
    kinds = read_table(out / "train.parquet").kinds
    assert (kinds["person_id"], kinds["age"], kinds["sex"], kinds["label"]) == ("id", "continuous", "categorical",
                                                                                "label")
    assert {kinds[c] for c in frame.columns if ":" in c} == {"binary"}
    train, test = read_table(out / "train.parquet").frame, read_table(out / "test.parquet").frame
    assert not set(train["person_id"]) & set(test["person_id"]) and len(test) == round(0.2 * 48)
    summary = json.loads((out / "summary.json").read_text())
    conditions = summary["tables"]["condition_occurrence"]
    assert conditions["rows_concept_0_or_empty"] == 1 and conditions["rows_of_persons_not_in_person_table"] == 1
    assert summary["split"]["by"] == "person_id" and summary["label"]["definition"].startswith("1 if the person is in")


def test_parquet_with_lower_case_names_reads_the_same_as_upper_case_csv(csv_dir, parquet_dir):
    options = {"domains": ALL_DOMAINS, "measurements": "3004410", "label": "death"}
    from_csv, from_parquet = prepare_omop(csv_dir, **options).table, prepare_omop(parquet_dir, **options).table
    pd.testing.assert_frame_equal(from_csv.frame, from_parquet.frame, check_dtype=False)
    assert from_csv.kinds == from_parquet.kinds


def test_a_concept_table_names_columns_by_vocabulary_code_and_titles_them(rows, csv_dir, tmp_path):
    summary = prepare("omop", tmp_path / "out", cdm_dir=csv_dir, domains="condition,measurement",
                      measurements=[3004410])
    columns = list(read_table(tmp_path / "out" / "train.parquet").frame.columns)
    assert "condition:SNOMED:44054006:201826" in columns and "measurement:LOINC:4548-4:3004410" in columns
    assert "measurement_value:LOINC:4548-4:3004410" in columns
    assert summary["titles"]["condition:SNOMED:44054006:201826"] == "Type 2 diabetes mellitus"
    assert not [c for c in columns if c.startswith("condition:") and c.count(":") != 3]


def test_measurement_values_are_each_persons_last_value(rows, csv_dir):
    table = prepare_omop(csv_dir, names="ids", measurements="3004410,3004249").table.frame.set_index("person_id")
    for concept in (3004410, 3004249):
        want = last_value(rows, concept)
        got = table[f"measurement_value:{concept}"]
        assert got.dropna().to_dict() == pytest.approx(want)
        assert got.isna().sum() == len(got) - len(want)


def test_measurement_summaries_take_the_concepts_with_values_for_most_persons(rows, csv_dir):
    persons = {c: len(last_value(rows, c)) for c in omop_cdm.LABS}
    top = sorted(persons, key=lambda c: (-persons[c], c))[:2]
    table = prepare_omop(csv_dir, names="ids", measurement_summaries=2).table
    assert [c for c in table.columns if c.startswith("measurement_value")] == \
        [f"measurement_value:{c}" for c in sorted(top)]
    assert table.kinds[f"measurement_value:{top[0]}"] == "continuous"


def test_label_concept_is_removed_from_the_features(rows, csv_dir):
    table = prepare_omop(csv_dir, names="ids", label_concept="4329847").table
    holders = {r["person_id"] for r in rows["condition_occurrence"] if r["condition_concept_id"] == 4329847}
    frame = table.frame
    assert dict(zip(frame["person_id"], frame["label"])) == {p: int(p in holders) for p in frame["person_id"]}
    assert "condition:4329847" not in frame.columns and table.kinds["label"] == "label"


def test_fixed_reference_date_gives_age_on_that_day(rows, csv_dir):
    frame = prepare_omop(csv_dir, names="ids", reference_date="2023-07-01").table.frame
    expected = expected_table(rows, ["condition"], reference=datetime.date(2023, 7, 1))
    check_matches(frame, expected)


# ---- bad input: one line naming the file, column or row -------------------------------------------------------------
def small_cdm(folder: Path, **replace: str) -> Path:
    """A three-person CSV CDM; ``replace`` swaps a file's text (None removes the file)."""
    files = {
        "person.csv": "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
                      "1,8507,1950,0,0\n2,8532,1960,0,0\n3,8532,1970,0,0\n",
        "condition_occurrence.csv": "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
                                    "condition_type_concept_id\n1,1,201826,2020-01-05,32817\n"
                                    "2,2,320128,2020-02-05,32817\n3,3,201826,2020-03-05,32817\n",
    }
    files.update({name.replace("__", "."): text for name, text in replace.items()})
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if text is not None:
            (folder / name).write_text(text)
    return folder


def fails(capsys, tmp_path, argv, *fragments) -> str:
    out = tmp_path / "out"
    code = main(["prepare", "omop", *map(str, argv), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("ehrdiff: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not out.exists()
    return err


def test_small_cdm_prepares(tmp_path):
    """The base of the bad-input cases below is itself good input."""
    table = prepare_omop(small_cdm(tmp_path / "cdm")).table
    assert table.frame.shape == (3, 5) and list(table.frame["age"]) == [69, 59, 49]   # born 15 June (no month)


def test_birth_date_rules_for_missing_parts(tmp_path):
    """CDM 5.4 person conventions: birth_datetime when given; without it the 1st of the month when the day is
    missing, 15 June when the month is missing too. On 10 June 2020 these three are 69, 60 and 50."""
    cdm = small_cdm(tmp_path / "cdm", person__csv="person_id,gender_concept_id,year_of_birth,month_of_birth,"
                                                  "day_of_birth,birth_datetime,race_concept_id,ethnicity_concept_id\n"
                                                  "1,8507,1950,,,,0,0\n2,8532,1960,6,,,0,0\n"
                                                  "3,8532,1970,,,1970-06-05 00:00:00,0,0\n")
    table = prepare_omop(cdm, reference_date="2020-06-10").table
    assert list(table.frame["age"]) == [69, 60, 50]


def test_missing_person_table(capsys, tmp_path):
    fails(capsys, tmp_path, [small_cdm(tmp_path / "cdm", person__csv=None)], "no person table")


def test_missing_required_column_names_file_and_column(capsys, tmp_path):
    cdm = small_cdm(tmp_path / "cdm", person__csv="person_id,gender_concept_id\n1,8507\n")
    fails(capsys, tmp_path, [cdm], str(cdm / "person.csv"), "'year_of_birth' is missing")


def test_missing_date_column_names_file_and_column(capsys, tmp_path):
    cdm = small_cdm(tmp_path / "cdm", condition_occurrence__csv="person_id,condition_concept_id\n1,201826\n")
    fails(capsys, tmp_path, [cdm], "condition_occurrence.csv", "'condition_start_date'")


def test_unparsable_date_names_file_line_and_value(capsys, tmp_path):
    cdm = small_cdm(tmp_path / "cdm", condition_occurrence__csv="person_id,condition_concept_id,condition_start_date\n"
                                                                "1,201826,2020-01-05\n2,320128,05/02/2020\n")
    fails(capsys, tmp_path, [cdm], "condition_occurrence.csv: line 3", "'05/02/2020'", "condition_start_date")


def test_text_concept_id_names_the_line(capsys, tmp_path):
    cdm = small_cdm(tmp_path / "cdm", condition_occurrence__csv="person_id,condition_concept_id,condition_start_date\n"
                                                                "1,E11,2020-01-05\n")
    fails(capsys, tmp_path, [cdm], "line 2", "'E11'", "concept id")


def test_person_table_without_rows(capsys, tmp_path):
    cdm = small_cdm(tmp_path / "cdm", person__csv="person_id,gender_concept_id,year_of_birth\n")
    fails(capsys, tmp_path, [cdm], "person table has no rows")


def test_person_listed_twice(capsys, tmp_path):
    cdm = small_cdm(tmp_path / "cdm", person__csv="person_id,gender_concept_id,year_of_birth\n1,8507,1950\n"
                                                  "1,8532,1960\n")
    fails(capsys, tmp_path, [cdm], "line 3", "person_id 1 appears twice")


@pytest.mark.parametrize("argv, fragments", [
    (["--domains", "condition,labs"], ["unknown OMOP domain 'labs'"]),
    (["--domains", "drug"], ["--domains drug needs the drug_exposure table"]),
    (["--label", "death"], ["--label death needs the death table"]),
    (["--label-concept", "4329847"], ["--label-concept 4329847 occurs in no row"]),
    (["--measurements", "3004410"], ["needs the measurement table"]),
    (["--measurements", "HbA1c"], ["'HbA1c' is not a concept id"]),
    (["--reference-date", "2020-31-12"], ["'2020-31-12' is not a date"]),
    (["--min-count", "5"], ["no concept is held by at least 5 person(s)"]),
])
def test_bad_options(capsys, tmp_path, argv, fragments):
    fails(capsys, tmp_path, [small_cdm(tmp_path / "cdm"), *argv], *fragments)


def test_two_files_for_one_table(capsys, tmp_path):
    cdm = small_cdm(tmp_path / "cdm")
    shutil.copy(cdm / "person.csv", cdm / "PERSON.csv.gz")
    fails(capsys, tmp_path, [cdm], "two files for the person table")


# ---- writing back -------------------------------------------------------------------------------------------------
def test_written_cdm_reads_back_to_the_same_table(csv_dir, tmp_path):
    """Every column kind survives write_omop -> prepare omop: codes of all domains (named by vocabulary code),
    measurement values, age, sex (also unknown) and the death label."""
    options = {"domains": ALL_DOMAINS, "measurements": "3004410,3004249", "label": "death"}
    table = prepare_omop(csv_dir, **options).table
    write_omop(table, tmp_path / "cdm_out")
    back = prepare_omop(tmp_path / "cdm_out", concepts=csv_dir / "CONCEPT.csv", **options).table
    pd.testing.assert_frame_equal(back.frame, table.frame, check_dtype=False)
    assert back.kinds == table.kinds
    assert "unknown" in set(table.frame["sex"]) and 0 < table.frame["label"].sum() < len(table.frame)


def test_written_files_have_the_cdm54_required_columns(csv_dir, tmp_path):
    table = prepare_omop(csv_dir, domains=ALL_DOMAINS, measurements="3004410", label="death").table
    write_omop(table, tmp_path / "cdm_out", reference_date="2024-02-29")
    files = {p.name for p in (tmp_path / "cdm_out").iterdir()}
    assert files == {f"{name}.csv" for name in REQUIRED}
    for name, required in REQUIRED.items():
        frame = pd.read_csv(tmp_path / "cdm_out" / f"{name}.csv")
        assert not set(required) - set(frame.columns), name
        assert frame[required].notna().all().all(), name
        for column in [c for c in frame.columns if c.endswith("type_concept_id")]:
            assert set(frame[column]) == {32817}
        for column in [c for c in frame.columns if c.endswith("_date")]:
            assert set(frame[column]) == {"2024-02-29"}
    person = pd.read_csv(tmp_path / "cdm_out" / "person.csv")
    births = pd.to_datetime(person["birth_datetime"])
    assert (births.dt.year == person["year_of_birth"]).all() and (births.dt.day == person["day_of_birth"]).all()
    ages = [age_on(b.date(), datetime.date(2024, 2, 29)) for b in births]
    assert ages == list(table.frame["age"].astype(int))
    values = pd.read_csv(tmp_path / "cdm_out" / "measurement.csv")
    hba1c = values[values["measurement_concept_id"] == 3004410]
    assert not hba1c.duplicated("person_id").any()  # a value row is not written twice (value + presence)


def test_writer_refuses_a_table_that_is_not_from_omop(tmp_path):
    from ehrdiff.data.table import Table

    table = Table.from_frame(pd.DataFrame({"subject_id": [1, 2], "ICD9:401": [1, 0], "age": [50.0, 60.0]}))
    with pytest.raises(DataError, match="'ICD9:401' is not an OMOP column"):
        write_omop(table, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_concept_file_from_athena_is_tab_separated_with_quotes_in_names(csv_dir, tmp_path):
    """The Athena vocabulary download: CONCEPT.csv separated by tabs, unquoted, dates as YYYYMMDD, given by --concepts
    from outside the CDM folder."""
    cdm = tmp_path / "cdm"
    shutil.copytree(csv_dir, cdm)
    (cdm / "CONCEPT.csv").unlink()
    athena = tmp_path / "vocabulary" / "CONCEPT.csv"
    athena.parent.mkdir()
    athena.write_text("concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\t"
                      "concept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
                      '201826\t"Type 2" diabetes mellitus\tCondition\tSNOMED\tClinical Finding\tS\t44054006\t'
                      "19700101\t20991231\t\n")
    prepared = prepare_omop(cdm, concepts=athena)
    assert "condition:SNOMED:44054006:201826" in prepared.table.columns
    assert "condition:320128" in prepared.table.columns      # not in this concept file: named by its id
    assert prepared.details["titles"] == {"condition:SNOMED:44054006:201826": '"Type 2" diabetes mellitus'}


def test_a_concept_label_is_written_as_that_concepts_row(csv_dir, tmp_path):
    table = prepare_omop(csv_dir, names="ids", label_concept="4329847").table
    write_omop(table, tmp_path / "cdm_out", label="condition:4329847")
    assert not (tmp_path / "cdm_out" / "death.csv").exists()
    back = prepare_omop(tmp_path / "cdm_out", names="ids", label_concept="4329847").table
    pd.testing.assert_frame_equal(back.frame, table.frame, check_dtype=False)


def test_a_measurement_label_is_never_a_value_column(csv_dir):
    table = prepare_omop(csv_dir, names="ids", domains="measurement", label_concept=3027018,
                         measurement_summaries=3).table
    assert [c for c in table.columns if "3027018" in c] == []
    assert {c for c in table.columns if c.startswith("measurement_value")} == \
        {"measurement_value:3004410", "measurement_value:3004249"}
    with pytest.raises(DataError, match="also in --measurements"):
        prepare_omop(csv_dir, domains="measurement", label_concept=3027018, measurements="3027018,3004410")


def test_write_synthetic_format_omop_is_the_omop_writer(csv_dir, tmp_path):
    table = prepare_omop(csv_dir, domains="condition,drug", label="death").table
    write_synthetic(table, tmp_path / "by_format", format="omop")
    write_omop(table, tmp_path / "direct")
    for name in ("person.csv", "condition_occurrence.csv", "drug_exposure.csv", "death.csv"):
        assert (tmp_path / "by_format" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name


@pytest.mark.usefixtures("one_thread")
def test_cli_sample_format_omop_reads_back_to_the_sampled_rows(csv_dir, tmp_path):
    """prepare omop -> train (20 steps) -> sample --format omop -> prepare omop again: the codes, age, sex and label
    read back are those of the same draw written wide."""
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["-q", "prepare", "omop", str(csv_dir), "--domains", "condition,drug", "--names", "ids",
                 "--label", "death", "-o", str(data)]) == 0
    assert main(["-q", "train", str(data / "train.parquet"), "-o", str(run), *TINY]) == 0
    assert main(["-q", "sample", str(run), "-n", "40", "--seed", "3", "-o", str(tmp_path / "omop"),
                 "--format", "omop"]) == 0
    assert main(["-q", "sample", str(run), "-n", "40", "--seed", "3", "-o", str(tmp_path / "wide.parquet")]) == 0
    wide = read_table(tmp_path / "wide.parquet").frame
    back = prepare_omop(tmp_path / "omop", domains="condition,drug", label="death").table.frame
    trained_columns = list(read_table(data / "train.parquet").frame.columns)
    assert set(back.columns) <= set(trained_columns) and len(back) == 40
    absent = [c for c in trained_columns if c not in back.columns]
    assert (wide[absent] == 0).all().all()       # a column is missing only when no synthetic person has it
    pd.testing.assert_frame_equal(back, wide[list(back.columns)], check_dtype=False)
    assert np.array_equal(back["person_id"], wide["person_id"])
