"""``ehrdiff train`` and ``ehrdiff sample``: formats, overrides, other models, resume after kill -9, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ehrdiff.cli import main
from ehrdiff.data.io import read_table, write_table
from ehrdiff.data.table import Table
from ehrdiff.models import REGISTRY, load_model
from ehrdiff.models.base import Generator, as_table, check_sample_size
from ehrdiff.models.persistence import load_model_dir, save_model_dir

from conftest import block_binary_data

EXE = str(Path(sys.executable).parent / "ehrdiff")
TINY = ["--preset", "cpu-fast", "--steps", "20", "--batch-size", "32", "--set", "hidden_dims=[16,16]",
        "--set", "embedding_features=8", "--set", "embedding_width=16"]


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores


def run_cli(*args) -> int:
    return main(["-q", *map(str, args)])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained through the CLI on a table with binary, continuous and categorical columns."""
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    frame = block_binary_data(150, 2, 3, seed=0)
    frame["age"] = rng.integers(20, 90, len(frame))
    frame["ward"] = rng.choice(["icu", "med", "surg"], len(frame))
    data = folder / "train.csv"
    frame.to_csv(data, index=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_cli("train", data, "-o", folder / "run", *TINY, "--seed", "2", "--set", "lr=0.002") == 0
    finally:
        torch.set_num_threads(previous)
    return folder, frame


# ---- what works ------------------------------------------------------------------------------------------------
def test_train_writes_model_and_checkpoint(trained):
    folder, frame = trained
    run = folder / "run"
    assert (run / "model.json").exists() and (run / "weights.safetensors").exists()
    assert (run / "checkpoints" / "checkpoint.safetensors").exists()
    meta, _ = load_model_dir(run)
    assert meta["model"] == "ehrdiff" and meta["preset"] == "cpu-fast"
    assert meta["config"]["lr"] == 0.002 and meta["config"]["hidden_dims"] == [16, 16]   # --set reached the model
    assert meta["config"]["steps"] == 20 and meta["config"]["batch_size"] == 32 and meta["config"]["seed"] == 2
    assert meta["columns"] == list(frame.columns) and meta["n_rows"] == len(frame)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".csv.gz", ".npz"])
def test_sample_writes_every_format(trained, suffix, tmp_path):
    folder, frame = trained
    out = tmp_path / f"synthetic{suffix}"
    assert run_cli("sample", folder / "run", "-n", 25, "-o", out, "--seed", 1) == (1 if suffix == ".npz" else 0)
    if suffix == ".npz":          # the table has a text column: NPZ is refused, nothing written
        assert not out.exists()
        return
    back = read_table(out)
    assert list(back.frame.columns) == list(frame.columns) and back.n_rows == 25
    assert set(back.frame["ward"]) <= {"icu", "med", "surg"}


def test_same_seed_same_file(trained, tmp_path):
    folder, _ = trained
    for name, seed in [("a", 5), ("b", 5), ("c", 6)]:
        assert run_cli("sample", folder / "run", "-n", 40, "-o", tmp_path / f"{name}.csv", "--seed", seed) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()

def test_sampling_shows_a_progress_bar_unless_quiet(trained, tmp_path, capsys):
    folder, _ = trained
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["sample", str(folder / "run"), "-n", "40", "-o", str(a), "--seed", "5"]) == 0
    assert "sampling: 100%" in capsys.readouterr().err
    assert run_cli("sample", folder / "run", "-n", 40, "-o", b, "--seed", 5) == 0
    assert "sampling" not in capsys.readouterr().err
    assert a.read_bytes() == b.read_bytes()          # the bar changes nothing in the rows



def test_sampling_settings_can_change_for_a_trained_model(trained, tmp_path, capsys):
    folder, _ = trained
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run_cli("sample", folder / "run", "-n", 40, "-o", a, "--seed", 5) == 0
    assert run_cli("sample", folder / "run", "-n", 40, "-o", b, "--seed", 5, "--set", "num_noise_levels=4",
                   "--set", "codes_per_row=model") == 0
    assert a.read_bytes() != b.read_bytes()
    rc = run_cli("sample", folder / "run", "-n", 40, "-o", b, "--set", "lr=0.1")
    assert_one_line_error(capsys, rc, "changes training, not sampling")


