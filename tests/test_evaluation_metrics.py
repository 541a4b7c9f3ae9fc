"""Each metric on tiny matrices whose answers are worked out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ehrdiff.evaluation import fidelity, privacy
from ehrdiff.evaluation.neighbours import Space
from ehrdiff.evaluation.rows import fingerprints
from ehrdiff.evaluation.stats import Skipped


def csr(rows) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(rows, dtype=np.float32))


def test_prevalence_agreement_by_hand():
    real, synthetic = np.array([0.5, 0.25, 0.0]), np.array([0.25, 0.25, 0.0])
    out = fidelity.prevalence_metrics(real, synthetic, (0.001, 0.3))
    # differences (-0.25, 0, 0): RMSE sqrt(0.0625 / 3), max 0.25; Pearson = Spearman = sqrt(3)/2 (see stats test)
    assert out["prevalence_rmse"] == pytest.approx(np.sqrt(0.0625 / 3))
    assert out["prevalence_max_abs_diff"] == pytest.approx(0.25)
    assert out["prevalence_pearson"] == pytest.approx(np.sqrt(3) / 2)
    assert out["prevalence_spearman"] == pytest.approx(np.sqrt(3) / 2)
    # buckets by training prevalence: rare {0.0}, medium {0.25}, common {0.5}: one code each -> skipped
    assert all(isinstance(out[f"prevalence_{b}_pearson"], Skipped) for b in ("rare", "medium", "common"))


def test_codes_never_generated_and_codes_per_patient():
    # codes 1 and 3 occur in training but never in synthetic; code 2 never occurs in training
    assert fidelity.codes_never_generated(np.array([0.5, 0.25, 0.0, 0.1]), np.array([3, 0, 0, 0])) == 2
    out = fidelity.codes_per_patient(np.array([1, 2, 3]), np.array([0, 2, 4]))
    # sorted pairs (1,0), (2,2), (3,4): Wasserstein = (1 + 0 + 1) / 3
    assert out["codes_per_patient_mean"] == 2 and out["codes_per_patient_mean_diff"] == 0
    assert out["codes_per_patient_wasserstein"] == pytest.approx(2 / 3)
    assert out["empty_row_rate"] == pytest.approx(1 / 3)


def test_correlation_distance_by_hand_with_a_constant_column():
    # real: a = b (correlation 1), c uncorrelated with both; synthetic: a = 1 - b (correlation -1), c constant
    real = csr([[1, 1, 1], [1, 1, 0], [0, 0, 1], [0, 0, 0]])
    synthetic = csr([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]])
    # only the two (a, b) entries differ, by 2 each: Frobenius sqrt(8); the constant column adds nothing
    assert fidelity.correlation_distance(fidelity.correlation_matrix(real), synthetic) == pytest.approx(np.sqrt(8))
    assert fidelity.correlation_distance(fidelity.correlation_matrix(real), real) == pytest.approx(0)


def test_cooccurrence_distance_by_hand():
    # P(a and b): real 2/4, synthetic 1/4 -> relative distance 0.25 / 0.5 over the two off-diagonal entries
    real = csr([[1, 1], [1, 1], [0, 0], [0, 0]])
    synthetic = csr([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert fidelity.cooccurrence_distance(fidelity.second_moments(real), synthetic) == pytest.approx(0.5)


def test_continuous_and_categorical_distances():
    real = np.array([[0.0], [0.5], [1.0], [0.0]])
    synthetic = np.array([[0.0], [0.0], [0.0], [0.0]])
    real_missing = np.array([[False], [False], [False], [True]])
    out = fidelity.continuous_metrics(real, synthetic, real_missing, np.zeros((4, 1), bool))
    # observed real {0, .5, 1} vs synthetic {0, 0, 0, 0}: KS = 1 - 1/3; Wasserstein = (0 + .5 + 1) / 3
    assert out["continuous_ks_mean"] == pytest.approx(2 / 3)
    assert out["continuous_wasserstein_mean"] == pytest.approx(0.5)
    assert out["continuous_missing_rate_diff"] == pytest.approx(0.25)
    # two categorical columns: (0.5, 0.5) vs (1, 0) -> TVD 0.5; (0.2, 0.8) vs (0.2, 0.8) -> 0
    tvd = fidelity.categorical_tvd(np.array([0.5, 0.5, 0.2, 0.8]), np.array([1.0, 0.0, 0.2, 0.8]),
                                   np.array([3, 3, 4, 4]))
    assert tvd == pytest.approx(0.25)


def test_membership_and_distance_to_closest_by_hand():
    members, nonmembers = np.array([0, 0, 1, 2.0]), np.array([1, 2, 2, 3.0])
    out = privacy.membership(members, nonmembers)
    # closer = member; pairs won: 4 + 4 (the zeros) + 3.5 (the 1) + 2 (the 2: two ties, one win) = 13.5 of 16
    assert out["mia_auroc"] == pytest.approx(13.5 / 16)
    # best rule "member when distance <= 0": 2 members right, 4 non-members right -> 6 / 8
    assert out["mia_accuracy"] == pytest.approx(0.75)
    dcr = privacy.distance_to_closest(members, nonmembers)
    assert dcr["dcr_train_median"] == 0.5 and dcr["dcr_test_median"] == 2
    assert dcr["dcr_ratio"] == pytest.approx(0.75 / 2)
    assert isinstance(privacy.distance_to_closest(members, np.zeros(4))["dcr_ratio"], Skipped)


def test_exact_copy_rates_by_hand():
    a, b, c, d, e = [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1]
    zero_one = np.ones(3, bool)
    out = privacy.copy_rates(fingerprints(csr([a, b]), zero_one), fingerprints(csr([a, c, a, d]), zero_one),
                             fingerprints(csr([b, e]), zero_one))
    assert out == {"exact_copy_rate": 0.5, "exact_copy_rate_holdout": 0.5}


def test_adversarial_accuracy_by_hand():
    real = csr([[1, 0, 0], [0, 1, 0]])
    synthetic = csr([[1, 0, 0], [0, 0, 1]])
    space = Space.fit(real, np.zeros(3, bool))
    # d_RS = (0, 2), d_RR = (2, 2), d_SR = (0, 2), d_SS = (2, 2): each side has one "<" and one tie (1/2)
    # AA = 1/2 (1/4 + 1/4) = 1/4
    assert privacy.adversarial_accuracy(space, real, synthetic, np.array([2.0, 2.0])) == pytest.approx(0.25)


def test_nnaa_detects_copies():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((300, 40)) < 0.2).astype(np.float32))
    test = sp.csr_matrix((rng.random((300, 40)) < 0.2).astype(np.float32))
    space = Space.fit(train, np.zeros(40, bool))
    copied = privacy.nnaa(space, train, test, train.copy(), np.random.default_rng(1), 300)
    # every training row has a copy at distance 0: AA_train is 0 and AA_test is far above it
    assert copied["nnaa_train"] == pytest.approx(0.0)
    assert copied["nnaa_privacy_loss"] > 0.3


def test_nnaa_averages_independent_draws():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((900, 30)) < 0.2).astype(np.float32))
    test = sp.csr_matrix((rng.random((200, 30)) < 0.2).astype(np.float32))
    synthetic = sp.csr_matrix((rng.random((600, 30)) < 0.2).astype(np.float32))
    space = Space.fit(train, np.zeros(30, bool))
    draws = privacy.nnaa_rows(space, train, test, synthetic, np.random.default_rng(1), 5000, draws=4)
    assert len(draws) == 4
    # each draw takes the smallest set's size from every set; the larger sets are sampled afresh each time
    assert all(len(d.train_rows) == len(d.synthetic_rows) == 200 for d in draws)
    assert len({tuple(d.train_rows) for d in draws}) == 4 and len({tuple(d.synthetic_rows) for d in draws}) == 4
    averaged = privacy.nnaa(space, train, test, synthetic, np.random.default_rng(1), 5000, draws=4)
    losses = [d.values()["nnaa_privacy_loss"] for d in draws]
    assert averaged["nnaa_privacy_loss"] == pytest.approx(np.mean(losses))
    assert np.std(losses) > 0          # the draws differ, which is what averaging them is for


def test_attribute_inference_by_hand():
    # columns: two known codes, then two unknown codes
    synthetic = csr([[1, 0, 1, 0], [0, 1, 0, 1]])
    train = csr([[1, 0, 1, 0]])   # nearest synthetic row is the first: infers (1, 0), right -> F1 1
    test = csr([[0, 1, 1, 0]])    # nearest is the second: infers (0, 1), wrong -> F1 0
    out = privacy.attribute_inference(train, test, synthetic, np.array([0, 1]), np.array([2, 3]),
                                      np.random.default_rng(0), 10, 1, {})
    assert out == {"aia_f1_train": 1.0, "aia_f1_test": 0.0, "aia_f1_gap": 1.0}


def test_known_codes_are_the_commonest_and_at_most_half():
    X = csr([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])
    known, unknown = privacy.known_and_unknown(X, np.ones(4, bool), known=3)
    assert known.tolist() == [0, 1] and unknown.tolist() == [2, 3]
