"""The whole private release of a private EHRDiff: the composed total recomputed by Opacus's accountants from the
saved parameters alone, and nothing in the model folder traceable to one training row without noise."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from ehrdiff.data.table import Table
from ehrdiff.models import load_model
from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.privacy.release import BINS, _grid_edges, bin_edges

pytest.importorskip("opacus")
pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores

TINY = dict(steps=8, batch_size=100, hidden_dims=(32, 32), embedding_features=8, embedding_width=16, seed=1,
            binary_head="bernoulli", codes_per_row="data", checkpoint_every=4)
PLANTED_AGE, PLANTED_LAB, PLANTED_WARD = 987_654.0, -54_321.5, "ward-of-one-patient"


def patients(n: int = 1500, planted: bool = True) -> Table:
    """Ordinary patients, and (``planted``) one extreme patient: an age and a lab value far outside everyone
    else's, a ward nobody else has and the only 1 in the code column ``rare``."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "age": rng.normal(60, 12, n).round(), "lab": np.where(rng.random(n) < 0.2, np.nan, rng.normal(4, 1, n)),
        "ward": rng.choice(["icu", "surgery", "medicine"], n, p=[0.5, 0.3, 0.2]),
        "c1": (rng.random(n) < 0.3).astype(int), "c2": (rng.random(n) < 0.1).astype(int),
        "rare": np.zeros(n, dtype=int), "label": (rng.random(n) < 0.25).astype(int)})
    if planted:
        frame.loc[0, ["age", "lab", "ward", "rare"]] = [PLANTED_AGE, PLANTED_LAB, PLANTED_WARD, 1]
    return Table.from_frame(frame, {"ward": "categorical", "label": "label"})


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("private")
    table = patients()
    # the noise of conftest's fixed seed: a rounded noisy count may equal the exact one by chance, which leaks
    # nothing, but the checks below that no count is exact would then fail at random
    model = EHRDiff("cpu-fast", dp=True, dp_epsilon=4.0, condition="label", **TINY).fit(
        table, checkpoint_dir=root / "run" / "checkpoints", progress=False)
    model.save(root / "run")
    return model, root / "run", table


def history(saved: dict) -> list[tuple[float, float, int]]:
    return [(m["noise_multiplier"], m["sample_rate"], m["steps"]) for m in saved["dp_release"]["mechanisms"]]


