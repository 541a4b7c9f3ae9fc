"""Each metric group on a block of bootstrap resamples at once: the registered bootstraps (``bootstrap.py``).

A bootstrap gets the comparison after its group has run on it, and a ``Draw``: how many times each synthetic,
held-out and training row is drawn in each resample of the block. Three kinds:

- fidelity of the marginals and pairs (prevalence, codes per patient, correlations, co-occurrence, categorical):
  the synthetic rows are resampled and the metric is recomputed from weighted sums against the fixed training rows,
  to the same value as the metric computed on the resampled rows (tests/test_bootstrap.py checks this);
- fitted models (discriminator, dimension-wise prediction, TSTR / TRTR): no refit; the rows the kept models scored
  are resampled (held-out rows; for the discriminator its sampled training and synthetic rows) and the AUROCs
  recomputed, so these intervals cover the noise of the evaluation rows, not that of the fit;
- privacy attacks: the attacked records (sampled training and held-out rows) and, for NNAA and copies, the synthetic
  rows are resampled; each row's nearest-neighbour distances stay those computed on the full sets.

Which rows each one resamples is registered with it (``resampled=``) and shown in the report; docs/metrics.md
explains what each interval covers and what it does not.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from ehrdiff.evaluation import fidelity, groups, prediction, privacy, utility
from ehrdiff.evaluation.bootstrap import Draw, as_number, replicate_values
from ehrdiff.evaluation.context import Comparison
from ehrdiff.evaluation.registry import bootstrap_of
from ehrdiff.evaluation.stats import (RankedScores, SkipMetric, weighted_f1_columns, weighted_means,
                                      weighted_medians)
from ehrdiff.errors import EhrdiffError


def weighted_sums(X: sp.spmatrix, weights: np.ndarray) -> np.ndarray:
    """(B, columns) column sums of ``X`` (rows, columns) under each row weighting (rows, B)."""
    return np.asarray(sp.csr_matrix(X, dtype=np.float64).T @ weights).T


def weighted_column_means(X: sp.spmatrix, weights: np.ndarray) -> np.ndarray:
    return weighted_sums(X, weights) / weights.sum(axis=0)[:, None]


def _quiet(function):
    """The point-value functions warn on an empty mean (a resample that loses a whole class); those become NaN."""
    def call(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return function(*args)
    return call


# ---- fidelity: synthetic rows resampled, training rows fixed -------------------------------------------------------
@bootstrap_of("prevalence", resampled="synthetic rows; training prevalences fixed")
def prevalence(c: Comparison, draw: Draw) -> dict:
    present = c.keep("present codes", lambda: (c.X[:, c.real.codes] != 0).astype(np.float32))
    counts = weighted_sums(present, draw.synthetic)
    shares = counts / draw.synthetic.sum(axis=0)[:, None]
    out = replicate_values(
        _quiet(lambda share: fidelity.prevalence_metrics(c.real.prevalence, share, c.config.prevalence_buckets)),
        draw.size, shares)
    out["codes_never_generated"] = ((c.real.prevalence > 0) & (counts == 0)).sum(axis=1).astype(np.float64)
    return out


@bootstrap_of("codes_per_patient", resampled="synthetic rows; training counts fixed")
def codes_per_patient(c: Comparison, draw: Draw) -> dict:
    counts = c.keep("codes per row", lambda: np.rint(np.asarray(c.X[:, c.real.codes].sum(axis=1)).ravel())
                    .astype(np.int64))
    real = np.rint(c.real.code_counts).astype(np.int64)
    weights = draw.synthetic
    top = int(max(counts.max(initial=0), real.max(initial=0))) + 1
    histogram = weighted_sums(sp.csr_matrix((np.ones(len(counts)), (np.arange(len(counts)), counts)),
                                            shape=(len(counts), top)), weights)
    total = histogram.sum(axis=1)
    # on whole numbers the 1-D Wasserstein distance is the summed gap of the two cumulative distributions
    real_cdf = np.cumsum(np.bincount(real, minlength=top)) / len(real)
    synthetic_cdf = np.cumsum(histogram, axis=1) / total[:, None]
    mean = weighted_means(counts, weights)
    return {"codes_per_patient_mean": mean, "codes_per_patient_mean_diff": mean - real.mean(),
            "codes_per_patient_wasserstein": np.abs(synthetic_cdf - real_cdf).sum(axis=1),
            "empty_row_rate": histogram[:, 0] / total}


@bootstrap_of("correlation", resampled="synthetic rows; training correlations fixed")
def correlation(c: Comparison, draw: Draw) -> dict:
    pairs = _pairs(c, c.real.correlation_columns)
    if pairs is None:
        return rerun(groups.correlation, c, draw)
    return {"correlation_distance": pairs.correlation_distances(c.real.correlation, draw.synthetic)}


@bootstrap_of("cooccurrence", resampled="synthetic rows; training co-occurrences fixed")
def cooccurrence(c: Comparison, draw: Draw) -> dict:
    pairs = _pairs(c, c.real.cooccurrence_columns)
    if pairs is None:
        return rerun(groups.cooccurrence, c, draw)
    return {"cooccurrence_distance": pairs.moments_distances(c.real.moments, draw.synthetic)}


def _pairs(c: Comparison, columns: np.ndarray) -> fidelity.PairProducts | None:
    """The synthetic rows' pair products on ``columns`` (shared by the groups that use the same columns); None when
    the rows have too many non-zero pairs to hold, and the metric is recomputed on each resample instead."""
    return c.keep(("pairs", columns.tobytes()), lambda: fidelity.PairProducts.of(c.X[:, columns]))


@bootstrap_of("continuous", resampled="synthetic rows, recomputed on each resample; training rows fixed")
def continuous(c: Comparison, draw: Draw) -> dict:
    return rerun(groups.continuous, c, draw)


@bootstrap_of("continuous_correlation", resampled="synthetic rows, recomputed on each resample; training rows fixed")
def continuous_correlation(c: Comparison, draw: Draw) -> dict:
    return rerun(groups.continuous_correlation, c, draw)


@bootstrap_of("categorical", resampled="synthetic rows; training frequencies fixed")
def categorical(c: Comparison, draw: Draw) -> dict:
    columns = np.flatnonzero(c.layout.categorical)
    real = c.keep("categorical means", lambda: fidelity.column_means(c.real.train.X[:, columns]))
    means = weighted_column_means(c.X[:, columns], draw.synthetic)
    return replicate_values(lambda m: {"categorical_tvd_mean": fidelity.categorical_tvd(real, m,
                                                                                        c.layout.source[columns])},
                            draw.size, means)


def rerun(compute, c: Comparison, draw: Draw) -> dict:
    """The group's own function on each resample of the synthetic rows (for groups that are cheap to rerun)."""
    results = []
    for i in range(draw.size):
        resampled = replace(c, synthetic=c.synthetic.rows(draw.indices(draw.synthetic, i)),
                            details=type(c.details)(), kept={})
        try:
            results.append(compute(resampled))
        except (SkipMetric, EhrdiffError):
            results.append({})
    keys = {key for result in results for key in result}
    return {key: np.array([as_number(result.get(key)) for result in results]) for key in keys}


