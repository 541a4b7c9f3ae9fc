"""The default model's two scalings of continuous columns on CinC 2012 (in-hospital death).

    .venv/bin/python benchmarks/cinc_continuous.py --threads 2      # about 20 min on the 2-core machine
    .venv/bin/python benchmarks/cinc_continuous.py --quick          # a smoke run (numbers meaningless)

The default model trained with each scaling and seeds 0-2 (``--seeds``) at the experiment budget of the CinC
tables (3,000 steps at batch 256, warm-up a quarter of them as the experiment runner's) on the same patient split
(``ehrdiff prepare cinc2012``, into benchmarks/out/data/) and sampled at the training size, then evaluated in one
report (docs/metrics.md) with the reference rows:
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
from default_vs_paper import cell
from ehrdiff.experiments.tables import summarize

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
evenly: the KS distance halves, the continuous correlation distance comes down to about the real test half's and
the logistic discriminator separates fewer rows. The model then draws fewer extreme values than the real data has,
and its TSTR is lower on average, with a wide spread over the seeds: the extremes it misses seem to carry part of
the signal for in-hospital death. Neither scaling
fools the trees discriminator (cinc_consistency.md: the rules that tie a variable's summaries together). So the
default stays min-max, the paper's, which keeps the TSTR; choose the quantile scaling when the continuous marginals
matter more than the label's prediction. One data set: a reason to try it, not a verdict."""
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


def run_variants(train, steps: int, seeds: int) -> tuple[dict, dict, dict]:
    """Each scaling x seed trained and sampled: the synthetic tables, seconds and tail shares by run name."""
    from ehrdiff.models.ehrdiff import EHRDiff

    synthetic, seconds, tails = {}, {}, {}
    for name, settings in VARIANTS.items():
        for seed in range(seeds):
            run = f"{name}/seed-{seed}"
            started = time.perf_counter()
            model = EHRDiff("default", steps=steps, batch_size=256, warmup_steps=steps // 4, seed=seed, **settings)
            synthetic[run] = model.fit(train, progress=False).sample_table(train.n_rows, seed=seed)
            seconds[run] = time.perf_counter() - started
            tails[run] = tail_shares(train, synthetic[run])
            print(f"{run}: trained and sampled in {seconds[run]:.0f} s", flush=True)
    return synthetic, seconds, tails


def table_values(metrics: dict, tails: dict, seeds: int) -> dict[str, dict[str, list]]:
    """{column: {metric or tail side: values over the seeds}} for the variants and the two references."""
    values = {name: {key: [metrics[f"{name}/seed-{s}"].get(key) for s in range(seeds)] for key, _ in METRICS}
              for name in VARIANTS}
    for name in VARIANTS:
        for index, side in enumerate(("low", "high")):
            values[name][side] = [tails[f"{name}/seed-{s}"][index] for s in range(seeds)]
    for ref in ("reference:independent", "reference:real-test"):
        values[ref] = {key: [metrics[ref].get(key)] for key, _ in METRICS}
    values["reference:real-test"].update(low=[tails["reference:real-test"][0]], high=[tails["reference:real-test"][1]])
    return values


def markdown(values: dict, seconds: dict, steps: int, train_rows: int, args: argparse.Namespace) -> str:
    names = [*VARIANTS, "reference:independent", "reference:real-test"]
    options = ([f"--threads {args.threads}"] if args.threads != 1 else []) + \
        ([f"--seeds {args.seeds}"] if args.seeds != 3 else [])
    command = " ".join([".venv/bin/python benchmarks/cinc_continuous.py", *options])
    lines = ["# CinC 2012: min-max or quantile scaling of the default model's continuous columns", "",
             f"Command: `{command}` (writes this file and benchmarks/out/cinc_continuous.json)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
             f"({args.threads} thread{'s' * (args.threads > 1)}); load average at the end {os.getloadavg()[0]:.1f}.",
             "",
             f"The default model (preset `default`), {steps:,} steps at batch 256, seeds 0-{args.seeds - 1}, on the "
             f"CinC 2012 set-a patient split ({train_rows:,} training rows; as many synthetic rows per run); one "
             "evaluation report (seed 0); cells: mean ± standard deviation over the seeds. `min-max` scales "
             "continuous columns by the training minimum and maximum (the paper's encoding, the default); "
             "`quantile` through their training quantiles (`--set continuous_scaling=quantile`).", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    labels = [*METRICS, ("low", "share of values below the 10th training percentile"),
              ("high", "share of values above the 90th training percentile")]
    for key, label in labels:
        lines.append(f"| {label} | " + " | ".join(cell(summarize(values[n].get(key, []))) for n in names) + " |")
    lines.append("| train and sample seconds (per seed) | " + " | ".join(
        f"{np.mean([seconds[f'{n}/seed-{s}'] for s in range(args.seeds)]):,.0f}" if n in VARIANTS else "-"
        for n in names) + " |")
    lines += ["", READING]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="training and sampling seeds 0..N-1 (default 3)")
    parser.add_argument("--quick", action="store_true", help="a few steps and rows: checks that the script runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation import evaluate

    data_dir = prepare("cinc2012")
    train, test = read_table(data_dir / "train.parquet"), read_table(data_dir / "test.parquet")
    steps = 3000
    if args.quick:
        train, test, steps = train.subset(range(400)), test.subset(range(100)), 20
    synthetic, seconds, tails = run_variants(train, steps, args.seeds)
    tails["reference:real-test"] = tail_shares(train, test)
    report = evaluate(train, test, synthetic, label="label", references=True, seed=0, threads=args.threads,
                      figures=False)
    metrics = report.metrics
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "threads": args.threads, "load_average": os.getloadavg()},
           "steps": steps, "batch_size": 256, "seeds": args.seeds, "train_rows": train.n_rows, "seconds": seconds,
           "tails": tails, "metrics": metrics, "quick": args.quick}
    (ROOT / "out").mkdir(exist_ok=True)
    (ROOT / "out" / "cinc_continuous.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    values = table_values(metrics, tails, args.seeds)
    if args.quick:
        print(json.dumps({name: {k: cell(summarize(v)) for k, v in row.items()} for name, row in values.items()},
                         indent=1))
        return
    text = markdown(values, seconds, steps, train.n_rows, args)
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "cinc_continuous.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