def test_the_total_is_what_opacus_composes_from_the_saved_parameters(private_run):
    from opacus.accountants import PRVAccountant, RDPAccountant

    _, run, _ = private_run
    saved = json.loads((run / "model.json").read_text())
    release = saved["dp_release"]
    names = [m["name"] for m in release["mechanisms"]]
    assert names == ["continuous bounds", "one-way marginals", "codes per row", "code pairs", "second moments",
                     "DP-SGD"]
    sgd = release["mechanisms"][-1]          # DP-SGD's entry is the saved DP-SGD parameters
    assert (sgd["noise_multiplier"], sgd["sample_rate"], sgd["steps"]) == \
        (saved["dp_noise_multiplier"], saved["dp_sample_rate"], saved["dp_steps"])
    assert sgd["sensitivity"] == saved["dp_max_grad_norm"]
    rdp = RDPAccountant()
    rdp.history = history(saved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert saved["dp_epsilon"] == pytest.approx(
            rdp.get_epsilon(delta=release["accountant_delta"], alphas=release["rdp_orders"]), rel=1e-12)
    assert saved["dp_epsilon"] <= 4.0 and saved["dp_epsilon"] > 3.9
    selection = sum(m["selection_delta"] for m in release["mechanisms"])
    assert saved["dp_delta"] == pytest.approx(release["accountant_delta"] + selection) and saved["dp_delta"] <= 1e-5
    for m in release["mechanisms"]:     # a share is what the mechanism spends alone, within the target
        assert m["epsilon_alone"] <= m["share"] * release["target_epsilon"] * 1.01 + 1e-9
        assert m["epsilon_alone"] <= release["target_epsilon"] * (1 + 1e-9)
    # the PRV accountant composes the same saved mechanisms; a run with --accountant prv states its total
    prv_model = EHRDiff("cpu-fast", dp=True, dp_epsilon=4.0, dp_accountant="prv",
                        **TINY).fit(patients(), progress=False)
    prv_saved = prv_model.privacy_
    prv = PRVAccountant()
    prv.history = history(prv_saved)
    assert prv_saved["dp_epsilon"] == pytest.approx(prv.get_epsilon(delta=prv_saved["dp_release"]["accountant_delta"]),
                                                    rel=1e-9)
    assert 3.9 < prv_saved["dp_epsilon"] <= 4.0


def test_the_model_folder_holds_nothing_traceable_to_the_planted_patient(private_run):
    model, run, table = private_run
    saved = json.loads((run / "model.json").read_text())
    assert "data_fingerprint" not in saved and saved["final_loss"] is None
    codings = {c["name"]: c for c in saved["encoder"]["columns"]}
    edges = set(_grid_edges().tolist())
    for name in ("age", "lab"):      # ranges on the public grid, far from the planted values
        assert codings[name]["low"] in edges and codings[name]["high"] in edges
        assert -1000 < codings[name]["low"] < codings[name]["high"] < 1000
        # scaled by levels of the noisy histogram (as normal quantiles: the preset's scaling): public bin edges of
        # the public range, fill at the median (level 0.5, z = 0)
        assert codings[name]["scaling"] == "normal" and codings[name]["fill"] == 0.0
        assert codings[name]["knots"] == bin_edges(codings[name]["low"], codings[name]["high"], "continuous").tolist()
        assert len(codings[name]["knot_low"]) == BINS + 1
    assert PLANTED_WARD not in codings["ward"]["categories"]
    # counts are noisy: none of them is the exact training count
    exact_rows = table.n_rows
    assert saved["n_rows"] != exact_rows
    exact_classes = np.bincount(table.frame["label"], minlength=2).tolist()
    assert saved["condition"]["counts"] != exact_classes
    codes = table.frame[["c1", "c2", "rare"]].sum(axis=1).to_numpy()
    exact_histogram = np.bincount(codes, minlength=4).tolist()
    assert saved["codes_per_row_histograms"]["all"][:4] != exact_histogram
    code_frame = table.frame[["c1", "c2", "rare"]].to_numpy()
    pairs = saved["code_pairs"]        # every code is among the commonest here; no count is the exact one (a 0:
    noisy_pairs = np.asarray(pairs["counts"])          # noise clipped at 0, post-processing)
    exact_pairs = code_frame[:, pairs["codes"]].T @ code_frame
    assert pairs["codes"] == [0, 1, 2] and not np.isclose(noisy_pairs, exact_pairs)[noisy_pairs > 0].any()
    assert saved["dp_sample_rate"] == pytest.approx(100 / saved["n_rows"])
    # no planted value anywhere in the folder's files (model.json, weights, checkpoints)
    texts = [str(int(PLANTED_AGE)), "987654", "54321", PLANTED_WARD]
    for path in run.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(t.encode() in content for t in texts), path
    sample = load_model(run).sample(2000, seed=0)
    assert sample["age"].max() < 1000 and sample["lab"].min() > -1000
    assert PLANTED_WARD not in set(sample["ward"])


def test_declared_ranges_replace_the_bounds_mechanism(tmp_path):
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps({"age": {"low": 0, "high": 120}, "lab": {"low": 0, "high": 30},
                                  "ward": {"categories": ["icu", "surgery", "medicine"]}}))
    model = EHRDiff("cpu-fast", dp=True, dp_epsilon=4.0, dp_bounds=str(bounds),
                    **TINY).fit(patients(), progress=False)
    codings = {c.name: c for c in model.encoder_.codings_}
    assert (codings["age"].low, codings["age"].high) == (0.0, 120.0)
    assert codings["ward"].categories == ["icu", "surgery", "medicine"]
    assert [m["name"] for m in model.privacy_["dp_release"]["mechanisms"]] == \
        ["one-way marginals", "codes per row", "code pairs", "second moments", "DP-SGD"]
    assert model.privacy_["dp_release"]["declared"]["bounds"] == ["age", "lab"]


