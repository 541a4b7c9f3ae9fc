"""Bootstrap confidence intervals (``evaluate(..., bootstrap=B)``, ``ehrdiff evaluate --bootstrap B``): what the
intervals hold, that the vectorised resamples equal the metric recomputed on resampled rows, and the outputs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conftest import block_binary_data
from ehrdiff.cli import main
from ehrdiff.evaluation import evaluate, resampled, stats
from ehrdiff.evaluation.bootstrap import Draw, as_number, centred_interval
from ehrdiff.evaluation.config import EvaluationConfig
from ehrdiff.evaluation.context import Comparison
from ehrdiff.evaluation.inputs import prepare
from ehrdiff.evaluation.registry import REGISTRY, bootstrap_of, metric_group
from ehrdiff.evaluation.report import DatasetDetails
from ehrdiff.evaluation.resampled import rerun
from ehrdiff.evaluation.runner import Evaluation, evaluate_one

# every metric with a value gets an interval on this data, except these facts about the dataset
NO_INTERVAL = {"n_rows"}


def labelled(n_rows: int, seed: int) -> pd.DataFrame:
    frame = block_binary_data(n_rows, 6, 4, seed)
    noise = np.random.default_rng(seed + 100).normal(0, 1, n_rows)
    frame["label"] = ((frame.iloc[:, :4].sum(axis=1) + noise) > 2).astype(int)
    return frame


@pytest.fixture(scope="module")
def tables():
    data = labelled(1200, 0)
    synthetic = labelled(800, 5)
    synthetic["b5_c3"] = 0     # a code never generated: a constant column in the synthetic correlations
    return data.iloc[:800].reset_index(drop=True), data.iloc[800:].reset_index(drop=True), synthetic


@pytest.fixture(scope="module")
def report(tables):
    train, test, synthetic = tables
    return evaluate(train, test, {"model": synthetic}, seed=0, threads=1, bootstrap=40)


def test_every_metric_has_an_interval_that_holds_its_value(report):
    ci = report.to_dict()["ci"]
    assert ci["resamples"] == 40 and ci["confidence"] == 0.95
    for name, data in report.metrics.items():
        computed = {k for k, v in data.items() if k not in ("skipped", "warnings") and v is not None}
        assert set(ci["datasets"][name]) == computed - NO_INTERVAL, name
        for key, (low, high) in ci["datasets"][name].items():
            assert low <= data[key] <= high, (name, key)
    # the resampling varies what it should
    model = ci["datasets"]["model"]
    for key in ("prevalence_spearman", "discriminator_auroc", "dimwise_prediction_auroc_gap", "tstr_auroc",
                "mia_auroc", "nnaa_privacy_loss", "exact_copy_rate", "aia_f1_gap"):
        assert model[key][1] > model[key][0], key


def test_point_values_do_not_change_with_bootstrap(tables, report):
    train, test, synthetic = tables
    plain = evaluate(train, test, {"model": synthetic}, seed=0, threads=1)
    assert plain.metrics == report.metrics
    assert "ci" not in plain.to_dict()


def comparison(tables, resamples: int):
    """The synthetic set's comparison after every group has run on it, and a block of resamples of it."""
    train, test, synthetic = tables
    evaluation = Evaluation(train, test, "label", EvaluationConfig(threads=1), 0)
    prepared = prepare(synthetic, evaluation.layout, evaluation.codings, "synthetic")
    real = evaluation.real_data(evaluation.usable, evaluation.test.data, "test")
    c = Comparison(real, "model", prepared.data, None, DatasetDetails())
    evaluate_one(c)
    return c, Draw(c, range(resamples))


