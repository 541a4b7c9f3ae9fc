"""The paper's mathematics: EDM preconditioning and loss, the noise levels, the Heun sampler, the network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ehrdiff.diffusion import (Denoiser, EDMLoss, MLPDenoiserNet, NoiseEmbedding, RandomFourierEmbedding,
                               SinusoidalEmbedding, c_in, c_noise, c_out, c_skip, heun_sampler, karras_sigmas,
                               loss_weight, training_sigma)

SIGMA_DATA = 0.14
SIGMAS = torch.tensor([0.002, 0.02, 0.14, 0.5, 1.0, 10.0, 80.0], dtype=torch.float64)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny matrices; avoids oversubscribing a shared 2-core machine
    yield
    torch.set_num_threads(previous)


# ---- preconditioning -----------------------------------------------------------------------------------------
def test_preconditioning_at_sigma_equal_sigma_data():
    # sigma = sigma_data: c_skip = 1/2, c_out = sigma_data / sqrt(2), c_in = 1 / (sigma_data sqrt(2)),
    # lambda = 2 / sigma_data^2
    s = torch.tensor(SIGMA_DATA, dtype=torch.float64)
    assert float(c_skip(s, SIGMA_DATA)) == pytest.approx(0.5, rel=1e-12)
    assert float(c_out(s, SIGMA_DATA)) == pytest.approx(0.14 / math.sqrt(2), rel=1e-12)
    assert float(c_in(s, SIGMA_DATA)) == pytest.approx(1 / (0.14 * math.sqrt(2)), rel=1e-12)
    assert float(loss_weight(s, SIGMA_DATA)) == pytest.approx(2 / 0.14 ** 2, rel=1e-12)


def test_preconditioning_closed_forms():
    s, sd = SIGMAS, SIGMA_DATA
    for sigma in s.tolist():  # plain-float evaluation of the paper's formulas
        assert float(c_skip(torch.tensor(sigma), sd)) == pytest.approx(sd ** 2 / (sigma ** 2 + sd ** 2), rel=1e-6)
        assert float(c_out(torch.tensor(sigma), sd)) == pytest.approx(sigma * sd / math.sqrt(sigma ** 2 + sd ** 2),
                                                                      rel=1e-6)
        assert float(c_in(torch.tensor(sigma), sd)) == pytest.approx(1 / math.sqrt(sigma ** 2 + sd ** 2), rel=1e-6)
        assert float(c_noise(torch.tensor(sigma))) == pytest.approx(math.log(sigma) / 4, rel=1e-6, abs=1e-12)
    # the identities EDM derives them from: unit-variance network input, lambda = 1 / c_out^2,
    # and c_skip^2 sigma^2 + (1 - c_skip)^2 sigma_data^2 = c_out^2 (the variance of the skip-path error)
    torch.testing.assert_close(c_in(s, sd) ** 2 * (sd ** 2 + s ** 2), torch.ones_like(s))
    torch.testing.assert_close(loss_weight(s, sd) * c_out(s, sd) ** 2, torch.ones_like(s))
    torch.testing.assert_close(c_skip(s, sd) ** 2 * s ** 2 + (1 - c_skip(s, sd)) ** 2 * sd ** 2, c_out(s, sd) ** 2)


def test_effective_training_target_has_unit_variance():
    # EDM Appendix B.6: with Var(y) = sigma_data^2, the target of F, (y - c_skip (y + sigma n)) / c_out, has unit
    # variance at every noise level (and so does F's input c_in (y + sigma n)).
    g = torch.Generator().manual_seed(0)
    y = SIGMA_DATA * torch.randn(200_000, generator=g, dtype=torch.float64)
    n = torch.randn(200_000, generator=g, dtype=torch.float64)
    for sigma in SIGMAS.tolist():
        target = (y - c_skip(sigma, SIGMA_DATA) * (y + sigma * n)) / c_out(sigma, SIGMA_DATA)
        network_input = c_in(sigma, SIGMA_DATA) * (y + sigma * n)
        assert float(target.var()) == pytest.approx(1.0, rel=0.02)
        assert float(network_input.var()) == pytest.approx(1.0, rel=0.02)


def test_training_sigma_has_log_normal_parameters():
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    log_sigma = torch.log(training_sigma(z, P_mean=-1.2, P_std=1.2))
    assert float(log_sigma.mean()) == pytest.approx(-1.2, abs=0.01)
    assert float(log_sigma.std()) == pytest.approx(1.2, abs=0.01)     # standard deviation 1.2 (variance 1.44)


class Recorder(nn.Module):
    """A stand-in network F that records its inputs and returns a fixed value."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.value = value

    def forward(self, x, c_noise_values, scale=None):    # the network contract: F(scale * x; c_noise)
        x = x if scale is None else x * scale
        self.x, self.c_noise = x.clone(), c_noise_values.clone()
        return torch.full_like(x, self.value)


