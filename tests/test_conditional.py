"""Conditional EHRDiff: classifier-free guidance, class balance, save / load, CLI and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from ehrdiff.cli import main
from ehrdiff.models.ehrdiff.conditioning import ConditionSpec, class_counts, drop_labels, parse_balance
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError, EhrdiffError
from ehrdiff.models import load_model
from ehrdiff.models.ehrdiff import EHRDiff, build_denoiser
from ehrdiff.models.ehrdiff import make_config

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores

SMALL = dict(steps=400, batch_size=128, hidden_dims=(96, 96), embedding_features=16, embedding_width=32,
             warmup_steps=20, lr=2e-3, seed=1)
N_CODES = 18


def class_data(n_rows: int = 900, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Three groups a/b/c with very different code prevalences: group g has codes 6g..6g+5 at 0.6-0.8 and every
    other code at 0.04. Returns the table (codes + categorical "group") and the (3, codes) true prevalences."""
    rng = np.random.default_rng(seed)
    groups = np.array(["a", "b", "c"])[rng.integers(0, 3, n_rows)]
    prevalence = np.full((3, N_CODES), 0.04)
    for g in range(3):
        prevalence[g, 6 * g:6 * g + 6] = np.linspace(0.6, 0.8, 6)
    index = np.searchsorted(["a", "b", "c"], groups)
    codes = (rng.random((n_rows, N_CODES)) < prevalence[index]).astype(int)
    frame = pd.DataFrame(codes, columns=[f"code{j}" for j in range(N_CODES)])
    frame.insert(5, "group", groups)
    return frame, prevalence


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    frame, truth = class_data()
    conditional = EHRDiff("cpu-fast", condition="group", **SMALL).fit(frame, progress=False)
    unconditional = EHRDiff("cpu-fast", **SMALL).fit(frame.drop(columns="group"), progress=False)
    return frame, truth, conditional, unconditional


def prevalences(table: Table) -> np.ndarray:
    return table.frame[[f"code{j}" for j in range(N_CODES)]].to_numpy(dtype=float).mean(axis=0)


def test_conditional_samples_match_their_class(trained):
    frame, _, conditional, unconditional = trained
    plain = prevalences(unconditional.sample_table(600, seed=3))
    for group in "abc":
        real = frame[frame["group"] == group][[f"code{j}" for j in range(N_CODES)]].to_numpy(float).mean(axis=0)
        for w in (0.0, 1.0):
            sample = conditional.sample_table(300, seed=4, condition=group, guidance=w)
            assert set(sample.frame["group"]) == {group}
            err_cond = np.abs(prevalences(sample) - real).mean()
            err_plain = np.abs(plain - real).mean()
            # unconditional rows mix the three groups: their error is about 0.2; conditional ones are close (guidance
            # w > 0 sharpens the class on purpose, pushing its codes past their real rates: only the relative check)
            if w == 0:
                assert err_cond < 0.08, (group, w, err_cond)
            assert err_cond < 0.4 * err_plain, (group, w, err_cond, err_plain)


def test_whole_dataset_keeps_the_training_balance_or_a_chosen_one(trained):
    frame, _, conditional, _ = trained
    sample = conditional.sample_table(200, seed=0)
    assert sample.columns == list(frame.columns) and sample.kinds["group"] == "categorical"
    counts = frame["group"].value_counts()
    expected = class_counts(200, conditional.condition_)
    assert dict(sample.frame["group"].value_counts()) == dict(zip("abc", expected))
    assert abs(expected - 200 * counts[["a", "b", "c"]].to_numpy() / len(frame)).max() < 1
    chosen = conditional.sample_table(100, seed=0, balance={"a": 0.5, "c": 0.5})
    assert dict(chosen.frame["group"].value_counts()) == {"a": 50, "c": 50}
    # rows of different classes are interleaved, not one block per class
    assert chosen.frame["group"].iloc[:50].nunique() == 2
    # each class's rows keep their class: a-rows have a's codes far more often than c's
    a_rows = chosen.frame[chosen.frame["group"] == "a"]
    assert a_rows[[f"code{j}" for j in range(6)]].to_numpy().mean() > 0.4
    assert a_rows[[f"code{j}" for j in range(12, 18)]].to_numpy().mean() < 0.2


