"""Differentially private and conditional EHRDiff on real data: utility and privacy at epsilon = 1, 10 and without
DP, and conditional fidelity per class.

    .venv/bin/python benchmarks/bench_private.py                            # CinC 2012, about 15-20 min on 1 thread
    .venv/bin/python benchmarks/bench_private.py --dataset uci-diabetes     # UCI diabetes, about 1-1.5 h on 1 thread
    .venv/bin/python benchmarks/bench_private.py --quick                    # a smoke run (numbers meaningless)

For the dataset it prepares the patient-level train/test split with ``ehrdiff prepare`` (into benchmarks/out/data/,
once), then trains with one small, fixed budget per dataset (the same network, batch and steps for every run, so
the rows differ only in the privacy mechanism):
  - ``no DP``: EHRDiff, ordinary training;
  - ``DP eps=E``: DP-SGD (Poisson sampling, per-example clipping C, K noise draws, RDP accountant, delta 1e-5);
  - ``conditional``: EHRDiff trained with ``condition="label"`` and sampled with the training label balance.
Each model samples as many rows as the training table has; ``ehrdiff.evaluation.evaluate`` compares them with the
real rows (plus the real-test reference). Conditional fidelity: for each label class c, the mean of every encoded
column (continuous columns scaled to [0, 1], missing indicators, one-hot categories, codes) in the real training
rows of class c against (a) the conditional model's rows for c (guidance 0 and 1), (b) the unconditional model's
rows, all of them, and (c) the unconditional model's rows whose generated label is c. Reported: mean absolute
error and Pearson correlation of those means, and the correlation of the class *shift* (class mean minus the
training mean) real vs synthetic, which is what conditioning must get right.

Torch and the evaluation run on ``--threads`` threads (default 1: the machine has 2 shared cores). Writes
benchmarks/out/private_DATASET.json and benchmarks/results/private.md (CinC) or private_uci.md (UCI).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
DATA = Path("/work/shared/data")

PREPARE = {
    "cinc2012": ["cinc2012", "--records", str(DATA / "physionet-challenge-2012" / "set-a.tar.gz"),
                 "--outcomes", str(DATA / "physionet-challenge-2012" / "Outcomes-a.txt")],
    "uci-diabetes": ["uci-diabetes", "--zip", str(DATA / "uci-diabetes-130-us-hospitals" / "dataset_diabetes.zip")],
}
# one budget per dataset: (network, batch, steps, noise draws K); UCI has 18x the rows of CinC
BUDGET = {
    "cinc2012": dict(hidden_dims=(256, 256), embedding_width=64, batch_size=256, steps=1500, noise_draws=4),
    "uci-diabetes": dict(hidden_dims=(256, 256), embedding_width=64, batch_size=512, steps=2000, noise_draws=4),
}
HEADLINE = {
    "cinc2012": ["continuous_ks_mean", "continuous_wasserstein_mean", "continuous_correlation_distance",
                 "categorical_tvd_mean", "discriminator_auroc", "tstr_auroc", "label_tvd", "mia_auroc", "dcr_ratio",
                 "nnaa_privacy_loss"],
    "uci-diabetes": ["prevalence_pearson", "prevalence_spearman", "dimwise_prediction_auroc_gap",
                     "discriminator_auroc", "tstr_auroc", "label_tvd", "mia_auroc", "dcr_ratio", "nnaa_privacy_loss",
                     "exact_copy_rate"],
}


def prepare(dataset: str) -> Path:
    out = ROOT / "out" / "data" / dataset
    if not (out / "train.parquet").exists():
        cli = [sys.executable, "-c", "import sys; from ehrdiff.cli import main; sys.exit(main())"]
        subprocess.run([*cli, "-q", "prepare", *PREPARE[dataset], "-o", str(out)], check=True)
    return out


def class_means(encoder, table, label: str, classes: list) -> dict:
    """{class: mean of every encoded column over the rows of that class}, plus "all"."""
    frame = table.frame
    features = type(table)(frame.drop(columns=[label]), {c: k for c, k in table.kinds.items() if c != label})
    X = encoder.transform(features, dtype=np.float64)
    out = {"all": X.mean(axis=0)}
    values = frame[label].to_numpy()
    for c in classes:
        rows = X[values == c]
        out[c] = rows.mean(axis=0) if len(rows) else np.full(X.shape[1], np.nan)
    return out


def compare(real: np.ndarray, synthetic: np.ndarray, real_all: np.ndarray) -> dict:
    ok = np.isfinite(synthetic)
    if not ok.any():
        return {"mae": None, "pearson": None, "shift_pearson": None}
    shift_real, shift_syn = real - real_all, synthetic - real_all
    return {"mae": float(np.abs(real - synthetic)[ok].mean()),
            "pearson": float(np.corrcoef(real[ok], synthetic[ok])[0, 1]),
            "shift_pearson": float(np.corrcoef(shift_real[ok], shift_syn[ok])[0, 1])}


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(PREPARE), default="cinc2012")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--class-rows", type=int, default=5000,
                        help="at most this many conditional rows per class and guidance (default 5000)")
    parser.add_argument("--quick", action="store_true", help="a few steps and rows: checks that the script runs")
    return parser.parse_args()


def train_and_sample(runs: dict[str, dict], common: dict, train, n: int, seed: int) -> tuple[dict, dict, dict]:
    """Each run's fitted model, its n synthetic rows and its training and sampling seconds."""
    from ehrdiff.models.ehrdiff import EHRDiff
    from ehrdiff.privacy.secret import given_noise_seed

    models, synthetic, seconds = {}, {}, {}
    for name, extra in runs.items():
        t0 = time.perf_counter()
        # a benchmark reruns to the same numbers: the DP runs' noise from the run's seed (a release draws it secretly)
        with given_noise_seed(seed):
            models[name] = EHRDiff("cpu-fast", **common, **extra).fit(train, progress=False)
        seconds[name] = {"train": time.perf_counter() - t0}
        t0 = time.perf_counter()
        synthetic[name] = models[name].sample_table(n, seed=seed)
        seconds[name]["sample"] = time.perf_counter() - t0
        print(f"{name}: trained in {seconds[name]['train']:.0f} s, sampled in {seconds[name]['sample']:.0f} s",
              flush=True)
    return models, synthetic, seconds