@pytest.mark.parametrize("group", ["prevalence", "codes_per_patient", "correlation", "cooccurrence", "copies"])
def test_vectorised_resamples_equal_the_metric_on_resampled_rows(tables, group):
    c, draw = comparison(tables, 12)
    fast = REGISTRY[group].bootstrap(c, draw)   # (some point values are float32 sums: agreement to 1e-6)
    for i in range(draw.size):
        rows = draw.indices(draw.synthetic, i)
        again = REGISTRY[group].compute(replace(c, synthetic=c.synthetic.rows(rows),
                                                       details=type(c.details)(), kept={}))
        for key, value in fast.items():
            if key != "exact_copy_rate_holdout":   # the yardstick resamples the held-out rows instead
                np.testing.assert_allclose(value[i], as_number(again[key]), rtol=1e-6, atol=1e-6, err_msg=key)


def test_model_metrics_resample_the_scored_rows_without_refitting(tables):
    c, draw = comparison(tables, 12)
    fast = resampled.tstr(c, draw)
    scores, y = c.kept["tstr"][:, 0], c.real.holdout.y
    for i in range(draw.size):
        rows = draw.indices(draw.holdout, i)
        assert fast["tstr_auroc"][i] == pytest.approx(stats.auroc(y[rows] == 1, scores[rows]), abs=1e-12)
        assert fast["tstr_auprc"][i] == pytest.approx(stats.average_precision(y[rows] == 1, scores[rows]), abs=1e-12)


def test_identical_real_and_synthetic_rows_give_a_binomial_spread():
    """Synthetic rows equal to the training rows: every copy-rate resample is exactly 1; the share of rows without
    codes is a binomial proportion, whose 90% interval is p +- 1.645 sqrt(p (1 - p) / n); the codes per row a mean."""
    rng = np.random.default_rng(3)
    n = 2000
    train = pd.DataFrame({"a": (rng.random(n) < 0.3).astype(int), "b": (rng.random(n) < 0.5).astype(int)})
    test = pd.DataFrame({"a": (rng.random(500) < 0.3).astype(int), "b": (rng.random(500) < 0.5).astype(int)})
    report = evaluate(train, test, {"copy": train.copy()}, label=None, references=False, seed=0, threads=1,
                      bootstrap=400, confidence=0.9)
    ci, values = report.intervals["copy"].ci, report.metrics["copy"]
    assert values["exact_copy_rate"] == 1.0 and ci["exact_copy_rate"] == [1.0, 1.0]
    empty = values["empty_row_rate"]
    low, high = ci["empty_row_rate"]
    assert low < empty < high
    assert (high - low) / 2 == pytest.approx(1.645 * np.sqrt(empty * (1 - empty) / n), rel=0.15)
    counts = train[["a", "b"]].sum(axis=1)
    low, high = ci["codes_per_patient_mean"]
    assert (high - low) / 2 == pytest.approx(1.645 * counts.std() / np.sqrt(n), rel=0.15)
    # the prevalence error is 0 at best and here: its interval starts there
    assert values["prevalence_rmse"] == 0.0 and ci["prevalence_rmse"][0] == 0.0 < ci["prevalence_rmse"][1]


def test_the_interval_is_the_resamples_spread_centred_on_the_value():
    noise = np.random.default_rng(0).normal(0, 0.01, 4000)
    quantiles = (0.025, 0.975)
    # resamples centred on the value: the plain percentile interval
    low, high = centred_interval(0.5, 0.5 + noise, quantiles)
    assert (low, high) == pytest.approx(tuple(np.quantile(0.5 + noise, quantiles)), abs=1e-3)
    # a distance that resampling makes larger (all resamples above the value): the same spread around the value
    low, high = centred_interval(0.05, 0.08 + noise, quantiles)
    assert (low, high) == pytest.approx((0.05 - 0.0196, 0.05 + 0.0196), abs=2e-3)
    # ... kept at or above 0 when the value and every resample are, and at or below 1 for values in [0, 1]
    assert centred_interval(0.0, 0.03 + np.abs(noise), quantiles)[0] == 0.0
    assert centred_interval(1.0, 0.97 - np.abs(noise), quantiles)[1] == 1.0
    assert centred_interval(-0.01, 0.02 + noise, quantiles)[0] < -0.01