# ---- fitted models: kept, their evaluation rows resampled ----------------------------------------------------------
@bootstrap_of("discriminator", resampled="its sampled training and synthetic rows; out-of-fold scores kept (no refit)")
def discriminate(c: Comparison, draw: Draw) -> dict:
    scores = c.kept["discriminator"]
    trees, linear = c.keep("discriminator rankings", lambda: (RankedScores(scores.is_synthetic, scores.trees),
                                                              RankedScores(scores.is_synthetic, scores.linear)))
    weights = np.vstack([draw.train[scores.real_rows], draw.synthetic[scores.synthetic_rows]])
    return {"discriminator_auroc": trees.auroc(weights), "discriminator_auroc_lr": linear.auroc(weights)}


@bootstrap_of("dimwise", resampled="held-out rows; both sets of fitted models kept (no refit)")
def dimwise(c: Comparison, draw: Draw) -> dict:
    real, synthetic = c.real.dimwise, c.kept["dimwise"]
    truth = c.keep("dimwise truth", lambda: c.real.holdout.X[:, real.targets].toarray() > 0)
    rankings = c.keep("dimwise rankings", lambda: [
        (RankedScores(truth[:, k], real.decision[:, k]), RankedScores(truth[:, k], synthetic.decision[:, k]))
        for k in range(len(real.targets))])
    weights = draw.holdout
    auroc_real = np.column_stack([r.auroc(weights) for r, _ in rankings])
    auroc_synthetic = np.column_stack([s.auroc(weights) for _, s in rankings])
    f1_real = weighted_f1_columns(truth, real.decision > 0, weights)
    f1_synthetic = weighted_f1_columns(truth, synthetic.decision > 0, weights)

    def agreement(ar, asyn, fr, fs):
        return prediction.agreement(prediction.CodeScores(real.targets, ar, fr),
                                    prediction.CodeScores(real.targets, asyn, fs))

    return replicate_values(_quiet(agreement), draw.size, auroc_real, auroc_synthetic, f1_real, f1_synthetic)


