"""Is 15,000 steps of the default model the same CPU budget as 5,000 steps of the paper's? Measured in one run.

Issue 7 compares models "at the same CPU budget as the official code": 5,000 steps of the paper-mimic network at
batch 1,024 on UCI diabetes (882 columns). The default model trains a network of a third of the FLOPs per row for
15,000 steps. This script times both training loops (EHRDiff.fit, everything included but the one-off setup) on a
random sparse 0/1 matrix of UCI's width and density, alternating the two models in rounds so that the machine's
drifting speed hits both alike, and reports the median seconds per step of each, their ratio, and the wall time
each budget implies on this machine.

    .venv/bin/python benchmarks/bench_default_budget.py             # about 4 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_default_budget.py --quick     # smoke run (numbers meaningless)

Writes benchmarks/results/default_budget.md (and benchmarks/out/default_budget.json).
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

from ehrdiff.models.ehrdiff import EHRDiff

ROOT = Path(__file__).resolve().parent
WIDTH, DENSITY = 882, 3.67 / 881      # UCI diabetes patient level: 881 codes and the label, 3.67 codes per patient
MODELS = {"paper-mimic": ("paper-mimic", 5000), "default": ("default", 15000)}     # name: (preset, budget steps)


def fit_seconds(preset: str, matrix: np.ndarray, steps: int) -> float:
    start = time.perf_counter()
    EHRDiff(preset, steps=steps, batch_size=1024, warmup_steps=10, checkpoint_every=10 ** 9).fit(matrix,
                                                                                                progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=120, help="steps of the long fit (the short one runs 20)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, long = (1, 25) if args.quick else (args.rounds, args.steps)
    short = 5 if args.quick else 20
    rng = np.random.default_rng(0)
    matrix = (rng.random((20_000, WIDTH), dtype=np.float32) < DENSITY).astype(np.uint8)
    load = os.getloadavg()[0]
    per_step: dict[str, list[float]] = {name: [] for name in MODELS}
    for r in range(rounds):
        for name, (preset, _) in MODELS.items():
            # the difference of two fits cancels the one-off setup (encoder, network, first allocations)
            seconds = (fit_seconds(preset, matrix, long) - fit_seconds(preset, matrix, short)) / (long - short)
            per_step[name].append(seconds)
            print(f"round {r + 1}/{rounds} {name}: {seconds * 1000:.1f} ms per step", flush=True)
    median = {name: float(np.median(v)) for name, v in per_step.items()}
    budget = {name: median[name] * steps for name, (_, steps) in MODELS.items()}
    record = {"width": WIDTH, "density": DENSITY, "batch_size": 1024, "rounds": rounds, "steps": [short, long],
              "seconds_per_step": per_step, "median_seconds_per_step": median, "budget_seconds": budget,
              "ratio_default_to_paper": budget["default"] / budget["paper-mimic"],
              "machine": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__, "platform": platform.platform(),
                          "load_average_before": load, "load_average_after": os.getloadavg()[0]}}
    (ROOT / "out").mkdir(exist_ok=True)
    (ROOT / "out" / "default_budget.json").write_text(json.dumps(record, indent=1) + "\n")
    if args.quick:
        print(json.dumps(record["budget_seconds"]))
        return
    lines = ["# Training budget: the default model's 15,000 steps against the paper model's 5,000", "",
             "Command: `.venv/bin/python benchmarks/bench_default_budget.py "
             f"{' '.join(sys.argv[1:])}` ({rounds} rounds; machine: {os.cpu_count()}"
             f" CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}; load average "
             f"{load:.1f} before, {os.getloadavg()[0]:.1f} after). Training loop of `EHRDiff.fit` at batch 1,024 on "
             f"a random 0/1 matrix of {WIDTH} columns with UCI's density; seconds per step = (fit of {long} steps "
             f"- fit of {short}) / {long - short}, median over the rounds, the two models alternating.", "",
             "| model | ms per step (median) | each round | budget steps | budget wall time |",
             "|---|---|---|---|---|"]
    for name, (_, steps) in MODELS.items():
        rounds_text = ", ".join(f"{s * 1000:.0f}" for s in per_step[name])
        lines.append(f"| {name} | {median[name] * 1000:.1f} | {rounds_text} | {steps:,} | "
                     f"{budget[name] / 60:.1f} min |")
    lines += ["", f"The default model's budget takes {record['ratio_default_to_paper']:.2f} times the wall time of "
              "the paper model's on this machine."]
    (ROOT / "results" / "default_budget.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