def test_sample_writes_long_and_meds_formats(trained, tmp_path):
    folder, frame = trained
    binary = [c for c in frame.columns if c.startswith("b")]          # block_binary_data names: b{block}_c{code}
    assert run_cli("sample", folder / "run", "-n", 30, "-o", tmp_path / "wide.parquet", "--seed", 3) == 0
    assert run_cli("sample", folder / "run", "-n", 30, "-o", tmp_path / "long.csv", "--seed", 3,
                   "--format", "long") == 0
    assert run_cli("sample", folder / "run", "-n", 30, "-o", tmp_path / "meds", "--seed", 3, "--format", "meds") == 0
    wide = read_table(tmp_path / "wide.parquet").frame
    long = pd.read_csv(tmp_path / "long.csv")
    # every 1 in a binary column of the wide table is one (subject, code) event of the long table, and nothing else
    expected = int(wide[binary].to_numpy().sum())
    assert int(long["code"].isin(binary).sum()) == expected
    assert (tmp_path / "meds" / "metadata" / "dataset.json").exists()
    assert list((tmp_path / "meds" / "data").glob("*.parquet"))


@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
def test_train_reads_parquet_and_npz(suffix, tmp_path):
    frame = block_binary_data(80, 2, 2, seed=1)
    data = tmp_path / f"train{suffix}"
    write_table(Table.from_frame(frame), data)
    assert run_cli("train", data, "-o", tmp_path / "run", *TINY) == 0
    assert run_cli("sample", tmp_path / "run", "-n", 10, "-o", tmp_path / "s.npz") == 0
    assert list(read_table(tmp_path / "s.npz").frame.columns) == list(frame.columns)


class CountingModel(Generator):
    """A stand-in for a baseline registered by another module: explicit keyword settings, no preset."""

    def __init__(self, steps: int = 1, batch_size: int = 8, seed: int = 0, width: float = 1.0) -> None:
        self.steps, self.batch_size, self.seed, self.width = steps, batch_size, seed, width

    def fit(self, data, *, checkpoint_dir=None, resume=False, progress=True):
        table = as_table(data)
        self.columns_, self.mean_ = table.columns, table.frame.mean(numeric_only=True).to_numpy()
        return self

    def sample_table(self, n, seed=0):
        n = check_sample_size(n)
        rng = np.random.default_rng(seed)
        return Table.from_frame(pd.DataFrame((rng.random((n, len(self.mean_))) < self.mean_).astype(int),
                                             columns=self.columns_))

    def save(self, path):
        settings = {"steps": self.steps, "batch_size": self.batch_size, "seed": self.seed, "width": self.width,
                    "columns_": self.columns_}
        save_model_dir(path, {"model": self.name, "settings": settings}, {"mean": torch.tensor(self.mean_)})

    @classmethod
    def load(cls, path):
        meta, tensors = load_model_dir(path)
        model = cls(**{k: meta["settings"][k] for k in ("steps", "batch_size", "seed", "width")})
        model.columns_, model.mean_ = meta["settings"]["columns_"], tensors["mean"].numpy()
        return model


@pytest.fixture
def counting_model():
    CountingModel.name = "counting-test"
    REGISTRY["counting-test"] = CountingModel
    yield
    REGISTRY.pop("counting-test")


def test_other_registered_models_train_through_the_same_command(counting_model, tmp_path, capsys):
    data = tmp_path / "d.csv"
    block_binary_data(60, 2, 2, seed=2).to_csv(data, index=False)
    assert run_cli("train", data, "-o", tmp_path / "run", "--model", "counting-test", "--steps", 3,
                   "--set", "width=2.5", "--seed", 4) == 0
    meta, _ = load_model_dir(tmp_path / "run")
    assert meta["settings"]["width"] == 2.5 and meta["settings"]["steps"] == 3 and meta["settings"]["seed"] == 4
    assert isinstance(load_model(tmp_path / "run"), CountingModel)
    assert run_cli("sample", tmp_path / "run", "-n", 5, "-o", tmp_path / "s.csv") == 0
    capsys.readouterr()
    assert run_cli("train", data, "-o", tmp_path / "r2", "--model", "counting-test", "--set", "depth=3") == 1
    assert "does not take setting 'depth'" in capsys.readouterr().err
    assert run_cli("train", data, "-o", tmp_path / "r2", "--model", "counting-test", "--preset", "paper-mimic") == 1
    assert "does not take --preset" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


