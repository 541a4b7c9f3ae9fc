"""Sampling speed of the default model (16 levels, 31 network calls, Bernoulli draw and count matching) against the
paper preset's (paper-mimic: 32 levels, 63 network calls, rounding), in one run, on UCI diabetes's training table.

    .venv/bin/python benchmarks/bench_sampling.py --train DATA/train.parquet [--checkpoint RUN/checkpoints/...]
        [--rows 8192] [--rounds 3] [--threads 1]

Both models are fitted for one step on the table (encoder, code histogram, network shapes); with --checkpoint the
default model then takes the EMA weights of a default-budget training run's checkpoint, so that its own histogram of
codes per row, which decides how many rows count matching draws, is a trained model's. The paper model's sampling
cost does not depend on its weights. Each round samples --rows rows with each model, alternating; rows per second
is the median over rounds. Count matching is checked: the kept rows' codes per row should be the training histogram
apportioned to --rows, or the number of rows off it is reported. Writes benchmarks/results/sampling.md.
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
    """Counts the rows the sampler generates (count matching draws more than it keeps)."""

    def __init__(self, model: EHRDiff) -> None:
        self.rows, self.inner = 0, model._sample_rows
        model._sample_rows = self

    def __call__(self, n, *args, **kwargs):
        self.rows += n
        return self.inner(n, *args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    table = read_table(args.train)
    models = {"default": fitted("default", table, args.checkpoint), "paper-mimic": fitted("paper-mimic", table, None)}
    counters = {name: Counting(m) for name, m in models.items()}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    generated: dict[str, list[int]] = {name: [] for name in models}
    off: list[int] = []             # rows of the default's sample outside the training histogram's counts
    for r in range(args.rounds):
        for name, model in models.items():
            counters[name].rows = 0
            start = time.perf_counter()
            matrix = model.sample_matrix(args.rows, seed=r)
            seconds[name].append(time.perf_counter() - start)
            generated[name].append(counters[name].rows)
            if name == "default":
                codes = model.encoder_.code_columns()
                k = (matrix[:, codes] >= 0.5).sum(axis=1)
                want = apportion(np.asarray(model.code_histograms_["all"]), args.rows)
                got = np.bincount(k, minlength=max(len(want), k.max() + 1))
                got[:len(want)] -= want
                off.append(int(np.abs(got).sum() // 2))
    rate = {name: args.rows / statistics.median(s) for name, s in seconds.items()}
    ckpt = (f"the EMA weights of {args.checkpoint} (step {models['default'].checkpoint_step:,})"
            if args.checkpoint else "weights after one step")
    lines = ["# Sampling speed: the default model (count matching) against the paper preset", "",
             f"Command: `{shlex.join(['python', 'benchmarks/bench_sampling.py', *sys.argv[1:]])}`. Machine: "
             f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other jobs, {args.threads} torch "
             f"thread(s), torch {torch.__version__}; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} "
             f"after. Table: {args.train} ({table.n_rows:,} rows, {models['default'].n_features_} encoded columns); "
             f"the default model has {ckpt}. {args.rows:,} rows per sample, {args.rounds} rounds alternating the "
             "models. Rows of the default's sample whose number of codes is not where the training histogram "
             f"apportioned to {args.rows:,} rows puts it (0: exact; count matching leaves "
             f"the model's rarest counts, at most 0.25% of the rows, to rows of the nearest count, and stops at 4 "
             f"times the rows): {', '.join(map(str, off))} (each round).",
             "",
             "| model | network calls per generated row | rows generated per row kept | seconds per sample (each "
             "round) | rows per second (median) |", "|---|---|---|---|---|"]
    for name, model in models.items():
        calls = 2 * model.config.num_noise_levels - 1
        factor = statistics.median(g / args.rows for g in generated[name])
        lines.append(f"| {name} | {calls} | {factor:.2f} | {', '.join(f'{s:.1f}' for s in seconds[name])} | "
                     f"{rate[name]:,.0f} |")
    ratio = rate["default"] / rate["paper-mimic"]
    lines += ["", f"The default model samples {ratio:.2f} times the paper preset's rows per second.", ""]
    out = ROOT / "results" / "sampling.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
