"""Real-versus-synthetic discriminators: gradient-boosted trees and logistic regression, cross-validated AUROC on the
same folds (0.5 = indistinguishable).

Trees see co-occurrence, not only marginals, so they tell codes drawn independently at the right rates (the
reference:independent rows) from real patients. For speed the sample is balanced and capped, and columns with fewer
non-zero entries than a tree leaf needs are pooled into one feature: the row's count of such rare codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from ehrdiff.evaluation.rows import fingerprints, row_ids
from ehrdiff.evaluation.stats import SkipMetric, auroc

MIN_LEAF = 20          # HistGradientBoosting's min_samples_leaf: rarer columns cannot be split on alone
MIN_ROWS_PER_FOLD = 5


@dataclass
class DiscriminatorScores:
    """Out-of-fold scores of the sampled rows, real rows first: what the AUROCs (and their bootstrap) are made of."""

    real_rows: np.ndarray        # the sampled real rows (indices)
    synthetic_rows: np.ndarray   # the sampled synthetic rows (indices)
    trees: np.ndarray            # (2n,) scores of the gradient-boosted trees
    linear: np.ndarray           # (2n,) scores of the logistic regression

    @property
    def is_synthetic(self) -> np.ndarray:
        return np.r_[np.zeros(len(self.real_rows), bool), np.ones(len(self.synthetic_rows), bool)]

    def aurocs(self) -> dict[str, float]:
        return {"discriminator_auroc": auroc(self.is_synthetic, self.trees),
                "discriminator_auroc_lr": auroc(self.is_synthetic, self.linear)}


def discriminator_auroc(real: sp.csr_matrix, synthetic: sp.csr_matrix, rng: np.random.Generator, max_rows: int,
                        folds: int, iterations: int, seed: int, threads: int | None = None) -> dict[str, float]:
    """Pooled out-of-fold AUROC of the trees (``discriminator_auroc``) and of an L2 logistic regression on every
    column (``discriminator_auroc_lr``: it sees each code's rate but no interaction). ``threads``: OpenMP threads
    for the trees (None: 1, see ``tree_threads``)."""
    return discriminator_scores(real, synthetic, rng, max_rows, folds, iterations, seed, threads).aurocs()


def discriminator_scores(real: sp.csr_matrix, synthetic: sp.csr_matrix, rng: np.random.Generator, max_rows: int,
                         folds: int, iterations: int, seed: int, threads: int | None = None) -> DiscriminatorScores:
    """The sample and the out-of-fold scores behind ``discriminator_auroc`` (same arguments)."""
    n = min(real.shape[0], synthetic.shape[0], max_rows)
    if n < MIN_ROWS_PER_FOLD * folds:
        raise SkipMetric(f"needs at least {MIN_ROWS_PER_FOLD * folds} real and synthetic rows, got {n}")
    real_rows = np.sort(rng.choice(real.shape[0], n, replace=False))
    synthetic_rows = np.sort(rng.choice(synthetic.shape[0], n, replace=False))
    X = sp.vstack([real[real_rows], synthetic[synthetic_rows]], format="csc")
    y = np.r_[np.zeros(n), np.ones(n)]
    nonzero = np.diff(X.indptr)
    keep = nonzero >= MIN_LEAF
    features = X[:, np.flatnonzero(keep)].toarray()
    if (~keep).any():
        pooled = np.asarray(X[:, np.flatnonzero(~keep)].sum(axis=1)).ravel()
        features = np.column_stack([features, pooled])
    # identical rows share a fold: otherwise a copied training row in one class "predicts" its twin in the other
    # class (synthetic copies of real rows would score far below 0.5). Distinct rows go to folds in random order;
    # with balanced classes the folds stay close to balanced.
    groups = row_ids(fingerprints(X.tocsr()))
    n_groups = int(groups.max()) + 1
    if n_groups < folds:
        raise SkipMetric(f"the real and synthetic rows hold only {n_groups} distinct rows, fewer than the "
                         f"{folds} cross-validation folds")
    fold_of = (np.random.default_rng(seed).permutation(n_groups) % folds)[groups]
    scores, linear_scores = np.empty(2 * n), np.empty(2 * n)
    X = X.tocsr()
    for fold in range(folds):
        train, test = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        if len(np.unique(y[train])) < 2:
            raise SkipMetric("a cross-validation fold holds one class only (too few distinct rows)")
        model = HistGradientBoostingClassifier(max_iter=iterations, early_stopping=False, random_state=seed + fold)
        with tree_threads(threads):
            model.fit(features[train], y[train])
            scores[test] = model.predict_proba(features[test])[:, 1]
        linear = LogisticRegression(C=1.0, max_iter=500).fit(X[train], y[train])
        linear_scores[test] = linear.decision_function(X[test])
    return DiscriminatorScores(real_rows, synthetic_rows, scores, linear_scores)


def tree_threads(threads: int | None):
    """OpenMP threads for scikit-learn's gradient boosting: ``threads``, or 1 when unset.

    The samples here are small (thousands of rows), where extra threads gain little, and OpenMP threads that wait
    for each other spin: on a few cores shared with other jobs, more threads can be much slower than one
    (benchmarks/bench_evaluate.py times both; docs/results.md)."""
    return threadpool_limits(threads or 1, user_api="openmp")
