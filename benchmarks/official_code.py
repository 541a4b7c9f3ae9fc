"""The paper's official EHRDiff code beside ehrdiff's implementation of it (preset paper-mimic): trained on the same
UCI diabetes split for the same number of steps, sampled at the training set's size, scored by one evaluation.

ehrdiff does not ship or download the official code: `--official-repo` is a checkout of github.com/sczzz3/EHRDiff in
its DPDM-based version (commit 300ff2f; configs/mimic/train_edm.yaml), from which this script imports the official
network (model/linear_model.py), preconditioning (denoiser.py, EDMDenoiser), loss (score_losses.py, EDMLoss) and
sampler (samplers.py, ablation_sampler; it integrates in float64), with their dependency einops on PYTHONPATH. Only
the loop around them is written here, as the official runners drive them (runners/train_dpdm_base.py without DP,
runners/generate_base.py): AdamW lr 3e-4 without weight decay, batches of 1,024 shuffled each epoch (the last one
smaller), linear warm-up then cosine decay to zero over (rows // 1,024 + 1) x epochs steps (transformers'
get_cosine_schedule_with_warmup; computed by ehrdiff's training.learning_rate, the same formula), the EMA of the
official config (ema_rate 0.999) with the warm-up of score_sde's ExponentialMovingAverage, decay min(0.999, (1 + n) /
(10 + n)), whose interface the official model/ema.py has (that file is not in every copy of the repository; the decay
comes from ehrdiff's training.ema_decay, the same rule), sampling from the EMA weights with 32 Heun levels in [0.02,
80], rho 7, then rounding at 0.5. One process instead of DDP changes nothing on one device. 89 epochs = 4,984 steps,
the budget of the official run in FINDINGS.md; warm-up 356 steps, the official schedule's share (20,000 of 280,000).

    # ehrdiff-paper, seeds 0-5 (uci_comparison.py's runs/paper-uci-v2 command with --seeds 6), one per command
    # with --shard I/6 for I = 0..5, two at a time on two cores (about 40 minutes each)
    .venv/bin/ehrdiff -q experiment paper --dataset uci-diabetes --models ehrdiff-paper --seeds 6 --budget \\
        steps:5000 --batch-size 1024 --threads 1 --set=ehrdiff-paper.warmup_steps=357 --shard I/6 -o runs/paper-uci-v2
    # the official code, seeds 0-5, one per command (about 40 minutes on one core; rerun it to resume)
    PYTHONPATH=DIR_WITH_EINOPS .venv/bin/python benchmarks/official_code.py train --official-repo PATH \\
        --experiment runs/paper-uci-v2 --seed S -o runs/official-uci
    # both scored in one evaluation: benchmarks/results/official_code.md
    .venv/bin/python benchmarks/official_code.py compare --experiment runs/paper-uci-v2 --official runs/official-uci
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from ehrdiff.training import ema_decay, learning_rate

ROOT = Path(__file__).resolve().parent
BATCH = 1024
OFFICIAL = "official EHRDiff code"
OURS = "ehrdiff-paper"
READING = """How to read it. The two are the same model trained for the same steps, so a difference is to be read
against the spread over seeds: the standard-error column divides each difference of means by its standard error
(Welch). Scored on one split by one evaluation, ehrdiff-paper and the official code agree on every metric within two
standard errors: TSTR (the same mean and spread), prevalences, codes per patient, empty and distinct rows, both
discriminators, the dimension-wise gap and the privacy metrics. On this budget ehrdiff's implementation of the
paper's model is as good as the official code: no metric shows it worse by more than the seed-to-seed spread allows.
With the first three seeds a side the gradient-boosting discriminator had differed by three standard errors
(ehrdiff-paper's rows a hundredth easier to tell from real ones); the next three seeds of both brought the difference
under one standard error, so it was chance. The largest difference left, ehrdiff-paper's higher nearest-neighbour
privacy loss (1.4 standard errors), sits on a metric whose per-seed values scatter around zero for both. The TSTR of
a single run moves by three hundredths from seed to seed, for both. The last column is the official run FINDINGS.md
recorded with the project's earlier protocol: its higher TSTR came from that protocol and that one run, within the
official code's own spread over seeds here, not from the code."""


class OfficialEma:
    """The EMA of the official config (ema_rate) as score_sde's ExponentialMovingAverage computes it, whose interface
    the official runners use: after the n-th update, shadow -= (1 - decay_n) (shadow - param) with
    decay_n = min(decay, (1 + n) / (10 + n)) (ehrdiff's ema_decay: the same rule)."""

    def __init__(self, parameters, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = [p.detach().clone() for p in parameters if p.requires_grad]

    @torch.no_grad()
    def update(self, parameters) -> None:
        self.updates += 1
        decay = ema_decay(self.updates, self.decay)
        for s, p in zip(self.shadow, [p for p in parameters if p.requires_grad]):
            s.sub_((1 - decay) * (s - p))

    @torch.no_grad()
    def copy_to(self, parameters) -> None:
        for s, p in zip(self.shadow, [p for p in parameters if p.requires_grad]):
            p.copy_(s)


def load_official(repo: Path) -> SimpleNamespace:
    """The official code's pieces this script runs, imported from its checkout ``repo``."""
    if not (repo / "samplers.py").exists() or not (repo / "model" / "linear_model.py").exists():
        sys.exit(f"{repo}: not a checkout of the official EHRDiff code (samplers.py, model/linear_model.py missing)")
    sys.path.insert(0, str(repo))
    from denoiser import EDMDenoiser
    from model.linear_model import LinearModel
    from samplers import ablation_sampler
    from score_losses import EDMLoss
    from utils.util import set_seeds

    return SimpleNamespace(EDMDenoiser=EDMDenoiser, LinearModel=LinearModel, ablation_sampler=ablation_sampler,
                           EDMLoss=EDMLoss, set_seeds=set_seeds)


def restore(checkpoint: Path, epochs: int, model, optimizer, scheduler, ema: OfficialEma) -> tuple[int, int, float]:
    """(first epoch, step, training seconds so far): from the checkpoint when there is one, else from the start.
    Every random draw (shuffling, noise levels, noise) comes from torch's global generator, whose state is saved at
    the epoch boundary: the resumed run continues exactly as the uninterrupted one would."""
    if not checkpoint.exists():
        return 0, 0, 0.0
    state = torch.load(checkpoint, weights_only=False)
    if state["epochs"] != epochs:
        sys.exit(f"{checkpoint}: a run of {state['epochs']} epochs, not {epochs}; delete it to start over")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    ema.shadow, ema.updates = state["ema"], state["ema_updates"]
    torch.set_rng_state(state["rng"])
    print(f"{checkpoint}: resuming after epoch {state['epoch']} (step {state['step']})", flush=True)
    return state["epoch"], state["step"], state["train_seconds"]


def run_epochs(args: argparse.Namespace, parts: tuple, loss_fn, loader, checkpoint: Path,
               position: tuple[int, int, float], total: int) -> tuple[int, float]:
    """The official training loop from ``position`` (first epoch, step, seconds so far) to the last epoch, with a
    checkpoint every --checkpoint-every epochs; returns the steps taken in all and the training seconds."""
    model, optimizer, scheduler, ema = parts
    first_epoch, step, seconds_before = position
    started = time.perf_counter()
    for epoch in range(first_epoch, args.epochs):
        if epoch > first_epoch and epoch % args.checkpoint_every == 0:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "ema": ema.shadow, "ema_updates": ema.updates, "rng": torch.get_rng_state(), "epoch": epoch,
                "epochs": args.epochs, "step": step, "train_seconds": seconds_before + time.perf_counter() - started})
        for x in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = torch.mean(loss_fn(model, x, None))
            loss.backward()
            optimizer.step()
            scheduler.step()
            ema.update(model.parameters())
            step += 1
            if step % 500 == 0 or step == total:
                print(f"step {step}/{total} loss {loss.item():.4f} "
                      f"{seconds_before + time.perf_counter() - started:.0f} s", flush=True)
    return step, seconds_before + time.perf_counter() - started