def test_private_samples_meet_the_noisy_code_prevalences(private_run):
    from ehrdiff.diffusion.calibration import code_targets

    _, run, table = private_run
    saved = json.loads((run / "model.json").read_text())
    prevalence = saved["code_prevalence"]          # the noisy one-way marginals' shares, one per code column
    assert len(prevalence) == 3
    exact = table.frame[["c1", "c2", "rare"]].mean().tolist()
    assert prevalence != exact and prevalence == pytest.approx(exact, abs=0.05)
    codes = ["c1", "c2", "rare"]
    model = load_model(run)                        # code_prevalence "auto": a private model calibrates
    calibrated = model.sample(3000, seed=0)[codes].to_numpy()
    raw = load_model(run).set_sampling(code_prevalence="model").sample(3000, seed=0)[codes].to_numpy()
    assert calibrated.sum(axis=1).tolist() == raw.sum(axis=1).tolist()      # rows keep their numbers of codes
    assert calibrated.sum(axis=0).tolist() == code_targets(np.array(prevalence), int(raw.sum())).tolist()
    assert (calibrated != raw).any()


def test_missing_indicators_come_from_the_data_not_from_the_noise():
    """A plain integer column (a count) cannot hold a missing value: its schema says so, so it gets no missing
    indicator even where the noise puts mass in its missing cell; a float column without missing values gets none
    unless its noisy missing count clears 3 noise deviations; one with 30% missing keeps its indicator."""
    from ehrdiff.privacy.accounting import Ledger
    from ehrdiff.privacy.declared import Declarations
    from ehrdiff.privacy.release import MISSING_INDICATOR_SHARE, private_encoder

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"count": rng.integers(0, 5, 2000), "full": rng.normal(0, 1, 2000),
                          "lab": np.where(rng.random(2000) < 0.3, np.nan, 1.0)})
    table = Table.from_frame(frame)
    declared = Declarations(bounds={"count": (0.0, 10.0), "full": (-5.0, 5.0), "lab": (0.0, 2.0)})
    reached = 0
    for seed in range(6):
        release = private_encoder(table, Ledger(1.0, 1e-5), declared, 0.1, None, seed)
        codings = {c.name: c for c in release.encoder.codings_}
        assert not codings["count"].has_missing and not codings["full"].has_missing and codings["lab"].has_missing
        for name in ("count", "full"):
            counts = release.marginals[name].counts
            reached += counts[-1] > MISSING_INDICATOR_SHARE * counts.sum()
    assert reached          # the noise alone did clear the share threshold: the schema and the deviations decided


def test_a_private_model_gives_its_normal_scaled_columns_sigma_data_1():
    model = EHRDiff("cpu-fast", dp=True, dp_epsilon=4.0, **TINY).fit(patients(planted=False), progress=False)
    codings = [c for c in model.encoder_.codings_ if c.coding != "id"]
    starts = np.cumsum([0] + [c.width for c in codings])
    normal = [int(starts[i]) for i, c in enumerate(codings) if c.coding == "continuous"]
    assert [codings[i].scaling for i, c in enumerate(codings) if c.coding == "continuous"] == ["normal", "normal"]
    sd = model.denoiser_.column_sd.numpy()
    assert (sd[normal] == 1.0).all() and (np.delete(sd, normal) == model.config.sigma_data).all()


