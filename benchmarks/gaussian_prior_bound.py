"""How far a Gaussian prior over the continuous columns could take the private CinC 2012 model: a bound, not a
release (issue 21's trees discriminator).

    .venv/bin/python benchmarks/gaussian_prior_bound.py --data DIR          # DIR from `ehrdiff prepare cinc2012`

The private conditional EHRDiff of ``bench_private_release.py --dataset cinc`` (epsilon 10, seed 0: the same model,
its noise seeded as the benchmark seeds it) keeps next to no relation between variables (``cinc_probe.py``'s
``linked``): its DP-SGD network stays near its start, whose samples are independent standard normals in the
encoded space. An ideal linear denoiser built from a covariance Sigma would sample N(0, Sigma) instead. Each run
here replaces the network's continuous columns (normal-scaled, in the encoded space) by such draws and leaves the
rest to the model's own sampling (binary columns, per-class calibration, the rules' repair, count ties):

  as-is            the model's own rows (the benchmark's sample)
  exact            Sigma from the training rows, pooled over the classes (missing values as 0): no noise, so a
                   bound on what a prior of this kind carries, not a private release
  panels           a structure a private release could afford: a top layer of every variable's summaries of the
                   ``--top`` kinds (default: its mean, the column VARIABLE_mean) and every continuous column
                   outside a variable, jointly; each declared panel's (or lone variable's) other columns regressed
                   on its top columns. Without noise
  panels-eps S     the same second moments with the Gaussian noise of one mechanism spending share S of epsilon
                   alone (``Ledger.gaussian``), L2 sensitivity sqrt(sum over parts of clip^4), rows clipped to
                   each part's median norm (the clip is data-dependent here: a release would declare it)
  rank-K           no structure declared: the second moment of all continuous columns, its K largest
                   eigencomponents kept and the rest of each column's variance on the diagonal (``--rank``),
                   without noise
  rank-K-eps S     the same from the second moment with one mechanism's noise at share S (sensitivity clip^2)

Each synthetic set has ``--rows`` rows; ``ehrdiff.evaluation.evaluate`` compares them with the training rows
(one seed: a bound's size, not a spread). Writes benchmarks/results/gaussian_prior_bound.md and
benchmarks/out/gaussian_prior_bound.json (with another ``--top``, named after it: ..._mean_first_last.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from provenance import code_version  # noqa: E402

METRICS = ["continuous_ks_mean", "discriminator_auroc_lr", "discriminator_auroc", "tstr_auroc", "mia_auroc"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="train.parquet, test.parquet and bounds.json")
    parser.add_argument("--epsilon", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.3, 0.5, 0.85], help="the noisy runs' shares")
    parser.add_argument("--rank", type=int, default=30, help="eigencomponents kept by the rank-K runs")
    parser.add_argument("--top", default="mean", help="the summaries of each variable in the top layer "
                        "(comma-separated kinds: mean, first, last, min, max, count)")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def encoded_rows(model, train) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The training rows in the model's encoded space (features, class indices), values missing where the encoder
    keeps no indicator filled with the column's median, and the encoded column names."""
    from ehrdiff.data.table import Table
    from ehrdiff.models.ehrdiff.conditioning import split_condition

    features, labels, _ = split_condition(train, "label")
    frame = features.frame.copy()
    for coding in model.encoder_.codings_:
        if coding.kind == "continuous" and not coding.has_missing and frame[coding.name].isna().any():
            frame[coding.name] = frame[coding.name].fillna(frame[coding.name].median())
    table = Table.from_frame(frame, kinds=features.kinds, rules=features.rules)
    return model.encoder_.transform(table, dtype=np.float64), labels, list(model.encoder_.encoded_columns)


def continuous_columns(model) -> np.ndarray:
    starts = np.cumsum([0] + [c.width for c in model.encoder_.codings_])
    return np.array([int(s) for c, s in zip(model.encoder_.codings_, starts)
                     if c.coding == "continuous" and c.kind == "continuous"])


