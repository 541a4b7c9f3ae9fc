"""Peak memory of ``ehrdiff sample`` with the default model of a UCI-sized table, for a small and a large sample.

    nice .venv/bin/python benchmarks/bench_sample_memory.py                     # 100,000 and 2,000,000 rows
    nice .venv/bin/python benchmarks/bench_sample_memory.py --rows 20000,100000 --steps 20     # a quick check

Prepares UCI diabetes at patient level (57,214 training patients x 881 ICD-9 categories + label, from
/work/shared/data) with ``ehrdiff prepare`` and trains the default model briefly (``--steps``: only memory matters
here, not quality), both once into benchmarks/out/sample_memory/, then runs ``ehrdiff sample RUN -n N -o FILE``
as a child process for each N and reads the child's peak resident memory (``os.wait4``'s ``ru_maxrss``). The model
samples in chunks (``EHRDiff.sample_chunks``) and ``ehrdiff sample`` writes each chunk before drawing the next, so
the peak should not grow with N: the ratio of the largest to the smallest N's peak is the figure to watch (target:
under 2 GB at 2,000,000 rows).

Memory does not depend on the number of noise levels of the sampler (each level is one network call on the same
batch), so by default the samples are drawn with ``--set num_noise_levels=2`` (3 network calls per row instead of
the default preset's 31) to keep the run within minutes on 2 CPU cores; ``--full-sampler`` keeps the model's own.
Count matching (the default preset's codes per row) stays on: it is what held up to four times the rows before.
Writes benchmarks/results/sample_memory.md (machine, commands, numbers).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "sample_memory"
RESULTS = ROOT / "results" / "sample_memory.md"
UCI_ZIP = Path("/work/shared/data/uci-diabetes-130-us-hospitals/dataset_diabetes.zip")
EHRDIFF = [sys.executable, "-c", "import sys; from ehrdiff.cli import main; sys.exit(main())"]
TARGET_BYTES = 2 * 10**9


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,2000000", help="sample sizes, comma-separated (default: "
                                                                 "100000,2000000)")
    parser.add_argument("--steps", type=int, default=200, help="training steps of the default model (default 200)")
    parser.add_argument("--full-sampler", action="store_true",
                        help="sample with the model's own noise levels (about 10 times slower)")
    parser.add_argument("--keep", action="store_true", help="keep the sampled files (they are removed otherwise)")
    return parser.parse_args()


def ehrdiff(*args: str) -> None:
    subprocess.run([*EHRDIFF, "-q", *args], check=True)


def prepare_and_train(steps: int) -> Path:
    """The prepared UCI data and a run of the default model trained ``steps`` steps, each made once."""
    data, run = OUT / "data", OUT / f"run-{steps}"
    if not (data / "train.parquet").exists():
        ehrdiff("prepare", "uci-diabetes", "--zip", str(UCI_ZIP), "-o", str(data))
    if not (run / "model.json").exists():
        ehrdiff("train", str(data / "train.parquet"), "-o", str(run), "--steps", str(steps), "--seed", "0",
                "--overwrite")
    return run


def sample_command(run: Path, rows: int, out: Path, full: bool) -> list[str]:
    command = ["sample", str(run), "-n", str(rows), "-o", str(out), "--seed", "0", "--overwrite"]
    return command if full else [*command, "--set", "num_noise_levels=2"]


def measure(command: list[str]) -> dict:
    """Run ``ehrdiff COMMAND`` as a child; its wall seconds and peak resident memory (bytes)."""
    started = time.perf_counter()
    child = subprocess.Popen([*EHRDIFF, "-q", *command])
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ehrdiff {' '.join(command)} failed with exit status {os.waitstatus_to_exitcode(status)}")
    return {"seconds": seconds, "peak_bytes": usage.ru_maxrss * 1024}      # Linux reports kilobytes


def describe_output(path: Path) -> dict:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    return {"rows": meta.num_rows, "columns": meta.num_columns, "row_groups": meta.num_row_groups,
            "file_bytes": path.stat().st_size}


def machine() -> str:
    import pandas
    import pyarrow
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPU cores, {memory:.0f} GiB memory, {platform.platform()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}, pandas {pandas.__version__}, pyarrow "
            f"{pyarrow.__version__}; load average at the end {[round(x, 2) for x in os.getloadavg()]} (other jobs "
            "shared the machine)")


def chunk_rows(run: Path) -> int:
    from ehrdiff.models import load_model

    return load_model(run).sample_chunk_rows()


def report(results: list[dict], run: Path, args: argparse.Namespace) -> str:
    smallest, largest = results[0], results[-1]
    ratio = largest["peak_bytes"] / smallest["peak_bytes"]
    lines = [
        "# Peak memory of `ehrdiff sample`",
        "",
        f"Command: `nice .venv/bin/python benchmarks/bench_sample_memory.py --rows {args.rows} --steps {args.steps}"
        f"{' --full-sampler' if args.full_sampler else ''}`.",
        f"Machine: {machine()}.",
        "",
        f"Model: the default preset trained {args.steps} steps on UCI diabetes at patient level (`ehrdiff prepare "
        f"uci-diabetes`, training table 57,214 x 883); it samples in chunks of {chunk_rows(run):,} rows. Each "
        "sample is one child process, `ehrdiff sample RUN -n N -o big.parquet --seed 0"
        f"{'' if args.full_sampler else ' --set num_noise_levels=2'}` (count matching on), whose peak resident "
        "memory is `ru_maxrss` from `os.wait4`.",
        "",
        "| rows | peak memory | seconds | file | row groups |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['rows']:,} | {r['peak_bytes'] / 2**20:,.0f} MiB | {r['seconds']:,.0f} | "
                     f"{r['file_bytes'] / 2**20:,.0f} MiB | {r['row_groups']:,} |")
    verdict = "under" if largest["peak_bytes"] < TARGET_BYTES else "OVER"
    lines += ["", f"Peak at {largest['rows']:,} rows / peak at {smallest['rows']:,} rows: {ratio:.2f}; "
              f"{largest['peak_bytes'] / 1e9:.2f} GB is {verdict} the 2 GB target.", ""]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    sizes = sorted(int(n) for n in args.rows.split(","))
    OUT.mkdir(parents=True, exist_ok=True)
    run = prepare_and_train(args.steps)
    results = []
    for rows in sizes:
        out = OUT / f"sample-{rows}.parquet"
        command = sample_command(run, rows, out, args.full_sampler)
        print(f"ehrdiff {' '.join(command)}", flush=True)
        measured = measure(command)
        described = describe_output(out)
        if described["rows"] != rows:
            raise SystemExit(f"{out}: {described['rows']} rows, expected {rows}")
        results.append({"rows": rows, **measured, **described})
        print(f"  {rows:,} rows: peak {measured['peak_bytes'] / 2**20:,.0f} MiB in {measured['seconds']:,.0f} s",
              flush=True)
        if not args.keep:
            out.unlink()
    text = report(results, run, args)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