def sample_official(official: SimpleNamespace, model, ema: OfficialEma, seed: int, n: int,
                    width: int) -> tuple[np.ndarray, float]:
    """n rows from the EMA weights with the official sampler (32-level Heun), rounded at 0.5; and the seconds."""
    started = time.perf_counter()
    ema.copy_to(model.parameters())
    model.eval()
    official.set_seeds(0, seed)
    latents = torch.randn((n, width))
    with torch.no_grad():        # rows are independent: chunks give the rows of one batch, in less memory
        out = torch.cat([official.ablation_sampler(chunk, None, model, solver="heun", discretization="edm",
                                                   stochastic=False, num_steps=32, sigma_min=0.02, sigma_max=80.0,
                                                   rho=7.0, guid_scale=None)
                         for chunk in latents.split(8192)])
    return np.rint(np.clip(out.numpy(), 0, 1)).astype(np.int8), time.perf_counter() - started


def train(args: argparse.Namespace) -> None:
    from ehrdiff.data.io import read_table, write_table
    from ehrdiff.data.table import Table
    from ehrdiff.fileio import write_text_atomic

    repo = args.official_repo.resolve()
    official = load_official(repo)
    torch.set_num_threads(args.threads)
    real = read_table(args.experiment / "data" / "train.parquet")
    columns = real.feature_columns
    data = torch.from_numpy(real.frame[columns].to_numpy(np.float32))
    rows, width = data.shape
    total = (rows // BATCH + 1) * args.epochs
    warmup = round(total * 20_000 / 280_000)
    official.set_seeds(0, args.seed)
    model = official.EDMDenoiser(model=official.LinearModel(z_dim=width, time_dim=384,
                                                            unit_dims=[1024, 384, 384, 384, 1024], use_cfg=False),
                                 sigma_data=0.14, sigma_min=0.02, sigma_max=80.0)
    ema = OfficialEma(model.parameters(), decay=0.999)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate(step, 1.0, warmup, total))
    loss_fn = official.EDMLoss(p_mean=-1.2, p_std=1.2, sigma_data=0.14, n_classes=None).get_loss
    loader = torch.utils.data.DataLoader(data, shuffle=True, batch_size=BATCH)

    folder = args.output / f"seed-{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "checkpoint.pt"
    position = restore(checkpoint, args.epochs, model, optimizer, scheduler, ema)
    step, train_seconds = run_epochs(args, (model, optimizer, scheduler, ema), loss_fn, loader, checkpoint, position,
                                     total)
    synthetic, sample_seconds = sample_official(official, model, ema, args.seed, args.sample_rows or rows, width)

    table = Table.from_frame(pd.DataFrame(synthetic, columns=columns), {c: real.kinds[c] for c in columns})
    write_table(table, folder / "synthetic.parquet")
    write_text_atomic(folder / "run.json", json.dumps({
        "official_repo": str(repo), "experiment": str(args.experiment), "seed": args.seed, "epochs": args.epochs,
        "steps": step, "warmup_steps": warmup, "rows": rows, "sampled_rows": len(synthetic), "width": width,
        "threads": args.threads,
        "train_seconds": train_seconds, "sample_seconds": sample_seconds,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}, indent=2) + "\n")
    checkpoint.unlink(missing_ok=True)
    print(f"{folder}: {step} steps in {train_seconds:.0f} s, {len(synthetic)} rows sampled in {sample_seconds:.0f} s")


