"""Sampling speed of the default model (16 levels, 31 network calls, Bernoulli draw and count matching) against the
paper preset's (paper-mimic: 32 levels, 63 network calls, rounding), in one run, on UCI diabetes's training table.

    .venv/bin/python benchmarks/bench_sampling.py --train DATA/train.parquet [--model RUN | --checkpoint CKPT]
        [--rows 8192] [--rounds 3] [--threads 1]

Both models are fitted for one step on the table (encoder, code histogram, network shapes); with --model the default
model is instead a trained one (`ehrdiff train DATA/train.parquet -o RUN`), with --checkpoint it takes the EMA weights
of a default-budget training run's checkpoint: its own histogram of codes per row decides how many rows count
matching starts, and its predicted counts how many of them it finishes, so it must be a trained model's. The paper
model's sampling cost does not depend on its weights. Each round samples --rows rows with each model, alternating;
rows per second is the median over rounds. Count matching is checked: the kept rows' codes per row should be the
training histogram apportioned to --rows, or the number of rows off it is reported.
Writes benchmarks/results/sampling.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ehrdiff.data.io import read_table
from ehrdiff.diffusion.count_matching import apportion
from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.training import read_checkpoint

ROOT = Path(__file__).resolve().parent


def fitted(preset: str, table, checkpoint: Path | None) -> EHRDiff:
    model = EHRDiff(preset, steps=1, batch_size=256).fit(table, progress=False)
    if checkpoint is not None:
        meta, tensors = read_checkpoint(checkpoint)
        ema = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
        state = model.denoiser_.state_dict()
        state.update(ema)
        model.denoiser_.load_state_dict(state)
        model.checkpoint_step = meta["step"]
    return model


class Counting:
    """Counts the rows the sampler starts (count matching starts more than it keeps) and the rows that pass through
    the network (one per row and call: screened candidates stop part-way)."""

    def __init__(self, model: EHRDiff) -> None:
        self.rows = self.network_rows = 0
        for name in ("_sample_rows", "_sample_candidates"):
            setattr(model, name, self.counted(getattr(model, name)))
        forward = model.denoiser_.forward

        def counted_forward(x, *args, **kwargs):
            self.network_rows += x.shape[0]
            return forward(x, *args, **kwargs)
        model.denoiser_.forward = counted_forward

    def counted(self, inner):
        def call(n, *args, **kwargs):
            self.rows += n
            return inner(n, *args, **kwargs)
        return call

    def reset(self) -> None:
        self.rows = self.network_rows = 0


def unscreened_rounds(model: EHRDiff):
    """Count matching as before screening: every candidate runs the whole trajectory."""
    whole = model._sample_rows

    def rounds(n, seed, label, guidance, top, progress=False, desc="sampling"):
        return whole(n, seed, label, guidance, progress, desc)
    return rounds


def shared_rows(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the rows of ``a`` that ``b`` holds too (as a multiset, to float32 equality)."""
    from collections import Counter

    pool = Counter(row.tobytes() for row in np.ascontiguousarray(b, dtype=np.float32))
    hits = 0
    for row in np.ascontiguousarray(a, dtype=np.float32):
        key = row.tobytes()
        if pool[key] > 0:
            pool[key] -= 1
            hits += 1
    return hits / len(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    table = read_table(args.train)
    default = EHRDiff.load(args.model) if args.model else fitted("default", table, args.checkpoint)
    unscreened = EHRDiff.load(args.model) if args.model else fitted("default", table, args.checkpoint)
    unscreened._sample_candidates = unscreened_rounds(unscreened)
    models = {"default": default, "default, unscreened": unscreened,
              "paper-mimic": fitted("paper-mimic", table, None)}
    counters = {name: Counting(m) for name, m in models.items()}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    generated: dict[str, list[int]] = {name: [] for name in models}
    calls: dict[str, list[int]] = {name: [] for name in models}
    off: dict[str, list[int]] = {name: [] for name in models if name != "paper-mimic"}
    same: list[float] = []          # share of the screened sample's rows found in the unscreened one (same seed)
    for r in range(args.rounds):
        samples = {}
        for name, model in models.items():
            counters[name].reset()
            start = time.perf_counter()
            samples[name] = matrix = model.sample_matrix(args.rows, seed=r)
            seconds[name].append(time.perf_counter() - start)
            generated[name].append(counters[name].rows)
            calls[name].append(counters[name].network_rows)
            if name in off:
                codes = model.encoder_.code_columns()
                k = (matrix[:, codes] >= 0.5).sum(axis=1)
                want = apportion(np.asarray(model.code_histograms_["all"]), args.rows)
                got = np.bincount(k, minlength=max(len(want), k.max() + 1))
                got[:len(want)] -= want
                off[name].append(int(np.abs(got).sum() // 2))
        same.append(shared_rows(samples["default"], samples["default, unscreened"]))
    rate = {name: args.rows / statistics.median(s) for name, s in seconds.items()}
    ckpt = (f"the EMA weights of {args.checkpoint} (step {models['default'].checkpoint_step:,})"
            if args.checkpoint else f"the weights of {args.model} (trained {default.train_steps_:,} steps, those of "
            f"step {(default.stopping_ or {}).get('chosen_step', default.train_steps_):,} kept)" if args.model
            else "weights after one step")
    lines = ["# Sampling speed: the default model (count matching) against the paper preset", "",
             f"Command: `{shlex.join(['python', 'benchmarks/bench_sampling.py', *sys.argv[1:]])}`. Machine: "
             f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other jobs, {args.threads} torch "
             f"thread(s), torch {torch.__version__}; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} "
             f"after. Table: {args.train} ({table.n_rows:,} rows, {default.n_features_} encoded columns); "
             f"the default model has {ckpt}. {args.rows:,} rows per sample, {args.rounds} rounds, each sampling with "
             "every model in turn (seed = round). \"default, unscreened\" is the same model with count matching as "
             "before screening (every candidate runs the whole trajectory). Rows whose number of codes is not where "
             f"the training histogram apportioned to {args.rows:,} rows puts it (0: exact; count matching starts at "
             "most 4 times the rows and takes rows of the nearest count for a count still short): "
             + "; ".join(f"{name} {', '.join(map(str, v))}" for name, v in off.items()) + " (each round). Rows of "
             "the screened sample that the unscreened one with the same seed holds too: "
             f"{', '.join(f'{x:.2%}' for x in same)} (each round).",
             "",
             "| model | network calls per row started | rows started per row kept | network calls per row kept "
             "| seconds per sample (each round) | rows per second (median) |", "|---|---|---|---|---|---|"]
    for name, model in models.items():
        full = 2 * model.config.num_noise_levels - 1
        factor = statistics.median(g / args.rows for g in generated[name])
        per_kept = statistics.median(c / args.rows for c in calls[name])
        lines.append(f"| {name} | {full} (screened: fewer) | {factor:.2f} | {per_kept:.1f} | "
                     f"{', '.join(f'{s:.1f}' for s in seconds[name])} | {rate[name]:,.0f} |"
                     if name == "default" else
                     f"| {name} | {full} | {factor:.2f} | {per_kept:.1f} | "
                     f"{', '.join(f'{s:.1f}' for s in seconds[name])} | {rate[name]:,.0f} |")
    ratio = rate["default"] / rate["paper-mimic"]
    lines += ["", f"The default model samples {ratio:.2f} times the paper preset's rows per second "
              f"({rate['default, unscreened'] / rate['paper-mimic']:.2f} times without screening).", ""]
    out = ROOT / "results" / "sampling.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
