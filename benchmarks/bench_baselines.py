"""The GAN baselines (medGAN, EMR-WGAN, CorGAN) and the references (marginals, resample), in one run:

1. training speed: seconds per generator update (including its critic / discriminator updates) and per
   autoencoder pre-training step, at the defaults' batch sizes, on a random sparse binary matrix shaped like UCI
   diabetes at patient level (881 codes + a label, 3.67 codes per row);
2. structure on block-correlated codes (tests/conftest.py ``block_binary_data(2000, 4, 5, seed)``), with the
   settings of tests/test_baselines.py: within-block correlation error, within-block co-occurrence error and
   correlation-matrix distance of 2,000 sampled rows against the training rows, for every model and seed;
3. instead, with ``--uci ZIP``: a sanity check on real codes. Each run of ``--uci-runs`` (``NAME`` or
   ``NAME:KEY=VALUE,...``, defaults otherwise) trains on ``--uci-rows`` random patients of UCI diabetes at patient
   level and samples as many rows: codes per patient, empty rows, distinct rows, prevalence Pearson / Spearman
   against the training rows, label rate. Not the paper's evaluation (that is the experiment runner's job).

    .venv/bin/python benchmarks/bench_baselines.py               # about 2-4 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_baselines.py --seeds 0 1 2  # structure over several training seeds
    .venv/bin/python benchmarks/bench_baselines.py --quick        # a smoke run (numbers meaningless)
    .venv/bin/python benchmarks/bench_baselines.py --uci /work/shared/data/uci-diabetes-130-us-hospitals/\
        dataset_diabetes.zip --uci-runs marginals emrwgan:steps=1000 emrwgan:steps=1000,lr=1e-4  # ~20 min

Torch runs on ``--threads`` threads (default 1: these networks are small, and on a shared 2-core machine a second
thread made them several times slower). Writes benchmarks/out/baselines.json and benchmarks/results/baselines.md
(parts 1-2) or benchmarks/out/baselines_uci.json and benchmarks/results/baselines_uci.md (part 3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))  # the structure metrics and settings are the tests' own

from ehrdiff.models import REGISTRY  # noqa: E402
from ehrdiff.models.gan_common import Batches  # noqa: E402
from test_baselines import GANS, LEARN, structure_scores  # noqa: E402
from conftest import block_binary_data  # noqa: E402


def step_seconds(name: str, width: int, rows: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame((rng.random((rows, width)) < 3.67 / width).astype(int),
                         columns=[f"c{i}" for i in range(width)])
    model = REGISTRY[name](steps=1, **({"ae_steps": 1} if name != "emrwgan" else {})).fit(frame, progress=False)
    for net in model.nets_.values():
        net.train()
    model._opts = model._optimizers()  # fit() drops its optimisers; time fresh ones
    batches = Batches(torch.from_numpy(frame.to_numpy(np.float32).copy()), model.config.batch_size,
                      model.config.noise_dim,
                      torch.Generator().manual_seed(0))
    out = {"batch_size": model.config.batch_size}
    for phase in (["autoencoder"] if name != "emrwgan" else []) + ["gan"]:
        model._train_step(phase, batches)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model._train_step(phase, batches)
        out[f"{phase}_s_per_step"] = (time.perf_counter() - start) / repeats
    defaults = REGISTRY[name].Config()
    out["default_steps"] = defaults.steps
    out["default_ae_steps"] = getattr(defaults, "ae_steps", 0)
    out["default_train_minutes"] = (out["gan_s_per_step"] * out["default_steps"]
                                    + out.get("autoencoder_s_per_step", 0) * out["default_ae_steps"]) / 60
    return out


def parse_run(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    return name, dict(item.split("=", 1) for item in rest.split(",") if item)


def uci_check(path: str, n_rows: int, runs: list[str]) -> dict:
    from scipy.stats import pearsonr, spearmanr

    from ehrdiff.data.sources.uci_diabetes import prepare_uci_diabetes

    table = prepare_uci_diabetes(path).table
    table = table.subset(np.random.default_rng(0).permutation(table.n_rows)[:n_rows])
    codes = [c for c in table.columns if table.kinds[c] == "binary"]
    real = table.frame[codes].to_numpy(float)

    def describe(x: np.ndarray) -> dict:
        per_row = x.sum(axis=1)
        return {"codes_per_patient": float(per_row.mean()), "empty_rows": float((per_row == 0).mean()),
                "distinct_rows": len({r.tobytes() for r in x}) / len(x)}

    out = {"rows": table.n_rows, "codes": len(codes), "real": {**describe(real),
                                                             "label_rate": float(table.frame["label"].mean())},
           "runs": []}
    for run in runs:
        name, settings = parse_run(run)
        start = time.perf_counter()
        model = REGISTRY[name](**settings).fit(table, progress=False)
        sample = model.sample(table.n_rows, seed=0)
        synthetic = sample[codes].to_numpy(float)
        p_real, p_syn = real.mean(axis=0), synthetic.mean(axis=0)
        out["runs"].append({"run": run, "seconds": time.perf_counter() - start, **describe(synthetic),
                            "prevalence_pearson": float(pearsonr(p_real, p_syn)[0]),
                            "prevalence_spearman": float(spearmanr(p_real, p_syn)[0]),
                            "label_rate": float(sample["label"].mean())})
        print(out["runs"][-1], flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--uci", help="dataset_diabetes.zip: also run the real-data sanity check")
    parser.add_argument("--uci-rows", type=int, default=10_000)
    parser.add_argument("--uci-runs", nargs="+", default=["marginals", "medgan", "emrwgan", "corgan"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = {"cpus": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
               "platform": platform.platform()}
    if args.uci:
        result = {"machine": machine, **uci_check(args.uci, args.uci_rows, args.uci_runs)}
        write(result, "baselines_uci", uci_markdown(result))
        return 0
    width, rows, repeats = (40, 200, 1) if args.quick else (882, 5000, 5)

    speed = {}
    for name in GANS:
        speed[name] = step_seconds(name, width, rows, repeats)
        print(name, {k: round(v, 3) for k, v in speed[name].items()}, flush=True)

    data = block_binary_data(300 if args.quick else 2000, 4, 5, seed=0)
    structure = {name: [structure_scores(name, {}, data)] for name in ("marginals", "resample")}
    for name in GANS:
        settings = {k: (min(v, 5) if k.endswith("steps") else v) for k, v in LEARN[name].items()} if args.quick \
            else LEARN[name]
        structure[name] = []
        for seed in args.seeds:
            start = time.perf_counter()
            scores = structure_scores(name, settings, data, seed=seed)
            structure[name].append({**scores, "seed": seed, "fit_seconds": time.perf_counter() - start})
            print(name, seed, {k: round(v, 4) for k, v in structure[name][-1].items()}, flush=True)

    result = {"machine": machine, "quick": args.quick, "speed_width": width, "speed": speed,
              "structure_settings": LEARN, "structure": structure}
    write(result, "baselines", markdown(result))
    return 0


def write(result: dict, stem: str, text: str) -> None:
    (ROOT / "out").mkdir(exist_ok=True)
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "out" / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (ROOT / "results" / f"{stem}.md").write_text(text)


def markdown(r: dict) -> str:
    lines = [f"# GAN baselines: speed and block structure ({r['machine']['cpus']}-core CPU, "
             f"{r['machine']['torch_threads']} torch thread(s), torch {r['machine']['torch']})", "",
             "Command: `.venv/bin/python benchmarks/bench_baselines.py`" + (" (quick: numbers meaningless)"
                                                                             if r["quick"] else ""), "",
             f"## Seconds per training step at {r['speed_width']} columns", "",
             "| model | batch | autoencoder step (s) | generator update (s) | default schedule (min) |",
             "|---|---|---|---|---|"]
    for name, s in r["speed"].items():
        ae = f"{s['autoencoder_s_per_step']:.3f}" if "autoencoder_s_per_step" in s else "-"
        lines.append(f"| {name} | {s['batch_size']} | {ae} | {s['gan_s_per_step']:.3f} | "
                     f"{s['default_train_minutes']:.1f} |")
    lines += ["", "## Block-correlated codes (2,000 patients, 4 blocks of 5 codes; lower is better)", "",
              "| model | seed | within-block correlation error | within-block co-occurrence error | "
              "correlation-matrix distance |", "|---|---|---|---|---|"]
    for name, runs in r["structure"].items():
        for run in runs:
            lines.append(f"| {name} | {run.get('seed', '-')} | {run['block_correlation']:.3f} | "
                         f"{run['cooccurrence']:.3f} | {run['correlation_distance']:.2f} |")
    return "\n".join(lines) + "\n"


def uci_markdown(u: dict) -> str:
    m = u["machine"]
    lines = [f"# GAN baselines on UCI diabetes, {u['rows']:,} random patients x {u['codes']} codes (sanity check; "
             f"{m['cpus']}-core CPU, {m['torch_threads']} torch thread(s))", "",
             "Command: `.venv/bin/python benchmarks/bench_baselines.py --uci ZIP --uci-runs "
             + " ".join(x["run"] for x in u["runs"]) + "`", "",
             "| run | train+sample (s) | codes/patient | empty rows | distinct rows | prevalence Pearson | "
             "prevalence Spearman | label rate |", "|---|---|---|---|---|---|---|---|",
             f"| real training rows | - | {u['real']['codes_per_patient']:.2f} | {u['real']['empty_rows']:.3f} "
             f"| {u['real']['distinct_rows']:.2f} | 1 | 1 | {u['real']['label_rate']:.3f} |"]
    for x in u["runs"]:
        lines.append(f"| {x['run']} | {x['seconds']:.0f} | {x['codes_per_patient']:.2f} | {x['empty_rows']:.3f} | "
                     f"{x['distinct_rows']:.2f} | {x['prevalence_pearson']:.3f} | "
                     f"{x['prevalence_spearman']:.3f} | {x['label_rate']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
