"""What every source returns (``Prepared``), the seeded patient-disjoint split, and the one function that writes
``DIR/train.parquet``, ``DIR/test.parquet`` and ``DIR/summary.json`` together (all or nothing).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ehrdiff import __version__
from ehrdiff.data.encoding import TableEncoder
from ehrdiff.data.io import write_table
from ehrdiff.data.labels import LABEL, check_label
from ehrdiff.data.table import Table, _is_binary
from ehrdiff.data.writers import staged_dir
from ehrdiff.errors import DataError
from ehrdiff.fileio import sha256_file

log = logging.getLogger(__name__)

FILES = ("train.parquet", "test.parquet", "summary.json")


@dataclass
class Prepared:
    """A source's output before splitting: one row per patient (or stay / admission / encounter)."""

    table: Table
    source: str
    subject_column: str                          # the id column the split is made on (a patient never in both)
    details: dict = field(default_factory=dict)  # source-specific summary entries (options, dropped codes, notes)
    inputs: dict = field(default_factory=dict)   # the input paths, for the summary
    test_rows: np.ndarray | None = None          # the source's own test side (a second set); None: a seeded split
    public_bounds: dict | None = None            # column -> {"low", "high"} / {"categories"}: public facts (not read
                                                 # off the rows) written as DIR/bounds.json for ``--dp --bounds``

    @property
    def origin(self) -> str:
        """What error messages name: the input file(s), else the source."""
        return ", ".join(map(str, self.inputs.values())) or self.source