def test_a_declared_count_rule_is_kept_by_the_private_encoding(tmp_path):
    """A count's group shares one missing indicator and the count is encoded only where the group is present:
    the private model's decoded rows keep the rule before the sampler repairs anything (with an indicator per
    column the group's missingness comes from separate draws, and rows break it), the count stays an integer
    column, and the coding survives saving."""
    from ehrdiff.data.rules import Count

    rng = np.random.default_rng(5)
    n = 1500
    missing = rng.random(n) < 0.4
    first = np.where(missing, np.nan, rng.normal(80, 10, n))
    frame = pd.DataFrame({"hr_first": first, "hr_last": first + rng.normal(0, 5, n),
                          "hr_count": np.where(missing, 0, rng.integers(1, 12, n)),
                          "label": (rng.random(n) < 0.3).astype(int)})
    rule = Count("hr_count", ("hr_first", "hr_last"))
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps({"hr_first": {"low": 0, "high": 300}, "hr_last": {"low": 0, "high": 300},
                                  "hr_count": {"low": 0, "high": 200}}))
    settings = dict(TINY, dp=True, dp_epsilon=8.0, steps=20, dp_bounds=str(bounds))
    table = Table.from_frame(frame, {"label": "label"})
    model = EHRDiff("cpu-fast", **settings).fit(table.with_rules([rule]), progress=False)
    codings = {c.name: c for c in model.encoder_.codings_}
    assert codings["hr_last"].missing_with == codings["hr_count"].missing_with == "hr_first"
    assert codings["hr_count"].zero_when_missing and codings["hr_count"].width == 1
    model.save(tmp_path / "run")
    sampled = load_model(tmp_path / "run").sample_table(2000, seed=0).frame     # decoded, nothing repaired
    assert not rule.broken(sampled).any()
    assert sampled["hr_count"].dtype == np.int64 and 0.25 < (sampled["hr_count"] == 0).mean() < 0.55
    plain = EHRDiff("cpu-fast", **settings).fit(table, progress=False)          # no rule declared
    assert not any(c.missing_with for c in plain.encoder_.codings_)
    assert rule.broken(plain.sample_table(2000, seed=0).frame).any()


