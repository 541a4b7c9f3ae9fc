"""The measuring tree of private models (models/ehrdiff/patterns.py): which variables a row measures together."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ehrdiff.data.table import Table
from ehrdiff.errors import ModelFileError
from ehrdiff.models import load_model
from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.models.ehrdiff.patterns import ROOT, draw_patterns, fit_tree, nearest_assignment

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores

TINY = dict(steps=8, batch_size=100, hidden_dims=(32, 32), embedding_features=8, embedding_width=16, seed=1,
            binary_head="bernoulli", codes_per_row="data", checkpoint_every=4)


def flags_and_labels(n: int = 20000):
    """Units a and b measured together (one without the other in 1% of rows), c on its own, d measured in 80% of
    class 1 and 20% of class 0."""
    rng = np.random.default_rng(3)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    a = rng.random(n) < 0.6
    b = np.where(rng.random(n) < 0.01, ~a, a)
    c = rng.random(n) < 0.5
    d = rng.random(n) < np.where(labels == 1, 0.8, 0.2)
    return np.column_stack([a, b, c, d]), labels


def exact_tree(flags, labels):
    rows = np.bincount(labels, minlength=2).astype(float)
    single = np.stack([flags[labels == k].sum(axis=0) for k in range(2)]).astype(float)
    pair = np.triu(flags.T.astype(float) @ flags.astype(float), 1)
    return fit_tree([["a"], ["b"], ["c"], ["d"]], rows, single, pair)


def test_a_chow_liu_tree_draws_the_units_measured_together_and_each_class_its_shares():
    flags, labels = flags_and_labels()
    tree = exact_tree(flags, labels)
    a, b, d = 0, 1, 3
    assert tree["parent"][b] == a or tree["parent"][a] == b          # the strongest link is in the tree
    assert tree["parent"][d] == ROOT                                  # d depends on the class alone
    drawn = draw_patterns(tree, labels, np.random.default_rng(0))
    assert np.mean(drawn[:, a] != drawn[:, b]) < 0.03                 # real: 0.01; independent draws: 0.48
    for k, share in ((0, 0.2), (1, 0.8)):
        assert drawn[labels == k, d].mean() == pytest.approx(share, abs=0.02)
    assert drawn[:, 2].mean() == pytest.approx(0.5, abs=0.02)


def test_the_class_keeps_its_share_of_a_unit_under_another_unit():
    """A unit whose tree parent is another unit still leans to its share in the row's class (the log-odds of the
    parent and of the class combined)."""
    rng = np.random.default_rng(5)
    n = 20000
    labels = (rng.random(n) < 0.5).astype(np.int64)
    a = rng.random(n) < np.where(labels == 1, 0.9, 0.3)
    b = np.where(rng.random(n) < 0.05, ~a, a)          # b follows a closely and so also the class
    flags = np.column_stack([a, b])
    rows = np.bincount(labels, minlength=2).astype(float)
    single = np.stack([flags[labels == k].sum(axis=0) for k in range(2)]).astype(float)
    tree = fit_tree([["a"], ["b"]], rows, single, np.triu(flags.T.astype(float) @ flags.astype(float), 1))
    drawn = draw_patterns(tree, labels, np.random.default_rng(1))
    for k in (0, 1):
        assert drawn[labels == k].mean(axis=0) == pytest.approx(flags[labels == k].mean(axis=0), abs=0.03)


def test_rows_take_the_drawn_patterns_nearest_their_own_each_once():
    rng = np.random.default_rng(0)
    own = rng.random((500, 6)) < 0.5
    drawn = own.copy()
    drawn[:50] = rng.random((50, 6)) < 0.5            # 450 rows' own patterns are drawn again
    taken = nearest_assignment(own, drawn)
    assert sorted(taken.tolist()) == list(range(500))
    differ = (own != drawn[taken]).sum(axis=1)
    assert (differ == 0).sum() >= 450
    assert differ.mean() < (own != drawn).sum(axis=1).mean()


def measured_table(n: int = 3000) -> Table:
    """Two labs ordered together (one without the other in 1% of rows; not declared as a panel), a third on its
    own, and a label."""
    rng = np.random.default_rng(11)
    ordered = rng.random(n) < 0.5
    apart = rng.random(n) < 0.01
    frame = pd.DataFrame({"lab1": np.where(ordered, rng.normal(4, 1, n), np.nan),
                          "lab2": np.where(ordered ^ apart, rng.normal(9, 2, n), np.nan),
                          "lab3": np.where(rng.random(n) < 0.5, rng.normal(1, 0.2, n), np.nan),
                          "label": (rng.random(n) < 0.3).astype(int)})
    return Table.from_frame(frame, {"label": "label"})


def test_a_private_model_measures_together_what_real_rows_measure_together(tmp_path):
    """The measured pairs' tree puts lab1 and lab2 in the same rows (DP-SGD alone draws them apart); the mechanism
    is in the ledger with its sensitivity, model.json keeps the tree, and a loaded model samples the same rows."""

    torch.set_num_threads(1)
    table = measured_table()

    def fit(**settings):
        return EHRDiff("cpu-fast", dp=True, dp_epsilon=10.0, condition="label", **TINY, **settings).fit(
            table, progress=False)

    def apart(frame) -> float:
        return float(np.mean(frame["lab1"].isna() != frame["lab2"].isna()))

    model = fit()
    mechanism = next(m for m in model.privacy_["dp_release"]["mechanisms"] if m["name"] == "measured pairs")
    assert mechanism["sensitivity"] == pytest.approx(np.sqrt(3))      # three units, three pairs
    out = model.sample(3000, seed=0)
    assert apart(table.frame) < 0.02 and apart(out) < 0.08
    assert out["lab3"].notna().mean() == pytest.approx(0.5, abs=0.05)
    model.save(tmp_path / "run")
    assert "measuring_tree" in json.loads((tmp_path / "run" / "model.json").read_text())
    assert load_model(tmp_path / "run").sample(500, seed=3).equals(model.sample(500, seed=3))
    plain = fit(dp_tree_share=0.0)
    assert plain.measuring_tree_ is None and apart(plain.sample(3000, seed=0)) > 0.2


def test_a_tampered_measuring_tree_is_refused(tmp_path):
    model = EHRDiff("cpu-fast", dp=True, dp_epsilon=10.0, **TINY).fit(measured_table(600), progress=False)
    model.save(tmp_path / "run")
    path = tmp_path / "run" / "model.json"
    saved = json.loads(path.read_text())
    tree = saved["measuring_tree"]
    first, second = tree["order"][:2]
    tree["parent"][first] = second                      # a parent drawn after its child
    path.write_text(json.dumps(saved))
    with pytest.raises(ModelFileError, match="measuring_tree"):
        load_model(tmp_path / "run")
