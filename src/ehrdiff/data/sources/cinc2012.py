"""PhysioNet/CinC Challenge 2012 (ODC-By 1.0): one ``RECORDID.txt`` per ICU stay (a folder, or the set's
``.tar.gz`` read directly) plus its ``Outcomes`` file -> one row per stay.

Each record file has lines ``Time,Parameter,Value`` over the first 48 hours. Its leading ``00:00`` lines are the
descriptors RecordID, Age, Gender, Height, ICUType, Weight, where ``-1`` means missing. Columns:

  record_id                         the stay (kind id; the split is by record, one record per ICU stay)
  Age, Height, Weight               continuous (``-1`` -> missing)
  Gender                            continuous 0/1 (``-1`` -> missing; the encoder adds a missing indicator)
  ICUType                           categorical (1 coronary care, 2 cardiac surgery recovery, 3 medical, 4 surgical)
  VAR_first, VAR_last, VAR_min,     per time-series variable VAR (the 37 of the challenge, Weight included):
  VAR_max, VAR_mean                 continuous summaries of its measurements over the 48 h, missing when the
                                    variable was never measured (the encoder adds a missing indicator)
  VAR_count                         continuous whole number: how many measurements (0 when never measured)
  label                             ``In-hospital_death`` from the Outcomes file (0/1)

Time-series values are used as recorded (no outlier removal). Records with descriptors but no time-series rows
(3 in set-a) are kept: all their summaries are missing and their counts 0. The other Outcomes columns (SAPS-I,
SOFA, length of stay, survival) describe the outcome and are not used.

The table declares the relations every stay keeps (``summary_rules``): VAR_min <= VAR_first, VAR_last, VAR_mean <=
VAR_max, VAR_count a whole number >= 0 that is 0 exactly when VAR's summaries are missing, and the summaries are
what the first, last, minimum, maximum and mean of VAR_count values are (one value: all equal; ...). A malformed line
(``10:45,,1.9``: no parameter name) is skipped and counted (``Malformed``), or refused under ``strict``. A second set
(``test_records``/``test_outcomes``) is the test side, instead of a random share of the first.

For private training the source declares public ranges (``PLAUSIBLE``, written as bounds.json by ``ehrdiff
prepare``, with each variable's recording resolution, ``RESOLUTION``, as its ``step``): wide physiological
limits in the challenge's units, set from clinical knowledge and not from the rows (as are the ``PANELS``,
the variables measured together),
so they cost no privacy budget (a private range estimate cannot be made for the rarely measured variables: too few
values for its noise). Recorded values beyond them (set-a has a pH of 735 and a temperature of -17.8) are clipped to
them in a private run only.
"""

from __future__ import annotations

import argparse
import io
import logging
import lzma
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ehrdiff.data.io import existing_file, first_line
from ehrdiff.data.rules import Count, Order, Range, Rule, Summary
from ehrdiff.data.sources._files import find_column, read_csv
from ehrdiff.data.sources.registry import data_source
from ehrdiff.data.sources.split import Prepared
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError

