"""Bad and unusual input: clear messages, the affected metrics marked, everything else still computed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import block_binary_data
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError
from ehrdiff.evaluation import catalog, evaluate

FAST = dict(references=False, threads=1, figures=False, discriminator_iterations=20)


def split(n_rows=600, seed=0):
    frame = block_binary_data(n_rows, 4, 5, seed)
    frame["label"] = (frame.iloc[:, :5].sum(axis=1) > 2).astype(int)
    cut = n_rows * 2 // 3
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def test_missing_and_non_binary_columns_are_left_out_with_a_warning():
    train, test = split()
    synthetic = train.sample(frac=1.0, random_state=1).reset_index(drop=True).astype(float)
    synthetic.loc[7, "b1_c2"] = 0.73
    synthetic = synthetic.drop(columns=["b0_c0"])
    synthetic["extra"] = 1
    data = evaluate(train, test, {"s": synthetic}, **FAST).metrics["s"]
    text = " ".join(data["warnings"])
    assert "'b0_c0'" in text and "missing" in text
    assert "'b1_c2' row 7 holds 0.73" in text
    assert "'extra'" in text and "ignored" in text
    # the metrics are computed on the 18 usable code columns
    assert data["prevalence_pearson"] > 0.9 and data["mia_auroc"] is not None
    assert all(data[k] is not None for k in catalog.REQUIRED)


def test_label_missing_from_synthetic_or_test_skips_only_utility():
    train, test = split()
    no_label = {"s": train.drop(columns=["label"])}
    data = evaluate(train, test, no_label, **FAST).metrics["s"]
    assert data["tstr_auroc"] is None and "no label column 'label'" in data["skipped"]["tstr_auroc"]
    assert data["trtr_auroc"] is not None and data["prevalence_pearson"] is not None
    data = evaluate(train, test.drop(columns=["label"]), {"s": train}, **FAST).metrics["s"]
    assert data["tstr_auroc"] is None and data["trtr_auroc"] is None
    assert "label" in data["skipped"]["trtr_auroc"] and any("label" in w for w in data["warnings"])
    assert data["mia_auroc"] is not None


def test_label_values_read_back_as_floats_still_match():
    train, test = split()
    synthetic = train.astype(float)
    assert evaluate(train, test, {"s": synthetic}, **FAST).metrics["s"]["tstr_auroc"] is not None


def test_too_few_rows_marks_the_metrics_that_need_more():
    train, test = split()
    data = evaluate(train, test, {"tiny": train.iloc[:3]}, **FAST).metrics["tiny"]
    assert data["discriminator_auroc"] is None and "needs at least" in data["skipped"]["discriminator_auroc"]
    assert data["tstr_auroc"] is None and "rows" in data["skipped"]["tstr_auroc"]
    assert data["prevalence_pearson"] is not None and data["exact_copy_rate"] == 1.0
    assert data["n_rows"] == 3


def test_a_dataset_with_no_usable_column_is_reported_not_fatal():
    train, test = split()
    probabilities = train.drop(columns=["label"]).astype(float) * 0.9 + 0.05
    report = evaluate(train, test, {"raw": probabilities, "ok": train}, **FAST)
    raw = report.metrics["raw"]
    assert all(raw[k] is None for k in catalog.REQUIRED)
    assert "no column can be compared" in raw["skipped"]["mia_auroc"]
    assert report.metrics["ok"]["mia_auroc"] is not None


def test_mixed_table_continuous_and_categorical_metrics():
    rng = np.random.default_rng(0)
    n = 500
    age = rng.normal(60, 10, n)
    frame = pd.DataFrame({"age": age, "lab": age * 0.5 + rng.normal(0, 3, n),
                          "ward": rng.choice(["a", "b", "c"], n), "flag": (rng.random(n) < 0.3).astype(int),
                          "label": (age > 60).astype(int)})
    frame.loc[rng.random(n) < 0.1, "lab"] = np.nan
    train, test = frame.iloc[:350].reset_index(drop=True), frame.iloc[350:].reset_index(drop=True)
    shuffled = train.copy()
    shuffled["lab"] = rng.permutation(shuffled["lab"].to_numpy())   # breaks the age-lab correlation
    report = evaluate(train, test, {"copy": train, "shuffled": shuffled}, **FAST)
    copy, bad = report.metrics["copy"], report.metrics["shuffled"]
    assert copy["continuous_ks_mean"] == 0 and copy["categorical_tvd_mean"] == 0
    assert copy["continuous_correlation_distance"] == pytest.approx(0, abs=1e-9)
    assert bad["continuous_correlation_distance"] > 0.5
    assert bad["continuous_ks_mean"] == 0  # the same values, permuted
    assert copy["exact_copy_rate"] == 1.0 and copy["mia_auroc"] > 0.9
    assert copy["dcr_train_median"] == 0 and bad["dcr_train_median"] > 0  # Euclidean, not integer


def test_unseen_category_and_text_in_numeric_column_are_left_out():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.random(300), "ward": rng.choice(["a", "b"], 300),
                          "code": (rng.random(300) < 0.3).astype(int)})
    train, test = frame.iloc[:200].reset_index(drop=True), frame.iloc[200:].reset_index(drop=True)
    synthetic = train.copy()
    synthetic["ward"] = synthetic["ward"].where(synthetic.index != 4, "zzz")
    synthetic["x"] = synthetic["x"].astype(object).where(synthetic.index != 2, "high")
    data = evaluate(train, test, {"s": synthetic}, label=None, **FAST).metrics["s"]
    text = " ".join(data["warnings"])
    assert "'ward' row 4 has value 'zzz'" in text and "'x' row 2 holds 'high', not a number" in text
    # one code column left: a correlation over one prevalence is undefined, the count is not
    assert data["prevalence_pearson"] is None and "at least 2" in data["skipped"]["prevalence_pearson"]
    assert data["codes_never_generated"] == 0
    assert "tstr_auroc" not in data  # no label: no utility keys at all


def test_user_errors_raise_one_line_and_empty_data_is_marked():
    train, test = split()
    with pytest.raises(DataError, match="unknown evaluation option"):
        evaluate(train, test, {"s": train}, dimwise_kodes=3)
    with pytest.raises(DataError, match="must not|reference:"):
        evaluate(train, test, {"reference:x": train})
    empty = evaluate(train, test, {"s": train.iloc[:0]}, **FAST).metrics["s"]
    assert empty["mia_auroc"] is None and "no rows" in empty["skipped"]["mia_auroc"]
    with pytest.raises(DataError, match="nothing to evaluate"):
        evaluate(train, test, {}, references=False)


def test_tables_with_ids_and_kinds_are_accepted():
    train, test = split()
    train.insert(0, "patient_nbr", np.arange(len(train)))
    test.insert(0, "patient_nbr", np.arange(len(test)) + 5_000)
    table = Table.from_frame(train, kinds={"patient_nbr": "id"})
    synthetic = Table.from_frame(train.assign(patient_nbr=np.arange(len(train)) + 10_000), kinds={"patient_nbr": "id"})
    data = evaluate(table, test, {"s": synthetic}, **FAST).metrics["s"]
    assert not data["warnings"] and data["exact_copy_rate"] == 1.0  # ids are ignored, not compared
