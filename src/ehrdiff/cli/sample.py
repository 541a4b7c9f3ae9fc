"""``ehrdiff sample RUN -n N -o OUT``: draw N synthetic rows from a saved model, in the training table's columns.

The wide output format follows OUT's extension (.parquet, .csv, .csv.gz, .tsv, .npz); ``--format long`` writes
(subject, code) rows and ``--format meds`` a MEDS dataset folder. Output is written atomically,
and only after the model loaded and the rows were drawn, so a bad request leaves an existing OUT untouched.
"""

from __future__ import annotations

import argparse
import logging
import time

from ehrdiff.errors import DataError

log = logging.getLogger("ehrdiff")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sample", help="draw synthetic rows from a trained model",
                              description="Draw synthetic rows from a model saved by 'ehrdiff train'.")
    p.add_argument("run", metavar="RUN", help="run folder written by 'ehrdiff train'")
    # parsed here rather than by argparse so that a bad count gets the one-line error
    p.add_argument("-n", "--num-rows", dest="n", required=True, metavar="N", help="number of rows to draw")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output table (.parquet, .csv, .npz, ...)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same rows; default 0)")
    p.add_argument("--format", choices=("wide", "long", "meds"), default="wide",
                   help="wide: one column per feature (by OUT's extension, default); long: (subject, code) rows; "
                        "meds: a MEDS dataset folder at OUT")
    return p


def parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DataError(f"-n must be a positive whole number, got '{text}'") from None
    if value <= 0:
        raise DataError(f"-n must be a positive whole number, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from ehrdiff.data.io import table_format
    from ehrdiff.data.writers import write_synthetic
    from ehrdiff.models import load_model

    n = parse_count(str(args.n))
    if args.format == "wide":
        table_format(args.output)             # unknown extension: fail before the (slow) sampling
    model = load_model(args.run)
    started = time.perf_counter()
    synthetic = model.sample(n, seed=args.seed)
    write_synthetic(synthetic, args.output, format=args.format)
    log.info("wrote %d synthetic rows to %s in %.1f s", n, args.output, time.perf_counter() - started)
    return 0
