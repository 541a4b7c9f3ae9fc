"""Panels of missing indicators (diffusion/panels.py): variables measured together are modelled as one leader's
indicator and the members' rare disagreements with it, exactly invertible, kept through model.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ehrdiff.data import Table
from ehrdiff.diffusion.bernoulli import BernoulliDenoiser, BernoulliEDMLoss
from ehrdiff.data.encoding import TableEncoder
from ehrdiff.diffusion.panels import declared_panels, disagreement_shares, find_panels, panels_from_names, xor_panels
from ehrdiff.errors import DataError, ModelFileError
from ehrdiff.models.ehrdiff.calibrate import _set_missing_share
from ehrdiff.privacy.declared import read_declarations
from ehrdiff.models.ehrdiff import EHRDiff

from conftest import edit_model_json

pytestmark = pytest.mark.usefixtures("one_thread")


def flips(column: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(len(column)) < share, 1 - column, column)


def indicator_matrix(n: int = 4000, seed: int = 0) -> np.ndarray:
    """Columns: a value, then indicators a (40% set), b = a with 1% flipped, c (50%), d = c with 2% flipped,
    e = a with 20% flipped (too loose to follow a), f constant 0, g set in 0.2% of rows and h in 2% (they agree
    in 98% of the rows but are never set together: no panel)."""
    rng = np.random.default_rng(seed)
    a = (rng.random(n) < 0.4).astype(float)
    c = (rng.random(n) < 0.5).astype(float)
    g = (rng.random(n) < 0.002).astype(float)
    h = np.where(g == 1, 0.0, (rng.random(n) < 0.02).astype(float))
    return np.column_stack([rng.normal(size=n), a, flips(a, 0.01, rng), c, flips(c, 0.02, rng),
                            flips(a, 0.20, rng), np.zeros(n), g, h])


def test_panels_pair_indicators_that_nearly_always_agree():
    matrix = indicator_matrix()
    members, leaders = find_panels(matrix, np.arange(1, 9))
    assert members.tolist() == [2, 4] and leaders.tolist() == [1, 3]
    assert np.mean(matrix[:, 7] != matrix[:, 8]) < 0.03          # nearly always both absent, yet no panel
    assert find_panels(matrix, np.arange(1, 9), max_disagreement=0.0)[0].size == 0


def test_xor_is_its_own_inverse_in_numpy_and_torch():
    matrix = indicator_matrix()
    members, leaders = np.array([2, 4]), np.array([1, 3])
    model_space = xor_panels(matrix, members, leaders)
    # a member becomes its rare disagreement with the leader; everything else is untouched
    assert model_space[:, 2].mean() == pytest.approx(np.mean(matrix[:, 2] != matrix[:, 1]))
    assert model_space[:, 2].mean() < 0.02 and model_space[:, 4].mean() < 0.03
    np.testing.assert_array_equal(np.delete(model_space, [2, 4], axis=1), np.delete(matrix, [2, 4], axis=1))
    np.testing.assert_array_equal(xor_panels(model_space, members, leaders), matrix)
    tensor = xor_panels(torch.from_numpy(matrix), torch.from_numpy(members), torch.from_numpy(leaders))
    np.testing.assert_array_equal(tensor.numpy(), model_space)
    assert xor_panels(matrix, members[:0], leaders[:0]) is not matrix


def test_the_loss_masks_values_by_the_indicators_as_they_are():
    """Row 1: the leader (column 1) and the member (column 2) both say missing, so the member's value (column 0)
    is left out of the squared error although the member's model-space bit (their XOR) is 0."""

    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, c_noise_values, scale=None):
            return torch.zeros_like(x) + 0 * self.weight

    binary = np.array([False, True, True])
    denoiser = BernoulliDenoiser(Zero(), 0.14, binary)
    x = torch.tensor([[0.5, 0.0, 0.0], [0.5, 1.0, 1.0]])
    z, n = torch.zeros(2, 1), torch.zeros(2, 3)
    missing = (torch.tensor([0]), torch.tensor([2]))
    panels = (torch.tensor([2]), torch.tensor([1]))
    tied = BernoulliEDMLoss(0.14, missing=missing, panels=panels)(denoiser, x, z, n).detach()
    untied = BernoulliEDMLoss(0.14, missing=missing)(denoiser, x, z, n).detach()
    plain = BernoulliEDMLoss(0.14)(denoiser, x, z, n).detach()
    assert float(tied[0]) == pytest.approx(float(untied[0])) and float(tied[0]) == pytest.approx(float(plain[0]))
    assert float(tied[1]) < float(plain[1])      # the value is masked, as without panels
    # row 1's member is 0 in the model's space: the loss sees x = (., 1, 0), not (., 1, 1)
    assert float(tied[1]) != pytest.approx(float(untied[1]))


