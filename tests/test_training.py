"""The shared training loop: schedules, EMA, deterministic batches and noise, checkpoints, exact resume, DDP."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from ehrdiff.diffusion import EDMLoss
from ehrdiff.errors import EhrdiffError, ModelFileError
from ehrdiff.models.ehrdiff import edm_row_loss, build_denoiser
from ehrdiff.models.ehrdiff import make_config
from ehrdiff.training import (CHECKPOINT_FILE, BatchNoise, BatchOrder, TrainSettings, ema_decay, learning_rate,
                              read_checkpoint, train)

from conftest import block_binary_data


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores


# ---- schedules -------------------------------------------------------------------------------------------------
def test_learning_rate_warmup_then_cosine_to_zero():
    base, warm, total = 3e-4, 100, 1100
    assert learning_rate(0, base, warm, total) == 0.0
    assert learning_rate(50, base, warm, total) == pytest.approx(base / 2)
    assert learning_rate(100, base, warm, total) == pytest.approx(base)
    assert learning_rate(600, base, warm, total) == pytest.approx(base / 2)           # cosine midpoint
    assert learning_rate(350, base, warm, total) == pytest.approx(base * (1 + math.cos(math.pi / 4)) / 2)
    assert learning_rate(1100, base, warm, total) == pytest.approx(0.0, abs=1e-15)
    lrs = [learning_rate(s, base, warm, total) for s in range(warm, total)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert learning_rate(0, base, 0, total) == pytest.approx(base)                    # no warm-up


def test_ema_decay_schedule():
    assert ema_decay(1) == pytest.approx(2 / 11)
    assert ema_decay(9) == pytest.approx(10 / 19)
    assert ema_decay(8990) == pytest.approx(8991 / 9000)       # still below 0.999
    assert ema_decay(9000) == 0.999 and ema_decay(10 ** 6) == 0.999
    assert ema_decay(10 ** 6, max_decay=0.99) == 0.99


def test_paper_warmup_is_kept_and_short_runs_are_capped():
    cfg = make_config("paper-mimic")
    total = cfg.total_steps(46_520)                          # the paper's MIMIC-III cohort size
    assert total == (46_520 // 1024 + 1) * 5000 == 230_000
    assert cfg.effective_warmup(total) == 20_000
    assert cfg.effective_warmup(4000) == 1000                # at most a quarter of a short run


# ---- batches and noise -----------------------------------------------------------------------------------------
def test_batch_order_walks_through_epoch_permutations():
    order = BatchOrder(n_rows=10, batch_size=4, seed=3)
    stream = torch.cat([order.indices(s) for s in range(5)])          # 20 indices = 2 epochs
    assert sorted(stream[:10].tolist()) == list(range(10))
    assert sorted(stream[10:].tolist()) == list(range(10))
    assert stream[:10].tolist() != stream[10:].tolist()               # a fresh permutation each epoch
    again = BatchOrder(n_rows=10, batch_size=4, seed=3)
    assert torch.equal(again.indices(3), order.indices(3))            # a function of (seed, step) alone
    big = BatchOrder(n_rows=10, batch_size=25, seed=3)                # batch larger than the data
    rows = big.indices(1)
    assert rows.shape == (25,) and torch.equal(rows[:5], torch.cat([big.indices(0), rows])[25:30])
    counts = torch.bincount(torch.cat([big.indices(0), big.indices(1)]), minlength=10)
    assert counts.tolist() == [5] * 10                                 # 50 draws = exactly 5 epochs


def test_batch_noise_rows_do_not_depend_on_the_split():
    g, cpu = torch.Generator(), torch.device("cpu")
    whole = BatchNoise(g, 7, 12, 0, 300, cpu)                     # global batch of 300 rows, step 12, seed 7
    a, b = whole.randn(1), whole.randn(5)
    assert a.shape == (300, 1) and b.shape == (300, 5) and not torch.equal(a[:, 0], b[:, 0])
    for lo, hi in [(0, 150), (150, 300), (100, 131), (256, 300)]:   # cuts inside and across 128-row blocks
        part = BatchNoise(g, 7, 12, lo, hi, cpu)
        assert torch.equal(part.randn(1), a[lo:hi]) and torch.equal(part.randn(5), b[lo:hi])
    other_step = BatchNoise(g, 7, 13, 0, 300, cpu).randn(1)
    assert not torch.equal(other_step, a)
    z = BatchNoise(g, 0, 0, 0, 4096, cpu).randn(64)             # and they are standard normal
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01


def test_batch_noise_drawn_in_threads_equals_one_thread(monkeypatch):
    g, cpu = torch.Generator(), torch.device("cpu")
    monkeypatch.setattr(BatchNoise, "PARALLEL_MIN", 1)      # every draw takes the threaded path
    torch.set_num_threads(2)                                # (the fixture restores one thread afterwards)
    threaded = [BatchNoise(g, 3, 5, lo, hi, cpu) for lo, hi in [(0, 300), (100, 131), (150, 300)]]
    torch.set_num_threads(1)
    serial = [BatchNoise(g, 3, 5, lo, hi, cpu) for lo, hi in [(0, 300), (100, 131), (150, 300)]]
    for t, s in zip(threaded, serial):
        torch.set_num_threads(2)
        a = (t.randn(1), t.randn(7))
        torch.set_num_threads(1)
        assert torch.equal(a[0], s.randn(1)) and torch.equal(a[1], s.randn(7))


# ---- the loop --------------------------------------------------------------------------------------------------
def small_problem(seed: int = 0):
    cfg = make_config("cpu-fast", hidden_dims=(32, 32), embedding_features=8, embedding_width=16)
    data = torch.tensor(block_binary_data(64, 2, 3, seed=seed).to_numpy(), dtype=torch.float32)
    return cfg, data, edm_row_loss(EDMLoss(sigma_data=0.14))


def fresh(cfg, width=6):
    return build_denoiser(cfg, width, seed=0)


def settings(steps: int, **kw) -> TrainSettings:
    return TrainSettings(**{"steps": steps, "batch_size": 16, "lr": 1e-3, "warmup_steps": 0, "seed": 5, **kw})


def test_ema_is_the_warm_started_average_of_the_parameters():
    cfg, data, loss = small_problem()
    m0 = fresh(cfg)
    p0 = {k: v.clone() for k, v in m0.named_parameters()}
    r1 = train(m0, data, loss, settings(1), progress=False)
    p1 = {k: v.detach().clone() for k, v in m0.named_parameters()}
    m2 = fresh(cfg)
    r2 = train(m2, data, loss, settings(2), progress=False)
    for k, p in m2.named_parameters():
        assert not torch.equal(p0[k], p1[k])
        ema1 = (2 / 11) * p0[k] + (9 / 11) * p1[k]                     # decay min(0.999, 2/11) at update 1
        torch.testing.assert_close(r1.ema_state[k], ema1)
        torch.testing.assert_close(r2.ema_state[k], (3 / 12) * ema1 + (9 / 12) * p.detach())  # decay 3/12


class Interrupt(Exception):
    pass


def interrupting(loss, at_call: int):
    calls = {"n": 0}

    def wrapped(model, rows, noise):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise Interrupt
        return loss(model, rows, noise)
    return wrapped


def test_resume_after_interruption_is_exact(tmp_path):
    cfg, data, loss = small_problem()
    reference = fresh(cfg)
    ref = train(reference, data, loss, settings(30), progress=False)

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        train(fresh(cfg), data, interrupting(loss, 18), settings(30, checkpoint_every=5), checkpoint_dir=ckpt,
              progress=False)
    meta, tensors = read_checkpoint(ckpt / CHECKPOINT_FILE)
    assert meta["step"] == 15 and any(k.startswith("optim.") and k.endswith("exp_avg_sq") for k in tensors)
    assert [p.name for p in ckpt.iterdir()] == [CHECKPOINT_FILE]      # no temporary files left behind

    resumed_model = fresh(cfg)
    resumed = train(resumed_model, data, loss, settings(30, checkpoint_every=5), checkpoint_dir=ckpt, resume=True,
                    progress=False)
    assert resumed.start_step == 15
    for k, v in ref.ema_state.items():
        assert torch.equal(v, resumed.ema_state[k]), k
    for (k, a), b in zip(reference.named_parameters(), resumed_model.parameters()):
        assert torch.equal(a, b), k
    assert read_checkpoint(ckpt / CHECKPOINT_FILE)[0]["step"] == 30


def test_resume_refuses_a_different_run(tmp_path):
    cfg, data, loss = small_problem()
    train(fresh(cfg), data, loss, settings(5, checkpoint_every=5), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(EhrdiffError, match="seed"):
        train(fresh(cfg), data, loss, settings(10, seed=6), checkpoint_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(EhrdiffError, match="different run"):
        train(fresh(cfg), data, loss, settings(10), checkpoint_dir=tmp_path, resume=True, progress=False,
              identity={"data": "another"})


def test_settings_only_the_checkpoint_records_do_not_block_a_resume(tmp_path):
    # older versions recorded the sampler's settings in the identity; they do not change the weights
    cfg, data, loss = small_problem()
    old = {"config": {"lr": 1.0, "num_noise_levels": 32}}
    train(fresh(cfg), data, loss, settings(5, checkpoint_every=5), checkpoint_dir=tmp_path, progress=False,
          identity=old)
    done = train(fresh(cfg), data, loss, settings(5), checkpoint_dir=tmp_path, resume=True, progress=False,
                 identity={"config": {"lr": 1.0}})
    assert done.start_step == 5
    with pytest.raises(EhrdiffError, match="lr: checkpoint 1.0, now 2.0"):
        train(fresh(cfg), data, loss, settings(5), checkpoint_dir=tmp_path, resume=True, progress=False,
              identity={"config": {"lr": 2.0}})


def test_damaged_checkpoint_is_refused(tmp_path):
    cfg, data, loss = small_problem()
    train(fresh(cfg), data, loss, settings(3), checkpoint_dir=tmp_path, progress=False)
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="damaged checkpoint"):
        train(fresh(cfg), data, loss, settings(3), checkpoint_dir=tmp_path, resume=True, progress=False)


# ---- distributed -----------------------------------------------------------------------------------------------
RECORDING_CLI = """
import json, os, sys
import ehrdiff.models.ehrdiff.model as glue
from ehrdiff.cli import main

