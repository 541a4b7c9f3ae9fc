"""An OMOP CDM folder (CSV, CSV.GZ or Parquet files named after the CDM 5.4 tables) -> one row per person.

    ehrdiff prepare omop CDM_DIR [--domains condition,drug,...] [--names codes|ids] [--concepts CONCEPT_FILE]
        [--reference-date YYYY-MM-DD] [--measurements ID,... | --measurement-summaries K]
        [--label none|death | --label-concept ID] [--min-count N] -o DIR

Files: ``person`` (required), the domain tables asked for (``condition_occurrence`` by default; ``drug_exposure``,
``procedure_occurrence``, ``observation``, ``measurement``), ``death`` for ``--label death``, ``concept`` for the
column names. File names and column names are matched case-insensitively; a table may also be a folder of Parquet
parts. Tab-separated files (the Athena vocabulary download) are recognised by their header. Only the columns used
are read: person_id, the concept id and the date of each event table (its datetime where the date column is
absent), value_as_number for measurement values, year/month/day_of_birth or birth_datetime and gender_concept_id.

The columns of the result and the names they get are documented in ``ehrdiff.data.omop`` (one scheme, shared with
the writer). Rows whose concept id is 0 ("No matching concept") or empty, and rows of persons missing from the person
table, are dropped and counted in summary.json. Every person in the person table gets a row, even one without events.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from ehrdiff.data import omop
from ehrdiff.data.io import first_line
from ehrdiff.data.sources.arguments import add_min_count, positive_int
from ehrdiff.data.sources.matrix import code_matrix
from ehrdiff.data.sources.registry import data_source
from ehrdiff.data.sources.split import Prepared
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError

SUFFIXES = (".csv.gz", ".csv", ".parquet", ".pq")
NULL_TEXTS = ["", "NULL", "null", "\\N"]            # how database exports spell an empty field
CHUNK_ROWS = 1_000_000                               # rows per chunk of a CSV read with a row filter
LABELS = ("none", "death")
NAMES = ("codes", "ids")
DATE_HINT = "expected a date such as 2020-01-31 (YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD, a time may follow)"


# ---- finding and reading the files ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CdmFile:
    """One CDM table's file (or folder of Parquet parts)."""

    table: str
    path: Path

    @property
    def is_csv(self) -> bool:
        return self.path.name.lower().endswith((".csv", ".csv.gz"))

    def where(self, position: int) -> str:
        """The file and the line (CSV, header = line 1) or row (Parquet, from 1) of a 0-based row position."""
        return f"{self.path}: line {position + 2}" if self.is_csv else f"{self.path}: row {position + 1}"


def _table_name(path: Path) -> str | None:
    name = path.name.lower()
    if path.is_dir():
        return name if any(path.glob("*.parquet")) else None
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def find_tables(root: Path) -> dict[str, CdmFile]:
    """Table name (lower case) -> its file, for every CSV/Parquet file or Parquet folder directly in ``root``."""
    if not root.is_dir():
        raise DataError(f"{root}: CDM folder not found (give the folder holding person.csv, condition_occurrence.csv, "
                        "...)")
    found: dict[str, CdmFile] = {}
    for path in sorted(root.iterdir()):
        table = _table_name(path)
        if table is None:
            continue
        if table in found:
            raise DataError(f"{root}: two files for the {table} table ({found[table].path.name} and {path.name}); "
                            "keep one")
        found[table] = CdmFile(table, path)
    return found


