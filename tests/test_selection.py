"""Row selection by a discriminator (models/ehrdiff/selection.py): the kept trees score rows exactly as the fitted
classifier does, the draw favours rows that look real, and the selector travels with the model folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from ehrdiff.errors import ModelFileError
from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.models.ehrdiff.selection import TreeEnsemble, select_rows, trees_of
from ehrdiff.models.persistence import METADATA_FILE

from conftest import edit_model_json

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_kept_trees_score_rows_as_the_classifier_does():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 6))
    X[rng.random(X.shape) < 0.1] = np.nan          # missing values take the side the classifier learned
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) > 0.3).astype(int)
    classifier = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y)
    trees = trees_of(classifier)
    fresh = rng.normal(size=(500, 6))
    fresh[rng.random(fresh.shape) < 0.1] = np.nan
    np.testing.assert_allclose(trees.log_odds(fresh), classifier.decision_function(fresh), rtol=1e-10, atol=1e-10)
    again = TreeEnsemble.from_tensors(trees.to_tensors(), width=6)
    np.testing.assert_array_equal(again.log_odds(fresh), trees.log_odds(fresh))


def test_malformed_trees_are_refused():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    trees = trees_of(HistGradientBoostingClassifier(max_iter=5).fit(X, (X[:, 0] > 0).astype(int)))
    with pytest.raises(ValueError, match="outside"):
        TreeEnsemble.from_tensors(trees.to_tensors(), width=0)        # splits on a feature the rows do not have
    inner = np.flatnonzero(~trees.leaf)[0]
    for name, value in (("left", len(trees.feature)), ("right", inner)):   # past the end; a loop onto itself
        tensors = trees.to_tensors()
        tensors[f"selector.{name}"][inner] = value
        with pytest.raises(ValueError, match="outside"):
            TreeEnsemble.from_tensors(tensors, width=3)
    tensors = trees.to_tensors()
    del tensors["selector.value"]
    with pytest.raises(ValueError, match="arrays"):
        TreeEnsemble.from_tensors(tensors, width=3)


def test_the_draw_keeps_rows_by_their_odds_of_being_real():
    log_odds = np.r_[np.full(500, -2.0), np.full(500, 2.0)]     # odds of being real e^2 and e^-2
    picks = select_rows(log_odds, 250, seed=0)
    assert len(picks) == 250 and len(np.unique(picks)) == 250 and np.all(np.diff(picks) > 0)
    assert np.mean(picks < 500) > 0.95
    np.testing.assert_array_equal(picks, select_rows(log_odds, 250, seed=0))
    assert not np.array_equal(picks, select_rows(log_odds, 250, seed=1))
    # equal odds: a uniform draw without replacement
    assert abs(np.mean(select_rows(np.zeros(1000), 500, seed=2) < 500) - 0.5) < 0.1


def linked_table(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Two values that move together (correlation 0.99), a third with missing values, and an outcome."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": a + 0.1 * rng.normal(size=n),
                         "c": np.where(rng.random(n) < 0.3, np.nan, rng.lognormal(1, 0.5, n)),
                         "label": (a + rng.normal(size=n) > 0).astype(int)})


SHORT = dict(steps=10, batch_size=128)


def test_selection_brings_a_barely_trained_models_rows_closer_to_real_ones(tmp_path):
    """After 10 steps the model has not learned that a and b move together; among four times as many rows the
    selector keeps those that do, so the sample's correlation is much nearer the training rows'."""
    table = linked_table()
    model = EHRDiff("default", **SHORT).fit(table, progress=False)
    assert model.selector_ is not None and 0.5 < model.selector_auroc_ <= 1.0
    real = table["a"].corr(table["b"])
    chosen = model.sample(1000, seed=0)
    model.set_sampling(row_selection="none")
    drawn = model.sample(1000, seed=0)
    gap_chosen, gap_drawn = abs(chosen["a"].corr(chosen["b"]) - real), abs(drawn["a"].corr(drawn["b"]) - real)
    assert gap_chosen < 0.5 * gap_drawn, (gap_chosen, gap_drawn)
    model.set_sampling(row_selection="discriminator")
    model.save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / METADATA_FILE).read_text())
    assert saved["row_selector"]["trees"] == len(model.selector_.roots)
    again = EHRDiff.load(tmp_path / "run")
    pd.testing.assert_frame_equal(again.sample(300, seed=1), model.sample(300, seed=1))


def test_no_selector_for_codes_conditions_few_rows_or_when_switched_off():
    table = linked_table()
    assert EHRDiff("default", row_selection="none", steps=2).fit(table, progress=False).selector_ is None
    assert EHRDiff("default", condition="label", steps=2).fit(table, progress=False).selector_ is None
    assert EHRDiff("default", steps=2).fit(linked_table(999), progress=False).selector_ is None    # too few rows
    codes = pd.DataFrame({"c1": [0, 1] * 600, "c2": [1, 1, 0] * 400, "age": np.arange(1200.0)})
    assert EHRDiff("default", steps=2).fit(codes, progress=False).selector_ is None     # count matching instead


def test_a_selector_claimed_without_its_trees_or_miscounted_is_refused(tmp_path):
    plain = EHRDiff("default", row_selection="none", steps=2).fit(linked_table(), progress=False)
    plain.save(tmp_path / "plain")
    edit_model_json(tmp_path / "plain", lambda m: m.update(row_selector={"trees": 3, "auroc": 0.7}))
    with pytest.raises(ModelFileError, match="row_selector"):
        EHRDiff.load(tmp_path / "plain")
    chosen = EHRDiff("default", steps=2).fit(linked_table(), progress=False)
    chosen.save(tmp_path / "chosen")
    EHRDiff.load(tmp_path / "chosen")
    edit_model_json(tmp_path / "chosen",
                    lambda m: m.update(row_selector={"trees": len(chosen.selector_.roots) + 1, "auroc": 0.7}))
    with pytest.raises(ModelFileError, match="row_selector"):
        EHRDiff.load(tmp_path / "chosen")
