"""``ehrdiff demo -o DIR``: train on the bundled MIMIC-IV demo diagnoses, sample, compare prevalence. The outputs
of an earlier demo in DIR are replaced only with --overwrite, and DIR is locked while it is written."""

from __future__ import annotations

import argparse
from pathlib import Path

from ehrdiff.settings import seed_argument


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="train and sample on the bundled MIMIC-IV demo data",
        description="Train EHRDiff on the bundled MIMIC-IV Clinical Database Demo diagnoses (the 76 of its 100 "
                    "patients with ICD-9 diagnoses, as 3-digit categories), sample as many synthetic patients, and "
                    "compare code prevalence.")
    p.add_argument("-o", "--output", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--preset", default="default", help="EHRDiff preset (default: default)")
    p.add_argument("--steps", type=int, help="optimiser steps (default: the budget derived from the data, with "
                                                "the held-out stopping rule)")
    p.add_argument("--seed", type=seed_argument, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo in the folder")
    return p


def run(args: argparse.Namespace) -> int:
    from ehrdiff.demo import DEMO_OUTPUTS, run_demo
    from ehrdiff.outputs import check_folder_output, output_lock

    out = Path(args.output)

    def check() -> None:
        check_folder_output(out, overwrite=args.overwrite, writes=DEMO_OUTPUTS, flag="-o/--output")

    check()
    with output_lock(out, flag="-o/--output"):
        check()                     # again: another process may have written the folder meanwhile
        run_demo(out, preset=args.preset, steps=args.steps, seed=args.seed, progress=not args.quiet)
    print((out / "comparison.md").read_text())
    print(f"wrote {out}/synthetic.parquet, {out}/synthetic.csv, {out}/model/ and {out}/comparison.json")
    return 0