def _csv_header(path: Path) -> tuple[list[str], str]:
    """The header's column names and the separator (tab when the header has more tabs than commas)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{path}: could not read as CSV ({first_line(exc)})") from None
    if not first.strip():
        raise DataError(f"{path}: file is empty (no header)")
    sep = "\t" if first.count("\t") > first.count(",") else ","
    return [c.strip() for c in next(csv.reader([first.rstrip("\r\n")], delimiter=sep))], sep


def _columns_of(file: CdmFile) -> tuple[list[str], str | None]:
    if file.is_csv:
        return _csv_header(file.path)
    try:
        return list(ds.dataset(file.path, format="parquet").schema.names), None
    except Exception as exc:  # pyarrow raises many types for a corrupt or foreign file
        raise DataError(f"{file.path}: could not read as Parquet ({first_line(exc)})") from None


def _resolve(file: CdmFile, header: list[str], candidates: tuple[str, ...], required: bool) -> str | None:
    """The header's name for the first of ``candidates`` it holds (any case); a DataError when required and none."""
    lower = {c.lower(): c for c in header}
    for name in candidates:
        if name.lower() in lower:
            return lower[name.lower()]
    if required:
        shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
        also = f" (or '{candidates[1]}')" if len(candidates) > 1 else ""
        raise DataError(f"{file.path}: required column '{candidates[0]}'{also} is missing (columns found: {shown}); "
                        f"check that this is the {file.table} table")
    return None


@dataclass
class Columns:
    """Columns read from one file: ``frame`` under the caller's keys, ``names`` the file's own spelling of each."""

    file: CdmFile
    frame: pd.DataFrame
    names: dict[str, str] = field(default_factory=dict)


def read_columns(file: CdmFile, required: dict[str, tuple[str, ...]],
                 optional: dict[str, tuple[str, ...]] | None = None, nulls: list[str] = NULL_TEXTS,
                 keep: Callable[[pd.DataFrame], pd.Series] | None = None) -> Columns:
    """Read only the wanted columns of ``file``. Each key maps to candidate CDM names (the first found is read);
    CSV values arrive as text, Parquet values with their stored types. ``keep`` (a frame under the keys -> the
    rows to keep) filters a CSV chunk by chunk, so a vocabulary's millions of rows are never all in memory; the
    row positions of later messages then count kept rows only."""
    header, sep = _columns_of(file)
    names = {key: _resolve(file, header, candidates, True) for key, candidates in required.items()}
    for key, candidates in (optional or {}).items():
        found = _resolve(file, header, candidates, False)
        if found is not None:
            names[key] = found
    wanted = set(names.values())
    try:
        if file.is_csv:
            chunks = pd.read_csv(file.path, sep=sep, usecols=lambda c: c.strip() in wanted, dtype=str,
                                 keep_default_na=False, na_values=nulls, encoding="utf-8-sig",
                                 quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL,
                                 chunksize=CHUNK_ROWS if keep else None)
            parts = [_under_keys(chunk, names, keep) for chunk in chunks] if keep else \
                [_under_keys(chunks, names, None)]
            frame = pd.concat(parts or [pd.DataFrame(columns=list(names))], ignore_index=True)
        else:
            table = ds.dataset(file.path, format="parquet").to_table(columns=list(dict.fromkeys(names.values())))
            frame = _under_keys(table.to_pandas(), names, keep)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{file.path}: could not read ({first_line(exc)})") from None
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DataError(f"{file.path}: could not read as Parquet ({first_line(exc)})") from None
    return Columns(file, frame, names)


def _under_keys(frame: pd.DataFrame, names: dict[str, str], keep) -> pd.DataFrame:
    """The file's columns (header names stripped of spaces) under the caller's keys, filtered by ``keep``."""
    frame = frame.rename(columns=str.strip)
    out = pd.DataFrame({key: frame[name].reset_index(drop=True) for key, name in names.items()})
    return out[keep(out)].reset_index(drop=True) if keep is not None else out


# ---- turning values into numbers and dates -----------------------------------------------------------------------
def whole_numbers(columns: Columns, key: str, what: str = "a whole number") -> pd.Series:
    """A column as float64 holding whole numbers (NaN where empty); text or fractions are an error naming the row."""
    values = columns.frame[key]
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = (values.notna() & numbers.isna()) | ((numbers % 1 != 0) & numbers.notna())
    if bad.any():
        position = int(bad.to_numpy().argmax())
        raise DataError(f"{columns.file.where(position)}: column '{columns.names[key]}' has "
                        f"{values.iloc[position]!r}; expected {what}")
    return numbers


