"""The registry of data sources: a source registered with one decorator is an `ehrdiff prepare` sub-command and a
`prepare()` name, its flags reach its function by name, and other commands do not import the sources."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ehrdiff.cli import main
from ehrdiff.data.sources import SOURCES, Prepared, data_source, get_source, prepare
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError


def _toy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, required=True, metavar="N", help="how many patients")
    parser.add_argument("--name", dest="column", default="x", help="name of the value column")


@pytest.fixture
def toy_source():
    """A source registered the way a new source module does it, removed again after the test."""

    @data_source("toy", help="N patients -> one row each", arguments=_toy_arguments)
    def prepare_toy(patients: int, *, column: str = "x") -> Prepared:
        frame = pd.DataFrame({"patient_id": np.arange(patients), column: np.arange(patients) % 2})
        return Prepared(table=Table(frame, {"patient_id": "id", column: "binary"}), source="toy",
                        subject_column="patient_id", inputs={})

    yield prepare_toy
    del SOURCES["toy"]


def test_a_registered_source_is_a_prepare_subcommand(toy_source, tmp_path, capsys):
    code = main(["prepare", "toy", "--patients", "10", "--name", "flag", "-o", str(tmp_path / "out"), "--seed", "1"])
    assert code == 0, capsys.readouterr().err
    assert "train.parquet 8 x 2, test.parquet 2 x 2 (8 / 2 subjects)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["source"] == "toy" and summary["split"]["seed"] == 1


def test_a_registered_source_is_a_prepare_name(toy_source, tmp_path):
    summary = prepare("toy", tmp_path / "out", patients=6, column="y")
    assert summary["shapes"] == {"train": [5, 2], "test": [1, 2]}
    assert get_source("toy").prepare is toy_source


def test_flags_reach_the_function_by_name():
    args = argparse.Namespace(patients=3, column="c", source="toy", output="out", seed=0, test_fraction=0.2)

    @data_source("toy-by-name", help="", arguments=_toy_arguments)
    def prepare_toy(patients: int, column: str = "x") -> Prepared:
        raise AssertionError("not called")

    try:
        assert get_source("toy-by-name").keyword_arguments(args) == {"patients": 3, "column": "c"}
    finally:
        del SOURCES["toy-by-name"]


def test_the_built_in_sources_in_their_help_order():
    assert list(SOURCES) == ["mimic", "cinc2012", "ptb", "uci-diabetes", "codes", "table", "meds", "omop"]


def test_a_name_registered_twice_is_refused(toy_source):
    with pytest.raises(ValueError, match="registered twice"):
        data_source("toy", help="", arguments=_toy_arguments)(toy_source)


def test_an_unknown_source_names_the_known_ones(tmp_path):
    with pytest.raises(DataError, match="unknown source 'nope'; choose one of mimic, cinc2012"):
        prepare("nope", tmp_path / "out")


def test_other_commands_do_not_import_the_sources():
    script = ("import sys; from ehrdiff.cli import build_parser; build_parser(); "
              "print('ehrdiff.data.sources' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