def test_a_private_conditional_model_calibrates_each_class_to_its_own_noisy_histogram(tmp_path):
    """With a condition whose classes are public (a 0/1 label), each continuous column gets one noisy histogram
    per class (each row is in one class: the same sensitivity), kept in model.json; each class's sampled rows
    follow their class's missing share and values, which a barely trained private network alone does not."""
    from ehrdiff.errors import ModelFileError

    from test_guarantees_models import edit_model_json

    rng = np.random.default_rng(8)
    n = 3000
    label = (rng.random(n) < 0.3).astype(int)
    lab = np.where(rng.random(n) < np.where(label == 1, 0.6, 0.1), np.nan, rng.normal(2 + 4 * label, 1))
    table = Table.from_frame(pd.DataFrame({"lab": lab, "code": (rng.random(n) < 0.2).astype(int), "label": label}),
                             {"label": "label"})
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps({"lab": {"low": -5, "high": 15}}))
    model = EHRDiff("cpu-fast", dp=True, dp_epsilon=8.0, dp_bounds=str(bounds), condition="label",
                    **dict(TINY, steps=10)).fit(table, progress=False)
    assert np.array(model.class_marginals_["lab"]).shape == (2, BINS + 1)
    model.save(tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    sampled = loaded.sample(4000, seed=0)
    assert sampled.equals(model.sample(4000, seed=0))
    by_class = {k: sampled.loc[sampled["label"] == k, "lab"] for k in (0, 1)}
    assert by_class[1].isna().mean() - by_class[0].isna().mean() > 0.4          # real: 0.6 against 0.1
    assert by_class[1].mean() - by_class[0].mean() > 3                          # real: 6 against 2
    raw = loaded.set_sampling(continuous_marginals="model").sample(4000, seed=0)
    assert abs(raw.loc[raw["label"] == 1, "lab"].mean() - raw.loc[raw["label"] == 0, "lab"].mean()) < 3
    edit_model_json(tmp_path / "run", lambda m: m["class_marginals"]["lab"].pop())        # one class short
    with pytest.raises(ModelFileError, match="class_marginals"):
        load_model(tmp_path / "run")


def test_a_declared_step_puts_sampled_values_on_the_recording_grid(tmp_path):
    """``"step": S`` in the bounds file: a continuous column recorded at a resolution (a whole-number score, tenths
    of mmol/L) comes out on that grid, inside the range, as the recorded values are; without it a private model
    spreads each value over its histogram bin. The steps are listed with the release's declarations; a step that
    is not a positive number no wider than the range, or one on a date column, is refused naming the file and the
    column."""
    from ehrdiff.errors import DataError

    rng = np.random.default_rng(4)
    n = 1500
    gcs = np.where(rng.random(n) < 0.2, np.nan, rng.integers(3, 16, n).astype(float))
    potassium = np.round(rng.normal(4.2, 0.5, n), 1)
    table = Table.from_frame(pd.DataFrame({"gcs": gcs, "k": potassium, "code": (rng.random(n) < 0.3).astype(int)}))

    def sampled(gcs_entry: dict, k_entry: dict):
        bounds = tmp_path / "bounds.json"
        bounds.write_text(json.dumps({"gcs": gcs_entry, "k": k_entry}))
        model = EHRDiff("cpu-fast", dp=True, dp_epsilon=8.0, dp_bounds=str(bounds), **TINY).fit(table, progress=False)
        return model, model.sample(2000, seed=0)

    model, declared = sampled({"low": 3, "high": 15, "step": 1}, {"low": 1, "high": 12, "step": 0.1})
    gcs_out, k_out = declared["gcs"].dropna(), declared["k"]
    assert (gcs_out == gcs_out.round()).all() and gcs_out.between(3, 15).all() and gcs_out.nunique() > 5
    assert set(k_out) <= {round(0.1 * i, 1) for i in range(10, 121)} and k_out.nunique() > 5   # 4.2, not 4.2000001
    assert model.privacy_["dp_release"]["declared"]["steps"] == {"gcs": 1.0, "k": 0.1}
    _, plain = sampled({"low": 3, "high": 15}, {"low": 1, "high": 12})
    assert (plain["gcs"].dropna() != plain["gcs"].dropna().round()).mean() > 0.5
    for step in ("1", 0, 20):
        with pytest.raises(DataError, match="'gcs'.*step"):
            sampled({"low": 3, "high": 15, "step": step}, {"low": 1, "high": 12})
    dated = Table.from_frame(pd.DataFrame({"seen": pd.date_range("2020-01-01", periods=50, freq="D")}))
    (tmp_path / "dates.json").write_text(json.dumps({"seen": {"low": "2019-01-01", "high": "2021-01-01",
                                                              "step": 1}}))
    with pytest.raises(DataError, match="'seen' is date"):
        EHRDiff("cpu-fast", dp=True, dp_epsilon=8.0, dp_bounds=str(tmp_path / "dates.json"),
                **TINY).fit(dated, progress=False)


def test_recording_grids_put_the_heaps_of_measurements_where_they_are(tmp_path, monkeypatch):
    """FiO2 is set at 1.0 or 0.5 in most stays and at any hundredth in the rest: a bin of the marginals spreads a
    heap over the values it holds (0.98, 0.99 and 1.0 alike). A column whose declared step makes at most
    GRID_CELLS values gets a noisy count of each ("recording grids", its own mechanism in the ledger, sensitivity
    sqrt(gridded columns)), and each class's histogram is split by them with its total kept."""
    import ehrdiff.privacy.release as release

    rng = np.random.default_rng(5)
    n = 3000
    label = (rng.random(n) < 0.3).astype(int)
    fio2 = np.where(rng.random(n) < 0.55, 1.0, np.where(rng.random(n) < 0.45, 0.5, rng.integers(21, 101, n) / 100))
    table = Table.from_frame(pd.DataFrame({"fio2": fio2, "hr": rng.normal(80, 10, n).round(),
                                           "label": label}), {"label": "label"})
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps({"fio2": {"low": 0.21, "high": 1, "step": 0.01},
                                  "hr": {"low": 0, "high": 300, "step": 1}}))

    def fit():
        return EHRDiff("cpu-fast", dp=True, dp_epsilon=8.0, dp_bounds=str(bounds), condition="label",
                       **TINY).fit(table, progress=False)

    model = fit()
    out = model.sample(3000, seed=0)["fio2"]
    assert abs((out == 1.0).mean() - (fio2 == 1.0).mean()) < 0.08
    assert abs((out == 0.5).mean() - (fio2 == 0.5).mean()) < 0.06
    grids = [m for m in model.privacy_["dp_release"]["mechanisms"] if m["name"] == "recording grids"]
    assert len(grids) == 1 and grids[0]["sensitivity"] == pytest.approx(1.0)     # hr's 301 values: no grid
    coding = next(c for c in model.encoder_.codings_ if c.name == "fio2")
    per_class = np.array(model.class_marginals_["fio2"])
    assert per_class.shape == (2, len(coding.knots)) and len(coding.knots) > BINS + 1
    hr = next(c for c in model.encoder_.codings_ if c.name == "hr")
    assert hr.knots == bin_edges(0.0, 300.0, "continuous").tolist()
    monkeypatch.setattr(release, "GRID_CELLS", 1)      # no grid: the heap at 1.0 shares its bin with 0.98 and 0.99
    plain = fit()
    assert "recording grids" not in [m["name"] for m in plain.privacy_["dp_release"]["mechanisms"]]
    assert (plain.sample(3000, seed=0)["fio2"] == 1.0).mean() < 0.4
    assert np.allclose(np.array(plain.class_marginals_["fio2"]).sum(axis=1), per_class.sum(axis=1))  # totals kept