def real_numbers(columns: Columns, key: str) -> pd.Series:
    values = columns.frame[key]
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = values.notna() & numbers.isna()
    if bad.any():
        position = int(bad.to_numpy().argmax())
        raise DataError(f"{columns.file.where(position)}: column '{columns.names[key]}' has "
                        f"{values.iloc[position]!r}; expected a number")
    return numbers


def _text_dates(text: pd.Series) -> pd.Series:
    """Day-precision dates from text: YYYY-MM-DD or YYYY/MM/DD (anything after the 10th character, a time or a
    time zone, is ignored) or YYYYMMDD."""
    head = text.str.slice(0, 10)
    parsed = pd.to_datetime(head, format="%Y-%m-%d", errors="coerce")
    for fmt, part in (("%Y/%m/%d", head), ("%Y%m%d", text.where(text.str.fullmatch(r"\d{8}").fillna(False)))):
        missing = parsed.isna() & part.notna()
        if missing.any():
            parsed[missing] = pd.to_datetime(part[missing], format=fmt, errors="coerce")
    return parsed


def dates(columns: Columns, key: str) -> pd.Series:
    """A date column as datetime64 (midnight; NaT where empty); a value that is no date is an error naming the
    row. Parquet date and timestamp columns are taken as they are (a time zone's wall-clock date)."""
    values = columns.frame[key]
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_localize(None)
        return values.dt.normalize().astype("datetime64[ns]")
    if pd.api.types.is_numeric_dtype(values):  # YYYYMMDD stored as a number
        values = values.astype("Int64").astype("string")
    elif values.dtype == object and isinstance(values.dropna().iloc[0] if values.notna().any() else None,
                                               datetime.date):  # Parquet date32 columns arrive as datetime.date
        return pd.to_datetime(values).astype("datetime64[ns]")
    text = values.astype("string").str.strip()
    parsed = _text_dates(text)
    bad = text.notna() & parsed.isna()
    if bad.any():
        position = int(bad.to_numpy().argmax())
        raise DataError(f"{columns.file.where(position)}: column '{columns.names[key]}' has "
                        f"{values.iloc[position]!r}; {DATE_HINT}")
    return parsed.astype("datetime64[ns]")


# ---- the tables ---------------------------------------------------------------------------------------------------
@dataclass
class Persons:
    ids: np.ndarray             # sorted person ids
    birth: pd.Series            # datetime64 (NaT where year_of_birth is empty), indexed like ids
    sex: pd.Series              # male / female / unknown


def _birth_from_parts(year: pd.Series, month: pd.Series, day: pd.Series) -> pd.Series:
    """CDM 5.4's rule for a missing birth_datetime: the 1st of the month when the day is missing (or impossible),
    15 June when the month is missing too."""
    month_ok = month.between(1, 12)
    first = pd.to_datetime(pd.DataFrame({"year": year, "month": month.where(month_ok, 6),
                                         "day": np.where(month_ok, 1, 15)}), errors="coerce")
    exact = pd.to_datetime(pd.DataFrame({"year": year, "month": month.where(month_ok, 6), "day": day}),
                           errors="coerce")
    return exact.where(exact.notna() & month_ok, first)