def test_denoiser_applies_preconditioning():
    net = Recorder(value=0.7)
    denoiser = Denoiser(net, SIGMA_DATA)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([[0.05], [0.14], [1.0], [3.0], [80.0]])
    out = denoiser(x, sigma)
    expected = c_skip(sigma, SIGMA_DATA) * x + c_out(sigma, SIGMA_DATA) * 0.7
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(net.x, x / torch.sqrt(sigma ** 2 + SIGMA_DATA ** 2))
    torch.testing.assert_close(net.c_noise, torch.log(sigma).reshape(-1) / 4)
    # one shared level (sampling): a 0-d sigma, float64 in and out
    out64 = denoiser(x.double(), torch.tensor(0.5, dtype=torch.float64))
    assert out64.dtype == torch.float64 and net.c_noise.shape == (1,)


def test_edm_loss_matches_definition():
    net = Recorder(value=-0.3)
    denoiser = Denoiser(net, SIGMA_DATA)
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(6, 4, generator=g) < 0.3).float()
    z = torch.randn(6, 1, generator=g)
    n = torch.randn(6, 4, generator=g)
    loss = EDMLoss(sigma_data=SIGMA_DATA, P_mean=-1.2, P_std=1.2)(denoiser, x, z, n)
    sigma = torch.exp(-1.2 + 1.2 * z)
    noisy = x + sigma * n
    d = SIGMA_DATA ** 2 / (sigma ** 2 + SIGMA_DATA ** 2) * noisy + sigma * SIGMA_DATA / torch.sqrt(
        sigma ** 2 + SIGMA_DATA ** 2) * -0.3
    weight = (sigma ** 2 + SIGMA_DATA ** 2) / (sigma * SIGMA_DATA) ** 2
    expected = (weight * (d - x) ** 2).mean(dim=1)
    assert loss.shape == (6,)
    torch.testing.assert_close(loss, expected)