def panel_table(n: int = 1200, seed: int = 0) -> Table:
    """Two lab tests of one panel (ast missing with alt in all but 1% of rows) and a lab of its own pattern."""
    rng = np.random.default_rng(seed)
    alt_missing = rng.random(n) < 0.5
    ast_missing = flips(alt_missing.astype(int), 0.01, rng).astype(bool)
    frame = pd.DataFrame({"alt": np.where(alt_missing, np.nan, rng.lognormal(3, 1, n)),
                          "ast": np.where(ast_missing, np.nan, rng.lognormal(3, 1, n)),
                          "lab": np.where(rng.random(n) < 0.5, np.nan, rng.normal(7.4, 0.1, n))})
    return Table.from_frame(frame, {c: "continuous" for c in frame.columns})


TINY = dict(steps=2, batch_size=64, hidden_dims=(16,), embedding_features=8, embedding_width=8)


def test_a_barely_trained_model_keeps_the_panel_and_saves_it(tmp_path):
    """Two steps leave the model near its starting point, the indicators' training prevalences: without panels
    alt and ast are drawn apart in about half the rows, with them in about the real 1%."""
    table = panel_table()
    real = np.mean(table.frame["alt"].isna() != table.frame["ast"].isna())
    parted = {}
    for indicators in ("shared", "panels"):
        # without row selection, which would also pick rows that keep the panel (test_selection.py)
        model = EHRDiff("default", missing_indicators=indicators, row_selection="none", **TINY).fit(table,
                                                                                                      progress=False)
        synthetic = model.sample(2000, seed=0)
        parted[indicators] = np.mean(synthetic["alt"].isna() != synthetic["ast"].isna())
    assert parted["shared"] > 0.3 and parted["panels"] < real + 0.03
    assert model.panels_[0].size == 1
    model.save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["missing_panels"] == [["ast__missing", "alt__missing"]]
    again = EHRDiff.load(tmp_path / "run")
    pd.testing.assert_frame_equal(again.sample(300, seed=1), model.sample(300, seed=1))


def test_a_crafted_panel_list_is_refused(tmp_path):
    model = EHRDiff("default", missing_indicators="panels", **TINY).fit(panel_table(), progress=False)
    model.save(tmp_path / "run")
    # the leader after its member
    edit_model_json(tmp_path / "run", lambda m: m.update(missing_panels=[["alt__missing", "ast__missing"]]))
    with pytest.raises(ModelFileError, match="missing_panels"):
        EHRDiff.load(tmp_path / "run")
    columns, indicators = ["a", "a__missing", "b", "b__missing"], np.array([1, 3])
    with pytest.raises(ValueError):
        panels_from_names(columns, indicators, [["b__missing", "a"]])
    assert panels_from_names(columns, indicators, [["b__missing", "a__missing"]])[0].tolist() == [3]