def read_persons(file: CdmFile) -> Persons:
    columns = read_columns(file, {"person": ("person_id",), "gender": ("gender_concept_id",),
                                  "year": ("year_of_birth",)},
                           {"month": ("month_of_birth",), "day": ("day_of_birth",), "birth": ("birth_datetime",)})
    if len(columns.frame) == 0:
        raise DataError(f"{file.path}: the person table has no rows; every person needs a row there")
    ids = whole_numbers(columns, "person", "a whole-number person_id")
    if ids.isna().any():
        raise DataError(f"{file.where(int(ids.isna().to_numpy().argmax()))}: column '{columns.names['person']}' is "
                        "empty; every person needs an id")
    repeated = ids.duplicated()
    if repeated.any():
        position = int(repeated.to_numpy().argmax())
        raise DataError(f"{file.where(position)}: person_id {int(ids.iloc[position])} appears twice; the person "
                        "table holds one row per person")
    year = whole_numbers(columns, "year", "a year of birth")
    parts = {key: whole_numbers(columns, key) if key in columns.frame else pd.Series(np.nan, index=year.index)
             for key in ("month", "day")}
    birth = _birth_from_parts(year, parts["month"], parts["day"])
    if "birth" in columns.frame:
        stated = dates(columns, "birth")
        birth = stated.where(stated.notna(), birth)
    gender = whole_numbers(columns, "gender", "a gender concept id")
    sex = gender.map(omop.SEX_BY_GENDER_CONCEPT).fillna(omop.UNKNOWN_SEX)
    order = np.argsort(ids.to_numpy(), kind="stable")
    return Persons(ids=ids.to_numpy(dtype=np.int64)[order], birth=birth.iloc[order].reset_index(drop=True),
                   sex=sex.iloc[order].reset_index(drop=True))


@dataclass
class Events:
    """The rows of one domain table that ehrdiff uses, and what was dropped."""

    domain: omop.Domain
    file: CdmFile
    frame: pd.DataFrame          # person_id, concept_id (int64), date (datetime64)[, value]
    stats: dict


def read_events(file: CdmFile, domain: omop.Domain, persons: np.ndarray, *, with_values: bool = False) -> Events:
    required = {"person": ("person_id",), "concept": (domain.concept,), "date": (domain.date, domain.datetime)}
    if with_values:
        required["value"] = ("value_as_number",)
    columns = read_columns(file, required)
    person = whole_numbers(columns, "person", "a whole-number person_id")
    concept = whole_numbers(columns, "concept", "a whole-number concept id")
    frame = pd.DataFrame({"person_id": person, "concept_id": concept, "date": dates(columns, "date")})
    if with_values:
        frame["value"] = real_numbers(columns, "value")
    unmapped = frame["concept_id"].isna() | (frame["concept_id"] == omop.NO_MATCHING_CONCEPT)
    unknown = ~frame["person_id"].isin(persons) & ~unmapped
    stats = {"file": str(file.path), "rows": int(len(frame)), "rows_concept_0_or_empty": int(unmapped.sum()),
             "rows_of_persons_not_in_person_table": int(unknown.sum()),
             "rows_without_date": int(frame["date"].isna().sum())}
    kept = frame[~unmapped & ~unknown].reset_index(drop=True)
    kept = kept.astype({"person_id": "int64", "concept_id": "int64"})
    return Events(domain, file, kept, stats)


def read_death(file: CdmFile, persons: np.ndarray) -> np.ndarray:
    """The person ids in the death table (persons missing from the person table are left out)."""
    columns = read_columns(file, {"person": ("person_id",), "date": ("death_date", "death_datetime")})
    person = whole_numbers(columns, "person", "a whole-number person_id")
    dates(columns, "date")  # a death_date that is no date is still an error: the table is not what it claims
    return np.intersect1d(person.dropna().to_numpy(dtype=np.int64), persons)


def read_concepts(file: CdmFile, wanted: set[int]) -> pd.DataFrame:
    """concept_id -> vocabulary_id, concept_code, concept_name, for the concepts in ``wanted``."""
    columns = read_columns(file, {"concept_id": ("concept_id",), "vocabulary_id": ("vocabulary_id",),
                                  "concept_code": ("concept_code",), "concept_name": ("concept_name",)}, nulls=[""],
                           keep=lambda chunk: pd.to_numeric(chunk["concept_id"], errors="coerce").isin(wanted))
    frame = columns.frame.assign(concept_id=whole_numbers(columns, "concept_id").astype("int64"))
    return frame.drop_duplicates("concept_id").set_index("concept_id")


# ---- options ------------------------------------------------------------------------------------------------------
def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, np.integer)):
        return [str(value)]
    return [str(v).strip() for v in value]


