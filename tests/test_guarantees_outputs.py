"""docs/guarantees.md, outputs: nothing is written over without --overwrite and inputs never (issue 23, problem 2);
a second process writing the same output is refused (problem 4); a folder that takes no files is refused before
the work (problem 5); a sample is drawn and written in chunks with the exact counts of the whole (memory)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from ehrdiff.cli import main
from ehrdiff.data.io import read_table
from ehrdiff.diffusion.count_matching import apportion
from ehrdiff.models.ehrdiff import EHRDiff

from conftest import block_binary_data

TINY = ["--preset", "cpu-fast", "--steps", "5", "--batch-size", "32", "--set", "hidden_dims=[16,16]",
        "--set", "embedding_features=8", "--set", "embedding_width=16", "--set", "num_noise_levels=4"]

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: 2 shared cores


def run_cli(*args) -> int:
    return main(["-q", *map(str, args)])


def refused(capsys, rc: int, *fragments: str) -> str:
    """The command exited 1 with one line naming every fragment, and no traceback."""
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith("ehrdiff: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """data/ prepared by `ehrdiff prepare table` (train.parquet, test.parquet, summary.json) and a tiny run/ trained
    on data/train.parquet."""
    root = tmp_path_factory.mktemp("guarantees")
    frame = block_binary_data(120, 2, 3, seed=0)
    frame.insert(0, "subject_id", np.arange(500, 620))
    frame.to_csv(root / "raw.csv", index=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_cli("prepare", "table", "--input", root / "raw.csv", "--subject-col", "subject_id",
                       "-o", root / "data") == 0
        assert run_cli("train", root / "data" / "train.parquet", "-o", root / "run", *TINY) == 0
    finally:
        torch.set_num_threads(previous)
    return root


def test_no_command_writes_over_an_existing_output_or_any_input(project, tmp_path, capsys):
    """Problem 2: `sample -o data/train.parquet` replaced the training data; evaluate, prepare and demo replaced
    their earlier outputs silently."""
    data, run = project / "data", project / "run"
    before = snapshot(project)
    # sample over the model's training table, a prepared test table or the model's own files: never, not even
    # with --overwrite
    for target in (data / "train.parquet", data / "test.parquet"):
        refused(capsys, run_cli("sample", run, "-n", 5, "-o", target), str(target), "exists")
        refused(capsys, run_cli("sample", run, "-n", 5, "-o", target, "--overwrite"), str(target), "even with")
    refused(capsys, run_cli("sample", run, "-n", 5, "-o", run / "model.json", "--overwrite"), "model.json")
    refused(capsys, run_cli("sample", run, "-n", 5, "-o", run, "--format", "meds", "--overwrite"), "an input")
    # a file of one's own: only with --overwrite
    mine = tmp_path / "mine.csv"
    mine.write_text("keep\n")
    refused(capsys, run_cli("sample", run, "-n", 5, "-o", mine), "exists", "--overwrite")
    assert mine.read_text() == "keep\n"
    assert run_cli("sample", run, "-n", 5, "-o", mine, "--overwrite") == 0
    assert len(pd.read_csv(mine)) == 5
    # evaluate: report files already in DIR, or an input among them
    report = tmp_path / "report"
    report.mkdir()
    (report / "metrics.json").write_text("{}")
    evaluate = ["evaluate", "--train", data / "train.parquet", "--test", data / "test.parquet", "--no-figures"]
    refused(capsys, run_cli(*evaluate, "--synthetic", f"m={mine}", "-o", report), "metrics.json", "--overwrite")
    (report / "prevalence.csv").write_text("x\n")
    refused(capsys, run_cli(*evaluate, "--synthetic", f"m={report / 'prevalence.csv'}", "-o", report,
                            "--overwrite"), "an input")
    refused(capsys, run_cli(*evaluate, "--synthetic", f"m={mine}", "-o", data / "train.parquet", "--overwrite"))
    assert (report / "metrics.json").read_text() == "{}"
    # prepare over an earlier prepare, or over its own input
    refused(capsys, run_cli("prepare", "table", "--input", project / "raw.csv", "-o", data), "train.parquet",
            "--overwrite")
    refused(capsys, run_cli("prepare", "table", "--input", data / "train.parquet", "-o", data, "--overwrite"),
            "an input")
    # demo over an earlier demo
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "comparison.json").write_text("{}")
    refused(capsys, run_cli("demo", "-o", demo, "--steps", 2), "comparison.json", "--overwrite")
    assert (demo / "comparison.json").read_text() == "{}"
    assert snapshot(project) == before


HOLD_LOCK = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from ehrdiff.outputs import output_lock
    run = Path(sys.argv[1])
    with output_lock(run, inside=True):
        # what a training process leaves while it writes a checkpoint
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run / "checkpoints" / ".checkpoint.safetensors.abc123.tmp").write_bytes(b"being written")
        print("locked", flush=True)
        sys.stdin.readline()
""")