@bootstrap_of("tstr", resampled="held-out rows, classifier kept (no refit); synthetic rows for label_tvd")
def tstr(c: Comparison, draw: Draw) -> dict:
    roc, prc = utility.label_score_replicates(_label_rankings(c, "tstr", c.kept["tstr"]), draw.holdout)
    n_classes = len(c.layout.label_classes)
    real = np.bincount(c.real.train.y, minlength=n_classes) / len(c.real.train.y)
    synthetic = weighted_column_means(sp.csr_matrix(np.eye(n_classes)[c.synthetic.y]), draw.synthetic)
    return {"tstr_auroc": roc, "tstr_auprc": prc, "label_tvd": np.abs(synthetic - real).sum(axis=1) / 2}


@bootstrap_of("trtr", resampled="held-out rows, classifier kept (no refit)")
def trtr(c: Comparison, draw: Draw) -> dict:
    roc, prc = utility.label_score_replicates(_label_rankings(c, "trtr", c.real.trtr_scores), draw.holdout)
    return {"trtr_auroc": roc, "trtr_auprc": prc}


def _label_rankings(c: Comparison, name: str, scores: np.ndarray) -> list[RankedScores]:
    truth = utility.class_truth(c.real.holdout.y, len(c.layout.label_classes))
    return c.keep(f"{name} rankings", lambda: [RankedScores(truth[:, j], scores[:, j])
                                               for j in range(truth.shape[1])])


# ---- privacy: the attacked records resampled, distances kept --------------------------------------------------------
@bootstrap_of("membership", resampled="the sampled members (training) and non-members (held-out); their distances "
                                      "to the synthetic rows kept")
def membership(c: Comparison, draw: Draw) -> dict:
    d_members, d_nonmembers = c.details.distances
    members, nonmembers = c.real.attack_sample
    attack = c.keep("membership ranking", lambda: RankedScores(
        np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)], -np.r_[d_members, d_nonmembers]))
    w_members, w_nonmembers = draw.train[members], draw.holdout[nonmembers]
    weights = np.vstack([w_members, w_nonmembers])
    mean_members, mean_nonmembers = weighted_means(d_members, w_members), weighted_means(d_nonmembers, w_nonmembers)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(mean_nonmembers > 0, mean_members / mean_nonmembers, np.nan)
    return {"mia_auroc": attack.auroc(weights), "mia_accuracy": attack.best_accuracy(weights),
            "dcr_train_median": weighted_medians(d_members, w_members),
            "dcr_test_median": weighted_medians(d_nonmembers, w_nonmembers), "dcr_ratio": ratio}


@bootstrap_of("copies", resampled="synthetic rows; held-out rows for the yardstick")
def copies(c: Comparison, draw: Draw) -> dict:
    on_synthetic, on_holdout = c.kept["copies"]
    return {"exact_copy_rate": weighted_means(on_synthetic, draw.synthetic),
            "exact_copy_rate_holdout": weighted_means(on_holdout, draw.holdout)}


@bootstrap_of("nnaa", resampled="each draw's sampled training, held-out and synthetic rows; nearest-neighbour "
                          "distances kept")
def nnaa(c: Comparison, draw: Draw) -> dict:
    def accuracy(result: privacy.AdversarialRows, real_weights: np.ndarray, synthetic_weights) -> np.ndarray:
        return 0.5 * (weighted_means(result.real, real_weights) + weighted_means(result.synthetic, synthetic_weights))

    per_draw = []
    for rows in c.kept["nnaa"]:
        on_synthetic = draw.synthetic[rows.synthetic_rows]
        aa_train = accuracy(rows.train, draw.train[rows.train_rows], on_synthetic)
        aa_test = accuracy(rows.test, draw.holdout[rows.test_rows], on_synthetic)
        per_draw.append({"nnaa_train": aa_train, "nnaa_test": aa_test, "nnaa_privacy_loss": aa_test - aa_train})
    return privacy.mean_values(per_draw)


@bootstrap_of("aia", resampled="the attacked training and held-out records; the synthetic rows fixed")
def aia(c: Comparison, draw: Draw) -> dict:
    records = c.kept["aia"]

    def f1(result: privacy.InferredRecords, weights: np.ndarray) -> np.ndarray:
        denominator = result.inferred_and_true @ weights
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, 2 * (result.hits @ weights) / denominator, np.nan)

    f1_train = f1(records["train"], draw.train[records["train"].rows])
    f1_test = f1(records["test"], draw.holdout[records["test"].rows])
    return {"aia_f1_train": f1_train, "aia_f1_test": f1_test, "aia_f1_gap": f1_train - f1_test}