def test_intervals_shrink_with_more_rows():
    widths = []
    for n_rows in (300, 2400):
        data = labelled(n_rows + n_rows // 2, 1)
        train, test = data.iloc[:n_rows].reset_index(drop=True), data.iloc[n_rows:].reset_index(drop=True)
        report = evaluate(train, test, {"model": labelled(n_rows, 9)}, seed=0, threads=1, bootstrap=60,
                          references=False)
        ci = report.intervals["model"].ci
        widths.append({k: ci[k][1] - ci[k][0] for k in ("prevalence_rmse", "codes_per_patient_mean", "tstr_auroc",
                                                        "mia_auroc", "exact_copy_rate", "discriminator_auroc")})
    for key, small in widths[0].items():
        assert widths[1][key] < 0.7 * small, key    # eight times the rows: about a third of the width


def test_the_report_files_show_the_intervals(tables, tmp_path):
    train, test, synthetic = tables
    for name, frame in (("train", train), ("test", test), ("synthetic", synthetic)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    out = tmp_path / "report"
    code = main(["-q", "evaluate", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                 "--synthetic", f"model={tmp_path / 'synthetic.csv'}", "--no-references", "--no-figures",
                 "--threads", "1", "--bootstrap", "30", "--confidence", "0.9", "-o", str(out)])
    assert code == 0
    data = json.loads((out / "metrics.json").read_text())
    low, high = data["ci"]["datasets"]["model"]["mia_auroc"]
    assert data["ci"]["confidence"] == 0.9 and low <= data["datasets"]["model"]["mia_auroc"] <= high
    assert "skipped" not in data["datasets"]["model"]["skipped"]   # the datasets' own maps are unchanged
    markdown = (out / "report.md").read_text()
    assert "90% bootstrap intervals from 30 resamples" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| mia_auroc |"))
    assert f"[{low:.4g}, {high:.4g}]" in row
    assert "## Confidence intervals: what is resampled" in markdown and "| membership |" in markdown
    page = (out / "report.html").read_text()
    assert f"[{low:.4g}, {high:.4g}]" in page and "what is resampled" in page


@pytest.mark.parametrize("flags, message", [
    (["--bootstrap", "0"], "--bootstrap"), (["--bootstrap", "-5"], "--bootstrap"),
    (["--bootstrap", "20", "--confidence", "1.5"], "--confidence"), (["--confidence", "0.9"], "--bootstrap")])
def test_bad_bootstrap_flags_are_refused_in_one_line(tables, tmp_path, capsys, flags, message):
    train, test, _ = tables
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    code = main(["-q", "evaluate", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                 *flags, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and message in err, err


def test_a_registered_group_gets_intervals_from_its_bootstrap_and_none_without():
    before = set(REGISTRY)
    try:
        @metric_group("test_share", "fidelity", [("test_nonzero_share", "-", "non-zero cells of the synthetic rows")])
        def share(c):
            return {"test_nonzero_share": c.X.count_nonzero() / (c.X.shape[0] * c.X.shape[1])}

        @metric_group("test_rows", "fidelity", [("test_row_count", "-", "synthetic rows")])
        def row_count(c):
            return {"test_row_count": float(c.X.shape[0])}

        bootstrap_of("test_share", resampled="synthetic rows")(lambda c, draw: rerun(share, c, draw))
        frame = block_binary_data(300, 3, 4, 0)
        report = evaluate(frame.iloc[:200], frame.iloc[200:], {"s": frame.iloc[50:250]}, label=None,
                          references=False, threads=1, figures=False, bootstrap=30)
    finally:
        for name in set(REGISTRY) - before:
            del REGISTRY[name]
    intervals = report.intervals["s"]
    low, high = intervals.ci["test_nonzero_share"]
    assert low < report.metrics["s"]["test_nonzero_share"] < high
    assert "test_row_count" not in intervals.ci
    assert intervals.missing["test_row_count"] == "metric group 'test_rows' has no bootstrap"
    assert "no interval for test_row_count" in report.to_markdown()
