"""The ``ehrdiff`` command: argument parsing and friendly errors, nothing else.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
User errors (EhrdiffError) print one line and exit 1; usage mistakes (a missing or malformed flag) print one line
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ehrdiff import __version__
from ehrdiff.errors import EhrdiffError

COMMANDS = ["demo", "prepare", "train", "sample", "evaluate", "experiment"]


def _registered_models() -> str:
    from ehrdiff.models import REGISTRY

    return ", ".join(sorted(REGISTRY))


def _experiment_models() -> str:
    from ehrdiff.models import experiment_models

    return ", ".join(sorted(experiment_models()))


def _default_experiment_models() -> str:
    from ehrdiff.experiments.spec import default_models

    return ", ".join(default_models())


def _presets() -> str:
    from ehrdiff.models.ehrdiff import PRESETS

    return ", ".join(PRESETS)


# placeholders a help text may hold, filled from the code when help is printed
HELP_LISTS = {"{models}": _registered_models, "{experiment_models}": _experiment_models,
              "{default_experiment_models}": _default_experiment_models, "{presets}": _presets}


class RegistryHelpFormatter(argparse.HelpFormatter):
    """Fills the ``HELP_LISTS`` placeholders of help texts with the registered models (plug-ins included) and the
    EHRDiff presets. It does so when help is printed: the registry imports torch and every model, which other
    commands (and a --version) need not wait for."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action)
        for placeholder, listing in HELP_LISTS.items():
            if placeholder in text:
                text = text.replace(placeholder, listing())
        return text


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes print one line in the same form as every other ehrdiff error (not the usage block), with
    argparse's exit status 2. The sub-command parsers are of this class too (``add_subparsers`` makes its own)."""

    def error(self, message: str):
        self.exit(2, f"ehrdiff: error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: str) -> str:
    """``text`` with its line breaks folded into spaces: an error is one line on the terminal, whatever a library
    put into the message it wraps."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``ehrdiff`` parser. ``command``: the command about to run, whose module's ``add_details`` (where it has
    one) adds what is costly to build and only that command needs."""
    parser = OneLineParser(
        prog="ehrdiff", description="Train diffusion models on EHR tables, sample synthetic patients, evaluate them.")
    parser.add_argument("--version", action="version", version=f"ehrdiff {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"ehrdiff.cli.{name}")
        sub = module.add_parser(subparsers)
        if name == command and hasattr(module, "add_details"):
            module.add_details(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return int(args.handler(args) or 0)
    except EhrdiffError as exc:
        print(f"ehrdiff: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ehrdiff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
