"""Privacy: what synthetic rows reveal about the real training rows, measured against real held-out (test) rows.

Distances are Hamming on 0/1 tables and Euclidean on the encoded [0, 1] matrix otherwise (``neighbours``).
Held-out rows are the yardstick throughout: a synthetic set leaks when it is closer to, copies, or lets an attacker
infer more about training records than about comparable records the generator never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ehrdiff.evaluation.neighbours import Space, nearest, nearest_distance
from ehrdiff.evaluation.rows import row_ids, unique_rows
from ehrdiff.evaluation.stats import SkipMetric, Skipped, auroc, best_accuracy


# ---- membership inference and distance to closest record --------------------------------------------------------
def membership(d_members: np.ndarray, d_nonmembers: np.ndarray) -> dict:
    """Attack: a record is a member when its nearest synthetic record is close. Balanced samples: 0.5 is ideal."""
    y = np.r_[np.ones(len(d_members), bool), np.zeros(len(d_nonmembers), bool)]
    score = -np.r_[d_members, d_nonmembers]
    return {"mia_auroc": auroc(y, score), "mia_accuracy": best_accuracy(y, score)}


def distance_to_closest(d_members: np.ndarray, d_nonmembers: np.ndarray) -> dict:
    """Distance of training vs held-out records to their closest synthetic record (ratio 1 is ideal, < 1 leaks).

    The ratio uses means: on 0/1 code data the distances are small integers, and a ratio of medians (e.g. 3/4)
    moves in coarse steps and is undefined as soon as half of the held-out records have an exact synthetic copy."""
    test_mean = float(np.mean(d_nonmembers))
    return {
        "dcr_train_median": float(np.median(d_members)),
        "dcr_test_median": float(np.median(d_nonmembers)),
        "dcr_ratio": (float(np.mean(d_members)) / test_mean if test_mean > 0 else
                      Skipped("every held-out record has an exact synthetic copy (mean distance 0)")),
    }


# ---- exact copies ------------------------------------------------------------------------------------------------
def copy_rates(train: np.ndarray, synthetic: np.ndarray, holdout: np.ndarray) -> dict:
    """Share of synthetic rows identical to a training row, and the same share for real held-out rows.

    Arguments are row fingerprints (``rows.fingerprints``) computed with the same 0/1 columns."""
    return copy_rate_values(*identical_rows(train, synthetic, holdout))


def copy_rate_values(on_synthetic: np.ndarray, on_holdout: np.ndarray) -> dict:
    """The two rates from the per-row flags of ``identical_rows``."""
    return {"exact_copy_rate": float(on_synthetic.mean()), "exact_copy_rate_holdout": float(on_holdout.mean())}


def identical_shares(train: np.ndarray, *groups: np.ndarray) -> list[float]:
    """For each group of rows, the share identical to some training row (rows: equal-width 2-D arrays)."""
    return [float(flags.mean()) for flags in identical_rows(train, *groups)]


def identical_rows(train: np.ndarray, *groups: np.ndarray) -> list[np.ndarray]:
    """For each group of rows, which of its rows are identical to some training row (one bool per row)."""
    ids = row_ids(np.vstack([train, *groups]))
    in_train = np.zeros(ids.max() + 1, dtype=bool)
    in_train[ids[:len(train)]] = True
    bounds = np.cumsum([len(train)] + [len(g) for g in groups])
    return [in_train[ids[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]


# ---- nearest-neighbour adversarial accuracy ----------------------------------------------------------------------
def _greater(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: 1 where a > b, one half on ties (integer distances tie often; exchangeable samples then give 0.5)."""
    return (a > b) + 0.5 * (a == b)


@dataclass
class AdversarialRows:
    """Per sampled row, whether its nearest neighbour in the other set is farther than its own set's nearest
    (ties one half): AA = 1/2 [mean(real) + mean(synthetic)]."""

    real: np.ndarray        # d_RS > d_RR per real row
    synthetic: np.ndarray   # d_SR > d_SS per synthetic row

    @property
    def accuracy(self) -> float:
        return 0.5 * (float(np.mean(self.real)) + float(np.mean(self.synthetic)))


