"""Seconds per optimiser step of every model under the experiment runner's settings, and EHRDiff's sampling rate:
what ``ehrdiff experiment paper --budget steps:N`` will cost before it is run.

    .venv/bin/python benchmarks/bench_experiment_steps.py [--data DIR] [--batch-size 1024] [--steps 3]
        [--models ehrdiff,ehrdiff-paper,medgan,emrwgan,corgan] [--device auto] [--threads N] [--tag SUFFIX]

DIR holds an experiment's (or ``ehrdiff prepare``'s) train.parquet; default benchmarks/out/uci-diabetes (prepared
from ../shared/data when missing). For each model, two fits with the runner's settings (``model_settings``, the
dataset's paper preset for EHRDiff) of 1 and 1 + K counted steps, with autoencoder pre-training cut to 1 step: the
difference divided by K is the time of one counted step (critic updates included; encoder fitting and set-up
cancel out). ``ehrdiff`` is the default model, ``ehrdiff-paper`` the dataset's paper preset. Each EHRDiff model then
samples 4,096 rows with its own sampler settings. Writes benchmarks/out/experiment_steps.json and
benchmarks/results/experiment_steps.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DEFAULT_DATA = OUT / "uci-diabetes"
SHARED_ZIP = HERE.parents[1] / "shared" / "data" / "uci-diabetes-130-us-hospitals" / "dataset_diabetes.zip"


def build(model: str, settings: dict):
    from ehrdiff.experiments.spec import registry_name
    from ehrdiff.models import build_model

    return build_model(registry_name(model), settings)


def timed_fit(model: str, settings: dict, table) -> float:
    start = time.perf_counter()
    build(model, settings).fit(table, progress=False)
    return time.perf_counter() - start


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=3, help="K extra steps timed per model")
    parser.add_argument("--models", default="ehrdiff,ehrdiff-paper,medgan,emrwgan,corgan")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dataset", default="uci-diabetes", help="whose EHRDiff preset to use")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (the runner's --threads)")
    parser.add_argument("--tag", default="", help="suffix of the output files (e.g. -1thread)")
    return parser.parse_args()


def time_steps(models: list[str], spec, table, args: argparse.Namespace) -> list[dict]:
    """Seconds per counted step of each model: fits of 1 and 1 + K steps, pre-training cut to 1 step."""
    from ehrdiff.experiments.spec import Budget, experiment_role, model_settings

    rows = []
    for model in models:
        pretraining = experiment_role(model)[1].pretraining
        times = []
        for steps in (1, 1 + args.steps):
            settings = model_settings(model, spec, Budget(steps, args.batch_size), seed=0, device=args.device)
            if pretraining:
                settings[pretraining] = 1
            times.append(timed_fit(model, settings, table))
        per_step = (times[1] - times[0]) / args.steps
        row = {"model": model, "seconds_per_step": per_step, "setup_seconds": times[0] - per_step,
               "steps_5000_minutes": per_step * 5000 / 60}
        print(row, flush=True)
        rows.append(row)
    return rows


def time_sampling(models: list[str], spec, table, args: argparse.Namespace) -> dict:
    """Rows per second of each EHRDiff model's sampler (4,096 rows after a 1-step fit)."""
    from ehrdiff.experiments.spec import Budget, model_settings

    sampling = {}
    for name in (m for m in models if m in ("ehrdiff", "ehrdiff-paper")):
        settings = model_settings(name, spec, Budget(1, args.batch_size), seed=0, device=args.device)
        model = build(name, settings).fit(table, progress=False)
        start = time.perf_counter()
        model.sample(4096, seed=0)
        rate = 4096 / (time.perf_counter() - start)
        sampling[name] = {"preset": model.preset, "rows_per_second": rate,
                          "training_set_minutes": table.n_rows / rate / 60}
        print(name, sampling[name], flush=True)
    return sampling


def markdown(result: dict, args: argparse.Namespace) -> str:
    rows, load, n = result["models"], result["load_average_at_start"], result["training_rows"]
    lines = [f"# Cost of the experiment runner's budget ({n:,} training rows, batch {args.batch_size})", "",
             f"Command: `.venv/bin/python benchmarks/bench_experiment_steps.py {' '.join(sys.argv[1:])}`"
             f" (device {args.device}; "
             f"{result['machine']['cpus']} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
             f"load average {load:.1f} at the start: other jobs slow these numbers)", "",
             "| model | seconds per counted step | minutes for steps:5000 |", "|---|---|---|"]
    lines += [f"| {r['model']} | {r['seconds_per_step']:.3f} | {r['steps_5000_minutes']:.1f} |" for r in rows]
    for name, rate in result["ehrdiff_sampling"].items():
        lines += ["", f"{name} (preset {rate['preset']}) samples {rate['rows_per_second']:.0f} rows/s: "
                      f"{rate['training_set_minutes']:.1f} minutes for the {n:,} training rows."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from ehrdiff.data.io import read_table
    from ehrdiff.experiments.spec import dataset_spec

    if not (args.data / "train.parquet").exists():
        from ehrdiff.data.sources import prepare

        prepare("uci-diabetes", args.data, path=str(SHARED_ZIP))
    table = read_table(args.data / "train.parquet")
    spec = dataset_spec(args.dataset)
    load = os.getloadavg()[0]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rows = time_steps(models, spec, table, args)
    sampling = time_sampling(models, spec, table, args)
    result = {"data": str(args.data), "training_rows": table.n_rows, "batch_size": args.batch_size,
              "steps_timed": args.steps, "preset": spec.preset, "device": args.device, "load_average_at_start": load,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads(),
                          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
              "models": rows, "ehrdiff_sampling": sampling}
    OUT.mkdir(exist_ok=True)
    (OUT / f"experiment_steps{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result, args)
    (HERE / "results" / f"experiment_steps{args.tag}.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
