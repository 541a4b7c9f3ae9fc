"""``ehrdiff sample RUN -n N -o OUT``: draw N synthetic rows from a saved model, in the training table's columns.

The wide output format follows OUT's extension (.parquet, .csv, .csv.gz, .tsv, .npz); ``--format long`` writes
(subject, code) rows, ``--format meds`` a MEDS dataset folder and ``--format omop`` OMOP CDM 5.4 CSV files (a
table from ``ehrdiff prepare omop``). OUT is checked before the model is sampled (a
file, not an input, missing unless --overwrite, room on the disk for CSV/NPZ) and locked while it is written; the
rows are drawn and written in chunks (memory does not grow with N) into a temporary file beside OUT that replaces
it at the end, so a bad request or a failure leaves an existing OUT untouched (docs/guarantees.md).
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
    p = subparsers.add_parser("sample", help="draw synthetic rows from a trained model",
                              description="Draw synthetic rows from a model saved by 'ehrdiff train'.")
    p.add_argument("run", metavar="RUN", help="run folder written by 'ehrdiff train'")
    # parsed here rather than by argparse so that a bad count gets the one-line error
    p.add_argument("-n", "--num-rows", dest="n", required=True, metavar="N", help="number of rows to draw")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output table (.parquet, .csv, .npz, ...)")
    p.add_argument("--seed", type=seed_argument, default=0, help="random seed (same seed, same rows; default 0)")
    p.add_argument("--format", choices=("wide", "long", "meds", "omop"), default="wide",
                   help="wide: one column per feature (by OUT's extension, default); long: (subject, code) rows; "
                        "meds: a MEDS dataset folder at OUT; omop: OMOP CDM 5.4 CSV files in the folder OUT "
                        "(a table prepared by 'ehrdiff prepare omop')")
    p.add_argument("--condition", metavar="COL=VALUE",
                   help="conditional model: draw rows of class VALUE of its condition column COL")
    p.add_argument("--guidance", type=float, metavar="W",
                   help="classifier-free guidance weight w >= 0 (0: plain conditional, the default)")
    p.add_argument("--balance", metavar="V=SHARE,...",
                   help="conditional model: class shares of the rows, e.g. 0=0.5,1=0.5 (default: training balance)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="EHRDiff: change a sampling setting for this draw, e.g. --set num_noise_levels=32 or "
                        "--set codes_per_row=model (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT (never the model's files or its training data)")
    return p


def apply_sampling_settings(args: argparse.Namespace, model) -> None:
    """--set KEY=VALUE for the sampler of an EHRDiff model."""
    from ehrdiff.errors import EhrdiffError
    from ehrdiff.settings import parse_assignments

    if not args.settings:
        return
    if not hasattr(model, "set_sampling"):
        raise EhrdiffError(f"--set applies to EHRDiff models only, not '{model.name}'")
    model.set_sampling(**parse_assignments(args.settings, "--set"))


def conditional_options(args: argparse.Namespace, model) -> dict:
    """--condition / --guidance / --balance as keyword arguments of sample()."""
    from ehrdiff.models.ehrdiff.conditioning import parse_balance
    from ehrdiff.errors import EhrdiffError

    options: dict = {}
    if args.condition is not None:
        column, sep, value = args.condition.partition("=")
        if not sep or not column:
            raise EhrdiffError(f"--condition expects COL=VALUE (e.g. label=1), got '{args.condition}'")
        spec = getattr(model, "condition_", None)
        if spec is not None and column != spec.column:
            raise EhrdiffError(f"--condition {args.condition}: this model is conditioned on '{spec.column}', "
                               f"not '{column}'")
        options["condition"] = value
    if args.balance is not None:
        options["balance"] = parse_balance(args.balance)
    if args.guidance is not None:
        options["guidance"] = args.guidance
    if options and not hasattr(model, "condition_"):
        raise EhrdiffError(f"--condition, --guidance and --balance need a conditional EHRDiff model, "
                           f"not '{model.name}'")
    return options


def parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DataError(f"-n must be a positive whole number, got '{text}'") from None
    if value <= 0:
        raise DataError(f"-n must be a positive whole number, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from ehrdiff.data.writers import open_synthetic_writer, writer_class
    from ehrdiff.models import load_model
    from ehrdiff.models.base import sample_in_chunks
    from ehrdiff.outputs import output_lock, refuse_training_data

    n = parse_count(str(args.n))
    out = Path(args.output)
    writer_class(args.format).check_target(out)      # unknown extension: fail before anything else
    model = load_model(args.run)
    apply_sampling_settings(args, model)
    options = conditional_options(args, model)
    if args.overwrite:
        refuse_training_data(model, out)
    check_output(out, args)
    with output_lock(out):
        check_output(out, args, rows=n, columns=output_columns(model))   # again: another process may have written
        started = time.perf_counter()
        with open_synthetic_writer(out, args.format, rows=n, replace=args.overwrite) as writer:
            for chunk in sample_in_chunks(model, n, args.seed, not getattr(args, "quiet", False), **options):
                writer.write(chunk)
    log.info("wrote %d synthetic rows to %s in %.1f s", n, args.output, time.perf_counter() - started)
    return 0


def check_output(out: Path, args: argparse.Namespace, rows: int = 0, columns: int = 0) -> None:
    """OUT may be written: the right type for --format, not one of the model's files, missing unless
    --overwrite, and (CSV, TSV, NPZ) with room for ``rows`` x ``columns`` values on its disk."""
    from ehrdiff.data.io import table_format
    from ehrdiff.data.writers import writer_class
    from ehrdiff.models.persistence import METADATA_FILE, WEIGHTS_FILE
    from ehrdiff.outputs import check_file_output, check_folder_output, check_free_space, estimated_bytes

    inputs = [Path(args.run) / name for name in (METADATA_FILE, WEIGHTS_FILE, "checkpoints")]
    if writer_class(args.format).folder:
        check_folder_output(out, overwrite=args.overwrite, writes=None, inputs=inputs)
        return
    check_file_output(out, overwrite=args.overwrite, inputs=inputs)
    if args.format == "wide" and rows:
        check_free_space(out, estimated_bytes(out, table_format(out), rows, columns),
                         f"{rows:,} rows x {columns:,} columns")


def output_columns(model) -> int:
    """The columns of the model's rows (0 where the model does not say)."""
    encoder = getattr(model, "encoder_", None)
    codings = getattr(encoder, "codings_", None) or []
    return len(codings) + (getattr(model, "condition_", None) is not None)
