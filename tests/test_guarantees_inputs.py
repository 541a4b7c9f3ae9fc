"""Issue 23, problems 6 and 7 for inputs: what a user's tables and arguments can no longer do silently.

Each test fails on the code before the fix: the zero-row synthetic file and ``--label nosuch`` were evaluated with
exit 0, ``train`` took a one-class label, a 0/1 column with a 2, a -1 or a gap became continuous and a repeated
header became ``a.1`` without a word, column kinds stored as a list gave a TypeError traceback, and the CinC
source printed tarfile's five-line message for an archive of the wrong kind.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ehrdiff.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
TINY = ["--preset", "cpu-fast", "--steps", "2", "--batch-size", "16", "--set", "hidden_dims=[8,8]",
        "--set", "embedding_features=4", "--set", "embedding_width=8"]

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores


def one_line_error(capsys, code: int, *fragments: str) -> str:
    """The command failed with exit 1 and one line on stderr that holds every fragment."""
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("ehrdiff: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def patients(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"dx_a": rng.integers(0, 2, n), "dx_b": rng.integers(0, 2, n),
                         "age": rng.integers(20, 90, n), "label": np.arange(n) % 2})


@pytest.fixture
def tables(tmp_path):
    frame = patients()
    frame.iloc[:30].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[30:].to_csv(tmp_path / "test.csv", index=False)
    return tmp_path


def evaluate_args(folder: Path, *extra: str) -> list[str]:
    return ["-q", "evaluate", "--train", str(folder / "train.csv"), "--test", str(folder / "test.csv"),
            "--no-figures", "-o", str(folder / "report"), *extra]


# ---- problem 6: silent or wrong outcomes -------------------------------------------------------------------------


def test_a_synthetic_or_held_out_file_without_rows_is_refused(tables, capsys):
    patients().iloc[:0].to_csv(tables / "empty.csv", index=False)       # the header, no rows
    code = main(evaluate_args(tables, "--synthetic", f"s={tables / 'empty.csv'}"))
    one_line_error(capsys, code, "empty.csv", "no rows")
    assert not (tables / "report").exists()
    code = main(evaluate_args(tables, "--synthetic", f"s={tables / 'train.csv'}", "--test", str(tables / "empty.csv")))
    one_line_error(capsys, code, "empty.csv", "no rows")


def test_an_unknown_label_is_refused_naming_the_columns(tables, capsys):
    code = main(evaluate_args(tables, "--synthetic", f"s={tables / 'test.csv'}", "--label", "nosuch"))
    one_line_error(capsys, code, "'nosuch'", "'dx_a', 'dx_b', 'age', 'label'")
    assert not (tables / "report").exists()


def test_train_refuses_the_one_class_label_prepare_refuses(tmp_path, capsys):
    frame = patients()
    frame["label"] = 1
    frame.insert(0, "subject_id", np.arange(len(frame)))
    frame.to_csv(tmp_path / "one-class.csv", index=False)
    prepare_code = main(["prepare", "table", "--input", str(tmp_path / "one-class.csv"), "-o", str(tmp_path / "p")])
    prepared = one_line_error(capsys, prepare_code, "one class only")
    train_code = main(["-q", "train", str(tmp_path / "one-class.csv"), "-o", str(tmp_path / "run"), *TINY])
    trained = one_line_error(capsys, train_code, "one class only")
    assert trained == prepared                     # one check, one message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("odd, shown", [(2, "row 5: 2"), (-1, "row 5: -1"), (np.nan, "row 5: missing")])
def test_a_zero_one_column_read_as_continuous_is_said_once(tmp_path, caplog, odd, shown):
    from ehrdiff.data.io import read_table

    frame = patients()
    frame["dx_a"] = frame["dx_a"].astype(object)
    frame.loc[5, "dx_a"] = odd
    frame.to_csv(tmp_path / "odd.csv", index=False)
    with caplog.at_level(logging.WARNING):
        table = read_table(tmp_path / "odd.csv")
    assert table.kinds["dx_a"] == "continuous" and table.kinds["dx_b"] == "binary"
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1, lines
    assert "'dx_a'" in lines[0] and shown in lines[0] and "continuous" in lines[0] and "fix those rows" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):                 # a kind the user gives is not second-guessed
        read_table(tmp_path / "odd.csv", kinds={"dx_a": "continuous"})
    assert not caplog.records


def test_a_number_column_read_as_categorical_is_said_once(tmp_path, caplog):
    from ehrdiff.data.io import read_table

    frame = patients()
    frame = frame.astype({"age": object, "dx_b": object})
    frame.loc[7, "age"] = "ninety"
    frame.loc[9, "dx_b"] = "yes"
    frame.to_csv(tmp_path / "words.csv", index=False)
    with caplog.at_level(logging.WARNING):
        table = read_table(tmp_path / "words.csv")
    assert table.kinds["age"] == table.kinds["dx_b"] == "categorical"
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2, lines
    assert "'age' holds numbers except in 1 row(s) (row 7: 'ninety')" in lines[1] and "not continuous" in lines[1]
    assert "'dx_b' holds 0 and 1 except in 1 row(s) (row 9: 'yes')" in lines[0] and "not binary" in lines[0]


def test_a_repeated_or_empty_header_name_is_said_once(tmp_path, caplog):
    from ehrdiff.data.io import read_table

    (tmp_path / "dup.csv").write_text("a,a,,b\n1,0,5,1\n0,1,6,0\n")
    with caplog.at_level(logging.WARNING):
        table = read_table(tmp_path / "dup.csv")
    assert table.columns == ["a", "a.1", "Unnamed: 2", "b"]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1, lines
    assert "column 2 'a' as 'a.1'" in lines[0] and "column 3 (no name) as 'Unnamed: 2'" in lines[0]


def test_rows_longer_than_the_header_are_refused_not_shifted(tmp_path, capsys):
    (tmp_path / "long.csv").write_text("a,b\n1,0,7\n0,1,8\n1,1,9\n")   # pandas made column 1 the index
    code = main(["-q", "train", str(tmp_path / "long.csv"), "-o", str(tmp_path / "run"), *TINY])
    one_line_error(capsys, code, "long.csv", "more fields than the header")


def test_numbers_spanning_more_than_a_float_are_refused_or_left_out(tables, capsys):
    frame = patients().astype({"age": float})
    frame.loc[0, "age"], frame.loc[1, "age"] = 1e308, -1e308      # finite, but their difference is not
    frame.to_csv(tables / "huge.csv", index=False)
    code = main(["-q", "train", str(tables / "huge.csv"), "-o", str(tables / "run"), *TINY])
    one_line_error(capsys, code, "huge.csv", "column 'age' spans from -1e+308 (row 1) to 1e+308 (row 0)")
    frame = patients(10, seed=1).astype({"age": float})
    frame.loc[3, "age"] = 1e300                                  # far outside the training range: left out
    frame.to_csv(tables / "far.csv", index=False)
    assert main(evaluate_args(tables, "--synthetic", f"s={tables / 'far.csv'}", "--no-references")) == 0
    metrics = json.loads((tables / "report" / "metrics.json").read_text())["datasets"]["s"]
    assert any("'age' row 3 holds 1e+300, too far outside the training range" in w for w in metrics["warnings"])


# ---- problem 7: one line, not a traceback, for crafted files -----------------------------------------------------


@pytest.mark.parametrize("stored", [["binary"], "binary", 3, {"dx_a": ["binary"]}, "{not json"])
@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
def test_stored_kinds_of_the_wrong_shape_are_one_line(tmp_path, capsys, stored, suffix):
    frame = patients()
    path = tmp_path / f"crafted{suffix}"
    text = stored if stored == "{not json" else json.dumps(stored)
    if suffix == ".parquet":
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table.replace_schema_metadata({b"ehrdiff.kinds": text.encode()}), path)
    else:
        np.savez(path, data=frame.to_numpy(float), columns=np.array(frame.columns, dtype=str), kinds=np.array(text))
    before = path.read_bytes()
    code = main(["-q", "train", str(path), "-o", str(tmp_path / "run"), *TINY])
    one_line_error(capsys, code, path.name, "must be a JSON object of column name -> kind")
    assert path.read_bytes() == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("archive", ["zip", "junk"])
def test_cinc2012_on_the_wrong_archive_is_one_line(tmp_path, capsys, archive):
    path = tmp_path / ("set-a.zip" if archive == "zip" else "set-a.tar.gz")
    if archive == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("set-a/132539.txt", "Time,Parameter,Value\n00:00,RecordID,132539\n")
    else:
        path.write_bytes(np.random.default_rng(0).bytes(600))
    code = main(["prepare", "cinc2012", "--records", str(path), "--outcomes", str(FIXTURES / "cinc2012/Outcomes-a.txt"),
                 "-o", str(tmp_path / "out")])
    one_line_error(capsys, code, path.name, "not a tar or tar.gz archive")


@pytest.mark.parametrize("argv", [["train"], ["sample", "RUN", "-o", "x.csv"], ["evaluate", "--train", "t.csv"],
                                  ["--no-such-flag"], ["sample", "RUN", "-n", "5", "-o", "x.csv", "--seed", "ten"]])
def test_usage_mistakes_are_one_line_for_every_command(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("ehrdiff: error: ") and err.count("\n") == 1, err


def test_a_message_with_line_breaks_is_printed_on_one_line(monkeypatch, capsys):
    from ehrdiff.cli import evaluate as evaluate_command
    from ehrdiff.errors import DataError

    def fails(args):
        raise DataError("first\n- second\n- third")

    monkeypatch.setattr(evaluate_command, "run", fails)
    code = main(["evaluate", "--train", "t", "--test", "h", "-o", "r"])
    assert capsys.readouterr().err == "ehrdiff: error: first - second - third\n" and code == 1