def split_subjects(subjects: pd.Series, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """True for rows whose subject is in the test split.

    The distinct subjects are sorted, shuffled with ``numpy.random.default_rng(seed)`` and the first
    ``round(test_fraction * n_subjects)`` go to test, so the split depends only on the set of subject ids and the
    seed (not on row order), and all rows of a subject land on the same side.
    """
    check_fraction(test_fraction)
    unique = pd.Series(pd.unique(subjects)).sort_values(kind="stable").to_numpy()
    n_test = int(round(test_fraction * len(unique)))
    if n_test < 1 or n_test >= len(unique):
        raise DataError(f"{len(unique)} subject(s) cannot be split with test fraction {test_fraction}: "
                        "each side needs at least one subject (use more data or another --test-fraction)")
    order = np.random.default_rng(seed).permutation(len(unique))
    return np.array(pd.Series(subjects).isin(unique[order[:n_test]]), dtype=bool)


def check_fraction(test_fraction: float) -> None:
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise DataError(f"test fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")


def _unseen_category_subjects(table: Table, subject_column: str, is_test: np.ndarray) -> tuple[np.ndarray, dict]:
    """Test subjects holding a categorical value that no training row has (the encoder could not encode it)."""
    move = np.zeros(len(is_test), dtype=bool)
    unseen: dict[str, list] = {}
    for column in table.columns_of("categorical", "label"):
        values = table.frame[column]
        if table.kinds[column] == "label" and _is_binary(values):
            continue  # a 0/1 label is encoded as one binary column: any class can be encoded
        train = values[~is_test]
        seen = np.array(values.isin(pd.unique(train.dropna())), dtype=bool)
        if train.isna().any():
            seen |= values.isna().to_numpy()
        mask = is_test & ~seen
        if mask.any():
            move |= mask
            unseen[column] = sorted({str(v) for v in values[mask]})
    if not move.any():
        return np.zeros(len(is_test), dtype=bool), {}
    subjects = table.frame[subject_column]
    return np.array(subjects.isin(subjects[move]), dtype=bool), unseen


def _label_counts(values: pd.Series) -> dict:
    return {str(k): int(v) for k, v in sorted(values.value_counts().items(), key=lambda kv: str(kv[0]))}


def build_split(prepared: Prepared, test_fraction: float = 0.2, seed: int = 0) -> tuple[Table, Table, dict]:
    """Validate, split by subject and build the summary; nothing is written."""
    table, source = prepared.table, prepared.origin
    table.validate(source)
    check_label(table, source)
    if table.kinds.get(prepared.subject_column) != "id":
        raise DataError(f"{source}: subject column '{prepared.subject_column}' must be an id column")
    subjects = table.frame[prepared.subject_column]
    if subjects.isna().any():
        raise DataError(f"{source}: subject column '{prepared.subject_column}' is empty in row "
                        f"{int(subjects.isna().argmax())}; every row needs a subject id")
    given = prepared.test_rows is not None
    is_test = np.asarray(prepared.test_rows, dtype=bool) if given else split_subjects(subjects, test_fraction, seed)
    notes = list(prepared.details.get("notes", []))
    moved, unseen = _unseen_category_subjects(table, prepared.subject_column, is_test)
    moved &= is_test
    keep = np.ones(len(is_test), dtype=bool)
    if moved.any():
        n_moved = int(subjects[moved].nunique())
        is_test = is_test & ~moved
        if given:           # a given test set's subjects never join train: they are dropped
            keep &= ~moved
        notes.append(f"{n_moved} test subject(s) {'dropped' if given else 'moved to train'} because they hold "
                     f"categorical values no training row has (an encoder fitted on train could not encode them): "
                     + "; ".join(f"{c}: {', '.join(v[:5])}" for c, v in unseen.items()))
    train, test = table.subset(np.flatnonzero(~is_test & keep)), table.subset(np.flatnonzero(is_test))
    if train.n_rows == 0 or test.n_rows == 0:
        raise DataError(f"{source}: the split left an empty side; use more subjects or another --test-fraction")

    empty = [c for c in train.columns_of("continuous") if train.frame[c].notna().sum() == 0]
    if empty:
        for part in (train, test):
            part.frame = part.frame.drop(columns=empty)
            part.kinds = {k: v for k, v in part.kinds.items() if k not in empty}
            part.rules = tuple(r for r in part.rules if not set(r.columns) & set(empty))
        notes.append(f"{len(empty)} continuous column(s) dropped because no training row has a value: "
                     + ", ".join(empty[:10]))
        if len(train.rules) < len(table.rules):
            notes.append(f"{len(table.rules) - len(train.rules)} declared rule(s) on those columns dropped")
    if LABEL in train.frame and train.frame[LABEL].nunique() < 2:
        notes.append("the training split holds one label class only")
    return train, test, _summary(prepared, train, test, test_fraction=None if given else test_fraction, seed=seed,
                                 notes=notes)


def _summary(prepared: Prepared, train: Table, test: Table, *, test_fraction: float | None, seed: int,
             notes: list[str]) -> dict:
    """summary.json (less the files' hashes): the split, its sizes, columns by kind, label counts, the source's
    own entries and the notes."""
    details = {k: v for k, v in prepared.details.items() if k != "notes"}
    subject = prepared.subject_column
    kinds_count = pd.Series(train.kinds).value_counts()
    summary: dict = {
        "source": prepared.source,
        "ehrdiff_version": __version__,
        "inputs": prepared.inputs,
        "split": {"test_fraction": test_fraction, "seed": seed, "by": subject,
                  "method": "distinct subject ids sorted, shuffled with numpy default_rng(seed); the first "
                            "round(test_fraction * subjects) are test"} if test_fraction is not None else
                 {"by": subject, "method": "the source's own test set (train: the first set's subjects, test: the "
                                           "second set's)"},
        "rows": {"total": int(train.n_rows + test.n_rows), "train": train.n_rows, "test": test.n_rows},
        "subjects": {"total": int(prepared.table.frame[subject].nunique()),
                     "train": int(train.frame[subject].nunique()), "test": int(test.frame[subject].nunique())},
        "columns": {"total": len(train.columns), "by_kind": {k: int(v) for k, v in sorted(kinds_count.items())},
                    "encoded_width": int(TableEncoder().fit(train).width)},
        "rules": {"declared": len(train.rules), "by_kind": dict(pd.Series([r.kind for r in train.rules],
                                                                          dtype=object).value_counts().sort_index())},
        "shapes": {"train": [train.n_rows, len(train.columns)], "test": [test.n_rows, len(test.columns)]},
    }
    if LABEL in train.frame:
        summary["label"] = {
            "definition": details.pop("label_definition", None),
            "train": _label_counts(train.frame[LABEL]), "test": _label_counts(test.frame[LABEL]),
            "all": _label_counts(pd.concat([train.frame[LABEL], test.frame[LABEL]])),
        }
    summary.update(details)
    summary["notes"] = notes
    return summary


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_prepared(prepared: Prepared, out_dir: str | os.PathLike, *, test_fraction: float = 0.2,
                   seed: int = 0) -> dict:
    """Split by subject and write DIR/train.parquet, DIR/test.parquet and DIR/summary.json (and DIR/bounds.json
    for a source that declares public ranges); return the summary.

    Everything is computed first and written into a temporary folder beside DIR that is then moved into place, so
    a failure leaves no half-written output. Other files already in DIR are left alone.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; choose another output folder with -o")
    train, test, summary = build_split(prepared, test_fraction, seed)
    with staged_dir(out_dir, merge=True) as tmp:
        write_table(train, tmp / "train.parquet")
        write_table(test, tmp / "test.parquet")
        summary["files"] = {name: {"sha256": sha256_file(tmp / name)} for name in ("train.parquet", "test.parquet")}
        if prepared.public_bounds:
            declared = {c: v for c, v in prepared.public_bounds.items() if c in train.kinds}   # dropped columns out
            (tmp / "bounds.json").write_text(json.dumps(declared, indent=1) + "\n", encoding="utf-8")
            summary["public_bounds"] = {"file": "bounds.json", "columns": len(declared),
                                        "use": "ehrdiff train ... --dp --bounds DIR/bounds.json"}
        text = json.dumps(_jsonable(summary), indent=2, ensure_ascii=False) + "\n"
        (tmp / "summary.json").write_text(text, encoding="utf-8")
    log.debug("wrote %s: train %d x %d, test %d x %d", out_dir, *summary["shapes"]["train"], *summary["shapes"]["test"])
    return summary
