"""PTB heartbeats (Kachuee et al. 2018, from the PTB Diagnostic ECG Database, ODC-By 1.0): ``ptbdb_normal.csv`` and
``ptbdb_abnormal.csv``, headerless, each row 187 samples in [0, 1] and a last column label (0 normal, 1 abnormal).

Columns: ``beat_id`` (kind id: row number, normal file first), ``s000``..``s186`` (continuous), ``label`` (0/1, from
the file the row came from; the file's own last column must agree). The files carry no patient id, so the split is
by beat: beats of one patient can fall on both sides (say so when reporting results).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd

from ehrdiff.data.io import existing_file
from ehrdiff.data.sources._files import read_csv
from ehrdiff.data.sources.registry import data_source
from ehrdiff.data.sources.split import Prepared
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError

SAMPLES = 187


def _read_beats(path: str | os.PathLike, expected_label: int) -> np.ndarray:
    path = existing_file(path, "PTB heartbeat file")
    frame = read_csv(path, str(path), header=False, all_strings=False)
    if frame.shape[1] != SAMPLES + 1:
        raise DataError(f"{path}: rows have {frame.shape[1]} values, expected {SAMPLES + 1} "
                        f"({SAMPLES} samples and the label); is this a PTB heartbeat file?")
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise DataError(f"{path}: line {row + 1}, value {column + 1}: {frame.iat[row, column]!r} is not a number")
    labels = values[:, -1]
    wrong = labels != expected_label
    if wrong.any():
        other = "normal" if expected_label == 1 else "abnormal"
        raise DataError(f"{path}: line {int(np.argmax(wrong)) + 1} has label {labels[wrong][0]:g}, expected "
                        f"{expected_label}; is this the {other} file? (check --normal and --abnormal)")
    return values[:, :SAMPLES]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--normal", required=True, metavar="PATH", help="ptbdb_normal.csv")
    parser.add_argument("--abnormal", required=True, metavar="PATH", help="ptbdb_abnormal.csv")


@data_source("ptb", help="PTB heartbeat CSVs (normal + abnormal) -> one row per beat", arguments=add_arguments)
def prepare_ptb(normal: str | os.PathLike, abnormal: str | os.PathLike) -> Prepared:
    beats = [_read_beats(normal, 0), _read_beats(abnormal, 1)]
    samples = np.vstack(beats)
    columns = [f"s{i:03d}" for i in range(SAMPLES)]
    frame = pd.concat([pd.DataFrame({"beat_id": np.arange(len(samples))}),
                       pd.DataFrame(samples, columns=columns),
                       pd.DataFrame({"label": np.repeat([0, 1], [len(b) for b in beats])})], axis=1)
    kinds = {"beat_id": "id", **{c: "continuous" for c in columns}, "label": "label"}
    outside = int(((samples < 0) | (samples > 1)).sum())
    details = {
        "label_definition": "0 for rows of the normal file, 1 for rows of the abnormal file",
        "beats": {"normal": len(beats[0]), "abnormal": len(beats[1])},
        "notes": ["the files have no patient id: the split is by beat, so one patient's beats can be on both sides"]
                 + ([f"{outside} sample value(s) lie outside [0, 1]"] if outside else []),
    }
    return Prepared(table=Table(frame, kinds), source="ptb", subject_column="beat_id", details=details,
                    inputs={"normal": str(normal), "abnormal": str(abnormal)})