def test_a_second_process_writing_a_run_folder_is_refused(project, tmp_path, capsys):
    """Problem 4: two `ehrdiff train -o SAME` both ran; one with --resume or --overwrite deleted the other's
    temporary checkpoint."""
    run = tmp_path / "run"
    data = project / "data" / "train.parquet"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--resume"], ["--overwrite"]):
            refused(capsys, run_cli("train", data, "-o", run, *TINY, *extra),
                    str(run), f"is being written by another ehrdiff process (pid {holder.pid})")
        assert (run / "checkpoints" / ".checkpoint.safetensors.abc123.tmp").read_bytes() == b"being written"
        assert not (run / "model.json").exists()
        # sample, evaluate and prepare outputs are locked the same way (the lock beside a file output)
        out = tmp_path / "s.csv"
        with_lock = textwrap.dedent(f"""
            import sys
            from ehrdiff.outputs import output_lock
            with output_lock({str(out)!r}):
                print("locked", flush=True)
                sys.stdin.readline()
        """)
        second = subprocess.Popen([sys.executable, "-c", with_lock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert second.stdout.readline().strip() == "locked"
            refused(capsys, run_cli("sample", project / "run", "-n", 5, "-o", out), f"(pid {second.pid})")
            assert not out.exists()
        finally:
            second.communicate("\n", timeout=60)
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    # released: the lock file is gone and the folder can be trained into
    assert not (run / ".ehrdiff.lock").exists()
    assert run_cli("train", data, "-o", run, *TINY, "--resume") == 0
    assert (run / "model.json").exists() and not (run / ".ehrdiff.lock").exists()


@pytest.fixture
def read_only(monkeypatch):
    """Make folders refuse new files and folders, as a read-only folder does (chmod means nothing to root, who runs
    these tests in some environments): creating anything directly inside one raises PermissionError."""
    folders: list[Path] = []
    real_open, real_mkdir = os.open, os.mkdir

    def refused_here(path) -> bool:
        return any(Path(os.path.abspath(path)).parent == f for f in folders)

    def guarded_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and refused_here(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if refused_here(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    return lambda folder: folders.append(Path(os.path.abspath(folder)))


def test_unwritable_or_wrong_outputs_are_refused_before_the_work(project, tmp_path, capsys, monkeypatch, read_only):
    """Problem 5: a read-only folder gave a PermissionError traceback only after training or sampling; `sample -o`
    an existing folder failed with IsADirectoryError after every row was drawn."""
    drawn: list[int] = []
    real = EHRDiff._sample_rows
    monkeypatch.setattr(EHRDiff, "_sample_rows", lambda self, n, *a, **k: drawn.append(n) or real(self, n, *a, **k))
    steps: list[int] = []
    import ehrdiff.models.ehrdiff.model as model_module
    real_steps = model_module.run_steps
    monkeypatch.setattr(model_module, "run_steps", lambda *a, **k: steps.append(1) or real_steps(*a, **k))
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    refused(capsys, run_cli("sample", project / "run", "-n", 50, "-o", locked / "s.parquet"), str(locked),
            "cannot write there")
    refused(capsys, run_cli("train", project / "data" / "train.parquet", "-o", locked, *TINY), str(locked),
            "cannot write there")
    refused(capsys, run_cli("train", project / "data" / "train.parquet", "-o", locked / "run", *TINY), str(locked))
    for folder in (tmp_path / "a-folder", tmp_path / "a-folder.parquet"):
        folder.mkdir()
        refused(capsys, run_cli("sample", project / "run", "-n", 50, "-o", folder), "is a folder")
        assert list(folder.iterdir()) == []
    # a CSV needs at least 2 bytes a value: more than the disk has free is refused before the rows are drawn
    import shutil
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 10**6, 10**6))
    refused(capsys, run_cli("sample", project / "run", "-n", 10**6, "-o", tmp_path / "big.csv"), "needs at least",
            "1,000,000 rows x 7 columns")
    assert drawn == [] and steps == []
    assert list(locked.iterdir()) == [] and not (tmp_path / "big.csv").exists()


def fake_rows(self, n, seed, label, guidance, progress=False, desc="sampling"):
    """Encoded rows with any number of codes (0 to all), drawn from ``seed``: every count of the training histogram
    is reachable, so count matching must hit it exactly."""
    rng = np.random.default_rng(seed)
    codes = self.encoder_.code_columns()
    matrix = np.zeros((n, self.n_features_), dtype=np.float32)
    for row, k in enumerate(rng.integers(0, len(codes) + 1, n)):
        matrix[row, rng.choice(codes, k, replace=False)] = 1
    return matrix


def test_large_samples_are_drawn_and_written_in_chunks_with_exact_counts(project, tmp_path, monkeypatch):
    """Memory of sampling: rows are drawn and written chunk by chunk (here 300 rows) in every format, each
    count-matching round no larger than max_factor chunks, and the whole file still has exactly the training
    histogram of codes per row (apportioned to n), synthetic ids that run on from chunk to chunk and the same rows
    for the same seed."""
    from ehrdiff.data.writers import SyntheticWriter

    calls: list[int] = []
    monkeypatch.setattr(EHRDiff, "_sample_rows",
                        lambda self, n, *a, **k: calls.append(n) or fake_rows(self, n, *a, **k))
    monkeypatch.setattr(EHRDiff, "sample_chunk_rows", lambda self: 300)
    written: list[int] = []
    write = SyntheticWriter.write
    monkeypatch.setattr(SyntheticWriter, "write", lambda self, t: written.append(t.n_rows) or write(self, t))
    model = EHRDiff.load(project / "run")
    n = 2000
    out = tmp_path / "big.parquet"
    assert run_cli("sample", project / "run", "-n", n, "-o", out, "--seed", 4) == 0
    assert max(calls) <= 4 * 300 and len(calls) >= n // 300
    assert written == [300] * 6 + [200]                 # each chunk written as it comes, not the whole sample
    table = read_table(out)
    codes = table.frame.drop(columns="subject_id")
    counts = np.bincount(codes.to_numpy(dtype=int).sum(axis=1), minlength=len(model.code_histograms_["all"]))
    assert counts.tolist() == apportion(np.array(model.code_histograms_["all"]), n).tolist()
    ids = table.frame["subject_id"].to_numpy()
    assert (np.diff(ids) == 1).all()                                     # synthetic ids run on across chunks
    again = tmp_path / "again.parquet"
    assert run_cli("sample", project / "run", "-n", n, "-o", again, "--seed", 4) == 0
    pd.testing.assert_frame_equal(read_table(again).frame, table.frame)
    # every format streams the same rows; a conditional model keeps its balance and per-class counts exactly
    for name, fmt in (("big.csv.gz", "wide"), ("big.npz", "wide"), ("long.csv", "long"), ("meds", "meds")):
        written.clear()
        assert run_cli("sample", project / "run", "-n", n, "-o", tmp_path / name, "--seed", 4, "--format", fmt) == 0
        assert written == [300] * 6 + [200]
    np.testing.assert_array_equal(np.load(tmp_path / "big.npz")["data"], table.frame.to_numpy(dtype=np.float32))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "big.csv.gz"), table.frame, check_dtype=False)
    long = pd.read_csv(tmp_path / "long.csv")
    assert len(long) == int(codes.to_numpy().sum()) and long["subject_id"].is_monotonic_increasing
    subjects = pq.read_table(tmp_path / "meds" / "metadata" / "subject_splits.parquet").column("subject_id")
    assert subjects.to_pylist() == ids.tolist()


