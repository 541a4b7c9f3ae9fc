"""``ehrdiff train DATA -o RUN``: fit a generator (EHRDiff by default) and save it in RUN.

Checkpoints go to RUN/checkpoints/ every --checkpoint-every steps and at the end; --resume continues from the
last one (after a crash or kill -9) and ends with the same model as an uninterrupted run. Under
``torchrun --nproc-per-node N --no-python ehrdiff train ...`` every process trains on its share of each batch
and only rank 0 writes. Bad input is refused before anything in RUN is touched; RUN is locked while training
(a second ``ehrdiff train -o RUN`` is refused with the first one's pid) and checked to take new files first.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator

from ehrdiff.cli import RegistryHelpFormatter
from ehrdiff.errors import EhrdiffError
from ehrdiff.settings import parse_assignments, seed_argument

log = logging.getLogger("ehrdiff")

CHECKPOINT_SUBDIR = "checkpoints"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train a generator on a table and save it", formatter_class=RegistryHelpFormatter,
        description="Train a generator on a patient table (.parquet, .csv, .csv.gz, .tsv or .npz) and save it "
                    "in a run folder. Any constructor setting can be changed with --set KEY=VALUE.")
    p.add_argument("data", help="training table")
    p.add_argument("-o", "--output", required=True, metavar="RUN", help="run folder for the model and checkpoints")
    p.add_argument("--model", default="ehrdiff", help="generator to train: {models} (default: ehrdiff)")
    p.add_argument("--preset", help="EHRDiff's named settings: {presets} (default: default)")
    p.add_argument("--steps", type=int, help="optimiser steps on every row (default: a length derived from the "
                                                "data, stopped early on held-out rows; README, \"Training length\")")
    p.add_argument("--batch-size", type=int, help="global batch size (split over processes under torchrun)")
    p.add_argument("--seed", type=seed_argument, help="random seed (same seed, same model)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="write a checkpoint every N steps")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model setting, e.g. --set lr=1e-4 --set hidden_dims=[512,512] (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints if there is a checkpoint")
    p.add_argument("--rules", metavar="FILE", help="JSON file of relations between columns that every sampled row "
                   "keeps, added to those the data file declares (format: docs/data.md)")
    p.add_argument("--condition", metavar="COL", help="train a conditional model on label/categorical column COL "
                   "(sample with --condition COL=VALUE; docs/conditional-and-dp.md)")
    dp = p.add_argument_group("differential privacy (DP-SGD through Opacus: pip install ehrdiff[dp])")
    dp.add_argument("--dp", action="store_true", help="train with DP-SGD to the budget (--epsilon, --delta)")
    dp.add_argument("--epsilon", type=float, metavar="E", help="target epsilon of the whole run (with --dp)")
    dp.add_argument("--delta", type=float, metavar="D", help="target delta (with --dp; default 1e-5)")
    dp.add_argument("--max-grad-norm", type=float, metavar="C", help="per-example clipping bound (default 1)")
    dp.add_argument("--noise-draws", type=int, metavar="K",
                    help="noise levels drawn per example and averaged before clipping (default 4)")
    dp.add_argument("--accountant", choices=("rdp", "prv"), help="Opacus privacy accountant (default rdp)")
    dp.add_argument("--bounds", metavar="FILE", help="public column ranges and category lists (JSON; columns not "
                    "named are estimated privately: docs/conditional-and-dp.md)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in RUN")
    return p


def model_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The model's constructor settings: --set KEY=VALUE, then the flags (a flag contradicting a --set is refused)."""
    kwargs = parse_assignments(args.settings, "--set")
    flags = {"preset": args.preset, "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
             "checkpoint_every": args.checkpoint_every, **_condition_and_dp_flags(args)}
    for key, value in flags.items():
        if value is None:
            continue
        if key in kwargs and kwargs[key] != value:
            raise EhrdiffError(f"--{key.replace('_', '-')} {value} contradicts --set {key}={kwargs[key]}")
        kwargs[key] = value
    return kwargs


_DP_FLAGS = {"epsilon": "dp_epsilon", "delta": "dp_delta", "max_grad_norm": "dp_max_grad_norm",
             "noise_draws": "dp_noise_draws", "accountant": "dp_accountant", "bounds": "dp_bounds"}