def per_class_fidelity(cond, train, unconditional, args: argparse.Namespace) -> list[dict]:
    """Conditional fidelity per class: the conditional model's rows of each class (guidance 0 and 1) and the
    unconditional model's rows, against the real rows of that class."""
    encoder, classes = cond.encoder_, cond.condition_.classes
    real = class_means(encoder, train, "label", classes)
    uncond = class_means(encoder, unconditional, "label", classes)
    per_class = []
    for c in classes:
        count = int((train.frame["label"] == c).sum())
        drawn = min(count, args.class_rows)
        rows = {"unconditional, all rows": uncond["all"], "unconditional, rows with this label": uncond[c]}
        for w in (0.0, 1.0):
            sample = cond.sample_table(drawn, seed=args.seed + 1, condition=c, guidance=w)
            rows[f"conditional, guidance {w:g}"] = class_means(encoder, sample, "label", [c])[c]
        for what, means in rows.items():
            per_class.append({"class": c, "rows": count, "drawn": drawn, "synthetic": what,
                              **compare(real[c], means, real["all"])})
    return per_class


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation import evaluate

    load_before = os.getloadavg()
    started = time.perf_counter()
    budget = dict(BUDGET[args.dataset])
    if args.quick:
        budget.update(steps=6, noise_draws=2)
    data_dir = prepare(args.dataset)
    train, test = read_table(data_dir / "train.parquet"), read_table(data_dir / "test.parquet")
    if args.quick:
        train, test = train.subset(range(600)), test.subset(range(200))
    n = train.n_rows
    common = dict(hidden_dims=budget["hidden_dims"], embedding_width=budget["embedding_width"],
                  batch_size=budget["batch_size"], steps=budget["steps"], seed=args.seed, warmup_steps=50)
    runs = {"no DP": {}}
    for eps in args.epsilons:
        runs[f"DP eps={eps:g}"] = dict(dp=True, dp_epsilon=eps, dp_delta=args.delta,
                                       dp_noise_draws=budget["noise_draws"])
    runs["conditional"] = dict(condition="label")
    models, synthetic, seconds = train_and_sample(runs, common, train, n, args.seed)

    t0 = time.perf_counter()
    report = evaluate(train, test, synthetic, label="label", references=True, seed=args.seed, threads=args.threads,
                      figures=False)
    eval_seconds = time.perf_counter() - t0
    per_class = per_class_fidelity(models["conditional"], train, synthetic["no DP"], args)

    total = time.perf_counter() - started
    load_after = os.getloadavg()
    result = {"dataset": args.dataset, "budget": {k: list(v) if isinstance(v, tuple) else v for k, v in budget.items()},
              "train_rows": n, "metrics": report.metrics, "privacy": {k: m.privacy_ for k, m in models.items()},
              "per_class": per_class, "seconds": seconds, "evaluate_seconds": eval_seconds, "total_seconds": total,
              "load_average": [load_before[0], load_after[0]], "quick": args.quick}
    out_dir = ROOT / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"private_{args.dataset}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.quick:
        name = "private.md" if args.dataset == "cinc2012" else "private_uci.md"
        (ROOT / "results" / name).write_text(markdown(result, args))
    print(f"done in {total / 60:.1f} min")


