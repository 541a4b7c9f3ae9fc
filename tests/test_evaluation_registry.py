"""Metric groups are registered: one function and its registration reach metrics.json, report.md and report.html."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import block_binary_data
from ehrdiff.evaluation import catalog, evaluate
from ehrdiff.evaluation.context import Comparison
from ehrdiff.evaluation.registry import REGISTRY, metric_group
from ehrdiff.evaluation.stats import SkipMetric

FAST = dict(references=False, threads=1, figures=False, discriminator_iterations=10)


@pytest.fixture
def registered():
    """Register groups for one test only (the registry is module state)."""
    before = set(REGISTRY)
    yield metric_group
    for name in set(REGISTRY) - before:
        del REGISTRY[name]


def share_of_nonzero(X) -> float:
    """Share of non-zero cells of a sparse or dense matrix."""
    return float(np.count_nonzero(X.toarray() if hasattr(X, "toarray") else X)) / (X.shape[0] * X.shape[1])


def test_a_registered_group_reaches_every_output(registered, tmp_path):
    @registered("test_sparsity", "fidelity", [("test_nonzero_share_diff", "0", "non-zero cells, synthetic - training")])
    def sparsity(c: Comparison) -> dict:
        return {"test_nonzero_share_diff": share_of_nonzero(c.X) - share_of_nonzero(c.real.train.X)}

    frame = block_binary_data(300, 3, 4, 0)
    train, test, synthetic = frame.iloc[:200], frame.iloc[200:], frame.iloc[100:250]
    evaluate(train, test, {"s": synthetic}, label=None, **FAST).save(tmp_path)

    data = json.loads((tmp_path / "metrics.json").read_text())["datasets"]["s"]
    expected = share_of_nonzero(synthetic.to_numpy()) - share_of_nonzero(train.to_numpy())
    assert data["test_nonzero_share_diff"] == pytest.approx(expected)
    assert list(data)[-3:] == ["test_nonzero_share_diff", "skipped", "warnings"]  # after the groups before it
    assert "| test_nonzero_share_diff | 0 |" in (tmp_path / "report.md").read_text()
    assert ">test_nonzero_share_diff<" in (tmp_path / "report.html").read_text()
    assert catalog.by_key()["test_nonzero_share_diff"].section == "fidelity"


def test_a_group_is_skipped_whole_or_left_out_where_it_does_not_apply(registered):
    @registered("test_unusable", "privacy", [("test_a", "-", "first"), ("test_b", "-", "second")])
    def unusable(c: Comparison) -> dict:
        raise SkipMetric("the input cannot be used")

    @registered("test_never", "privacy", [("test_c", "-", "third")], applies=lambda layout: False)
    def never(c: Comparison) -> dict:
        return {"test_c": 1.0}

    frame = block_binary_data(300, 3, 4, 1)
    data = evaluate(frame.iloc[:200], frame.iloc[200:], {"s": frame.iloc[:100]}, label=None, **FAST).metrics["s"]
    assert data["test_a"] is None and data["test_b"] is None
    assert data["skipped"]["test_a"] == data["skipped"]["test_b"] == "the input cannot be used"
    assert "test_c" not in data


def test_a_name_or_metric_key_is_registered_once(registered):
    with pytest.raises(ValueError, match="mia_auroc"):
        registered("test_again", "privacy", [("mia_auroc", "0.5", "the membership attack again")])
    with pytest.raises(ValueError, match="'aia'"):
        registered("aia", "privacy", [("test_d", "-", "a new key in an old group")])