def test_same_seed_same_rows_and_save_load(trained, tmp_path):
    _, _, conditional, _ = trained
    first = conditional.sample_table(50, seed=7, condition="b", guidance=0.5)
    assert first.frame.equals(conditional.sample(50, seed=7, condition="b", guidance=0.5))
    assert not first.frame.equals(conditional.sample(50, seed=8, condition="b", guidance=0.5))
    conditional.save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["condition"]["column"] == "group" and saved["condition"]["classes"] == ["a", "b", "c"]
    loaded = load_model(tmp_path / "run")
    assert loaded.condition_ == conditional.condition_
    assert loaded.sample(50, seed=7, condition="b", guidance=0.5).equals(first.frame)
    assert loaded.sample(30, seed=1).equals(conditional.sample(30, seed=1))


def test_class_counts_and_balance_parsing():
    spec = ConditionSpec("label", "label", "int64", 0, [0, 1], [90, 10])
    assert class_counts(10, spec).tolist() == [9, 1]
    assert class_counts(7, spec).tolist() == [6, 1]                   # 6.3 / 0.7: largest remainder
    assert class_counts(5, spec, condition="1").tolist() == [0, 5]
    assert class_counts(5, spec, balance={"0": 1, "1": 1}).tolist() == [3, 2]
    assert parse_balance("0=0.5, 1=0.5") == {"0": 0.5, "1": 0.5}
    for bad in ("0.5", "0=x", "=1"):
        with pytest.raises(EhrdiffError, match="--balance expects"):
            parse_balance(bad)
    with pytest.raises(EhrdiffError, match="never seen in training"):
        class_counts(5, spec, balance={"2": 1})
    with pytest.raises(EhrdiffError, match="add up to 0"):
        class_counts(5, spec, balance={"0": 0})


def test_label_dropout_rate_follows_the_normal_draws():
    z = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(200_000, dtype=torch.long)
    dropped = drop_labels(labels, z, 3, 0.1)
    assert set(dropped.unique().tolist()) == {0, 3}
    assert float((dropped == 3).float().mean()) == pytest.approx(0.1, abs=0.003)


def test_a_fresh_conditional_network_equals_the_unconditional_one():
    """The class table starts at zero: before training, conditioning changes nothing (a safe start)."""
    cfg = make_config("cpu-fast", hidden_dims=(16,), embedding_features=8, embedding_width=8)
    plain, cond = build_denoiser(cfg, 5), build_denoiser(cfg, 5, n_classes=2)
    x, sigma = torch.rand(4, 5), torch.full((4, 1), 0.5)
    with torch.no_grad():
        torch.testing.assert_close(cond(x, sigma), plain(x, sigma))


def test_bad_requests_get_one_clear_line(trained):
    frame, _, conditional, unconditional = trained
    with pytest.raises(EhrdiffError, match=r"condition group='z' was never seen in training \(known values: a, b, c"):
        conditional.sample(5, condition="z")
    with pytest.raises(EhrdiffError, match="guidance given, but this model was trained without a condition"):
        unconditional.sample(5, guidance=1.0)
    with pytest.raises(EhrdiffError, match="condition given"):
        unconditional.sample(5, condition="a")
    with pytest.raises(EhrdiffError, match="guidance must be a number >= 0"):
        conditional.sample(5, condition="a", guidance=-1)
    with pytest.raises(EhrdiffError, match="either a condition or a balance"):
        conditional.sample(5, condition="a", balance={"a": 1})
    tiny = dict(steps=2, batch_size=16, hidden_dims=(8,), embedding_features=8, embedding_width=8)
    with pytest.raises(DataError, match="condition column 'outcome' is not in the data"):
        EHRDiff("cpu-fast", condition="outcome", **tiny).fit(frame, progress=False)
    with pytest.raises(DataError, match="condition column 'age' is continuous"):
        EHRDiff("cpu-fast", condition="age", **tiny).fit(frame.assign(age=np.linspace(20, 90, len(frame))),
                                                         progress=False)
    with pytest.raises(DataError, match="only one value"):
        EHRDiff("cpu-fast", condition="group", **tiny).fit(frame.assign(group="a"), progress=False)
    with pytest.raises(EhrdiffError, match="condition_dropout"):
        EHRDiff("cpu-fast", condition="group", condition_dropout=1.5)