def adversarial_rows(space: Space, real: sp.csr_matrix, synthetic: sp.csr_matrix,
                     synthetic_self: np.ndarray) -> AdversarialRows:
    """Yale et al. (2020): AA = 1/2 [P(d_RS > d_RR) + P(d_SR > d_SS)] with leave-one-out d_RR and d_SS."""
    d_rs = nearest_distance(space, real, synthetic)
    d_rr = nearest_distance(space, real, real, exclude_self=True)
    d_sr = nearest_distance(space, synthetic, real)
    return AdversarialRows(_greater(d_rs, d_rr), _greater(d_sr, synthetic_self))


def adversarial_accuracy(space: Space, real: sp.csr_matrix, synthetic: sp.csr_matrix,
                         synthetic_self: np.ndarray) -> float:
    return adversarial_rows(space, real, synthetic, synthetic_self).accuracy


@dataclass
class NnaaRows:
    """The rows one NNAA draw sampled (indices into the training, test and synthetic sets) and their per-row
    results."""

    train_rows: np.ndarray
    test_rows: np.ndarray
    synthetic_rows: np.ndarray
    train: AdversarialRows      # training sample against the synthetic sample
    test: AdversarialRows       # test sample against the same synthetic sample

    def values(self) -> dict:
        aa_train, aa_test = self.train.accuracy, self.test.accuracy
        return {"nnaa_train": aa_train, "nnaa_test": aa_test, "nnaa_privacy_loss": aa_test - aa_train}


def mean_values(draws: list[dict]) -> dict:
    """The metrics of several NNAA draws averaged, key by key."""
    return {key: sum(d[key] for d in draws) / len(draws) for key in draws[0]}


def nnaa(space: Space, train: sp.csr_matrix, test: sp.csr_matrix, synthetic: sp.csr_matrix,
         rng: np.random.Generator, max_rows: int, draws: int = 1) -> dict:
    """AA_train, AA_test (equal-size samples of training, test and synthetic rows) and their difference, averaged
    over ``draws`` independent samples."""
    return mean_values([d.values() for d in nnaa_rows(space, train, test, synthetic, rng, max_rows, draws)])


def nnaa_rows(space: Space, train: sp.csr_matrix, test: sp.csr_matrix, synthetic: sp.csr_matrix,
              rng: np.random.Generator, max_rows: int, draws: int = 1) -> list[NnaaRows]:
    """The samples and per-row results behind ``nnaa`` (same arguments), one NnaaRows per draw. The sets are sampled
    down to the smallest one's size (Yale et al. compare equal sizes, as a nearest neighbour's distance depends on
    the set's size); when the training or synthetic set is larger, one draw sees a fraction of it, so several draws
    average out which rows were drawn (the estimate's main noise on small test sets)."""
    n = min(train.shape[0], test.shape[0], synthetic.shape[0], max_rows)
    if n < 2:
        raise SkipMetric(f"needs at least 2 training, test and synthetic rows, got {n}")
    pick = lambda X: np.sort(rng.choice(X.shape[0], n, replace=False))  # noqa: E731
    results = []
    for _ in range(draws):
        synthetic_rows = pick(synthetic)
        sample = synthetic[synthetic_rows]
        d_ss = nearest_distance(space, sample, sample, exclude_self=True)
        train_rows = pick(train)
        on_train = adversarial_rows(space, train[train_rows], sample, d_ss)
        test_rows = pick(test)
        on_test = adversarial_rows(space, test[test_rows], sample, d_ss)
        results.append(NnaaRows(train_rows, test_rows, synthetic_rows, on_train, on_test))
    return results


