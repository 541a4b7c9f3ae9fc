"""MIMIC-IV demo with ICD-10 kept (the default) or dropped: does the default model's prevalence Spearman hold?

    nice .venv/bin/python benchmarks/icd10_mimic_iv.py              # about 10 min on the 2-core machine
    nice .venv/bin/python benchmarks/icd10_mimic_iv.py --quick      # a smoke run (numbers meaningless)

The MIMIC-IV demo's diagnoses (the bundled copy, src/ehrdiff/demo_data/diagnoses_icd.csv.gz, identical to
mimic-iv-demo-2.2/hosp/diagnoses_icd.csv.gz) are prepared twice with the same split seed:
  - ``keep``: ``--icd10 keep`` (the default), ICD-9 and ICD-10-CM 3-character categories, all 100 patients;
  - ``drop``: ``--icd10 drop``, the ICD-9-only table of the EHRDiff paper (the 76 patients with an ICD-9 code).
On each, the default model (preset ``default``) is trained with the same settings (``--steps``, at a batch of the
training rows, the experiment runner's rule) for seeds 0-2, sampled at the training size with the same seed and
evaluated by ``ehrdiff evaluate`` against its own training and test tables. Everything goes through the command
line, so each step below is a command a user can run. The claim checked: the mean prevalence Spearman over the
seeds with ICD-10 kept is within 0.05 of the ICD-9-only table's. The table also gives the Spearman over the keep
model's ICD-9 columns alone (same codes as the drop table, computed here with scipy from the written tables).
Writes benchmarks/out/icd10_mimic_iv/ (tables, runs, reports, results.json) and benchmarks/results/icd10_mimic_iv.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from provenance import code_version

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
DIAGNOSES = REPO / "src/ehrdiff/demo_data/diagnoses_icd.csv.gz"
OUT = ROOT / "out" / "icd10_mimic_iv"
EHRDIFF = str(Path(sys.executable).parent / "ehrdiff")
CHOICES = ("keep", "drop")
TOLERANCE = 0.05
READING = """How to read it. Each table is evaluated against its own training rows, so the two Spearman correlations
measure the same thing on different code sets: the keep table adds the ICD-10 categories and the patients who have
ICD-10 codes only. The ICD-9-only row compares like with like (the same 325 ICD-9 categories, though the keep table's
prevalences are over all its training patients). The real test half's correlation is low because 15 or 20 patients
estimate hundreds of prevalences poorly: it shows the sampling noise of a held-out half, not a target."""


def run(command: list[str], log: list[str]) -> None:
    """Run one ehrdiff command (quietly), remembering it for the results file; stop on failure."""
    shown = " ".join(["ehrdiff", *(shlex.quote(a.replace(f"{REPO}/", "")) for a in command[1:])])
    log.append(shown)
    print(f"$ {shown}", flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def prepare_tables(seed: int, log: list[str]) -> dict[str, Path]:
    """Both tables, split with the same seed."""
    folders = {}
    for choice in CHOICES:
        folders[choice] = OUT / f"data-{choice}"
        run([EHRDIFF, "prepare", "mimic", "--diagnoses", str(DIAGNOSES), "--icd10", choice, "--seed", str(seed),
             "-o", str(folders[choice])], log)
    return folders


def train_and_sample(data: Path, choice: str, seed: int, steps: int, log: list[str]) -> tuple[Path, float]:
    """One default model on ``data``/train.parquet and as many synthetic rows as it has training rows."""
    rows = pd.read_parquet(data / "train.parquet", columns=["subject_id"]).shape[0]
    run_dir, synthetic = OUT / "runs" / f"{choice}-seed{seed}", OUT / "synthetic" / f"{choice}-seed{seed}.parquet"
    started = time.perf_counter()
    run([EHRDIFF, "train", str(data / "train.parquet"), "--preset", "default", "--steps", str(steps),
         "--batch-size", str(min(1024, rows)), "--seed", str(seed), "--overwrite", "-o", str(run_dir)], log)
    run([EHRDIFF, "sample", str(run_dir), "-n", str(rows), "--seed", str(seed), "-o", str(synthetic)], log)
    return synthetic, time.perf_counter() - started


def evaluate(data: Path, choice: str, synthetic: dict[int, Path], log: list[str]) -> dict:
    """``ehrdiff evaluate`` of the seeds' synthetic tables in one report; its metrics.json."""
    report = OUT / "reports" / choice
    run([EHRDIFF, "evaluate", "--train", str(data / "train.parquet"), "--test", str(data / "test.parquet"),
         "--synthetic", *[f"seed{s}={path}" for s, path in synthetic.items()], "--no-figures", "--threads", "1",
         "-o", str(report)], log)
    return json.loads((report / "metrics.json").read_text())


def icd9_spearman(data: Path, synthetic: Path) -> float:
    """Spearman correlation of per-code prevalence, training vs synthetic, over the ICD9: columns only."""
    train = pd.read_parquet(data / "train.parquet")
    columns = [c for c in train.columns if c.startswith("ICD9:")]
    fake = pd.read_parquet(synthetic, columns=columns)
    return float(spearmanr(train[columns].mean().to_numpy(), fake[columns].mean().to_numpy()).statistic)