def test_conditional_chunks_keep_the_balance_and_each_class_histogram(monkeypatch):
    """--balance / --condition over chunks: the whole sample has exactly the asked class counts, and each class
    exactly its own training histogram of codes per row."""
    from ehrdiff.models.ehrdiff.conditioning import class_counts

    frame = block_binary_data(160, 2, 3, seed=1)
    frame["group"] = np.where(np.arange(160) % 4 == 0, "rare", "common")
    model = EHRDiff("cpu-fast", steps=3, batch_size=32, hidden_dims=[8], embedding_features=8, embedding_width=8,
                    num_noise_levels=4, condition="group").fit(frame, progress=False)
    monkeypatch.setattr(EHRDiff, "_sample_rows", fake_rows)
    n, balance = 1000, {"rare": 0.5, "common": 0.5}
    chunks = list(model.sample_chunks(n, seed=2, balance=balance, chunk_rows=128))
    assert [c.n_rows for c in chunks] == [128] * 7 + [104]
    whole = pd.concat([c.frame for c in chunks], ignore_index=True)
    expected = class_counts(n, model.condition_, balance=balance)
    assert [int((whole["group"] == g).sum()) for g in model.condition_.classes] == expected.tolist()
    for k, group in enumerate(model.condition_.classes):
        rows = whole[whole["group"] == group].drop(columns="group").to_numpy(dtype=int).sum(axis=1)
        histogram = np.array(model.code_histograms_["by_class"][k])
        assert np.bincount(rows, minlength=len(histogram)).tolist() == apportion(histogram, expected[k]).tolist()
    again = pd.concat([c.frame for c in model.sample_chunks(n, seed=2, balance=balance, chunk_rows=128)])
    pd.testing.assert_frame_equal(again.reset_index(drop=True), whole)
