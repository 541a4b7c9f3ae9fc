"""Differentially private EHRDiff: accounting, clipping with K noise draws, Poisson batches, reproducibility,
resume, save / load, CLI, bad input and torch.distributed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from ehrdiff.cli import main
from ehrdiff.models.ehrdiff.private import (ClippedGradientSum, LossShape, PerExampleGradients, find_noise_multiplier,
                        per_example_norms, poisson_batch, require_opacus, spent_epsilon)
from ehrdiff.errors import EhrdiffError
from ehrdiff.models import load_model
from ehrdiff.models.ehrdiff import EHRDiff, build_denoiser
from ehrdiff.models.ehrdiff import make_config
from ehrdiff.privacy.secret import SECRET_FILE, SEED_VARIABLE

from conftest import block_binary_data

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores

TINY = dict(steps=30, batch_size=40, hidden_dims=(32, 32), embedding_features=8, embedding_width=16, seed=2)


def data(n_rows: int = 400) -> pd.DataFrame:
    frame = block_binary_data(n_rows, 3, 4, seed=1)
    frame["label"] = (np.arange(n_rows) % 4 == 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def private_model():
    torch.set_num_threads(1)
    return EHRDiff("cpu-fast", dp=True, dp_epsilon=5.0, dp_delta=1e-4, dp_noise_draws=3, **TINY).fit(
        data(), progress=False)


# ---- accounting ------------------------------------------------------------------------------------------------
def test_reported_epsilon_is_what_opacus_gives(private_model):
    """The saved total is the composition of every mechanism of the release (the statistics and DP-SGD), and
    DP-SGD's entry is the saved dp_noise_multiplier, dp_sample_rate and dp_steps: a fresh RDPAccountant stepped
    once per optimiser step after the statistics' entries reports the same epsilon."""
    from opacus.accountants import RDPAccountant

    info = private_model.privacy_
    release = info["dp_release"]
    rate = 40 / private_model.n_rows_            # the batch over the noisy number of rows
    assert info["dp_sample_rate"] == rate and info["dp_steps"] == 30 and info["dp_noise_draws"] == 3
    accountant = RDPAccountant()
    for mechanism in release["mechanisms"][:-1]:
        accountant.step(noise_multiplier=mechanism["noise_multiplier"], sample_rate=mechanism["sample_rate"])
    for _ in range(30):
        accountant.step(noise_multiplier=info["dp_noise_multiplier"], sample_rate=rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # "optimal order is the largest alpha"
        independent = accountant.get_epsilon(delta=release["accountant_delta"], alphas=release["rdp_orders"])
    assert info["dp_epsilon"] == pytest.approx(independent, rel=1e-12)
    assert 4.9 < info["dp_epsilon"] <= 5.0 and info["dp_delta"] <= 1e-4


def test_prv_accountant_and_the_spent_epsilon_function():
    sigma = find_noise_multiplier(2.0, 1e-5, 0.01, 1000, "prv")
    assert spent_epsilon(sigma, 0.01, 1000, 1e-5, "prv") <= 2.0 + 1e-6
    # more noise spends less; more steps spend more
    assert spent_epsilon(2 * sigma, 0.01, 1000, 1e-5, "rdp") < spent_epsilon(sigma, 0.01, 1000, 1e-5, "rdp")
    assert spent_epsilon(sigma, 0.01, 4000, 1e-5, "rdp") > spent_epsilon(sigma, 0.01, 1000, 1e-5, "rdp")


def test_unreachable_budgets_and_bad_settings_are_explained():
    with pytest.raises(EhrdiffError, match=r"epsilon=1e-06, delta=1e-05 cannot be reached in 100000 steps"):
        find_noise_multiplier(1e-6, 1e-5, 0.05, 100_000)
    with pytest.raises(EhrdiffError, match="batch size <= rows"):
        EHRDiff("cpu-fast", dp=True, dp_epsilon=20, **{**TINY, "batch_size": 500}).fit(data(), progress=False)
    with pytest.raises(EhrdiffError, match="needs a target epsilon"):
        EHRDiff("cpu-fast", dp=True)
    with pytest.raises(EhrdiffError, match="'dp_noise_draws' needs DP training"):
        EHRDiff("cpu-fast", dp_noise_draws=2)
    with pytest.raises(EhrdiffError, match="delta must be between 0 and 1"):
        EHRDiff("cpu-fast", dp=True, dp_epsilon=1, dp_delta=2)
    with pytest.raises(EhrdiffError, match="at least 1"):
        EHRDiff("cpu-fast", dp=True, dp_epsilon=1, dp_noise_draws=0)
    with pytest.raises(EhrdiffError, match="'dp_tail_floor' needs DP training"):
        EHRDiff("cpu-fast", dp_tail_floor=0.2)
    with pytest.raises(EhrdiffError, match="dp_tail_floor must be between 0 and 1"):
        EHRDiff("cpu-fast", dp=True, dp_epsilon=1, dp_tail_floor=-0.1)
    with pytest.raises(EhrdiffError, match="dp_tail_floor applies to a conditional private model"):
        EHRDiff("cpu-fast", dp=True, dp_epsilon=20, dp_tail_floor=0.2, **TINY).fit(data(), progress=False)


def test_missing_opacus_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)        # import opacus now raises ImportError
    with pytest.raises(EhrdiffError, match=r"pip install ehrdiff\[dp\]"):
        require_opacus()
    with pytest.raises(EhrdiffError, match=r"pip install ehrdiff\[dp\]"):
        EHRDiff("cpu-fast", dp=True, dp_epsilon=1, **TINY).fit(data(), progress=False)


