"""Measurements as the default model sees them (issue 20, the model side): continuous columns through their
quantiles to a standard normal, dequantised and with missing values as fresh noise in training
(diffusion/refresh.py), categorical columns as one softmax variable (diffusion/bernoulli.py), codes as before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import kstest, ks_2samp

from ehrdiff.data import Table, TableEncoder
from ehrdiff.data.encoding import NORMAL_TAIL
from ehrdiff.diffusion.bernoulli import BernoulliDenoiser, BernoulliEDMLoss
from ehrdiff.diffusion.refresh import RowRefresh
from ehrdiff.errors import DataError
from ehrdiff.models.ehrdiff import EHRDiff, make_config, row_refresh
from ehrdiff.training.randomness import BatchNoise

from conftest import block_binary_data

pytestmark = pytest.mark.usefixtures("one_thread")
SIGMA_DATA = 0.14


def icu_table(n: int = 4000, seed: int = 0) -> Table:
    """A skewed lab value, a count with ties (0 in about 14% of rows), a score of few values, a lab missing in 30%
    of rows, a categorical unit and a 0/1 label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "lab": rng.lognormal(0.0, 2.0, n),
        "count": rng.poisson(2.0, n).astype("int64"),
        "gcs": rng.choice([3, 8, 14, 15], n, p=[0.1, 0.2, 0.3, 0.4]).astype("int64"),
        "ph": np.where(rng.random(n) < 0.3, np.nan, np.round(rng.normal(7.4, 0.05, n), 2)),
        "unit": rng.choice(["CCU", "MICU", "SICU"], n, p=[0.2, 0.5, 0.3]),
        "label": (rng.random(n) < 0.15).astype("int64"),
    })
    kinds = {"lab": "continuous", "count": "continuous", "gcs": "continuous", "ph": "continuous",
             "unit": "categorical", "label": "label"}
    return Table.from_frame(frame, kinds)


