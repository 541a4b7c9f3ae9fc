"""Core speed and memory of EHRDiff's paper-mimic model, in one run:

1. the fp32 matrix-multiply rate of this machine for the model's layer shapes (forward and both backward products
   of every linear layer at batch 1,024): the ceiling a training step can reach;
2. training optimiser steps/s at d = 1,782 and d = 881, batch 1,024 (the real loop: sampling of rows, noise and
   sigma, EDM loss, backward, fused AdamW, EMA), and the fraction of the ceiling it reaches: model FLOPs per step
   (counted analytically: 2 * in * out per row for each linear layer forward, twice that backward) divided by the
   step time, over the matmul rate measured just before and after;
3. sampling rows/s with the 32-level Heun sampler (63 network calls);
4. peak memory (RSS) of a fresh process fitting EHRDiff on a 71,518 x 881 random sparse binary matrix (4% ones).

    .venv/bin/python benchmarks/bench_core.py            # about 3-5 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_core.py --quick    # a smoke run (seconds, numbers meaningless)
    .venv/bin/python benchmarks/bench_core.py --threads 1

Writes benchmarks/out/core.json and benchmarks/results/core.md (core-1thread.* with --threads 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ehrdiff.diffusion import EDMLoss
from ehrdiff.models.ehrdiff import EHRDiff, _edm_row_loss, build_denoiser
from ehrdiff.presets import make_config
from ehrdiff.training import TrainSettings, train

ROOT = Path(__file__).resolve().parent
BATCH = 1024


def linear_shapes(d: int) -> list[tuple[int, int]]:
    net = build_denoiser(make_config("paper-mimic"), d).net
    return [(i, o) for _, i, o in net.linear_shapes()]


def flops_per_step(d: int, batch: int = BATCH) -> float:
    """Forward 2 * in * out per row and linear layer; backward twice the forward."""
    return 3 * 2 * batch * sum(i * o for i, o in linear_shapes(d))


def matmul_rate(d: int, seconds: float) -> tuple[float, float]:
    """GFLOP/s of the forward and backward matrix products of every linear layer (batch rows), fp32."""
    g = torch.Generator().manual_seed(0)
    ops = []
    for i, o in linear_shapes(d):
        x, w, gy = torch.randn(BATCH, i, generator=g), torch.randn(o, i, generator=g), torch.randn(BATCH, o, generator=g)
        ops.append((x, w, gy))

    def once():
        for x, w, gy in ops:
            F.linear(x, w)            # forward      (B x in) (in x out)
            gy @ w                    # grad input   (B x out) (out x in)
            gy.t() @ x                # grad weight  (out x B) (B x in)

    once()
    total = 3 * 2 * BATCH * sum(i * o for i, o in linear_shapes(d))
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return total / float(np.median(times)) / 1e9, total / min(times) / 1e9      # median, best


def sparse_binary(rows: int, d: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((rows, d), dtype=np.float32) < density).astype(np.uint8)


def train_rate(d: int, steps: int, log_every: int) -> tuple[float, float, EHRDiff]:
    cfg = make_config("paper-mimic", seed=0)
    data = torch.from_numpy(sparse_binary(8192, d, 0.04, seed=d).astype(np.float32))
    denoiser = build_denoiser(cfg, d)
    settings = TrainSettings(steps=steps, batch_size=BATCH, lr=cfg.lr, warmup_steps=10, seed=0, log_every=log_every)
    result = train(denoiser, data, _edm_row_loss(EDMLoss(cfg.sigma_data, cfg.P_mean, cfg.P_std)), settings,
                   progress=False)
    denoiser.load_state_dict(result.ema_state)
    model = EHRDiff("paper-mimic")                   # a fitted-looking model for the sampling measurement
    model.denoiser_, model.n_features_ = denoiser.eval(), d
    # median over logging windows (the first one, with warm-up, skipped): robust to bursts of load from other jobs
    windows = [(s1 - s0) / (t1 - t0) for (s0, t0), (s1, t1) in zip(result.timings[1:], result.timings[2:])]
    return float(np.median(windows)), max(windows), model


def sample_rate(model: EHRDiff, rows: int) -> float:
    model.sample_matrix(8, seed=0)                   # warm-up
    start = time.perf_counter()
    model.sample_matrix(rows, seed=1)
    return rows / (time.perf_counter() - start)


MEMORY_CHILD = r"""
import json, resource, sys, time
import numpy as np
from ehrdiff.models.ehrdiff import EHRDiff
rows, d, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
matrix = (np.random.default_rng(0).random((rows, d), dtype=np.float32) < 0.04).astype(np.uint8)
start = time.perf_counter()
model = EHRDiff("paper-mimic", steps=steps).fit(matrix, progress=False)
fit_s = time.perf_counter() - start
print(json.dumps({"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                  "fit_seconds": fit_s, "density": float(matrix.mean()), "input_gb": matrix.nbytes / 2 ** 30}))
"""


def peak_memory(rows: int, d: int, steps: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(rows), str(d), str(steps)], capture_output=True,
                          text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--threads", type=int, help="torch threads (default: PyTorch's choice, usually all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    train_steps, log_every, matmul_s = (8, 2, 0.5) if q else (45, 5, 4.0)
    sample_rows = 32 if q else 1024
    memory_rows, memory_steps = (2000, 3) if q else (71_518, 20)

    load_before = os.getloadavg()
    results: dict = {"machine": machine(), "batch_size": BATCH, "widths": {}, "quick": q}
    for d in (1782, 881):
        before, before_best = matmul_rate(d, matmul_s)
        steps_s, steps_s_best, model = train_rate(d, train_steps, log_every)
        after, after_best = matmul_rate(d, matmul_s)
        ceiling, ceiling_best = (before + after) / 2, max(before_best, after_best)
        flops = flops_per_step(d)
        achieved = steps_s * flops / 1e9
        results["widths"][str(d)] = {
            "matmul_gflops_before": before, "matmul_gflops_after": after, "matmul_gflops": ceiling,
            "train_steps_per_s": steps_s, "gflop_per_step": flops / 1e9, "train_gflops": achieved,
            "fraction_of_ceiling": achieved / ceiling,
            "best_matmul_gflops": ceiling_best, "best_train_steps_per_s": steps_s_best,
            "best_fraction_of_ceiling": steps_s_best * flops / 1e9 / ceiling_best,
            "sample_rows_per_s": sample_rate(model, sample_rows),
            "network_calls_per_sample": 2 * model.config.num_noise_levels - 1}
        print(f"d={d}: done", file=sys.stderr, flush=True)
    results["memory"] = {"rows": memory_rows, "d": 881, "steps": memory_steps,
                         **peak_memory(memory_rows, 881, memory_steps)}
    results["load_average_before_after"] = [load_before[0], os.getloadavg()[0]]
    results["this_process_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20

    suffix = f"-{args.threads}thread" if args.threads else ""
    command = "python benchmarks/bench_core.py" + (" --quick" if q else "") + (
        f" --threads {args.threads}" if args.threads else "")
    header = ("| d | matmul GFLOP/s (before / after) | train steps/s | GFLOP/step | train GFLOP/s | fraction of ceiling "
              "| best-case fraction | sample rows/s (63 calls) |")
    lines = [header, "|" + "---|" * 8]
    for d, r in results["widths"].items():
        lines.append(f"| {d} | {r['matmul_gflops']:.1f} ({r['matmul_gflops_before']:.1f} / "
                     f"{r['matmul_gflops_after']:.1f}) | {r['train_steps_per_s']:.2f} | {r['gflop_per_step']:.1f} "
                     f"| {r['train_gflops']:.1f} | {r['fraction_of_ceiling']:.2f} | {r['best_fraction_of_ceiling']:.2f} "
                     f"| {r['sample_rows_per_s']:.0f} |")
    mem = results["memory"]
    table = "\n".join(lines)
    print(table)
    print(f"peak RSS fitting {mem['rows']:,} x {mem['d']} ({mem['density']:.1%} ones, {mem['steps']} steps): "
          f"{mem['peak_rss_gb']:.2f} GB (fit {mem['fit_seconds']:.0f} s)")

    (ROOT / "out").mkdir(exist_ok=True)
    m = results["machine"]
    busy = max(results["load_average_before_after"]) > 0.75 * (m["cores"] or 1)
    warning = ("\n**The machine was busy with other jobs during this run (load average above the core count): "
               "the rates below are depressed and noisy; with several threads per process, oversubscription hurts "
               "the many short parallel operations of a training step more than the long matrix products of the "
               "ceiling. Re-run on an idle machine for representative numbers.**\n" if busy else "")
    md = f"""# Core speed and memory (EHRDiff, paper-mimic network)

Command: `{command}` (from the repository root; writes benchmarks/out/core{suffix}.json and this file)

Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), Python {m['python']}.
Load average before / after the run: {results['load_average_before_after'][0]:.1f} / {results['load_average_before_after'][1]:.1f}
(other jobs shared the CPU when the load is above the core count, which lowers both the ceiling and the measured rates).
{warning}
Batch {BATCH}. Training speed is the median over 5-step windows of the real training loop (first window skipped);
the ceiling is the median over repetitions of the products. "Best-case fraction" uses the fastest window and the
fastest repetition instead (each the least disturbed by other jobs). The ceiling is the fp32 matrix-multiply rate of this machine for exactly the model's products (forward,
grad-input and grad-weight of every linear layer), measured just before and after training at the same width.
FLOPs per step are counted analytically (forward 2 x in x out per row and layer, backward twice that);
the fraction is (steps/s x FLOPs/step) / ceiling. The loop skips two products the count includes (the input
gradients of the first network layer and of the embedding's first layer), so it can come out slightly above 1.
Sampling: 32 noise levels, Heun, 63 network calls; the noise embedding is computed once per call for the whole batch.

{table}

Peak memory (RSS) of a fresh process fitting EHRDiff(paper-mimic) for {mem['steps']} steps on a {mem['rows']:,} x {mem['d']}
random binary matrix ({mem['density']:.1%} ones, {mem['input_gb']:.2f} GB as uint8): **{mem['peak_rss_gb']:.2f} GB**
(fit {mem['fit_seconds']:.0f} s, including validation and encoding).

For reference (FINDINGS.md): the official EHRDiff code on this machine runs 3.47 steps/s at d = 882, batch 1,024
(29.7 GFLOP per step, about 103 GFLOP/s) and samples 170 rows/s.
"""
    (ROOT / "out" / f"core{suffix}.json").write_text(json.dumps(results, indent=2))
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / f"core{suffix}.md").write_text(md)


if __name__ == "__main__":
    main()