def test_a_recording_grid_keeps_the_heaps_that_clear_the_noise_and_spreads_the_rest():
    """A heap (600 of 2,600 rows at 50) keeps its count; values of about 20 rows each, under the grid's noise,
    leave their bin's mass spread by width (noise alone would pile it on random values)."""
    from ehrdiff.privacy.accounting import Ledger
    from ehrdiff.privacy.declared import Declarations
    from ehrdiff.privacy.release import GRID_THRESHOLD, private_encoder

    rng = np.random.default_rng(6)
    values = np.r_[np.full(600, 50.0), rng.integers(0, 101, 2000).astype(float)]
    table = Table.from_frame(pd.DataFrame({"x": values}))
    declared = Declarations(bounds={"x": (0.0, 100.0)}, steps={"x": 1.0})
    release = private_encoder(table, Ledger(1.0, 1e-5), declared, 0.1, 0.85, 0, grid_share=0.1)
    grids = next(m for m in release.ledger.mechanisms if m.name == "recording grids")
    assert GRID_THRESHOLD * grids.noise_multiplier * grids.sensitivity > 3 * 2000 / 101    # the rest is under noise
    coding = release.encoder.codings_[0]
    knots, levels = np.array(coding.knots), np.array(coding.knot_low)
    heap = int(np.searchsorted(knots, 50.0, side="right") - 1)
    assert levels[heap + 1] - levels[heap] == pytest.approx(600 / 2600, abs=0.05)
    coarse = bin_edges(0.0, 100.0, "continuous")
    density = np.diff(levels) / np.diff(knots)
    in_bin = np.searchsorted(coarse, knots[:-1], side="right") - 1
    for b in np.unique(in_bin[np.arange(len(density)) != heap]):
        pieces = np.flatnonzero((in_bin == b) & (np.arange(len(density)) != heap))
        if b != in_bin[heap]:
            assert np.allclose(density[pieces], density[pieces[0]])       # spread by width within the bin


def test_a_heap_keeps_its_share_of_its_bin_beside_smaller_values():
    """A heap's share of its bin comes from the grid's counts as drawn: 600 rows at 50 and 120 at each other value
    of its bin (49-55), with many empty values around; lowering every count by one amount (norm-sub) took the
    smaller values towards 0 and gave the heap most of the bin."""
    from ehrdiff.privacy.accounting import Ledger
    from ehrdiff.privacy.declared import Declarations
    from ehrdiff.privacy.release import private_encoder

    values = np.r_[np.full(600, 50.0), np.repeat([49.0, 51.0, 52.0, 53.0, 54.0, 55.0], 120)]
    table = Table.from_frame(pd.DataFrame({"x": values}))
    declared = Declarations(bounds={"x": (0.0, 100.0)}, steps={"x": 1.0})
    coarse = bin_edges(0.0, 100.0, "continuous")
    low, high = coarse[np.searchsorted(coarse, 50.0) - 1], coarse[np.searchsorted(coarse, 50.0)]
    assert low < 49 and 55 < high < 56                           # the bin holds 49-55
    for seed in range(3):
        coding = private_encoder(table, Ledger(1.0, 1e-5), declared, 0.1, 0.85, seed, grid_share=0.1).encoder \
            .codings_[0]
        knots, levels = np.array(coding.knots), np.array(coding.knot_low)
        heap = int(np.searchsorted(knots, 50.0, side="right") - 1)
        in_bin = (knots[:-1] >= low - 1e-9) & (knots[1:] <= high + 1e-9)
        share = (levels[heap + 1] - levels[heap]) / np.diff(levels)[in_bin].sum()
        assert share == pytest.approx(600 / 1320, abs=0.08)