def variable_blocks(names: list[str], continuous: np.ndarray, train, kinds: list[str]) -> tuple[list[int], list]:
    """(top, blocks): the top layer's encoded indices (each variable's summaries of the given ``kinds``, continuous
    columns outside any variable) and, per declared panel or lone variable, (its top columns' indices, its other
    continuous indices)."""
    from ehrdiff.data.sources.cinc2012 import PANEL_OF

    variables = [c[:-len("_count")] for c in train.columns if c.endswith("_count")]
    groups: dict[str, list[str]] = {}
    for v in variables:
        groups.setdefault(PANEL_OF.get(v, v), []).append(v)
    kept = set(continuous.tolist())
    tops = {v: [names.index(f"{v}_{k}") for k in kinds if f"{v}_{k}" in names and names.index(f"{v}_{k}") in kept]
            for v in variables}
    in_top = {i for cols in tops.values() for i in cols}
    blocks, inside = [], set()
    for members in groups.values():
        heads = [i for v in members for i in tops[v]]
        rest = [i for v in members for i, n in enumerate(names)
                if n.startswith(f"{v}_") and i in kept and i not in in_top]
        if heads and rest:
            blocks.append((heads, rest))
            inside.update(rest)
    top = sorted(in_top | (kept - inside - in_top))
    return top, blocks


def psd(matrix: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    w, u = np.linalg.eigh((matrix + matrix.T) / 2)
    return (u * np.maximum(w, floor)) @ u.T


def clipped_moment(rows: np.ndarray, clip: float) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1)
    rows = rows * np.minimum(1.0, clip / np.maximum(norms, 1e-12))[:, None]
    return rows.T @ rows


def symmetric_noise(size: int, sd: float, rng: np.random.Generator) -> np.ndarray:
    g = rng.normal(0.0, sd, (size, size))
    return np.triu(g) + np.triu(g, 1).T


def structured_covariance(z: np.ndarray, top: list[int], blocks, z_noise: float, rng) -> np.ndarray:
    """The panels structure's covariance over ``z``'s columns (z: centred rows, continuous columns only, indices
    into z), from second moments with Gaussian noise ``z_noise`` x the mechanism's sensitivity (0: none)."""
    parts = [top] + [means + rest for means, rest in blocks]
    clips = [float(np.median(np.linalg.norm(z[:, p], axis=1))) for p in parts]
    sensitivity = float(np.sqrt(sum(c ** 4 for c in clips)))
    moments = []
    for part, clip in zip(parts, clips):
        m = clipped_moment(z[:, part], clip)
        if z_noise:
            m = m + symmetric_noise(len(part), z_noise * sensitivity, rng)
        moments.append(psd(m / len(z)))
    sigma = np.zeros((z.shape[1], z.shape[1]))
    where = {col: k for k, col in enumerate(top)}
    sigma[np.ix_(top, top)] = moments[0]
    # each block: B = beta' T_b + e, e independent of everything else (T_b: the block's means in the top layer)
    loadings = {}
    for (means, rest), m in zip(blocks, moments[1:]):
        k = len(means)
        beta = np.linalg.solve(m[:k, :k], m[:k, k:])                   # (means) x (rest)
        residual = psd(m[k:, k:] - m[k:, :k] @ beta, 1e-4)
        loadings[tuple(rest)] = (means, beta)
        cross = moments[0][[where[c] for c in means], :]                 # Cov(T_b, top)
        sigma[np.ix_(rest, top)] = beta.T @ cross
        sigma[np.ix_(top, rest)] = (beta.T @ cross).T
        sigma[np.ix_(rest, rest)] = beta.T @ moments[0][np.ix_([where[c] for c in means],
                                                             [where[c] for c in means])] @ beta + residual
    for rest_a, (means_a, beta_a) in loadings.items():
        for rest_b, (means_b, beta_b) in loadings.items():
            if rest_a != rest_b:
                t = moments[0][np.ix_([where[c] for c in means_a], [where[c] for c in means_b])]
                sigma[np.ix_(list(rest_a), list(rest_b))] = beta_a.T @ t @ beta_b
    return psd(sigma, 1e-4)


def low_rank_covariance(z: np.ndarray, rank: int, z_noise: float, rng) -> np.ndarray:
    """The second moment of ``z`` (rows clipped to their median norm, Gaussian noise ``z_noise`` x clip^2 when
    given): its ``rank`` largest eigencomponents plus the rest of each column's variance on the diagonal."""
    clip = float(np.median(np.linalg.norm(z, axis=1)))
    moment = clipped_moment(z, clip)
    if z_noise:
        moment = moment + symmetric_noise(z.shape[1], z_noise * clip ** 2, rng)
    w, u = np.linalg.eigh(moment / len(z))
    keep = np.argsort(w)[::-1][:rank]
    loadings = u[:, keep] * np.sqrt(np.maximum(w[keep], 0.0))
    low = loadings @ loadings.T
    return low + np.diag(np.clip(np.diag(moment / len(z)) - np.diag(low), 0.05, None))


