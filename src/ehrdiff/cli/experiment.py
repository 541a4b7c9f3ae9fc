"""``ehrdiff experiment paper --dataset D --models ... --seeds N --budget steps:N -o DIR``: the paper's comparison.

Prepares the dataset (once, into DIR/data), trains every model x seed under the same step budget, samples as many
rows as each was trained on, evaluates all of them in one report and writes DIR/results.json and DIR/results.md
(mean and standard deviation over seeds). ``--fractions`` adds the data-scale experiment; ``--resume`` continues an
interrupted experiment without retraining finished runs. docs/experiments.md has the details.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
from pathlib import Path

from ehrdiff.cli import RegistryHelpFormatter
from ehrdiff.errors import EhrdiffError
from ehrdiff.settings import parse_assignments, parse_value

log = logging.getLogger("ehrdiff")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "experiment", help="run the paper's experiments (all models, one budget, one report)",
        description="Run the paper's experiments on real data: every model under the same budget, several seeds, "
                    "one evaluation report, tables of mean and standard deviation over seeds.")
    which = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    paper = which.add_parser(
        "paper", help="the comparison of generators on one dataset (and the data-scale experiment)",
        formatter_class=RegistryHelpFormatter,
        description="Prepare DATASET, train every model x seed under --budget, sample, evaluate all in one report "
                    "and write DIR/results.json and DIR/results.md.")
    paper.add_argument("--dataset", required=True, help="uci-diabetes, mimic-iii-demo, mimic-iv-demo, cinc2012 or ptb")
    paper.add_argument("--models", default=None,
                       help="comma-separated, from {experiment_models} (default: {default_experiment_models})")
    paper.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 per model (default 3)")
    paper.add_argument("--budget", metavar="steps:N",
                       help="optimiser steps per model (generator steps for GANs), or epochs:E (the official code's "
                            "epochs, converted to steps); see docs/experiments.md; required unless --quick")
    paper.add_argument("--batch-size", type=int, default=None, metavar="B",
                       help="batch size of every learned model (default 1024, or the training rows if fewer; "
                            "--quick: 64)")
    paper.add_argument("-o", "--output", required=True, metavar="DIR", help="experiment folder")
    paper.add_argument("--quick", action="store_true",
                       help="smoke test: steps:50 at batch 64, tiny networks (numbers meaningless)")
    paper.add_argument("--data-root", metavar="PATH", default=None,
                       help="folder holding the public data sets (default: ../shared/data if it exists)")
    paper.add_argument("--input", dest="inputs", action="append", default=[], metavar="KEY=PATH",
                       help="use this file for one input of the dataset, e.g. --input normal=ptbdb_normal.csv")
    paper.add_argument("--fractions", default=None, metavar="F,F,...",
                       help="data-scale experiment: also train on these shares of the training patients, e.g. "
                            "0.1,0.25,0.5,1.0")
    paper.add_argument("--resume", action="store_true", help="continue DIR: finished runs are kept, others resume")
    paper.add_argument("--overwrite", action="store_true",
                       help="replace report/ and results.md left in DIR without an experiment's runs")
    paper.add_argument("--shard", default=None, metavar="I/N",
                       help="train and sample only runs I, I+N, I+2N, ... of the plan (0 <= I < N) into DIR, for "
                            "several processes or machines sharing the folder; then run the same command without "
                            "--shard, with --resume, to evaluate every finished run")
    paper.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    paper.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch and the metrics")
    paper.add_argument("--set", dest="settings", action="append", default=[], metavar="MODEL.KEY=VALUE",
                       help="override one model's setting, e.g. --set ehrdiff.sample_batch_size=8192 (repeatable)")
    paper.add_argument("--eval", dest="evaluation", action="append", default=[], metavar="KEY=VALUE",
                       help="evaluation option (EvaluationConfig field), e.g. --eval dimwise_codes=100")
    return p


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _fractions(text: str | None) -> tuple[float, ...]:
    fractions = []
    for item in _split(text):
        try:
            fractions.append(float(item))
        except ValueError:
            raise EhrdiffError(f"--fractions expects numbers such as 0.1,0.25,0.5,1.0, got '{item}'") from None
    return tuple(fractions)


def _model_settings(items: list[str]) -> dict[str, dict]:
    """--set MODEL.KEY=VALUE ... -> {MODEL: {KEY: value}}."""
    settings: dict[str, dict] = {}
    for key, value in parse_assignments(items, "--set", "MODEL.KEY=VALUE", parse=False).items():
        model, dot, name = key.partition(".")
        if not dot or not name:
            raise EhrdiffError(f"--set expects MODEL.KEY=VALUE (e.g. ehrdiff.lr=1e-4), got '{key}={value}'")
        settings.setdefault(model, {})[name] = parse_value(value)
    return settings


def _shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    index, slash, count = text.partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit():
        raise EhrdiffError(f"--shard expects I/N such as 0/3, got '{text}'")
    return int(index), int(count)


def build_config(args: argparse.Namespace):
    from ehrdiff.experiments.spec import (QUICK_BATCH, QUICK_BUDGET, ExperimentConfig, default_data_root,
                                          default_models, parse_budget)

    fractions, settings = _fractions(args.fractions), _model_settings(args.settings)
    if args.budget:
        budget = parse_budget(args.budget, args.batch_size)
    elif args.quick:
        budget = parse_budget(QUICK_BUDGET, args.batch_size or QUICK_BATCH)
    else:
        budget = None       # refused by check() with the reason
    shard = _shard(args.shard)
    data_root = Path(args.data_root) if args.data_root else default_data_root()
    if args.data_root and not data_root.is_dir():
        raise EhrdiffError(f"--data-root {data_root}: folder not found")
    config = ExperimentConfig(
        dataset=args.dataset, output=Path(args.output), models=tuple(_split(args.models) or default_models()),
        seeds=args.seeds, budget=budget, quick=args.quick, data_root=data_root,
        inputs=parse_assignments(args.inputs, "--input", "KEY=PATH", parse=False), fractions=fractions,
        resume=args.resume, device=args.device, threads=args.threads, settings=settings,
        evaluation=parse_assignments(args.evaluation, "--eval"), progress=not getattr(args, "quiet", False),
        shard=shard).check()
    config.command = command_line(config)
    return config


def command_line(config) -> str:
    """The command that repeats this experiment, every choice spelled out (recorded in results.json / .md)."""
    parts = ["ehrdiff", "experiment", "paper", "--dataset", config.dataset, "--models", ",".join(config.models),
             "--seeds", str(config.seeds)]
    if config.budget is not None:
        budget = config.budget
        parts += ["--budget", f"epochs:{budget.epochs}" if budget.epochs else f"steps:{budget.steps}"]
        if config.budget.batch_size is not None:
            parts += ["--batch-size", str(config.budget.batch_size)]
    if config.quick:
        parts.append("--quick")
    if config.fractions:
        parts += ["--fractions", ",".join(f"{f:g}" for f in config.fractions)]
    if config.data_root is not None:
        parts += ["--data-root", str(config.data_root)]
    parts += [f"--input={k}={v}" for k, v in config.inputs.items()]
    if config.device != "auto":
        parts += ["--device", config.device]
    if config.threads is not None:
        parts += ["--threads", str(config.threads)]
    parts += [f"--set={m}.{k}={json.dumps(v)}" for m, values in config.settings.items() for k, v in values.items()]
    parts += [f"--eval={k}={json.dumps(v)}" for k, v in config.evaluation.items()]
    parts += ["-o", str(config.output)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from ehrdiff.experiments import run_experiment
    from ehrdiff.outputs import output_lock

    config = build_config(args)
    check_experiment_folder(config, args.overwrite)
    # shards share DIR by design (the runner coordinates them); any other run holds its lock
    with output_lock(config.output) if config.shard is None else contextlib.nullcontext():
        if config.shard is None:
            check_experiment_folder(config, args.overwrite)     # again: another process may have written it
        result = run_experiment(config)
    out = config.output
    if config.shard is not None:
        print(f"shard {args.shard}: {len(result['runs'])} run(s) in {out / 'runs'}; when every shard is done, run "
              "the same command without --shard, with --resume, to evaluate them")
        return 0
    print(f"wrote {out / 'results.md'}, {out / 'results.json'} and the full report in {out / 'report'}")
    return 0


def check_experiment_folder(config, overwrite: bool) -> None:
    """DIR may be written: its inputs (--data-root, --input files) are not among what the experiment writes, and a
    report/ or results.md it holds is replaced only with --overwrite (or --resume, --shard: continuing it). An
    experiment already in DIR is the runner's to refuse or continue (--resume)."""
    from ehrdiff.outputs import check_folder_output, refuse_inputs

    out = Path(config.output)
    inputs = [p for p in [config.data_root, *config.inputs.values()] if p is not None]
    refuse_inputs(out, [out / name for name in ("data", "runs", "results.json")], inputs)
    experiment = (out / "runs").exists() or (out / "results.json").exists()
    check_folder_output(out, overwrite=overwrite or experiment or config.resume or config.shard is not None,
                        writes=("report", "results.md"), inputs=inputs)
