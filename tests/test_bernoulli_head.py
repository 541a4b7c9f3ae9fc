"""The Bernoulli head of ehrdiff's default model (ehrdiff.diffusion.bernoulli): exact posterior for independent
codes, the loss against its definition, the final draw, and the model end to end."""

import numpy as np
import pytest
import torch

from ehrdiff.diffusion import heun_sampler, karras_sigmas
from ehrdiff.diffusion.bernoulli import (BernoulliDenoiser, BernoulliEDMLoss, draw_discrete, noise_log_odds,
                                        redraw_short_rows)
from ehrdiff.models.ehrdiff import EHRDiff

from conftest import block_binary_data

pytestmark = pytest.mark.usefixtures("one_thread")
SIGMA_DATA = 0.14


class Constant(torch.nn.Module):
    """F = a fixed value per column (the network contract F(scale * x; c_noise))."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.dummy = torch.nn.Parameter(torch.zeros(1))      # Denoiser reads the parameters' dtype

    def forward(self, x, c_noise_values, scale=None):
        return self.values.expand(x.shape[0], -1).clone() + 0 * self.dummy


def test_log_odds_term_is_the_exact_gaussian_likelihood_ratio():
    x, sigma = torch.tensor([-0.3, 0.2, 0.5, 1.4]), 0.4
    density = lambda mean: torch.exp(-(x - mean) ** 2 / (2 * sigma ** 2))   # noqa: E731
    torch.testing.assert_close(noise_log_odds(x, sigma), torch.log(density(1.0) / density(0.0)))


def test_constant_prior_gives_the_exact_posterior_of_independent_codes():
    # x0_i ~ Bernoulli(p_i) independently:
    # P(x0_i = 1 | x) = p_i N(x_i; 1, s) / (p_i N(x_i; 1, s) + (1-p_i) N(x_i; 0, s))
    p = np.array([0.02, 0.3, 0.7])
    denoiser = BernoulliDenoiser(Constant(np.log(p / (1 - p))), SIGMA_DATA, np.ones(3, bool))
    x = torch.tensor([[0.1, 0.6, -0.2], [0.9, 0.4, 1.1]], dtype=torch.float64)
    sigma = 0.5
    normal = lambda v, m: np.exp(-(v - m) ** 2 / (2 * sigma ** 2))             # noqa: E731
    xs = x.numpy()
    exact = p * normal(xs, 1) / (p * normal(xs, 1) + (1 - p) * normal(xs, 0))
    out = denoiser(x, torch.tensor(sigma, dtype=torch.float64)).detach().numpy()
    np.testing.assert_allclose(out, exact, rtol=1e-5)


def test_continuous_columns_keep_edm_preconditioning():
    denoiser = BernoulliDenoiser(Constant([0.0, 0.7]), SIGMA_DATA, np.array([True, False]))
    x, sigma = torch.tensor([[0.3, 0.4]]), torch.tensor(0.8)
    out = denoiser(x, sigma).detach()
    skip = SIGMA_DATA ** 2 / (0.8 ** 2 + SIGMA_DATA ** 2)
    scale = 0.8 * SIGMA_DATA / (0.8 ** 2 + SIGMA_DATA ** 2) ** 0.5
    assert float(out[0, 1]) == pytest.approx(skip * 0.4 + scale * 0.7, rel=1e-6)
    assert float(out[0, 0]) == pytest.approx(1 / (1 + np.exp(-(0.3 - 0.5) / 0.64)), rel=1e-6)


def test_loss_is_cross_entropy_for_codes_and_edm_error_for_the_rest():
    values = torch.tensor([0.4, -1.0, 0.2])
    denoiser = BernoulliDenoiser(Constant(values), SIGMA_DATA, np.array([True, True, False]))
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[1.0, 0.0, 0.3], [0.0, 0.0, 0.9]])
    z, n = torch.randn(2, 1, generator=g), torch.randn(2, 3, generator=g)
    loss = BernoulliEDMLoss(SIGMA_DATA, -1.2, 1.2)(denoiser, x, z, n)
    sigma = torch.exp(-1.2 + 1.2 * z)
    noisy = x + sigma * n
    prob = torch.sigmoid(values[:2] + (noisy[:, :2] - 0.5) / sigma ** 2)
    bce = -(x[:, :2] * torch.log(prob) + (1 - x[:, :2]) * torch.log(1 - prob))
    d = SIGMA_DATA ** 2 / (sigma ** 2 + SIGMA_DATA ** 2) * noisy[:, 2:] + \
        sigma * SIGMA_DATA / torch.sqrt(sigma ** 2 + SIGMA_DATA ** 2) * values[2]
    weighted = (sigma ** 2 + SIGMA_DATA ** 2) / (sigma * SIGMA_DATA) ** 2 * (d - x[:, 2:]) ** 2
    torch.testing.assert_close(loss, torch.cat([bce, weighted], dim=1).mean(dim=1), rtol=1e-4, atol=1e-6)


def test_sampler_with_exact_denoiser_and_final_draw_reproduces_rare_prevalences():
    # the point of the head: codes far under one half are generated at their rate, not rounded away
    p = np.array([0.005, 0.03, 0.12, 0.45])
    denoiser = BernoulliDenoiser(Constant(np.log(p / (1 - p))), SIGMA_DATA, np.ones(4, bool))
    for sigma_min, levels in [(0.02, 32), (0.3, 12)]:
        sigmas = karras_sigmas(levels, sigma_min, 80.0, 7.0)
        g = torch.Generator().manual_seed(1)
        latents = 80.0 * torch.randn(60_000, 4, generator=g, dtype=torch.float64)
        with torch.no_grad():
            probs = heun_sampler(denoiser, latents, sigmas).numpy()
        draws = draw_discrete(probs, [("binary", 0, 4)], np.random.default_rng(0))
        np.testing.assert_allclose(draws.mean(axis=0), p, atol=0.006, rtol=0.08)


def test_draw_discrete_bernoulli_and_one_hot_groups():
    rng = np.random.default_rng(0)
    probs = np.tile([0.1, 0.9, 0.2, 0.6, 0.2, 0.0, 0.0, 0.0], (40_000, 1))
    out = draw_discrete(probs, [("binary", 0, 2), ("onehot", 2, 5), ("onehot", 5, 8)], rng)
    assert set(np.unique(out)) <= {0.0, 1.0}
    np.testing.assert_allclose(out[:, :2].mean(axis=0), [0.1, 0.9], atol=0.01)
    assert (out[:, 2:5].sum(axis=1) == 1).all() and (out[:, 5:8].sum(axis=1) == 1).all()
    np.testing.assert_allclose(out[:, 2:5].mean(axis=0), [0.2, 0.6, 0.2], atol=0.01)   # normalised by 1.0
    np.testing.assert_allclose(out[:, 5:8].mean(axis=0), [1 / 3] * 3, atol=0.01)      # all zero: uniform


def test_untrained_bernoulli_model_is_the_independent_marginals_model():
    data = block_binary_data(3000, 2, 4, seed=3)
    model = EHRDiff("cpu-fast", binary_head="bernoulli", final_draw="sample", steps=1, lr=1e-12,
                    sigma_min=0.3, num_noise_levels=8).fit(data, progress=False)
    synthetic = model.sample(6000, seed=0).to_numpy(float)
    np.testing.assert_allclose(synthetic.mean(axis=0), data.to_numpy(float).mean(axis=0), atol=0.025)


def test_bernoulli_model_learns_blocks_and_round_trips(tmp_path):
    data = block_binary_data(2000, 4, 5, seed=0)
    real = data.to_numpy(float)
    model = EHRDiff("cpu-fast", binary_head="bernoulli", final_draw="sample", sigma_min=0.2, num_noise_levels=16,
                    steps=500).fit(data, progress=False)
    synthetic = model.sample(4000, seed=1).to_numpy(float)
    independent = (np.random.default_rng(0).random(synthetic.shape) < real.mean(axis=0)).astype(float)

    def cooccurrence_error(rows):
        return np.abs(rows.T @ rows / len(rows) - real.T @ real / len(real)).mean()

    assert cooccurrence_error(synthetic) < 0.5 * cooccurrence_error(independent)
    assert abs(synthetic.sum(axis=1).mean() - real.sum(axis=1).mean()) < 0.05 * real.sum(axis=1).mean()
    model.save(tmp_path / "model")
    again = EHRDiff.load(tmp_path / "model")
    assert np.array_equal(again.sample(300, seed=5).to_numpy(), model.sample(300, seed=5).to_numpy())


def test_short_rows_are_redrawn_from_their_own_probabilities():
    rng = np.random.default_rng(0)
    probs = np.tile([0.3, 0.1, 0.05, 0.5], (50_000, 1))          # last column: a label, not a code
    draws = draw_discrete(probs, [("binary", 0, 4)], rng)
    codes = np.array([0, 1, 2])
    redraw_short_rows(draws, probs, codes, 1, rng)
    assert (draws[:, codes].sum(axis=1) >= 1).all()
    # exact conditional: P(code j | at least one code) = p_j / (1 - prod(1 - p))
    at_least_one = 1 - np.prod(1 - probs[0, :3])
    np.testing.assert_allclose(draws[:, :3].mean(axis=0), probs[0, :3] / at_least_one, atol=0.01)
    np.testing.assert_allclose(draws[:, 3].mean(), 0.5, atol=0.01)              # untouched
    hopeless = np.zeros((2, 4))
    redraw_short_rows(hopeless, np.array([[0, 1e-9, 0, 0], [0, 0, 1e-9, 0]]), codes, 1, rng, max_rounds=3)
    assert hopeless[0, 1] == 1 and hopeless[1, 2] == 1                          # falls back to the likeliest code


def test_default_model_keeps_the_training_floor_of_codes(tmp_path):
    data = block_binary_data(1500, 3, 3, seed=2)
    data = data[data.sum(axis=1) >= 2]                                          # every real row has 2+ codes
    model = EHRDiff("cpu-fast", steps=200, num_noise_levels=8, codes_per_row="model").fit(data, progress=False)
    assert model.min_codes_ == 2
    assert (model.sample(3000, seed=0).to_numpy(float).sum(axis=1) >= 2).all()
    model.config.min_codes = "none"
    assert (model.sample(3000, seed=0).to_numpy(float).sum(axis=1) < 2).any()
    model.save(tmp_path / "m")
    assert EHRDiff.load(tmp_path / "m").min_codes_ == 2