def stretch_of_values() -> np.ndarray:
    """True counts of a column's 32 bins (then missing): its values fill bins 10-15 of a wide declared range."""
    counts = np.zeros(BINS + 1)
    counts[10:16] = [100, 300, 500, 400, 200, 80]
    counts[-1] = 400
    return counts


def test_noise_in_the_empty_bins_of_a_wide_range_becomes_no_rows():
    """At a small epsilon the empty bins' noise, projected to non-negative counts, put a few per cent of a class's
    rows at values no patient has (a 110 cm adult, 12 l of urine); the column's support leaves them out."""
    from ehrdiff.privacy.release import _class_histograms, _norm_sub

    truth = np.stack([stretch_of_values(), stretch_of_values() / 4])
    outside = np.r_[np.arange(0, 7), np.arange(19, BINS)]     # three bins or more away from every value
    ours, plain = [], []
    for seed in range(10):
        noisy = truth + np.random.default_rng(seed).normal(0, 40, truth.shape)
        sizes = truth.sum(axis=1)
        for histograms, kept in ((_class_histograms(noisy, 40, sizes), ours),
                                 (np.stack([_norm_sub(h) for h in noisy]), plain)):
            kept.append(histograms[:, outside].sum() / histograms[:, :BINS].sum())
    assert np.mean(plain) > 0.08                  # what the noise did before
    assert np.mean(ours) < 0.02 and np.median(ours) < 1e-9


def test_a_tail_floor_puts_the_same_noise_deviations_back_in_every_cleared_bin_of_every_class():
    from ehrdiff.privacy.release import _class_histograms, _support

    truth = np.stack([stretch_of_values(), stretch_of_values() / 4])
    noisy = truth + np.random.default_rng(0).normal(0, 40, truth.shape)
    cleared = ~_support(noisy.sum(axis=0)[:BINS], 40 * np.sqrt(2))
    assert cleared.sum() >= 20                                       # most bins far from the values
    plain, floored = (_class_histograms(noisy, 40, truth.sum(axis=1), floor) for floor in (0.0, 0.2))
    added = floored - plain
    assert np.allclose(added[:, :BINS][:, cleared], 0.2 * 40) and np.allclose(plain[:, :BINS][:, cleared], 0)
    assert np.array_equal(added[:, :BINS][:, ~cleared], np.zeros((2, (~cleared).sum())))
    assert np.array_equal(added[:, BINS], [0, 0])                   # the missing values' cell is never cleared


def test_a_columns_support_keeps_a_heap_apart_from_its_values_and_every_bin_when_noise_hides_them():
    from ehrdiff.privacy.release import _support

    counts = stretch_of_values()[:BINS]
    counts[0] = 300                                  # a heap at 0 (no urine), apart from the rest
    rng = np.random.default_rng(3)
    keep = _support(counts + rng.normal(0, 40, BINS), 40)
    assert keep[0] and keep[11:15].all() and not keep[20:].any()
    faint = counts / 20                              # 100 values in all, noise 40 per bin: no stretch stands out
    assert _support(faint + rng.normal(0, 40, BINS), 40).all()


def test_a_small_class_is_shrunk_towards_the_pooled_shape_and_a_clear_difference_is_kept():
    from ehrdiff.privacy.release import _class_histograms, _norm_sub

    shape = stretch_of_values() / stretch_of_values().sum()
    truth = np.stack([3000 * shape, 300 * shape])             # the same shape, a class ten times smaller

    def error(histogram, true):
        return np.abs(histogram / histogram.sum() - true / true.sum()).sum()

    ours, plain = [], []
    for seed in range(10):
        noisy = truth + np.random.default_rng(seed).normal(0, 40, truth.shape)
        ours.append(error(_class_histograms(noisy, 40, truth.sum(axis=1))[1], truth[1]))
        plain.append(error(_norm_sub(noisy[1]), truth[1]))
    assert np.mean(ours) < 0.5 * np.mean(plain)
    higher = np.r_[np.roll(shape[:BINS], 3), shape[BINS]]        # the small class's values three bins higher
    apart = np.stack([3000 * shape, 300 * higher])
    noisy = apart + np.random.default_rng(0).normal(0, 2, apart.shape)
    for histogram, true in zip(_class_histograms(noisy, 2, apart.sum(axis=1)), apart):
        assert error(histogram, true) < 0.1        # the pooled shape would be 1.1 away for the small class