# ---- the mechanism ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("conditional", [False, True])
def test_per_example_gradients_with_k_draws_are_exact_and_clipped(conditional, head):
    from ehrdiff.models.ehrdiff import training_loss

    d, K, C, B = 12, 4, 0.3, 6
    cfg = make_config("cpu-fast", hidden_dims=(24, 24), embedding_features=8, embedding_width=16, binary_head=head)
    binary = np.arange(d) % 3 != 0          # a mixed row: 8 binary columns, 4 continuous ones
    denoiser = build_denoiser(cfg, d, n_classes=2 if conditional else 0, binary=binary)
    if conditional:
        torch.nn.init.normal_(denoiser.net.embedding.classes.weight)
    gen = torch.Generator().manual_seed(0)
    rows = torch.where(torch.as_tensor(binary), (torch.rand(B, d, generator=gen) < 0.3).float(),
                       torch.rand(B, d, generator=gen))
    if conditional:
        rows = torch.cat([rows, torch.tensor([0., 1, 1, 0, 1, 0]).view(-1, 1)], dim=1)
    draws = {"sigma": torch.randn(B, K, 1, generator=gen), "noise": torch.randn(B, K, d, generator=gen),
             "drop": torch.tensor([0.0, 0.0, -3.0, 0.0, 0.0, 0.0])}       # row 2's class is dropped (Phi(-3) < 0.1)
    loss = training_loss(cfg)

    # independent reference: plain autograd of each example's K-draw mean loss, one example at a time
    raw, losses = {n: [] for n, _ in denoiser.named_parameters()}, []
    for i in range(B):
        denoiser.zero_grad()
        x = rows[i, :d].expand(K, d).contiguous()
        labels = torch.full((K,), 2 if i == 2 else int(rows[i, d])) if conditional else None
        value = loss(denoiser, x, draws["sigma"][i], draws["noise"][i], labels).mean()
        value.backward()
        losses.append(value.item())
        for name, p in denoiser.named_parameters():
            raw[name].append(p.grad.clone() if p.grad is not None else torch.zeros_like(p))
    raw = {n: torch.stack(g) for n, g in raw.items()}
    norms = per_example_norms(raw)
    factor = torch.clamp(C / (norms + 1e-6), max=1.0)
    clipped = {n: g * factor.view(-1, *([1] * (g.dim() - 1))) for n, g in raw.items()}
    assert (norms > C).any()                                         # the bound is active in this test
    assert (per_example_norms(clipped) <= C * (1 + 1e-5)).all()      # and never exceeded

    # the training loop's clipped sum (norms from layer inputs and output gradients) is exactly their sum
    fast, fast_losses, fast_norms = ClippedGradientSum(denoiser, loss, C, (2, 0.1) if conditional else None)(
        rows, draws)
    assert set(fast) == set(raw)
    torch.testing.assert_close(fast_norms, norms, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast_losses, torch.tensor(losses), rtol=1e-5, atol=1e-6)
    for name in clipped:
        torch.testing.assert_close(fast[name], clipped[name].sum(0), rtol=1e-4, atol=1e-6)

    if head == "gaussian":      # and torch.func's explicit per-example gradients agree with both
        shape = LossShape(cfg.sigma_data, cfg.P_mean, cfg.P_std)
        vmapped, _ = PerExampleGradients(denoiser, shape, C, (2, 0.1) if conditional else None)(rows, draws,
                                                                                              clip=False)
        for name in raw:
            torch.testing.assert_close(vmapped[name], raw[name], rtol=1e-4, atol=1e-6)


def test_poisson_batches_are_seeded_and_have_the_right_rate():
    a, b = poisson_batch(10_000, 0.05, seed=3, step=7), poisson_batch(10_000, 0.05, seed=3, step=7)
    assert torch.equal(a, b) and not torch.equal(a, poisson_batch(10_000, 0.05, seed=3, step=8))
    sizes = [poisson_batch(10_000, 0.05, seed=3, step=s).numel() for s in range(50)]
    assert len(set(sizes)) > 5                                # the batch size varies, as Poisson sampling does
    assert np.mean(sizes) == pytest.approx(500, rel=0.03)