DESCRIPTORS = ("RecordID", "Age", "Gender", "Height", "ICUType", "Weight")
SUMMARIES = ("first", "last", "min", "max", "mean", "count")
LABEL_COLUMN = "In-hospital_death"
# public ranges per variable (challenge units: mg/dL, mmol/L, IU/L, mmHg, %, degrees C, mL, cells/nL)
PLAUSIBLE = {
    "ALP": (0, 3000), "ALT": (0, 12000), "AST": (0, 20000), "Albumin": (0.5, 7), "BUN": (0, 250),
    "Bilirubin": (0, 60), "Cholesterol": (0, 500), "Creatinine": (0, 25), "DiasABP": (0, 300), "FiO2": (0.21, 1),
    "GCS": (3, 15), "Glucose": (0, 1500), "HCO3": (0, 60), "HCT": (0, 70), "HR": (0, 300), "K": (1, 12),
    "Lactate": (0, 30), "MAP": (0, 300), "MechVent": (0, 1), "Mg": (0, 10), "NIDiasABP": (0, 300),
    "NIMAP": (0, 300), "NISysABP": (0, 300), "Na": (90, 200), "PaCO2": (0, 150), "PaO2": (0, 700),
    "Platelets": (0, 1500), "RespRate": (0, 100), "SaO2": (0, 100), "SysABP": (0, 300), "Temp": (20, 45),
    "TroponinI": (0, 60), "TroponinT": (0, 30), "Urine": (0, 12000), "WBC": (0, 200), "Weight": (20, 300),
    "pH": (6.5, 8.0),
    # descriptors: the challenge's stays are adults, ages above 89 recorded as 90
    "Age": (15, 90), "Gender": (0, 1), "Height": (100, 250),
}
# the resolution each variable is recorded at, by its unit's convention (whole mmHg, beats or breaths per minute, %,
# mL, mEq/L, IU/L, mg/dL for BUN and glucose; tenths for the other lab values, degrees C, kg and cm; hundredths for
# FiO2, pH, troponin T and the computed NIMAP; GCS a score, MechVent and Gender 0/1): declared as each summary's
# ``step`` but the mean's, which is not on the grid
RESOLUTION = {
    **dict.fromkeys(("ALP", "ALT", "AST", "BUN", "Cholesterol", "DiasABP", "GCS", "Glucose", "HCO3", "HR", "MAP",
                     "MechVent", "NIDiasABP", "NISysABP", "Na", "PaCO2", "PaO2", "Platelets", "RespRate", "SaO2",
                     "SysABP", "Urine", "Age", "Gender"), 1),
    **dict.fromkeys(("Albumin", "Bilirubin", "Creatinine", "HCT", "K", "Lactate", "Mg", "Temp", "TroponinI", "WBC",
                     "Weight", "Height"), 0.1),
    **dict.fromkeys(("FiO2", "pH", "TroponinT", "NIMAP"), 0.01),
}
MAX_COUNT = 200           # measurements of one variable in 48 h: about one every 15 minutes at most
# variables one device or one lab order records together, by clinical convention (not found in the rows): declared
# as each summary's "panel" so that a private model ties their missing values. Potassium and glucose, part of a
# metabolic panel too, are left out: blood gas analysers and bedside meters also measure them alone.
PANELS = {
    "arterial line": ("DiasABP", "SysABP", "MAP"),
    "blood pressure cuff": ("NIDiasABP", "NISysABP", "NIMAP"),
    "arterial blood gas": ("PaCO2", "PaO2", "pH"),
    "liver panel": ("ALP", "ALT", "AST", "Bilirubin"),
    "metabolic panel": ("BUN", "Creatinine", "HCO3", "Na"),
    "blood count": ("HCT", "Platelets", "WBC"),
}
PANEL_OF = {variable: panel for panel, variables in PANELS.items() for variable in variables}

log = logging.getLogger(__name__)


def _record_files(path: Path) -> list[tuple[str, bytes]]:
    """(file name, content) of every ``*.txt`` record in a folder or a tar(.gz) archive, sorted by name."""
    records: list[tuple[str, bytes]] = []
    if path.is_dir():
        for file in sorted(f for f in path.rglob("*.txt") if f.is_file()):
            try:
                records.append((str(file), file.read_bytes()))
            except OSError as exc:
                raise DataError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    else:
        existing_file(path, "records archive")
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    if member.isfile() and member.name.endswith(".txt"):
                        records.append((f"{path}:{member.name}", archive.extractfile(member).read()))
        except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise DataError(f"{path}: {_archive_problem(exc)}; give the set folder (set-a/) or its .tar.gz") from None
    if not records:
        raise DataError(f"{path}: no record files (*.txt) found; give the set folder or its .tar.gz")
    return sorted(records)


def _archive_problem(exc: Exception) -> str:
    """Why a records archive could not be read, in a few words (tarfile's own message lists every
    decompressor it tried, one per line)."""
    if isinstance(exc, tarfile.ReadError) and "could not be opened successfully" in str(exc):
        return "not a tar or tar.gz archive"
    return f"a damaged tar/tar.gz archive ({first_line(exc)})"


SHOWN_LOCATIONS = 5       # malformed lines named in the warning and in summary.json


