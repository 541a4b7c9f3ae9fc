"""Baselines (medGAN, EMR-WGAN, CorGAN) and references (marginals, resample) behind the Generator contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import block_binary_data
from ehrdiff.data.table import Table
from ehrdiff.errors import EhrdiffError
from ehrdiff.models import REGISTRY, load_model
from ehrdiff.models.gan_common import gradient_penalty
from ehrdiff.training import CHECKPOINT_FILE
from ehrdiff.models.medgan import minibatch_average

GANS = ["medgan", "emrwgan", "corgan"]
ALL = GANS + ["marginals", "resample"]

# A handful of steps: enough to run every code path, not to learn anything.
QUICK = {"medgan": dict(steps=8, ae_steps=4, batch_size=32),
         "emrwgan": dict(steps=8, batch_size=32, n_critic=2),
         "corgan": dict(steps=6, ae_steps=4, batch_size=32, n_critic=2),
         "marginals": {}, "resample": {}}

# Enough training to learn the block structure (about 10 s each on a 2-core CPU); larger learning rates and fewer
# critic updates than the defaults, so that the test stays short.
LEARN = {"medgan": dict(steps=1000, ae_steps=200, batch_size=64),
         "emrwgan": dict(steps=300, batch_size=128, lr=1e-3, n_critic=2),
         "corgan": dict(steps=400, ae_steps=200, batch_size=128, lr=1e-3, n_critic=2)}


@pytest.fixture(autouse=True, scope="module")
def single_thread_module():
    # conftest's one_thread, for the whole module (module-scoped fixtures cannot use a function-scoped one).
    # These networks are tiny: on 2 shared cores, a second intra-op thread mostly waits (measured 10x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mixed_table(n: int = 120, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n).astype(float)
    age[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame({
        "subject_id": np.arange(1000, 1000 + n),
        "dx_a": (rng.random(n) < 0.3).astype(int),
        "dx_b": (rng.random(n) < 0.6).astype(int),
        "age": age,
        "lactate": rng.gamma(2.0, 1.0, n),
        "unit": pd.Series(rng.choice(["icu", "ward", "ed"], n)).mask(rng.random(n) < 0.1),  # some missing
        "label": (rng.random(n) < 0.2).astype(int),
    })
    return Table.from_frame(frame, {"unit": "categorical"})


def check_sample(sample: Table, train: Table) -> None:
    assert sample.columns == train.columns
    assert sample.kinds == train.kinds
    for name, kind in train.kinds.items():
        values, real = sample.frame[name], train.frame[name]
        if kind in ("binary", "label"):
            assert set(values.unique()) <= {0, 1}, name
        elif kind == "continuous":
            observed = values.dropna()
            assert observed.between(real.min(), real.max()).all(), name
            if real.notna().all():
                assert values.notna().all(), name
        elif kind == "categorical":
            assert set(values.dropna()) <= set(real.dropna()), name
        elif kind == "id":
            assert not set(values) & set(real), "synthetic ids must not reuse real ones"


@pytest.fixture(scope="module")
def mixed() -> Table:
    return mixed_table()


@pytest.fixture(scope="module")
def fitted(mixed):
    """One quick fit per model on the mixed table, shared by the tests that only need a fitted model."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = REGISTRY[name](seed=4, **QUICK[name]).fit(mixed, progress=False)
        return cache[name]
    return get


@pytest.mark.parametrize("name", ALL)
def test_fits_and_samples_binary_and_mixed(name, mixed, fitted):
    binary = Table.from_frame(block_binary_data(80, 2, 3, seed=1))
    model = REGISTRY[name](seed=0, **QUICK[name]).fit(binary, progress=False)
    for train, model in ((binary, model), (mixed, fitted(name))):
        sample = model.sample_table(50, seed=3)
        assert sample.n_rows == 50
        check_sample(sample, train)


