"""Any wide table (CSV, TSV or Parquet; one row per patient or stay) with column kinds inferred and overridable.

Kinds are inferred as in ``ehrdiff.data.table.infer_kind`` (0/1 -> binary, other numbers -> continuous, text ->
categorical, a column named ``label`` -> label, ``subject_id``-like names -> id); Parquet files written by ehrdiff
keep their stored kinds; ``kinds={"col": "categorical"}`` overrides any of them. A CSV column declared categorical
or id is read as text, so codes such as ``0389`` keep their leading zeros.

The subject column (``subject_col``) is the id the split is made on; without one, the first id column is used, and
without any id column each row is its own subject (a ``row_id`` column is added).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from ehrdiff.data.io import existing_file, read_frame, table_format
from ehrdiff.data.sources._files import find_column, read_csv
from ehrdiff.data.sources.registry import data_source
from ehrdiff.data.sources.split import LABEL, Prepared
from ehrdiff.data.table import KINDS, Table
from ehrdiff.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="PATH", help="wide table (.csv, .csv.gz, .tsv, .parquet)")
    parser.add_argument("--kind", action="append", default=[], metavar="COL=KIND",
                        help="override a column's kind (binary, continuous, categorical, label, id, date); repeatable")
    parser.add_argument("--label-col", metavar="C", help="the label column (renamed 'label')")
    parser.add_argument("--subject-col", metavar="C", help="patient id column the split is made on")


def parse_kinds(pairs: list[str]) -> dict[str, str]:
    """``--kind COL=KIND`` values -> {column: kind}; a column name may itself hold '='."""
    kinds = {}
    for pair in pairs:
        column, sep, kind = pair.rpartition("=")
        if not sep or not column:
            raise DataError(f"--kind {pair!r}: write it as COLUMN=KIND, e.g. --kind icd_code=categorical")
        kinds[column] = kind
    return kinds


def command_line_options(args: argparse.Namespace) -> dict:
    return dict(input=args.input, kinds=parse_kinds(args.kind), label_col=args.label_col, subject_col=args.subject_col)


@data_source("table", help="any wide CSV/Parquet, kinds inferred (override with --kind)", arguments=add_arguments,
             options=command_line_options)
def prepare_table(input: str | os.PathLike, *, kinds: dict[str, str] | None = None, label_col: str | None = None,
                  subject_col: str | None = None) -> Prepared:
    path = existing_file(input, "table file")
    source = str(path)
    kinds = dict(kinds or {})
    for column, kind in kinds.items():
        if kind not in KINDS:
            raise DataError(f"--kind {column}={kind}: unknown kind; choose one of {', '.join(KINDS)}")
    fmt = table_format(path)
    if fmt in ("csv", "tsv"):
        text_columns = [c for c, k in kinds.items() if k in ("categorical", "id")]
        frame = read_csv(path, source, all_strings=False, dtype={c: str for c in text_columns})
        stored: dict[str, str] = {}
    else:
        frame, stored = read_frame(path)
    frame.columns = [str(c) for c in frame.columns]
    if label_col is not None:
        label_col = find_column(frame, source, label_col)
        if label_col != LABEL:
            if LABEL in frame.columns:
                raise DataError(f"{source}: has a column '{LABEL}' already; it cannot also take '{label_col}' "
                                "as the label (rename one of them)")
            frame = frame.rename(columns={label_col: LABEL})
            stored = {(LABEL if k == label_col else k): v for k, v in stored.items()}
            kinds = {(LABEL if k == label_col else k): v for k, v in kinds.items()}
        kinds[LABEL] = "label"
    if subject_col is not None:
        subject_col = find_column(frame, source, subject_col)
        kinds[subject_col] = "id"
    table = Table.from_frame(frame, {**stored, **kinds}, source=source)
    notes = []
    if subject_col is None:
        ids = table.columns_of("id")
        if ids:
            subject_col = ids[0]
        else:
            subject_col = "row_id"
            if subject_col in table.frame.columns:
                raise DataError(f"{source}: no id column to split on; name one with --subject-col")
            table.frame.insert(0, subject_col, np.arange(table.n_rows))
            table.kinds = {subject_col: "id", **table.kinds}
            notes.append("no subject id column: each row is its own subject (row_id added); name the patient "
                         "column with --subject-col if a patient can have several rows")
    details = {"options": {"kinds": kinds, "label_col": label_col, "subject_col": subject_col},
               "kinds": dict(table.kinds), "notes": notes}
    if LABEL in table.frame.columns and table.kinds.get(LABEL) == "label":
        details["label_definition"] = f"column '{label_col or LABEL}' of the input"
    return Prepared(table=table, source="table", subject_column=subject_col, details=details,
                    inputs={"input": source})
