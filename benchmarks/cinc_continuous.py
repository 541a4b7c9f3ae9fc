"""The default model's two scalings of continuous columns on CinC 2012 (in-hospital death).

    .venv/bin/python benchmarks/cinc_continuous.py                  # about 10 min on 1 thread of the 2-core machine
    .venv/bin/python benchmarks/cinc_continuous.py --quick          # a smoke run (numbers meaningless)

The default model trained twice with the experiment budget of the CinC tables (3,000 steps at batch 256, warm-up a
quarter of them as the experiment runner's) on the same patient split (``ehrdiff prepare cinc2012``, into
benchmarks/out/data/) and sampled at the training size, then evaluated in one report (docs/metrics.md) with the
reference rows:
  - ``min-max``: continuous columns scaled by their training minimum and maximum (the paper's encoding and the
    default, ``continuous_scaling="minmax"``);
  - ``quantile``: scaled through their training quantiles (``continuous_scaling="quantile"``).
Besides the report's metrics, the table gives the mean share of values below each continuous column's 10th training
percentile and above its 90th (at most 0.1 each, less where many rows share the value at the percentile), for the
synthetic rows and for the real test half: a model that draws too few or too many extreme values shows it here.
Writes benchmarks/out/cinc_continuous.json and benchmarks/results/cinc_continuous.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from bench_private import prepare

ROOT = Path(__file__).resolve().parent
METRICS = [("continuous_ks_mean", "continuous KS (mean)"), ("continuous_ks_max", "continuous KS (max)"),
           ("continuous_wasserstein_mean", "continuous Wasserstein (mean)"),
           ("continuous_correlation_distance", "continuous correlation distance"),
           ("discriminator_auroc_lr", "discriminator AUROC (logistic)"),
           ("discriminator_auroc", "discriminator AUROC (trees)"),
           ("tstr_auroc", "TSTR AUROC"), ("mia_auroc", "membership-inference AUROC"),
           ("nnaa_privacy_loss", "NNAA privacy loss")]
READING = """How to read it. With min-max scaling each column's outliers set its range, so most values of a skewed
lab column sit in a sliver near 0 and small errors of the denoiser there become large ones on the column's own
scale: the model draws far more values beyond the 10th and 90th training percentiles than the real test half has,
and its continuous marginals (KS) are far from the real ones. Scaled through the quantiles, every column fills [0, 1]
evenly: the KS distance halves, the continuous correlation distance comes down to the real test half's and the
logistic discriminator separates fewer rows. The model then draws fewer extreme values than the real data has, and
its TSTR is lower: the extremes it misses seem to carry part of the signal for in-hospital death. Neither scaling
fools the trees discriminator (cinc_consistency.md: the rules that tie a variable's summaries together). So the
default stays min-max, the paper's, which keeps the TSTR; choose the quantile scaling when the continuous marginals
matter more than the label's prediction. One seed and one data set: a reason to try it, not a verdict."""
VARIANTS = {"min-max": dict(continuous_scaling="minmax"), "quantile": dict(continuous_scaling="quantile")}


def tail_shares(train, synthetic) -> tuple[float, float]:
    """Mean over continuous columns of the share of observed values of ``synthetic`` below the training 10th
    percentile and above the 90th (values equal to a percentile count on neither side)."""
    low, high = [], []
    for column, kind in train.kinds.items():
        if kind != "continuous":
            continue
        real = train.frame[column].dropna().to_numpy(float)
        fake = synthetic.frame[column].dropna().to_numpy(float)
        if len(fake):
            low.append(np.mean(fake < np.quantile(real, 0.1)))
            high.append(np.mean(fake > np.quantile(real, 0.9)))
    return float(np.mean(low)), float(np.mean(high))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few steps and rows: checks that the script runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation import evaluate
    from ehrdiff.models.ehrdiff import EHRDiff

    data_dir = prepare("cinc2012")
    train, test = read_table(data_dir / "train.parquet"), read_table(data_dir / "test.parquet")
    steps = 3000
    if args.quick:
        train, test, steps = train.subset(range(400)), test.subset(range(100)), 20
    synthetic, seconds, tails = {}, {}, {}
    for name, settings in VARIANTS.items():
        started = time.perf_counter()
        model = EHRDiff("default", steps=steps, batch_size=256, warmup_steps=steps // 4, seed=args.seed, **settings)
        synthetic[name] = model.fit(train, progress=False).sample(train.n_rows, seed=args.seed)
        seconds[name] = time.perf_counter() - started
        tails[name] = tail_shares(train, synthetic[name])
        print(f"{name}: trained and sampled in {seconds[name]:.0f} s", flush=True)
    tails["reference:real-test"] = tail_shares(train, test)
    report = evaluate(train, test, synthetic, label="label", references=True, seed=args.seed,
                      threads=args.threads, figures=False)
    metrics = report.metrics
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "threads": args.threads, "load_average": os.getloadavg()},
           "steps": steps, "batch_size": 256, "seed": args.seed, "train_rows": train.n_rows, "seconds": seconds,
           "tails": tails, "metrics": metrics, "quick": args.quick}
    (ROOT / "out").mkdir(exist_ok=True)
    (ROOT / "out" / "cinc_continuous.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    if args.quick:
        print(json.dumps({k: {m: metrics[k].get(m) for m, _ in METRICS} for k in VARIANTS}, indent=1, default=float))
        return
    names = [*VARIANTS, "reference:independent", "reference:real-test"]
    lines = ["# CinC 2012: min-max or quantile scaling of the default model's continuous columns", "",
             "Command: `.venv/bin/python benchmarks/cinc_continuous.py` (writes this file and "
             "benchmarks/out/cinc_continuous.json)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
             f"({args.threads} thread), other jobs sharing the cores (load average at the end "
             f"{os.getloadavg()[0]:.1f}).", "",
             f"The default model (preset `default`), {steps:,} steps at batch 256, seed {args.seed}, on the CinC 2012 "
             f"set-a patient split ({train.n_rows:,} training rows; {train.n_rows:,} synthetic rows each); one "
             "evaluation report (seed 0). `min-max` scales continuous columns by the training minimum and maximum "
             "(the paper's encoding, the default); `quantile` through their training quantiles (`--set "
             "continuous_scaling=quantile`). One seed: differences of a hundredth or two are within noise (the "
             "CinC tables of docs/results.md give the default model's spread over three seeds).", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in METRICS:
        lines.append(f"| {label} | " + " | ".join(_cell(metrics.get(n, {}).get(key)) for n in names) + " |")
    for side, index in (("below the 10th", 0), ("above the 90th", 1)):
        lines.append(f"| share of values {side} training percentile | "
                     + " | ".join(_cell(tails[n][index]) if n in tails else "-" for n in names) + " |")
    lines.append("| train and sample seconds | " + " | ".join(f"{seconds[n]:,.0f}" if n in seconds else "-"
                                                           for n in names) + " |")
    lines += ["", READING]
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "cinc_continuous.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