@pytest.mark.parametrize("name", ALL)
def test_save_load_gives_identical_samples(name, fitted, tmp_path):
    model = fitted(name)
    model.save(tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    assert type(loaded) is type(model)
    pd.testing.assert_frame_equal(loaded.sample(40, seed=5), model.sample(40, seed=5))


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_samples(name, mixed, fitted):
    a = fitted(name)
    b = REGISTRY[name](seed=4, **QUICK[name]).fit(mixed, progress=False)
    pd.testing.assert_frame_equal(a.sample(60, seed=2), b.sample(60, seed=2))
    features = [c for c in mixed.columns if mixed.kinds[c] != "id"]
    assert not a.sample(60, seed=2)[features].equals(a.sample(60, seed=3)[features])
    if name in GANS:  # a different training seed gives a different model
        c = REGISTRY[name](seed=5, **QUICK[name]).fit(mixed, progress=False)
        assert not np.allclose(c.sample(60, seed=2)["lactate"], a.sample(60, seed=2)["lactate"])


@pytest.mark.parametrize("name", GANS)
def test_resume_continues_exactly(name, mixed, tmp_path):
    """Training 6 steps, then resuming to 12, gives the model that 12 uninterrupted steps give."""
    settings = {**QUICK[name], "checkpoint_every": 4}
    first = REGISTRY[name](**{**settings, "steps": 6}).fit(mixed, checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    resumed = REGISTRY[name](**{**settings, "steps": 12}).fit(mixed, checkpoint_dir=tmp_path, resume=True,
                                                              progress=False)
    straight = REGISTRY[name](**{**settings, "steps": 12}).fit(mixed, progress=False)
    pd.testing.assert_frame_equal(resumed.sample(50, seed=1), straight.sample(50, seed=1))
    assert not first.sample(50, seed=1).equals(straight.sample(50, seed=1))

    with pytest.raises(EhrdiffError, match="batch_size"):  # other settings than the checkpoint's are refused
        REGISTRY[name](**{**settings, "batch_size": 16}).fit(mixed, checkpoint_dir=tmp_path, resume=True,
                                                             progress=False)
    with pytest.raises(EhrdiffError, match="different data"):
        REGISTRY[name](**settings).fit(mixed_table(seed=9), checkpoint_dir=tmp_path, resume=True, progress=False)


# ---- structure: every learned baseline must beat independent marginals on block-correlated codes ---------------
N_BLOCKS, BLOCK_SIZE = 4, 5


def within_block_cooccurrence_error(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Mean |P_real(i and j) - P_syn(i and j)| over code pairs i < j of the same block."""
    p_real, p_syn = real.T @ real / len(real), synthetic.T @ synthetic / len(synthetic)
    pairs = [(b * BLOCK_SIZE + i, b * BLOCK_SIZE + j) for b in range(N_BLOCKS)
             for i in range(BLOCK_SIZE) for j in range(i + 1, BLOCK_SIZE)]
    return float(np.mean([abs(p_real[i, j] - p_syn[i, j]) for i, j in pairs]))


def within_block_correlation_error(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Mean |corr_real(i, j) - corr_syn(i, j)| over code pairs of the same block (Pearson, i.e. phi for 0/1):
    structure with the marginals divided out, so a model with slightly wrong prevalences is not penalised twice."""
    c_real, c_syn = _corr(real), _corr(synthetic)
    pairs = [(b * BLOCK_SIZE + i, b * BLOCK_SIZE + j) for b in range(N_BLOCKS)
             for i in range(BLOCK_SIZE) for j in range(i + 1, BLOCK_SIZE)]
    return float(np.mean([abs(c_real[i, j] - c_syn[i, j]) for i, j in pairs]))


def _corr(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(np.corrcoef(x.T))  # a constant column correlates 0 with everything


def correlation_distance(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Frobenius norm of the difference of the Pearson correlation matrices (constant columns count as 0)."""
    return float(np.linalg.norm(_corr(real) - _corr(synthetic)))


def structure_scores(name: str, settings: dict, data: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    model = REGISTRY[name](**{**settings, "seed": seed}).fit(data, progress=False)
    synthetic = model.sample(len(data), seed=1)[data.columns].to_numpy(float)
    real = data.to_numpy(float)
    return {"block_correlation": within_block_correlation_error(real, synthetic),
            "cooccurrence": within_block_cooccurrence_error(real, synthetic),
            "correlation_distance": correlation_distance(real, synthetic)}


@pytest.fixture(scope="module")
def blocks() -> pd.DataFrame:
    return block_binary_data(2000, N_BLOCKS, BLOCK_SIZE, seed=0)


@pytest.fixture(scope="module")
def marginal_scores(blocks) -> dict[str, float]:
    return structure_scores("marginals", {}, blocks)


def test_structure_metrics_separate_the_references(blocks, marginal_scores):
    """The metrics themselves: copying rows keeps the structure, independent columns lose it."""
    resample = structure_scores("resample", {}, blocks)
    assert marginal_scores["block_correlation"] > 0.6   # real within-block phi is about 0.7, independent 0
    for metric, value in resample.items():
        assert value < 0.2 * marginal_scores[metric], metric


@pytest.mark.parametrize("name", GANS)
def test_learned_baselines_beat_marginals_on_block_structure(name, blocks, marginal_scores):
    scores = structure_scores(name, LEARN[name], blocks)
    assert scores["block_correlation"] < 0.5 * marginal_scores["block_correlation"], (scores, marginal_scores)
    assert scores["cooccurrence"] < marginal_scores["cooccurrence"], (scores, marginal_scores)
    assert scores["correlation_distance"] < marginal_scores["correlation_distance"], (scores, marginal_scores)


# ---- the references' defining properties ----------------------------------------------------------------------
def test_marginals_keep_each_column_distribution(mixed):
    sample = REGISTRY["marginals"]().fit(mixed).sample(20_000, seed=0)
    for name in ("dx_a", "dx_b", "label"):
        assert abs(sample[name].mean() - mixed.frame[name].mean()) < 0.015
    assert set(sample["lactate"]) <= set(mixed.frame["lactate"])       # empirical values, not new ones
    assert abs(sample["age"].isna().mean() - mixed.frame["age"].isna().mean()) < 0.015
    shares = sample["unit"].value_counts(normalize=True)
    real_shares = mixed.frame["unit"].value_counts(normalize=True)
    assert np.allclose(shares[real_shares.index], real_shares, atol=0.015)


def test_resample_draws_training_rows(mixed):
    sample = REGISTRY["resample"]().fit(mixed).sample(200, seed=0)
    features = [c for c in mixed.columns if c != "subject_id"]
    real_rows = {tuple(r) for r in mixed.frame[features].astype(str).itertuples(index=False)}
    assert all(tuple(r) in real_rows for r in sample[features].astype(str).itertuples(index=False))
    assert sample["lactate"].dtype == mixed.frame["lactate"].dtype


# ---- settings and building blocks -----------------------------------------------------------------------------
def test_settings_are_checked_and_cli_strings_converted():
    model = REGISTRY["emrwgan"](steps="7", lr="0.002", batch_size=16.0)
    assert (model.config.steps, model.config.lr, model.config.batch_size) == (7, 0.002, 16)
    assert REGISTRY["corgan"](finetune_decoder="true").config.finetune_decoder is True
    with pytest.raises(EhrdiffError, match="unknown emrwgan setting 'n_critc'"):
        REGISTRY["emrwgan"](n_critc=3)
    with pytest.raises(EhrdiffError, match="steps=0"):
        REGISTRY["medgan"](steps=0)
    with pytest.raises(EhrdiffError, match="expected a whole number"):
        REGISTRY["medgan"](steps="many")


def test_gradient_penalty_of_a_linear_critic():
    """For D(x) = w.x the gradient is w everywhere, so the penalty is (||w|| - 1)^2 exactly."""
    critic = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))
    real, fake = torch.rand(16, 4), torch.rand(16, 4)
    penalty = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake, torch.Generator().manual_seed(0))
    assert penalty.item() == pytest.approx(16.0)


def test_minibatch_averaging_appends_the_batch_mean():
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    out = minibatch_average(x)
    assert out.shape == (3, 4)
    assert torch.allclose(out[:, 2:], torch.tensor([2 / 3, 1 / 3]).expand(3, 2))
    assert torch.equal(out[:, :2], x)
