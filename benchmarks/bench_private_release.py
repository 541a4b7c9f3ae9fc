"""The whole private release on UCI diabetes (patient level) or CinC 2012 (``--dataset cinc``): private EHRDiff,
with each way of spending the budget ablated, against the private baselines (dp-marginals, MST), at each epsilon
(delta 1e-5; every number in the release composed by Opacus's RDP accountant: docs/conditional-and-dp.md).

    .venv/bin/python benchmarks/bench_private_release.py                        # seed 0, epsilon 10 and 1
    .venv/bin/python benchmarks/bench_private_release.py --seeds 0 1 2 --variants conditional,dp-marginals
    .venv/bin/python benchmarks/bench_private_release.py --variants full,dp-marginals --epsilons 1
    .venv/bin/python benchmarks/bench_private_release.py --quick                # a smoke run (numbers meaningless)
    .venv/bin/python benchmarks/bench_private_release.py --dataset cinc --data DIR  # CinC 2012, DIR/bounds.json

Variants (EHRDiff ``cpu-fast``: Bernoulli head, codes per row matched, every run DP-SGD with Poisson sampling,
clipping C = 1):
  full                 noisy one-way marginals (0.85 of the budget by epsilon alone, ``dp_marginals_share``) start
                       the Bernoulli head's output bias and calibrate the sampled codes' prevalences (swaps inside
                       rows, ``code_prevalence``), the noisy histogram of codes per row drives count matching, large
                       Poisson batches (FULL's batch) and few steps, a small network (FULL's hidden layers), one noise
                       draw per example, noisy pair counts of the commonest codes (0.3 of the budget alone,
                       ``dp_pairs_share``) met by swapping codes between rows
  no-bias-init         as full, the output layer left at its random start (the head's ``init_output`` skipped)
  no-count-matching    as full, ``codes_per_row="model"`` and ``min_codes="none"``
  small-batch          as full, batch 512 and as many more steps as keep the rows seen per run equal
  large-network        as full, hidden layers (512, 256, 256, 512) (the cpu-fast network)
  conditional          as full, ``condition="label"``, sampled with the noisy class balance
  no-grids             as conditional, no recording grids (``GRID_SHARE`` 0: each bin's mass spread evenly
                       over the declared step's values in it)
  no-class-denoise     as conditional, each class's histogram made non-negative on its own (norm-sub), without
                       the column's support or the shrinkage towards the pooled shape (``_class_histograms``)
  class-clip           as conditional, each class's noisy counts clipped at 0 (as the unconditional marginals are):
                       every empty bin keeps its noise's positive part
  tail-floor-S         as conditional, ``dp_tail_floor=S`` (S = 0.2, 0.3): every bin outside a column's support
                       given S noise deviations of each class's counts back (``_class_histograms``), so rows reach
                       the values the support cleared, as clipped noise spreads them but less
  no-count-ties        as conditional, no panel count ties (``COUNT_TIES_SHARE`` 0: a panel's counts drawn apart)
  no-prior             as conditional, no Gaussian prior (``dp_prior_share=0``: no second moments released, the
                       continuous columns' skip EDM's c_skip; diffusion/gaussian_prior.py)
  no-tree              as conditional, no measuring tree (``dp_tree_share=0``: no measured pairs released, each
                       row keeps the measuring pattern the model drew; models/ehrdiff/patterns.py)
  share-0.05           as conditional, the marginals' share 0.05 (before calibration: the head's bias only)
  share-0.5            as conditional, the marginals' share 0.5 (the default before 0.85)
  no-pairs             as conditional, no pair counts (``dp_pairs_share=0``, the default before 0.3)
  low-lr               as full, learning rate 3e-4 (Adam moves every weight about lr per step, noise or not)
  steps-1000           as full, 1,000 steps (100 warm-up): more noise per step (epsilon 10: noise multiplier 0.83
                       at 100 steps, about 1.8 at 1,000) for ten times the updates
  steps-3000           as full, 3,000 steps (300 warm-up; about 18 minutes on one core)
  sigma-data-0.14      as full, the preset's sigma_data 0.14 for the normal-scaled continuous columns too (a
                       private model's default is 1: the little-trained denoiser's prior is then near their marginal)
  dp-marginals         the private baseline: independent columns from noisy one-way counts
  mst                  MST (McKenna et al. 2021, ``--model mst``; needs mbi: run this variant with a Python that
                       has the ``mst`` extra)
With ``--also-uncalibrated`` each EHRDiff run also keeps its sampled rows as they were before calibration (the
same trained model and sampling pass, ``code_prevalence="model"``: the calibration's ablation), as "VARIANT
(uncalibrated)".
Each synthetic set has ``--rows`` rows (default 10,000); ``ehrdiff.evaluation.evaluate`` compares them with the
real rows (one evaluation for all). Torch and the evaluation run on ``--threads`` threads (default 1). Runs can be
split over processes: ``--no-evaluate`` keeps each run's rows and facts in benchmarks/out/private_release_DATASET/,
and ``--evaluate-only`` evaluates every run kept there at once. Writes benchmarks/out/private_release_DATASET.json
and benchmarks/results/private_release_DATASET.md (``--name NAME``: benchmarks/out/NAME/, NAME.json and NAME.md).

CinC 2012 (``ehrdiff prepare cinc2012 ... -o DIR``): every run declares the source's public ranges, recording steps
and panels, DIR/bounds.json (``--bounds``), so no budget goes to range estimates; the table is scored on its
continuous columns (KS), both discriminators, TSTR and the declared rules instead of code prevalences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ehrdiff.privacy.secret import given_noise_seed
from provenance import code_version

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

FULL = dict(hidden_dims=(256,), embedding_width=64, batch_size=4096, steps=100, warmup_steps=10, lr=2e-3,
            dp_noise_draws=1, num_noise_levels=16, sigma_min=0.1)
VARIANTS = {
    "full": {},
    "no-bias-init": {},
    "no-count-matching": dict(codes_per_row="model", min_codes="none"),
    "small-batch": dict(batch_size=512, steps=FULL["steps"] * FULL["batch_size"] // 512),
    "large-network": dict(hidden_dims=(512, 256, 256, 512), embedding_width=128),
    "conditional": dict(condition="label"),
    "low-lr": dict(lr=3e-4),
    "steps-1000": dict(steps=1000, warmup_steps=100),
    "sigma-data-0.14": dict(normal_sigma_data=0.14),
    "steps-3000": dict(steps=3000, warmup_steps=300),
    "no-grids": dict(condition="label"),
    "no-count-ties": dict(condition="label"),
    "no-class-denoise": dict(condition="label"),
    "class-clip": dict(condition="label"),
    "tail-floor-0.2": dict(condition="label", dp_tail_floor=0.2),
    "tail-floor-0.3": dict(condition="label", dp_tail_floor=0.3),
    "no-prior": dict(condition="label", dp_prior_share=0.0),
    "no-tree": dict(condition="label", dp_tree_share=0.0),
    "share-0.05": dict(condition="label", dp_marginals_share=0.05),
    "share-0.5": dict(condition="label", dp_marginals_share=0.5),
    "no-pairs": dict(condition="label", dp_pairs_share=0.0),
    "dp-marginals": None,
    "mst": None,
}
# CinC's 3,200 training rows: a Poisson batch needs fewer than them; with its continuous columns the second moments
# and the measured pairs carry what DP-SGD's network does not learn, so the network gets 30 steps, the marginals 80 %
# and the second moments 40 % of epsilon alone (docs/conditional-and-dp.md)
FULL_FOR = {"cinc": dict(batch_size=1024, steps=30, warmup_steps=3, dp_marginals_share=0.8, dp_prior_share=0.4)}
DATASETS = {   # title, headline metrics, issue 21's targets
    "uci": ("UCI diabetes (patient level)",
            ["prevalence_spearman", "prevalence_pearson", "dimwise_prediction_auroc_gap", "tstr_auroc",
             "discriminator_auroc", "mia_auroc", "dcr_ratio"],
            "epsilon 10: tstr_auroc >= 0.72, dimwise_prediction_auroc_gap <= 0.15, prevalence_spearman >= 0.90; "
            "epsilon 1: tstr_auroc >= 0.65, prevalence_spearman >= 0.80; ahead of dp-marginals and MST"),
    "cinc": ("CinC 2012",
             ["continuous_ks_mean", "categorical_tvd_mean", "discriminator_auroc_lr", "discriminator_auroc",
              "tstr_auroc", "rule_break_rate", "mia_auroc", "exact_copy_rate"],
             "ahead of dp-marginals and MST on TSTR, KS and both discriminators at each epsilon"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="uci", help="which table (names the outputs)")
    parser.add_argument("--data", type=Path, help="a folder with train.parquet and test.parquet from `ehrdiff "
                        "prepare` (default for uci: prepared into benchmarks/out/data/; cinc needs it)")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[10.0, 1.0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all)")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of training and sampling")
    parser.add_argument("--also-uncalibrated", action="store_true",
                        help="also sample each EHRDiff run with code_prevalence='model'")
    parser.add_argument("--rows", type=int, default=10_000, help="synthetic rows per run (default 10,000)")
    parser.add_argument("--no-evaluate", action="store_true", help="train and sample only; keep the runs")
    parser.add_argument("--evaluate-only", action="store_true", help="evaluate the runs kept by --no-evaluate")
    parser.add_argument("--quick", action="store_true", help="a few steps and rows: checks that the script runs")
    parser.add_argument("--name", help="names the kept runs' folder and the outputs (default private_release_DATASET)")
    args = parser.parse_args()
    args.name = args.name or f"private_release_{args.dataset}"
    return args


def fit_variant(name: str, epsilon: float, seed: int, args: argparse.Namespace, train):
    from ehrdiff.diffusion.bernoulli import BernoulliDenoiser
    from ehrdiff.models import build_model
    from ehrdiff.models.ehrdiff import EHRDiff, private_release
    from ehrdiff.privacy import release

    declared = {"dp_bounds": str(args.bounds)} if args.bounds else {}
    if VARIANTS[name] is None:
        return build_model(name, {"dp_epsilon": epsilon, "dp_delta": args.delta, "seed": seed, **declared}).fit(train)
    settings = {**FULL, **FULL_FOR.get(args.dataset, {}), **VARIANTS[name], "dp": True, "dp_epsilon": epsilon,
                "dp_delta": args.delta, "seed": seed, **declared}
    if args.quick:
        settings.update(steps=3, batch_size=64)
    original = BernoulliDenoiser.init_output, private_release.GRID_SHARE, private_release.COUNT_TIES_SHARE, \
        release._class_histograms
    if name == "no-class-denoise":
        release._class_histograms = lambda noisy, sd, sizes, floor: np.stack([release._norm_sub(h) for h in noisy])
    if name == "class-clip":
        release._class_histograms = lambda noisy, sd, sizes, floor: np.clip(noisy, 0, None)
    if name == "no-bias-init":
        BernoulliDenoiser.init_output = lambda self, prevalence: None
    if name == "no-grids":
        private_release.GRID_SHARE = 0.0
    if name == "no-count-ties":
        private_release.COUNT_TIES_SHARE = 0.0
    try:
        return EHRDiff("cpu-fast", **settings).fit(train, progress=False)
    finally:
        BernoulliDenoiser.init_output, private_release.GRID_SHARE, private_release.COUNT_TIES_SHARE, \
            release._class_histograms = original


def train_and_sample(name: str, epsilon: float, seed: int, args: argparse.Namespace, train, kept: Path) -> None:
    """Fit one variant at ``epsilon``, sample ``args.rows`` rows, keep both the rows and the run's facts."""
    from ehrdiff.models.base import keep_rules

    t0 = time.perf_counter()
    with given_noise_seed(seed):        # a benchmark reruns to the same numbers (a release draws its noise secretly)
        model = fit_variant(name, epsilon, seed, args, train)
    train_s = time.perf_counter() - t0
    privacy = getattr(model, "privacy_", None) or {"dp_epsilon": model.release_["epsilon"],
                                                   "dp_delta": model.release_["delta"], "dp_release": model.release_}
    uncalibrated = args.also_uncalibrated and VARIANTS[name] is not None
    t0 = time.perf_counter()
    table, raw = sample_both(model, args.rows, seed) if uncalibrated else (model.sample_table(args.rows, seed=seed),
                                                                         None)
    table = keep_rules(model, table, seed)[0]        # the table's declared rules, as `ehrdiff sample` keeps them
    raw = None if raw is None else keep_rules(model, raw, seed)[0]
    sample_s = time.perf_counter() - t0
    keep_sample(table, name, epsilon, seed, train_s, sample_s, privacy, kept)
    if raw is not None:
        keep_sample(raw, f"{name} (uncalibrated)", epsilon, seed, train_s, sample_s, privacy, kept)