class Noise:
    """BatchNoise's interface from one generator (the tests need no blocks)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn((self.n, *shape), generator=self.generator)


# ---- the normal scaling ----------------------------------------------------------------------------------------
def test_normal_scaling_inverts_exactly_and_never_leaves_the_training_range():
    table = icu_table()
    encoder = TableEncoder("normal").fit(table)
    encoded = encoder.transform(table, dtype=np.float64)
    back = encoder.inverse_transform(encoded).frame
    for column in ("lab", "count", "gcs", "ph"):
        real = table.frame[column].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(back[column].to_numpy(float)), np.isnan(real))
        np.testing.assert_allclose(back[column].to_numpy(float), real, rtol=1e-9)
    assert encoder.codings_[1].integer and (back["count"] == table.frame["count"]).all()
    # the skewed lab (all values distinct) is a standard normal once encoded
    assert kstest(encoded[:, 0], "norm").statistic < 0.01
    # any model output decodes inside the training range, integers as integers
    wild = np.random.default_rng(1).normal(0, 10, (5000, encoder.width))
    decoded = encoder.inverse_transform(wild).frame
    for column in ("lab", "count", "gcs", "ph"):
        real = table.frame[column].dropna()
        assert decoded[column].min() >= real.min() and decoded[column].max() <= real.max()
    assert set(decoded["gcs"].unique()) <= {3, 8, 14, 15}


def test_standard_normal_draws_decode_to_the_training_distribution():
    table = icu_table()
    encoder = TableEncoder("normal").fit(table)
    z = np.random.default_rng(2).standard_normal((20000, encoder.width))
    decoded = encoder.inverse_transform(z).frame
    for column in ("lab", "count", "gcs"):
        assert ks_2samp(decoded[column], table.frame[column]).statistic < 0.02, column
    shares = decoded["gcs"].value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(shares, [0.1, 0.2, 0.3, 0.4], atol=0.015)


# ---- dequantisation and missing values in training ---------------------------------------------------------------
def test_refresh_spreads_ties_over_their_stretch_and_redraws_missing_values():
    table = icu_table()
    encoder = TableEncoder("normal").fit(table)
    rows = torch.from_numpy(encoder.transform(table))
    refresh = RowRefresh(encoder.normal_stretches(), encoder.missing_pairs(), NORMAL_TAIL)
    out = refresh(rows, Noise(rows.shape[0])).numpy()
    names = encoder.encoded_columns
    count, gcs, ph, missing = (names.index(c) for c in ("count", "gcs", "ph", "ph__missing"))
    before = rows.numpy()
    # a column of few values (every row tied) becomes an exact standard normal, and decodes back unchanged
    for j in (count, gcs):
        assert len(np.unique(before[:, j])) < 20 and kstest(out[:, j], "norm").pvalue > 0.01
    np.testing.assert_array_equal(encoder.inverse_transform(out.astype(np.float64)).frame["gcs"],
                                  table.frame["gcs"])
    # a missing value is a fresh standard normal (no fill value left); an observed one decodes as before
    gone = before[:, missing] == 1
    assert kstest(out[gone, ph], "norm").pvalue > 0.01 and len(np.unique(out[gone, ph])) == gone.sum()
    decoded = encoder.inverse_transform(out.astype(np.float64)).frame
    np.testing.assert_allclose(decoded["ph"][~gone], table.frame["ph"][~gone], atol=1e-6)
    # 0/1 columns are untouched; the input is not changed in place
    binary = encoder.binary_mask
    np.testing.assert_array_equal(out[:, binary], before[:, binary])
    np.testing.assert_array_equal(rows.numpy(), before)
    # a second step draws afresh
    again = refresh(rows, Noise(rows.shape[0], seed=1)).numpy()
    assert not np.allclose(again[:, gcs], out[:, gcs])


def test_refresh_is_off_for_codes_and_for_min_max_scaling():
    codes = Table.from_frame(block_binary_data(200, 2, 3, seed=0), {})
    default = make_config("default")
    assert row_refresh(default, TableEncoder("normal").fit(codes)) is None
    table = icu_table(500)
    paper = make_config("paper-mimic")
    assert row_refresh(paper, TableEncoder("minmax").fit(table)) is None
    assert row_refresh(default, TableEncoder("normal").fit(table)) is not None


# ---- the softmax head and the masked loss ------------------------------------------------------------------------
class Constant(torch.nn.Module):
    def __init__(self, values):
        super().__init__()
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, c_noise_values, scale=None):
        return self.values.expand(x.shape[0], -1).clone() + 0 * self.dummy


def test_softmax_head_is_the_exact_posterior_of_a_categorical_column():
    # x0 = e_k with P(k) = p_k: P(x0 = e_k | x) = p_k N(x; e_k, s^2 I) / sum_j p_j N(x; e_j, s^2 I)
    p = np.array([0.2, 0.5, 0.3])
    denoiser = BernoulliDenoiser(Constant(np.log(p)), SIGMA_DATA, np.ones(3, bool), onehot=[(0, 3)])
    x = torch.tensor([[0.1, 0.6, -0.2], [0.9, 0.4, 1.1]], dtype=torch.float64)
    sigma = 0.5
    xs = x.numpy()
    density = np.stack([np.exp(-((xs - np.eye(3)[k]) ** 2).sum(axis=1) / (2 * sigma ** 2)) for k in range(3)], 1)
    exact = p * density / (p * density).sum(axis=1, keepdims=True)
    out = denoiser(x, torch.tensor(sigma, dtype=torch.float64)).detach().numpy()
    np.testing.assert_allclose(out, exact, rtol=1e-5)
    # its loss is the categorical cross-entropy of the block
    x0 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    z, n = torch.randn(2, 1, generator=g), torch.randn(2, 3, generator=g)
    loss = BernoulliEDMLoss(SIGMA_DATA)(denoiser, x0, z, n)
    s = torch.exp(-1.2 + 1.2 * z)
    posterior = denoiser(x0 + s * n, s)
    expected = -(x0 * torch.log(posterior)).sum(dim=1) / 3
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)


def test_missing_values_are_left_out_of_the_squared_error():
    denoiser = BernoulliDenoiser(Constant([0.3, 0.0]), SIGMA_DATA, np.array([False, True]))
    x = torch.tensor([[0.5, 0.0], [0.5, 1.0]])          # value observed in row 0, missing in row 1
    z, n = torch.zeros(2, 1), torch.zeros(2, 2)
    masked = BernoulliEDMLoss(SIGMA_DATA, missing=(torch.tensor([0]), torch.tensor([1])))(denoiser, x, z, n).detach()
    plain = BernoulliEDMLoss(SIGMA_DATA)(denoiser, x, z, n).detach()
    assert float(masked[0]) == pytest.approx(float(plain[0]))
    assert float(masked[1]) < float(plain[1])
    only_bce = BernoulliEDMLoss(SIGMA_DATA)(BernoulliDenoiser(Constant([0.0]), SIGMA_DATA, np.array([True])),
                                            x[1:, 1:], z[1:], n[1:, 1:]).detach()
    assert float(masked[1]) == pytest.approx(float(only_bce[0]) / 2, rel=1e-5)


# ---- the model ----------------------------------------------------------------------------------------------------
def test_untrained_model_with_sigma_data_1_draws_the_training_marginals():
    """Zero output weights: sigmoid / softmax of the prevalences for 0/1 and categorical columns and, with
    normal_sigma_data 1, the exact posterior mean of N(0, 1) for the normal-scaled ones, so sampling gives each
    column its training marginal."""
    table = icu_table(3000)
    model = EHRDiff("default", normal_sigma_data=1.0, steps=1, lr=1e-12, batch_size=64, sigma_min=0.05,
                    num_noise_levels=24, row_selection="none",      # the sampler's own rows
                    hidden_dims=(16,), embedding_features=8, embedding_width=8).fit(table, progress=False)
    synthetic = model.sample(6000, seed=0)
    for column in ("lab", "count", "gcs"):
        assert ks_2samp(synthetic[column], table.frame[column]).statistic < 0.03, column
    assert ks_2samp(synthetic["ph"].dropna(), table.frame["ph"].dropna()).statistic < 0.04
    assert synthetic["ph"].isna().mean() == pytest.approx(0.3, abs=0.02)
    np.testing.assert_allclose(synthetic["unit"].value_counts(normalize=True).sort_index(), [0.2, 0.5, 0.3],
                               atol=0.02)


def test_codes_sample_as_before_and_old_settings_stay_out_of_the_identity():
    """Binary codes: the new settings change nothing; a model with today's defaults and one with every new
    setting at its old value draw the same rows from the same seed."""
    data = block_binary_data(400, 2, 3, seed=1)
    tiny = dict(steps=30, batch_size=64, hidden_dims=(16,), embedding_features=8, embedding_width=8)
    new = EHRDiff("default", **tiny).fit(data, progress=False).sample(300, seed=4)
    old = EHRDiff("default", continuous_scaling="minmax", missing_values="fill", categorical_head="independent",
                  normal_sigma_data=None, missing_indicators="per_column", **tiny).fit(data, progress=False) \
        .sample(300, seed=4)
    pd.testing.assert_frame_equal(new, old)
    identity = make_config("default", continuous_scaling="minmax", missing_values="fill",
                           categorical_head="independent", normal_sigma_data=None,
                           missing_indicators="per_column").identity()
    assert not {"missing_values", "categorical_head", "normal_sigma_data", "continuous_scaling",
                "missing_indicators"} & set(identity)


def test_default_model_on_icu_columns_saves_and_loads(tmp_path):
    table = icu_table(600)
    model = EHRDiff("default", steps=20, batch_size=64, hidden_dims=(16,), embedding_features=8,
                    embedding_width=8).fit(table, progress=False)
    assert {c.scaling for c in model.encoder_.codings_ if c.coding == "continuous"} == {"normal"}
    model.save(tmp_path / "run")
    again = EHRDiff.load(tmp_path / "run")
    pd.testing.assert_frame_equal(again.sample(50, seed=2), model.sample(50, seed=2))


def test_batch_noise_gives_the_refresh_its_own_draws():
    """The refresh draws after the loss's: BatchNoise numbers of a step do not depend on whether it runs."""
    generator = torch.Generator()
    first = BatchNoise(generator, 0, 5, 0, 8, torch.device("cpu"))
    a = [first.randn(1), first.randn(4)]
    second = BatchNoise(generator, 0, 5, 0, 8, torch.device("cpu"))
    b = [second.randn(1), second.randn(4), second.randn(4)]
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


