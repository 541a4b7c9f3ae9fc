"""``run_experiment``: prepare -> train every model x seed (x training share) -> sample -> ONE evaluation -> tables.

Layout of the output folder DIR:
  data/                         the prepared split (train.parquet, test.parquet, summary.json), made once and reused
  runs/MODEL/seed-S/            model files, checkpoints/, synthetic.parquet, run.json (settings, seconds)
  runs/MODEL@F/seed-S/          the same for runs on a share F < 1 of the training subjects (data-scale experiment)
  report/                       the evaluation of every run at once: metrics.json, report.md, report.html, figures/,
                                per-code CSVs (prevalence.csv, dimwise_prediction.csv)
  figures/data_scale.png        metrics against the training share, mean +- std over seeds (with --fractions)
  results.json, results.md      mean and standard deviation over seeds per model, budget, seeds, times

Every synthetic set (each model and seed, each share) is evaluated in one ``evaluate`` call against the same real
training and held-out rows, so the reference rows and the real-side work are computed once and every set is
measured by the same samples (the evaluation's own seed is 0). The standard deviations are therefore over the
training and sampling seeds only.

A run with a run.json whose status is "finished" and whose settings and data match is not retrained (with
``resume``); an unfinished one continues from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ehrdiff import __version__
from ehrdiff.data.table import Table
from ehrdiff.errors import EhrdiffError
from ehrdiff.experiments.spec import (QUICK_BATCH, QUICK_BUDGET, QUICK_EVALUATION, Budget, DatasetSpec,
                                      ExperimentConfig, dataset_spec, model_settings, parse_budget, registry_name,
                                      resolve_inputs, steps_of)
from ehrdiff.fileio import write_text_atomic
from ehrdiff.models.ehrdiff.config import SAMPLING_SETTINGS, without_inert
from ehrdiff.threads import limit_threads

log = logging.getLogger(__name__)

DATA_MARKER = "experiment-data.json"
RUN_FILE = "run.json"
SYNTHETIC_FILE = "synthetic.parquet"
REAL = "real"                     # the training subsets themselves, evaluated as a reference in the scale runs


# ---- data --------------------------------------------------------------------------------------------------------
@dataclass
class PreparedData:
    train: Table
    test: Table
    summary: dict
    subject_column: str | None
    reused: bool


def prepare_data(spec: DatasetSpec, inputs: dict[str, Path], folder: Path) -> PreparedData:
    """Prepare the dataset into ``folder`` once; later calls with the same inputs reuse it."""
    from ehrdiff.data.io import read_table
    from ehrdiff.data.sources import prepare

    identity = {"dataset": spec.name, "source": spec.source, "inputs": {k: str(v) for k, v in inputs.items()},
                "options": spec.options, "test_fraction": 0.2, "split_seed": 0}
    marker = folder / DATA_MARKER
    reused = marker.exists() and (folder / "summary.json").exists()
    if reused:
        saved = json.loads(marker.read_text())
        if saved != json.loads(json.dumps(identity)):
            raise EhrdiffError(f"{folder}: holds data prepared from other inputs ({saved.get('dataset')}: "
                               f"{saved.get('inputs')}); choose another -o")
    elif folder.exists() and any(folder.iterdir()):
        raise EhrdiffError(f"{folder}: exists and is not an experiment's data folder; choose another -o")
    else:
        prepare(spec.source, folder, test_fraction=0.2, seed=0, **{k: str(v) for k, v in inputs.items()},
                **spec.options)
        write_text_atomic(marker, json.dumps(identity, indent=2) + "\n")
    summary = json.loads((folder / "summary.json").read_text())
    train, test = read_table(folder / "train.parquet"), read_table(folder / "test.parquet")
    subject = summary.get("split", {}).get("by")
    return PreparedData(train, test, summary, subject if subject in train.columns else None, reused)


def training_subset(train: Table, subject_column: str | None, fraction: float, seed: int) -> np.ndarray:
    """Row indices of a seeded share of the training subjects. For one seed the subsets are nested (the 10%
    subjects are among the 25%, ...), so differences between shares are not blurred by different draws."""
    subjects = (train.frame[subject_column].to_numpy() if subject_column else np.arange(train.n_rows))
    unique = np.sort(pd.unique(subjects))
    order = np.random.default_rng([seed, 20_240_303]).permutation(len(unique))
    keep = unique[order[:max(1, int(round(fraction * len(unique))))]]
    return np.flatnonzero(np.isin(subjects, keep))


# ---- runs ----------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    model: str
    seed: int
    fraction: float
    settings: dict[str, Any]
    folder: Path
    rows: np.ndarray | None = None        # training rows (None: all)
    train_seconds: float | None = None
    sample_seconds: float | None = None
    reused: bool = False
    synthetic: Table | None = field(default=None, repr=False)

    @property
    def group(self) -> str:
        """The name of the model-and-share group its seeds are averaged over."""
        return self.model if self.fraction == 1.0 else f"{self.model}@{self.fraction:g}"

    @property
    def name(self) -> str:
        """Its dataset name in the evaluation report."""
        base = f"{self.model}/seed-{self.seed}"
        return base if self.fraction == 1.0 else f"{base}@{self.fraction:g}"


def run_folder(output: Path, model: str, fraction: float, seed: int) -> Path:
    """Where a run keeps its files: DIR/runs/MODEL/seed-S, or DIR/runs/MODEL@SHARE/seed-S for a share below 1."""
    return Path(output) / "runs" / (model if fraction == 1.0 else f"{model}@{fraction:g}") / f"seed-{seed}"


def run_finished(folder: Path) -> bool:
    """Whether the run in ``folder`` finished training and sampling (its settings are not compared here)."""
    record = folder / RUN_FILE
    return record.exists() and (folder / SYNTHETIC_FILE).exists() and \
        json.loads(record.read_text()).get("status") == "finished"


def plan_runs(config: ExperimentConfig, spec: DatasetSpec, budget: Budget, data: PreparedData) -> list[Run]:
    fractions = [1.0] + sorted({float(f) for f in config.fractions if f < 1}, reverse=True)
    runs = []
    for fraction in fractions:
        for model in config.models:
            for seed in range(config.seeds):
                folder = run_folder(config.output, model, fraction, seed)
                settings = model_settings(model, spec, budget, seed, quick=config.quick, device=config.device,
                                          overrides=config.settings.get(model))
                rows = None if fraction == 1.0 else training_subset(data.train, data.subject_column, fraction, seed)
                runs.append(Run(model, seed, fraction, settings, folder, rows))
    return runs


def _run_key(run: Run, data: PreparedData) -> dict:
    return json.loads(json.dumps({
        "model": run.model, "seed": run.seed, "fraction": run.fraction, "settings": run.settings,
        "data": data.summary.get("files", {}).get("train.parquet", {}).get("sha256"),
        "training_rows": int(data.train.n_rows if run.rows is None else len(run.rows))}))


def _runtime_free(settings: dict) -> dict:
    """Settings that change what is computed (device and checkpoint interval may differ on resume)."""
    return {k: v for k, v in settings.items() if k not in ("device", "checkpoint_every", "sample_batch_size")}


def _training_part(settings: dict) -> dict:
    return {k: v for k, v in _runtime_free(settings).items() if k not in SAMPLING_SETTINGS}


def _resolved_settings(model) -> dict:
    """The model's full settings (a preset's contents included), split into those training reads and those only
    sampling reads: a changed preset is noticed, and a change of sampling settings alone only resamples. Settings
    added later at their old behaviour's value are left out (``without_inert``): older runs still match. A config
    in sections (EHRDiff's) gives its settings by their flat names through ``to_dict``."""
    cfg = getattr(model, "config", None)
    if hasattr(cfg, "to_dict"):
        values = cfg.to_dict()
    else:
        values = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
    values = without_inert(_runtime_free(values))
    sampling = {k: values.pop(k) for k in SAMPLING_SETTINGS if k in values}
    return json.loads(json.dumps({"training": values, "sampling": sampling}))


def train_and_sample(run: Run, data: PreparedData, *, resume: bool, progress: bool) -> None:
    """Fit, save and sample one run (or reuse a finished one); fills the run's seconds and synthetic table."""
    from ehrdiff.data.io import read_table, write_table
    from ehrdiff.models import build_model
    from ehrdiff.models.base import sample_rows

    model = build_model(registry_name(run.model), run.settings)
    key = {**_run_key(run, data), "resolved": _resolved_settings(model)}
    record = run.folder / RUN_FILE
    interrupted, trained_seconds = False, None
    if record.exists():
        saved = json.loads(record.read_text())
        resolved = saved["key"].pop("resolved", None)       # absent in runs of older versions
        same = _training_part(saved["key"].pop("settings")) == _training_part(key["settings"]) and \
            saved["key"] == {k: v for k, v in key.items() if k not in ("settings", "resolved")} and \
            (resolved is None or resolved["training"] == key["resolved"]["training"])
        if not same:
            raise EhrdiffError(f"{run.folder}: was run with other settings or data; use the same command, delete "
                               "that folder, or choose another -o")
        resample = resolved is not None and resolved["sampling"] != key["resolved"]["sampling"]
        finished = saved.get("status") == "finished"
        if finished and (run.folder / SYNTHETIC_FILE).exists() and not resample:
            run.synthetic = read_table(run.folder / SYNTHETIC_FILE)
            run.train_seconds, run.sample_seconds = saved["train_seconds"], saved["sample_seconds"]
            run.reused = True
            return
        if finished and resample:       # the finished checkpoint restores the model at once; only sampling runs
            log.info("%s: sampling settings changed, sampling again from the trained model", run.name)
            trained_seconds = saved["train_seconds"]
        interrupted = True
    table = data.train if run.rows is None else data.train.subset(run.rows)
    write_text_atomic(record, json.dumps({"status": "training", "key": key}, indent=2) + "\n")
    started = time.perf_counter()
    model.fit(table, checkpoint_dir=run.folder / "checkpoints", resume=resume, progress=progress)
    run.train_seconds = trained_seconds if trained_seconds is not None else time.perf_counter() - started
    model.save(run.folder)
    started = time.perf_counter()
    run.synthetic = sample_rows(model, table.n_rows, run.seed, progress)     # as many rows as trained on
    run.sample_seconds = time.perf_counter() - started
    write_table(run.synthetic, run.folder / SYNTHETIC_FILE)
    write_text_atomic(record, json.dumps({
        "status": "finished", "key": key, "train_seconds": run.train_seconds, "sample_seconds": run.sample_seconds,
        "rows_sampled": run.synthetic.n_rows, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        # a resumed run's seconds are those of the last invocation only
        "resumed": interrupted and resume}, indent=2) + "\n")


def distinct_row_rate(table: Table) -> float:
    """Share of distinct rows over the modelled columns (ids left out)."""
    frame = table.frame[table.feature_columns]
    return float(len(frame.drop_duplicates()) / max(len(frame), 1))


def code_stats(table: Table) -> dict[str, float]:
    """The real training data's own codes per patient and empty rows (the yardstick for the synthetic ones)."""
    codes = table.columns_of("binary")
    if not codes:
        return {}
    counts = table.frame[codes].to_numpy(dtype=np.float64).sum(axis=1)
    return {"codes_per_patient_mean": float(counts.mean()), "empty_row_rate": float((counts == 0).mean())}


# ---- the whole experiment ------------------------------------------------------------------------------------------
def check_output(folder: Path, resume: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise EhrdiffError(f"{folder}: exists and is not a folder; choose another -o")
    if resume or not folder.is_dir():
        return
    if (folder / "runs").exists() or (folder / "results.json").exists():
        raise EhrdiffError(f"{folder}: already holds an experiment; pass --resume to continue it (finished runs are "
                           "kept, not retrained) or choose another -o")


@contextlib.contextmanager
def _exclusive(lock_file: Path):
    """Hold an exclusive lock on ``lock_file`` (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def evaluation_device(device: str) -> str:
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def _log_run(position: str, run: Run, data: PreparedData) -> None:
    rows = data.train.n_rows if run.rows is None else len(run.rows)
    log.info("%s %s: %s (%d training rows, %.1f s training, %.1f s sampling %d rows)", position, run.name,
             "finished earlier, reused" if run.reused else "trained and sampled", rows, run.train_seconds,
             run.sample_seconds, run.synthetic.n_rows)


def _run_shard(config: ExperimentConfig, runs: list[Run], data: PreparedData) -> dict:
    """Train and sample this shard's runs (I, I+N, ...), resuming any it finds; the evaluation is left to a last
    command without --shard, which reuses every finished run."""
    index, count = config.shard
    mine = [r for k, r in enumerate(runs) if k % count == index]
    for i, r in enumerate(mine, 1):
        train_and_sample(r, data, resume=True, progress=config.progress)
        _log_run(f"shard {index}/{count}, run {i}/{len(mine)}", r, data)
    return {"shard": [index, count], "runs": [r.name for r in mine]}


def check_model_settings(config: ExperimentConfig, spec: DatasetSpec) -> None:
    """Build every model with its settings (nothing is trained): a bad --set fails here, before the data is prepared
    and the first runs are trained, not when its model's turn comes."""
    from ehrdiff.models import build_model

    budget = (config.budget or parse_budget(QUICK_BUDGET, QUICK_BATCH)).resolved(training_rows=1024)
    for model in config.models:
        build_model(registry_name(model), model_settings(model, spec, budget, seed=0, quick=config.quick,
                                                         device=config.device, overrides=config.settings.get(model)))


def evaluate_runs(config: ExperimentConfig, runs: list[Run], data: PreparedData):
    """ONE evaluation of every run's synthetic rows against the same real training and held-out rows; the runs on
    a share of the training data, and that share itself, also go in as points of the training-size curves."""
    from ehrdiff.evaluation import evaluate

    started = time.perf_counter()
    main = {r.name: r.synthetic for r in runs if r.fraction == 1.0}
    scale: dict[str, dict[float, Table]] = {}
    for r in runs:
        if r.fraction < 1.0:
            scale.setdefault(f"{r.model}/seed-{r.seed}", {})[r.fraction] = r.synthetic
            scale.setdefault(f"{REAL}/seed-{r.seed}", {})[r.fraction] = data.train.subset(r.rows)
    options = {"device": evaluation_device(config.device), **(QUICK_EVALUATION if config.quick else {}),
               **config.evaluation}
    if config.threads is not None:
        options.setdefault("threads", config.threads)
    report = evaluate(data.train, data.test, main, scale=scale or None, seed=0, **options)
    if scale:       # the full-data runs are the 1.0 points of the report's own training-size figure
        for r in runs:
            if r.fraction == 1.0:
                report.scale[r.name] = (f"{r.model}/seed-{r.seed}", 1.0)
    log.info("evaluate: %d synthetic sets and the reference rows in one report in %.1f s",
             len(main) + sum(len(v) for v in scale.values()), time.perf_counter() - started)
    return report


def save_report(out: Path, report, runs: list[Run], data: PreparedData) -> tuple[dict, list[str]]:
    """Write the report (DIR/report) and the data-scale figure; returns the results tables (mean and standard
    deviation over seeds) and the figures' paths under DIR."""
    from ehrdiff.experiments import tables

    report.save(out / "report")
    extra = {r.name: {"distinct_row_rate": distinct_row_rate(r.synthetic)} for r in runs}
    real_rows = {"distinct_row_rate": distinct_row_rate(data.train), **code_stats(data.train)}
    results = tables.build_results(report.metrics, runs, extra, real_rows)
    figures = []
    if any(r.fraction < 1.0 for r in runs):
        from ehrdiff.experiments.figures import data_scale_png
        from ehrdiff.fileio import write_bytes_atomic

        write_bytes_atomic(out / "figures" / "data_scale.png", data_scale_png(results["scale"]))
        figures.append("figures/data_scale.png")
    figures += [f"report/figures/{name}" for name in report.figures()] if report.config.figures else []
    return results, figures


def run_experiment(config: ExperimentConfig) -> dict:
    """Run the whole experiment described by ``config``; returns the results dict (also in DIR/results.json)."""
    from ehrdiff.experiments import tables

    config.check()
    spec = dataset_spec(config.dataset)
    out = Path(config.output)
    inputs = resolve_inputs(spec, config.data_root, config.inputs)     # missing files fail before any write
    check_model_settings(config, spec)                                 # so do invalid model settings
    check_output(out, config.resume or config.shard is not None)     # shards share one folder
    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None   # other jobs slow every timing
    stages: dict[str, float] = {}
    with limit_threads(config.threads, torch_only=True):
        t0 = time.perf_counter()
        with _exclusive(out / ".prepare.lock"):    # shards started together prepare the data once
            data = prepare_data(spec, inputs, out / "data")
        stages["prepare"] = time.perf_counter() - t0
        log.info("prepare: %s %s (%d training, %d test rows, %d columns) in %s", spec.name,
                 "reused" if data.reused else "prepared", data.train.n_rows, data.test.n_rows,
                 len(data.train.columns), out / "data")
        budget = (config.budget or parse_budget(QUICK_BUDGET, QUICK_BATCH)).resolved(data.train.n_rows)
        runs = plan_runs(config, spec, budget, data)
        if config.shard is not None:
            return _run_shard(config, runs, data)
        t0 = time.perf_counter()
        for i, run in enumerate(runs, 1):
            train_and_sample(run, data, resume=config.resume, progress=config.progress)
            _log_run(f"run {i}/{len(runs)}", run, data)
        stages["train_and_sample"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = evaluate_runs(config, runs, data)
        stages["evaluate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results, figures = save_report(out, report, runs, data)
        stages["report"] = time.perf_counter() - t0
        results["experiment"] = _header(config, spec, budget, data, inputs, runs, stages,
                                        time.perf_counter() - started, figures, load)
        results = {"experiment": results.pop("experiment"), **results}
        write_text_atomic(out / "results.json", json.dumps(results, indent=2, allow_nan=False) + "\n")
        write_text_atomic(out / "results.md", tables.results_markdown(results))
    log.info("write: %s, %s, %s (%.0f s in all)", out / "results.json", out / "results.md", out / "report",
             time.perf_counter() - started)
    return results


def _header(config: ExperimentConfig, spec: DatasetSpec, budget: Budget, data: PreparedData,
            inputs: dict[str, Path], runs: list[Run], stages: dict[str, float], wall: float,
            figures: list[str], load: float | None) -> dict:
    import torch

    device = evaluation_device(config.device)
    machine = {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "python": platform.python_version(),
               "load_average": load}
    if device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0)
    per_model: dict[str, dict[str, float]] = {}
    for r in runs:
        entry = per_model.setdefault(r.group, {"train_seconds": 0.0, "sample_seconds": 0.0, "runs": 0})
        entry["train_seconds"] += r.train_seconds or 0.0
        entry["sample_seconds"] += r.sample_seconds or 0.0
        entry["runs"] += 1
    return {
        "dataset": spec.name, "description": spec.description, "label": spec.label, "source": spec.source,
        "inputs": {k: str(v) for k, v in inputs.items()},
        "preset": spec.preset if "ehrdiff-paper" in config.models else None,
        "training_rows": data.train.n_rows, "test_rows": data.test.n_rows, "columns": len(data.train.columns),
        "split_by": data.subject_column,
        "encoded_width": data.summary.get("columns", {}).get("encoded_width"),
        "models": list(config.models), "seeds": list(range(config.seeds)),
        "fractions": sorted({r.fraction for r in runs}),
        "budget": {**budget.to_dict(), "text": budget.describe()}, "quick": config.quick, "device": config.device,
        "evaluation": {"seed": 0, "device": device, **(QUICK_EVALUATION if config.quick else {}),
                       **config.evaluation},
        "sampled_rows": "as many as each run's training rows",
        "std": "sample standard deviation (ddof = 1) over the seeds; the evaluation's own samples use seed 0",
        "settings": {r.model: _runtime_free(r.settings) | {"seed": "0..S-1"} for r in runs if r.seed == 0
                     and r.fraction == 1.0},
        "steps_per_model": {r.model: steps_of(r.model, r.settings) for r in runs if r.seed == 0
                            and r.fraction == 1.0},
        "run_seconds": per_model, "stage_seconds": stages, "wall_seconds": wall,
        "reused_runs": sum(r.reused for r in runs), "command": config.command,
        "ehrdiff_version": __version__, "machine": machine, "figures": figures,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


__all__ = ["PreparedData", "Run", "check_output", "evaluate_runs", "plan_runs", "prepare_data", "run_experiment",
           "save_report", "train_and_sample", "training_subset"]
