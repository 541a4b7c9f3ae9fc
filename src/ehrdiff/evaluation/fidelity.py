"""Fidelity of the marginals and of the pairwise structure, computed on whole sparse matrices at once.

Dimension-wise probability (medGAN; EHRDiff Figure 1): each code's prevalence in the synthetic rows against the
real training rows, summarised overall and within rare / medium / common prevalence buckets, because a Pearson
correlation near 1 is driven by the few common codes and hides errors on the many rare ones.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import wasserstein_distance

from ehrdiff.evaluation.stats import SkipMetric, Skipped, pearson, spearman

BUCKETS = ("rare", "medium", "common")


def column_means(X: sp.csr_matrix) -> np.ndarray:
    return np.asarray(X.sum(axis=0, dtype=np.float64)).ravel() / X.shape[0]


def prevalence_metrics(real: np.ndarray, synthetic: np.ndarray, buckets: tuple[float, float]) -> dict:
    """Agreement of per-code prevalences (vectors over the same codes)."""
    if len(real) == 0:
        raise SkipMetric("the data has no binary code columns")
    out = _agreement("prevalence", real, synthetic)
    low, high = buckets
    masks = {"rare": real < low, "medium": (real >= low) & (real < high), "common": real >= high}
    for name in BUCKETS:
        m = masks[name]
        if m.sum() < 2:
            reason = f"fewer than 2 codes have a training prevalence in the {name} bucket ({m.sum()})"
            out.update({f"prevalence_{name}_{k}": Skipped(reason) for k in ("pearson", "spearman", "rmse",
                                                                           "max_abs_diff")})
        else:
            out.update(_agreement(f"prevalence_{name}", real[m], synthetic[m]))
    return out


def _agreement(prefix: str, real: np.ndarray, synthetic: np.ndarray) -> dict:
    diff = synthetic - real
    return {f"{prefix}_pearson": pearson(real, synthetic), f"{prefix}_spearman": spearman(real, synthetic),
            f"{prefix}_rmse": float(np.sqrt(np.mean(diff ** 2))), f"{prefix}_max_abs_diff": float(np.abs(diff).max())}


def codes_never_generated(real: np.ndarray, synthetic_counts: np.ndarray) -> int:
    """Codes present in the training data that no synthetic row has."""
    return int(((real > 0) & (synthetic_counts == 0)).sum())


def codes_per_patient(real_counts: np.ndarray, synthetic_counts: np.ndarray) -> dict:
    """Number of codes per row: mean, its difference from the training data, 1-D Wasserstein distance, empty rows."""
    return {"codes_per_patient_mean": float(synthetic_counts.mean()),
            "codes_per_patient_mean_diff": float(synthetic_counts.mean() - real_counts.mean()),
            "codes_per_patient_wasserstein": float(wasserstein_distance(real_counts, synthetic_counts)),
            "empty_row_rate": float((synthetic_counts == 0).mean())}


def second_moments(X: sp.csr_matrix) -> np.ndarray:
    """E[x_i x_j] as a dense (d, d) matrix."""
    X = sp.csr_matrix(X, dtype=np.float64)
    return (X.T @ X).toarray() / X.shape[0]


def correlation_matrix(X: sp.csr_matrix) -> np.ndarray:
    """Pearson correlations between columns; a constant column correlates 0 with the others (1 with itself)."""
    if X.shape[0] < 2:
        raise SkipMetric(f"needs at least 2 rows, got {X.shape[0]}")
    mean = column_means(X)
    cov = second_moments(X) - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    ok = sd > 1e-12 * np.maximum(1.0, np.abs(mean))
    scale = np.where(ok, sd, 1.0)
    corr = cov / np.outer(scale, scale)
    corr[~ok, :] = 0.0
    corr[:, ~ok] = 0.0
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def correlation_distance(real_corr: np.ndarray, X_synthetic: sp.csr_matrix) -> float:
    """Frobenius norm of the difference between the real and synthetic correlation matrices."""
    return float(np.linalg.norm(real_corr - correlation_matrix(X_synthetic)))


def cooccurrence_distance(real_moments: np.ndarray, X_synthetic: sp.csr_matrix) -> float:
    """Relative Frobenius distance between the off-diagonal co-occurrence probabilities P(code i and code j)."""
    off = ~np.eye(real_moments.shape[0], dtype=bool)
    norm = np.linalg.norm(real_moments[off])
    if norm == 0:
        raise SkipMetric("no two codes ever occur together in the training data")
    return float(np.linalg.norm(second_moments(X_synthetic)[off] - real_moments[off]) / norm)


def commonest(X: sp.csr_matrix, candidates: np.ndarray, limit: int) -> np.ndarray:
    """Indices (into the columns) of at most ``limit`` candidate columns with the most non-zero entries."""
    index = np.flatnonzero(candidates)
    if len(index) <= limit:
        return index
    nonzero = np.bincount(X.indices, minlength=X.shape[1])[index]
    return np.sort(index[np.argsort(-nonzero, kind="stable")[:limit]])


def continuous_metrics(real: np.ndarray, synthetic: np.ndarray, real_missing: np.ndarray,
                       synthetic_missing: np.ndarray) -> dict:
    """Per-column distribution distances on [0, 1]-scaled values (missing entries excluded), and missing rates.

    ``real`` / ``synthetic``: (rows, columns) scaled values; ``*_missing``: the same shape, True where missing."""
    ks, w = [], []
    for j in range(real.shape[1]):
        a = np.sort(real[~real_missing[:, j], j])
        b = np.sort(synthetic[~synthetic_missing[:, j], j])
        if len(a) == 0 or len(b) == 0:
            continue
        grid = np.concatenate([a, b])
        cdf_a = np.searchsorted(a, grid, side="right") / len(a)
        cdf_b = np.searchsorted(b, grid, side="right") / len(b)
        ks.append(np.abs(cdf_a - cdf_b).max())
        w.append(wasserstein_distance(a, b))
    if not ks:
        raise SkipMetric("every continuous column is entirely missing in one of the datasets")
    return {"continuous_ks_mean": float(np.mean(ks)), "continuous_ks_max": float(np.max(ks)),
            "continuous_wasserstein_mean": float(np.mean(w)),
            "continuous_missing_rate_diff": float(np.abs(real_missing.mean(axis=0)
                                                         - synthetic_missing.mean(axis=0)).mean())}


def categorical_tvd(real_means: np.ndarray, synthetic_means: np.ndarray, groups: np.ndarray) -> float:
    """Mean over categorical columns of the total variation distance between category frequencies.

    ``*_means``: one-hot column means; ``groups``: the categorical column each one-hot column belongs to."""
    per_column = np.bincount(groups, weights=np.abs(real_means - synthetic_means)) / 2
    return float(per_column[np.unique(groups)].mean())
