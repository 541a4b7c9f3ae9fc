"""OMOP CDM 5.4 and ehrdiff's one-row-per-person table: the column names both directions share, the age rule, and
the writer back to CDM tables (``ehrdiff sample --format omop``). The reader is ``ehrdiff.data.sources.omop``.

Column names of a table prepared by ``ehrdiff prepare omop`` (and the only ones ``write_omop`` accepts):

    person_id                            the person (kind id)
    age                                  completed years at the reference date (continuous, whole numbers)
    sex                                  male / female / unknown, from gender_concept_id 8507 / 8532 / other
    DOMAIN:CONCEPT_ID                    1 if the person has a row with that concept (binary), e.g. condition:201826
    DOMAIN:VOCABULARY:CODE:CONCEPT_ID    the same where a concept table names the concept,
                                         e.g. condition:SNOMED:44054006:201826
    measurement_value:CONCEPT_ID         the person's last value_as_number of that measurement (continuous; also
                                         with VOCABULARY:CODE before the id)
    label                                0/1: in the death table (``--label death``) or has a named concept

DOMAIN is condition, drug, procedure, observation or measurement. The concept id always ends the name, so the writer
needs no concept table to map a column back to its table and concept.

Writing back: person ids are made fresh where they would collide (``reserved_ids``), event ids are numbered from 1
per table, every event and every death is dated on ``reference_date`` (the reader's default reference is each
person's last event date, so age reads back unchanged), and each birth date is drawn (seeded) within the year that
gives the person's age on that date. Type concepts are 32817 ("EHR"); race and ethnicity are 0 ("No matching
concept"), since the table does not model them.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ehrdiff.data.table import Table
from ehrdiff.data.writers import safe_subject_ids, staged_dir, whole_table_writer
from ehrdiff.errors import DataError

PERSON_ID = "person_id"
AGE = "age"
SEX = "sex"
LABEL = "label"
VALUE_DOMAIN = "measurement_value"
EHR_TYPE_CONCEPT = 32817                 # "EHR": the type concept of every written row
NO_MATCHING_CONCEPT = 0
SEX_BY_GENDER_CONCEPT = {8507: "male", 8532: "female"}
UNKNOWN_SEX = "unknown"
SYNTHETIC_REFERENCE_DATE = datetime.date(2020, 1, 1)   # the written events' date unless the caller gives one


@dataclass(frozen=True)
class Domain:
    """One CDM event table, with the CDM 5.4 names of the columns ehrdiff reads and writes."""

    name: str                  # the column prefix and --domains name: condition
    table: str                 # condition_occurrence
    event_id: str              # condition_occurrence_id
    concept: str               # condition_concept_id
    date: str                  # condition_start_date
    datetime: str              # condition_start_datetime: read when the date column is absent
    type_concept: str          # condition_type_concept_id
    end_date: str | None = None  # drug_exposure_end_date: required by CDM 5.4 for drugs only

    @property
    def file_name(self) -> str:
        return f"{self.table}.csv"


DOMAINS = {d.name: d for d in (
    Domain("condition", "condition_occurrence", "condition_occurrence_id", "condition_concept_id",
           "condition_start_date", "condition_start_datetime", "condition_type_concept_id"),
    Domain("drug", "drug_exposure", "drug_exposure_id", "drug_concept_id", "drug_exposure_start_date",
           "drug_exposure_start_datetime", "drug_type_concept_id", end_date="drug_exposure_end_date"),
    Domain("procedure", "procedure_occurrence", "procedure_occurrence_id", "procedure_concept_id", "procedure_date",
           "procedure_datetime", "procedure_type_concept_id"),
    Domain("observation", "observation", "observation_id", "observation_concept_id", "observation_date",
           "observation_datetime", "observation_type_concept_id"),
    Domain("measurement", "measurement", "measurement_id", "measurement_concept_id", "measurement_date",
           "measurement_datetime", "measurement_type_concept_id"),
)}
MEASUREMENT = DOMAINS["measurement"]


# ---- column names ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConceptColumn:
    """A concept column's meaning: ``domain`` (a DOMAINS name or VALUE_DOMAIN), the concept id and, where a concept
    table named it, ``code`` = VOCABULARY:CODE."""

    domain: str
    concept_id: int
    code: str | None = None

    @property
    def name(self) -> str:
        middle = f"{self.code}:" if self.code else ""
        return f"{self.domain}:{middle}{self.concept_id}"

    @property
    def table_domain(self) -> Domain:
        """The CDM table the column's rows live in (a measurement value's is measurement)."""
        return MEASUREMENT if self.domain == VALUE_DOMAIN else DOMAINS[self.domain]


def vocabulary_code(vocabulary_id: str, concept_code: str) -> str:
    """The VOCABULARY:CODE part of a column name."""
    return f"{vocabulary_id}:{concept_code}"


def parse_column(name: str) -> ConceptColumn | None:
    """The concept a column name stands for, or None when it is not DOMAIN:[VOCABULARY:CODE:]CONCEPT_ID."""
    parts = str(name).split(":")
    if len(parts) < 2 or parts[0] not in (*DOMAINS, VALUE_DOMAIN) or len(parts) == 3:
        return None
    if not parts[-1].isdigit():
        return None
    code = ":".join(parts[1:-1]) or None
    return ConceptColumn(parts[0], int(parts[-1]), code)


# ---- age -------------------------------------------------------------------------------------------------------
def completed_years(birth: pd.Series, reference: pd.Series) -> pd.Series:
    """Whole years from ``birth`` to ``reference`` (both datetime64): the age on that day, as people count it."""
    before_birthday = (reference.dt.month * 100 + reference.dt.day) < (birth.dt.month * 100 + birth.dt.day)
    return reference.dt.year - birth.dt.year - before_birthday.astype("int64")


def birth_dates(ages: np.ndarray, reference: datetime.date, rng: np.random.Generator) -> pd.Series:
    """A birth date for each age such that ``completed_years(birth, reference) == age``: the date ``age`` years before
    ``reference`` less 0-364 days (drawn), so births spread over the year instead of all falling on one day."""
    day = 28 if (reference.month, reference.day) == (2, 29) else reference.day  # Feb 29 is not in every year
    anniversary = pd.to_datetime(pd.DataFrame({"year": reference.year - ages, "month": reference.month, "day": day}))
    return anniversary - pd.to_timedelta(rng.integers(0, 365, len(ages)), unit="D")


# ---- the writer ------------------------------------------------------------------------------------------------
@dataclass
class _Layout:
    """A table's columns sorted by what they become in the CDM."""

    concepts: dict[str, ConceptColumn]        # column -> concept
    label_as: ConceptColumn | str | None      # "death", a concept, or None (no label column or not written)


