"""Core speed and memory of EHRDiff's paper-mimic model, in one run:

1. the fp32 matrix-multiply rate of this machine for the model's layer shapes (forward and both backward products
   of every linear layer at batch 1,024): the ceiling a training step can reach;
2. training optimiser steps/s at d = 1,782 and d = 881, batch 1,024 (the real loop: sampling of rows, noise and
   sigma, EDM loss, backward, fused AdamW, EMA), and the fraction of the ceiling it reaches: model FLOPs per step
   (counted analytically: 2 * in * out per row for each linear layer forward, twice that backward) divided by the
   step time, over the matmul rate measured just before and after; the same for a plain PyTorch loop of the same
   model and step (the yardstick, in the same run);
3. sampling rows/s with the 32-level Heun sampler (63 network calls);
4. peak memory (RSS) of a fresh process fitting EHRDiff on a 71,518 x 881 random sparse binary matrix (4% ones).

    .venv/bin/python benchmarks/bench_core.py            # about 5 minutes on 2 CPU cores (machine otherwise idle)
    .venv/bin/python benchmarks/bench_core.py --quick    # a smoke run (seconds, numbers meaningless)
    .venv/bin/python benchmarks/bench_core.py --threads 1

Writes benchmarks/out/core.json and benchmarks/results/core.md (core-Nthread.* with --threads N).
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
from ehrdiff.models.ehrdiff import EHRDiff, edm_row_loss, build_denoiser
from ehrdiff.models.ehrdiff import make_config
from ehrdiff.training import TrainSettings, train

ROOT = Path(__file__).resolve().parent
BATCH = 1024


def linear_shapes(d: int) -> list[tuple[int, int]]:
    net = build_denoiser(make_config("paper-mimic"), d).net
    return [(i, o) for _, i, o in net.linear_shapes()]


def flops_per_step(d: int, batch: int = BATCH) -> float:
    """Forward 2 * in * out per row and linear layer; backward twice the forward."""
    return 3 * 2 * batch * sum(i * o for i, o in linear_shapes(d))


class MatmulCeiling:
    """The fp32 matrix-multiply rate for exactly the model's products at batch rows: forward, grad-input and
    grad-weight of every linear layer, on random operands of those shapes."""

    def __init__(self, d: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.ops = [(torch.randn(BATCH, i, generator=g), torch.randn(o, i, generator=g),
                     torch.randn(BATCH, o, generator=g)) for i, o in linear_shapes(d)]
        self.flops = flops_per_step(d)
        self._once()

    def _once(self) -> None:
        for x, w, gy in self.ops:
            F.linear(x, w)            # forward      (B x in) (in x out)
            gy @ w                    # grad input   (B x out) (out x in)
            gy.t() @ x                # grad weight  (out x B) (B x in)

    def measure(self, seconds: float) -> float:
        """GFLOP/s: the median over repetitions that fill ``seconds`` (at least 3)."""
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds or len(times) < 3:
            t0 = time.perf_counter()
            self._once()
            times.append(time.perf_counter() - t0)
        return self.flops / float(np.median(times)) / 1e9


def sparse_binary(rows: int, d: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((rows, d), dtype=np.float32) < density).astype(np.uint8)


def train_rate(d: int, windows: int, log_every: int, ceiling_s: float) -> tuple[dict, EHRDiff]:
    """Train with the real loop and measure the matmul ceiling between its logging windows.

    The host's speed drifts by up to 2x within minutes (other tenants), so training and ceiling are measured in
    alternating short windows and each training window is compared with the ceiling measured just before and just
    after it; the verdict is the median of these per-window fractions."""
    cfg = make_config("paper-mimic", seed=0)
    data = torch.from_numpy(sparse_binary(8192, d, 0.04, seed=d).astype(np.float32))
    denoiser = build_denoiser(cfg, d)
    ceiling = MatmulCeiling(d)
    ceilings = [ceiling.measure(ceiling_s)]
    ends: list[tuple[float, float]] = []          # (end of a training window, start of the next one)

    def between_windows(done: int) -> None:
        end = time.perf_counter()
        ceilings.append(ceiling.measure(ceiling_s))
        ends.append((end, time.perf_counter()))

    steps = (windows + 1) * log_every             # the first window (warm-up) is not counted
    settings = TrainSettings(steps=steps, batch_size=BATCH, lr=cfg.lr, warmup_steps=10, seed=0, log_every=log_every)
    result = train(denoiser, data, edm_row_loss(EDMLoss(cfg.sigma_data, cfg.P_mean, cfg.P_std)), settings,
                   progress=False, on_log=between_windows)
    rates = [log_every / (end - prev_start) for (_, prev_start), (end, _) in zip(ends, ends[1:])]
    around = [(before + after) / 2 for before, after in zip(ceilings[1:], ceilings[2:])]
    fractions = [r * ceiling.flops / 1e9 / c for r, c in zip(rates, around)]
    denoiser.load_state_dict(result.ema_state)
    model = EHRDiff("paper-mimic")                   # a fitted-looking model for the sampling measurement
    model.denoiser_, model.n_features_ = denoiser.eval(), d
    q = lambda values, p: float(np.percentile(values, p))      # noqa: E731
    summary = {"windows": len(rates), "steps_per_window": log_every, "ceiling_seconds_per_window": ceiling_s,
               "train_steps_per_s": q(rates, 50), "matmul_gflops": q(around, 50),
               "matmul_gflops_min_max": [min(ceilings), max(ceilings)],
               "fraction_of_ceiling": q(fractions, 50),
               "fraction_quartiles": [q(fractions, 25), q(fractions, 75)],
               "window_fractions": fractions}
    return summary, model


def plain_rate(d: int, windows: int, log_every: int, ceiling_s: float) -> dict:
    """The same model and step written plainly: autograd through the network's reference forward, the EDM loss as
    the paper writes it (lambda(sigma) times the squared error of D), PyTorch's default AdamW and an EMA loop over
    the parameters. This is what a straightforward implementation (such as the official code) runs; measured with
    the same alternating windows, it is the yardstick for the real loop's rewrites in this same run."""
    from ehrdiff.diffusion.preconditioning import c_in, c_noise, c_out, c_skip, loss_weight

    cfg = make_config("paper-mimic", seed=0)
    net = build_denoiser(cfg, d).net
    params = list(net.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    data = torch.from_numpy(sparse_binary(8192, d, 0.04, seed=d).astype(np.float32))
    g, sd = torch.Generator().manual_seed(0), cfg.sigma_data

    def step() -> None:
        x = data[torch.randint(len(data), (BATCH,), generator=g)]
        sigma = torch.exp(cfg.P_mean + cfg.P_std * torch.randn(BATCH, 1, generator=g))
        noisy = x + sigma * torch.randn(x.shape, generator=g)
        f = net.reference_forward(c_in(sigma, sd) * noisy, c_noise(sigma).reshape(-1))
        denoised = c_skip(sigma, sd) * noisy + c_out(sigma, sd) * f
        loss = (loss_weight(sigma, sd) * (denoised - x) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(0.999).add_(p, alpha=0.001)

    ceiling = MatmulCeiling(d)
    fractions = []
    for window in range(windows + 1):                  # the first window warms up and is not counted
        before = ceiling.measure(ceiling_s)
        start = time.perf_counter()
        for _ in range(log_every):
            step()
        rate = log_every / (time.perf_counter() - start)
        after = ceiling.measure(ceiling_s)
        if window:
            fractions.append(rate * ceiling.flops / 1e9 / ((before + after) / 2))
    return {"windows": windows, "fraction_of_ceiling": float(np.median(fractions)),
            "fraction_quartiles": [float(np.percentile(fractions, 25)), float(np.percentile(fractions, 75))]}


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


def sizes(quick: bool) -> tuple[int, int, float, int, int, int]:
    """Windows, steps per window, ceiling seconds around each, sampled rows, memory-test rows and steps."""
    windows, log_every, ceiling_s = (3, 2, 0.2) if quick else (20, 5, 1.0)
    sample_rows = 32 if quick else 1024
    memory_rows, memory_steps = (2000, 3) if quick else (71_518, 20)
    return windows, log_every, ceiling_s, sample_rows, memory_rows, memory_steps


def measure(q: bool) -> dict:
    """Training rate against the matrix-multiply ceiling, the plain loop, sampling rate (two widths) and peak memory."""
    windows, log_every, ceiling_s, sample_rows, memory_rows, memory_steps = sizes(q)
    load_before = os.getloadavg()
    results: dict = {"machine": machine(), "batch_size": BATCH, "widths": {}, "quick": q}
    for d in (1782, 881):
        summary, model = train_rate(d, windows, log_every, ceiling_s)
        results["widths"][str(d)] = {
            **summary, "plain_loop": plain_rate(d, max(2, windows // 2), log_every, ceiling_s),
            "gflop_per_step": flops_per_step(d) / 1e9,
            "train_gflops": summary["train_steps_per_s"] * flops_per_step(d) / 1e9,
            "sample_rows_per_s": sample_rate(model, sample_rows),
            "network_calls_per_sample": 2 * model.config.num_noise_levels - 1}
        print(f"d={d}: done", file=sys.stderr, flush=True)
    results["memory"] = {"rows": memory_rows, "d": 881, "steps": memory_steps,
                         **peak_memory(memory_rows, 881, memory_steps)}
    results["load_average_before_after"] = [load_before[0], os.getloadavg()[0]]
    results["this_process_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return results


def speed_table(results: dict) -> str:
    header = ("| d | matmul GFLOP/s (median; min-max) | train steps/s | GFLOP/step | train GFLOP/s "
              "| fraction of ceiling (median; quartiles) | plain PyTorch loop: fraction (quartiles) "
              "| sample rows/s (63 calls) |")
    lines = [header, "|" + "---|" * 8]
    for d, r in results["widths"].items():
        lo, hi = r["matmul_gflops_min_max"]
        f25, f75 = r["fraction_quartiles"]
        plain = r["plain_loop"]
        p25, p75 = plain["fraction_quartiles"]
        lines.append(f"| {d} | {r['matmul_gflops']:.1f} ({lo:.0f}-{hi:.0f}) | {r['train_steps_per_s']:.2f} "
                     f"| {r['gflop_per_step']:.1f} | {r['train_gflops']:.1f} | **{r['fraction_of_ceiling']:.2f}** "
                     f"({f25:.2f}-{f75:.2f}) | {plain['fraction_of_ceiling']:.2f} ({p25:.2f}-{p75:.2f}) "
                     f"| {r['sample_rows_per_s']:.0f} |")
    return "\n".join(lines)


def markdown(results: dict, args: argparse.Namespace, table: str) -> str:
    q = args.quick
    windows, log_every, ceiling_s = sizes(q)[:3]
    suffix = f"-{args.threads}thread" if args.threads else ""
    command = "python benchmarks/bench_core.py" + (" --quick" if q else "") + (
        f" --threads {args.threads}" if args.threads else "")
    mem = results["memory"]
    m = results["machine"]
    # the load after the run includes this benchmark's own threads: only the load before it tells of other jobs
    busy = results["load_average_before_after"][0] > 0.75 * (m["cores"] or 1)
    warning = ("\n**The machine was busy with other jobs during this run "
               "(load average before the run near the core count): "
               "the rates below are depressed and noisy; with several threads per process, oversubscription hurts "
               "the many short parallel operations of a training step more than the long matrix products of the "
               "ceiling. Re-run on an idle machine for representative numbers.**\n" if busy else "")
    md = f"""# Core speed and memory (EHRDiff, paper-mimic network)

Command: `{command}` (from the repository root; writes benchmarks/out/core{suffix}.json and this file)

Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), Python {m['python']}.
Load average before / after the run: {results['load_average_before_after'][0]:.1f} / \
{results['load_average_before_after'][1]:.1f}
(the load before the run shows other jobs; the load after includes this benchmark's own threads).
{warning}
Batch {BATCH}. The ceiling is the fp32 matrix-multiply rate of this machine for exactly the model's products
(forward, grad-input and grad-weight of every linear layer, median over repetitions). Because this host's speed drifts
(the ceiling alone moved between 105 and 220 GFLOP/s across runs of one day), ceiling and training are measured in
alternation: {windows} windows of {log_every} steps of the real training loop (a warm-up window before them is not
counted), with {ceiling_s:g} s of ceiling measurement before and after each. Each window's fraction is
(its steps/s x FLOPs/step) / (mean of the ceilings just before and after it); the table gives the median fraction
and its quartiles over the windows. FLOPs per step are counted analytically (forward 2 x in x out per row and layer,
backward twice that). The loop skips two products the count includes (the input
gradients of the first network layer and of the embedding's first layer), so it can come out slightly above 1.
The plain PyTorch loop is the same model and step written straightforwardly (autograd through the network, the EDM
loss as the paper writes it, PyTorch's default AdamW, an EMA loop; `plain_rate` in the script), measured the same way
in {max(2, windows // 2)} windows right after the real loop: the yardstick for what the real loop's rewrites gain.
Sampling: 32 noise levels, Heun, 63 network calls; the noise embedding is computed once per call for the whole batch.

{table}

Peak memory (RSS) of a fresh process fitting EHRDiff(paper-mimic) for {mem['steps']} steps on a \
{mem['rows']:,} x {mem['d']}
random binary matrix ({mem['density']:.1%} ones, {mem['input_gb']:.2f} GB as uint8): **{mem['peak_rss_gb']:.2f} GB**
(fit {mem['fit_seconds']:.0f} s, including validation and encoding).

For reference (FINDINGS.md): the official EHRDiff code on the project's 2-core machine of that time runs 3.47
steps/s at d = 882, batch 1,024 (29.7 GFLOP per step, about 103 GFLOP/s) and samples 170 rows/s.
"""
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--threads", type=int, help="torch threads (default: PyTorch's choice, usually all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = measure(args.quick)
    suffix = f"-{args.threads}thread" if args.threads else ""
    mem = results["memory"]
    table = speed_table(results)
    print(table)
    print(f"peak RSS fitting {mem['rows']:,} x {mem['d']} ({mem['density']:.1%} ones, {mem['steps']} steps): "
          f"{mem['peak_rss_gb']:.2f} GB (fit {mem['fit_seconds']:.0f} s)")
    (ROOT / "out").mkdir(exist_ok=True)
    md = markdown(results, args, table)
    (ROOT / "out" / f"core{suffix}.json").write_text(json.dumps(results, indent=2))
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / f"core{suffix}.md").write_text(md)


if __name__ == "__main__":
    main()
