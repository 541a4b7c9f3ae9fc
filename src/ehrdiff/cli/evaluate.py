"""``ehrdiff evaluate --train T --test H --synthetic NAME=FILE ... -o DIR``: fidelity, utility and privacy report.

Writes DIR/metrics.json ({"datasets": {NAME: {METRIC: value}}}), DIR/report.md, DIR/report.html (one page, figures
embedded), DIR/figures/*.png and the per-code tables DIR/prevalence.csv and DIR/dimwise_prediction.csv. Runs trained
on parts of the training data (the metric-vs-training-size figure) are given as ``--scale NAME:FRACTION=FILE`` (e.g.
``--scale ehrdiff:0.25=run25.parquet``); each becomes a dataset ``NAME@FRACTION``. Metric definitions:
docs/metrics.md.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ehrdiff.errors import DataError
from ehrdiff.settings import seed_argument

log = logging.getLogger("ehrdiff")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="fidelity, utility and privacy report for synthetic tables",
        description="Compare synthetic tables with real training and held-out (test) tables: JSON, Markdown, "
                    "figures and one HTML page. Reference rows (real test half, resampled training rows, "
                    "independent columns) are added unless --no-references.")
    p.add_argument("--train", required=True, metavar="T", help="real training table (.parquet, .csv, .npz, ...)")
    p.add_argument("--test", required=True, metavar="H", help="real held-out table, never seen by the generator")
    p.add_argument("--synthetic", nargs="+", default=[], metavar="NAME=FILE",
                   help="synthetic tables to evaluate (FILE alone uses the file name as NAME)")
    p.add_argument("--scale", nargs="+", default=[], metavar="NAME:FRACTION=FILE",
                   help="runs of model NAME trained on FRACTION of the training data (metric-vs-size figure)")
    p.add_argument("--model", nargs="+", default=[], metavar="NAME=RUN",
                   help="the run folder of the model that generated dataset NAME: its differential-privacy budget "
                        "(dp_epsilon, dp_delta in RUN/model.json) joins the report")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the report")
    p.add_argument("--label", default="label", help="label column for TSTR/TRTR (default: label)")
    p.add_argument("--rules", metavar="FILE", help="JSON file of relations between columns (docs/data.md) whose "
                   "breaks are reported, added to those the training table declares")
    p.add_argument("--no-references", action="store_true", help="leave out the reference rows")
    p.add_argument("--seed", type=seed_argument, default=0, help="seed for every sample the metrics draw (default 0)")
    p.add_argument("--dimwise-codes", type=int, default=None, metavar="K",
                   help="dimension-wise prediction on the K commonest codes (default 50)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch, BLAS and the boosted trees (default: the libraries' defaults, "
                        "trees 1; 1 is fastest on a machine busy with other jobs)")
    p.add_argument("--device", default=None, help="torch device for nearest neighbours (cpu, cuda)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures (faster)")
    p.add_argument("--bootstrap", type=int, default=None, metavar="B",
                   help="a confidence interval for every metric from B bootstrap resamples (e.g. 200; what each "
                        "covers: docs/metrics.md)")
    p.add_argument("--confidence", type=float, default=None, metavar="C",
                   help="level of the --bootstrap intervals (default 0.95)")
    p.add_argument("--overwrite", action="store_true", help="replace the report files already in DIR")
    return p


def parse_named(text: str) -> tuple[str, str]:
    """``NAME=FILE`` -> (NAME, FILE); a bare FILE is named after the file."""
    name, sep, path = text.partition("=")
    if not sep:
        return Path(text).name.split(".")[0], text
    if not name or not path:
        raise DataError(f"--synthetic expects NAME=FILE, got '{text}'")
    return name, path


def parse_scale(text: str) -> tuple[str, float, str]:
    """``NAME:FRACTION=FILE`` -> (NAME, FRACTION, FILE)."""
    left, sep, path = text.partition("=")
    name, colon, fraction = left.rpartition(":")
    try:
        value = float(fraction)
    except ValueError:
        value = float("nan")
    if not sep or not colon or not name or not path or not 0 < value <= 1:
        raise DataError(f"--scale expects NAME:FRACTION=FILE with 0 < FRACTION <= 1 (e.g. ehrdiff:0.25=run.parquet), "
                        f"got '{text}'")
    return name, value, path


def read_synthetic(path: str):
    """A synthetic table; one whose values break its own stored kinds is read raw, so that evaluate can mark the
    offending columns instead of refusing the whole file. A file without rows is refused: it has nothing to
    evaluate, and every metric would be null."""
    from ehrdiff.data.io import read_frame, read_table

    try:
        return read_table(path, explain_kinds=False)   # the training table decides the kinds
    except DataError:
        frame, _ = read_frame(path)  # an unreadable file still raises here
    if len(frame) == 0:
        raise DataError(f"{path}: the synthetic table has no rows; sample some (ehrdiff sample RUN -n N -o FILE)")
    return frame


def run(args: argparse.Namespace) -> int:
    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation import evaluate
    from ehrdiff.outputs import output_lock

    named = [parse_named(t) for t in args.synthetic]
    scaled = [parse_scale(t) for t in args.scale]
    names = [n for n, _ in named] + [f"{n}@{f:g}" for n, f, _ in scaled]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"dataset name(s) given more than once: {', '.join(duplicates)}")
    if not names and args.no_references:
        raise DataError("nothing to evaluate: give --synthetic NAME=FILE (or drop --no-references)")
    models = {}
    for text in args.model:
        name, sep, run_dir = text.partition("=")
        if not sep or not name or not run_dir:
            raise DataError(f"--model expects NAME=RUN (a dataset name and its model's run folder), got '{text}'")
        if name not in names:
            raise DataError(f"--model {text}: no synthetic dataset named '{name}' (datasets: {', '.join(names)})")
        models[name] = privacy_facts(run_dir)
    options = {k: v for k, v in (("dimwise_codes", args.dimwise_codes), ("threads", args.threads),
                                 ("device", args.device)) if v is not None}
    if args.no_figures:
        options["figures"] = False
    options.update(bootstrap_options(args.bootstrap, args.confidence))
    out = Path(args.output)
    check_report_folder(out, args, named, scaled)
    with output_lock(out):
        check_report_folder(out, args, named, scaled)     # again: another process may have written DIR meanwhile
        started = time.perf_counter()
        train, test = read_table(args.train), read_table(args.test, explain_kinds=False)
        if getattr(args, "rules", None):
            from ehrdiff.data.rules import read_rules_file
            train = train.with_rules(read_rules_file(args.rules), args.rules)
        synthetic = {name: read_synthetic(path) for name, path in named}
        scale: dict[str, dict[float, object]] = {}
        for name, fraction, path in scaled:
            scale.setdefault(name, {})[fraction] = read_synthetic(path)
        report = evaluate(train, test, synthetic, label=args.label, references=not args.no_references, seed=args.seed,
                          scale=scale, **options)
        for name, (values, skipped) in models.items():
            report.add_model_facts(name, values, skipped)
        html = report.save(out)
        log.info("evaluated %d dataset(s) in %.1f s", len(report.metrics), time.perf_counter() - started)
        print(summary(report.metrics))
        print(f"wrote {out / 'metrics.json'}, {out / 'report.md'}, {html}, per-code tables "
              f"({', '.join(report.PER_CODE_FILES.values())})"
              + (f" and {len(report.figures())} figure(s) in {out / 'figures'}" if not args.no_figures else ""))
        return 0


def bootstrap_options(resamples: int | None, confidence: float | None) -> dict:
    """``--bootstrap B`` (B >= 1) and ``--confidence C`` (0 < C < 1) as evaluation options."""
    if resamples is None:
        if confidence is not None:
            raise DataError("--confidence sets the level of the --bootstrap intervals: give --bootstrap B too")
        return {}
    if resamples < 1:
        raise DataError(f"--bootstrap takes the number of resamples, a whole number of at least 1 (e.g. 200), "
                        f"got {resamples}")
    if confidence is not None and not 0 < confidence < 1:
        raise DataError(f"--confidence takes a level between 0 and 1 (e.g. 0.95), got {confidence:g}")
    return {"bootstrap": resamples} if confidence is None else {"bootstrap": resamples, "confidence": confidence}


def check_report_folder(out: Path, args: argparse.Namespace, named: list, scaled: list) -> None:
    """DIR may take the report: its report files are replaced only with --overwrite, and never when one is an
    input of this evaluation."""
    from ehrdiff.evaluation.report import Report
    from ehrdiff.outputs import check_folder_output

    writes = ("metrics.json", "report.md", "report.html", "figures", *Report.PER_CODE_FILES.values())
    inputs = [args.train, args.test, *(f for _, f in named), *(f for *_, f in scaled),
              *(t.partition("=")[2] for t in args.model)]
    check_folder_output(out, overwrite=args.overwrite, writes=writes, inputs=inputs)


def privacy_facts(run_dir: str) -> tuple[dict, dict]:
    """({dp_epsilon, dp_delta}, skipped reasons) from a run folder's model.json, read only when its checksum
    matches (as ``ehrdiff sample`` reads it): an edited guarantee is refused, not reported."""
    from ehrdiff.models.persistence import read_model_metadata

    privacy = read_model_metadata(run_dir).privacy()
    if privacy is None:
        reason = "the model was trained without differential privacy"
        return {"dp_epsilon": None, "dp_delta": None}, {"dp_epsilon": reason, "dp_delta": reason}
    return privacy, {}


HEADLINE = {"prevalence_spearman": "prev_spearman", "discriminator_auroc": "discrim_auroc",
            "dimwise_prediction_auroc_gap": "dimwise_gap", "tstr_auroc": "tstr_auroc", "mia_auroc": "mia_auroc",
            "nnaa_privacy_loss": "nnaa_loss", "exact_copy_rate": "copy_rate", "dp_epsilon": "dp_epsilon"}


def summary(metrics: dict[str, dict]) -> str:
    """A few headline metrics per dataset as a fixed-width table for the terminal (all of them: report.md)."""
    keys = [k for k in HEADLINE if any(k in d for d in metrics.values())]
    width = max([len(n) for n in metrics] + [7])
    lines = ["dataset".ljust(width) + "".join(HEADLINE[k].rjust(15) for k in keys)]
    for name, data in metrics.items():
        cells = ["-" if data.get(k) is None else f"{data[k]:.3f}" for k in keys]
        lines.append(name.ljust(width) + "".join(c.rjust(15) for c in cells))
    return "\n".join(lines)
