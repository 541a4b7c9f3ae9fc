"""Dimension-wise prediction (medGAN, Choi et al. 2017; EHRDiff Figure 2).

For each of the K commonest codes a logistic regression predicts the code from every other column. One set of K
models is trained on synthetic rows, one on real training rows; both are tested on the same real held-out rows.
All K models are fitted together (``logistic.fit_logistic``), so the cost is that of one model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ehrdiff.evaluation.logistic import fit_logistic
from ehrdiff.evaluation.stats import SkipMetric, Skipped, auroc_columns, f1_columns, pearson

MIN_TRAIN_ROWS = 10


@dataclass
class CodeScores:
    """Per-code test scores of one set of K models."""

    targets: np.ndarray   # column indices of the predicted codes
    auroc: np.ndarray     # (K,)
    f1: np.ndarray        # (K,) at probability threshold 0.5 (medGAN)
    decision: np.ndarray | None = None   # (held-out rows, K) decision values (> 0: predicted present)


def choose_targets(train: sp.csr_matrix, holdout: sp.csr_matrix, codes: np.ndarray, k: int) -> np.ndarray:
    """The k commonest training codes that have both classes in the held-out rows (so AUROC is defined)."""
    count = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64)
    held = np.bincount(holdout.indices, minlength=holdout.shape[1])
    candidates = np.flatnonzero(codes & (held > 0) & (held < holdout.shape[0]) & (count > 0))
    if len(candidates) == 0:
        raise SkipMetric("no code has both values (0 and 1) in the held-out rows")
    return candidates[np.argsort(-count[candidates], kind="stable")[:k]]


def code_scores(train: sp.csr_matrix, holdout: sp.csr_matrix, targets: np.ndarray, rng: np.random.Generator,
                max_rows: int, iterations: int = 50) -> CodeScores:
    """Fit the K models on ``train`` (capped at ``max_rows`` random rows) and score them on ``holdout``."""
    if train.shape[0] < MIN_TRAIN_ROWS:
        raise SkipMetric(f"needs at least {MIN_TRAIN_ROWS} training rows, got {train.shape[0]}")
    if train.shape[0] > max_rows:
        train = train[np.sort(rng.choice(train.shape[0], max_rows, replace=False))]
    allowed = np.ones((train.shape[1], len(targets)), dtype=bool)
    allowed[targets, np.arange(len(targets))] = False  # a code never predicts itself
    model = fit_logistic(train, train[:, targets].toarray(), allowed, max_iter=iterations)
    truth = holdout[:, targets].toarray() > 0
    decision = model.decision(holdout)
    return CodeScores(targets, auroc_columns(truth, decision), f1_columns(truth, decision > 0), decision)


def agreement(real: CodeScores, synthetic: CodeScores) -> dict:
    """Mean absolute AUROC / F1 gaps and the correlation of per-code AUROCs (synthetic-trained vs real-trained)."""
    ok = np.isfinite(real.auroc) & np.isfinite(synthetic.auroc)
    f1_ok = np.isfinite(real.f1) & np.isfinite(synthetic.f1)
    return {
        "dimwise_prediction_auroc_gap": float(np.abs(real.auroc[ok] - synthetic.auroc[ok]).mean()),
        "dimwise_prediction_agreement": pearson(real.auroc[ok], synthetic.auroc[ok]),
        "dimwise_prediction_auroc_mean": float(synthetic.auroc[ok].mean()),
        "dimwise_prediction_auroc_mean_real": float(real.auroc[ok].mean()),
        "dimwise_prediction_f1_gap": (float(np.abs(real.f1[f1_ok] - synthetic.f1[f1_ok]).mean()) if f1_ok.any()
                                      else Skipped("F1 is undefined for every code")),
        "dimwise_prediction_codes": int(ok.sum()),
    }
