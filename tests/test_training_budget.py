"""The default training budget derived from the data, and the held-out stopping rule (issue 22)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.models.ehrdiff.budget import (MAX_STEPS, MIN_STEPS, PASSES, data_budget, holdout_size, plan_budget,
                                           split_holdout)
from ehrdiff.models.ehrdiff.calibrate import SMALL_TABLE_ROWS
from ehrdiff.models.ehrdiff.config import OptimisationSettings
from ehrdiff.models.ehrdiff.model import MEMORISATION_PASSES
from ehrdiff.training import CHECKPOINT_FILE, StepLog, read_checkpoint, run_steps
from ehrdiff.training.stopping import TOLERANCE, HeldOutStopping

from conftest import block_binary_data

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores

NET = dict(hidden_dims=(32, 32), embedding_features=8, embedding_width=16)


# ---- the budget ------------------------------------------------------------------------------------------------
def test_uci_sized_table_gets_the_reported_budget():
    budget = data_budget(57_214, 882, None)                      # UCI diabetes, patient level
    assert budget.batch_size == 1024 and budget.held_out == 1024   # 1.8% held out
    assert 14_500 <= budget.steps <= MAX_STEPS                    # the measured 15,000 steps
    assert "882 columns" in budget.reason and "held out" in budget.reason


def test_small_table_gets_few_passes_in_small_batches():
    budget = data_budget(80, 300, None)                           # a MIMIC demo's training half
    assert budget.held_out == 8 and budget.batch_size == 64
    passes = budget.steps * budget.batch_size / (80 - 8)
    assert PASSES <= passes < PASSES + 1                         # not 2,000 steps of 1,024 rows (25,600 passes)
    assert data_budget(30, 10, None).held_out == 0                # too few rows to hold any out
    assert data_budget(30, 10, None).batch_size == 30             # a batch is never more than the rows


def test_large_table_is_capped_and_a_given_batch_is_kept():
    assert data_budget(2_000_000, 900, None).steps == MAX_STEPS
    assert holdout_size(2_000_000) == 1024
    kept = data_budget(80_000, 230, 2048)
    assert kept.batch_size == 2048 and kept.steps == max(MIN_STEPS, int(np.ceil(PASSES * (80_000 - 1024) / 2048)))


def test_mid_sized_table_gets_the_floor_of_steps_only_where_the_stopping_rule_watches():
    mid = data_budget(3_200, 268, None)                            # CinC 2012's training half
    assert mid.steps == MIN_STEPS and mid.batch_size == 380 and mid.held_out == 160
    assert "raised to the 14,400 steps" in mid.reason
    assert MIN_STEPS * mid.batch_size / (3_200 - 160) < MEMORISATION_PASSES      # below the warning's passes
    below = data_budget(SMALL_TABLE_ROWS - 1, 268, None)           # small tables keep their 270 passes
    below_rows = SMALL_TABLE_ROWS - 1 - below.held_out
    assert below.steps == int(np.ceil(PASSES * below_rows / below.batch_size)) and "raised" not in below.reason
    private = data_budget(3_200, 268, 380, hold_out=False)         # DP: no stopping rule, no floor
    assert private.steps == int(np.ceil(PASSES * 3_200 / 380)) < MIN_STEPS


def test_given_steps_or_epochs_win_and_dp_holds_nothing_out():
    given = plan_budget(OptimisationSettings(steps=123, batch_size=50), False, False, 1000, 20, False)
    assert (given.steps, given.batch_size, given.held_out, given.source) == (123, 50, 0, "steps")
    official = plan_budget(OptimisationSettings(epochs=2, batch_size=100), True, False, 1000, 20, False)
    assert (official.steps, official.source) == (2 * 11, "epochs")
    private = plan_budget(OptimisationSettings(batch_size=100), False, False, 1000, 20, True)
    assert private.held_out == 0 and private.batch_size == 100 and private.source == "data"


def test_holdout_split_is_seeded_and_disjoint():
    train, held = split_holdout(100, 8, seed=3)
    again, held_again = split_holdout(100, 8, seed=3)
    assert np.array_equal(held, held_again) and np.array_equal(train, again)
    assert len(held) == 8 and np.array_equal(np.sort(np.concatenate([train, held])), np.arange(100))
    assert not np.array_equal(split_holdout(100, 8, seed=4)[1], held)


# ---- the stopping rule -----------------------------------------------------------------------------------------
class CountingStep:
    """A training step whose 'weights' are the number of steps taken."""

    description = "counting"

    def __init__(self) -> None:
        self.taken = torch.zeros(1)

    def __call__(self, step: int) -> StepLog:
        self.taken += 1
        return StepLog(1.0, 1)

    def state(self):
        return {"taken": self.taken.clone()}, {}

    def restore(self, tensors, meta, path):
        self.taken = tensors["taken"].clone()


def scripted(inner: CountingStep, curve, every=2, patience=3) -> HeldOutStopping:
    """Held-out loss falls to its minimum at step 8 and rises after (a model that starts memorising)."""
    return HeldOutStopping(inner, lambda: (curve(int(inner.taken)), 1.0), lambda: {"w": inner.taken.clone()},
                           every, patience)


def memorising(step: int) -> float:
    return abs(step - 8) + 1.0


def test_stops_after_patience_and_keeps_the_best_weights():
    step = scripted(CountingStep(), memorising)
    run = run_steps(step, 100, identity={}, progress=False)
    assert run.end_step == 8 + 3 * 2                               # three evaluations without improvement
    step.finish(run.end_step)
    assert step.best_weights()["w"].item() == 8
    summary = step.summary(100)
    assert summary["chosen_step"] == 8 and summary["stopped_early"] and summary["stopped_at"] == 14
    assert [e[0] for e in summary["evaluations"]] == [2, 4, 6, 8, 10, 12, 14]


def test_a_steadily_improving_run_uses_its_whole_budget():
    step = scripted(CountingStep(), lambda s: 100.0 / s)
    run = run_steps(step, 21, identity={}, progress=False)
    step.finish(run.end_step)
    assert run.end_step == 21 and step.summary(21)["chosen_step"] == 21   # the last, off-schedule score too


def test_a_flat_curve_runs_on_and_keeps_the_latest_weights_as_good_as_the_best():
    # UCI diabetes's shape: a held-out loss flat to within the tolerance after its drop (it wobbles in the last
    # digits); the run is not memorising, so it goes on to its budget and keeps the last weights
    flat = lambda s: 1.0 + (1.0 / s if s < 6 else (TOLERANCE / 2) * (s % 3 == 0))      # noqa: E731
    step = scripted(CountingStep(), flat)
    run = run_steps(step, 30, identity={}, progress=False)
    step.finish(run.end_step)
    assert run.end_step == 30 and step.best_weights()["w"].item() == 30
    # the same wobble, but one step worse than the tolerance: the last evaluation within it is kept
    worse = lambda s: flat(s) + (2 * TOLERANCE if s >= 20 else 0.0)                    # noqa: E731
    step = scripted(CountingStep(), worse)
    run = run_steps(step, 100, identity={}, progress=False)
    step.finish(run.end_step)
    assert step.best_weights()["w"].item() == 18 and run.end_step == 18 + 3 * 2


def test_a_stopped_run_resumes_to_the_same_choice(tmp_path):
    first = scripted(CountingStep(), memorising)
    run_steps(first, 100, identity={"x": 1}, checkpoint_dir=tmp_path, checkpoint_every=4, progress=False)
    meta, _ = read_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert meta["step"] == 14 and meta["stopping"]["stop_requested"]
    again = scripted(CountingStep(), memorising)
    run = run_steps(again, 100, identity={"x": 1}, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert (run.start_step, run.end_step) == (14, 14)               # stops at once
    again.finish(run.end_step)
    assert again.best_weights()["w"].item() == 8 and again.summary(100) == first.summary(100)


def test_an_interrupted_run_resumes_with_the_same_decisions(tmp_path):
    whole = scripted(CountingStep(), memorising)
    run_steps(whole, 100, identity={}, progress=False)

    class Interrupt(Exception):
        pass

    inner = CountingStep()
    cut = scripted(inner, lambda s: memorising(s) if s < 11 else (_ for _ in ()).throw(Interrupt()))
    with pytest.raises(Interrupt):
        run_steps(cut, 100, identity={}, checkpoint_dir=tmp_path, checkpoint_every=5, progress=False)
    resumed = scripted(CountingStep(), memorising)
    run = run_steps(resumed, 100, identity={}, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert run.start_step == 10 and run.end_step == 14
    resumed.finish(run.end_step)
    assert resumed.summary(100) == whole.summary(100)
    assert resumed.best_weights()["w"].item() == 8


# ---- in EHRDiff.fit --------------------------------------------------------------------------------------------
def test_default_fit_records_its_budget_and_choice(tmp_path, caplog):
    X = block_binary_data(120, 3, 4, seed=1)
    with caplog.at_level("INFO", logger="ehrdiff"):
        model = EHRDiff(**NET, seed=2).fit(X, progress=False)
    assert model.budget_["source"] == "data" and model.budget_["held_out"] == 8
    assert any("budget:" in r.getMessage() and "held out" in r.getMessage() for r in caplog.records)
    # the first line names the rows trained on, not the table's (issue 22)
    assert any(r.getMessage().startswith("training EHRDiff (default) on 112 rows x 12 columns (8 more held out)")
               for r in caplog.records)
    assert any("stopping rule:" in r.getMessage() for r in caplog.records)
    stop = model.stopping_
    assert model.train_steps_ == stop["stopped_at"] <= model.budget_["steps"]
    assert stop["chosen_step"] in [e[0] for e in stop["evaluations"]]
    best = min(e[1] for e in stop["evaluations"])     # the kept weights score the best (to the rule's tolerance)
    assert best <= stop["held_out_loss"] <= best * (1 + TOLERANCE)
    model.save(tmp_path / "run")
    saved = json.loads(Path(tmp_path / "run" / "model.json").read_text())
    assert saved["budget"] == model.budget_ and saved["stopping"] == stop
    loaded = EHRDiff.load(tmp_path / "run")
    assert loaded.stopping_ == stop
    assert np.array_equal(loaded.sample_matrix(20, seed=1), model.sample_matrix(20, seed=1))


def test_default_fit_is_reproducible_and_resumable(tmp_path):
    X = block_binary_data(120, 2, 3, seed=4)
    a = EHRDiff(**NET, seed=1, checkpoint_every=7).fit(X, progress=False, checkpoint_dir=tmp_path / "a")
    b = EHRDiff(**NET, seed=1, checkpoint_every=7).fit(X, progress=False, checkpoint_dir=tmp_path / "a",
                                                       resume=True)
    assert a.stopping_ == b.stopping_
    sa, sb = a.denoiser_.state_dict(), b.denoiser_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_given_steps_train_exactly_that_long_on_every_row():
    X = block_binary_data(120, 2, 3, seed=4)
    model = EHRDiff(**NET, steps=15, batch_size=32).fit(X, progress=False)
    assert model.train_steps_ == 15 and model.stopping_ is None and model.budget_["held_out"] == 0