def test_private_noise_is_secret_unless_its_seed_is_given_and_the_run_trains(private_model, monkeypatch):
    """The saved seed does not give the noise back (privacy/secret.py): the same settings train other weights;
    EHRDIFF_DP_NOISE_SEED reproduces a run."""
    settings = dict(dp=True, dp_epsilon=5.0, dp_delta=1e-4, dp_noise_draws=3, **TINY)
    monkeypatch.delenv(SEED_VARIABLE)       # conftest fixes it; here the secret draw
    again = EHRDiff("cpu-fast", **settings).fit(data(), progress=False)
    assert not torch.equal(private_model.denoiser_.net.layers[0].weight, again.denoiser_.net.layers[0].weight)
    monkeypatch.setenv(SEED_VARIABLE, "12345")
    first, second = (EHRDiff("cpu-fast", **settings).fit(data(), progress=False) for _ in range(2))
    for (k, a), b in zip(first.denoiser_.state_dict().items(), second.denoiser_.state_dict().values()):
        assert torch.equal(a, b), k
    monkeypatch.setenv(SEED_VARIABLE, "twelve")
    with pytest.raises(EhrdiffError, match="EHRDIFF_DP_NOISE_SEED='twelve' is not an integer"):
        EHRDiff("cpu-fast", **settings).fit(data(), progress=False)
    init = build_denoiser(private_model.config, 13).state_dict()
    assert max(float((v - init[k]).abs().max()) for k, v in again.denoiser_.state_dict().items()) > 1e-3
    assert again.final_loss_ is None        # the loss of unnoised training rows is not kept under DP


def test_private_resume_is_exact(tmp_path, monkeypatch):
    """An interrupted private run keeps its secret noise seed next to its checkpoints; resumed, it ends as a run
    with that seed given would, and the secret is gone."""
    settings = dict(dp=True, dp_epsilon=5.0, dp_noise_draws=2, checkpoint_every=5, **TINY)
    monkeypatch.delenv(SEED_VARIABLE)       # conftest fixes it; here the secret draw, kept for resuming
    calls = {"n": 0}
    original = ClippedGradientSum.__call__

    def interrupting(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 18:        # one call per step (batches are smaller than CHUNK_ROWS): dies in step 18
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClippedGradientSum, "__call__", interrupting)
    with pytest.raises(KeyboardInterrupt):
        EHRDiff("cpu-fast", **settings).fit(data(), checkpoint_dir=tmp_path, progress=False)
    monkeypatch.setattr(ClippedGradientSum, "__call__", original)
    secret = (tmp_path / SECRET_FILE).read_text()
    assert oct((tmp_path / SECRET_FILE).stat().st_mode & 0o777) == "0o600"
    resumed = EHRDiff("cpu-fast", **settings).fit(data(), checkpoint_dir=tmp_path, resume=True, progress=False)
    assert not (tmp_path / SECRET_FILE).exists()
    monkeypatch.setenv(SEED_VARIABLE, secret)
    reference = EHRDiff("cpu-fast", **settings).fit(data(), progress=False)
    for (k, a), b in zip(reference.denoiser_.state_dict().items(), resumed.denoiser_.state_dict().values()):
        assert torch.equal(a, b), k
    assert resumed.privacy_ == reference.privacy_
    assert secret not in "".join(p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())
    with pytest.raises(EhrdiffError, match="different run"):
        EHRDiff("cpu-fast", **{**settings, "dp_epsilon": 6.0}).fit(data(), checkpoint_dir=tmp_path, resume=True,
                                                                   progress=False)


def test_conditional_private_model_saves_and_loads(tmp_path):
    bounds = tmp_path / "bounds.json"        # the classes are public; kept by a noisy threshold they would not be
    bounds.write_text('{"label": {"categories": [0, 1]}}')
    model = EHRDiff("cpu-fast", dp=True, dp_epsilon=8.0, condition="label", binary_head="bernoulli",
                    dp_bounds=str(bounds), **TINY).fit(data(), progress=False)
    model.save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["dp_epsilon"] == model.privacy_["dp_epsilon"] and saved["dp_delta"] <= 1e-5
    assert saved["dp_noise_multiplier"] > 0 and saved["dp_max_grad_norm"] == 1.0 and saved["condition"]
    loaded = load_model(tmp_path / "run")
    assert loaded.privacy_ == model.privacy_
    first = loaded.sample_table(20, seed=1, condition=1, guidance=1.0)
    assert set(first.frame["label"]) == {1}
    assert first.frame.equals(model.sample(20, seed=1, condition=1, guidance=1.0))


