"""CinC 2012 files as they circulate: malformed lines skipped (or refused under --strict), the challenge's own
split (a second set as the test side) and the summary relations the source declares."""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ehrdiff.cli import main
from ehrdiff.data.io import read_table
from ehrdiff.data.rules import Count, Order, Range, broken_rows
from ehrdiff.data.sources import prepare_cinc2012
from ehrdiff.data.sources.cinc2012 import PANEL_OF

F = Path(__file__).parent / "fixtures" / "cinc2012"
OUTCOMES = F / "Outcomes-a.txt"


def archive(tmp_path: Path, name: str, files: list[Path], edit: dict[str, str] | None = None) -> Path:
    """A .tar.gz of ``files`` (a set's records), the text of those named in ``edit`` replaced."""
    folder = tmp_path / name
    folder.mkdir()
    for file in files:
        (folder / file.name).write_text((edit or {}).get(file.name, file.read_text()))
    path = tmp_path / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=name)
    shutil.rmtree(folder)
    return path


RECORDS = sorted((F / "set-a").glob("*.txt"))
MALFORMED = {  # record -> (the line added as line 11, what it is)
    RECORDS[0].name: ("10:45,,1.9", "the line needs a time, a parameter and a value"),
    RECORDS[1].name: ("11:00,HR,abc", "the value is not a number"),
    RECORDS[2].name: ("12:00,HR,80,1", "the line does not have 3 fields"),
    RECORDS[3].name: ("1200,HR,80", "the time is not HH:MM"),
}


def with_malformed_lines() -> dict[str, str]:
    edits = {}
    for name, (line, _) in MALFORMED.items():
        lines = (F / "set-a" / name).read_text().splitlines()
        edits[name] = "\n".join(lines[:10] + [line] + lines[10:]) + "\n"
    return edits


def prepare(tmp_path: Path, out: str, *args: str) -> int:
    return main(["prepare", "cinc2012", *args, "--outcomes", str(OUTCOMES), "-o", str(tmp_path / out)])


def test_malformed_lines_are_skipped_counted_and_named(tmp_path, caplog, capsys):
    broken = archive(tmp_path, "set-a", RECORDS, with_malformed_lines())
    clean = archive(tmp_path, "clean", RECORDS)
    with caplog.at_level(logging.WARNING):
        assert prepare(tmp_path, "out", "--records", str(broken)) == 0
    warning = next(r.getMessage() for r in caplog.records if "malformed" in r.getMessage())
    assert "skipped 4 malformed line(s)" in warning and "--strict" in warning
    assert f"set-a.tar.gz:set-a/{RECORDS[0].name}: line 11: the line needs a time, a parameter and a value " \
           "(10:45,,1.9)" in warning
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["malformed_lines"]["skipped"] == 4
    assert summary["malformed_lines"]["by_problem"] == {what: 1 for _, what in MALFORMED.values()}
    assert len(summary["malformed_lines"]["first"]) == 4
    # the skipped lines are all that differs from the clean set
    assert prepare(tmp_path, "clean", "--records", str(clean)) == 0
    for name in ("train.parquet", "test.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / name),
                                      pd.read_parquet(tmp_path / "clean" / name))
    assert json.loads((tmp_path / "clean" / "summary.json").read_text())["malformed_lines"]["skipped"] == 0


@pytest.mark.parametrize("name", list(MALFORMED))
def test_strict_refuses_a_malformed_line_naming_file_and_line(tmp_path, capsys, name):
    broken = archive(tmp_path, "set-a", RECORDS, {name: with_malformed_lines()[name]})
    assert prepare(tmp_path, "out", "--records", str(broken), "--strict") == 1
    err = capsys.readouterr().err.strip()
    line, what = MALFORMED[name]
    assert err.startswith(f"ehrdiff: error: {broken}:set-a/{name}: line 11: {what} ({line})") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_second_set_is_the_test_side(tmp_path, capsys):
    first = archive(tmp_path, "set-a", RECORDS[:20])
    second = archive(tmp_path, "set-b", RECORDS[20:])
    code = main(["prepare", "cinc2012", "--records", str(first), "--outcomes", str(OUTCOMES), "--test-records",
                 str(second), "--test-outcomes", str(OUTCOMES), "-o", str(tmp_path / "out")])
    assert code == 0
    train, test = read_table(tmp_path / "out" / "train.parquet"), read_table(tmp_path / "out" / "test.parquet")
    ids = [int(p.stem) for p in RECORDS]
    assert sorted(train.frame["record_id"]) == ids[:20] and sorted(test.frame["record_id"]) == ids[20:]
    assert train.columns == test.columns and train.columns[-1] == "label"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "own test set" in summary["split"]["method"] and summary["test_set"]["records"]["files"] == 8
    # the same stays prepared as one set give the same rows
    whole = prepare_cinc2012(F / "set-a", OUTCOMES).table.frame.set_index("record_id")
    pair = pd.concat([train.frame, test.frame]).set_index("record_id")
    pd.testing.assert_frame_equal(pair[whole.columns.intersection(pair.columns)].sort_index(),
                                  whole[whole.columns.intersection(pair.columns)].sort_index(), check_dtype=False)


