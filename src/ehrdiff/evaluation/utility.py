"""Utility: train on synthetic, test on real (TSTR) against train on real, test on real (TRTR), for the label.

The classifier is L2 logistic regression (C=1) on every encoded feature column by default, or histogram gradient
boosting (``utility_model="gbt"``). Binary labels: AUROC and average precision (AUPRC) of the positive class
(the larger class value); more classes: one-vs-rest macro averages.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingClassifier

from ehrdiff.evaluation.discriminator import tree_threads
from ehrdiff.evaluation.logistic import fit_logistic
from ehrdiff.evaluation.stats import RankedScores, SkipMetric, auroc_columns, average_precision

MIN_ROWS = 10


def classifier_scores(X: sp.csr_matrix, y: np.ndarray, X_test: sp.csr_matrix, n_classes: int, model: str,
                      seed: int, threads: int | None = None) -> np.ndarray:
    """(test rows, classes) scores of a classifier fitted on (X, y); a binary label gives one column."""
    if X.shape[0] < MIN_ROWS:
        raise SkipMetric(f"needs at least {MIN_ROWS} rows to train a classifier, got {X.shape[0]}")
    present = np.unique(y)
    if len(present) < 2:
        raise SkipMetric("the training rows of the classifier hold one label class only")
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    targets = onehot[:, 1:] if n_classes == 2 else onehot
    if model == "logistic":
        return fit_logistic(X, targets).predict_proba(X_test)
    with tree_threads(threads):
        gbt = HistGradientBoostingClassifier(random_state=seed).fit(X.toarray(), y)
        proba = np.zeros((X_test.shape[0], n_classes))
        proba[:, gbt.classes_] = gbt.predict_proba(X_test.toarray())
    return proba[:, 1:] if n_classes == 2 else proba


def label_scores(y_test: np.ndarray, scores: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(AUROC, AUPRC) of class scores against the true classes."""
    truth = class_truth(y_test, n_classes)
    aurocs = auroc_columns(truth, scores)
    ok = np.isfinite(aurocs)
    if not ok.any():
        raise SkipMetric("the held-out rows hold one label class only")
    auprcs = [average_precision(truth[:, j], scores[:, j]) for j in np.flatnonzero(ok)]
    return float(aurocs[ok].mean()), float(np.mean(auprcs))


def label_tvd(y_real: np.ndarray, y_synthetic: np.ndarray, n_classes: int) -> float:
    """Total variation distance between the label's class frequencies."""
    p = np.bincount(y_real, minlength=n_classes) / len(y_real)
    q = np.bincount(y_synthetic, minlength=n_classes) / len(y_synthetic)
    return float(np.abs(p - q).sum() / 2)


def class_truth(y: np.ndarray, n_classes: int) -> np.ndarray:
    """(rows, scored classes) 0/1 truth matching ``classifier_scores``' columns (binary: the positive class)."""
    truth = np.eye(n_classes, dtype=bool)[y]
    return truth[:, 1:] if n_classes == 2 else truth


def label_score_replicates(rankings: list[RankedScores], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``label_scores`` under each row weighting (B, rows): (AUROC, AUPRC), each (B,), NaN where undefined.
    ``rankings``: one ``RankedScores(truth column, score column)`` per scored class."""
    aurocs = np.column_stack([r.auroc(weights) for r in rankings])
    precisions = np.column_stack([r.average_precision(weights) for r in rankings])
    ok = np.isfinite(aurocs)
    count = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(ok, aurocs, 0).sum(axis=1) / np.where(count > 0, count, np.nan),
                np.where(ok, precisions, 0).sum(axis=1) / np.where(count > 0, count, np.nan))
