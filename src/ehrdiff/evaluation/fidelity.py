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
    return correlation_from_moments(column_means(X), second_moments(X))


def correlation_from_moments(mean: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """``correlation_matrix`` from the column means and the second moments E[x_i x_j] (``second_moments``)."""
    cov = moments - np.outer(mean, mean)
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
    return moments_distance(real_moments, second_moments(X_synthetic))


def moments_distance(real_moments: np.ndarray, synthetic_moments: np.ndarray) -> float:
    """``cooccurrence_distance`` from the synthetic second moments."""
    off = ~np.eye(real_moments.shape[0], dtype=bool)
    norm = np.linalg.norm(real_moments[off])
    if norm == 0:
        raise SkipMetric("no two codes ever occur together in the training data")
    return float(np.linalg.norm(synthetic_moments[off] - real_moments[off]) / norm)


def commonest(X: sp.csr_matrix, candidates: np.ndarray, limit: int) -> np.ndarray:
    """Indices (into the columns) of at most ``limit`` candidate columns with the most non-zero entries."""
    index = np.flatnonzero(candidates)
    if len(index) <= limit:
        return index
    nonzero = np.bincount(X.indices, minlength=X.shape[1])[index]
    return np.sort(index[np.argsort(-nonzero, kind="stable")[:limit]])


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic of two sorted, non-empty samples: the largest gap between their
    empirical CDFs."""
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                        - np.searchsorted(b, grid, side="right") / len(b)).max())


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
        ks.append(ks_statistic(a, b))
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


class PairProducts:
    """x_i x_j of every pair of columns i <= j that are non-zero together in some row, row by row: the second moments
    of any row weighting are then one sparse product, for many weightings at once (bootstrap resamples).

    ``correlation_distances`` and ``moments_distances`` give ``correlation_distance`` and ``cooccurrence_distance``
    under each weighting without forming a (columns x columns) matrix per weighting: the squared Frobenius norms
    expand into sums over the non-zero pairs plus terms of the column means."""

    LIMIT = 5_000_000      # stored pair products; rows with more non-zero pairs are left to a per-resample path
    CHUNK = 4_000_000      # pairs x weightings computed at once

    def __init__(self, X: sp.csr_matrix, first: np.ndarray, second: np.ndarray, products: sp.csr_matrix):
        self.X, self.first, self.second, self.products = X, first, second, products

    @classmethod
    def of(cls, X: sp.csr_matrix) -> "PairProducts | None":
        X = sp.csr_matrix(X, dtype=np.float64)
        X.sort_indices()
        per_row = np.diff(X.indptr)
        if int((per_row * (per_row + 1) // 2).sum()) > cls.LIMIT:
            return None
        row = np.repeat(np.arange(X.shape[0]), per_row)
        later = per_row[row] - (np.arange(X.nnz) - X.indptr[row])   # entries at or after this one in its row
        left = np.repeat(np.arange(X.nnz), later)
        right = left + np.arange(len(left)) - np.repeat(np.cumsum(later) - later, later)
        key = X.indices[left].astype(np.int64) * X.shape[1] + X.indices[right]
        pairs, pair_of = np.unique(key, return_inverse=True)
        products = sp.csr_matrix((X.data[left] * X.data[right], (pair_of, row[left])),
                                 shape=(len(pairs), X.shape[0]))
        return cls(X, pairs // X.shape[1], pairs % X.shape[1], products)

    def _blocks(self, weights: np.ndarray):
        """(column means (d, b), pair moments (pairs, b)) for blocks of the weightings (n, B)."""
        step = max(1, self.CHUNK // max(len(self.first), 1))
        for start in range(0, weights.shape[1], step):
            w = np.ascontiguousarray(weights[:, start:start + step])
            total = w.sum(axis=0)
            yield (self.X.T @ w) / total, (self.products @ w) / total

    def correlation_distances(self, real_corr: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``correlation_distance`` of the rows under each weighting (n, B), against ``real_corr``."""
        diagonal = self.first == self.second
        i, j = self.first[~diagonal], self.second[~diagonal]
        real_pairs = real_corr[i, j][:, None]
        real_off = (np.square(real_corr).sum() - np.square(np.diag(real_corr)).sum()) / 2   # sum over i < j
        out = []
        for mean, moments in self._blocks(weights):
            second = np.zeros_like(mean)
            second[self.first[diagonal]] = moments[diagonal]
            sd = np.sqrt(np.clip(second - mean ** 2, 0, None))
            ok = sd > 1e-12 * np.maximum(1.0, np.abs(mean))       # as correlation_from_moments
            scale = np.where(ok, 1 / np.where(ok, sd, 1.0), 0.0)
            u = scale * mean
            # C_ij = scale_i scale_j M_ij - u_i u_j off the diagonal, M_ij = 0 outside the stored pairs
            scaled = scale[i] * scale[j] * moments[~diagonal]
            u2, u4 = (u ** 2).sum(axis=0), (u ** 4).sum(axis=0)
            cross = (real_pairs * scaled).sum(axis=0) - (((real_corr @ u) * u).sum(axis=0)
                                                         - (np.diag(real_corr)[:, None] * u ** 2).sum(axis=0)) / 2
            square = (scaled ** 2).sum(axis=0) - 2 * (scaled * u[i] * u[j]).sum(axis=0) + (u2 ** 2 - u4) / 2
            out.append(np.sqrt(np.clip(2 * (real_off - 2 * cross + square), 0, None)))
        return np.concatenate(out)

    def moments_distances(self, real_moments: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``cooccurrence_distance`` of the rows under each weighting (n, B), against ``real_moments``."""
        off = self.first != self.second
        real_pairs = real_moments[self.first[off], self.second[off]][:, None]
        real_norm = np.sqrt(np.square(real_moments).sum() - np.square(np.diag(real_moments)).sum())
        if real_norm == 0:
            raise SkipMetric("no two codes ever occur together in the training data")
        out = []
        for _, moments in self._blocks(weights):
            pairs = moments[off]
            squared = 2 * ((pairs ** 2).sum(axis=0) - 2 * (pairs * real_pairs).sum(axis=0)) + real_norm ** 2
            out.append(np.sqrt(np.clip(squared, 0, None)) / real_norm)
        return np.concatenate(out)