# ---- shared missing indicators -----------------------------------------------------------------------------------
def summaries_table(n: int = 600, seed: int = 0) -> Table:
    """A variable measured in 60% of stays with its first, last and mean value (missing together), and a lab of its
    own missing pattern."""
    rng = np.random.default_rng(seed)
    seen = rng.random(n) < 0.6
    first, last = rng.normal(7.4, 0.1, n), rng.normal(7.4, 0.1, n)
    frame = pd.DataFrame({"pH_first": np.where(seen, first, np.nan), "pH_last": np.where(seen, last, np.nan),
                          "pH_mean": np.where(seen, (first + last) / 2, np.nan),
                          "lab": np.where(rng.random(n) < 0.2, np.nan, rng.lognormal(0, 1, n))})
    return Table.from_frame(frame, {c: "continuous" for c in frame.columns})


def test_columns_missing_together_share_one_indicator():
    table = summaries_table()
    shared = TableEncoder("normal", share_missing=True).fit(table)
    assert shared.encoded_columns == ["pH_first", "pH_first__missing", "pH_last", "pH_mean", "lab", "lab__missing"]
    assert [c.missing_with for c in shared.codings_] == ["", "pH_first", "pH_first", ""]
    values, indicators = shared.missing_pairs()
    assert values.tolist() == [0, 2, 3, 4] and indicators.tolist() == [1, 1, 1, 5]
    encoded = shared.transform(table, dtype=np.float64)
    back = shared.inverse_transform(encoded).frame
    for column in table.columns:
        np.testing.assert_allclose(back[column], table.frame[column], rtol=1e-9)
    # one indicator decides for the three: model output never has the summaries partly missing
    wild = np.random.default_rng(1).normal(0.5, 1.0, (2000, shared.width))
    decoded = shared.inverse_transform(wild).frame
    missing = decoded[["pH_first", "pH_last", "pH_mean"]].isna().to_numpy()
    assert (missing.all(axis=1) | ~missing.any(axis=1)).all() and 0.2 < missing[:, 0].mean() < 0.8
    per_column = TableEncoder("normal").fit(table).inverse_transform(
        np.random.default_rng(1).normal(0.5, 1.0, (2000, 8))).frame
    partly = per_column[["pH_first", "pH_last", "pH_mean"]].isna().to_numpy()
    assert (partly.any(axis=1) & ~partly.all(axis=1)).mean() > 0.3
    # through model.json and back; a crafted file naming a column without an indicator is refused
    again = TableEncoder.from_dict(shared.to_dict())
    np.testing.assert_array_equal(again.transform(table, dtype=np.float64), encoded)
    crafted = shared.to_dict()
    crafted["columns"][1]["missing_with"] = "lab_typo"
    with pytest.raises(ValueError, match="missing_with"):
        TableEncoder.from_dict(crafted)


def test_a_shared_indicator_refuses_data_where_the_columns_part():
    table = summaries_table()
    encoder = TableEncoder("normal", share_missing=True).fit(table)
    frame = table.frame.copy()
    frame.loc[frame["pH_first"].notna().idxmax(), "pH_mean"] = np.nan
    with pytest.raises(DataError, match="'pH_mean' row .* is missing while 'pH_first' is not"):
        encoder.transform(Table.from_frame(frame, table.kinds))


def test_default_model_samples_the_summaries_missing_together():
    model = EHRDiff("default", steps=30, batch_size=64, hidden_dims=(16,), embedding_features=8,
                    embedding_width=8).fit(summaries_table(), progress=False)
    synthetic = model.sample(400, seed=0)
    missing = synthetic[["pH_first", "pH_last", "pH_mean"]].isna().to_numpy()
    assert (missing.all(axis=1) | ~missing.any(axis=1)).all()
    assert model.encoder_.width == 6
