"""How much NNAA privacy loss moves with the rows one evaluation samples, with one draw and with the evaluation's
default number of draws (``nnaa_draws``), on one synthetic table: the same real and synthetic tables, NNAA computed
under several evaluation seeds each way; the spread across seeds is the estimator's own noise, not the model's.

    .venv/bin/python benchmarks/nnaa_draws.py DATA/train.parquet DATA/test.parquet SYNTHETIC.parquet [--seeds 10]

Prints a table and writes it to benchmarks/results/nnaa_draws.md (``--out`` to change).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

from ehrdiff.data.io import read_table
from ehrdiff.evaluation.config import EvaluationConfig
from ehrdiff.evaluation.runner import evaluate
from ehrdiff.fileio import atomic_path


def losses(train, test, synthetic, label: str, name: str, draws: int, seeds: int) -> list[float]:
    """NNAA privacy loss of ``evaluate`` under evaluation seeds 0 .. seeds-1, each the mean of ``draws`` draws
    (``name``: the synthetic set's name, which seeds its random stream)."""
    return [evaluate(train, test, {name: synthetic}, label, references=False, seed=seed, figures=False, threads=1,
                     nnaa_draws=draws).metrics[name]["nnaa_privacy_loss"] for seed in range(seeds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train")
    parser.add_argument("test")
    parser.add_argument("synthetic")
    parser.add_argument("--label", default="label")
    parser.add_argument("--name", default="ehrdiff", help="the synthetic set's name in evaluate (its random stream)")
    parser.add_argument("--seeds", type=int, default=10, help="evaluation seeds per setting (default 10)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "nnaa_draws.md"))
    args = parser.parse_args()
    # tables, not frames: the column kinds they carry decide how each column is encoded
    train, test, synthetic = (read_table(p) for p in (args.train, args.test, args.synthetic))
    default = EvaluationConfig().nnaa_draws
    rows = []
    for draws in sorted({1, default}):
        values = losses(train, test, synthetic, args.label, args.name, draws, args.seeds)
        rows.append(f"| {draws} | {np.mean(values):.4f} | {np.std(values, ddof=1):.4f} | {min(values):.4f} | "
                    f"{max(values):.4f} | {', '.join(f'{v:.3f}' for v in values)} |")
    text = "\n".join([
        "# NNAA privacy loss: the noise of the sampled rows, one draw against the default draws", "",
        f"Command: `{shlex.join(['python', 'benchmarks/nnaa_draws.py', *sys.argv[1:]])}`. Machine: "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), Python {platform.python_version()}. "
        f"{train.n_rows:,} training, {test.n_rows:,} test and {synthetic.n_rows:,} synthetic rows; each row of the "
        "table: NNAA privacy loss of the same three tables under "
        f"evaluation seeds 0-{args.seeds - 1}, each the mean of that many draws of equal-size samples.", "",
        "| draws | mean | sd over evaluation seeds | min | max | values |", "|---|---|---|---|---|---|", *rows, ""])
    print(text)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    main()