# ---- command line ----------------------------------------------------------------------------------------------
def test_cli_private_training_and_evaluation_report(tmp_path, capsys):
    frame = data(300)
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.iloc[:240].to_csv(train_csv, index=False)
    frame.iloc[240:].to_csv(test_csv, index=False)
    run = tmp_path / "run"
    assert main(["-q", "train", str(train_csv), "-o", str(run), "--preset", "cpu-fast", "--steps", "20",
                 "--batch-size", "30", "--set", "hidden_dims=[32]", "--dp", "--epsilon", "10", "--delta", "1e-4",
                 "--max-grad-norm", "0.5", "--noise-draws", "2"]) == 0
    saved = json.loads((run / "model.json").read_text())
    assert saved["dp_delta"] == 1e-4 and saved["dp_max_grad_norm"] == 0.5 and saved["dp_noise_draws"] == 2
    assert 9.5 < saved["dp_epsilon"] <= 10
    synthetic = tmp_path / "syn.csv"
    assert main(["-q", "sample", str(run), "-n", "100", "-o", str(synthetic)]) == 0
    report_dir = tmp_path / "report"
    assert main(["-q", "evaluate", "--train", str(train_csv), "--test", str(test_csv), "--synthetic",
                 f"private={synthetic}", "--model", f"private={run}", "--no-references", "--no-figures",
                 "-o", str(report_dir)]) == 0
    metrics = json.loads((report_dir / "metrics.json").read_text())["datasets"]["private"]
    assert metrics["dp_epsilon"] == saved["dp_epsilon"] and metrics["dp_delta"] == 1e-4
    assert "| dp_epsilon |" in (report_dir / "report.md").read_text()
    capsys.readouterr()

    bad = [(["--epsilon", "1"], "--epsilon only applies to private training: add --dp"),
           (["--dp"], "--dp needs a target budget: give --epsilon"),
           (["--dp", "--epsilon", "0.000001", "--steps", "100000", "--batch-size", "30"],
            "cannot be reached by one-way marginals: even noise multiplier 1000"),     # the first mechanism
           (["--dp", "--epsilon", "1", "--batch-size", "30", "--set", "dp_pairs_share=0.8"],    # nothing left: DP-SGD
            "give the statistics released before it smaller shares (e.g. dp_marginals_share, dp_pairs_share)"),
           (["--dp", "--epsilon", "-2"], "DP epsilon must be a positive number")]
    for extra, message in bad:
        args = ["-q", "train", str(train_csv), "-o", str(tmp_path / "bad"), "--preset", "cpu-fast",
                "--set", "hidden_dims=[8]", *extra]
        assert main(args) == 1, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "bad" / "model.json").exists()
    assert main(["-q", "evaluate", "--train", str(train_csv), "--test", str(test_csv), "--synthetic",
                 f"private={synthetic}", "--model", f"other={run}", "-o", str(report_dir)]) == 1
    assert "no synthetic dataset named 'other'" in capsys.readouterr().err


# ---- distributed -----------------------------------------------------------------------------------------------
@pytest.mark.slow          # about 40 s: two torchrun launches
@pytest.mark.distributed
def test_two_processes_train_the_same_private_weights_as_one(tmp_path):
    """DP training under torchrun with 2 CPU processes (gloo): each clips its own rows, the clipped sums are added
    across processes and the noise (of one given secret seed, sent by the first process) is added once; the
    weights equal a one-process run's."""
    from safetensors.torch import load_file

    csv = tmp_path / "data.csv"
    data(300).to_csv(csv, index=False)
    common = ["-q", "train", str(csv), "--preset", "cpu-fast", "--steps", "12", "--batch-size", "50", "--seed", "3",
              "--set", "hidden_dims=[32,32]", "--dp", "--epsilon", "8", "--noise-draws", "2", "--condition", "label"]
    runner = "import sys; from ehrdiff.cli import main; sys.exit(main())"
    env = {**os.environ, "OMP_NUM_THREADS": "1", SEED_VARIABLE: "777"}
    for name, launcher in [("one", [sys.executable, "-c", runner]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", "2", "--no-python", sys.executable, "-c", runner])]:
        done = subprocess.run([*launcher, *common, "-o", str(tmp_path / name)], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    w1 = load_file(str(tmp_path / "one" / "weights.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "weights.safetensors"))
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)
    one = json.loads((tmp_path / "one" / "model.json").read_text())
    two = json.loads((tmp_path / "two" / "model.json").read_text())
    assert one["dp_epsilon"] == two["dp_epsilon"] and one["dp_noise_multiplier"] == two["dp_noise_multiplier"]
