"""mst: MST (McKenna et al. 2021) behind the Generator interface, its whole release in the ledger and recomputed by
Opacus's RDP accountant from the saved parameters. Fitting needs mbi (the ``mst`` extra); without it the fitting
tests are skipped and the one-line error is checked."""

from __future__ import annotations

import builtins
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from ehrdiff.data.table import Table
from ehrdiff.errors import EhrdiffError
from ehrdiff.models import build_model, load_model
from ehrdiff.models.mst import select_tree

pytest.importorskip("opacus")


def linked(n: int = 3000, seed: int = 0) -> Table:
    """Codes where c1 and c2 are the same column, c3 is c1 or noise, the rest independent; a label, a category and a
    continuous column."""
    rng = np.random.default_rng(seed)
    c1 = (rng.random(n) < 0.3).astype(int)
    frame = pd.DataFrame({
        "pid": np.arange(n), "c1": c1, "c2": c1, "c3": np.where(rng.random(n) < 0.8, c1, rng.random(n) < 0.5)
        .astype(int), "c4": (rng.random(n) < 0.2).astype(int), "c5": (rng.random(n) < 0.1).astype(int),
        "race": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
        "lab": np.where(rng.random(n) < 0.1, np.nan, rng.normal(5, 1, n)),
        "label": (rng.random(n) < 0.2).astype(int)})
    return Table.from_frame(frame, {"pid": "id", "label": "label", "race": "categorical"})


def test_selection_picks_the_strongest_pair_first():
    rng = np.random.default_rng(1)
    cells = np.column_stack([rng.integers(0, 2, 5000) for _ in range(4)])
    cells[:, 3] = cells[:, 1]                 # columns 1 and 3 are one variable
    measured = [(np.array([1]), np.array([cells[:, j].sum()]), 1.0) for j in range(4)]
    edges = select_tree(cells, [2] * 4, measured, 5000, e=1.0, rng=np.random.default_rng(0))
    assert edges[0] == (1, 3) and len(edges) == 3
    joined = {frozenset(e) for e in edges}
    assert len(joined) == 3                   # a spanning tree: no edge twice, every column reached
    assert set().union(*joined) == {0, 1, 2, 3}


def test_a_missing_mbi_is_one_line(monkeypatch):
    real_import = builtins.__import__

    def no_mbi(name, *args, **kwargs):
        if name == "mbi" or name.startswith("mbi."):
            raise ImportError("No module named 'mbi'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mbi)
    with pytest.raises(EhrdiffError, match=r"pip install 'ehrdiff\[mst\]'"):
        build_model("mst", {"dp_epsilon": 1.0}).fit(linked(300))


def test_bad_settings_are_refused():
    with pytest.raises(EhrdiffError, match="rdp"):
        build_model("mst", {"dp_epsilon": 1.0, "dp_accountant": "prv"})
    with pytest.raises(EhrdiffError, match="private model"):
        build_model("mst", {"dp": False})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    pytest.importorskip("mbi", reason="mst fitting needs mbi: pip install 'ehrdiff[mst]'")
    table = linked()
    model = build_model("mst", {"dp_epsilon": 10.0, "iters": 300}).fit(table)
    run = tmp_path_factory.mktemp("mst") / "run"
    model.save(run)
    return model, run, table


def test_the_total_is_what_opacus_composes_from_the_saved_parameters(fitted):
    from opacus.accountants import RDPAccountant

    _, run, _ = fitted
    saved = json.loads((run / "model.json").read_text())
    release = saved["dp_release"]
    names = [m["name"] for m in release["mechanisms"]]
    assert names == ["continuous bounds", "one-way marginals",
                     "pair selection (exponential mechanism, as its Renyi-equivalent Gaussian)", "two-way marginals"]
    columns = 8                               # 5 codes, race, lab, label: 7 tree edges selected and measured
    assert release["mechanisms"][2]["steps"] == columns - 1
    assert release["mechanisms"][3]["sensitivity"] == pytest.approx(np.sqrt(columns - 1))
    rdp = RDPAccountant()
    rdp.history = [(m["noise_multiplier"], m["sample_rate"], m["steps"]) for m in release["mechanisms"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        recomputed = rdp.get_epsilon(delta=release["accountant_delta"], alphas=release["rdp_orders"])
    assert saved["dp_epsilon"] == pytest.approx(recomputed, rel=1e-12)
    assert 9.9 < saved["dp_epsilon"] <= 10.0 and saved["dp_delta"] <= 1e-5
    # the three parts of MST get about a third of the zCDP budget each: rho = 1 / (2 z^2) for a Gaussian, and the
    # exponential mechanism's e^2 / 8 is entered as z = 2 / e
    rho = [1 / (2 * m["noise_multiplier"] ** 2) * m["steps"] for m in release["mechanisms"][1:]]
    assert rho[0] == pytest.approx(rho[1], rel=0.02) and rho[1] == pytest.approx(rho[2], rel=0.02)
    assert "data_fingerprint" not in saved


def test_samples_keep_the_linked_columns(fitted):
    model, run, table = fitted
    loaded = load_model(run)
    sample = loaded.sample(5000, seed=0)
    pd.testing.assert_frame_equal(sample, model.sample(5000, seed=0))
    assert (sample["c1"] == sample["c2"]).mean() > 0.95       # the tree kept what independent columns lose
    assert abs(sample["c1"].mean() - 0.3) < 0.03 and abs(sample["label"].mean() - 0.2) < 0.03
    assert set(sample["race"]) <= {"a", "b", "c"} and abs(sample["lab"].isna().mean() - 0.1) < 0.03
