"""Command-line value types and flags that several sources (and ``ehrdiff prepare`` itself) share. A bad value is an
argparse usage error, so it is reported in the same one line as any other usage mistake."""

from __future__ import annotations

import argparse


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def add_min_count(parser: argparse.ArgumentParser, code: str, holders: str) -> None:
    """``--min-count N`` (default 1): keep a ``code`` only when at least N ``holders`` hold it."""
    parser.add_argument("--min-count", type=positive_int, default=1, metavar="N",
                        help=f"keep {code} only when at least N {holders} hold it (default 1)")


def add_counts(parser: argparse.ArgumentParser) -> None:
    """``--counts``: a count matrix instead of 0/1."""
    parser.add_argument("--counts", action="store_true", help="count matrix instead of 0/1")