def mixed_table(n_rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """CinC-like: an id, continuous vitals with gaps, a categorical ICU type, a binary label that shifts them."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n_rows) < 0.3).astype(int)
    heart = rng.normal(80 + 25 * label, 8)
    heart[rng.random(n_rows) < 0.1] = np.nan
    return pd.DataFrame({"record_id": np.arange(100, 100 + n_rows), "Age": rng.normal(60, 10, n_rows).round(),
                         "HR_mean": heart, "ICUType": rng.choice(["MICU", "SICU", "CCU"], n_rows),
                         "label": label})


def test_cli_conditional_train_and_sample_on_a_mixed_table(tmp_path, capsys):
    data = tmp_path / "mixed.csv"
    mixed_table().to_csv(data, index=False)
    run = tmp_path / "run"
    assert main(["-q", "train", str(data), "-o", str(run), "--preset", "cpu-fast", "--steps", "500",
                 "--batch-size", "64", "--set", "hidden_dims=[64,64]", "--condition", "label"]) == 0
    out = tmp_path / "ones.csv"
    assert main(["-q", "sample", str(run), "-n", "80", "-o", str(out), "--condition", "label=1",
                 "--guidance", "1"]) == 0
    ones = pd.read_csv(out)
    assert list(ones.columns) == ["record_id", "Age", "HR_mean", "ICUType", "label"]
    assert set(ones["label"]) == {1} and set(ones["ICUType"]) <= {"MICU", "SICU", "CCU"}
    zeros_path = tmp_path / "zeros.csv"
    assert main(["-q", "sample", str(run), "-n", "80", "-o", str(zeros_path), "--condition", "label=0"]) == 0
    zeros = pd.read_csv(zeros_path)
    # the label moves the heart rate by 25 in the real data: the classes' samples keep most of that gap
    assert ones["HR_mean"].mean() - zeros["HR_mean"].mean() > 12
    balanced = tmp_path / "balanced.csv"
    assert main(["-q", "sample", str(run), "-n", "40", "-o", str(balanced), "--balance", "0=0.5,1=0.5"]) == 0
    assert pd.read_csv(balanced)["label"].value_counts().to_dict() == {0: 20, 1: 20}
    capsys.readouterr()

    for args, message in [
        (["--condition", "label=7"], "condition label='7' was never seen in training"),
        (["--condition", "ICUType=MICU"], "conditioned on 'label', not 'ICUType'"),
        (["--condition", "label"], "--condition expects COL=VALUE"),
        (["--balance", "0=x"], "--balance expects VALUE=SHARE"),
    ]:
        assert main(["-q", "sample", str(run), "-n", "5", "-o", str(tmp_path / "x.csv"), *args]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err

    plain = tmp_path / "plain"
    assert main(["-q", "train", str(data), "-o", str(plain), "--preset", "cpu-fast", "--steps", "2",
                 "--set", "hidden_dims=[8]"]) == 0
    capsys.readouterr()
    assert main(["-q", "sample", str(plain), "-n", "5", "-o", str(tmp_path / "y.csv"), "--guidance", "2"]) == 1
    assert "trained without a condition" in capsys.readouterr().err
    assert main(["-q", "train", str(data), "-o", str(tmp_path / "r2"), "--condition", "HR_mean", "--steps", "2",
                 "--preset", "cpu-fast"]) == 1
    assert "condition column 'HR_mean' is continuous" in capsys.readouterr().err
    assert main(["-q", "train", str(data), "-o", str(tmp_path / "r3"), "--model", "medgan",
                 "--condition", "label"]) == 1
    assert "unknown medgan setting 'condition'" in capsys.readouterr().err


def test_cli_error_exit_code_in_a_real_process(tmp_path):
    data = tmp_path / "mixed.csv"
    mixed_table(50).to_csv(data, index=False)
    cli = [sys.executable, "-c", "import sys; from ehrdiff.cli import main; sys.exit(main())"]
    done = subprocess.run([*cli, "-q", "train", str(data), "-o", str(tmp_path / "r"), "--condition", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("ehrdiff: error: condition column 'nope' is not in the data")
    assert done.stderr.count("\n") == 1
