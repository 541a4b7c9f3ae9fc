"""What keeping the declared rules does to the default model's CinC 2012 rows: rule breaks and discriminators.

`ehrdiff prepare cinc2012` declares, per time-series variable V, V_min <= V_first, V_last, V_mean <= V_max, V_count
a whole number >= 0, and V_count = 0 exactly when V's summaries are missing (data/rules.py). This script trains the
default model on the prepared set-a split, draws one sample, and evaluates it twice with `evaluate` (the metrics of
`ehrdiff evaluate`): as the model makes it (`model.sample_table`), and after the sampler kept the rules
(`models.base.keep_rules`, what `ehrdiff sample` and `model.sample` do), with the cost of keeping them.

    ehrdiff prepare cinc2012 --records set-a.tar.gz --outcomes Outcomes-a.txt -o data/cinc
    .venv/bin/python benchmarks/cinc_rules.py data/cinc                  # about 15 minutes on 2 CPU cores
    .venv/bin/python benchmarks/cinc_rules.py data/cinc --quick          # smoke run (numbers meaningless)

Writes benchmarks/results/cinc_rules.md (and benchmarks/out/cinc_rules.json).
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

from ehrdiff.data.io import read_table
from ehrdiff.data.rules import broken_rows
from ehrdiff.evaluation import evaluate
from ehrdiff.models.base import keep_rules
from ehrdiff.models.ehrdiff import EHRDiff

ROOT = Path(__file__).resolve().parent
SHOWN = ("rule_break_rate", "rule_break_max", "discriminator_auroc", "discriminator_auroc_lr", "continuous_ks_mean",
         "continuous_missing_rate_diff", "continuous_correlation_distance", "tstr_auroc", "mia_auroc",
         "exact_copy_rate")
RAW, KEPT = "default, rules not kept", "default, rules kept"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder written by ehrdiff prepare cinc2012 (train/test.parquet)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and evaluation threads (default 1)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = read_table(args.data / "train.parquet"), read_table(args.data / "test.parquet")
    if not train.rules:
        sys.exit(f"{args.data}/train.parquet declares no rules: prepare it with this version of ehrdiff")
    steps = 20 if args.quick else args.steps
    load = os.getloadavg()[0]

    started = time.perf_counter()
    model = EHRDiff(steps=steps, seed=args.seed).fit(train, progress=False)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    raw = model.sample_table(train.n_rows, seed=args.seed)
    sample_seconds = time.perf_counter() - started
    started = time.perf_counter()
    kept, cost = keep_rules(model, raw, args.seed)
    keep_seconds = time.perf_counter() - started
    print(f"trained {steps} steps in {train_seconds:.0f} s, sampled {raw.n_rows} rows in {sample_seconds:.0f} s; "
          f"{cost.line()} in {keep_seconds:.1f} s", flush=True)

    started = time.perf_counter()
    report = evaluate(train, test, {RAW: raw.frame, KEPT: kept.frame}, seed=args.seed, threads=args.threads,
                      figures=False, **({"dimwise_codes": 2} if args.quick else {}))
    evaluate_seconds = time.perf_counter() - started
    metrics = report.metrics
    rules = report.to_dict()["rules"]["datasets"]
    record = {"steps": steps, "seed": args.seed, "rows": train.n_rows, "rules": len(train.rules),
              "train_seconds": train_seconds, "sample_seconds": sample_seconds, "keep_seconds": keep_seconds,
              "evaluate_seconds": evaluate_seconds, "cost": vars(cost),
              "rows_breaking_before": float(broken_rows(raw.frame, train.rules).mean()),
              "metrics": {name: {k: metrics[name].get(k) for k in SHOWN} for name in metrics}, "rule_breaks": rules,
              "machine": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                          "platform": platform.platform(), "load_average_before": load,
                          "load_average_after": os.getloadavg()[0]}}
    (ROOT / "out").mkdir(exist_ok=True)
    (ROOT / "out" / "cinc_rules.json").write_text(json.dumps(record, indent=1) + "\n")
    if args.quick:
        print(json.dumps(record["metrics"][KEPT]))
        return
    names = list(metrics)
    worst = sorted(rules[RAW], key=lambda r: -(rules[RAW][r] or 0))[:8]
    lines = ["# CinC 2012: the default model's rows with and without the declared rules kept", "",
             f"Command: `.venv/bin/python benchmarks/cinc_rules.py {' '.join(sys.argv[1:])}` on the set-a split of "
             f"`ehrdiff prepare cinc2012` ({train.n_rows:,} / {test.n_rows:,} stays, {len(train.rules)} declared "
             f"rules). Machine: {os.cpu_count()} CPU cores shared with other jobs, {torch.get_num_threads()} torch "
             f"thread(s), torch {torch.__version__}; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after.",
             "",
             f"The default model (`EHRDiff(steps={steps}, seed={args.seed})`) trained in {train_seconds:.0f} s and "
             f"drew {raw.n_rows:,} rows in {sample_seconds:.0f} s. Keeping the rules took {keep_seconds:.1f} s: "
             f"{cost.projected:,} rows projected, {cost.resampled:,} resampled ({cost.drawn:,} extra rows drawn), "
             f"{cost.still_broken:,} still breaking a rule. Both samples are the same draw, scored by one `evaluate` "
             f"call (seed {args.seed}, the metrics of `ehrdiff evaluate`) in {evaluate_seconds:.0f} s.", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in SHOWN:
        cells = ["-" if metrics[n].get(key) is None else f"{metrics[n][key]:.3f}" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "The rules broken most often by the model's own rows (share of rows):", "",
              "| rule | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for rule in worst:
        cells = ["-" if rules.get(n, {}).get(rule) is None else f"{rules[n][rule]:.3f}" for n in names]
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    (ROOT / "results" / "cinc_rules.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