def test_declared_panels_tie_the_indicators_the_columns_use():
    """Five summaries of one variable share its first's indicator: a panel of two variables' summaries ties those
    two indicators, once; a column never missing has none and leaves the panel."""
    n, rng = 400, np.random.default_rng(0)
    gone = rng.random(n) < 0.3
    also = flips(gone.astype(int), 0.02, rng).astype(bool)        # sys: missing with dias in 98% of the rows
    frame = pd.DataFrame({"always": rng.normal(size=n),
                          **{f"dias_{s}": np.where(gone, np.nan, rng.normal(size=n)) for s in ("first", "max")},
                          **{f"sys_{s}": np.where(also, np.nan, rng.normal(size=n)) for s in ("first", "max")}})
    encoder = TableEncoder("normal", share_missing=True).fit(Table.from_frame(frame, {}))
    index = encoder.indicator_index()
    members, leaders = declared_panels(encoder, {"line": ["sys_max", "dias_first", "dias_max", "always"]})
    assert members.tolist() == [index["sys_first"]] and leaders.tolist() == [index["dias_first"]]
    assert declared_panels(encoder, {"line": ["dias_first", "dias_max"]})[0].size == 0     # one indicator
    with pytest.raises(ValueError, match="panels 'a' and 'b'"):
        declared_panels(encoder, {"a": ["dias_first", "sys_first"], "b": ["dias_max", "always"]})
    shares = disagreement_shares(np.array([0.5, 0.3, 0.2, 0.25]), np.array([2]), np.array([1]))
    assert shares.tolist() == pytest.approx([0.5, 0.3, 0.1, 0.25])


def test_a_private_model_ties_the_declared_panel_and_no_other(tmp_path):
    """Under DP panels are not found in the rows: without a declaration (and without the measuring tree, which reads
    the missing pattern from noisy pair counts) alt and ast are drawn apart in about half the rows (the two missing
    shares, independently); declared as one panel, in few more than the real 1%; undeclared but with the tree, too."""
    table = panel_table(2000)
    real = np.mean(table.frame["alt"].isna() != table.frame["ast"].isna())
    ranges = {"alt": {"low": 0, "high": 1e4}, "ast": {"low": 0, "high": 1e4}, "lab": {"low": 6, "high": 9}}
    bounds, plain = tmp_path / "bounds.json", tmp_path / "ranges.json"
    plain.write_text(json.dumps(ranges))
    bounds.write_text(json.dumps({**ranges, "alt": {**ranges["alt"], "panel": "liver"},
                                  "ast": {**ranges["ast"], "panel": "liver"}}))
    parted, models = {}, {}
    for declared in (False, True):
        settings = dict(dp=True, dp_epsilon=8.0, dp_bounds=str(bounds if declared else plain),
                        dp_tree_share=0.1 if declared else 0.0, **{**TINY, "steps": 5, "batch_size": 400})
        models[declared] = EHRDiff("cpu-fast", missing_indicators="panels", **settings).fit(table, progress=False)
        synthetic = models[declared].sample(3000, seed=0)
        parted[declared] = np.mean(synthetic["alt"].isna() != synthetic["ast"].isna())
    assert models[False].panels_[0].size == 0 and models[True].panels_[0].size == 1
    assert parted[False] > 0.3 and parted[True] < real + 0.05
    tree = EHRDiff("cpu-fast", missing_indicators="panels", dp=True, dp_epsilon=8.0, dp_bounds=str(plain),
                   **{**TINY, "steps": 5, "batch_size": 400}).fit(table, progress=False)
    synthetic = tree.sample(3000, seed=0)
    assert tree.panels_[0].size == 0 and np.mean(synthetic["alt"].isna() != synthetic["ast"].isna()) < real + 0.05
    models[True].save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["missing_panels"] == [["ast__missing", "alt__missing"]]
    assert models[True].privacy_["dp_release"]["declared"]["panels"] == {"liver": ["alt", "ast"]}
    bounds.write_text(json.dumps({"alt": {"panel": "liver"}, "ast": {"low": 0, "high": 1e4, "panel": "liver"}}))
    declared = read_declarations(bounds, table)       # a panel alone declares no range (estimated privately)
    assert declared.panels == {"liver": ["alt", "ast"]} and sorted(declared.bounds) == ["ast"]
    bounds.write_text(json.dumps({"alt": {"panel": "liver"}, "ast": {"panel": "liver"}, "x": {"panel": "other"}}))
    with pytest.raises(DataError, match="column 'x' is not in the training data"):
        EHRDiff("cpu-fast", dp=True, dp_epsilon=8.0, dp_bounds=str(bounds), **TINY).fit(table, progress=False)


