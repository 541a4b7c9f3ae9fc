"""`ehrdiff prepare` through the command line: the documented interface works, and every bad input gives one line
on stderr starting "ehrdiff: error:", a non-zero exit, no traceback and no output folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import datahelp as h  # noqa: E402

from ehrdiff.cli import main  # noqa: E402
from ehrdiff.data import Table, TableEncoder  # noqa: E402
from ehrdiff.errors import DataError  # noqa: E402

F = h.FIXTURES


def fails(capsys, tmp_path, argv, *fragments):
    """Run the CLI expecting a clean one-line failure that mentions every fragment; no output may appear."""
    out = tmp_path / "out"
    code = main(["prepare", *argv, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("ehrdiff: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging folder left behind
    return err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_missing_required_column(capsys, tmp_path):
    bad = write(tmp_path / "dx.csv", "subject_id,hadm_id,code\n1,10,4019\n")
    fails(capsys, tmp_path, ["mimic", "--diagnoses", str(bad)], str(bad), "'icd9_code' is missing")


def test_mimic4_file_without_icd_version(capsys, tmp_path):
    bad = write(tmp_path / "dx.csv", "subject_id,hadm_id,icd_code\n1,10,4019\n")
    fails(capsys, tmp_path, ["mimic", "--diagnoses", str(bad)], "'icd_version' is missing")


def test_unreadable_icd9_code_names_the_line(capsys, tmp_path):
    bad = write(tmp_path / "dx.csv", "subject_id,hadm_id,icd9_code\n1,10,4019\n2,11,4X1\n")
    fails(capsys, tmp_path, ["mimic", "--diagnoses", str(bad)], "line 3", "'4X1'", "icd9_code")


def test_unreadable_uci_code_names_the_line(capsys, tmp_path):
    rows = pd.read_csv(zipfile.ZipFile(F / "uci/dataset_diabetes.zip").open("dataset_diabetes/diabetic_data.csv"),
                       dtype=str, keep_default_na=False)
    rows.loc[4, "diag_2"] = "25O.1"  # a letter O for a zero
    bad = tmp_path / "diabetic_data.csv"
    rows.to_csv(bad, index=False)
    fails(capsys, tmp_path, ["uci-diabetes", "--zip", str(bad)], "line 6", "diag_2", "'25O.1'")


@pytest.mark.parametrize("content, message", [("", "file is empty"),
                                              ("subject_id,hadm_id,icd9_code\n", "header but no rows")])
def test_empty_files(capsys, tmp_path, content, message):
    bad = write(tmp_path / "dx.csv", content)
    fails(capsys, tmp_path, ["mimic", "--diagnoses", str(bad)], str(bad), message)


def test_missing_file(capsys, tmp_path):
    fails(capsys, tmp_path, ["ptb", "--normal", str(tmp_path / "nope.csv"), "--abnormal", "x.csv"], "not found")


def test_label_with_one_class(capsys, tmp_path):
    bad = tmp_path / "wide.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [1, 1, 1, 1]}).to_csv(bad, index=False)
    fails(capsys, tmp_path, ["table", "--input", str(bad), "--label-col", "y"], str(bad), "one class", "'label'")


def test_label_with_one_class_in_the_codes_source(capsys, tmp_path):
    bad = write(tmp_path / "long.csv", "pid,code,dead\n1,A,0\n2,B,0\n3,A,0\n")
    fails(capsys, tmp_path, ["codes", "--input", str(bad), "--subject-col", "pid", "--code-col", "code",
                             "--label-col", "dead"], "one class")


def test_mixed_icd_versions_when_the_user_asked_for_an_error(capsys, tmp_path):
    fails(capsys, tmp_path, ["mimic", "--diagnoses", str(F / "mimic4/diagnoses_icd.csv"), "--icd10", "error"],
          "mixes ICD versions", "--icd10 keep")


def test_ptb_files_swapped(capsys, tmp_path):
    fails(capsys, tmp_path, ["ptb", "--normal", str(F / "ptb/ptbdb_abnormal.csv"),
                             "--abnormal", str(F / "ptb/ptbdb_normal.csv")], "--normal and --abnormal")


def test_not_a_zip(capsys, tmp_path):
    bad = write(tmp_path / "data.zip", "hello")
    fails(capsys, tmp_path, ["uci-diabetes", "--zip", str(bad)], "not a zip file")


def test_cinc_outcomes_of_another_set(capsys, tmp_path):
    other = write(tmp_path / "Outcomes-b.txt", "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n"
                                                "999999,1,1,1,1,0\n")
    fails(capsys, tmp_path, ["cinc2012", "--records", str(F / "cinc2012/set-a"), "--outcomes", str(other)],
          "none of the 28 records has an outcome")


def test_usage_mistakes_are_one_line_too(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "mimic", "--diagnoses", "x.csv", "--test-fraction", "1.5", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("ehrdiff: error: ") and err.count("\n") == 1
    assert "--test-fraction" in err


def test_unseen_category_when_encoding_names_column_and_row():
    train = Table.from_frame(pd.DataFrame({"sex": ["F", "M", "F"], "x": [1.0, 2.0, 3.0]}))
    encoder = TableEncoder().fit(train)
    new = Table.from_frame(pd.DataFrame({"sex": ["F", "X"], "x": [1.0, 2.0]}))
    with pytest.raises(DataError, match=r"column 'sex' row 1 has value 'X', never seen"):
        encoder.transform(new)


def test_prepare_writes_the_three_files_and_prints_the_shapes(capsys, tmp_path):
    code = main(["prepare", "ptb", "--normal", str(F / "ptb/ptbdb_normal.csv"), "--abnormal",
                 str(F / "ptb/ptbdb_abnormal.csv"), "-o", str(tmp_path / "out"), "--test-fraction", "0.5",
                 "--seed", "7"])
    captured = capsys.readouterr()
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.json", "test.parquet", "train.parquet"]
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["split"]["seed"] == 7 and summary["split"]["test_fraction"] == 0.5
    assert summary["rows"] == {"total": 30, "train": 15, "test": 15}
    assert "train.parquet 15 x 189" in captured.out


def test_the_installed_command_reports_errors_without_traceback(tmp_path):
    exe = shutil.which("ehrdiff", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the ehrdiff console script is not installed next to this Python")
    bad = write(tmp_path / "dx.csv", "")
    result = subprocess.run([exe, "prepare", "mimic", "--diagnoses", str(bad), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("ehrdiff: error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
