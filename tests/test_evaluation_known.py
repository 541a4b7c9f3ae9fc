"""Known answers on block-structured codes: real held-out rows score near ideal, copies of the training rows are
caught by every privacy metric, and independent columns keep the prevalences but lose the structure."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import block_binary_data
from ehrdiff.evaluation import evaluate


def labelled(n_rows: int, seed: int):
    frame = block_binary_data(n_rows, 8, 5, seed)
    noise = np.random.default_rng(seed + 100).normal(0, 1, n_rows)
    frame["label"] = ((frame.iloc[:, :5].sum(axis=1) + noise) > 2.5).astype(int)
    return frame


@pytest.fixture(scope="module")
def metrics():
    data = labelled(2400, 0)
    train, test = data.iloc[:1600].reset_index(drop=True), data.iloc[1600:].reset_index(drop=True)
    report = evaluate(train, test, {"copy": train.copy()}, seed=0, threads=1)
    return report.metrics


def test_real_test_rows_score_near_ideal(metrics):
    real = metrics["reference:real-test"]
    assert real["discriminator_auroc"] == pytest.approx(0.5, abs=0.08)
    assert real["discriminator_auroc_lr"] == pytest.approx(0.5, abs=0.08)
    assert real["mia_auroc"] == pytest.approx(0.5, abs=0.06)
    assert real["mia_accuracy"] < 0.58
    assert real["nnaa_train"] == pytest.approx(0.5, abs=0.06)
    assert real["nnaa_privacy_loss"] == pytest.approx(0, abs=0.06)
    assert real["dcr_ratio"] == pytest.approx(1, abs=0.1)
    assert real["exact_copy_rate"] == pytest.approx(real["exact_copy_rate_holdout"], abs=0.05)
    assert real["aia_f1_gap"] == pytest.approx(0, abs=0.08)
    assert real["prevalence_pearson"] > 0.9 and real["codes_never_generated"] == 0
    assert real["dimwise_prediction_auroc_gap"] < 0.05
    assert real["tstr_auroc"] == pytest.approx(real["trtr_auroc"], abs=0.03)
    assert real["label_tvd"] < 0.06


def test_copied_training_rows_fail_every_privacy_metric(metrics):
    copy = metrics["copy"]
    assert copy["mia_auroc"] > 0.9 and copy["mia_accuracy"] > 0.85
    assert copy["exact_copy_rate"] == 1.0
    assert copy["dcr_train_median"] == 0 and copy["dcr_ratio"] < 0.2
    # NNAA compares equal-size samples (800 of the 1600 training and synthetic rows), so about half of the sampled
    # training rows meet their copy: AA_train falls from 0.5 towards 0.25, AA_test stays near 0.5
    assert copy["nnaa_train"] < 0.35 and copy["nnaa_privacy_loss"] > 0.15
    assert copy["aia_f1_gap"] > 0.2
    # ... and are perfect on fidelity
    assert copy["prevalence_rmse"] == 0 and copy["correlation_distance"] == pytest.approx(0, abs=1e-9)
    assert copy["discriminator_auroc"] == pytest.approx(0.5, abs=0.05)


def test_independent_columns_keep_prevalence_but_lose_structure(metrics):
    independent, real = metrics["reference:independent"], metrics["reference:real-test"]
    assert independent["prevalence_pearson"] > 0.95 and independent["prevalence_rmse"] < 0.03
    assert independent["correlation_distance"] > 3 * real["correlation_distance"]
    assert independent["cooccurrence_distance"] > 2 * real["cooccurrence_distance"]
    assert independent["dimwise_prediction_auroc_gap"] > 0.2
    assert independent["dimwise_prediction_agreement"] < real["dimwise_prediction_agreement"] - 0.3
    assert independent["discriminator_auroc"] > 0.8
    # a linear model sees each column's rate but no interaction: the true rates fool it, the trees are not fooled
    assert independent["discriminator_auroc_lr"] < 0.6
    assert independent["tstr_auroc"] < real["tstr_auroc"] - 0.2
    # nothing is copied and nothing leaks
    assert independent["mia_auroc"] == pytest.approx(0.5, abs=0.06)


def test_resampled_training_rows_are_faithful_but_leak(metrics):
    resample = metrics["reference:train-resample"]
    assert resample["prevalence_pearson"] > 0.98 and resample["dimwise_prediction_auroc_gap"] < 0.03
    assert resample["exact_copy_rate"] == 1.0 and resample["mia_auroc"] > 0.7


def test_same_seed_same_metrics():
    data = labelled(500, 3)
    train, test = data.iloc[:300].reset_index(drop=True), data.iloc[300:].reset_index(drop=True)
    options = dict(references=False, seed=5, threads=1, figures=False)
    first = evaluate(train, test, {"s": test}, **options).metrics
    second = evaluate(train, test, {"s": test}, **options).metrics
    assert first == second