@dataclass
class Malformed:
    """Record lines that cannot be read (an empty parameter name, a value that is not a number, a wrong number of
    fields, a time that is not HH:MM): refused with the first one's location under ``strict``, else skipped and
    counted, the first few named."""

    strict: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    first: list[str] = field(default_factory=list)

    def drop(self, frame: pd.DataFrame, mask: np.ndarray, records, what: str) -> pd.DataFrame:
        """``frame`` without the rows of ``mask`` (each a line that is ``what``), or the DataError under strict."""
        if not mask.any():
            return frame
        if self.strict:
            raise _bad_row(frame, mask, records, what)
        self.counts[what] = self.counts.get(what, 0) + int(mask.sum())
        for i in np.flatnonzero(mask)[:max(0, SHOWN_LOCATIONS - len(self.first))]:
            self.first.append(_location(frame.iloc[i], records, what))
        return frame[~mask].reset_index(drop=True)

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict:
        return {"skipped": self.skipped, "by_problem": dict(self.counts), "first": list(self.first)}


def _long_rows(records: list[tuple[str, bytes]], malformed: Malformed) -> pd.DataFrame:
    """All records' lines in one frame (file, line, Time, Parameter, Value), parsed by one read_csv call; a set
    with a line that call cannot read is split line by line instead, and its malformed lines handed to
    ``malformed``."""
    bodies, counts = [], []
    for name, content in records:
        header, _, body = content.partition(b"\n")
        if header.strip().replace(b" ", b"") != b"Time,Parameter,Value":
            raise DataError(f"{name}: line 1 is {header[:40].decode(errors='replace')!r}, expected "
                            "'Time,Parameter,Value'; is this a CinC 2012 record file?")
        body = body.rstrip(b"\r\n")
        counts.append(body.count(b"\n") + 1 if body else 0)
        if body:
            bodies.append(body)
    buffer = b"\n".join(bodies)
    options = dict(header=None, names=["Time", "Parameter", "Value"], skip_blank_lines=False,
                   keep_default_na=False, na_values=[""])
    try:  # the fast path: numbers parsed by the C reader
        frame = pd.read_csv(io.BytesIO(buffer), dtype={"Time": str, "Parameter": str, "Value": np.float64}, **options)
    except ValueError:      # a value that is not a number, or a line with more fields than three
        frame = None
    if frame is None or len(frame) != sum(counts):
        frame = _split_lines(buffer)
    frame.insert(0, "file", np.repeat(np.arange(len(records)), counts))
    frame["line"] = frame.groupby("file").cumcount() + 2
    if "fields" not in frame:
        return frame[frame[["Time", "Parameter", "Value"]].notna().any(axis=1)].reset_index(drop=True)  # blank lines
    frame = frame[frame["fields"] > 0]                                                                # blank lines
    frame = malformed.drop(frame, frame["fields"].ne(3).to_numpy(), records, "the line does not have 3 fields")
    value = pd.to_numeric(frame["Value"].str.strip(), errors="coerce")
    frame = malformed.drop(frame.assign(Value=value), (value.isna() & frame["Value"].notna()).to_numpy(), records,
                           "the value is not a number")
    return frame.drop(columns=["fields", "text"]).reset_index(drop=True)


def _split_lines(buffer: bytes) -> pd.DataFrame:
    """Every line of ``buffer`` as Time, Parameter, Value (text; empty: missing) with its number of fields (0 for a
    blank line; a line of another number than 3 keeps none of them) and its text."""
    lines = pd.Series(buffer.decode("utf-8", errors="replace").split("\n") if buffer else [], dtype=object)
    lines = lines.str.rstrip("\r")
    fields = (lines.str.count(",") + 1).where(lines.str.strip() != "", 0)
    parts = lines.where(fields == 3, ",,").str.split(",", n=2, expand=True).reindex(columns=range(3))
    parts = parts.where(parts != "")
    return pd.DataFrame({"Time": parts[0], "Parameter": parts[1], "Value": parts[2], "fields": fields,
                         "text": lines})


def _location(row: pd.Series, records, what: str) -> str:
    text = row["text"] if isinstance(row.get("text"), str) else \
        ",".join("" if pd.isna(row[c]) else f"{row[c]:g}" if isinstance(row[c], float) else str(row[c])
                 for c in ("Time", "Parameter", "Value"))
    return f"{records[int(row['file'])][0]}: line {int(row['line'])}: {what} ({text[:60]})"


def _bad_row(frame: pd.DataFrame, mask: np.ndarray, records, what: str) -> DataError:
    row = frame.iloc[int(np.argmax(mask))]
    return DataError(f"{_location(row, records, what)}; fix or remove that line, or prepare without --strict to "
                     "skip such lines")