def markdown(result: dict, args) -> str:
    ds, b = result["dataset"], result["budget"]
    title = {"cinc2012": "CinC 2012", "uci-diabetes": "UCI diabetes (patient level)"}[ds]
    extra = "" if ds == "cinc2012" else " --dataset uci-diabetes"
    lines = [f"# Differential privacy and conditional generation: {title}", "",
             f"Command: `.venv/bin/python benchmarks/bench_private.py{extra}` (writes this file and "
             f"benchmarks/out/private_{ds}.json)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
             f"({args.threads} thread), Python {platform.python_version()}. Load average (1 min) before / after: "
             f"{result['load_average'][0]:.2f} / {result['load_average'][1]:.2f} (other jobs shared the cores when "
             f"above the core count). Total run time {result['total_seconds'] / 60:.1f} min.", "",
             f"**A small CPU budget, not the paper's**: every model is EHRDiff `cpu-fast` with hidden layers "
             f"{b['hidden_dims']}, noise-embedding width {b['embedding_width']}, batch {b['batch_size']} and "
             f"{b['steps']} steps ({b['steps'] * b['batch_size'] / result['train_rows']:.0f} epochs of "
             f"{result['train_rows']:,} training rows), seed {args.seed}. DP runs: DP-SGD with Poisson sampling "
             f"(rate batch / rows), per-example clipping at C = 1, K = {b['noise_draws']} noise draws per "
             f"example, delta = {args.delta:g}, RDP accountant (Opacus); the same network, batch and steps. "
             "Synthetic sets have as many rows as the training table. More steps help the non-private model; under "
             "DP more steps cost more noise per step for the same epsilon.", "",
             "## Utility, fidelity and privacy", "",
             "Metric definitions: docs/metrics.md. `dp_epsilon` is the epsilon spent, from Opacus's accountant "
             "after training (saved in the model's model.json).", ""]
    keys = HEADLINE[ds]
    names = list(result["metrics"])
    lines.append("| dataset | dp_epsilon | noise multiplier | train s | " + " | ".join(keys) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(keys))
    for name in names:
        m = result["metrics"][name]
        p = result["privacy"].get(name) or {}
        secs = result["seconds"].get(name, {}).get("train")
        cells = [fmt(p.get("dp_epsilon")) if p else ("-" if name.startswith("reference") else "inf (no DP)"),
                 fmt(p.get("dp_noise_multiplier")), fmt(secs) if secs is None else f"{secs:.0f}"]
        lines.append(f"| {name} | " + " | ".join(cells + [fmt(m.get(k)) for k in keys]) + " |")
    lines += ["", "`conditional` is sampled with the training label balance (each row's label chosen first, then "
              "its features); `reference:real-test` is half of the real test rows (the ideal).", "",
              "## Conditional fidelity per class (label)", "",
              "Per label class: the mean of every encoded column in the real training rows of that class vs the "
              "synthetic rows. MAE and Pearson compare the means; *shift Pearson* correlates the class's shift "
              "(class mean minus training mean) real vs synthetic: 0 means the rows carry no trace of the class. "
              f"Conditional rows drawn per class and guidance: as many as the class has real rows, at most "
              f"{args.class_rows:,}.", "",
              "| class | real rows | synthetic rows | MAE | Pearson | shift Pearson |", "|---|---|---|---|---|---|"]
    for r in result["per_class"]:
        lines.append(f"| {r['class']} | {r['rows']:,} | {r['synthetic']} | {fmt(r['mae'])} | {fmt(r['pearson'])} | "
                     f"{fmt(r['shift_pearson'])} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
