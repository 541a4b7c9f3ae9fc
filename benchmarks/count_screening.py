"""When is a row's number of codes decided along the default sampler's trajectory? The evidence behind count
matching's screening (src/ehrdiff/diffusion/count_matching.py: SCREEN_SIGMA, SCREEN_CHANCE).

    .venv/bin/python benchmarks/count_screening.py --model RUN [--rows 4096] [--seed 0]

Integrates --rows latents of the trained default model RUN with its own sampler and schedule, and at every noise
level records the denoised estimate's code probabilities. Per level: the share of rows whose expected count (the sum
of the probabilities) rounds to the final count, and for levels at or below sigma 3, the shares of rows whose final
count gets a chance under 0.1% / 1% from those probabilities drawn independently (count_matching.count_chances).
Also the training histogram h(k) against the model's own q(k) (final counts before any selection); count
matching's factor is max h(k) / q(k). Writes benchmarks/results/count_screening.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from ehrdiff.diffusion.bernoulli import draw_discrete
from ehrdiff.diffusion.count_matching import SCREEN_CHANCE, SCREEN_SIGMA, count_chances
from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.models.ehrdiff.model import _Trajectory

ROOT = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    model = EHRDiff.load(args.model)
    run = _Trajectory(model, args.seed, None, 0.0)
    codes = model.encoder_.code_columns()
    h = np.asarray(model.code_histograms_["all"], dtype=np.float64)
    top = len(h) - 1
    x = run.start(args.rows, False, "", to_level=0)
    probabilities = []
    for i in range(len(run.levels) - 1):
        with torch.inference_mode():
            probabilities.append(run.denoise(x, run.sigmas[i])[:, codes].to("cpu", torch.float64).numpy())
        x = run.sampler(run.denoise, x, run.sigmas[i:i + 2] if run.levels[i + 1] > 0 else run.sigmas[i:], run.generator)
    final = draw_discrete(x.to("cpu", torch.float32).numpy(), model.encoder_.discrete_groups(),
                          np.random.default_rng(args.seed))
    k = final[:, codes].sum(axis=1).astype(int)
    q = np.bincount(k, minlength=top + 1)[:top + 1] / args.rows
    lines = ["# When a row's number of codes is decided along the default sampler's trajectory", "",
             f"Command: `{shlex.join(['python', 'benchmarks/count_screening.py', *sys.argv[1:]])}`. Machine: "
             f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other jobs, 1 torch thread, torch "
             f"{torch.__version__}; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after. Model: "
             f"{args.model} ({model.train_steps_:,} steps), {args.rows:,} rows, seed {args.seed}, sampler "
             f"{model.config.sampling.sampler} with {model.config.sampling.num_noise_levels} levels. Screening now: "
             f"the first level at or below sigma {SCREEN_SIGMA}, chance threshold {SCREEN_CHANCE:g}.", "",
             "| level | sigma | expected count rounds to the final one | final count's chance < 0.1% | "
             "final count's chance < 1% |", "|---|---|---|---|---|"]
    for i, p in enumerate(probabilities):
        line = f"| {i} | {run.levels[i]:.3f} | {np.mean(np.round(p.sum(axis=1)) == k):.4f} |"
        if run.levels[i] <= 3:
            chance = count_chances(p, top + 1)[np.arange(args.rows), np.minimum(k, top + 1)]
            line += f" {np.mean(chance < 1e-3):.4f} | {np.mean(chance < 1e-2):.4f} |"
        else:
            line += " | |"
        lines.append(line)
    shown = [j for j in range(top + 1) if h[j] / h.sum() >= 1e-3 or q[j] >= 1e-3]
    lines += ["", "Codes per row: the training histogram h(k) (share of rows) and the model's own q(k) before "
              "count matching (k with a share of at least 0.1% in either).", "",
              "| k | " + " | ".join(map(str, shown)) + " |", "|---" * (len(shown) + 1) + "|",
              "| h(k) | " + " | ".join(f"{h[j] / h.sum():.4f}" for j in shown) + " |",
              "| q(k) | " + " | ".join(f"{q[j]:.4f}" for j in shown) + " |", "",
              f"max h(k)/q(k) over the counts the model produced: "
              f"{max(h[j] / h.sum() / q[j] for j in range(top + 1) if q[j] > 0 and h[j] > 0):.2f}; training rows "
              f"with a count the model did not produce in {args.rows:,} rows: "
              f"{h[(q == 0) & (h > 0)].sum() / h.sum():.2%}.", ""]
    (ROOT / "results" / "count_screening.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