# ---- attribute inference -----------------------------------------------------------------------------------------
def known_and_unknown(train: sp.csr_matrix, codes: np.ndarray, known: int) -> tuple[np.ndarray, np.ndarray]:
    """The attacker knows the ``known`` commonest codes (at most half of them); the other codes are inferred."""
    index = np.flatnonzero(codes)
    if len(index) < 2:
        raise SkipMetric("attribute inference needs at least 2 binary code columns")
    count = np.bincount(train.indices, minlength=train.shape[1])[index]
    order = index[np.argsort(-count, kind="stable")]
    k = min(known, len(index) // 2)
    return np.sort(order[:k]), np.sort(order[k:])


@dataclass
class InferredRecords:
    """The attacked records of one set (indices) and, per record, the correctly inferred unknown codes and the
    inferred plus the true ones: F1 = 2 sum(hits) / sum(inferred_and_true)."""

    rows: np.ndarray
    hits: np.ndarray
    inferred_and_true: np.ndarray

    def f1(self, name: str) -> float | Skipped:
        denominator = self.inferred_and_true.sum()
        if denominator == 0:
            return Skipped(f"no {name} record has an unknown code and none was inferred")
        return float(2 * self.hits.sum() / denominator)


def attribute_inference(train: sp.csr_matrix, test: sp.csr_matrix, synthetic: sp.csr_matrix, known: np.ndarray,
                        unknown: np.ndarray, rng: np.random.Generator, max_rows: int, neighbours: int,
                        space_options: dict) -> dict:
    """F1 of inferring each record's unknown codes from its k nearest synthetic records on the known codes
    (a code is inferred present when at least half of the k neighbours have it); training vs test records."""
    records = inferred_records(train, test, synthetic, known, unknown, rng, max_rows, neighbours, space_options)
    return attribute_inference_values(records["train"].f1("train"), records["test"].f1("test"))


def attribute_inference_values(f1_train: float | Skipped, f1_test: float | Skipped) -> dict:
    out = {"aia_f1_train": f1_train, "aia_f1_test": f1_test}
    if isinstance(f1_train, float) and isinstance(f1_test, float):
        out["aia_f1_gap"] = f1_train - f1_test
    else:
        out["aia_f1_gap"] = Skipped("F1 is undefined on the training or the test records")
    return out


def inferred_records(train: sp.csr_matrix, test: sp.csr_matrix, synthetic: sp.csr_matrix, known: np.ndarray,
                     unknown: np.ndarray, rng: np.random.Generator, max_rows: int, neighbours: int,
                     space_options: dict) -> dict[str, InferredRecords]:
    """{"train": ..., "test": ...}: the per-record results behind ``attribute_inference`` (same arguments)."""
    n = min(train.shape[0], test.shape[0], max_rows)
    if n < 1 or synthetic.shape[0] < neighbours:
        raise SkipMetric(f"needs at least 1 training and test row and {neighbours} synthetic rows")
    # ties (many records share their known codes) go to the first tied row in a random order of the synthetic rows;
    # with one neighbour, only the first row of each distinct known-code set can win, so the others are dropped
    synthetic = synthetic[rng.permutation(synthetic.shape[0])]
    if neighbours == 1:
        synthetic = synthetic[unique_rows(synthetic[:, known])[0]]
    space = Space.fit(synthetic[:, known], np.zeros(len(known), bool), **space_options)
    synthetic_points = space.points(synthetic[:, known])
    synthetic_unknown = synthetic[:, unknown].tocsr()
    out = {}
    for name, real in (("train", train), ("test", test)):
        picked = np.sort(rng.choice(real.shape[0], n, replace=False))
        rows = real[picked]
        first, ids, _ = unique_rows(rows[:, known])
        _, index = nearest(space, space.points(rows[first][:, known]), synthetic_points, k=neighbours)
        index = index[ids]
        votes = sum(synthetic_unknown[index[:, j]] for j in range(neighbours))
        predicted = (votes.multiply(1.0 / neighbours) >= 0.5).astype(np.float32) if neighbours > 1 else votes
        truth = rows[:, unknown]
        out[name] = InferredRecords(picked, _row_sums(predicted.multiply(truth)),
                                    _row_sums(predicted) + _row_sums(truth))
    return out


def _row_sums(X: sp.spmatrix) -> np.ndarray:
    return np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