def test_calibrating_a_members_missing_share_first_makes_it_agree_with_its_leader():
    rng = np.random.default_rng(0)
    leader = (rng.random(1000) < 0.5).astype(float)
    for share in (0.3, 0.7):
        member = (rng.random(1000) < 0.5).astype(float)
        before, flipped = np.mean(member != leader), abs(share - member.mean())
        _set_missing_share(member, np.ones(1000, bool), share, rng, leader)
        assert member.mean() == pytest.approx(share)
        # every flip went to a row where it made the two agree (there were enough such rows)
        assert np.mean(member != leader) == pytest.approx(before - flipped)


def counted_panel(n: int = 3000, seed: int = 0) -> Table:
    """Two lab tests of one panel with their counts (count rules): measured together, the same number of times in
    95% of the rows that measured both."""
    from ehrdiff.data.rules import parse_rules

    rng = np.random.default_rng(seed)
    measured = rng.random(n) < 0.6
    alt_count = np.where(measured, rng.integers(1, 9, n), 0)
    ast_count = np.where(rng.random(n) < 0.95, alt_count, np.where(measured, rng.integers(1, 9, n), 0))
    frame = pd.DataFrame({"alt": np.where(measured, rng.lognormal(3, 1, n), np.nan), "alt_count": alt_count,
                          "ast": np.where(measured, rng.lognormal(3, 1, n), np.nan), "ast_count": ast_count})
    rules = parse_rules([{"kind": "count", "column": "alt_count", "group": ["alt"]},
                         {"kind": "count", "column": "ast_count", "group": ["ast"]}])
    return Table.from_frame(frame, {c: "continuous" for c in frame.columns}).with_rules(rules)


def test_a_private_model_gives_a_declared_panels_counts_their_noisy_share_of_ties(tmp_path):
    """The counts of a panel's variables are equal in most real rows (one order, one device); a private model
    releases, per member, the noisy share of rows measuring both with equal counts (its own mechanism) and sampling
    gives that share of them the leader's count; undeclared, the network draws the counts apart."""
    from ehrdiff.diffusion.panels import panel_counts
    from ehrdiff.models import load_model

    table = counted_panel()
    both = (table.frame["alt_count"] > 0) & (table.frame["ast_count"] > 0)
    real = float((table.frame["alt_count"] == table.frame["ast_count"])[both].mean())
    assert panel_counts({"liver": ["alt", "ast"]}, table.rules) == [("alt_count", "ast_count")]
    assert panel_counts({"liver": ["ast", "alt"]}, table.rules) == [("ast_count", "alt_count")]
    ranges = {"alt": {"low": 0, "high": 1e4}, "ast": {"low": 0, "high": 1e4},
              "alt_count": {"low": 0, "high": 50}, "ast_count": {"low": 0, "high": 50}}
    equal, models = {}, {}
    for declared in (False, True):
        bounds = tmp_path / f"bounds{declared}.json"
        panel = {"alt": {**ranges["alt"], "panel": "liver"}, "ast": {**ranges["ast"], "panel": "liver"}}
        bounds.write_text(json.dumps({**ranges, **(panel if declared else {})}))
        models[declared] = EHRDiff("cpu-fast", dp=True, dp_epsilon=8.0, dp_bounds=str(bounds),
                                   **{**TINY, "steps": 5, "batch_size": 400}).fit(table, progress=False)
        out = models[declared].sample(3000, seed=0)
        counted = (out["alt_count"] > 0) & (out["ast_count"] > 0)
        equal[declared] = float((out["alt_count"] == out["ast_count"])[counted].mean())
    names = lambda m: [x["name"] for x in m.privacy_["dp_release"]["mechanisms"]]       # noqa: E731
    assert models[False].count_ties_ is None and "panel count ties" not in names(models[False])
    assert "panel count ties" in names(models[True])
    leader, share = models[True].count_ties_["ast_count"]
    assert leader == "alt_count" and share == pytest.approx(real, abs=0.05)
    assert equal[False] < 0.5 and equal[True] == pytest.approx(share, abs=0.03)
    models[True].save(tmp_path / "run")
    assert load_model(tmp_path / "run").count_ties_ == models[True].count_ties_
    edit_model_json(tmp_path / "run", lambda m: m["count_ties"]["ast_count"].__setitem__(1, 1.5))
    with pytest.raises(ModelFileError, match="count_ties"):
        load_model(tmp_path / "run")