make_loss, seen = glue.edm_row_loss, []

def recording(loss, *refresh):
    inner = make_loss(loss, *refresh)
    def row_loss(model, rows, noise):
        seen.append([rows.shape[0], float(rows.double().sum())])   # rows this process got at each step
        return inner(model, rows, noise)
    return row_loss

glue.edm_row_loss = recording
code = main(sys.argv[1:])
with open(os.path.join(os.environ["RECORD_DIR"], "rank%s.json" % os.environ.get("RANK", "0")), "w") as f:
    json.dump(seen, f)
sys.exit(code)
"""


@pytest.mark.distributed
def test_two_processes_train_the_same_weights_as_one(tmp_path):
    """``ehrdiff train`` under torchrun with 2 CPU processes (gloo), global batch 63 split 31 + 32, vs one process."""
    import json

    from safetensors.torch import load_file

    data = tmp_path / "data.csv"
    block_binary_data(300, 3, 4, seed=1).to_csv(data, index=False)
    script = tmp_path / "recording_cli.py"
    script.write_text(RECORDING_CLI)
    common = ["-q", "train", str(data), "--preset", "cpu-fast", "--steps", "25", "--batch-size", "63", "--seed", "3",
              "--set", "hidden_dims=[64,64]"]
    records = {}
    for name, launcher in [("one", [sys.executable]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", "2"])]:
        (tmp_path / name).mkdir()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RECORD_DIR": str(tmp_path / name)}
        done = subprocess.run([*launcher, str(script), *common, "-o", str(tmp_path / name / "run")],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        ranks = range(2 if name == "two" else 1)
        records[name] = [json.loads((tmp_path / name / f"rank{r}.json").read_text()) for r in ranks]

    # each process got its slice of the same global batch: 31 + 32 rows whose values add up to the single batch
    (single,), (rank0, rank1) = records["one"], records["two"]
    assert len(single) == len(rank0) == len(rank1) == 25
    assert {r[0] for r in single} == {63} and {r[0] for r in rank0} == {31} and {r[0] for r in rank1} == {32}
    for s, a, b in zip(single, rank0, rank1):
        assert a[1] + b[1] == pytest.approx(s[1], abs=1e-9)

    w1 = load_file(str(tmp_path / "one" / "run" / "weights.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "run" / "weights.safetensors"))
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)
    # the weights did train (not two untouched initialisations compared)
    init = build_denoiser(make_config("cpu-fast", hidden_dims=(64, 64), seed=3), 12).state_dict()
    assert max(float((w1[k] - init[k]).abs().max()) for k in w1) > 1e-3
    assert not (tmp_path / "two" / "run" / "checkpoints" / "rank1").exists()
