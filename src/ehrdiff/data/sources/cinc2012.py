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
"""

from __future__ import annotations

import argparse
import io
import lzma
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ehrdiff.data.io import existing_file, first_line
from ehrdiff.data.sources._files import find_column, read_csv
from ehrdiff.data.sources.registry import data_source
from ehrdiff.data.sources.split import Prepared
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError

DESCRIPTORS = ("RecordID", "Age", "Gender", "Height", "ICUType", "Weight")
SUMMARIES = ("first", "last", "min", "max", "mean", "count")
LABEL_COLUMN = "In-hospital_death"


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


def _long_rows(records: list[tuple[str, bytes]]) -> pd.DataFrame:
    """All records' lines in one frame (file, line, Time, Parameter, Value), parsed by one read_csv call."""
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
    try:  # numbers parsed by the C reader; only a bad value takes the slow path that finds its line
        frame = pd.read_csv(io.BytesIO(buffer), dtype={"Time": str, "Parameter": str, "Value": np.float64}, **options)
        bad_value = None
    except ValueError:
        frame = pd.read_csv(io.BytesIO(buffer), dtype=str, **options)
        bad_value = pd.to_numeric(frame["Value"], errors="coerce").isna() & frame["Value"].notna()
    if len(frame) != sum(counts):
        raise DataError("record files: could not split the files into lines (a quoted field with a line break?)")
    frame.insert(0, "file", np.repeat(np.arange(len(records)), counts))
    frame["line"] = frame.groupby("file").cumcount() + 2
    if bad_value is not None:
        raise _bad_row(frame, bad_value.to_numpy(), records, "the value is not a number")
    return frame[frame["Time"].notna()].reset_index(drop=True)  # blank lines


def _bad_row(frame: pd.DataFrame, mask: np.ndarray, records, what: str) -> DataError:
    row = frame.iloc[int(np.argmax(mask))]
    return DataError(f"{records[int(row['file'])][0]}: line {int(row['line'])}: {what} "
                     f"({row['Time']},{row['Parameter']},{row['Value']}); fix or remove that line")


def _minutes(frame: pd.DataFrame, records) -> np.ndarray:
    """'HH:MM' -> minutes since admission, parsed once per distinct time."""
    index, distinct = pd.factorize(frame["Time"])
    parsed = pd.Series(distinct, dtype="string").str.strip().str.extract(r"^(\d{1,3}):(\d{2})$")
    ok = parsed[0].notna().to_numpy(dtype=bool)
    if not ok.all():
        raise _bad_row(frame, ~ok[index], records, "time is not HH:MM")
    minutes = parsed[0].astype(np.int64).to_numpy() * 60 + parsed[1].astype(np.int64).to_numpy()
    return minutes[index]


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


@data_source("cinc2012", help="PhysioNet/CinC 2012 records + Outcomes -> one row per ICU stay with 48 h summaries",
             arguments=add_arguments)
def prepare_cinc2012(records: str | os.PathLike, outcomes: str | os.PathLike) -> Prepared:
    path = Path(records)
    if not path.exists():
        raise DataError(f"{path}: records folder or archive not found")
    files = _record_files(path)
    labels = read_outcomes(outcomes)
    rows = _timed_rows(files)
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
    if frame["ICUType"].notna().all():  # whole-number categories read back as 1..4, not 1.0..4.0
        frame["ICUType"] = frame["ICUType"].astype("int64")
    frame = frame.sort_values("record_id", kind="stable").reset_index(drop=True)

    kinds = {c: "continuous" for c in frame.columns}
    kinds |= {"record_id": "id", "ICUType": "categorical", "label": "label"}
    details = _details(frame, n_files=len(files), dropped=int((~has_outcome).sum()), variables=variables,
                       n_series_rows=len(series))
    return Prepared(table=Table(frame, kinds), source="cinc2012", subject_column="record_id", details=details,
                    inputs={"records": str(records), "outcomes": str(outcomes)})


def _timed_rows(files: list[tuple[str, bytes]]) -> pd.DataFrame:
    """Every record line with a stripped Parameter and its time in minutes; a line missing a field is an error."""
    rows = _long_rows(files)
    rows["Parameter"] = rows["Parameter"].str.strip()
    missing = rows["Value"].isna().to_numpy() | rows["Parameter"].isna().to_numpy()
    if missing.any():
        raise _bad_row(rows, missing, files, "the line needs a time, a parameter and a value")
    rows["minute"] = _minutes(rows, files)
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
