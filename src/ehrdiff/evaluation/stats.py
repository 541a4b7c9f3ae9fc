"""Small vectorised statistics shared by the metrics (many columns at once, ties handled exactly)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata


class SkipMetric(Exception):
    """A metric (or a group of metrics) that cannot be computed on this input; the message says why."""


@dataclass(frozen=True)
class Skipped:
    """A single metric value that could not be computed; ``reason`` goes into the report's ``skipped``."""

    reason: str


def auroc_columns(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of every column (Mann-Whitney U with average ranks for ties).

    ``y`` and ``scores`` are (n, K); columns without both classes get NaN."""
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y.ndim == 1:
        y, scores = y[:, None], scores[:, None]
    ranks = rankdata(scores, axis=0)
    pos = y.sum(axis=0).astype(np.float64)
    neg = y.shape[0] - pos
    rank_sum = (ranks * y).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    auc[(pos == 0) | (neg == 0)] = np.nan
    return auc


def auroc(y: np.ndarray, scores: np.ndarray) -> float:
    return float(auroc_columns(np.asarray(y).reshape(-1, 1), np.asarray(scores).reshape(-1, 1))[0])


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (sum over thresholds of precision x recall step)."""
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]   # last index of each distinct score
    tp = np.cumsum(t)[last]
    predicted = last + 1
    precision = tp / predicted
    recall_step = np.diff(np.r_[0, tp]) / y.sum()
    return float((precision * recall_step).sum())


def f1_columns(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 of every column; NaN where a column has no positives and no predicted positives."""
    y = np.asarray(y, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    tp = (y & predicted).sum(axis=0).astype(np.float64)
    denominator = y.sum(axis=0) + predicted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * tp / denominator
    return np.where(denominator == 0, np.nan, f1)


def best_accuracy(y: np.ndarray, scores: np.ndarray) -> float:
    """Highest accuracy of the rule "positive when score >= t" over every threshold t (including none positive)."""
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    values, inverse = np.unique(-scores, return_inverse=True)   # ascending in -score = descending score
    pos_at = np.bincount(inverse, weights=y, minlength=len(values))
    neg_at = np.bincount(inverse, weights=~y, minlength=len(values))
    tp = np.r_[0, np.cumsum(pos_at)]
    fp = np.r_[0, np.cumsum(neg_at)]
    negatives = (~y).sum()
    return float(((tp + negatives - fp) / len(y)).max())


def pearson(a: np.ndarray, b: np.ndarray) -> float | Skipped:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return Skipped(f"needs at least 2 values, got {len(a)}")
    if a.std() == 0 or b.std() == 0:
        return Skipped("one side is constant, so the correlation is undefined")
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float | Skipped:
    return pearson(rankdata(a), rankdata(b))


def nan_to_skip(value: float, reason: str) -> float | Skipped:
    return Skipped(reason) if value is None or not np.isfinite(value) else float(value)


# ---- the same statistics for many row weightings at once (bootstrap resamples) ------------------------------------
# A weighting matrix is (n, B): column b says how many times each of the n rows is drawn in resample b. A statistic
# of the weighted rows equals the statistic of the rows repeated that many times. Rows first, so that picking the
# rows a metric uses (weights[rows]) and the products with the data are contiguous.

class RankedScores:
    """Scores of n rows with their 0/1 truth, ranked once: AUROC, average precision and the best threshold accuracy
    under many row weightings at once (the same ties rules as ``auroc``, ``average_precision``, ``best_accuracy``)."""

    def __init__(self, y: np.ndarray, scores: np.ndarray):
        y = np.asarray(y, dtype=bool)
        _, inverse = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)   # ascending scores
        self._distinct = int(inverse.max()) + 1 if len(y) else 0
        # (2 x distinct scores, rows): positive rows by their distinct score, then negative rows
        self._by_score = sp.csr_matrix((np.ones(len(y)), (inverse + self._distinct * ~y, np.arange(len(y)))),
                                       shape=(2 * self._distinct, len(y)))

    def _counts(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted positives and negatives at each distinct score: (distinct scores ascending, B) each."""
        counts = self._by_score @ np.ascontiguousarray(weights, dtype=np.float64)
        return counts[:self._distinct], counts[self._distinct:]

    def auroc(self, weights: np.ndarray) -> np.ndarray:
        positive, negative = self._counts(weights)
        below = np.cumsum(negative, axis=0) - negative
        pos, neg = positive.sum(axis=0), negative.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (positive * (below + 0.5 * negative)).sum(axis=0) / (pos * neg)
        return np.where((pos > 0) & (neg > 0), value, np.nan)

    def average_precision(self, weights: np.ndarray) -> np.ndarray:
        positive, negative = (counts[::-1] for counts in self._counts(weights))   # descending scores
        true_positives = np.cumsum(positive, axis=0)
        predicted = np.cumsum(positive + negative, axis=0)
        precision = np.divide(true_positives, predicted, out=np.zeros_like(predicted), where=predicted > 0)
        pos = positive.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pos > 0, (precision * positive).sum(axis=0) / pos, np.nan)

    def best_accuracy(self, weights: np.ndarray) -> np.ndarray:
        positive, negative = (counts[::-1] for counts in self._counts(weights))
        zero = np.zeros((1, positive.shape[1]))
        true_positives = np.vstack([zero, np.cumsum(positive, axis=0)])
        false_positives = np.vstack([zero, np.cumsum(negative, axis=0)])
        negatives = negative.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (true_positives + negatives - false_positives).max(axis=0) / (positive.sum(axis=0) + negatives)


def weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B,) means of ``values`` (n,) under each weighting (n, B); NaN for a weighting with no row."""
    total = weights.sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.asarray(values, dtype=np.float64) @ weights / total, np.nan)


def weighted_medians(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B,) ``np.median`` of the rows repeated as often as each weighting (n, B) says (whole-number weights)."""
    order = np.argsort(values, kind="stable")
    ordered = np.asarray(values, dtype=np.float64)[order]
    cumulative = np.cumsum(weights[order], axis=0, dtype=np.float64)
    total = cumulative[-1]
    # the middle rows of the repeated sample: positions (N - 1) // 2 and N // 2, counting from 0
    low = (cumulative > (total - 1) // 2).argmax(axis=0)
    high = (cumulative > total // 2).argmax(axis=0)
    return np.where(total > 0, (ordered[low] + ordered[high]) / 2, np.nan)


def weighted_f1_columns(y: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, columns) ``f1_columns`` under each weighting (n, B); NaN where a column has no positive and none
    predicted."""
    y = np.asarray(y, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    denominator = weights.T @ y + weights.T @ predicted
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * (weights.T @ (y * predicted)) / denominator, np.nan)