def parse_domains(value) -> tuple[str, ...]:
    names = _as_list(value) or ["condition"]
    unknown = [n for n in names if n not in omop.DOMAINS]
    if unknown:
        raise DataError(f"unknown OMOP domain '{unknown[0]}' in --domains; choose from {', '.join(omop.DOMAINS)}")
    return tuple(dict.fromkeys(names))


def parse_concept_ids(value, flag: str) -> list[int]:
    ids = []
    for text in _as_list(value):
        if not text.isdigit() or int(text) == 0:
            raise DataError(f"{flag}: '{text}' is not a concept id (a positive whole number such as 3004410)")
        ids.append(int(text))
    return list(dict.fromkeys(ids))


def parse_reference_date(value) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(datetime.date.fromisoformat(str(value)))
    except ValueError:
        raise DataError(f"--reference-date: '{value}' is not a date; give YYYY-MM-DD") from None


# ---- building the table -------------------------------------------------------------------------------------------
def reference_dates(persons: Persons, events: list[Events], fixed: pd.Timestamp | None) -> tuple[pd.Series, str]:
    """Each person's reference date and how it was chosen: ``fixed``, else the person's last event date in the
    tables read (persons without a dated event: the latest event date of all)."""
    if fixed is not None:
        return pd.Series(fixed, index=range(len(persons.ids))), f"fixed: {fixed.date().isoformat()}"
    dated = pd.concat([e.frame[["person_id", "date"]] for e in events], ignore_index=True).dropna()
    if len(dated) == 0:
        raise DataError("no event in the tables read has a date, so there is no reference date for age; "
                        "give --reference-date YYYY-MM-DD")
    last = dated.groupby("person_id")["date"].max()
    per_person = last.reindex(persons.ids).fillna(last.max())
    return per_person.reset_index(drop=True), ("each person's last event date in the tables read (persons without "
                                               "one: the latest event date of all)")


def last_values(events: Events) -> pd.DataFrame:
    """The last value_as_number per (person, concept): latest date, then the later row of the file."""
    valued = events.frame.dropna(subset=["value"])
    ordered = valued.sort_values("date", kind="stable", na_position="first")
    return ordered.groupby(["person_id", "concept_id"], sort=False)["value"].last().reset_index()


def chosen_measurements(values: pd.DataFrame, ids: list[int], top: int, file: CdmFile) -> list[int]:
    """The measurement concepts that become value columns: ``ids``, or the ``top`` held by the most persons."""
    held = values.groupby("concept_id")["person_id"].nunique()
    if ids:
        absent = [i for i in ids if i not in held.index]
        if absent:
            raise DataError(f"{file.path}: measurement concept {absent[0]} has no row with a value_as_number; "
                            "check --measurements")
        return ids
    ranked = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
    return [int(concept) for concept, _ in ranked[:top]]


def column_names(keys: list[tuple[str, int]], concepts: pd.DataFrame | None) -> tuple[dict, dict]:
    """(domain, concept id) -> column name, and column -> concept_name for the concepts the concept table lists."""
    names, titles = {}, {}
    for domain, concept_id in keys:
        listed = concepts is not None and concept_id in concepts.index
        row = concepts.loc[concept_id] if listed else None
        code = omop.vocabulary_code(str(row["vocabulary_id"]), str(row["concept_code"])) if listed else None
        name = omop.ConceptColumn(domain, concept_id, code).name
        names[(domain, concept_id)] = name
        if listed and pd.notna(row["concept_name"]):
            titles[name] = str(row["concept_name"])
    return names, titles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cdm_dir", metavar="CDM_DIR", help="folder of CDM tables (person.csv, condition_occurrence.csv"
                        ", ...; .csv, .csv.gz or .parquet, names in any case)")
    parser.add_argument("--domains", default="condition", metavar="LIST",
                        help=f"domain tables whose concepts become 0/1 columns, comma-separated from "
                             f"{', '.join(omop.DOMAINS)} (default condition)")
    parser.add_argument("--names", choices=NAMES, default="codes",
                        help="column names: codes (DOMAIN:VOCABULARY:CODE:CONCEPT_ID where a concept table lists the "
                             "concept, default) or ids (DOMAIN:CONCEPT_ID)")
    parser.add_argument("--concepts", metavar="PATH", help="the concept table, when it is not in CDM_DIR")
    parser.add_argument("--reference-date", metavar="YYYY-MM-DD",
                        help="age on this date (default: each person's last event date)")
    values = parser.add_mutually_exclusive_group()
    values.add_argument("--measurements", metavar="ID,...",
                        help="measurement concept ids whose last value_as_number becomes a continuous column")
    values.add_argument("--measurement-summaries", type=positive_int, default=0, metavar="K",
                        help="the same for the K measurement concepts with values for the most persons")
    label = parser.add_mutually_exclusive_group()
    label.add_argument("--label", choices=LABELS, default="none",
                       help="death: label 1 for persons in the death table (default none)")
    label.add_argument("--label-concept", metavar="ID",
                       help="label 1 for persons with this concept in the domains read; its column is removed")
    add_min_count(parser, "a concept column", "persons")


