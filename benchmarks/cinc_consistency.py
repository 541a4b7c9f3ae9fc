"""Do synthetic CinC 2012 rows keep the relations between each variable's summaries that every real row obeys?

CinC rows hold, per time-series variable V, V_first, V_last, V_min, V_max and V_count (ehrdiff.data.sources). Real
rows always have V_min <= V_first, V_last <= V_max, and V_count = 0 exactly when the others are missing. A generator
that models columns as a vector does not know these rules; a row that breaks one is told from real data at once.

    .venv/bin/python benchmarks/cinc_consistency.py runs/default-cinc

Prints, for the real training rows and each run's synthetic rows, the share of rows breaking an order relation and
the share breaking the count/missing relation, and writes benchmarks/results/cinc_consistency.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent


def violations(frame: pd.DataFrame) -> tuple[float, float]:
    """(share of rows with some V_min > V_max or V_first / V_last outside [V_min, V_max], share of rows with some
    V_count = 0 while V_min is present or V_count > 0 while it is missing)."""
    variables = sorted(c[:-4] for c in frame.columns if c.endswith("_min") and f"{c[:-4]}_max" in frame.columns)
    order = np.zeros(len(frame), dtype=bool)
    count = np.zeros(len(frame), dtype=bool)
    for v in variables:
        lo, hi, first, last = (frame[f"{v}_{s}"] for s in ("min", "max", "first", "last"))
        order |= ((lo > hi) | (first < lo) | (first > hi) | (last < lo) | (last > hi)).fillna(False).to_numpy()
        if f"{v}_count" in frame.columns:
            n = frame[f"{v}_count"]
            count |= (((n == 0) & lo.notna()) | ((n > 0) & lo.isna())).fillna(False).to_numpy()
    return float(order.mean()), float(count.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path, help="a cinc2012 experiment folder")
    args = parser.parse_args()
    rows = [("real training rows", *violations(pd.read_parquet(args.experiment / "data" / "train.parquet")))]
    for path in sorted((args.experiment / "runs").glob("*/seed-*/synthetic.parquet")):
        rows.append((f"{path.parent.parent.name}/{path.parent.name}", *violations(pd.read_parquet(path))))
    lines = ["# CinC 2012: relations between a variable's summaries in synthetic rows", "",
             f"Command: `.venv/bin/python benchmarks/cinc_consistency.py {args.experiment}`", "",
             "| rows | order broken (min <= first, last <= max) | count/missing broken |", "|---|---|---|",
             *[f"| {name} | {order:.3f} | {count:.3f} |" for name, order, count in rows]]
    (ROOT / "results" / "cinc_consistency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
