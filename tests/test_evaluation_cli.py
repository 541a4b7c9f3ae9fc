"""``ehrdiff evaluate`` end to end on small files, and its one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import block_binary_data
from ehrdiff.cli import main
from ehrdiff.cli.evaluate import parse_named, parse_scale
from ehrdiff.data.io import write_table
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    frame = block_binary_data(450, 3, 4, 0)
    frame["label"] = (frame.iloc[:, :4].sum(axis=1) > 1).astype(int)
    train, test = frame.iloc[:300].reset_index(drop=True), frame.iloc[300:].reset_index(drop=True)
    write_table(Table.from_frame(train), folder / "train.parquet")
    write_table(Table.from_frame(test), folder / "test.parquet")
    train.sample(frac=1.0, replace=True, random_state=0).to_csv(folder / "boot.csv", index=False)
    probabilities = train.astype(float)
    probabilities["b0_c0"] = 0.4  # not 0/1: that column is left out for this dataset
    probabilities.to_csv(folder / "probs.csv", index=False)
    for fraction in (0.5, 1.0):
        train.iloc[:int(300 * fraction)].sample(n=300, replace=True, random_state=2).to_csv(
            folder / f"run{fraction}.csv", index=False)
    return folder


def test_evaluate_writes_json_markdown_html_and_figures(files, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["-q", "evaluate", "--train", str(files / "train.parquet"), "--test", str(files / "test.parquet"),
                 "--synthetic", f"boot={files / 'boot.csv'}", f"probs={files / 'probs.csv'}",
                 "--scale", f"m:0.5={files / 'run0.5.csv'}", f"m:1={files / 'run1.0.csv'}",
                 "-o", str(out), "--threads", "1", "--dimwise-codes", "5"])
    assert code == 0
    data = json.loads((out / "metrics.json").read_text())["datasets"]
    assert {"boot", "probs", "m@0.5", "m@1", "reference:real-test"} <= set(data)
    assert data["boot"]["dimwise_prediction_codes"] == 5
    assert any("'b0_c0'" in w for w in data["probs"]["warnings"])
    assert (out / "report.md").read_text().startswith("# Synthetic data evaluation")
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert (out / "figures" / "training_size.png").exists()
    per_code = pd.read_csv(out / "dimwise_prediction.csv")
    assert list(per_code.columns) == ["dataset", "code", "auroc_real", "auroc_synthetic", "f1_real", "f1_synthetic"]
    assert len(per_code[per_code.dataset == "boot"]) == 5
    prevalence = pd.read_csv(out / "prevalence.csv")
    assert len(prevalence[prevalence.dataset == "boot"]) == 12  # 3 blocks x 4 codes
    printed = capsys.readouterr().out
    assert "boot" in printed and "mia_auroc" in printed and "wrote" in printed


def test_bad_requests_fail_with_one_line(files, tmp_path, capsys):
    base = ["evaluate", "--train", str(files / "train.parquet"), "--test", str(files / "test.parquet"),
            "-o", str(tmp_path / "out")]
    assert main(base + ["--synthetic", f"x={files / 'nope.csv'}"]) == 1
    assert "nope.csv: file not found" in capsys.readouterr().err
    assert main(base + ["--scale", f"m=0.5={files / 'boot.csv'}"]) == 1
    assert "NAME:FRACTION=FILE" in capsys.readouterr().err
    assert main(base + ["--synthetic", f"a={files / 'boot.csv'}", f"a={files / 'boot.csv'}"]) == 1
    assert "more than once" in capsys.readouterr().err
    assert main(base + ["--no-references"]) == 1
    assert "nothing to evaluate" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_argument_parsing():
    assert parse_named("ehrdiff=out/a=b.parquet") == ("ehrdiff", "out/a=b.parquet")
    assert parse_named("runs/synthetic.parquet") == ("synthetic", "runs/synthetic.parquet")
    assert parse_scale("my:model:0.25=x.csv") == ("my:model", 0.25, "x.csv")
    for bad in ("m:1.5=x.csv", "m:abc=x.csv", "m:0.5", ":0.5=x.csv"):
        with pytest.raises(DataError):
            parse_scale(bad)