@dataclass(frozen=True)
class Options:
    """prepare_omop's options, checked (from the command line's text or from Python values)."""

    domains: tuple[str, ...]
    names: str
    reference_date: pd.Timestamp | None
    measurements: list[int]
    measurement_summaries: int
    label: str                   # none, death or concept
    label_concept: int | None
    min_count: int

    @classmethod
    def parse(cls, *, domains, names, reference_date, measurements, measurement_summaries, label, label_concept,
              min_count) -> "Options":
        label = label or "none"
        if names not in NAMES:
            raise DataError(f"unknown --names choice '{names}'; choose one of {', '.join(NAMES)}")
        if label not in LABELS:
            raise DataError(f"unknown --label choice '{label}'; choose one of {', '.join(LABELS)}")
        concept = parse_concept_ids(label_concept, "--label-concept")
        if len(concept) > 1:
            raise DataError("--label-concept takes one concept id")
        if concept and label != "none":
            raise DataError("give either --label death or --label-concept, not both")
        return cls(domains=parse_domains(domains), names=names, reference_date=parse_reference_date(reference_date),
                   measurements=parse_concept_ids(measurements, "--measurements"),
                   measurement_summaries=int(measurement_summaries or 0), label="concept" if concept else label,
                   label_concept=concept[0] if concept else None, min_count=min_count)

    @property
    def wants_values(self) -> bool:
        return bool(self.measurements or self.measurement_summaries)

    def summary(self) -> dict:
        return {"domains": list(self.domains), "names": self.names,
                "reference_date": None if self.reference_date is None else self.reference_date.date().isoformat(),
                "measurements": self.measurements, "measurement_summaries": self.measurement_summaries,
                "label": self.label, "label_concept": self.label_concept, "min_count": self.min_count}


@data_source("omop", help="an OMOP CDM folder (CSV or Parquet) -> one row per person: concepts, age, sex",
             arguments=add_arguments)
