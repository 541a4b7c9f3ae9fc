"""What keeping the declared rules does to the default model's CinC 2012 rows: rule breaks and discriminators.

`ehrdiff prepare cinc2012` declares, per time-series variable V, V_min <= V_first, V_last, V_mean <= V_max, V_count
a whole number >= 0, and V_count = 0 exactly when V's summaries are missing (data/rules.py). This script trains the
default model on the prepared set-a split, draws one sample, and evaluates it twice with `evaluate` (the metrics of
`ehrdiff evaluate`): as the model makes it (`model.sample_table`), and after the sampler kept the rules
(`models.base.keep_rules`, what `ehrdiff sample` and `model.sample` do), with the cost of keeping them; beside them,
independent columns with the training marginals made to keep the rules (what keeping them does to rows whose
marginals are right), and the projections tried before those of data/rules.py, on the same sample.

    ehrdiff prepare cinc2012 --records set-a.tar.gz --outcomes Outcomes-a.txt -o data/cinc
    .venv/bin/python benchmarks/cinc_rules.py data/cinc                  # about 15 minutes on 2 CPU cores
    ehrdiff train data/cinc/train.parquet --steps 1000 --seed 0 -o runs/cinc-1000    # the same model, saved,
    .venv/bin/python benchmarks/cinc_rules.py data/cinc --model runs/cinc-1000      # scored without training again
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

import numpy as np
import pandas as pd
import torch
from scipy.stats import ks_2samp

from ehrdiff.data.io import read_table
from ehrdiff.data import rules as R
from ehrdiff.data.rules import broken_rows
from ehrdiff.evaluation import evaluate
from ehrdiff.models import load_model
from ehrdiff.models.base import keep_rules
from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.models.reference import Marginals

ROOT = Path(__file__).resolve().parent
SHOWN = ("rule_break_rate", "rule_break_max", "discriminator_auroc", "discriminator_auroc_lr", "continuous_ks_mean",
         "continuous_missing_rate_diff", "continuous_correlation_distance", "tstr_auroc", "mia_auroc",
         "exact_copy_rate")
RAW, KEPT = "default, rules not kept", "default, rules kept"
MARGINALS = "marginals, rules kept"     # independent columns (right marginals) made to keep the rules


# ---- projections tried before the ones in data/rules.py, kept here to compare them on the same sample ----------
def sorted_order(rule: R.Order, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Order: every present value of the row sorted into the levels (the smallest to the first level)."""
    level = np.concatenate([np.full(len(lv), i) for i, lv in enumerate(rule.levels)])
    index = np.flatnonzero(rows)
    matrix = np.column_stack([R._numbers(frame, c)[index] for c in rule.columns])
    for r in range(len(index)):
        seen = ~np.isnan(matrix[r])
        places = np.flatnonzero(seen)[np.lexsort((matrix[r, seen], level[seen]))]
        matrix[r, places] = np.sort(matrix[r, seen])
    for j, column in enumerate(rule.columns):
        frame.loc[frame.index[index], column] = matrix[:, j]
    return rows.copy()