def _condition_and_dp_flags(args: argparse.Namespace) -> dict[str, Any]:
    """--condition and the DP flags as model settings; a DP option without --dp is refused."""
    out: dict[str, Any] = {}
    if getattr(args, "condition", None) is not None:
        out["condition"] = args.condition
    given = {flag: getattr(args, flag, None) for flag in _DP_FLAGS}
    given = {flag: value for flag, value in given.items() if value is not None}
    if given and not getattr(args, "dp", False):
        raise EhrdiffError(f"--{next(iter(given)).replace('_', '-')} only applies to private training: add --dp")
    if getattr(args, "dp", False):
        if "epsilon" not in given:
            raise EhrdiffError("--dp needs a target budget: give --epsilon E (and --delta D, default 1e-5)")
        out["dp"] = True
        out.update({_DP_FLAGS[flag]: value for flag, value in given.items()})
    return out


RUN_OUTPUTS = ("model.json", "weights.safetensors", CHECKPOINT_SUBDIR)     # what train writes into RUN


RUN_OUTPUTS = ("model.json", "weights.safetensors", CHECKPOINT_SUBDIR)     # what train writes into RUN


def check_run_folder(run: Path, data: str | None = None) -> None:
    """RUN can be a run folder: a folder (or missing) whose parent can hold it, and the training ``data`` is not
    among the files train writes into it."""
    from ehrdiff.outputs import check_folder_output

    check_folder_output(run, overwrite=True, writes=RUN_OUTPUTS, inputs=[data] if data else [])


def check_run_contents(run: Path, resume: bool, overwrite: bool) -> None:
    """RUN holds no model or checkpoints, unless --resume continues them or --overwrite replaces them."""
    if not run.is_dir() or resume or overwrite:
        return
    if any((run / name).exists() for name in RUN_OUTPUTS):
        raise EhrdiffError(f"{run}: already holds a model or checkpoints; pass --resume to continue it, "
                           "--overwrite to replace it, or choose another -o")


@contextlib.contextmanager
def run_folder_lock(run: Path, resume: bool, overwrite: bool) -> Iterator[None]:
    """Hold RUN's lock for the whole command (one process of a torchrun group: rank 0, which writes), so that a
    run being trained is refused as such, whatever the flags; then check what RUN holds. An existing checkpoints
    folder must take new files (its first checkpoint would fail only after the first steps). A RUN created for the
    lock is removed again if the command fails before writing into it."""
    from ehrdiff.outputs import output_lock, probe_writable

    if os.environ.get("RANK", "0") != "0":
        check_run_contents(run, resume, overwrite)
        yield
        return
    with output_lock(run, inside=True):
        check_run_contents(run, resume, overwrite)
        if (run / CHECKPOINT_SUBDIR).is_dir():
            probe_writable(run / CHECKPOINT_SUBDIR)
        yield


def run(args: argparse.Namespace) -> int:
    from ehrdiff.data.io import read_table
    from ehrdiff.data.labels import check_label
    from ehrdiff.data.rules import read_rules_file
    from ehrdiff.models import build_model
    from ehrdiff.training import is_main_process

    run_dir = Path(args.output)
    model = build_model(args.model, model_arguments(args))      # bad settings fail here, before any I/O
    rules = read_rules_file(args.rules) if getattr(args, "rules", None) else ()
    check_run_folder(run_dir, args.data)
    with run_folder_lock(run_dir, args.resume, args.overwrite):
        table = read_table(args.data)                            # bad data fails here, before any write
        check_label(table, args.data)                            # as 'ehrdiff prepare' checks it
        if rules:
            table = table.with_rules(rules, args.rules)
        started = time.perf_counter()
        model.fit(table, checkpoint_dir=run_dir / CHECKPOINT_SUBDIR, resume=args.resume,
                  progress=not getattr(args, "quiet", False))
        if is_main_process():
            model.save(run_dir)
    if is_main_process():
        log.info("trained %s on %d rows in %.0f s; saved to %s (sample with: ehrdiff sample %s -n N -o FILE)",
                 args.model, table.n_rows, time.perf_counter() - started, run_dir, run_dir)
    return 0