def prevalence_spearman(metrics: dict, name: str) -> float:
    """The metric as metrics.json holds it (a number, or {"value": ...} where intervals are reported)."""
    value = metrics["datasets"][name]["prevalence_spearman"]
    return float(value["value"] if isinstance(value, dict) else value)


def table_shapes(folders: dict[str, Path]) -> dict[str, dict]:
    """Rows, columns by vocabulary and rows kept per vocabulary, from each summary.json."""
    out = {}
    for choice, folder in folders.items():
        summary = json.loads((folder / "summary.json").read_text())
        out[choice] = {"train": summary["shapes"]["train"], "test": summary["shapes"]["test"],
                       "patients": summary["subjects"]["total"],
                       "columns_by_vocabulary": summary["codes"]["columns_by_vocabulary"],
                       "rows_kept": summary["codes"]["rows_kept"]}
    return out


def markdown(results: dict, args: argparse.Namespace) -> str:
    keep, drop = results["spearman"]["keep"], results["spearman"]["drop"]
    difference = np.mean(keep) - np.mean(drop)
    verdict = "within" if abs(difference) <= TOLERANCE else "NOT within"
    options = " --quick" if args.quick else (f" --steps {args.steps}" if args.steps != 2000 else "")
    cmd = "nice .venv/bin/python benchmarks/icd10_mimic_iv.py" + options
    lines = ["# MIMIC-IV demo: ICD-10 kept (the default) or dropped", "",
             f"Command: `{cmd}` (writes this file and benchmarks/out/icd10_mimic_iv/results.json)", "",
             f"Code: commit {results['commit']}. "
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, shared with "
             f"other jobs (load average at the end {results['machine']['load_average'][0]:.1f}); "
             f"{results['seconds_total']:,.0f} s in all.", "",
             f"The default model (preset `default`), {args.steps:,} steps at a batch of the training rows, seeds "
             f"0-{args.seeds - 1}, each sampled at the training size with its own seed; split seed "
             f"{args.split_seed} for both tables. Cells: mean ± standard deviation over the seeds (per seed in "
             "results.json).", "",
             "| | keep (default) | drop (ICD-9 only) |", "|---|---|---|"]
    shapes = results["tables"]
    lines.append("| patients (train + test) | " + " | ".join(
        f"{shapes[c]['patients']} ({shapes[c]['train'][0]} + {shapes[c]['test'][0]})" for c in CHOICES) + " |")
    lines.append("| code columns by vocabulary | " + " | ".join(
        ", ".join(f"{k} {v}" for k, v in sorted(shapes[c]["columns_by_vocabulary"].items())) for c in CHOICES) + " |")
    lines.append("| diagnosis rows kept (ICD-9 / ICD-10) | " + " | ".join(
        f"{shapes[c]['rows_kept']['icd9']:,} / {shapes[c]['rows_kept']['icd10']:,}" for c in CHOICES) + " |")
    for key, label in (("spearman", "prevalence Spearman (`ehrdiff evaluate`, all code columns)"),
                       ("icd9_spearman", "prevalence Spearman, ICD-9 columns only"),
                       ("reference_spearman", "real test half's prevalence Spearman (reference)")):
        lines.append(f"| {label} | " + " | ".join(_cell(results[key][c]) for c in CHOICES) + " |")
    lines.append("| train and sample seconds per seed | " + " | ".join(
        f"{np.mean(results['seconds'][c]):,.0f}" for c in CHOICES) + " |")
    lines += ["", f"Difference of the means (keep - drop): {difference:+.3f}, {verdict} {TOLERANCE} of the ICD-9-only "
              "table's.", "", READING, "", "Commands run (in this order):", "", "```",
              *results["commands"], "```"]
    return "\n".join(lines)


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model (default 2000)")
    parser.add_argument("--seeds", type=int, default=3, help="training and sampling seeds 0..N-1 (default 3)")
    parser.add_argument("--split-seed", type=int, default=0, help="the split seed of both tables (default 0)")
    parser.add_argument("--quick", action="store_true", help="20 steps, one seed: checks that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds = 20, 1
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    commands: list[str] = []
    folders = prepare_tables(args.split_seed, commands)
    results: dict = {"commit": code_version(), "tables": table_shapes(folders), "spearman": {}, "icd9_spearman": {},
                     "reference_spearman": {}, "seconds": {}, "commands": commands}
    for choice in CHOICES:
        synthetic, seconds = {}, []
        for seed in range(args.seeds):
            synthetic[seed], took = train_and_sample(folders[choice], choice, seed, args.steps, commands)
            seconds.append(took)
        metrics = evaluate(folders[choice], choice, synthetic, commands)
        results["spearman"][choice] = [prevalence_spearman(metrics, f"seed{s}") for s in synthetic]
        results["icd9_spearman"][choice] = [icd9_spearman(folders[choice], p) for p in synthetic.values()]
        results["reference_spearman"][choice] = [prevalence_spearman(metrics, "reference:real-test")]
        results["seconds"][choice] = seconds
    results["seconds_total"] = time.perf_counter() - started
    results["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "load_average": os.getloadavg()}
    results["settings"] = {"steps": args.steps, "seeds": args.seeds, "split_seed": args.split_seed,
                           "quick": args.quick}
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results, args)
    print(text)
    if not args.quick:
        (ROOT / "results").mkdir(exist_ok=True)
        (ROOT / "results" / "icd10_mimic_iv.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