def save_checkpoint(path: Path, state: dict) -> None:
    from ehrdiff.fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def standard_error(a: dict, b: dict) -> float | None:
    """Standard error of the difference of two means over seeds (Welch): sqrt(s_a^2 / n_a + s_b^2 / n_b)."""
    if a["std"] is None or b["std"] is None:
        return None
    return math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"]) or None


def compare(args: argparse.Namespace) -> None:
    from uci_comparison import ROWS
    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation import evaluate
    from ehrdiff.experiments.runner import distinct_row_rate
    from ehrdiff.experiments.tables import summarize

    data = args.experiment / "data"
    train_rows, test_rows = read_table(data / "train.parquet"), read_table(data / "test.parquet")
    groups = {OFFICIAL: sorted(args.official.glob("seed-*/synthetic.parquet")),
              OURS: sorted((args.experiment / "runs" / OURS).glob("seed-*/synthetic.parquet"))}
    if not groups[OFFICIAL] or not groups[OURS]:
        sys.exit(f"need synthetic.parquet under {args.official}/seed-* and {args.experiment}/runs/{OURS}/seed-*")
    sets = {f"{group}/{path.parent.name}": read_table(path) for group, paths in groups.items() for path in paths}
    report = evaluate(train_rows, test_rows, sets, seed=0, threads=args.threads, figures=False)
    for name, table in sets.items():
        report.metrics[name]["distinct_row_rate"] = distinct_row_rate(table)
    rows = [(key, title, quoted) for key, title, quoted, _ in ROWS if key in report.metrics[next(iter(sets))]]
    keys = [key for key, _, _ in rows]
    summary = {group: {k: summarize(report.metrics[f"{group}/{p.parent.name}"].get(k) for p in paths)
                       for k in keys} for group, paths in groups.items()}
    official_runs = [json.loads((p.parent / "run.json").read_text()) for p in groups[OFFICIAL]]
    ours_runs = [json.loads((p.parent / "run.json").read_text()) for p in groups[OURS]]
    out = {"command": " ".join(sys.argv), "experiment": str(args.experiment), "summary": summary,
           "per_seed": {name: {k: report.metrics[name].get(k) for k in keys} for name in sets},
           "official_runs": official_runs}
    (ROOT / "out").mkdir(exist_ok=True)
    (ROOT / "out" / "official_code.json").write_text(json.dumps(out, indent=2) + "\n")

    text = compare_markdown(args, (train_rows, test_rows), groups, (official_runs, ours_runs), rows, summary)
    (ROOT / "results" / "official_code.md").write_text(text + "\n")
    print(text)


