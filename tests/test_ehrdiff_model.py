"""The EHRDiff generator: presets, what it learns, sampling, save / load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ehrdiff.data.table import KINDS_ATTR, Table
from ehrdiff.errors import DataError, EhrdiffError, ModelFileError
from ehrdiff.models import REGISTRY, load_model
from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.models.ehrdiff import PRESETS, make_config

from conftest import block_binary_data

DEFAULT_SAMPLING = {"codes_per_row": "data", "num_noise_levels": 16, "sigma_min": 0.1}   # sampling only
TINY = dict(steps=40, batch_size=32, hidden_dims=(32, 32), embedding_features=8, embedding_width=16)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores


# ---- presets ---------------------------------------------------------------------------------------------------
def test_paper_mimic_matches_the_paper():
    cfg = EHRDiff("paper-mimic").config
    assert (cfg.binary_head, cfg.final_draw, cfg.sampler) == ("gaussian", "round", "heun")
    assert (cfg.sigma_data, cfg.P_mean, cfg.P_std) == (0.14, -1.2, 1.2)
    assert (cfg.sigma_min, cfg.sigma_max, cfg.rho, cfg.num_noise_levels) == (0.02, 80.0, 7.0, 32)
    assert cfg.hidden_dims == (1024, 384, 384, 384, 1024)
    assert (cfg.embedding, cfg.embedding_features, cfg.embedding_width) == ("sinusoidal", None, 384)
    assert cfg.embedding_size(1782) == 1782                       # official: sinusoidal features = data width
    assert (cfg.lr, cfg.weight_decay, cfg.adam_betas, cfg.batch_size) == (3e-4, 0.0, (0.9, 0.999), 1024)
    assert (cfg.warmup_steps, cfg.epochs, cfg.steps, cfg.ema_decay) == (20_000, 5000, None, 0.999)


def test_default_is_the_paper_model_with_the_bernoulli_head_and_the_small_network():
    model = EHRDiff()
    assert model.preset == "default"
    changed = {k: v for k, v in model.config.to_dict().items() if v != make_config("paper-mimic").to_dict()[k]}
    assert changed == {"binary_head": "bernoulli", "final_draw": "sample", "min_codes": "data", **DEFAULT_SAMPLING,
                       "hidden_dims": [512, 256, 256, 512], "embedding_features": 64, "embedding_width": 128,
                       "lr": 1e-3, "continuous_scaling": "normal", "missing_values": "noise",
                       "categorical_head": "softmax", "missing_indicators": "panels", "row_selection": "discriminator"}
    # cpu-fast is the same model at batch 256 for a short run
    fast = {k: v for k, v in make_config("cpu-fast").to_dict().items() if v != model.config.to_dict()[k]}
    assert fast == {"batch_size": 256, "steps": 3000, "warmup_steps": 100, "checkpoint_every": 500,
                    "num_noise_levels": 32, "sigma_min": 0.02}


@pytest.mark.parametrize("name, sigma_data", [("paper-cinc", 0.03), ("paper-ecg", 0.003)])
def test_paper_cinc_and_ecg_presets(name, sigma_data):
    cfg = make_config(name)
    assert cfg.sigma_data == sigma_data
    assert cfg.hidden_dims == (512, 768, 1024, 768, 512)
    assert (cfg.embedding, cfg.embedding_features, cfg.embedding_width, cfg.batch_size) == ("fourier", 32, 128, 256)
    assert (cfg.P_mean, cfg.P_std, cfg.lr, cfg.warmup_steps, cfg.ema_decay) == (-1.2, 1.2, 3e-4, 20_000, 0.999)
    net = EHRDiff(name)
    assert set(PRESETS) == {"default", "paper-mimic", "paper-cinc", "paper-ecg", "cpu-fast"} and net.config == cfg


def test_overrides_and_their_errors():
    model = EHRDiff("cpu-fast", steps=7, lr=1e-4, hidden_dims=[8, 8])
    assert (model.config.steps, model.config.lr, model.config.hidden_dims) == (7, 1e-4, (8, 8))
    assert model.config.batch_size == 256                          # the rest of cpu-fast is kept
    with pytest.raises(EhrdiffError, match="unknown EHRDiff setting 'learning_rate'"):
        EHRDiff(learning_rate=1)
    with pytest.raises(EhrdiffError, match="unknown preset"):
        EHRDiff("paper-xyz")
    with pytest.raises(EhrdiffError, match="'steps' has the wrong type"):
        EHRDiff(steps="many")
    with pytest.raises(EhrdiffError, match="'lr' must be positive"):
        EHRDiff(lr=0)
    assert REGISTRY["ehrdiff"] is EHRDiff


# ---- learning --------------------------------------------------------------------------------------------------
def test_learns_prevalences_and_within_block_cooccurrence():
    """Binary data with correlated blocks of codes: EHRDiff (cpu-fast, shortened) must match the prevalences and
    reproduce the co-occurrence inside blocks far better than independent Bernoulli draws with the true prevalences."""
    n_blocks, size = 4, 6
    train = block_binary_data(2000, n_blocks, size, seed=0)
    X = train.to_numpy(float)
    model = EHRDiff("cpu-fast", steps=600, seed=0).fit(train, progress=False)
    synthetic = model.sample_table(2000, seed=1)
    assert list(synthetic.frame.columns) == list(train.columns)
    S = synthetic.frame.to_numpy(float)
    assert set(np.unique(S)) <= {0.0, 1.0}

    independent = (np.random.default_rng(2).random(X.shape) < X.mean(0)).astype(float)
    within = np.kron(np.eye(n_blocks), np.ones((size, size))).astype(bool) & ~np.eye(n_blocks * size, dtype=bool)

    def cooccurrence_error(Y):
        return np.abs((Y.T @ Y - X.T @ X) / len(X))[within].mean()

    prevalence_error = np.abs(S.mean(0) - X.mean(0))
    assert prevalence_error.mean() < 0.03 and prevalence_error.max() < 0.08
    assert np.corrcoef(S.mean(0), X.mean(0))[0, 1] > 0.9
    assert cooccurrence_error(S) < 0.4 * cooccurrence_error(independent)
    # within-block correlation is strong in the data and near zero under independence; the model has it
    corr = np.corrcoef(S.T)[within].mean()
    assert corr > 0.5 and np.corrcoef(X.T)[within].mean() > 0.6 and np.corrcoef(independent.T)[within].mean() < 0.05


# ---- sampling, columns, persistence ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_model():
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({
        "subject_id": np.arange(1000, 1000 + n),
        "dx_250": (rng.random(n) < 0.3).astype(int),
        "dx_401": (rng.random(n) < 0.5).astype(int),
        "age": rng.integers(18, 90, n),
        "lab": rng.normal(5, 2, n),
        "sex": rng.choice(["F", "M"], n),
        "label": (rng.random(n) < 0.2).astype(int),
    })
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return EHRDiff("cpu-fast", **TINY).fit(frame, progress=False), frame
    finally:
        torch.set_num_threads(previous)


def test_sample_has_the_training_columns_and_kinds(mixed_model):
    model, frame = mixed_model
    out = model.sample(50, seed=3)
    # a DataFrame, as users of other tabular generators expect, carrying the kinds into fit and write_table
    assert isinstance(out, pd.DataFrame) and len(out) == 50
    assert list(out.columns) == list(frame.columns)
    kinds = {"subject_id": "id", "dx_250": "binary", "dx_401": "binary", "age": "continuous",
             "lab": "continuous", "sex": "categorical", "label": "label"}
    assert out.attrs[KINDS_ATTR] == kinds and Table.from_frame(out).kinds == kinds
    assert model.sample_table(50, seed=3).kinds == kinds
    pd.testing.assert_frame_equal(model.sample_table(50, seed=3).frame, out)
    assert set(out["dx_250"].unique()) <= {0, 1} and set(out["label"].unique()) <= {0, 1}
    assert out["age"].between(frame["age"].min(), frame["age"].max()).all()
    assert out["lab"].between(frame["lab"].min(), frame["lab"].max()).all()
    assert set(out["sex"]) <= {"F", "M"}


def test_same_seed_same_samples(mixed_model):
    model, _ = mixed_model
    a, b, c = model.sample_table(40, seed=7), model.sample_table(40, seed=7), model.sample_table(40, seed=8)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not np.array_equal(model.sample_matrix(40, seed=7), model.sample_matrix(40, seed=8))
    assert not a.frame.equals(c.frame)


def test_sample_matrix_is_the_clipped_and_rounded_output(mixed_model):
    model, _ = mixed_model
    model.set_sampling(code_prevalence="model", continuous_marginals="model")     # as drawn, nothing calibrated
    try:
        raw = model.sample_matrix(30, seed=4)
        table = model.sample_table(30, seed=4)
    finally:
        model.set_sampling(code_prevalence="auto", continuous_marginals="auto")
    j = model.encoder_.encoded_columns.index("dx_250")
    np.testing.assert_array_equal(table.frame["dx_250"].to_numpy(), np.round(np.clip(raw[:, j], 0, 1)))


def test_same_seed_same_model():
    X = block_binary_data(100, 2, 3, seed=5)
    a = EHRDiff("cpu-fast", **TINY, seed=4).fit(X, progress=False)
    b = EHRDiff("cpu-fast", **TINY, seed=4).fit(X, progress=False)
    c = EHRDiff("cpu-fast", **TINY, seed=5).fit(X, progress=False)
    sa, sb, sc = (m.denoiser_.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_save_load_gives_identical_samples(mixed_model, tmp_path):
    model, _ = mixed_model
    model.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["model"] == "ehrdiff" and meta["n_features"] == model.n_features_
    assert meta["config"]["hidden_dims"] == [32, 32] and "ehrdiff_version" in meta and meta["data_fingerprint"]
    for loaded in (EHRDiff.load(tmp_path / "run"), load_model(tmp_path / "run")):
        assert isinstance(loaded, EHRDiff)
        pd.testing.assert_frame_equal(loaded.sample(64, seed=9), model.sample(64, seed=9))


def test_incomplete_or_tampered_model_dirs_are_refused(mixed_model, tmp_path):
    model, _ = mixed_model
    run = tmp_path / "run"
    model.save(run)
    weights, meta_path = run / "weights.safetensors", run / "model.json"
    original_weights, original_meta = weights.read_bytes(), meta_path.read_text()

    flipped = bytearray(original_weights)
    flipped[-5] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError, match="checksum"):
        EHRDiff.load(run)
    weights.write_bytes(original_weights)

    meta = json.loads(original_meta)
    meta["config"]["hidden_dims"] = [64, 64]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="modified"):
        EHRDiff.load(run)
    meta_path.write_text(original_meta)
    EHRDiff.load(run)                                   # restored: loads again

    weights.unlink()
    with pytest.raises(ModelFileError, match="incomplete"):
        EHRDiff.load(run)
    with pytest.raises(ModelFileError, match="not found"):
        EHRDiff.load(tmp_path / "nothing-here")


def test_bad_sample_sizes_and_unfitted_model(mixed_model):
    model, _ = mixed_model
    for n in (0, -3, 2.5, "10"):
        with pytest.raises(DataError):
            model.sample(n)
    with pytest.raises(RuntimeError, match="not fitted"):
        EHRDiff("cpu-fast").sample(3)


def test_any_width_including_odd_and_bad_values():
    X = (np.random.default_rng(1).random((50, 7)) < 0.4).astype(float)
    model = EHRDiff("paper-mimic", steps=2, batch_size=16).fit(X, progress=False)   # the paper's network at d = 7
    assert model.n_features_ == 7 and model.sample(3).shape == (3, 7)
    X[3, 2] = 2.0
    declared = Table(pd.DataFrame(X, columns=[f"c{i}" for i in range(7)]), {f"c{i}": "binary" for i in range(7)})
    with pytest.raises(DataError, match="binary column 'c2' row 3"):
        EHRDiff("cpu-fast", **TINY).fit(declared, progress=False)
    X[3, 2] = np.inf
    with pytest.raises(DataError, match="infinite"):
        EHRDiff("cpu-fast", **TINY).fit(X, progress=False)


# ---- memorisation warning --------------------------------------------------------------------------------------
def test_memorisation_warning_depends_on_passes_over_the_rows_and_not_under_dp():
    from ehrdiff.models.ehrdiff.model import MEMORISATION_PASSES, memorisation_warning
    message = memorisation_warning(2000, 80, 80, private=False)
    assert "2,000 times" in message and "80 training rows" in message and "--dp" in message
    assert memorisation_warning(3000, 256, 3200, private=False) is None          # CinC's 240 passes
    assert memorisation_warning(MEMORISATION_PASSES, 10, 10, private=False) is not None
    assert memorisation_warning(MEMORISATION_PASSES - 1, 10, 10, private=False) is None
    assert memorisation_warning(2000, 80, 80, private=True) is None


def test_fit_warns_when_the_run_passes_over_small_data_two_thousand_times(caplog):
    data = block_binary_data(16, 2, 3, seed=1)
    caplog.set_level("WARNING", logger="ehrdiff")
    EHRDiff(**(TINY | {"steps": 995})).fit(data, progress=False)         # 1,990 passes
    assert not [r for r in caplog.records if "memorise" in r.getMessage()]
    EHRDiff(**(TINY | {"steps": 1000})).fit(data, progress=False)        # 2,000 passes
    assert [r for r in caplog.records if r.levelname == "WARNING" and "2,000 times" in r.getMessage()]
