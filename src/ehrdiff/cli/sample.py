"""``ehrdiff sample RUN -n N -o OUT``: draw N synthetic rows from a saved model, in the training table's columns.

The output format follows OUT's extension (.parquet, .csv, .csv.gz, .tsv, .npz); the file is written atomically,
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
    from ehrdiff.data.io import table_format, write_table
    from ehrdiff.models import load_model

    n = parse_count(str(args.n))
    table_format(args.output)                 # unknown extension: fail before the (slow) sampling
    model = load_model(args.run)
    started = time.perf_counter()
    synthetic = model.sample(n, seed=args.seed)
    write_table(synthetic, args.output)
    log.info("wrote %d synthetic rows to %s in %.1f s", n, args.output, time.perf_counter() - started)
    return 0