def test_the_gaussian_prior_is_edms_skip_when_sigma_is_the_identity():
    """Sigma (Sigma + s^2 I)^-1 x with Sigma = I is c_skip x at sigma_data 1, at one level and one level per row."""
    from ehrdiff.diffusion.gaussian_prior import GaussianSkip
    from ehrdiff.diffusion.preconditioning import c_skip

    skip = GaussianSkip([0, 2, 3], np.zeros((3, 2)), np.ones(3))
    x = torch.randn(5, 3)
    assert torch.allclose(skip(x, 0.7), x * c_skip(0.7, 1.0), atol=1e-6)
    sigma = torch.rand(5, 1) + 0.1
    assert torch.allclose(skip(x, sigma), x * c_skip(sigma, 1.0), atol=1e-6)


def correlated_table(n: int = 3000) -> Table:
    rng = np.random.default_rng(7)
    common = rng.normal(size=n)
    frame = pd.DataFrame({"a": 100 + 10 * common + rng.normal(0, 3, n), "b": 50 + 5 * common + rng.normal(0, 1.5, n),
                          "c": rng.normal(0, 1, n), "label": (rng.random(n) < 0.3).astype(int)})
    return Table.from_frame(frame, {"label": "label"})


def test_the_second_moments_give_a_private_model_the_relations_dp_sgd_does_not_learn(tmp_path):
    """Two columns that go together (Spearman 0.9) come out together from the prior, apart without it; the
    mechanism is in the ledger (sensitivity columns, the clip's square) and the prior survives save and load."""

    table = correlated_table()
    real = table.frame[["a", "b"]].corr("spearman").iloc[0, 1]

    def fit(**settings):
        return EHRDiff("cpu-fast", dp=True, dp_epsilon=10.0, condition="label", **TINY, **settings).fit(
            table, progress=False)

    model = fit()
    out = model.sample(3000, seed=0)
    assert real > 0.85 and out[["a", "b"]].corr("spearman").iloc[0, 1] > 0.6
    assert abs(out[["a", "c"]].corr("spearman").iloc[0, 1]) < 0.15
    mechanism = next(m for m in model.privacy_["dp_release"]["mechanisms"] if m["name"] == "second moments")
    assert mechanism["sensitivity"] == pytest.approx(3.0)          # three normal-scaled columns: clip^2 = 3
    model.save(tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    assert loaded.denoiser_.prior is not None
    assert loaded.sample(500, seed=3).equals(model.sample(500, seed=3))
    plain = fit(dp_prior_share=0.0)
    assert plain.denoiser_.prior is None
    assert "second moments" not in [m["name"] for m in plain.privacy_["dp_release"]["mechanisms"]]
    assert plain.sample(3000, seed=0)[["a", "b"]].corr("spearman").iloc[0, 1] < 0.3


def test_a_budget_too_small_for_the_prior_trains_without_it(caplog):
    """Where the second moments would leave DP-SGD no noise multiplier that keeps the total (the pinned private
    case: 60 rows, epsilon 5, 30 steps at rate 0.26), the prior is given up before anything of it is released: no
    mechanism, no buffers, a warning; the samples are those pinned before the prior existed."""
    import logging

    from fixtures.pinned_samples import cases, pinned_table

    _, settings, _ = cases()["private"]
    settings = dict(settings)
    with caplog.at_level(logging.WARNING):
        model = EHRDiff(settings.pop("preset"), **settings).fit(pinned_table(), progress=False)
    assert model.denoiser_.prior is None
    assert "second moments" not in [m["name"] for m in model.privacy_["dp_release"]["mechanisms"]]
    assert not any(k.startswith("prior.") for k in model.denoiser_.state_dict())
    assert "beside the second moments" in caplog.text and model.privacy_["dp_epsilon"] <= 5.0
