"""Time `ehrdiff prepare` end to end (read, build, split, write Parquet + summary) on the real data sets.

    .venv/bin/python benchmarks/bench_prepare.py [--data ../shared/data] [--repeats 3]

The headline case is the full UCI diabetes file (101,766 encounters) at patient and at encounter level; CinC 2012
set-a (4,000 record files in a tar.gz) and the MIMIC-III demo are timed too. Each case runs --repeats times in this
process; the table reports the median and the fastest wall time, and the median CPU time of the process (less
sensitive to other jobs on a shared machine). Writes benchmarks/out/prepare.json and
benchmarks/results/prepare.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow

from ehrdiff import __version__
from ehrdiff.data.sources import prepare

HERE = Path(__file__).resolve().parent


def cases(data: Path) -> list[tuple[str, str, dict, object]]:
    """(name, source, options, what the input is, from the summary)."""
    uci = data / "uci-diabetes-130-us-hospitals/dataset_diabetes.zip"
    cinc = data / "physionet-challenge-2012"
    mimic = data / "mimic-iii-demo-1.4/diagnoses_icd.csv.gz"
    return [
        ("uci-diabetes, patient level", "uci-diabetes", dict(path=uci, level="patient"),
         lambda s: f"{s['encounters']:,} encounters"),
        ("uci-diabetes, encounter level", "uci-diabetes", dict(path=uci, level="encounter"),
         lambda s: f"{s['rows']['total']:,} encounters"),
        ("cinc2012 set-a (tar.gz)", "cinc2012", dict(records=cinc / "set-a.tar.gz", outcomes=cinc / "Outcomes-a.txt"),
         lambda s: f"{s['records']['files']:,} records, {s['time_series']['rows']:,} time-series rows"),
        ("mimic-iii demo, patient level", "mimic", dict(diagnoses=mimic),
         lambda s: f"{s['codes']['files']['diagnoses']['rows']:,} diagnosis rows"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.data.exists():
        print(f"bench_prepare: data folder {args.data} not found (use --data)", file=sys.stderr)
        return 1

    results = []
    for name, source, options, describe in cases(args.data):
        times, cpu, summary = [], [], None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                start, start_cpu = time.perf_counter(), time.process_time()
                summary = prepare(source, Path(tmp) / "out", **options)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
        results.append({
            "case": name, "source": source, "seconds_median": round(statistics.median(times), 2),
            "seconds_min": round(min(times), 2), "seconds_all": [round(t, 2) for t in times],
            "cpu_seconds_median": round(statistics.median(cpu), 2),
            "input": describe(summary),
            "train_shape": summary["shapes"]["train"], "test_shape": summary["shapes"]["test"],
            "encoded_width": summary["columns"]["encoded_width"],
        })
        print(f"{name}: median {results[-1]['seconds_median']} s over {args.repeats} runs", flush=True)

    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "pandas": pd.__version__, "pyarrow": pyarrow.__version__, "ehrdiff": __version__,
               "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "prepare.json").write_text(json.dumps({"machine": machine, "repeats": args.repeats, "results": results},
                                                 indent=2) + "\n")
    lines = [
        "# `ehrdiff prepare` timings",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_prepare.py --repeats {args.repeats}`. End to end in one "
        "process: read the raw files, build the table, split by patient, write train/test Parquet and summary.json.",
        f"Machine: {machine['cpus']} CPU cores, {machine['platform']}, Python {machine['python']}, pandas "
        f"{machine['pandas']}, pyarrow {machine['pyarrow']}; load average at the end "
        f"{machine['load_average_at_end']} (other jobs shared the machine).",
        "",
        "| case | input | train shape | test shape | encoded width | median s | fastest s | median CPU s |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['case']} | {r['input']} | {r['train_shape'][0]:,} x {r['train_shape'][1]:,} | "
                     f"{r['test_shape'][0]:,} x {r['test_shape'][1]:,} | {r['encoded_width']:,} | "
                     f"{r['seconds_median']} | {r['seconds_min']} | {r['cpu_seconds_median']} |")
    text = "\n".join(lines) + "\n"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "prepare.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
