"""Time the full evaluation report on UCI diabetes (patient level) and compare with the straightforward way.

    .venv/bin/python benchmarks/bench_evaluate.py [--zip PATH] [--threads N] [--skip-baseline]

1. Prepares UCI diabetes with ``ehrdiff prepare uci-diabetes`` (57,214 training x 881 codes, 14,303 test patients;
   cached in benchmarks/out/uci-diabetes/).
2. Synthetic set: a noisy resample of the training rows (57,214 rows drawn with replacement, then every cell
   independently replaced with probability 0.1 by a Bernoulli draw at its code's training prevalence): a stand-in
   with realistic structure and some copying.
3. Times ``evaluate(train, test, {"noisy-resample": synthetic})`` with the three reference sets, then the figures
   and the HTML page, in a child process whose peak resident memory is reported.
4. On a subset (10,000 training rows, 5,000 test rows, 10,000 synthetic rows), computes the costly metrics both ways:
   ehrdiff's vectorised code and the straightforward one (a scikit-learn model per code, scikit-learn nearest
   neighbours on dense rows), and reports the times, their ratio and that the values agree.
5. Times the discriminator with 1 and 2 OpenMP threads (why the evaluation defaults to 1 for the trees).

Writes benchmarks/out/evaluate.json and benchmarks/results/evaluate.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DEFAULT_ZIP = HERE.parents[1] / "shared" / "data" / "uci-diabetes-130-us-hospitals" / "dataset_diabetes.zip"
NOISE = 0.1


def prepared(zip_path: Path) -> Path:
    folder = OUT / "uci-diabetes"
    if not (folder / "train.parquet").exists():
        from ehrdiff.cli import main
        if main(["-q", "prepare", "uci-diabetes", "--zip", str(zip_path), "-o", str(folder)]) != 0:
            raise SystemExit("bench_evaluate: ehrdiff prepare uci-diabetes failed")
    return folder


def noisy_resample(train, seed: int = 0) -> pd.DataFrame:
    codes = train.columns_of("binary")
    rng = np.random.default_rng(seed)
    matrix = train.frame[codes].to_numpy(np.int8)
    rows = rng.integers(0, len(matrix), len(matrix))
    prevalence = matrix.mean(axis=0)
    noisy = matrix[rows]
    replace = rng.random(noisy.shape, dtype=np.float32) < NOISE
    redrawn = rng.random(noisy.shape, dtype=np.float32) < prevalence
    noisy[replace] = redrawn[replace]
    frame = pd.DataFrame(noisy, columns=codes)
    frame["label"] = train.frame["label"].to_numpy()[rows]
    return frame


def full_report(folder: str, threads: int | None, queue) -> None:
    """Child process: the whole evaluation as a user runs it; sends timings, metrics and peak memory back."""
    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation import evaluate

    started = time.perf_counter()
    train, test = read_table(Path(folder) / "train.parquet"), read_table(Path(folder) / "test.parquet")
    synthetic = noisy_resample(train)
    loaded = time.perf_counter()
    report = evaluate(train, test, {"noisy-resample": synthetic}, seed=0, threads=threads)
    evaluated = time.perf_counter()
    report.to_json(OUT / "evaluate-report" / "metrics.json")
    report.to_html(OUT / "evaluate-report")
    written = time.perf_counter()
    queue.put({
        "load_and_build_s": loaded - started,
        "evaluate_s": evaluated - loaded,
        "figures_and_html_s": written - evaluated,
        "per_dataset_s": {name: sum(t.values()) for name, t in report.timings.items()},
        "per_group_s": report.timings,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "shape": {"train": list(train.frame.shape), "test": list(test.frame.shape),
                  "synthetic": list(synthetic.shape), "codes": len(train.columns_of("binary"))},
        "metrics": report.metrics,
    })


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def baseline_comparison(folder: Path, seed: int = 0) -> list[dict]:
    """The costly metrics on a subset, vectorised (ehrdiff) vs per code / dense scikit-learn."""
    import scipy.sparse as sp

    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation.neighbours import Space

    train_table, test_table = read_table(folder / "train.parquet"), read_table(folder / "test.parquet")
    codes = train_table.columns_of("binary")
    rng = np.random.default_rng(seed)
    train = sp.csr_matrix(train_table.frame[codes].to_numpy(np.float32))
    test = sp.csr_matrix(test_table.frame[codes].to_numpy(np.float32))
    synthetic = sp.csr_matrix(noisy_resample(train_table)[codes].to_numpy(np.float32))
    train = train[rng.choice(train.shape[0], 10_000, replace=False)]
    test = test[rng.choice(test.shape[0], 5_000, replace=False)]
    synthetic = synthetic[rng.choice(synthetic.shape[0], 10_000, replace=False)]
    rows = [dimwise_comparison(train, test, synthetic, rng)]
    space = Space.fit(train, np.zeros(train.shape[1], bool))
    rows += [nearest_comparison(space, train, test, synthetic), nnaa_comparison(space, train, test, synthetic)]
    for row in rows:
        row["speed_ratio"] = row["straightforward_s"] / row["ehrdiff_s"]
    return rows


def dimwise_comparison(train, test, synthetic, rng) -> dict:
    """Dimension-wise prediction, K = 50 codes, trained on synthetic rows, tested on test rows."""
    from sklearn.linear_model import LogisticRegression

    from ehrdiff.evaluation import prediction
    from ehrdiff.evaluation.stats import auroc_columns

    targets = prediction.choose_targets(train, test, np.ones(train.shape[1], bool), 50)
    ours, t_ours = timed(lambda: prediction.code_scores(synthetic, test, targets, rng, 20_000, 50).auroc)

    def per_code():
        out = []
        for j in targets:
            others = np.r_[0:j, j + 1:train.shape[1]]
            model = LogisticRegression(C=1.0, max_iter=1000)
            model.fit(synthetic[:, others], synthetic[:, j].toarray().ravel())
            score = model.decision_function(test[:, others])
            out.append(auroc_columns(test[:, [j]].toarray() > 0, score[:, None])[0])
        return np.array(out)

    straight, t_straight = timed(per_code)
    return {"metric": "dimension-wise prediction (50 codes, 10,000 training rows)", "ehrdiff_s": t_ours,
            "straightforward_s": t_straight,
            "agreement": f"mean absolute AUROC difference {np.abs(ours - straight).mean():.4f}"}


def nearest_comparison(space, train, test, synthetic) -> dict:
    """Membership inference / DCR: the nearest synthetic row of 2,000 members and 2,000 non-members."""
    import scipy.sparse as sp
    from sklearn.neighbors import NearestNeighbors

    from ehrdiff.evaluation.neighbours import nearest_distance

    queries = sp.vstack([train[:2000], test[:2000]], format="csr")
    ours, t_ours = timed(lambda: nearest_distance(space, queries, synthetic))

    def sklearn_nn():
        index = NearestNeighbors(n_neighbors=1, metric="manhattan", algorithm="brute").fit(synthetic.toarray())
        return index.kneighbors(queries.toarray())[0][:, 0]

    straight, t_straight = timed(sklearn_nn)
    return {"metric": "nearest synthetic row (4,000 queries x 10,000 rows, membership / DCR)",
            "ehrdiff_s": t_ours, "straightforward_s": t_straight,
            "agreement": f"largest distance difference {np.abs(ours - straight).max():g}"}


def nnaa_comparison(space, train, test, synthetic) -> dict:
    """NNAA on 2,000-row samples."""
    from sklearn.neighbors import NearestNeighbors

    from ehrdiff.evaluation import privacy

    sample = [X[:2000] for X in (train, test, synthetic)]
    ours, t_ours = timed(lambda: privacy.nnaa(space, *sample, np.random.default_rng(1), 2000)["nnaa_privacy_loss"])

    def sklearn_nnaa():
        def nearest(a, b, self_excluded=False):
            index = NearestNeighbors(n_neighbors=2 if self_excluded else 1, metric="manhattan", algorithm="brute")
            distance = index.fit(b.toarray()).kneighbors(a.toarray())[0]
            return distance[:, 1] if self_excluded else distance[:, 0]

        def greater(x, y):
            return np.mean((x > y) + 0.5 * (x == y))

        t, e, s = sample
        d_ss = nearest(s, s, True)
        aa = [0.5 * (greater(nearest(r, s), nearest(r, r, True)) + greater(nearest(s, r), d_ss)) for r in (t, e)]
        return aa[1] - aa[0]

    straight, t_straight = timed(sklearn_nnaa)
    return {"metric": "NNAA (2,000 rows per set)", "ehrdiff_s": t_ours, "straightforward_s": t_straight,
            "agreement": f"privacy loss {ours:.4f} vs {straight:.4f}"}


def discriminator_threads(folder: Path) -> list[dict]:
    """The discriminator (4,000 + 4,000 rows, 3 folds) with 1 and with 2 OpenMP threads, three times each."""
    import scipy.sparse as sp

    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation.discriminator import discriminator_auroc

    train_table = read_table(folder / "train.parquet")
    codes = train_table.columns_of("binary")
    train = sp.csr_matrix(train_table.frame[codes].to_numpy(np.float32))
    synthetic = sp.csr_matrix(noisy_resample(train_table)[codes].to_numpy(np.float32))
    out = []
    for threads in (1, 2):
        times = [timed(lambda: discriminator_auroc(train, synthetic, np.random.default_rng(0), 4000, 3, 100, 0,
                                                   threads))[1] for _ in range(3)]
        out.append({"threads": threads, "seconds": times, "load": os.getloadavg()[0]})
    return out


def markdown(result: dict) -> str:
    full = result["full"]
    lines = [
        "# Evaluation benchmark (UCI diabetes, patient level)",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Load average before the run (1 min): {result['load_before']:.2f} (other jobs on the machine slow every "
        "number here)",
        "",
        f"Data: training {full['shape']['train'][0]:,} rows x {full['shape']['codes']:,} ICD-9 codes (+ id, label), "
        f"test "
        f"{full['shape']['test'][0]:,}, synthetic {full['shape']['synthetic'][0]:,} (noisy resample of the training "
        f"rows, {NOISE:.0%} of cells redrawn).",
        "",
        "## Full report (one synthetic set + the three reference sets)",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| read tables, build the synthetic set | {full['load_and_build_s']:.1f} |",
        f"| evaluate (4 datasets, every metric) | {full['evaluate_s']:.1f} |",
    ]
    lines += [f"| - of which {name} | {seconds:.1f} |" for name, seconds in full["per_dataset_s"].items()]
    lines += [
        f"| figures and HTML page | {full['figures_and_html_s']:.1f} |",
        f"| **total** | **{full['load_and_build_s'] + full['evaluate_s'] + full['figures_and_html_s']:.1f}** |",
        "",
        f"Peak resident memory of the process: {full['peak_rss_mb']:,.0f} MB.",
        "",
        "Slowest metric groups for the synthetic set (seconds): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(full["per_group_s"]["noisy-resample"].items(),
                                                          key=lambda kv: -kv[1])[:6]) + ".",
        "",
        "Headline metrics:",
        "",
        "| dataset | prevalence_spearman | discriminator_auroc | dimwise_prediction_auroc_gap | tstr_auroc | "
        "mia_auroc | nnaa_privacy_loss | exact_copy_rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = ("prevalence_spearman", "discriminator_auroc", "dimwise_prediction_auroc_gap", "tstr_auroc", "mia_auroc",
            "nnaa_privacy_loss", "exact_copy_rate")
    for name, metrics in full["metrics"].items():
        cells = ["-" if metrics.get(k) is None else f"{metrics[k]:.3f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if result.get("baseline"):
        lines += ["", "## Against the straightforward way (subset: 10,000 training, 5,000 test, 10,000 synthetic "
                      "rows)", "",
                  "Straightforward: one scikit-learn `LogisticRegression` per code; scikit-learn `NearestNeighbors` "
                  "(brute force, Manhattan = Hamming on 0/1) on dense rows.", "",
                  "| metric | ehrdiff (s) | straightforward (s) | speed-up | values |", "|---|---|---|---|---|"]
        lines += [f"| {r['metric']} | {r['ehrdiff_s']:.2f} | {r['straightforward_s']:.2f} | {r['speed_ratio']:.1f}x | "
                  f"{r['agreement']} |" for r in result["baseline"]]
    if result.get("discriminator_threads"):
        lines += ["", "## Discriminator: OpenMP threads (4,000 + 4,000 rows, 3 folds, 100 rounds; three runs)", "",
                  "The evaluation runs the trees with 1 thread unless `threads` is set (discriminator.tree_threads).",
                  "", "| threads | seconds (three runs) | load average after |", "|---|---|---|"]
        lines += [f"| {r['threads']} | {', '.join(f'{t:.1f}' for t in r['seconds'])} | {r['load']:.2f} |"
                  for r in result["discriminator_threads"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="UCI dataset_diabetes.zip")
    parser.add_argument("--threads", type=int, default=None, help="evaluation threads (default: libraries' default)")
    parser.add_argument("--skip-baseline", action="store_true", help="only the full report")
    args = parser.parse_args()
    if not args.zip.exists():
        print(f"bench_evaluate: {args.zip} not found (use --zip)", file=sys.stderr)
        return 1
    folder = prepared(args.zip)
    load_before = os.getloadavg()[0]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=full_report, args=(str(folder), args.threads, queue))
    child.start()
    full = queue.get()
    child.join()
    import torch

    result = {
        "command": " ".join([".venv/bin/python", "benchmarks/bench_evaluate.py", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
                   f"torch {torch.__version__} ({torch.get_num_threads()} threads by default), "
                   f"Python {platform.python_version()}",
        "load_before": load_before,
        "threads": args.threads,
        "full": full,
        "baseline": None if args.skip_baseline else baseline_comparison(folder),
        "discriminator_threads": None if args.skip_baseline else discriminator_threads(folder),
    }
    from ehrdiff.fileio import write_text_atomic
    write_text_atomic(OUT / "evaluate.json", json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    write_text_atomic(HERE / "results" / "evaluate.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