def count_decided_by(vote: str):
    """Count: the row's group goes missing (count 0) or complete (count >= 1, gaps filled with the mean of the
    present values) as ``vote`` says: "count" (count above 0: complete, if any value is present) or "majority" (of
    the count's and every group column's indicators; a tie: missing)."""
    def project(rule: R.Count, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        count, observed = rule._state(frame)
        with np.errstate(invalid="ignore"):
            if vote == "count":
                missing = ~(count > 0) | ~observed.any(axis=1)
            else:
                missing = 2 * (observed.sum(axis=1) + (count > 0)) <= observed.shape[1] + 1
        missing, present = rows & missing, rows & ~missing
        frame.loc[frame.index[missing], [rule.column, *rule.group]] = [0] + [np.nan] * len(rule.group)
        where = frame.index[present]
        frame.loc[where, rule.column] = np.fmax(np.nan_to_num(count[present], nan=1.0), 1.0)
        values = np.column_stack([R._numbers(frame, c)[present] for c in rule.group])
        fill = np.nanmean(values, axis=1) if len(values) else np.zeros(0)
        for j, column in enumerate(rule.group):
            gap = np.isnan(values[:, j])
            frame.loc[where[gap], column] = fill[gap]
        return missing | present
    return project


def projected_with(model, raw, seed: int, order=None, count=None) -> pd.DataFrame:
    """The sample kept with other projections for orders and / or counts (then put back)."""
    saved = R.Order.project, R.Count.project
    try:
        R.Order.project = order or saved[0]
        R.Count.project = count or saved[1]
        return keep_rules(model, raw, seed)[0].frame
    finally:
        R.Order.project, R.Count.project = saved


def marginal_gaps(train: pd.DataFrame, frame: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    """Mean KS statistic (present values) over all continuous columns, over the _min and _max ones, and the mean
    absolute difference of the missing rates, against the training rows."""
    def ks(column: str) -> float:
        a, b = train[column].dropna(), frame[column].dropna()
        return ks_2samp(a, b).statistic if len(a) and len(b) else np.nan
    stats = pd.Series({c: ks(c) for c in columns})
    ends = [c for c in columns if c.endswith(("_min", "_max"))]
    missing = (frame[columns].isna().mean() - train[columns].isna().mean()).abs().mean()
    return {"ks_mean": float(stats.mean()), "ks_min_max": float(stats[ends].mean()),
            "missing_rate_diff": float(missing)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder written by ehrdiff prepare cinc2012 (train/test.parquet)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and evaluation threads (default 1)")
    parser.add_argument("--model", type=Path, metavar="RUN", help="score this trained model (ehrdiff train "
                        "... -o RUN) instead of training one")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = read_table(args.data / "train.parquet"), read_table(args.data / "test.parquet")
    if not train.rules:
        sys.exit(f"{args.data}/train.parquet declares no rules: prepare it with this version of ehrdiff")
    steps = 20 if args.quick else args.steps
    load = os.getloadavg()[0]

    started = time.perf_counter()
    if args.model is None:
        model = EHRDiff(steps=steps, seed=args.seed).fit(train, progress=False)
        trained = f"`EHRDiff(steps={steps}, seed={args.seed})`, trained here in {time.perf_counter() - started:.0f} s"
    else:
        model = load_model(args.model)
        model.rules_ = train.rules      # a model trained before the rules were declared keeps these
        steps = model.train_steps_
        trained = (f"`{args.model}`, trained by `ehrdiff train {args.data}/train.parquet --steps {model.train_steps_} "
                   f"--seed {model.config.seed} -o {args.model}` (preset {model.preset})")
    train_seconds = time.perf_counter() - started if args.model is None else None
    started = time.perf_counter()
    raw = model.sample_table(train.n_rows, seed=args.seed)
    sample_seconds = time.perf_counter() - started
    started = time.perf_counter()
    kept, cost = keep_rules(model, raw, args.seed)
    keep_seconds = time.perf_counter() - started
    print(f"{trained}; sampled {raw.n_rows} rows in {sample_seconds:.0f} s; "
          f"{cost.line()} in {keep_seconds:.1f} s", flush=True)

    columns = train.columns_of("continuous")
    variants = {"as drawn": raw.frame, "kept (data/rules.py)": kept.frame,
                "orders sorted instead": projected_with(model, raw, args.seed, order=sorted_order),
                "counts decided by the count": projected_with(model, raw, args.seed, count=count_decided_by("count")),
                "counts decided by a majority vote": projected_with(model, raw, args.seed,
                                                                    count=count_decided_by("majority"))}
    gaps = {name: {**marginal_gaps(train.frame, frame, columns),
                   "rows_breaking": float(broken_rows(frame, train.rules).mean())} for name, frame in variants.items()}
    marginals = Marginals().fit(train)
    independent, _ = keep_rules(marginals, marginals.sample_table(train.n_rows, seed=args.seed), args.seed)
    started = time.perf_counter()
    report = evaluate(train, test, {RAW: raw.frame, KEPT: kept.frame, MARGINALS: independent.frame},
                      seed=args.seed, threads=args.threads,
                      figures=False, **({"dimwise_codes": 2} if args.quick else {}))
    evaluate_seconds = time.perf_counter() - started
    metrics = report.metrics
    rules = report.to_dict()["rules"]["datasets"]
    record = {"steps": steps, "seed": args.seed, "model": str(args.model) if args.model else None,
              "rows": train.n_rows, "rules": len(train.rules),
              "train_seconds": train_seconds, "sample_seconds": sample_seconds, "keep_seconds": keep_seconds,
              "evaluate_seconds": evaluate_seconds, "cost": vars(cost), "projections": gaps,
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
    before, after = metrics[RAW], metrics[KEPT]
    summary = (f"Keeping the rules took the share of rows breaking one from {before['rule_break_rate']:.3f} to "
               f"{after['rule_break_rate']:.3f}; the trees discriminator went from "
               f"{before['discriminator_auroc']:.3f} to {after['discriminator_auroc']:.3f}, the logistic one from "
               f"{before['discriminator_auroc_lr']:.3f} to {after['discriminator_auroc_lr']:.3f}, continuous KS from "
               f"{before['continuous_ks_mean']:.3f} to {after['continuous_ks_mean']:.3f}, TSTR from "
               f"{before['tstr_auroc']:.3f} to {after['tstr_auroc']:.3f}. Independent columns drawn from the "
               f"training marginals (`marginals`) and made to keep the rules score "
               f"{metrics[MARGINALS]['discriminator_auroc']:.3f} (trees) and "
               f"{metrics[MARGINALS]['discriminator_auroc_lr']:.3f} (logistic); drawn alone (reference:independent) "
               f"{metrics['reference:independent']['discriminator_auroc']:.3f} and "
               f"{metrics['reference:independent']['discriminator_auroc_lr']:.3f}.")
    worst = sorted(rules[RAW], key=lambda r: -(rules[RAW][r] or 0))[:8]
    lines = ["# CinC 2012: the default model's rows with and without the declared rules kept", "",
             f"Command: `.venv/bin/python benchmarks/cinc_rules.py {' '.join(sys.argv[1:])}` on the set-a split of "
             f"`ehrdiff prepare cinc2012` ({train.n_rows:,} / {test.n_rows:,} stays, {len(train.rules)} declared "
             f"rules). Machine: {os.cpu_count()} CPU cores shared with other jobs, {torch.get_num_threads()} torch "
             f"thread(s), torch {torch.__version__}; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after.",
             "",
             f"The default model ({trained}) drew {raw.n_rows:,} rows in {sample_seconds:.0f} s. Keeping the "
             f"rules took {keep_seconds:.1f} s: "
             f"{cost.projected:,} rows projected, {cost.resampled:,} resampled ({cost.drawn:,} extra rows drawn), "
             f"{cost.still_broken:,} still breaking a rule. Both samples are the same draw, scored by one `evaluate` "
             f"call (seed {args.seed}, the metrics of `ehrdiff evaluate`) in {evaluate_seconds:.0f} s.", "",
             summary, "", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in SHOWN:
        cells = ["-" if metrics[n].get(key) is None else f"{metrics[n][key]:.3f}" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "The rules broken most often by the model's own rows (share of rows):", "",
              "| rule | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for rule in worst:
        cells = ["-" if rules.get(n, {}).get(rule) is None else f"{rules[n][rule]:.3f}" for n in names]
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    lines += ["", "Projections compared on the same sample (the model's rows as drawn; the projections of "
              "data/rules.py; the same with another projection for the order or the count rules, defined in this "
              "script). KS: two-sample Kolmogorov-Smirnov statistic of present values against the training rows, "
              "mean over the continuous columns and over the _min / _max columns; missing: mean absolute "
              "difference of the columns' missing rates.", "",
              "| projection | KS mean | KS of _min, _max | missing rate diff | rows breaking a rule |",
              "|---|---|---|---|---|"]
    lines += [f"| {name} | {g['ks_mean']:.3f} | {g['ks_min_max']:.3f} | {g['missing_rate_diff']:.3f} | "
              f"{g['rows_breaking']:.3f} |" for name, g in gaps.items()]
    (ROOT / "results" / "cinc_rules.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