def prepare_omop(cdm_dir: str | os.PathLike, *, domains="condition", names: str = "codes",
                 concepts: str | os.PathLike | None = None, reference_date=None, measurements=None,
                 measurement_summaries: int = 0, label: str = "none", label_concept=None,
                 min_count: int = 1) -> Prepared:
    """One row per person of CDM_DIR's person table; see the module docstring and ``ehrdiff.data.omop``."""
    options = Options.parse(domains=domains, names=names, reference_date=reference_date, measurements=measurements,
                            measurement_summaries=measurement_summaries, label=label, label_concept=label_concept,
                            min_count=min_count)
    root = Path(cdm_dir)
    tables = find_tables(root)
    if "person" not in tables:
        raise DataError(f"{root}: no person table (person.csv, person.csv.gz or person.parquet); the person table "
                        "lists every person and is required")
    persons = read_persons(tables["person"])
    events, value_events = _read_domains(tables, root, persons, options)
    reference, reference_rule = reference_dates(persons, events, options.reference_date)
    ages = completed_ages(persons, reference)
    labels, label_definition, events = _labels(tables, root, persons, events, options)
    values = _measurement_values(value_events, options) if value_events is not None else None
    keys = sorted({(e.domain.name, int(c)) for e in events for c in e.frame["concept_id"].unique()}
                  | ({(omop.VALUE_DOMAIN, int(c)) for c in values["concept_id"].unique()} if values is not None
                     else set()))
    name_of, titles = column_names(keys, _concept_table(tables, concepts, options.names, {c for _, c in keys}))
    frame, kinds, matrix = _person_frame(persons, ages, events, values, name_of, options.min_count, root)
    if labels is not None:
        frame[omop.LABEL], kinds[omop.LABEL] = labels, "label"
    details = {
        "options": options.summary(),
        "tables": {e.domain.table: e.stats for e in events},
        "reference_date": reference_rule,
        "codes": {"kept": int(matrix.frame.shape[1]), "dropped_below_min_count": len(matrix.dropped_min_count)},
        "measurement_values": [c for c in frame.columns if c.startswith(omop.VALUE_DOMAIN + ":")],
        "persons_without_codes": int((matrix.frame.to_numpy() == 0).all(axis=1).sum()),
        "naming": "DOMAIN:CONCEPT_ID, or DOMAIN:VOCABULARY:CODE:CONCEPT_ID where the concept table lists the concept; "
                  "measurement_value:... is the last value_as_number (docs/data.md, omop)",
        "notes": _notes(ages, events),
    }
    if value_events is not None and value_events.domain.table not in details["tables"]:
        details["tables"]["measurement (values)"] = value_events.stats
    if label_definition:
        details["label_definition"] = label_definition
    if titles:
        details["titles"] = {c: titles[c] for c in frame.columns if c in titles}
    inputs = {"cdm_dir": str(root)} | ({"concepts": str(concepts)} if concepts else {})
    return Prepared(table=Table(frame, kinds), source="omop", subject_column=omop.PERSON_ID, details=details,
                    inputs=inputs)


def _read_domains(tables: dict[str, CdmFile], root: Path, persons: Persons,
                  options: Options) -> tuple[list[Events], Events | None]:
    """The events of each domain asked for, and the measurement rows with values (None unless values are asked
    for; read with the measurement domain when it is one of them, on their own otherwise)."""
    events = [read_events(_require(tables, root, omop.DOMAINS[name].table, f"--domains {name}"), omop.DOMAINS[name],
                          persons.ids, with_values=options.wants_values and name == "measurement")
              for name in options.domains]
    if not options.wants_values:
        return events, None
    value_events = next((e for e in events if e.domain is omop.MEASUREMENT), None)
    if value_events is None:
        file = _require(tables, root, "measurement", "--measurements / --measurement-summaries")
        value_events = read_events(file, omop.MEASUREMENT, persons.ids, with_values=True)
    return events, value_events


def _labels(tables: dict[str, CdmFile], root: Path, persons: Persons, events: list[Events],
            options: Options) -> tuple[np.ndarray | None, str | None, list[Events]]:
    """The label (None without one), its definition, and the events less the label concept's rows."""
    if options.label == "death":
        died = read_death(_require(tables, root, "death", "--label death"), persons.ids)
        return np.isin(persons.ids, died).astype(np.int64), "1 if the person is in the death table", events
    if options.label == "concept":
        labels, events = _concept_label(events, options.label_concept, persons.ids, options.domains)
        return labels, (f"1 if the person has concept {options.label_concept} in {', '.join(options.domains)}; its "
                        "column is removed"), events
    return None, None, events


def _measurement_values(value_events: Events, options: Options) -> pd.DataFrame:
    """(person_id, concept_id, value): the last value of each chosen measurement concept. The label concept is
    never one of them: --measurement-summaries passes it over, --measurements naming it is an error."""
    values = last_values(value_events)
    if options.label_concept is not None:
        if options.label_concept in options.measurements:
            raise DataError(f"--label-concept {options.label_concept} is also in --measurements; its value would "
                            "give the label away, drop it from --measurements")
        values = values[values["concept_id"] != options.label_concept]
    chosen = chosen_measurements(values, options.measurements, options.measurement_summaries, value_events.file)
    return values[values["concept_id"].isin(chosen)]