# ---- noise levels ----------------------------------------------------------------------------------------------
def test_karras_sigmas_follow_the_formula():
    sigmas = karras_sigmas(32, sigma_min=0.02, sigma_max=80.0, rho=7.0)
    assert sigmas.shape == (33,) and sigmas.dtype == torch.float64
    expected = [(80 ** (1 / 7) + i / 31 * (0.02 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(32)] + [0.0]
    np.testing.assert_allclose(sigmas.numpy(), expected, rtol=1e-12)
    assert sigmas[0] == pytest.approx(80.0) and sigmas[31] == pytest.approx(0.02) and sigmas[32] == 0
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    # the levels are equally spaced in sigma^(1/rho)
    steps = np.diff(sigmas[:32].numpy() ** (1 / 7))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)


# ---- sampler ---------------------------------------------------------------------------------------------------
class CountingDenoiser:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.fn(x, sigma)


def test_heun_sampler_on_gaussian_data_matches_exact_flow_and_moments():
    # data ~ N(mu, s^2) per column: the ideal denoiser is D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu) and the
    # probability-flow ODE has the exact solution x(sigma) = mu + sqrt((s^2 + sigma^2) / (s^2 + sigma_0^2)) (x_0 - mu)
    mu = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    s = torch.tensor([0.5, 0.2, 1.5], dtype=torch.float64)
    denoiser = CountingDenoiser(lambda x, sigma: mu + s ** 2 / (s ** 2 + sigma ** 2) * (x - mu))
    sigmas = karras_sigmas(32, 0.02, 80.0, 7.0)
    g = torch.Generator().manual_seed(4)
    # start from the exact marginal at sigma_max, N(mu, s^2 + 80^2) (the model's 80 N(0, I) neglects mu and s)
    x0 = mu + torch.sqrt(s ** 2 + 80.0 ** 2) * torch.randn(40_000, 3, generator=g, dtype=torch.float64)
    out = heun_sampler(denoiser, x0, sigmas)
    assert denoiser.calls == 63
    # the sampler is a linear map here: (out - mu) = r (x_0 - mu); the exact flow to sigma = 0 has
    # r = s / sqrt(s^2 + 80^2). 32 Heun levels come within 2%, and the error shrinks like h^2 (Heun is second order;
    # Euler would only halve it when the number of levels doubles)
    exact = s / torch.sqrt(s ** 2 + 80.0 ** 2)

    def error(levels):
        r = (heun_sampler(denoiser.fn, x0[:4], karras_sigmas(levels, 0.02, 80.0, 7.0)) - mu) / (x0[:4] - mu)
        return (r / exact - 1).abs().max(0).values

    assert bool((error(32) < 0.02).all())
    assert bool((error(16) / error(32) > 3.0).all())
    # so the samples have the data's moments
    torch.testing.assert_close(out.mean(0), mu, rtol=0, atol=0.02)
    torch.testing.assert_close(out.std(0), s, rtol=0.02, atol=0)


def test_heun_sampler_on_two_point_data_reproduces_the_mixture():
    # binary data: P(1) = p, P(0) = 1 - p; the ideal denoiser is E[y | x] = sigmoid(logit p + (x - 1/2) / sigma^2)
    p = torch.tensor([0.3, 0.05, 0.8], dtype=torch.float64)
    logit = torch.log(p / (1 - p))

    def ideal(x, sigma):
        return torch.sigmoid(logit + (x - 0.5) / sigma ** 2)

    g = torch.Generator().manual_seed(5)
    x0 = 80.0 * torch.randn(30_000, 3, generator=g, dtype=torch.float64)
    out = heun_sampler(ideal, x0, karras_sigmas(32, 0.02, 80.0, 7.0))
    assert float(((out - out.round()).abs() < 0.05).double().mean()) > 0.99   # lands on the two points
    torch.testing.assert_close((out > 0.5).double().mean(0), p, rtol=0, atol=0.012)


# ---- network ---------------------------------------------------------------------------------------------------
def test_sinusoidal_embedding_values_and_odd_width():
    emb = SinusoidalEmbedding(8)
    t = torch.tensor([0.0, 0.5, -1.0])
    out = emb(t)
    freqs = [10000 ** (-k / 3) for k in range(4)]
    expected = [[math.sin(v * f) for f in freqs] + [math.cos(v * f) for f in freqs] for v in t.tolist()]
    torch.testing.assert_close(out, torch.tensor(expected))
    assert SinusoidalEmbedding(7).out_features == 8 and SinusoidalEmbedding(7)(t).shape == (3, 8)


def test_random_fourier_embedding():
    torch.manual_seed(0)
    emb = RandomFourierEmbedding(32)
    t = torch.tensor([0.25, -0.5])
    out = emb(t)
    assert out.shape == (2, 33)
    w = emb.weights
    torch.testing.assert_close(out[:, 0], t)
    torch.testing.assert_close(out[:, 1:17], torch.sin(2 * math.pi * t[:, None] * w))
    torch.testing.assert_close(out[:, 17:], torch.cos(2 * math.pi * t[:, None] * w))
    assert "weights" in dict(emb.named_buffers())     # saved with the model, not trained


def test_network_structure_relu_before_every_linear():
    """F computed by hand from the module's weights: h <- W_i relu(h + P_i e) + b_i, no activation at the end."""
    torch.manual_seed(1)
    emb = NoiseEmbedding("sinusoidal", 6, width=5)
    net = MLPDenoiserNet(3, (4, 2), emb)
    x = torch.randn(7, 3, dtype=torch.float64)
    c = torch.randn(7, dtype=torch.float64)
    net = net.double()
    e = emb.mlp[2](torch.nn.functional.silu(emb.mlp[0](emb.features(c).double())))
    P, pb = net.projection.weight, net.projection.bias
    dims, start, h = [3, 4, 2], 0, x
    for layer, d in zip(net.layers, dims):
        shift = e @ P[start:start + d].T + pb[start:start + d]
        h = torch.relu(h + shift) @ layer.weight.T + layer.bias
        start += d
    torch.testing.assert_close(net(x, c), h)
    assert net(x, c).min() < 0     # last layer linear: negative outputs possible


def test_shared_noise_level_equals_per_row_levels():
    torch.manual_seed(2)
    net = MLPDenoiserNet(5, (16, 8, 16), NoiseEmbedding("fourier", 32, 12))
    x = torch.randn(9, 5)
    per_row = net.reference_forward(x, torch.full((9,), 0.3))
    torch.testing.assert_close(net(x, torch.tensor([0.3])), per_row)             # training path
    with torch.no_grad():
        torch.testing.assert_close(net(x, torch.tensor([0.3])), per_row)         # sampling path
        torch.testing.assert_close(net(x, torch.tensor([0.3]), scale=torch.tensor(0.5)),
                                   net.reference_forward(0.5 * x, torch.full((9,), 0.3)))


@pytest.mark.parametrize("d", [1, 7, 882, 1781])
def test_paper_mimic_architecture_any_width(d):
    from ehrdiff.models.ehrdiff import build_denoiser
    from ehrdiff.models.ehrdiff import make_config

    denoiser = build_denoiser(make_config("paper-mimic"), d)
    net = denoiser.net
    assert [(m.in_features, m.out_features) for m in net.layers] == [
        (d, 1024), (1024, 384), (384, 384), (384, 384), (384, 1024), (1024, d)]
    # parameters of the official architecture: 6 linear layers, 6 projections 384 -> layer input,
    # embedding Linear(2 ceil(d/2), 384) - SiLU - Linear(384, 384)
    widths = [d, 1024, 384, 384, 384, 1024, d]
    emb_in = 2 * max(2, math.ceil(d / 2))
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    expected += sum(384 * a + a for a in widths[:-1])
    expected += emb_in * 384 + 384 + 384 * 384 + 384
    assert sum(p.numel() for p in denoiser.parameters()) == expected
    x = torch.rand(3, d)
    assert denoiser(x, torch.tensor([[0.1], [1.0], [10.0]])).shape == (3, d)


@pytest.mark.parametrize("kind", ["sinusoidal", "fourier"])
def test_fused_training_path_matches_plain_autograd(kind):
    """The hand-written forward/backward used in training computes the same function and gradients as plain
    autograd operations (float64, so any mistake shows far above rounding)."""
    torch.manual_seed(3)
    net = MLPDenoiserNet(7, (16, 9, 16), NoiseEmbedding(kind, 8, 10)).double()
    x = torch.randn(33, 7, dtype=torch.float64)
    c = torch.randn(33, dtype=torch.float64)
    scale = torch.rand(33, 1, dtype=torch.float64) + 0.5
    grad_out = torch.randn(33, 7, dtype=torch.float64)
    params = list(net.parameters())
    fused = net(x, c, scale=scale)                      # grad enabled: the fused path
    reference = net.reference_forward(x * scale, c)
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(fused, params, grad_out), torch.autograd.grad(reference, params, grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with torch.no_grad():                               # the sampling path
        torch.testing.assert_close(net(x, c, scale=scale), reference.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(net(x, c), net.reference_forward(x, c), rtol=1e-12, atol=1e-12)


def test_fused_path_reuses_buffers_safely():
    """Two graphs alive at once (gradient accumulation) still give exact gradients; a retained graph whose buffer
    was reused by a later step is refused by autograd instead of giving wrong gradients."""
    torch.manual_seed(4)
    net = MLPDenoiserNet(5, (12, 12), NoiseEmbedding("sinusoidal", 6, 8)).double()
    params = list(net.parameters())
    x1, x2 = torch.randn(10, 5, dtype=torch.float64), torch.randn(10, 5, dtype=torch.float64)
    c1, c2 = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    for _ in range(2):                                    # the second round runs on reused buffers
        fused = torch.autograd.grad(net(x1, c1).square().sum() + net(x2, c2).square().sum(), params)
        plain = torch.autograd.grad(net.reference_forward(x1, c1).square().sum()
                                    + net.reference_forward(x2, c2).square().sum(), params)
        for a, b in zip(fused, plain):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    kept = net(x1, c1).sum()
    kept.backward(retain_graph=True)
    net(x2, c2).sum().backward()                          # reuses the buffer `kept` saved
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        kept.backward()
