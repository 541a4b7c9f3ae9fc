"""The registry of data sources. A source module registers its prepare function with one decorator, which also
names the source, gives its one-line help and the function that adds its flags to ``ehrdiff prepare NAME``:

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--input", required=True, metavar="PATH", help="the export (.csv)")

    @data_source("mysource", help="my export -> one row per patient", arguments=add_arguments)
    def prepare_mysource(input: str | os.PathLike) -> Prepared:
        ...

``ehrdiff prepare`` builds one sub-command per registered source, in registration order, and ``prepare()`` finds
the function by name. A flag reaches the prepare function as the keyword argument named like the flag's ``dest``
(``--min-count`` -> ``min_count``; give ``dest=`` when the names differ); a source whose flags need converting
first passes ``options=`` (parsed command line -> keyword arguments) instead.
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ehrdiff.errors import DataError

if TYPE_CHECKING:
    from ehrdiff.data.sources.split import Prepared


@dataclass(frozen=True)
class DataSource:
    """One registered source: ``prepare(**keywords) -> Prepared`` and its command line."""

    name: str
    help: str                                                      # one line: input -> what a row is
    prepare: Callable[..., Prepared]
    add_arguments: Callable[[argparse.ArgumentParser], None]       # the source's own flags
    options: Callable[[argparse.Namespace], dict] | None = None    # replaces the by-name mapping below

    def keyword_arguments(self, args: argparse.Namespace) -> dict:
        """The prepare function's keyword arguments from a parsed ``ehrdiff prepare NAME`` command line."""
        if self.options is not None:
            return self.options(args)
        parameters = inspect.signature(self.prepare).parameters
        return {name: getattr(args, name) for name in parameters if hasattr(args, name)}


SOURCES: dict[str, DataSource] = {}


def data_source(name: str, *, help: str, arguments: Callable[[argparse.ArgumentParser], None],
                options: Callable[[argparse.Namespace], dict] | None = None):
    """Decorator: register the decorated prepare function as the source ``name`` (returned unchanged).

    ``output``, ``test_fraction`` and ``seed`` are every source's flags (-o, --test-fraction, --seed, added by
    ``ehrdiff prepare``); a source's own flags and parameters use other names.
    """

    def register(prepare: Callable[..., Prepared]) -> Callable[..., Prepared]:
        if name in SOURCES:
            raise ValueError(f"data source '{name}' is registered twice")
        SOURCES[name] = DataSource(name=name, help=help, prepare=prepare, add_arguments=arguments, options=options)
        return prepare

    return register


def get_source(name: str) -> DataSource:
    """The source registered as ``name``; a DataError listing the known ones otherwise."""
    if name not in SOURCES:
        raise DataError(f"unknown source '{name}'; choose one of {', '.join(SOURCES)}")
    return SOURCES[name]
