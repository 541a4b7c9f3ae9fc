"""Building blocks of the evaluation against hand-computed values and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from ehrdiff.evaluation.logistic import fit_logistic
from ehrdiff.evaluation.neighbours import Space, nearest, nearest_distance
from ehrdiff.evaluation.rows import fingerprints, row_ids, unique_rows
from ehrdiff.evaluation.stats import (Skipped, auroc, auroc_columns, average_precision, best_accuracy, f1_columns,
                                      pearson, spearman)


def test_auroc_counts_ties_as_half():
    # positive/negative pairs: (0.9,0.4)=1, (0.9,0.1)=1, (0.4,0.4)=0.5, (0.4,0.1)=1 -> 3.5 / 4
    assert auroc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(0.875)


def test_auroc_columns_matches_sklearn_and_marks_one_class_columns():
    rng = np.random.default_rng(0)
    y = rng.random((200, 3)) < 0.3
    y[:, 2] = False
    scores = np.round(rng.random((200, 3)), 1) + y * 0.2  # rounded: many ties
    result = auroc_columns(y, scores)
    for j in range(2):
        assert result[j] == pytest.approx(roc_auc_score(y[:, j], scores[:, j]))
    assert np.isnan(result[2])


def test_average_precision_by_hand_and_against_sklearn():
    # thresholds 0.9 (P=1, R=.5), 0.8 (P=.5, R=.5), 0.7 (P=2/3, R=1), 0.1: AP = .5*1 + .5*2/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 1 / 3)
    # a tie at the top: one step with precision 1/2, then 2/3
    assert average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(0.25 + 1 / 3)
    rng = np.random.default_rng(1)
    y, s = rng.random(300) < 0.2, np.round(rng.random(300), 2)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_f1_columns_and_best_accuracy():
    f1 = f1_columns([[1, 0], [1, 0], [0, 0]], [[1, 0], [0, 0], [1, 0]])
    assert f1[0] == pytest.approx(0.5) and np.isnan(f1[1])
    # thresholds: none (0.5), >=3 (0.75), >=2 (0.5), >=1 (0.75), >=0 (0.5)
    assert best_accuracy(np.array([1, 1, 0, 0], bool), [3, 1, 2, 0]) == pytest.approx(0.75)


def test_correlations_skip_constant_input():
    assert isinstance(pearson([1, 1, 1], [1, 2, 3]), Skipped)
    assert pearson([0.5, 0.25, 0.0], [0.25, 0.25, 0.0]) == pytest.approx(np.sqrt(3) / 2)
    assert spearman([0.5, 0.25, 0.0], [0.25, 0.25, 0.0]) == pytest.approx(np.sqrt(3) / 2)


def test_logistic_matches_scikit_learn():
    rng = np.random.default_rng(2)
    X = (rng.random((400, 12)) < 0.3).astype(np.float32)
    logits = X @ rng.normal(0, 1.5, 12) - 1
    y = (rng.random(400) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    ours = fit_logistic(sp.csr_matrix(X), y[:, None], max_iter=500, tol=1e-7)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(X, y)
    assert np.allclose(ours.W[:, 0], reference.coef_[0], atol=2e-3)
    assert ours.b[0] == pytest.approx(reference.intercept_[0], abs=2e-3)


def test_logistic_mask_keeps_weights_at_zero_and_constant_targets_constant():
    rng = np.random.default_rng(3)
    X = (rng.random((300, 5)) < 0.4).astype(np.float32)
    Y = np.column_stack([X[:, 0], np.zeros(300)])
    allowed = np.ones((5, 2), bool)
    allowed[0, 0] = False
    model = fit_logistic(sp.csr_matrix(X), Y, allowed)
    assert model.W[0, 0] == 0 and np.all(model.W[:, 1] == 0)
    assert np.ptp(model.decision(sp.csr_matrix(X))[:, 1]) == 0


def test_hamming_nearest_by_hand():
    X = sp.csr_matrix(np.array([[1, 1, 0, 0]], np.float32))
    R = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0]], np.float32))
    space = Space.fit(R, np.zeros(4, bool))
    d, i = nearest(space, space.points(X), space.points(R), k=3)
    assert d.tolist() == [[0, 1, 4]] and i.tolist() == [[2, 0, 1]]
    S = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], np.float32))
    points = Space.fit(S, np.zeros(3, bool)).points(S)
    assert nearest(Space.fit(S, np.zeros(3, bool)), points, points, exclude_self=True)[0][:, 0].tolist() == [1, 1, 2]


def _random_codes(rng, n, d, p=0.02):
    return sp.csr_matrix((rng.random((n, d)) < p).astype(np.float32))


def test_dense_plus_sparse_split_equals_brute_force():
    rng = np.random.default_rng(4)
    Q, R = _random_codes(rng, 70, 300), _random_codes(rng, 90, 300)
    space = Space.fit(R, np.zeros(300, bool), dense_columns=8, block_elements=500)  # several blocks
    assert len(space.sparse) > 0
    d, i = nearest(space, space.points(Q), space.points(R), k=2)
    brute = cdist(Q.toarray(), R.toarray(), "cityblock")
    assert np.array_equal(d[:, 0], brute.min(axis=1))
    assert np.array_equal(d[:, 1], np.sort(brute, axis=1)[:, 1])
    assert np.array_equal(brute[np.arange(70), i[:, 0]], d[:, 0])


def test_euclidean_with_continuous_columns():
    rng = np.random.default_rng(5)
    Q, R = rng.random((20, 6)), rng.random((30, 6))
    Q[:, 3:] = Q[:, 3:] > 0.5
    R[:, 3:] = R[:, 3:] > 0.5
    continuous = np.array([True, True, True, False, False, False])
    space = Space.fit(sp.csr_matrix(R), continuous)
    assert not space.hamming
    d, _ = nearest(space, space.points(sp.csr_matrix(Q)), space.points(sp.csr_matrix(R)))
    assert np.allclose(d[:, 0], cdist(Q, R).min(axis=1), atol=1e-5)


def test_deduplicated_distances_equal_brute_force():
    rng = np.random.default_rng(6)
    base = _random_codes(rng, 15, 300, 0.03)
    Q = base[rng.integers(0, 15, 60)]     # many repeated rows
    R = base[rng.integers(5, 15, 40)]
    space = Space.fit(R, np.zeros(300, bool), dense_columns=8)
    brute = cdist(Q.toarray(), R.toarray(), "cityblock")
    assert np.array_equal(nearest_distance(space, Q, R), brute.min(axis=1))
    loo = cdist(Q.toarray(), Q.toarray(), "cityblock")
    np.fill_diagonal(loo, np.inf)
    assert np.array_equal(nearest_distance(space, Q, Q, exclude_self=True), loo.min(axis=1))


def test_row_ids_and_unique_rows():
    X = sp.csr_matrix(np.array([[1, 0, 0.5], [0, 1, 0], [1, 0, 0.5], [1, 0, 0.25]], np.float32))
    ids = row_ids(fingerprints(X))
    assert ids[0] == ids[2] and len({ids[0], ids[1], ids[3]}) == 3
    first, which, counts = unique_rows(X)
    assert first.tolist() == [0, 1, 3] and which.tolist() == [0, 1, 0, 2] and counts.tolist() == [2, 1, 1]