def sample_both(model, rows: int, seed: int):
    """One sampling pass, kept twice: the calibrated rows (``code_prevalence`` "data") and the same rows before
    calibration (the encoded rows each chunk hands to ``calibrate``, decoded as sample_chunks decodes them)."""
    from ehrdiff.data.writers import concat_tables
    from ehrdiff.models.ehrdiff import model as ehrdiff_model
    from ehrdiff.models.ehrdiff.conditioning import attach_condition

    seen, original = [], ehrdiff_model.calibrate

    def spy(m, matrix, labels, targets, chunk_seed):
        seen.append((matrix, labels))
        return original(m, matrix, labels, targets, chunk_seed)

    ehrdiff_model.calibrate = spy
    try:
        table = model.set_sampling(code_prevalence="data").sample_table(rows, seed=seed)
    finally:
        ehrdiff_model.calibrate = original
    chunks, offset = [], 0
    for matrix, labels in seen:
        decoded = model.encoder_.inverse_transform(matrix, id_offset=offset)
        chunks.append(decoded if labels is None else attach_condition(decoded, model.condition_, labels))
        offset += len(matrix)
    return table, concat_tables(chunks)


def keep_sample(table, variant: str, epsilon: float, seed: int, train_s: float, sample_s: float, privacy: dict,
                kept: Path) -> None:
    from ehrdiff.data.io import write_table

    key = f"{variant} eps={epsilon:g} seed={seed}"
    stem = key.replace(" ", "_").replace("=", "").replace("(", "").replace(")", "")
    write_table(table, kept / f"{stem}.parquet")
    run = {"key": key, "variant": variant, "epsilon": epsilon, "seed": seed, "train_s": train_s,
           "sample_s": sample_s, "privacy": privacy, "load_average": os.getloadavg()[0],
           "command": " ".join(sys.argv[1:]), "code": code_version()}
    (kept / f"{stem}.json").write_text(json.dumps(run, indent=2, default=str) + "\n")
    print(f"{key}: trained in {train_s:.0f} s, sampled in {sample_s:.0f} s, epsilon spent "
          f"{privacy['dp_epsilon']:.3f}", flush=True)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation import evaluate

    load_before, started = os.getloadavg(), time.perf_counter()
    if args.data is None:
        if args.dataset != "uci":
            raise SystemExit("--dataset cinc needs --data DIR (ehrdiff prepare cinc2012 ... -o DIR)")
        from bench_private import prepare
        args.data = prepare("uci-diabetes")
    args.bounds = args.data / "bounds.json" if (args.data / "bounds.json").exists() else None
    train, test = read_table(args.data / "train.parquet"), read_table(args.data / "test.parquet")
    if args.quick:
        train, test = train.subset(range(2000)), test.subset(range(500))
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown} (known: {', '.join(VARIANTS)})")
    kept = ROOT / "out" / f"{args.name}{'_quick' if args.quick else ''}"
    kept.mkdir(parents=True, exist_ok=True)
    if not args.evaluate_only:
        for seed in args.seeds:
            for epsilon in args.epsilons:
                for name in names:
                    train_and_sample(name, epsilon, seed, args, train, kept)
    if args.no_evaluate:
        return
    synthetic, runs = {}, {}
    for facts in sorted(kept.glob("*.json")):
        run = json.loads(facts.read_text())
        runs[run["key"]] = run
        synthetic[run["key"]] = read_table(facts.with_suffix(".parquet"))
    t0 = time.perf_counter()
    report = evaluate(train, test, synthetic, label="label", references=True, seed=0, threads=args.threads,
                      figures=False)
    eval_s = time.perf_counter() - t0
    result = {"runs": runs, "metrics": report.metrics, "train_rows": train.n_rows, "evaluate_s": eval_s,
              "rows": args.rows,
              "total_s": time.perf_counter() - started, "load_average": [load_before[0], os.getloadavg()[0]],
              "full": FULL, "variants": VARIANTS, "quick": args.quick, "command": " ".join(sys.argv[1:])}
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.quick:
        (ROOT / "results" / f"{args.name}.md").write_text(markdown(result, args))
    print(f"done in {result['total_s'] / 60:.1f} min")


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(result: dict, args: argparse.Namespace) -> str:
    runs = result["runs"]
    seeds = sorted({r.get("seed", 0) for r in runs.values()})
    title, headline, targets = DATASETS[args.dataset]
    heading = f"The whole private release: {title}"
    if args.name != f"private_release_{args.dataset}":
        heading = f"{args.name}: the whole private release, {title}"
    lines = [f"# {heading}", "",
             f"Command: `.venv/bin/python benchmarks/bench_private_release.py {result['command']}` (writes this file "
             f"and benchmarks/out/{args.name}.json)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
             f"({args.threads} thread(s)), Python {platform.python_version()}. Load average (1 min) before / after: "
             f"{result['load_average'][0]:.2f} / {result['load_average'][1]:.2f} (other jobs shared the cores when "
             f"above the core count). Evaluation of every kept run at once took {result['evaluate_s'] / 60:.1f} min.",
             "",
             f"Seeds {', '.join(map(str, seeds))} (training noise and sampling), delta {args.delta:g}, "
             f"{result['train_rows']:,} training rows, {result['rows']:,} synthetic rows per run. Runs trained by: "
             + "; ".join(sorted({f"`{r['command']}`" for r in runs.values()}))
             + ". Code (the ehrdiff commit each run trained at; '+': with uncommitted changes, '?': runs kept "
             "before the commit was recorded): " + ", ".join(sorted({r.get("code", "?") for r in runs.values()}))
             + f". `full`: EHRDiff cpu-fast with {json.dumps({**result['full'], **FULL_FOR.get(args.dataset, {})})}; "
             "the other variants change one thing "
             "(the script's docstring); \"(uncalibrated)\": the same trained model sampled with "
             "code_prevalence=\"model\". `dp_epsilon`: the composed total of every mechanism of the release, from "
             "model.json (RDP accountant).", "",
             "## Mean over seeds (standard deviation in brackets when there are several)", "",
             "| run | seeds | " + " | ".join(headline) + " |", "|---|---|" + "---|" * len(headline)]
    groups: dict[str, list[str]] = {}
    for key, run in runs.items():
        groups.setdefault(f"{run['variant']} eps={run['epsilon']:g}", []).append(key)
    for group in sorted(groups):
        keys = groups[group]
        cells = []
        for m in headline:
            values = [result["metrics"].get(k, {}).get(m) for k in keys]
            values = [v for v in values if isinstance(v, (int, float))]
            if not values:
                cells.append("-")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3f}")
            else:
                mean = sum(values) / len(values)
                sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
                cells.append(f"{mean:.3f} ({sd:.3f})")
        lines.append(f"| {group} | {len(keys)} | " + " | ".join(cells) + " |")
    for ref in ("reference:real-test", "reference:independent"):
        metrics = result["metrics"].get(ref, {})
        lines.append(f"| {ref} | - | " + " | ".join(fmt(metrics.get(m)) for m in headline) + " |")
    lines += ["", "## Every run", "",
              "| run | dp_epsilon | train s | sample s | load after | " + " | ".join(headline) + " |",
              "|---|---|---|---|---|" + "---|" * len(headline)]
    for key in sorted(runs):
        run, metrics = runs[key], result["metrics"].get(key, {})
        lines.append(f"| {key} | {run['privacy']['dp_epsilon']:.3f} | {run['train_s']:.0f} | {run['sample_s']:.0f} | "
                     f"{run['load_average']:.1f} | " + " | ".join(fmt(metrics.get(m)) for m in headline) + " |")
    lines += ["", "`load after`: the 1-minute load average when the run had sampled (the runs shared the 2 cores with "
              "other jobs and with each other: their seconds are not comparable with an idle machine's). An "
              "uncalibrated row repeats its run's training seconds (one training, two samples)."]
    if args.bounds:
        lines += ["", f"Every run declared the public ranges (and recording steps and panels, where given) of "
                      f"{args.bounds} (--bounds): no budget spent on ranges; MST and dp-marginals use neither the "
                      "panels nor the recording grids (their values are only rounded to the steps)."]
    lines += ["", f"Targets of issue 21 ({title}): {targets}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