def _notes(ages: pd.Series, events: list[Events]) -> list[str]:
    notes = []
    negative = int((ages < 0).sum())
    if negative:
        notes.append(f"{negative} person(s) have a reference date before their birth; their age is left missing")
    unknown = sum(e.stats["rows_of_persons_not_in_person_table"] for e in events)
    if unknown:
        notes.append(f"{unknown} event row(s) of persons missing from the person table were dropped")
    return notes


def _require(tables: dict[str, CdmFile], root: Path, table: str, why: str) -> CdmFile:
    if table not in tables:
        raise DataError(f"{root}: {why} needs the {table} table ({table}.csv, {table}.csv.gz or {table}.parquet), "
                        "which this folder does not have")
    return tables[table]


def completed_ages(persons: Persons, reference: pd.Series) -> pd.Series:
    """Age in whole years at each person's reference date (NaN without a birth date)."""
    return omop.completed_years(persons.birth, reference).astype("float64")


def _concept_label(events: list[Events], concept_id: int, persons: np.ndarray,
                   domain_names: tuple[str, ...]) -> tuple[np.ndarray, list[Events]]:
    """1 for persons with ``concept_id`` in any domain read, and the events without that concept (no leak)."""
    holders = np.unique(np.concatenate([e.frame.loc[e.frame["concept_id"] == concept_id, "person_id"].to_numpy()
                                        for e in events]))
    if len(holders) == 0:
        raise DataError(f"--label-concept {concept_id} occurs in no row of {', '.join(domain_names)}; check the id or "
                        "add its domain to --domains")
    kept = [Events(e.domain, e.file, e.frame[e.frame["concept_id"] != concept_id].reset_index(drop=True), e.stats)
            for e in events]
    return np.isin(persons, holders).astype(np.int64), kept


def _concept_table(tables: dict[str, CdmFile], path, names: str, wanted: set[int]) -> pd.DataFrame | None:
    if names == "ids":
        return None
    if path is not None:
        file = CdmFile("concept", Path(path))
        if not file.path.exists():
            raise DataError(f"{file.path}: concept table not found")
        return read_concepts(file, wanted)
    return read_concepts(tables["concept"], wanted) if "concept" in tables else None


def _person_frame(persons: Persons, ages: pd.Series, events: list[Events], values: pd.DataFrame | None,
                  name_of: dict, min_count: int, root: Path):
    """person_id, age, sex, the 0/1 concept columns and the measurement values, one row per person."""
    person_ids = pd.concat([e.frame["person_id"] for e in events], ignore_index=True)
    codes = pd.concat([e.frame["concept_id"].map({c: n for (d, c), n in name_of.items() if d == e.domain.name})
                       for e in events], ignore_index=True)
    matrix = code_matrix(person_ids, codes, all_subjects=persons.ids, min_count=min_count)
    if matrix.frame.shape[1] == 0:
        raise DataError(f"{root}: no concept is held by at least {min_count} person(s) in the tables read; "
                        "check --domains and --min-count")
    frame = pd.concat([pd.DataFrame({omop.PERSON_ID: persons.ids, omop.AGE: ages.where(ages >= 0).to_numpy(),
                                     omop.SEX: persons.sex.to_numpy()}), matrix.frame], axis=1)
    kinds = {omop.PERSON_ID: "id", omop.AGE: "continuous", omop.SEX: "categorical"}
    kinds |= {c: "binary" for c in matrix.frame.columns}
    if values is not None:
        wide = values.pivot(index="person_id", columns="concept_id", values="value").reindex(persons.ids)
        for concept_id in sorted(wide.columns):
            name = name_of[(omop.VALUE_DOMAIN, int(concept_id))]
            frame[name], kinds[name] = wide[concept_id].to_numpy(dtype=float), "continuous"
    return frame, kinds, matrix