def _minutes(frame: pd.DataFrame, records, malformed: Malformed) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows whose time is 'HH:MM' and their minutes since admission (parsed once per distinct time)."""
    index, distinct = pd.factorize(frame["Time"])
    parsed = pd.Series(distinct, dtype="string").str.strip().str.extract(r"^(\d{1,3}):(\d{2})$")
    ok = parsed[0].notna().to_numpy(dtype=bool)
    frame = malformed.drop(frame, ~ok[index], records, "the time is not HH:MM")
    minutes = parsed[0].fillna("0").astype(np.int64).to_numpy() * 60 + parsed[1].fillna("0").astype(np.int64).to_numpy()
    return frame, minutes[index[ok[index]]]


def read_outcomes(path: str | os.PathLike) -> pd.Series:
    """RecordID -> In-hospital_death (0/1)."""
    path = existing_file(path, "outcomes file")
    frame = read_csv(path, str(path))
    record = find_column(frame, str(path), "RecordID")
    death = find_column(frame, str(path), LABEL_COLUMN)
    ids = pd.to_numeric(frame[record], errors="coerce")
    labels = pd.to_numeric(frame[death], errors="coerce")
    bad = ids.isna() | ~labels.isin([0, 1])
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(f"{path}: line {row + 2}: expected a RecordID and {LABEL_COLUMN} 0 or 1, got "
                        f"{frame[record].iloc[row]!r}, {frame[death].iloc[row]!r}")
    if ids.duplicated().any():
        raise DataError(f"{path}: RecordID {int(ids[ids.duplicated()].iloc[0])} appears twice")
    return pd.Series(labels.to_numpy(dtype=np.int64), index=ids.to_numpy(dtype=np.int64))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", required=True, metavar="PATH", help="set folder (set-a/) or its .tar.gz")
    parser.add_argument("--outcomes", required=True, metavar="PATH", help="Outcomes file of the same set")
    parser.add_argument("--test-records", metavar="PATH", help="a second set (set-b/ or its .tar.gz) as the test "
                        "side, instead of a random share of --records (--test-fraction then does not apply)")
    parser.add_argument("--test-outcomes", metavar="PATH", help="Outcomes file of the --test-records set")
    parser.add_argument("--strict", action="store_true", help="refuse a set with a malformed line (default: skip "
                        "such lines, count them in summary.json and name the first few)")


@data_source("cinc2012", help="PhysioNet/CinC 2012 records + Outcomes -> one row per ICU stay with 48 h summaries",
             arguments=add_arguments)
def prepare_cinc2012(records: str | os.PathLike, outcomes: str | os.PathLike, *, strict: bool = False,
                     test_records: str | os.PathLike | None = None,
                     test_outcomes: str | os.PathLike | None = None) -> Prepared:
    if (test_records is None) != (test_outcomes is None):
        raise DataError("--test-records and --test-outcomes go together: give both (the second set and its "
                        "Outcomes file) or neither")
    malformed = Malformed(strict)
    frame, details = _stays(records, outcomes, malformed)
    inputs = {"records": str(records), "outcomes": str(outcomes)}
    test_rows = None
    if test_records is not None:
        test, details["test_set"] = _stays(test_records, test_outcomes, malformed)
        shared = np.intersect1d(frame["record_id"], test["record_id"])
        if len(shared):
            raise DataError(f"{test_records}: RecordID {shared[0]} is also in {records}; the test set must hold "
                            "other stays")
        frame = pd.concat([frame, test], ignore_index=True)
        counts = [c for c in frame.columns if c.endswith("_count")]     # a variable only one set measured
        frame[counts] = frame[counts].fillna(0).astype(np.int64)
        frame = frame[[c for c in frame.columns if c != "label"] + ["label"]]
        test_rows = np.arange(len(frame)) >= len(frame) - len(test)
        inputs |= {"test_records": str(test_records), "test_outcomes": str(test_outcomes)}
    if frame["ICUType"].notna().all():  # whole-number categories read back as 1..4, not 1.0..4.0
        frame["ICUType"] = frame["ICUType"].astype("int64")
    if malformed.skipped:
        log.warning("warning: %s: skipped %d malformed line(s), first %s; prepare with --strict to refuse such "
                    "files instead", records if test_records is None else f"{records} and {test_records}",
                    malformed.skipped, "; ".join(malformed.first))
    details["malformed_lines"] = malformed.summary()

    kinds = {c: "continuous" for c in frame.columns}
    kinds |= {"record_id": "id", "ICUType": "categorical", "label": "label"}
    variables = sorted({c[:-len("_count")] for c in frame.columns if c.endswith("_count")}, key=str.lower)
    return Prepared(table=Table(frame, kinds, summary_rules(variables)), source="cinc2012",
                    subject_column="record_id", details=details, inputs=inputs, test_rows=test_rows,
                    public_bounds=public_bounds(frame.columns))


def public_bounds(columns) -> dict:
    """``--bounds`` declarations for the prepared columns: PLAUSIBLE ranges for descriptors and summaries, 0 to
    MAX_COUNT for counts, the documented ICU types and the 0/1 label; each variable's recording resolution
    (RESOLUTION) as its summaries' step, the mean's excepted; the PANELS its summaries are measured in."""
    out: dict = {"ICUType": {"categories": [1, 2, 3, 4]}, "label": {"categories": [0, 1]}}
    for column in columns:
        variable, _, summary = column.rpartition("_")
        if column in PLAUSIBLE:
            low, high = PLAUSIBLE[column]
        elif summary == "count":
            low, high = 0, MAX_COUNT
        elif summary in SUMMARIES and variable in PLAUSIBLE:
            low, high = PLAUSIBLE[variable]
        else:
            continue
        out[column] = {"low": low, "high": high}
        step = RESOLUTION.get(variable if summary in SUMMARIES else column)
        if step is not None and summary not in ("mean", "count"):
            out[column]["step"] = step
        if summary in SUMMARIES[:-1] and variable in PANEL_OF:
            out[column]["panel"] = PANEL_OF[variable]
    return out


def summary_rules(variables: list[str]) -> tuple[Rule, ...]:
    """What every real stay keeps, per time-series variable: its first, last and mean value lie between its
    minimum and maximum, its count is a whole number >= 0, and 0 exactly when its summaries are missing, and the
    summaries are what summaries of that many values are (a variable measured once has all five equal, ...)."""
    rules: list[Rule] = []
    for v in variables:
        rules += [Order(((f"{v}_min",), (f"{v}_first", f"{v}_last", f"{v}_mean"), (f"{v}_max",))),
                  Count(f"{v}_count", tuple(f"{v}_{s}" for s in SUMMARIES if s != "count")),
                  Range(f"{v}_count", low=0.0, integer=True),
                  Summary(*(f"{v}_{s}" for s in ("count", "first", "last", "min", "max", "mean")))]
    return tuple(rules)


def _stays(records: str | os.PathLike, outcomes: str | os.PathLike,
           malformed: Malformed) -> tuple[pd.DataFrame, dict]:
    """One set: a row per stay with an outcome (sorted by record id) and its summary.json entries."""
    path = Path(records)
    if not path.exists():
        raise DataError(f"{path}: records folder or archive not found")
    files = _record_files(path)
    labels = read_outcomes(outcomes)
    rows = _timed_rows(files, malformed)
    desc, record_ids, leading = _descriptors(rows, files, path)
    series = rows[~leading].sort_values(["file", "minute"], kind="stable")  # the time series, in time order
    features, variables = _summaries(series, len(files))

    frame = pd.DataFrame({"record_id": record_ids})
    for name in ("Age", "Gender", "Height", "Weight", "ICUType"):
        frame[name] = desc[name].where(desc[name] != -1).to_numpy(dtype=float)
    frame = pd.concat([frame, pd.DataFrame(features)], axis=1)
    has_outcome = np.isin(record_ids, labels.index.to_numpy())
    if not has_outcome.any():
        raise DataError(f"{outcomes}: none of the {len(files)} records has an outcome here; "
                        "is it the Outcomes file of the same set?")
    frame = frame[has_outcome].reset_index(drop=True)
    frame["label"] = labels.reindex(frame["record_id"]).to_numpy()
    frame = frame.sort_values("record_id", kind="stable").reset_index(drop=True)
    details = _details(frame, n_files=len(files), dropped=int((~has_outcome).sum()), variables=variables,
                       n_series_rows=len(series))
    return frame, details


def _timed_rows(files: list[tuple[str, bytes]], malformed: Malformed) -> pd.DataFrame:
    """Every readable record line with a stripped Parameter and its time in minutes; a line missing a field is
    malformed."""
    rows = _long_rows(files, malformed)
    rows["Parameter"] = rows["Parameter"].str.strip().replace("", np.nan)
    missing = rows["Value"].isna().to_numpy() | rows["Parameter"].isna().to_numpy()
    rows = malformed.drop(rows, missing, files, "the line needs a time, a parameter and a value")
    rows, minutes = _minutes(rows, files, malformed)
    rows["minute"] = minutes
    return rows


def _descriptors(rows: pd.DataFrame, files: list[tuple[str, bytes]],
                 path: Path) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    """Per file: the descriptor values (one column each), the record ids and which rows are descriptor lines.

    A descriptor is the first 00:00 line of its name in a file: 00:00 measurements such as HR may come between
    them, and a second 00:00 Weight line is a measurement. A file without a RecordID line is named by its file name.
    """
    candidate = (rows["minute"] == 0) & rows["Parameter"].isin(DESCRIPTORS)
    leading = candidate & ~rows[["file", "Parameter"]].where(candidate).duplicated()
    head = rows[leading]
    desc = head.pivot(index="file", columns="Parameter", values="Value").reindex(range(len(files)))
    desc = desc.reindex(columns=list(DESCRIPTORS))
    stems = pd.Series([Path(name.rsplit(":", 1)[-1]).stem for name in (n for n, _ in files)])
    record_ids = desc["RecordID"].where(desc["RecordID"].notna(), pd.to_numeric(stems, errors="coerce").to_numpy())
    if record_ids.isna().any():
        name = files[int(record_ids.isna().to_numpy().argmax())][0]
        raise DataError(f"{name}: no RecordID line and the file name is not a number; cannot identify the record")
    record_ids = record_ids.to_numpy(dtype=np.int64)
    if len(np.unique(record_ids)) != len(record_ids):
        dup = pd.Series(record_ids)[pd.Series(record_ids).duplicated()].iloc[0]
        raise DataError(f"{path}: RecordID {dup} appears in more than one record file")
    return desc, record_ids, leading


def _summaries(series: pd.DataFrame, n_files: int) -> tuple[dict[str, pd.Series], list[str]]:
    """``VAR_first`` .. ``VAR_count`` per time-series variable (one row per file) and the variables, sorted."""
    stats = series.groupby(["file", "Parameter"])["Value"].agg(["first", "last", "min", "max", "mean", "count"])
    variables = sorted(stats.index.get_level_values("Parameter").unique(), key=str.lower)
    wide = stats.unstack("Parameter").reindex(range(n_files))
    features = {}
    for variable in variables:
        for summary in SUMMARIES:
            column = wide[(summary, variable)]
            features[f"{variable}_{summary}"] = (column.fillna(0).astype(np.int64) if summary == "count"
                                                 else column.astype(float))
        # a mean of equal values can land one rounding step outside them (0.1, 0.1, 0.1 -> 0.10000000000000002)
        features[f"{variable}_mean"] = features[f"{variable}_mean"].clip(features[f"{variable}_min"],
                                                                         features[f"{variable}_max"])
    return features, variables


def _details(frame: pd.DataFrame, *, n_files: int, dropped: int, variables: list[str], n_series_rows: int) -> dict:
    """summary.json entries: records read, dropped and kept without time series, the variables, notes."""
    empty_records = int((frame[[c for c in frame.columns if c.endswith("_count")]].sum(axis=1) == 0).sum())
    details = {
        "label_definition": f"{LABEL_COLUMN} from the Outcomes file (1 = died in hospital)",
        "records": {"files": n_files, "without_outcome_dropped": dropped, "without_time_series_kept": empty_records},
        "time_series": {"variables": len(variables), "rows": n_series_rows, "summaries": list(SUMMARIES),
                        "names": variables},
        "descriptors_missing": {name: int(frame[name].isna().sum()) for name in ("Age", "Gender", "Height", "Weight")},
    }
    notes = []
    if empty_records:
        notes.append(f"{empty_records} record(s) have descriptors but no time-series rows; kept with every summary "
                     "missing and counts 0")
    if dropped:
        notes.append(f"{dropped} record(s) without a line in the Outcomes file were dropped")
    details["notes"] = notes
    return details
