"""The experiment runner (``ehrdiff experiment paper``): quick mode end to end on the MIMIC-IV demo, the data-scale
experiment and resume on the UCI fixture, PTB beats (continuous columns) on their fixture, and the budget, subsets
and tables checked against values computed here.

Timing on the 2-core CPU: about 60 s of CPU time, nearly all in the three end-to-end runs (the report figures are
left out of the first and third: their cost is matplotlib drawing, which the second one exercises)."""

from __future__ import annotations

import gzip
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ehrdiff.cli import main
from ehrdiff.data.io import read_table
from ehrdiff.errors import DataError, EhrdiffError
from ehrdiff.experiments import spec as S
from ehrdiff.experiments.runner import Run, training_subset
from ehrdiff.experiments.tables import build_results, cell, summarize

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MODELS = ["ehrdiff", "medgan", "emrwgan", "corgan", "marginals", "resample"]
NUMBER = r"-?[\d,]+\.?\d*"


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory) -> Path:
    """The MIMIC-IV demo in ../shared/data when present, else the 20-patient fixture laid out the same way."""
    if (SHARED / S.DATASETS["mimic-iv-demo"].inputs["diagnoses"]).exists():
        return SHARED
    root = tmp_path_factory.mktemp("data")
    target = root / S.DATASETS["mimic-iv-demo"].inputs["diagnoses"]
    target.parent.mkdir(parents=True)
    with open(FIXTURES / "mimic4" / "diagnoses_icd.csv", "rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return root


def run_cli(*args: str) -> int:
    return main(["-q", "experiment", "paper", *args])


@pytest.fixture(scope="module")
def quick(mimic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quick") / "exp"
    assert run_cli("--dataset", "mimic-iv-demo", "--quick", "--seeds", "2", "--data-root", str(mimic_root),
                   "--threads", "1", "--eval", "figures=false", "-o", str(out)) == 0
    return out


def markdown_rows(text: str, section: str) -> dict[str, list[str]]:
    """{first cell: other cells} of the first table under '## section'."""
    block = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in block.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


# ---- end to end ----------------------------------------------------------------------------------------------------
def test_quick_mode_writes_every_file_and_a_finite_row_per_model(quick):
    train = read_table(quick / "data" / "train.parquet")
    for name in ("results.json", "results.md", "report/metrics.json", "report/report.md", "report/report.html",
                 "data/summary.json"):
        assert (quick / name).is_file(), name
    prevalence = pd.read_csv(quick / "report" / "prevalence.csv")      # per code and synthetic set
    assert {"dataset", "code", "training", "synthetic"} <= set(prevalence.columns)
    assert "ehrdiff/seed-1" in set(prevalence["dataset"]) and (quick / "report" / "dimwise_prediction.csv").is_file()
    for model in MODELS:
        for seed in (0, 1):
            folder = quick / "runs" / model / f"seed-{seed}"
            assert (folder / "model.json").is_file()
            record = json.loads((folder / "run.json").read_text())
            assert record["status"] == "finished" and record["key"]["seed"] == seed
            synthetic = read_table(folder / "synthetic.parquet")
            assert synthetic.n_rows == train.n_rows                 # as many rows as the training set
            assert synthetic.columns == train.columns
    text = (quick / "results.md").read_text()
    assert "steps:50 at batch 64" in text
    for section in ("Fidelity", "Privacy"):
        rows = markdown_rows(text, section)
        for model in MODELS:
            assert model in rows, (section, model)
            for value in rows[model]:
                numbers = [float(x.replace(",", "")) for x in re.findall(NUMBER, value)]
                assert numbers and all(math.isfinite(x) for x in numbers), (section, model, value)


def test_quick_mode_tables_are_mean_and_std_over_the_seeds(quick):
    results = json.loads((quick / "results.json").read_text())
    report = json.loads((quick / "report" / "metrics.json").read_text())["datasets"]
    for model in MODELS:
        for key in ("prevalence_spearman", "discriminator_auroc", "mia_auroc", "codes_per_patient_mean"):
            values = [report[f"{model}/seed-{s}"][key] for s in (0, 1)]
            summary = results["models"][model][key]
            assert summary["mean"] == pytest.approx(sum(values) / 2)
            assert summary["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))   # ddof 1, n = 2
        # distinct rows, computed here from the synthetic file
        rates = []
        for s in (0, 1):
            table = read_table(quick / "runs" / model / f"seed-{s}" / "synthetic.parquet")
            rows = table.frame[table.feature_columns].itertuples(index=False, name=None)
            rates.append(len(set(rows)) / table.n_rows)
        assert results["models"][model]["distinct_row_rate"]["mean"] == pytest.approx(np.mean(rates))
    head = results["experiment"]
    assert head["budget"]["steps"] == 50 and head["budget"]["batch_size"] == 64 and head["seeds"] == [0, 1]
    assert head["steps_per_model"]["medgan"]["pretraining_steps"] == 5
    assert head["steps_per_model"]["emrwgan"]["critic_steps"] == 2 * 50      # quick: n_critic = 2
    assert results["references"]["reference:train-resample"]["exact_copy_rate"] == 1.0


def test_data_scale_experiment_and_resume(tmp_path, caplog):
    out = tmp_path / "exp"
    args = ["--dataset", "uci-diabetes", "--input", f"path={FIXTURES / 'uci' / 'dataset_diabetes.zip'}",
            "--models", "ehrdiff,marginals", "--quick", "--seeds", "1", "--fractions", "0.5,1", "--threads", "1",
            "-o", str(out)]
    assert run_cli(*args) == 0
    train = read_table(out / "data" / "train.parquet")
    subjects = train.frame["patient_nbr"].nunique()
    half = read_table(out / "runs" / "ehrdiff@0.5" / "seed-0" / "synthetic.parquet")
    assert half.n_rows == round(0.5 * subjects)                  # sampled at the subset's size
    results = json.loads((out / "results.json").read_text())
    scale = results["scale"]
    assert scale["fractions"] == ["0.5", "1"] and scale["training_rows"] == {"0.5": half.n_rows, "1": train.n_rows}
    report = json.loads((out / "report" / "metrics.json").read_text())["datasets"]
    # the real-data line: the training subset itself, evaluated like a synthetic set (TSTR = train on real subset)
    assert scale["real"]["0.5"]["tstr_auroc"]["mean"] == report["real/seed-0@0.5"]["tstr_auroc"]
    assert scale["real"]["1"]["tstr_auroc"]["mean"] == report["ehrdiff/seed-0"]["trtr_auroc"]
    assert scale["models"]["marginals"]["0.5"]["tstr_auroc"]["mean"] == report["marginals/seed-0@0.5"]["tstr_auroc"]
    for figure in ("figures/data_scale.png", "report/figures/training_size.png", "report/figures/prevalence.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    assert "## Data scale" in (out / "results.md").read_text()

    # the folder is taken: without --resume nothing is touched
    assert run_cli(*args) == 1
    # an interrupted run (trained and checkpointed, not sampled) is finished from its checkpoint; others are kept
    finished = out / "runs" / "marginals" / "seed-0" / "synthetic.parquet"
    stamp = finished.stat().st_mtime_ns
    interrupted = out / "runs" / "ehrdiff" / "seed-0"
    before = read_table(interrupted / "synthetic.parquet").frame
    record = json.loads((interrupted / "run.json").read_text())
    (interrupted / "run.json").write_text(json.dumps({"status": "training", "key": record["key"]}))
    (interrupted / "synthetic.parquet").unlink()
    caplog.set_level("INFO")
    assert run_cli(*args, "--resume", "--eval", "figures=false") == 0
    assert finished.stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["experiment"]["reused_runs"] == 3
    assert any("resuming from step 50" in r.getMessage() for r in caplog.records)
    pd.testing.assert_frame_equal(read_table(interrupted / "synthetic.parquet").frame, before)

    # other settings for the same folder are refused, not mixed in
    assert run_cli(*args, "--resume", "--set", "ehrdiff.lr=0.01") == 1
    # other sampling settings only: the trained model is sampled again (its training time kept), nothing retrained
    seconds = json.loads((interrupted / "run.json").read_text())["train_seconds"]
    assert run_cli(*args, "--resume", "--eval", "figures=false", "--set", "ehrdiff.num_noise_levels=5") == 0
    again = json.loads((interrupted / "run.json").read_text())
    assert again["key"]["resolved"]["sampling"]["num_noise_levels"] == 5 and again["train_seconds"] == seconds
    assert any("sampling again from the trained model" in r.getMessage() for r in caplog.records)
    assert not read_table(interrupted / "synthetic.parquet").frame.equals(before)


def test_ptb_beats_with_continuous_columns_and_a_label_go_through_the_runner(tmp_path):
    """The continuous path end to end: PTB beats (187 samples in [0, 1] and the abnormal label), split by beat."""
    from scipy.stats import ks_2samp

    out, ptb = tmp_path / "ptb", FIXTURES / "ptb"
    assert run_cli("--dataset", "ptb", "--input", f"normal={ptb / 'ptbdb_normal.csv'}", "--input",
                   f"abnormal={ptb / 'ptbdb_abnormal.csv'}", "--models", "ehrdiff,emrwgan,marginals", "--quick",
                   "--seeds", "1", "--threads", "1", "--eval", "figures=false", "-o", str(out)) == 0
    train = read_table(out / "data" / "train.parquet")
    samples = [c for c in train.feature_columns if train.kinds[c] == "continuous"]
    assert len(samples) == 187 and train.kinds["label"] == "label"
    results = json.loads((out / "results.json").read_text())
    for model in ("ehrdiff", "emrwgan", "marginals"):
        synthetic = read_table(out / "runs" / model / "seed-0" / "synthetic.parquet").frame
        values = synthetic[samples].to_numpy()
        assert values.min() >= 0 and values.max() <= 1                 # continuous columns stay in [0, 1]
        assert set(np.unique(synthetic["label"])) <= {0, 1}
        ks = np.mean([ks_2samp(train.frame[c], synthetic[c]).statistic for c in samples])
        assert results["models"][model]["continuous_ks_mean"]["mean"] == pytest.approx(ks)
    assert results["models"]["ehrdiff"]["trtr_auroc"]["mean"] is not None
    assert "split by beat_id" in (out / "results.md").read_text()


def test_shards_train_their_runs_and_the_last_command_evaluates_them(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["--dataset", "uci-diabetes", "--input", f"path={FIXTURES / 'uci' / 'dataset_diabetes.zip'}",
            "--models", "ehrdiff,marginals", "--quick", "--seeds", "2", "--threads", "1", "--eval", "figures=false",
            "-o", str(out)]
    runs = out / "runs"
    assert run_cli(*args, "--shard", "1/3") == 0       # plan: ehrdiff 0, ehrdiff 1, marginals 0, marginals 1
    assert "when every shard is done" in capsys.readouterr().out
    made = sorted(str(p.parent.relative_to(runs)) for p in runs.glob("*/*/synthetic.parquet"))
    assert made == ["ehrdiff/seed-1"] and not (out / "results.json").exists()
    stamp = (runs / "ehrdiff" / "seed-1" / "synthetic.parquet").stat().st_mtime_ns
    assert run_cli(*args, "--shard", "0/3") == 0 and run_cli(*args, "--shard", "2/3") == 0
    assert len(list(runs.glob("*/*/synthetic.parquet"))) == 4
    assert run_cli(*args, "--resume") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"]["reused_runs"] == 4            # nothing trained twice
    assert (runs / "ehrdiff" / "seed-1" / "synthetic.parquet").stat().st_mtime_ns == stamp
    for bad in ("3/3", "1", "a/b"):
        assert run_cli(*args, "--shard", bad) == 1
        assert "--shard" in capsys.readouterr().err


# ---- pieces ----------------------------------------------------------------------------------------------------------
def test_run_records_leave_out_settings_added_later_at_their_old_value():
    """Runs recorded before ``continuous_scaling`` existed were min-max scaled: a min-max run still matches them,
    a quantile-scaled one does not."""
    from ehrdiff.experiments.runner import _resolved_settings
    from ehrdiff.models.ehrdiff import EHRDiff

    from ehrdiff.models.ehrdiff.config import ADDED_LATER

    assert "continuous_scaling" not in _resolved_settings(EHRDiff("paper-cinc"))["training"]
    assert not set(ADDED_LATER) & set(_resolved_settings(EHRDiff("default", **ADDED_LATER))["training"])
    # the default preset models continuous columns otherwise since issue 20: its runs record it
    assert _resolved_settings(EHRDiff("default"))["training"]["continuous_scaling"] == "normal"
    assert _resolved_settings(EHRDiff(continuous_scaling="quantile"))["training"]["continuous_scaling"] == "quantile"


def test_budget_parsing_and_the_refused_wall_clock_budget():
    assert S.parse_budget("steps:5000") == S.Budget(5000, None)
    assert S.parse_budget("steps:5,000", 256) == S.Budget(5000, 256)
    assert S.Budget(5000).resolved(57_214).batch_size == 1024 and S.Budget(10).resolved(80).batch_size == 80
    epochs = S.parse_budget("epochs:2", 100).resolved(1000)        # the official epoch: rows // batch + 1 batches
    assert (epochs.steps, epochs.batch_size, epochs.epochs) == (2 * 11, 100, 2)
    with pytest.raises(EhrdiffError, match="wall-clock budgets are not supported.*steps:N"):
        S.parse_budget("minutes:25")
    for bad in ("steps", "steps:0", "steps:-3", "epoch:10", "steps:1.5", "epochs:x"):
        with pytest.raises(EhrdiffError):
            S.parse_budget(bad)


def test_every_learned_model_gets_the_same_steps_and_batch():
    budget = S.Budget(5000, 1024)
    uci = S.DATASETS["uci-diabetes"]
    settings = {m: S.model_settings(m, uci, budget, seed=2) for m in [*MODELS, "ehrdiff-paper"]}
    for model in ("ehrdiff", "ehrdiff-paper", "medgan", "emrwgan", "corgan"):
        assert settings[model]["steps"] == 5000 and settings[model]["batch_size"] == 1024
        assert settings[model]["seed"] == 2
    assert settings["ehrdiff-paper"]["preset"] == "paper-mimic"           # the paper's model: the dataset's preset
    assert S.model_settings("ehrdiff-paper", S.DATASETS["cinc2012"], budget, 0)["preset"] == "paper-cinc"
    assert "preset" not in settings["ehrdiff"]                             # the library's default model
    quick = S.model_settings("ehrdiff-paper", uci, budget, 0, quick=True)   # small network, the paper's preset
    assert quick["preset"] == "paper-mimic" and quick["hidden_dims"] == [128, 128]
    assert S.steps_of("ehrdiff-paper", settings["ehrdiff-paper"])["counted"] == 5000
    assert settings["medgan"]["ae_steps"] == settings["corgan"]["ae_steps"] == 500
    assert settings["marginals"] == {"seed": 2}
    # what is counted and what is not, from the models' own defaults
    assert S.steps_of("emrwgan", settings["emrwgan"])["critic_steps"] == 5 * 5000
    assert S.steps_of("medgan", settings["medgan"])["critic_steps"] == 5000
    assert S.steps_of("corgan", settings["corgan"])["pretraining_steps"] == 500
    assert S.steps_of("resample", settings["resample"])["counted"] == 0
    # the user's explicit setting wins
    assert S.model_settings("ehrdiff", uci, budget, 0, overrides={"lr": 1e-4})["lr"] == 1e-4


def test_training_subsets_are_seeded_nested_shares_of_subjects():
    frame = pd.DataFrame({"pid": np.repeat(np.arange(50), 2), "x": np.arange(100) % 2})
    from ehrdiff.data.table import Table

    table = Table.from_frame(frame, {"pid": "id", "x": "binary"})
    small, large = (training_subset(table, "pid", f, seed=3) for f in (0.1, 0.5))
    assert frame["pid"].iloc[small].nunique() == 5 and frame["pid"].iloc[large].nunique() == 25
    assert set(small) <= set(large)                               # nested for one seed
    assert len(small) == 10                                       # every row of a chosen subject
    assert np.array_equal(small, training_subset(table, "pid", 0.1, seed=3))
    assert not np.array_equal(small, training_subset(table, "pid", 0.1, seed=4))
    assert len(training_subset(table, None, 0.1, seed=0)) == 10    # no subject column: rows are subjects


def test_summaries_and_cells():
    s = summarize([0.5, 0.7, None])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert s["n"] == 2 and cell(s, 3) == "0.600 ± 0.141 (2/3)"
    assert cell(summarize([27.94, 28.0])) == "28.0 ± 0.0"
    assert cell(summarize([None])) == "-" and cell(summarize([0.25])) == "0.250"


def test_results_group_seeds_and_shares():
    class Table_:
        n_rows = 4

    runs = [Run(m, s, f, {}, Path("."), None if f == 1 else np.arange(2), synthetic=Table_())
            for m in ("a", "b") for f in (1.0, 0.5) for s in (0, 1)]
    metrics = {r.name: {"tstr_auroc": 0.6 + 0.1 * r.seed + (0.05 if r.model == "b" else 0), "trtr_auroc": 0.8,
                        "n_rows": 4} for r in runs}
    metrics.update({f"real/seed-{s}@0.5": {"tstr_auroc": 0.7} for s in (0, 1)})
    results = build_results(metrics, runs, {}, {})
    assert results["models"]["b"]["tstr_auroc"]["mean"] == pytest.approx(0.70)
    assert set(results["models"]) == {"a", "b"}                  # shares are not main rows
    assert results["scale"]["models"]["a"]["0.5"]["tstr_auroc"]["values"] == pytest.approx([0.6, 0.7])
    assert results["scale"]["real"]["1"]["tstr_auroc"]["mean"] == 0.8
    assert results["scale"]["training_rows"] == {"0.5": 2, "1": 4}


def test_missing_data_and_missing_budget_are_clear_errors(tmp_path, capsys):
    spec = S.DATASETS["uci-diabetes"]
    with pytest.raises(DataError, match="pass --data-root PATH, a folder holding "
                                        "uci-diabetes-130-us-hospitals/dataset_diabetes.zip"):
        S.resolve_inputs(spec, None, {})
    with pytest.raises(DataError, match="not found.*needs uci-diabetes-130-us-hospitals/dataset_diabetes.zip"):
        S.resolve_inputs(spec, tmp_path, {})
    with pytest.raises(EhrdiffError, match="takes the inputs path"):
        S.resolve_inputs(spec, tmp_path, {"zip": "x.zip"})
    bundled = S.resolve_inputs(S.DATASETS["mimic-iv-demo"], None, {})     # shipped with ehrdiff: no data root needed
    assert bundled["diagnoses"].is_file() and bundled["diagnoses"].parent.name == "demo_data"
    assert S.default_data_root(tmp_path / "a" / "b") is None
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    assert S.default_data_root(tmp_path / "work") == (tmp_path / "shared" / "data").resolve()

    assert run_cli("--dataset", "uci-diabetes", "--data-root", str(tmp_path), "-o", str(tmp_path / "o")) == 1
    assert "state the compute budget: --budget steps:N" in capsys.readouterr().err
    assert run_cli("--dataset", "nope", "--quick", "-o", str(tmp_path / "o")) == 1
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert run_cli("--dataset", "ptb", "--quick", "--models", "ehrdiff,gpt", "-o", str(tmp_path / "o")) == 1
    assert "--models: unknown model 'gpt'" in capsys.readouterr().err
    assert run_cli("--dataset", "ptb", "--quick", "--set", "ehrdif.lr=1e-4", "-o", str(tmp_path / "o")) == 1
    assert "--set: unknown model 'ehrdif'" in capsys.readouterr().err
    assert run_cli("--dataset", "mimic-iv-demo", "--quick", "--set", "medgan.lr=-1", "-o", str(tmp_path / "o")) == 1
    assert "setting lr=-1.0 is invalid" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- a model registered later (a plug-in) --------------------------------------------------------------------------
@pytest.fixture
def plugin_model():
    """A model registered by another package: it declares its own experiment role (pre-training setting and --quick
    settings), and no list in ehrdiff names it. It resamples training rows, so a run takes no time."""
    from ehrdiff.models import REGISTRY, ExperimentRole, Generator, register

    @register("plugin-test")
    class PluginModel(Generator):
        experiment = ExperimentRole(pretraining="warm_steps", quick={"width": 0.5})

        def __init__(self, steps: int = 1, batch_size: int = 8, seed: int = 0, device: str = "auto",
                     checkpoint_every: int | None = None, warm_steps: int = 0, width: float = 1.0) -> None:
            self.steps, self.batch_size, self.seed, self.device = steps, batch_size, seed, device
            self.checkpoint_every, self.warm_steps, self.width = checkpoint_every, warm_steps, width

        def fit(self, data, *, checkpoint_dir=None, resume=False, progress=True):
            self.rows_ = REGISTRY["resample"](seed=self.seed).fit(data)
            return self

        def sample_table(self, n, seed=0):
            return self.rows_.sample_table(n, seed=seed)

        def save(self, path):
            self.rows_.save(path)

        @classmethod
        def load(cls, path):
            raise NotImplementedError

    yield PluginModel
    REGISTRY.pop("plugin-test")


def test_the_default_models_and_their_roles_come_from_the_model_classes():
    assert S.default_models() == ("ehrdiff", "ehrdiff-paper", "medgan", "emrwgan", "corgan", "marginals", "resample")
    assert S.registry_name("ehrdiff-paper") == "ehrdiff" and S.registry_name("medgan") == "medgan"
    with pytest.raises(EhrdiffError,
                       match="unknown model 'gpt' \\(choose from corgan, dp-marginals, ehrdiff, ehrdiff-paper"):
        S.experiment_role("gpt")
    settings = S.model_settings("medgan", S.DATASETS["uci-diabetes"], S.Budget(5000, 1024), 0)
    assert S.steps_of("medgan", settings)["text"] == ("5,000 generator steps, 5,000 discriminator steps (1 per "
                                                      "generator step, not counted), 500 autoencoder pre-training "
                                                      "steps (not counted)")
    settings = S.model_settings("ehrdiff-paper", S.DATASETS["uci-diabetes"], S.Budget(5000, 1024), 0)
    assert S.steps_of("ehrdiff-paper", settings)["text"] == "5,000 denoiser steps"
    assert S.steps_of("marginals", {"seed": 0}) == {"counted": 0, "text": "nothing trained"}


def test_a_registered_model_joins_the_experiment_by_its_own_declaration(plugin_model, tmp_path, capsys, monkeypatch):
    assert S.default_models()[-1] == "plugin-test"
    uci = S.DATASETS["uci-diabetes"]
    settings = S.model_settings("plugin-test", uci, S.Budget(100, 16), seed=1, quick=True)
    assert settings == {"steps": 100, "batch_size": 16, "seed": 1, "device": "auto", "checkpoint_every": 100,
                        "warm_steps": 10, "width": 0.5}
    assert S.steps_of("plugin-test", settings) == {
        "counted": 100, "batch_size": 16, "pretraining_steps": 10,
        "text": "100 steps, 10 autoencoder pre-training steps (not counted)"}
    out = tmp_path / "exp"
    assert run_cli("--dataset", "uci-diabetes", "--input", f"path={FIXTURES / 'uci' / 'dataset_diabetes.zip'}",
                   "--models", "plugin-test", "--quick", "--seeds", "1", "--threads", "1", "--set",
                   "plugin-test.width=0.25", "--eval", "figures=false", "-o", str(out)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"]["settings"]["plugin-test"]["width"] == 0.25
    assert results["experiment"]["steps_per_model"]["plugin-test"]["pretraining_steps"] == 5
    assert "plugin-test" in results["models"]
    # the help lists it too (filled from the registry when help is printed)
    monkeypatch.setenv("COLUMNS", "500")          # one line per option: no wrapping inside names
    with pytest.raises(SystemExit):
        main(["experiment", "paper", "--help"])
    help_text = capsys.readouterr().out
    assert ("from corgan, dp-marginals, ehrdiff, ehrdiff-paper, emrwgan, marginals, medgan, mst, plugin-test, "
            "resample"
            in help_text)
    assert "(default: ehrdiff, ehrdiff-paper, medgan, emrwgan, corgan, marginals, resample, plugin-test)" in help_text


def test_a_model_from_the_entry_point_group_needs_no_list_either(tmp_path, monkeypatch):
    """A plug-in package names its class in the ``ehrdiff.models`` entry-point group: once loaded it is an
    experiment model with the role its class declares (here a reference: no budget)."""
    import importlib.metadata
    import sys

    from ehrdiff.models import REGISTRY, load_entry_points

    (tmp_path / "ehrdiff_plugin_test.py").write_text(
        "from ehrdiff.models import ExperimentRole\n"
        "from ehrdiff.models.reference import Resample\n"
        "class Copy(Resample):\n"
        "    experiment = ExperimentRole(trains=False, default=False)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    point = importlib.metadata.EntryPoint("copy-test", "ehrdiff_plugin_test:Copy", "ehrdiff.models")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [point] if group == point.group else [])
    try:
        load_entry_points()
        assert S.registry_name("copy-test") == "copy-test" and "copy-test" not in S.default_models()
        spec = S.DATASETS["uci-diabetes"]
        assert S.model_settings("copy-test", spec, S.Budget(100, 16), seed=3, quick=True) == {"seed": 3}
        assert S.steps_of("copy-test", {"seed": 3})["text"] == "nothing trained"
        config = S.ExperimentConfig("uci-diabetes", tmp_path / "o", models=("copy-test",), quick=True).check()
        assert config.models == ("copy-test",)
    finally:
        REGISTRY.pop("copy-test", None)
        sys.modules.pop("ehrdiff_plugin_test", None)
