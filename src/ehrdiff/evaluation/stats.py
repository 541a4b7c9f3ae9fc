"""Small vectorised statistics shared by the metrics (many columns at once, ties handled exactly)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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
