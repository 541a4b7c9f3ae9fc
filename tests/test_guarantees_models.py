"""What a model folder guarantees (docs/guarantees.md, issue 23): synthetic ids tell nothing about real ones; every
reader trusts model.json only when its checksum matches; a diverging run is stopped and saves nothing; an unknown
format, a crafted folder or an impossible seed is refused with one line; a write killed midway leaves nothing
behind for long, and the model's files are readable by their owner only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from ehrdiff.cli import main
from ehrdiff.data.encoding import SYNTHETIC_ID_START, TableEncoder
from ehrdiff.data.table import Table
from ehrdiff.errors import ModelFileError
from ehrdiff.fileio import PRIVATE_MODE
from ehrdiff.models import load_model
from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.models.persistence import METADATA_FILE, WEIGHTS_FILE, save_model_dir
from ehrdiff.models.reference import Marginals
from ehrdiff.training import CHECKPOINT_FILE, StepLog, read_checkpoint, save_checkpoint
from ehrdiff.training.checkpoint import METADATA_KEY
from ehrdiff.training.loop import TrainingDiverged, resume_point, run_steps
from ehrdiff.training.distributed import distributed_context

from conftest import edit_model_json

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(steps=5, batch_size=16, hidden_dims=(16, 16), embedding_features=8, embedding_width=16, seed=0)


def patients(first_id: int = 9876000, n: int = 40) -> pd.DataFrame:
    """Patients with real-looking ids, two codes and a continuous value."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({"subject_id": np.arange(first_id, first_id + n), "a": (rng.random(n) < 0.3).astype(int),
                         "b": (rng.random(n) < 0.6).astype(int), "age": rng.normal(50, 10, n).round(1)})


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny EHRDiff model and a marginals reference, saved once for the module."""
    root = tmp_path_factory.mktemp("models")
    EHRDiff(**TINY).fit(patients(), progress=False).save(root / "ehrdiff")
    Marginals().fit(patients()).save(root / "marginals")
    return root


def test_a_run_without_dp_that_recorded_an_old_dp_default_still_loads(tmp_path, saved):
    """A model file keeps every setting; a DP-only setting an earlier version recorded at its default then is no
    request for DP, so the model loads and samples (a request of such a value is still refused)."""
    from ehrdiff.errors import EhrdiffError
    from ehrdiff.models.ehrdiff.config import PAST_DP_DEFAULTS

    old = tmp_path / "old"
    shutil.copytree(saved / "ehrdiff", old)
    edit_model_json(old, lambda m: m["config"].update({k: v[0] for k, v in PAST_DP_DEFAULTS.items()}))
    model = load_model(old)
    assert model.config.privacy.dp_marginals_share == PAST_DP_DEFAULTS["dp_marginals_share"][0]
    assert len(model.sample(5, seed=0)) == 5
    with pytest.raises(EhrdiffError, match="'dp_marginals_share' needs DP training"):
        EHRDiff(dp_marginals_share=0.3)


# ---- 1. synthetic ids ------------------------------------------------------------------------------------------
def test_synthetic_ids_carry_nothing_of_the_real_ids(tmp_path, saved):
    """The ids of synthetic rows are 1, 2, 3, ... whatever the real ids were, for every model, and nothing in the
    model file depends on them; a model file of ehrdiff 0.1 (with ``id_start``) still loads and gets the same ids."""
    first, second = (TableEncoder().fit(Table.from_frame(patients(start))) for start in (9876000, 5))
    assert first.to_dict() == second.to_dict()                  # nothing kept of the ids
    decoded = first.inverse_transform(np.zeros((3, first.width)))
    assert decoded.frame["subject_id"].tolist() == [SYNTHETIC_ID_START + i for i in range(3)] == [1, 2, 3]
    for name in ("ehrdiff", "marginals"):
        assert "98760" not in (saved / name / METADATA_FILE).read_text()
        ids = load_model(saved / name).sample(4, seed=1)["subject_id"].tolist()
        assert ids == [1, 2, 3, 4], name
    old = tmp_path / "old"
    shutil.copytree(saved / "ehrdiff", old)
    edit_model_json(old, lambda m: m["encoder"]["columns"][0].update(id_start=9876040))
    assert EHRDiff.load(old).sample(2, seed=1)["subject_id"].tolist() == [1, 2]


# ---- 2. verified metadata in every reader ----------------------------------------------------------------------
def test_evaluate_refuses_an_edited_privacy_guarantee(tmp_path, saved, capsys):
    """``evaluate --model`` reads the privacy guarantee only from a model.json whose checksum matches, as
    ``sample`` does: an epsilon edited by hand is refused, not reported."""
    from ehrdiff.cli.evaluate import privacy_facts

    run = tmp_path / "private"
    model = Marginals().fit(patients())
    content = {"model": "marginals", "config": model.get_params(), "encoder": model.encoder_.to_dict(),
               "columns": model.columns_, "uniques": model.uniques_, "data_fingerprint": model.fingerprint_,
               "dp_epsilon": 0.995, "dp_delta": 1e-5}
    save_model_dir(run, content, model._tensors())
    assert privacy_facts(str(run)) == ({"dp_epsilon": 0.995, "dp_delta": 1e-5}, {})
    edit_model_json(run, lambda m: m.update(dp_epsilon=0.01), rehash=False)
    with pytest.raises(ModelFileError, match="modified after saving"):
        privacy_facts(str(run))
    data = tmp_path / "real.csv"
    patients().to_csv(data, index=False)
    assert main(["-q", "evaluate", "--train", str(data), "--test", str(data), "--synthetic", f"s={data}",
                 "--model", f"s={run}", "--no-figures", "--no-references", "-o", str(tmp_path / "report")]) == 1
    assert "model.json was modified after saving" in one_line_error(capsys)


# ---- 3. divergence ---------------------------------------------------------------------------------------------
class ScriptedStep:
    """A training step whose per-row losses are given, with one weight that checkpoints record (counting the steps
    taken; NaN from step ``nan_from``)."""

    description = "scripted"

    def __init__(self, losses, nan_from=None):
        self.losses, self.nan_from, self.weight = losses, nan_from, torch.zeros(1)

    def __call__(self, step):
        self.weight += float("nan") if step == self.nan_from else 1
        return StepLog(torch.tensor(self.losses[step] * 4.0), 4)

    def state(self):
        return {"weight": self.weight.clone()}, {}

    def restore(self, tensors, meta, path):
        self.weight = tensors["weight"].clone()


@pytest.mark.parametrize("bad, nan_from, where", [
    (float("nan"), None, "step 7 of 10: the loss became nan"), (3e12, None, "step 7 of 10: the loss exploded"),
    (0.45, 6, "step 10 of 10: the weights are no longer finite")])       # the loss of the last step is still finite
def test_a_diverging_run_stops_at_its_step_and_keeps_the_checkpoint_from_before(tmp_path, bad, nan_from, where):
    losses = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, bad, 0.4, 0.3, 0.2]
    with pytest.raises(TrainingDiverged, match=f"diverged at {where}.*checkpoint from before") as caught:
        run_steps(ScriptedStep(losses, nan_from), 10, identity={"run": 1}, checkpoint_dir=tmp_path,
                  checkpoint_every=5, log_every=4, progress=False)
    assert "\n" not in str(caught.value)
    meta, tensors = read_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert meta["step"] == 5 and tensors["weight"].item() == 5          # the last checkpoint before step 7


def test_a_diverging_training_saves_no_model(tmp_path, capsys):
    """``ehrdiff train --set lr=1e30``: an error naming the step, no model.json; a GAN the same (same loop)."""
    data = tmp_path / "train.csv"
    patients().to_csv(data, index=False)
    for model, lr in (("ehrdiff", "1e30"), ("emrwgan", "1e30")):
        run = tmp_path / model
        assert main(["-q", "train", str(data), "--model", model, "-o", str(run), "--steps", "30",
                     "--set", f"lr={lr}"]) == 1, model
        assert "training diverged at step" in one_line_error(capsys)
        assert not (run / METADATA_FILE).exists()


# ---- 4. unknown format ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [999, "1", None, True])
def test_an_unknown_format_version_is_refused(tmp_path, saved, version):
    """In model.json, and in a checkpoint (whose format was already checked)."""
    from safetensors.torch import save_file

    folder = tmp_path / "m"
    shutil.copytree(saved / "marginals", folder)
    edit_model_json(folder, lambda m: m.update(format_version=version), rehash=False)
    with pytest.raises(ModelFileError, match=r"model format .* is not one this version of ehrdiff reads"):
        load_model(folder)
    checkpoint = tmp_path / CHECKPOINT_FILE
    save_file({"w": torch.zeros(1)}, str(checkpoint), metadata={METADATA_KEY: json.dumps({"format": version})})
    with pytest.raises(ModelFileError, match="checkpoint format .* is not supported"):
        read_checkpoint(checkpoint)


# ---- 5. crafted folders, impossible seeds -----------------------------------------------------------------------
def nested(folder):
    (folder / METADATA_FILE).write_text("[" * 100_000 + "]" * 100_000)


def weights_folder(folder):
    (folder / WEIGHTS_FILE).unlink()
    (folder / WEIGHTS_FILE).mkdir()


CRAFTED = {
    "deeply nested model.json": ("ehrdiff", nested, "nested too deeply"),
    "weights replaced by a folder": ("ehrdiff", weights_folder, "weights.safetensors: not a file"),
    "encoder as text": ("ehrdiff", lambda f: edit_model_json(f, lambda m: m.update(encoder="abc")), "'encoder'"),
    "encoder column of the wrong type": ("ehrdiff", lambda f: edit_model_json(
        f, lambda m: m["encoder"]["columns"][-1].update(low="x")), "'low' has the wrong type"),
    "encoder step below 0": ("ehrdiff", lambda f: edit_model_json(f, lambda m: next(
        c for c in m["encoder"]["columns"] if c["coding"] == "continuous").update(step=-1.0)), "'step' must be"),
    "tie shares of no summary rule": ("ehrdiff", lambda f: edit_model_json(
        f, lambda m: m.update(tie_shares={"age": [0.5] * 5})), "'tie_shares' must be"),
    "pair counts of a code column not there": ("ehrdiff", lambda f: edit_model_json(
        f, lambda m: m.update(code_pairs={"codes": [999], "counts": [[1.0]]})), "'code_pairs' must be"),
    "histogram of text": ("ehrdiff", lambda f: edit_model_json(
        f, lambda m: m.update(codes_per_row_histograms={"all": "abc", "by_class": None})), "codes_per_row"),
    "histogram of negative counts": ("ehrdiff", lambda f: edit_model_json(
        f, lambda m: m.update(codes_per_row_histograms={"all": [-1, 3], "by_class": None})), "codes_per_row"),
    "reference values not lists": ("marginals", lambda f: edit_model_json(
        f, lambda m: m.update(uniques="abc")), "'uniques'"),
    "reference values too few": ("marginals", lambda f: edit_model_json(
        f, lambda m: m.update(uniques=[[0]] * len(m["uniques"]))), "do not fit model.json"),
    "reference config a list": ("marginals", lambda f: edit_model_json(f, lambda m: m.update(config=[1])),
                                "'config'"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_model_folder_is_refused_with_one_line(tmp_path, saved, capsys, case):
    """Each field of model.json is type-checked on load, even when the checksum was recomputed to match."""
    model, craft, message = CRAFTED[case]
    folder = tmp_path / "crafted"
    shutil.copytree(saved / model, folder)
    craft(folder)
    assert main(["-q", "sample", str(folder), "-n", "3", "-o", str(tmp_path / "out.csv")]) == 1
    assert message in one_line_error(capsys)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("command", [["train", "data.csv", "-o", "run"], ["sample", "run", "-n", "3", "-o", "x.csv"],
                                     ["demo", "-o", "demo"]])
def test_a_seed_out_of_range_is_a_usage_error(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["-q", *command, "--seed", "99999999999999999999"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert "--seed: must be a whole number from 0 to 4294967295" in err.splitlines()[-1]
    with pytest.raises(Exception, match="setting 'seed' must be a whole number"):
        EHRDiff(seed=2**70)


# ---- 6. leftovers of killed writes, permissions ----------------------------------------------------------------
def test_leftovers_of_killed_writes_are_removed_and_model_files_are_private(tmp_path):
    """A temporary file of a write whose process is gone is removed by the next write of the same file (and by a
    resume, for checkpoints); one of a process still writing is kept. Both files of a model are mode 0600."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = tmp_path / "run"
    folder.mkdir()
    long_ago = time.time() - 3600
    stale = [folder / f".{METADATA_FILE}.{gone.pid}.k1ll.tmp", folder / f".{WEIGHTS_FILE}.a8c3.tmp",  # 0.1's name
             folder / "checkpoints" / f".{CHECKPOINT_FILE}.{gone.pid}.x9.tmp"]
    live = [folder / f".{METADATA_FILE}.{os.getpid()}.w1.tmp",                  # this process, still writing
            folder / "checkpoints" / f".{CHECKPOINT_FILE}.{gone.pid}.new.tmp"]   # changed after this process began
    for path in stale + live:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half")
    for path in stale + live[:1]:
        os.utime(path, (long_ago, long_ago))
    Marginals().fit(patients()).save(folder)
    resume_point(ScriptedStep([]), folder / "checkpoints", True, {}, distributed_context("cpu"))
    assert [p.exists() for p in stale] == [False] * 3 and all(p.exists() for p in live)
    save_checkpoint(folder / "checkpoints" / CHECKPOINT_FILE, 1, 1, {}, {"w": torch.zeros(1)}, {})
    written = (METADATA_FILE, WEIGHTS_FILE, f"checkpoints/{CHECKPOINT_FILE}")
    assert {name: (folder / name).stat().st_mode & 0o777 for name in written} == dict.fromkeys(written, PRIVATE_MODE)
