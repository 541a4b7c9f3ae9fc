"""How much the real-versus-synthetic discriminators move with the evaluation's own draws, on kept synthetic tables:
each table evaluated under several evaluation seeds (the rows the discriminators sample and their folds), so that
differences between generators at the fourth decimal of a near-1 AUROC can be told from the estimator's noise.

    .venv/bin/python benchmarks/discriminator_draws.py DATA/train.parquet DATA/test.parquet SYNTHETIC.parquet ... \
        [--seeds 5] [--threads 2] [--out benchmarks/results/discriminator_draws.md]

Each synthetic table is named by its file name (without .parquet); the evaluation seed, not the name, varies.
Prints a table and writes it to ``--out``.
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
from ehrdiff.evaluation.runner import evaluate
from ehrdiff.fileio import atomic_path

METRICS = ("discriminator_auroc", "discriminator_auroc_lr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train")
    parser.add_argument("test")
    parser.add_argument("synthetic", nargs="+")
    parser.add_argument("--label", default="label")
    parser.add_argument("--seeds", type=int, default=5, help="evaluation seeds per table (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="threads for the trees (default 1)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "discriminator_draws.md"))
    args = parser.parse_args()
    # tables, not frames: the column kinds they carry decide how each column is encoded
    train, test = read_table(args.train), read_table(args.test)
    tables = {Path(p).name.removesuffix(".parquet"): read_table(p) for p in args.synthetic}
    values = {name: {m: [] for m in METRICS} for name in tables}
    for seed in range(args.seeds):
        report = evaluate(train, test, tables, args.label, references=False, seed=seed, figures=False,
                          threads=args.threads, nnaa_draws=1)
        for name in tables:
            for m in METRICS:
                values[name][m].append(report.metrics[name][m])
        print(f"evaluation seed {seed} done", flush=True)
    rows = []
    for name, v in values.items():
        trees, linear = np.array(v["discriminator_auroc"]), np.array(v["discriminator_auroc_lr"])
        rows.append(f"| {name} | {trees.mean():.5f} | {trees.std(ddof=1):.5f} | {trees.min():.5f} | {trees.max():.5f} "
                    f"| {linear.mean():.4f} | {linear.std(ddof=1):.4f} |")
    text = "\n".join([
        "# The discriminators' own noise: the same synthetic tables under several evaluation seeds", "",
        f"Command: `{shlex.join(['python', 'benchmarks/discriminator_draws.py', *sys.argv[1:]])}`. Machine: "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), Python {platform.python_version()}. "
        f"{train.n_rows:,} training and {test.n_rows:,} test rows. Each row: one kept synthetic table evaluated under "
        f"evaluation seeds 0-{args.seeds - 1} (the rows the discriminators sample and their cross-validation folds); "
        "the spread is the estimator's noise, the same table throughout.", "",
        "| table | trees mean | trees sd | trees min | trees max | logistic mean | logistic sd |",
        "|---|---|---|---|---|---|---|", *rows, ""])
    print(text)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(text)


if __name__ == "__main__":
    main()