# ---- resume after kill -9 ------------------------------------------------------------------------------------------
def test_resume_after_sigkill_ends_with_the_same_model(tmp_path):
    data = tmp_path / "d.csv"
    block_binary_data(400, 3, 4, seed=3).to_csv(data, index=False)
    args = [EXE, "-q", "train", str(data), "--preset", "cpu-fast", "--steps", "300", "--batch-size", "64",
            "--checkpoint-every", "25", "--set", "hidden_dims=[64,64]", "--seed", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*args, "-o", str(killed)], env=env, stderr=subprocess.PIPE)
    checkpoint = killed / "checkpoints" / "checkpoint.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert checkpoint.exists() and not (killed / "model.json").exists()       # killed mid-run

    resumed = subprocess.run([*args, "-o", str(killed), "--resume"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = subprocess.run([*args, "-o", str(tmp_path / "straight")], env=env, capture_output=True, text=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]

    from safetensors.torch import load_file
    a, b = load_file(str(killed / "weights.safetensors")), load_file(str(tmp_path / "straight" / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(load_model(killed).sample(100, seed=3),
                                  load_model(tmp_path / "straight").sample(100, seed=3))


# ---- bad input -------------------------------------------------------------------------------------------------------
def make_bad_inputs(folder: Path) -> dict[str, Path]:
    files = {}
    files["missing"] = folder / "does-not-exist.csv"
    (folder / "empty.csv").write_bytes(b"")
    files["empty"] = folder / "empty.csv"
    (folder / "junk.parquet").write_bytes(os.urandom(300))
    files["not a table (parquet)"] = folder / "junk.parquet"
    (folder / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    files["not a table (npz)"] = folder / "junk.npz"
    (folder / "table.xlsx").write_bytes(b"whatever")
    files["unknown format"] = folder / "table.xlsx"
    good = block_binary_data(20, 1, 3, seed=0)
    kinds = {c: "binary" for c in good.columns}
    two = good.astype(float).copy()
    two.iloc[4, 1] = 2
    write_table(Table(two, kinds), folder / "two.parquet")        # Table() without validation: a bad file
    files["2 in a binary column"] = folder / "two.parquet"
    nan = good.astype(float).copy()
    nan.iloc[3, 0] = np.nan
    write_table(Table(nan, kinds), folder / "nan.parquet")
    files["NaN in a binary column"] = folder / "nan.parquet"
    inf = good.assign(lab=np.linspace(0, 1, 20))
    inf.loc[7, "lab"] = np.inf
    inf.to_csv(folder / "inf.csv", index=False)
    files["infinite value"] = folder / "inf.csv"
    good.iloc[:0].to_csv(folder / "no-rows.csv", index=False)
    files["zero rows"] = folder / "no-rows.csv"
    with open(folder / "no-columns.npz", "wb") as f:
        np.savez(f, data=np.zeros((5, 0), dtype=np.float32))
    files["zero columns"] = folder / "no-columns.npz"
    (folder / "blank.csv").write_text("\n\n\n")
    files["blank csv"] = folder / "blank.csv"
    return files


def assert_one_line_error(capsys, rc: int, expect: str) -> None:
    err = capsys.readouterr().err
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ehrdiff: error:"), err
    assert "Traceback" not in err
    assert expect.lower() in lines[0].lower(), lines[0]


BAD_TRAIN_MESSAGES = {"missing": "not found", "empty": "empty", "not a table (parquet)": "could not read",
                      "not a table (npz)": "could not read", "unknown format": "unknown file type",
                      "2 in a binary column": "binary column 'b0_c1' row 4", "NaN in a binary column": "row 3",
                      "infinite value": "infinite", "zero rows": "no rows", "zero columns": "no columns",
                      "blank csv": "no rows or columns"}


def test_bad_training_data_is_refused_and_nothing_is_touched(tmp_path, capsys):
    files = make_bad_inputs(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text('{"existing": true}')
    (run / "weights.safetensors").write_bytes(b"old weights")
    before = snapshot(tmp_path)
    for name, path in files.items():
        rc = run_cli("train", path, "-o", run, "--overwrite", *TINY)
        assert_one_line_error(capsys, rc, BAD_TRAIN_MESSAGES[name])
    assert snapshot(tmp_path) == before


def test_bad_settings_and_run_folders_are_refused(trained, tmp_path, capsys):
    folder, _ = trained
    data = folder / "train.csv"
    cases = [
        (["--set", "learning_rate=1"], "unknown EHRDiff setting 'learning_rate'"),
        (["--set", "lr"], "KEY=VALUE"),
        (["--set", "hidden_dims=wide"], "wrong type"),
        (["--preset", "paper-xl"], "unknown preset"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--steps", "0"], "'steps' must be positive"),
        (["--steps", "5", "--set", "steps=6"], "contradicts"),
    ]
    for extra, expect in cases:
        assert_one_line_error(capsys, run_cli("train", data, "-o", tmp_path / "new", *extra), expect)
    assert not (tmp_path / "new").exists()
    before = snapshot(folder / "run")
    assert_one_line_error(capsys, run_cli("train", data, "-o", folder / "run", *TINY), "already holds a model")
    (tmp_path / "a-file").write_text("x")
    assert_one_line_error(capsys, run_cli("train", data, "-o", tmp_path / "a-file", *TINY), "not a folder")
    assert snapshot(folder / "run") == before


def test_resume_with_other_settings_is_refused(trained, tmp_path, capsys):
    folder, _ = trained
    import shutil
    run = tmp_path / "run"
    shutil.copytree(folder / "run", run)
    before = snapshot(run)
    rc = run_cli("train", folder / "train.csv", "-o", run, "--resume", *TINY, "--seed", "9", "--set", "lr=0.002")
    assert_one_line_error(capsys, rc, "different run")
    assert snapshot(run) == before


def test_bad_sample_requests_leave_the_output_untouched(trained, tmp_path, capsys):
    folder, _ = trained
    import shutil
    out = tmp_path / "out.csv"
    out.write_text("precious,existing\n1,2\n")
    good = tmp_path / "good"
    shutil.copytree(folder / "run", good)
    incomplete, tampered_w, tampered_j = tmp_path / "incomplete", tmp_path / "tampered-w", tmp_path / "tampered-j"
    for copy in (incomplete, tampered_w, tampered_j):
        shutil.copytree(good, copy)
    (incomplete / "weights.safetensors").unlink()
    weights = bytearray((tampered_w / "weights.safetensors").read_bytes())
    weights[-3] ^= 0x01
    (tampered_w / "weights.safetensors").write_bytes(bytes(weights))
    meta = json.loads((tampered_j / "model.json").read_text())
    meta["columns"][0] = "renamed"
    meta["encoder"]["columns"][0]["name"] = "renamed"
    (tampered_j / "model.json").write_text(json.dumps(meta))
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "model.json").write_text("{not json")
    (tmp_path / "garbled" / "weights.safetensors").write_bytes(b"")
    cases = [
        ([tmp_path / "no-such-run", "-n", 5], "not found"),
        ([incomplete, "-n", 5], "incomplete"),
        ([tampered_w, "-n", 5], "checksum"),
        ([tampered_j, "-n", 5], "modified"),
        ([tmp_path / "garbled", "-n", 5], "not valid JSON"),
        ([good, "-n", 0], "positive whole number"),
        ([good, "-n", -4], "positive whole number"),
        ([good, "-n", "ten"], "positive whole number"),
    ]
    before = snapshot(tmp_path)
    for args, expect in cases:
        assert_one_line_error(capsys, run_cli("sample", *args, "-o", out), expect)
    assert_one_line_error(capsys, run_cli("sample", good, "-n", 5, "-o", tmp_path / "out.xlsx"), "unknown file type")
    assert snapshot(tmp_path) == before


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
    """The same guarantee through the installed console script (not just main())."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([EXE, "train", str(tmp_path / "missing.parquet"), "-o", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("ehrdiff: error:"), done.stderr
    assert "file not found" in done.stderr and not (tmp_path / "run").exists()


def test_train_help_lists_the_registered_models_and_the_presets(counting_model, capsys, monkeypatch):
    from ehrdiff.models.ehrdiff import EHRDiff

    monkeypatch.setenv("COLUMNS", "500")          # one line per option: no wrapping inside names
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert f"generator to train: {', '.join(sorted(REGISTRY))} (default: ehrdiff)" in text
    assert "counting-test" in text and "{models}" not in text
    assert EHRDiff().preset == "default"
    assert "EHRDiff's named settings: default, paper-mimic, paper-cinc, paper-ecg, cpu-fast (default: default)" in text