def test_test_records_without_their_outcomes_is_one_line(tmp_path, capsys):
    code = main(["prepare", "cinc2012", "--records", str(F / "set-a"), "--outcomes", str(OUTCOMES),
                 "--test-records", str(F / "set-a"), "-o", str(tmp_path / "out")])
    assert code == 1 and "--test-records and --test-outcomes go together" in capsys.readouterr().err


def test_the_same_stay_in_both_sets_is_refused(tmp_path, capsys):
    code = main(["prepare", "cinc2012", "--records", str(F / "set-a"), "--outcomes", str(OUTCOMES),
                 "--test-records", str(archive(tmp_path, "set-b", RECORDS[:3])), "--test-outcomes", str(OUTCOMES),
                 "-o", str(tmp_path / "out")])
    assert code == 1 and f"RecordID {RECORDS[0].stem} is also in" in capsys.readouterr().err


def test_prepared_files_declare_the_summary_relations_and_keep_them(tmp_path, capsys):
    assert prepare(tmp_path, "out", "--records", str(F / "set-a")) == 0
    train, test = read_table(tmp_path / "out" / "train.parquet"), read_table(tmp_path / "out" / "test.parquet")
    assert train.rules == test.rules and train.rules
    variables = {c[:-len("_count")] for c in train.columns if c.endswith("_count")}
    for v in variables:
        group = tuple(f"{v}_{s}" for s in ("first", "last", "min", "max", "mean"))
        if all(c in train.columns for c in group):
            assert Order(((f"{v}_min",), (f"{v}_first", f"{v}_last", f"{v}_mean"), (f"{v}_max",))) in train.rules
            assert Count(f"{v}_count", group) in train.rules
        assert Range(f"{v}_count", low=0.0, integer=True) in train.rules
    for part in (train, test):
        assert not broken_rows(part.frame, part.rules).any()
    for rule in train.rules:     # every column a rule names is one the source made
        assert set(rule.columns) <= set(train.columns)
    assert np.all(train.frame.filter(like="_count").to_numpy() >= 0)


def test_prepare_writes_public_ranges_that_a_private_run_spends_no_budget_on(tmp_path, capsys):
    assert prepare(tmp_path, "out", "--records", str(F / "set-a")) == 0
    out = tmp_path / "out"
    train = read_table(out / "train.parquet")
    bounds = json.loads((out / "bounds.json").read_text())
    modelled = [c for c in train.columns if train.kinds[c] != "id"]
    assert sorted(bounds) == sorted(modelled)          # every modelled column declared, none the rows dropped
    assert bounds["pH_max"] == {"low": 6.5, "high": 8.0, "step": 0.01, "panel": "arterial blood gas"}
    assert bounds["HR_count"] == {"low": 0, "high": 200}
    assert bounds["HR_first"]["step"] == 1 and "step" not in bounds["HR_mean"]     # a mean is not on the grid
    assert bounds["ICUType"] == {"categories": [1, 2, 3, 4]}
    assert json.loads((out / "summary.json").read_text())["public_bounds"]["columns"] == len(modelled)
    run = tmp_path / "run"
    assert main(["-q", "train", str(out / "train.parquet"), "-o", str(run), "--preset", "cpu-fast", "--steps", "2",
                 "--batch-size", "8", "--dp", "--epsilon", "10", "--bounds", str(out / "bounds.json")]) == 0
    saved = json.loads((run / "model.json").read_text())
    release = saved["dp_release"]
    # the declared panels (PANELS), not the rows' missing pattern, tie a private model's indicators
    variable = lambda indicator: indicator.split("_")[0]        # noqa: E731
    assert saved["missing_panels"] and all(PANEL_OF[variable(m)] == PANEL_OF[variable(lead)]
                                           for m, lead in saved["missing_panels"])
    names = [m["name"] for m in release["mechanisms"]]
    assert "continuous bounds" not in names and "DP-SGD" in names
    assert {"recording grids", "panel count ties"} <= set(names)     # declared steps, panels and count rules
    assert release["declared"]["bounds"] == sorted(c for c in modelled if train.kinds[c] == "continuous")