def compare_markdown(args: argparse.Namespace, split: tuple, groups: dict, runs: tuple[list, list], rows: list,
                     summary: dict) -> str:
    from bench_core import machine
    from default_vs_paper import METRICS, cell

    train_rows, test_rows = split
    official_runs, ours_runs = runs
    ours = ours_runs[0]["key"]["settings"]
    n_off, n_ours = len(groups[OFFICIAL]), len(groups[OURS])
    steps = sorted({r["steps"] for r in official_runs})
    lines = ["# The official EHRDiff code and ehrdiff-paper on one split, scored by one evaluation", "",
             f"Command: `.venv/bin/python benchmarks/official_code.py compare --experiment {args.experiment} "
             f"--official {args.official}` (the training commands are in the script's docstring).", "",
             f"UCI diabetes, patient level: {train_rows.n_rows:,} training and {test_rows.n_rows:,} held-out patients "
             f"(80/20 patient split, seed 0), {len(train_rows.feature_columns)} columns (codes and the readmission "
             f"label). The official code: {n_off} seed(s), {', '.join(f'{s:,}' for s in steps)} optimiser steps "
             f"at batch 1,024 ({official_runs[0]['epochs']} epochs), warm-up {official_runs[0]['warmup_steps']}; "
             f"ehrdiff-paper: {n_ours} "
             f"seed(s), {ours['steps']:,} steps at batch {ours['batch_size']:,}, warm-up {ours['warmup_steps']}. "
             "Both sampled at the training set's size and "
             "rounded at 0.5; one `evaluate` call (evaluation seed 0) scores every set against the same real rows. "
             f"Mean ± standard deviation over seeds (sample std). Machine: {machine()['cpu']}, {os.cpu_count()} cores, "
             "one torch thread per training run.", "",
             f"| metric | best | {OFFICIAL} | {OURS} | ours - official (in standard errors) "
             "| per seed: official / ours | official code, FINDINGS.md's protocol |", "|---|---|---|---|---|---|---|"]
    rules = {k: rule for k, _, rule in METRICS}
    for key, title, quoted in rows:
        official, mine = summary[OFFICIAL][key], summary[OURS][key]
        difference = "-" if None in (official["mean"], mine["mean"]) else f"{mine['mean'] - official['mean']:+.3f}"
        error = standard_error(official, mine)
        if error:
            difference += f" ({(mine['mean'] - official['mean']) / error:+.1f} SE)"
        per_seed = " / ".join(", ".join("-" if v is None else f"{v:.3f}" for v in summary[g][key]["values"])
                              for g in (OFFICIAL, OURS))
        lines.append(f"| {title} | {rules.get(key, '-')} | {cell(official)} | {cell(mine)} | {difference} | "
                     f"{per_seed} | {quoted} |")
    lines += ["", "Training seconds per seed (one thread each, other jobs sharing the two cores): official code "
              + ", ".join(f"{r['train_seconds']:,.0f}" for r in official_runs) + "; ehrdiff-paper "
              + ", ".join(f"{r['train_seconds']:,.0f}" for r in ours_runs) + ".", "", READING]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and sample the official code on an experiment folder's split")
    t.add_argument("--official-repo", type=Path, required=True)
    t.add_argument("--experiment", type=Path, required=True, help="an `ehrdiff experiment paper` folder (data/)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=89, help="89 epochs of 56 batches: 4,984 steps")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--checkpoint-every", type=int, default=10, metavar="EPOCHS",
                   help="save a checkpoint every this many epochs; a rerun of the same command resumes from it")
    t.add_argument("--sample-rows", type=int, help="rows to sample (default: as many as the training rows)")
    t.add_argument("-o", "--output", type=Path, default=Path("runs/official-uci"))
    c = sub.add_parser("compare", help="score the official runs and ehrdiff-paper's in one evaluation")
    c.add_argument("--experiment", type=Path, required=True)
    c.add_argument("--official", type=Path, default=Path("runs/official-uci"))
    c.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    train(args) if args.command == "train" else compare(args)


if __name__ == "__main__":
    main()