def _layout(table: Table, label: str | None) -> _Layout:
    concepts: dict[str, ConceptColumn] = {}
    for column in table.columns:
        if column in (AGE, SEX, LABEL) or table.kinds[column] == "id":
            continue
        parsed = parse_column(column)
        if parsed is None:
            raise DataError(f"column '{column}' is not an OMOP column (DOMAIN:CONCEPT_ID, age, sex, label); "
                            "--format omop writes tables prepared by 'ehrdiff prepare omop' (write others as wide, "
                            "long or meds)")
        concepts[column] = parsed
    if AGE not in table.frame:
        raise DataError("--format omop needs an 'age' column (year_of_birth is required by the CDM); "
                        "the table was not prepared by 'ehrdiff prepare omop'")
    label_as: ConceptColumn | str | None = None
    if LABEL in table.frame and label is not None:
        label_as = "death" if label == "death" else parse_column(label)
        if label_as is None or (isinstance(label_as, ConceptColumn) and label_as.domain == VALUE_DOMAIN):
            raise DataError(f"label written as '{label}': give 'death' or a concept column name such as "
                            "condition:201826")
    return _Layout(concepts, label_as)


def _binary(values: pd.Series, column: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if not np.isin(numbers[~np.isnan(numbers)], (0.0, 1.0)).all():
        raise DataError(f"column '{column}' must hold 0/1 to be written as OMOP rows")
    return numbers == 1


def _person_rows(table: Table, person_ids: np.ndarray, reference: datetime.date, seed: int) -> pd.DataFrame:
    ages = pd.to_numeric(table.frame[AGE], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(ages).all():
        raise DataError("column 'age' has no value; year_of_birth is required by the CDM")
    ages = np.floor(np.where(np.isnan(ages), np.nanmedian(ages), np.clip(ages, 0, None))).astype(np.int64)
    birth = birth_dates(ages, reference, np.random.default_rng(seed))
    sex = table.frame[SEX].astype("string") if SEX in table.frame else pd.Series(UNKNOWN_SEX, index=table.frame.index)
    gender_by_sex = {v: k for k, v in SEX_BY_GENDER_CONCEPT.items()}
    return pd.DataFrame({
        "person_id": person_ids,
        "gender_concept_id": sex.map(gender_by_sex).fillna(NO_MATCHING_CONCEPT).astype("int64").to_numpy(),
        "year_of_birth": birth.dt.year.to_numpy(), "month_of_birth": birth.dt.month.to_numpy(),
        "day_of_birth": birth.dt.day.to_numpy(), "birth_datetime": birth.dt.strftime("%Y-%m-%d").to_numpy(),
        "race_concept_id": NO_MATCHING_CONCEPT, "ethnicity_concept_id": NO_MATCHING_CONCEPT,
    })


def _concept_events(table: Table, layout: _Layout) -> pd.DataFrame:
    """(row, position, table, concept_id, value) for every 1 in a concept column, every measurement value and
    every positive label written as a concept. A measurement with a value is one row, not a second presence row."""
    pieces = []
    wanted = [(c, concept) for c, concept in layout.concepts.items()]
    if isinstance(layout.label_as, ConceptColumn):
        wanted.append((LABEL, layout.label_as))
    for position, (column, concept) in enumerate(wanted):
        if concept.domain == VALUE_DOMAIN:
            values = pd.to_numeric(table.frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            rows = np.flatnonzero(~np.isnan(values))
            numbers = values[rows]
        else:
            rows = np.flatnonzero(_binary(table.frame[column], column))
            numbers = np.full(len(rows), np.nan)
        pieces.append(pd.DataFrame({"row": rows, "position": position, "table": concept.table_domain.table,
                                    "concept_id": concept.concept_id, "value": numbers}))
    if not pieces:
        return pd.DataFrame(columns=["row", "position", "table", "concept_id", "value"])
    events = pd.concat(pieces, ignore_index=True)
    # a value row already says the person has the measurement: drop the presence row of the same concept
    events = events.sort_values(["row", "table", "concept_id", "value"], kind="stable", na_position="last")
    events = events[~(events.duplicated(["row", "table", "concept_id"]) & events["value"].isna())]
    return events.sort_values(["row", "position"], kind="stable").reset_index(drop=True)


def _domain_rows(domain: Domain, events: pd.DataFrame, person_ids: np.ndarray, date: str) -> pd.DataFrame:
    """The CDM 5.4 required columns of ``domain`` (plus value_as_number for measurements)."""
    frame = pd.DataFrame({
        domain.event_id: np.arange(1, len(events) + 1, dtype=np.int64),
        "person_id": person_ids[events["row"].to_numpy(dtype=np.int64)],
        domain.concept: events["concept_id"].to_numpy(dtype=np.int64),
        domain.date: date,
    })
    if domain.end_date:
        frame[domain.end_date] = date
    frame[domain.type_concept] = EHR_TYPE_CONCEPT
    if domain is MEASUREMENT:
        frame["value_as_number"] = events["value"].to_numpy(dtype=float)
    return frame


def write_omop_tables(table: Table, folder: Path, *, reserved_ids: Iterable | None = None,
                      reference_date: datetime.date | str = SYNTHETIC_REFERENCE_DATE, label: str | None = "death",
                      seed: int = 0) -> None:
    """The CSV files of ``write_omop`` written into ``folder``, an existing empty folder (a staging folder)."""
    table.validate("table to write")
    layout = _layout(table, label)
    reference = pd.Timestamp(reference_date).date()
    _, person_ids = safe_subject_ids(table, reserved_ids, integers=True)
    if len(np.unique(person_ids)) != len(person_ids):
        raise DataError("--format omop needs one row per person, but person ids repeat in this table")
    date = reference.isoformat()
    files = {"person.csv": _person_rows(table, person_ids, reference, seed)}
    events = _concept_events(table, layout)
    tables = {c.table_domain.table for c in layout.concepts.values()}
    if isinstance(layout.label_as, ConceptColumn):
        tables.add(layout.label_as.table_domain.table)
    for domain in DOMAINS.values():
        if domain.table in tables:
            files[domain.file_name] = _domain_rows(domain, events[events["table"] == domain.table], person_ids, date)
    if layout.label_as == "death":
        died = _binary(table.frame[LABEL], LABEL)
        files["death.csv"] = pd.DataFrame({"person_id": person_ids[died], "death_date": date,
                                           "death_type_concept_id": EHR_TYPE_CONCEPT})
    for name, frame in files.items():
        frame.to_csv(folder / name, index=False)


def write_omop(table: Table, folder: str | os.PathLike, **options) -> Path:
    """OMOP CDM 5.4 CSV files in ``folder`` (new or empty; all appear at once): person.csv, one file per domain the
    table has columns of (condition_occurrence.csv, drug_exposure.csv, ...) and death.csv when ``label`` is "death".

    Options: ``reserved_ids`` (real person ids the written ones must avoid), ``reference_date`` (the date of every
    event, default 2020-01-01), ``seed`` (of the birth days), ``label``: what a 1 in the ``label`` column is
    written as: "death" (the default, the reader's ``--label death``), a concept column name such as
    "condition:201826" (after ``--label-concept 201826``) or None (not written).
    """
    with staged_dir(folder, merge=False) as tmp:
        write_omop_tables(table, tmp, **options)
    return Path(folder)


# the "omop" entry of ehrdiff.data.writers.WRITERS (ehrdiff sample --format omop): the whole table at once
OmopWriter = whole_table_writer(write_omop_tables, folder=True)
