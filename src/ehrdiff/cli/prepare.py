"""``ehrdiff prepare SOURCE ... -o DIR``: raw clinical files -> DIR/train.parquet, DIR/test.parquet and
DIR/summary.json. One sub-command per source registered in ehrdiff.data.sources (each source declares its own
flags); this module adds the flags every source shares and prints the result. DIR's files of an earlier prepare
are replaced only with --overwrite, an input never, and DIR is locked while it is written (docs/guarantees.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ehrdiff.settings import seed_argument


class _Parser(argparse.ArgumentParser):
    """Usage mistakes print one line in the same form as every other ehrdiff error."""

    def error(self, message: str):
        self.exit(2, f"ehrdiff: error: {self.prog}: {message} (see {self.prog} --help)\n")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("prepare", help="turn raw clinical files into train/test tables",
                                   description="Turn raw clinical files into model-ready train/test tables, split "
                                               "by patient (seeded), with a JSON summary.")
    parser.error = _Parser.error.__get__(parser)  # `ehrdiff prepare` without a source: the same one-line error
    return parser


def add_details(parser: argparse.ArgumentParser) -> None:
    """One sub-command per registered source: its own flags, then the flags all sources share. Only when
    ``ehrdiff prepare`` runs (ehrdiff.cli.build_parser): the sources import pandas and pyarrow, which the other
    commands' start need not wait for."""
    from ehrdiff.data.sources import SOURCES
    from ehrdiff.data.sources.arguments import fraction

    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True, parser_class=_Parser)
    for source in SOURCES.values():
        parser = sources.add_parser(source.name, help=source.help, description=source.help)
        source.add_arguments(parser)
        parser.add_argument("-o", "--output", required=True, metavar="DIR",
                            help="output folder for train.parquet, test.parquet and summary.json")
        parser.add_argument("--test-fraction", type=fraction, default=0.2, metavar="F",
                            help="share of patients held out for test (default 0.2)")
        parser.add_argument("--seed", type=seed_argument, default=0, help="seed of the patient split (default 0)")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace train.parquet, test.parquet and summary.json already in DIR (never an input)")


PREPARED_FILES = ("train.parquet", "test.parquet", "summary.json", "bounds.json")   # what prepare may write


def run(args: argparse.Namespace) -> int:
    from ehrdiff.data.sources import get_source, prepare
    from ehrdiff.outputs import check_folder_output, output_lock

    options = get_source(args.source).keyword_arguments(args)
    out = Path(args.output)
    inputs = input_paths(options.values())

    def check() -> None:
        check_folder_output(out, overwrite=args.overwrite, writes=PREPARED_FILES, inputs=inputs)

    check()                         # before the raw files are read
    with output_lock(out):
        check()                     # again: another process may have written DIR meanwhile
        summary = prepare(args.source, out, test_fraction=args.test_fraction, seed=args.seed, **options)
    train, test = summary["shapes"]["train"], summary["shapes"]["test"]
    line = (f"{args.output}: train.parquet {train[0]:,} x {train[1]:,}, test.parquet {test[0]:,} x {test[1]:,} "
            f"({summary['subjects']['train']:,} / {summary['subjects']['test']:,} subjects)")
    if "label" in summary:
        line += f", label 1 in {summary['label']['all'].get('1', 0):,} rows"
    print(line)
    for note in summary.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    return 0


def input_paths(values) -> list[Path]:
    """The source's options that name existing files or folders (its inputs, never to be written over)."""
    paths = []
    for value in values:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, os.PathLike)) and str(item) and Path(item).exists():
                paths.append(Path(item))
    return paths