def gaussian_rows(model, continuous: np.ndarray, mean_of_class: dict, sigma: np.ndarray):
    """A replacement for the model's ``_sample_rows``: its own rows with the continuous columns drawn from
    N(class mean, sigma)."""
    own = model._sample_rows

    def rows(n, seed, label, guidance, progress=False, desc="sampling"):
        out = own(n, seed, label, guidance, progress, desc).astype(np.float64)
        rng = np.random.default_rng([seed, 0 if label is None else int(label), 0x6A55])
        out[:, continuous] = mean_of_class[label] + rng.multivariate_normal(
            np.zeros(len(continuous)), sigma, size=n, method="eigh")
        return out.astype(np.float32)
    return rows


def main() -> None:
    import bench_private_release as bench

    from ehrdiff.data.io import read_table
    from ehrdiff.evaluation.runner import evaluate
    from ehrdiff.models.base import keep_rules
    from ehrdiff.privacy.accounting import Ledger
    from ehrdiff.privacy.secret import given_noise_seed

    args = parse_args()
    train, test = read_table(args.data / "train.parquet"), read_table(args.data / "test.parquet")
    fit_args = argparse.Namespace(bounds=args.data / "bounds.json", dataset="cinc", quick=False, delta=1e-5)
    with given_noise_seed(args.seed):
        model = bench.fit_variant("conditional", args.epsilon, args.seed, fit_args, train)
    matrix, labels, names = encoded_rows(model, train)
    continuous = continuous_columns(model)
    values = matrix[:, continuous]
    means = {k: values[labels == k].mean(axis=0) for k in np.unique(labels)}
    z = values - np.stack([means[k] for k in labels])
    top, blocks = variable_blocks(names, continuous, train, args.top.split(","))
    position = {col: i for i, col in enumerate(continuous)}
    top_z = [position[c] for c in top]
    blocks_z = [([position[c] for c in m], [position[c] for c in r]) for m, r in blocks]
    rng = np.random.default_rng(args.seed)
    runs = {"as-is": None, "exact": psd(z.T @ z / len(z)), "panels": structured_covariance(z, top_z, blocks_z, 0.0,
                                                                                           rng)}
    noise = {share: Ledger(args.epsilon, 1e-5, "rdp").gaussian("second moments", 1.0, share).noise_multiplier
             for share in args.shares}
    for share in args.shares:
        runs[f"panels-eps {share:g}"] = structured_covariance(z, top_z, blocks_z, noise[share], rng)
    runs[f"rank-{args.rank}"] = low_rank_covariance(z, args.rank, 0.0, rng)
    for share in args.shares:
        runs[f"rank-{args.rank}-eps {share:g}"] = low_rank_covariance(z, args.rank, noise[share], rng)
    own, tables, t0 = model._sample_rows, {}, time.perf_counter()
    for name, sigma in runs.items():
        model._sample_rows = own if sigma is None else gaussian_rows(model, continuous, means, sigma)
        tables[name] = keep_rules(model, model.sample_table(args.rows, seed=args.seed), args.seed)[0]
        print(f"{name}: sampled", flush=True)
    report = evaluate(train, test, tables, label="label", references=False, figures=False, threads=args.threads,
                      nnaa_draws=1)
    metrics = {name: {m: report.metrics[name].get(m) for m in METRICS} for name in tables}
    result = {"epsilon": args.epsilon, "seed": args.seed, "rows": args.rows, "code": code_version(),
              "top_columns": len(top), "blocks": len(blocks), "continuous_columns": len(continuous),
              "minutes": round((time.perf_counter() - t0) / 60, 1), "metrics": metrics}
    stem = "gaussian_prior_bound" + ("" if args.top == "mean" else "_" + args.top.replace(",", "_"))
    out = ROOT / "out" / f"{stem}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    rows = ["| run | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    rows += [f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in METRICS) + " |"
             for name, values in metrics.items()]
    text = (f"# A Gaussian prior over the continuous columns, top layer {args.top.replace(',', ', ')}: a bound "
            f"(CinC 2012, private conditional EHRDiff)\n\n"
            f"Command: `.venv/bin/python benchmarks/gaussian_prior_bound.py --data {args.data} --top {args.top} "
            f"--threads {args.threads}` (what each run is: the script's docstring)\n\n"
            f"Machine: {platform.machine()}, Python {platform.python_version()}; code {result['code']}; epsilon "
            f"{args.epsilon:g}, seed {args.seed}, {args.rows:,} synthetic rows per run, one evaluation against the "
            f"training rows ({result['minutes']} min). Top layer {len(top)} columns, {len(blocks)} blocks, "
            f"{len(continuous)} continuous columns. 'exact' and 'panels' use the training rows without noise: "
            f"bounds, not private releases.\n\n" + "\n".join(rows) + "\n")
    (ROOT / "results" / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
