"""Every metric group of the evaluation, in report order: one function each, registered with the metrics it returns.

A group gets one ``Comparison`` (``c``): the synthetic rows ``c.X``, the real data ``c.real`` (training and held-out
rows and the values derived from them once, see ``context.RealData``), ``c.layout``, ``c.config`` and ``c.rng``.
It returns {metric key: value}; a value may be ``Skipped(reason)``, and ``SkipMetric`` skips the whole group.
The computations themselves live in fidelity.py, prediction.py, discriminator.py, utility.py and privacy.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ehrdiff.evaluation import discriminator, fidelity, prediction, privacy, rows, utility
from ehrdiff.evaluation.context import Comparison
from ehrdiff.evaluation.inputs import Layout
from ehrdiff.evaluation.neighbours import nearest_distance
from ehrdiff.evaluation.registry import metric_group
from ehrdiff.evaluation.stats import SkipMetric


def _prevalence_metrics() -> list[tuple[str, str, str]]:
    out = []
    for scope, what in (("", "all codes"), ("rare_", "rare codes"), ("medium_", "medium codes"),
                        ("common_", "common codes")):
        out += [(f"prevalence_{scope}pearson", "higher (1)",
                 f"Pearson correlation of per-code prevalence, synthetic vs training ({what})"),
                (f"prevalence_{scope}spearman", "higher (1)", f"Spearman correlation of per-code prevalence ({what})"),
                (f"prevalence_{scope}rmse", "lower (0)", f"root mean squared prevalence difference ({what})"),
                (f"prevalence_{scope}max_abs_diff", "lower (0)", f"largest absolute prevalence difference ({what})")]
    return out


# ---- fidelity of the binary codes ---------------------------------------------------------------------------------
@metric_group("prevalence", "fidelity", [
    *_prevalence_metrics(),
    ("codes_never_generated", "lower (0)", "codes present in the training data that no synthetic row has")])
def prevalence(c: Comparison) -> dict:
    c.require_codes()
    counts = np.asarray((c.X[:, c.real.codes] != 0).sum(axis=0)).ravel()
    synthetic = counts / c.X.shape[0]
    c.details.prevalence = pd.DataFrame({"code": [c.layout.names[j] for j in c.real.codes],
                                         "training": c.real.prevalence, "synthetic": synthetic})
    result = fidelity.prevalence_metrics(c.real.prevalence, synthetic, c.config.prevalence_buckets)
    result["codes_never_generated"] = fidelity.codes_never_generated(c.real.prevalence, counts)
    return result


@metric_group("codes_per_patient", "fidelity", [
    ("codes_per_patient_mean", "= training mean", "mean number of codes per synthetic row"),
    ("codes_per_patient_mean_diff", "0", "synthetic minus training mean codes per row"),
    ("codes_per_patient_wasserstein", "lower (0)", "Wasserstein distance between the codes-per-row distributions"),
    ("empty_row_rate", "= training rate", "share of synthetic rows without any code")])
def codes_per_patient(c: Comparison) -> dict:
    c.require_codes()
    counts = np.asarray(c.X[:, c.real.codes].sum(axis=1)).ravel()
    c.details.codes_per_patient = (np.bincount(c.real.code_counts.astype(np.int64)),
                                   np.bincount(counts.astype(np.int64)))
    return fidelity.codes_per_patient(c.real.code_counts, counts)


@metric_group("correlation", "fidelity", [
    ("correlation_distance", "lower (0)", "Frobenius norm of the difference of the column correlation matrices")])
def correlation(c: Comparison) -> dict:
    return {"correlation_distance": fidelity.correlation_distance(c.real.correlation,
                                                                  c.X[:, c.real.correlation_columns])}


@metric_group("cooccurrence", "fidelity", [
    ("cooccurrence_distance", "lower (0)", "relative Frobenius distance of the pairwise co-occurrence probabilities")])
def cooccurrence(c: Comparison) -> dict:
    c.require_codes()
    return {"cooccurrence_distance": fidelity.cooccurrence_distance(c.real.moments,
                                                                   c.X[:, c.real.cooccurrence_columns])}


@metric_group("discriminator", "fidelity", [
    ("discriminator_auroc", "0.5",
     "cross-validated AUROC of gradient-boosted trees telling real from synthetic rows"),
    ("discriminator_auroc_lr", "0.5", "the same with logistic regression on every column (rates, no interactions)")])
def discriminate(c: Comparison) -> dict:
    config = c.config
    scores = discriminator.discriminator_scores(c.real.train.X, c.X, c.rng("discriminator"),
                                                config.discriminator_max_rows, config.discriminator_folds,
                                                config.discriminator_iterations, c.real.seed, config.threads)
    c.kept["discriminator"] = scores
    return scores.aurocs()


@metric_group("dimwise", "fidelity", [
    ("dimwise_prediction_auroc_gap", "lower (0)",
     "mean |AUROC(trained on synthetic) - AUROC(trained on real)| over the K commonest codes"),
    ("dimwise_prediction_agreement", "higher (1)",
     "Pearson correlation of the per-code AUROCs, synthetic-trained vs real-trained"),
    ("dimwise_prediction_auroc_mean", "= real-trained", "mean per-code AUROC of the models trained on synthetic rows"),
    ("dimwise_prediction_auroc_mean_real", "-",
     "mean per-code AUROC of the models trained on real training rows (the reference)"),
    ("dimwise_prediction_f1_gap", "lower (0)", "mean |F1(synthetic-trained) - F1(real-trained)| at threshold 0.5"),
    ("dimwise_prediction_codes", "-", "codes predicted (K, or fewer)")])
def dimwise(c: Comparison) -> dict:
    c.require_codes()
    real = c.real.dimwise
    synthetic = prediction.code_scores(c.X, c.real.holdout.X, real.targets, c.rng("dimwise"),
                                       c.config.dimwise_max_rows, c.config.dimwise_iterations)
    c.kept["dimwise"] = synthetic
    c.details.dimwise = pd.DataFrame({"code": [c.layout.names[j] for j in real.targets], "auroc_real": real.auroc,
                                      "auroc_synthetic": synthetic.auroc, "f1_real": real.f1,
                                      "f1_synthetic": synthetic.f1})
    return prediction.agreement(real, synthetic)


# ---- the declared rules (data/rules.py) ---------------------------------------------------------------------------
def has_rules(layout: Layout) -> bool:
    return bool(layout.rules)


@metric_group("rules", "fidelity", [
    ("rule_break_rate", "lower (0)", "share of rows that break at least one rule the training table declares "
     "(each rule's share: 'rules' in metrics.json)"),
    ("rule_break_max", "lower (0)", "share of rows breaking the rule broken most often")], applies=has_rules)
def rule_breaks(c: Comparison) -> dict:
    frame = c.synthetic.frame
    if frame is None:
        raise SkipMetric("the rows were not given as a table")
    shares: dict[str, float | None] = {}
    broken = np.zeros(len(frame), dtype=bool)
    for rule in c.layout.rules:
        name = rule.describe()
        name = name if name not in shares else f"{name} (rule {len(shares) + 1})"
        if not set(rule.columns) <= set(frame.columns):
            shares[name] = None         # the dataset lacks one of its columns
            continue
        mask = rule.broken(frame)
        broken |= mask
        shares[name] = float(mask.mean())
    c.details.rule_breaks = shares
    known = [s for s in shares.values() if s is not None]
    if not known:
        raise SkipMetric("the dataset has none of the columns the rules name")
    return {"rule_break_rate": float(broken.mean()), "rule_break_max": max(known)}


# ---- fidelity of continuous and categorical columns ---------------------------------------------------------------
def has_continuous(layout: Layout) -> bool:
    return bool(layout.continuous.any())


@metric_group("continuous", "continuous", [
    ("continuous_ks_mean", "lower (0)", "mean Kolmogorov-Smirnov statistic over continuous columns"),
    ("continuous_ks_max", "lower (0)", "largest KS statistic"),
    ("continuous_wasserstein_mean", "lower (0)", "mean Wasserstein distance on training-min-max-scaled values"),
    ("continuous_missing_rate_diff", "lower (0)", "mean absolute difference of the missing-value rates")],
    applies=has_continuous)
def continuous(c: Comparison) -> dict:
    columns = np.flatnonzero(c.layout.continuous)
    real, synthetic = _continuous_values(c.real.train.X, c.layout, columns), _continuous_values(c.X, c.layout, columns)
    return fidelity.continuous_metrics(real[0], synthetic[0], real[1], synthetic[1])


def _continuous_values(X: sp.csr_matrix, layout: Layout, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled values and a missing mask (from the column's ``__missing`` indicator, when it has one)."""
    dense = X[:, columns].toarray()
    missing = np.zeros_like(dense, dtype=bool)
    for j, column in enumerate(columns):
        indicator = column + 1
        if indicator < layout.width and layout.source[indicator] == layout.source[column] \
                and layout.names[indicator].endswith("__missing"):
            missing[:, j] = X[:, indicator].toarray().ravel() > 0.5
    return dense, missing


@metric_group("continuous_correlation", "continuous", [
    ("continuous_correlation_distance", "lower (0)",
     "Frobenius norm of the correlation difference over continuous columns")], applies=has_continuous)
def continuous_correlation(c: Comparison) -> dict:
    columns = np.flatnonzero(c.layout.continuous)
    if len(columns) < 2:
        raise SkipMetric("needs at least 2 continuous columns")
    real = fidelity.correlation_matrix(c.real.train.X[:, columns])
    return {"continuous_correlation_distance": fidelity.correlation_distance(real, c.X[:, columns])}


def has_categorical(layout: Layout) -> bool:
    return bool(layout.categorical.any())


@metric_group("categorical", "categorical", [
    ("categorical_tvd_mean", "lower (0)", "mean total variation distance of the category frequencies")],
    applies=has_categorical)
def categorical(c: Comparison) -> dict:
    columns = np.flatnonzero(c.layout.categorical)
    return {"categorical_tvd_mean": fidelity.categorical_tvd(fidelity.column_means(c.real.train.X[:, columns]),
                                                             fidelity.column_means(c.X[:, columns]),
                                                             c.layout.source[columns])}


# ---- utility: the label -------------------------------------------------------------------------------------------
def has_label(layout: Layout) -> bool:
    return layout.label is not None


@metric_group("tstr", "utility", [
    ("tstr_auroc", "= trtr_auroc", "label AUROC on real test rows of a classifier trained on synthetic rows"),
    ("tstr_auprc", "= trtr_auprc", "the same, area under the precision-recall curve"),
    ("label_tvd", "lower (0)", "total variation distance between the label's class frequencies")], applies=has_label)
def tstr(c: Comparison) -> dict:
    if c.label_problem:
        raise SkipMetric(c.label_problem)
    scores = c.keep("tstr", lambda: c.real.label_scores(c.synthetic, c.name))
    result = c.real.label_metrics(scores, "tstr")
    result["label_tvd"] = utility.label_tvd(c.real.train.y, c.synthetic.y, len(c.layout.label_classes))
    return result


@metric_group("trtr", "utility", [
    ("trtr_auroc", "-", "label AUROC of the same classifier trained on real training rows"),
    ("trtr_auprc", "-", "the same, area under the precision-recall curve")], applies=has_label)
def trtr(c: Comparison) -> dict:
    return c.real.trtr


# ---- privacy ------------------------------------------------------------------------------------------------------
@metric_group("membership", "privacy", [
    ("mia_auroc", "0.5", "membership-inference AUROC from the distance to the nearest synthetic record"),
    ("mia_accuracy", "0.5", "best accuracy of that attack (balanced samples)"),
    ("dcr_train_median", "= dcr_test_median", "median distance of training records to their closest synthetic record"),
    ("dcr_test_median", "-", "median distance of held-out records to their closest synthetic record"),
    ("dcr_ratio", "1 (< 1 leaks)",
     "mean distance to the closest synthetic record, training records / held-out records")])
def membership(c: Comparison) -> dict:
    members, nonmembers = c.real.attack_rows
    if members.shape[0] < 2:
        raise SkipMetric(f"needs at least 2 training and held-out rows, got {members.shape[0]}")
    distance = nearest_distance(c.real.space, sp.vstack([members, nonmembers], format="csr"), c.X)
    d_members, d_nonmembers = distance[:members.shape[0]], distance[members.shape[0]:]
    c.details.distances = (d_members, d_nonmembers)
    return {**privacy.membership(d_members, d_nonmembers), **privacy.distance_to_closest(d_members, d_nonmembers)}


@metric_group("copies", "privacy", [
    ("exact_copy_rate", "<= holdout's", "share of synthetic rows identical to a training row"),
    ("exact_copy_rate_holdout", "-", "share of real held-out rows identical to a training row (the yardstick)")])
def copies(c: Comparison) -> dict:
    on_synthetic, on_holdout = privacy.identical_rows(c.real.train_fingerprints,
                                                      rows.fingerprints(c.X, ~c.layout.continuous),
                                                      c.real.holdout_fingerprints)
    c.kept["copies"] = on_synthetic, on_holdout
    return privacy.copy_rate_values(on_synthetic, on_holdout)


@metric_group("nnaa", "privacy", [
    ("nnaa_train", "0.5", "nearest-neighbour adversarial accuracy, training vs synthetic"),
    ("nnaa_test", "0.5", "the same, held-out vs synthetic"),
    ("nnaa_privacy_loss", "0 (> 0 leaks)", "nnaa_test - nnaa_train")])
def nnaa(c: Comparison) -> dict:
    draws = privacy.nnaa_rows(c.real.space, c.real.train.X, c.real.holdout.X, c.X, c.rng("nnaa"),
                              c.config.nnaa_max_rows, c.config.nnaa_draws)
    c.kept["nnaa"] = draws
    return privacy.mean_values([d.values() for d in draws])


@metric_group("aia", "privacy", [
    ("aia_f1_train", "= aia_f1_test",
     "F1 of inferring training records' other codes from the nearest synthetic records"),
    ("aia_f1_test", "-", "the same for held-out records"),
    ("aia_f1_gap", "0 (> 0 leaks)", "aia_f1_train - aia_f1_test")])
def aia(c: Comparison) -> dict:
    known, unknown = c.real.aia_columns
    config = c.config
    options = {"dense_columns": config.dense_columns, "device": config.device, "block_elements": config.block_elements}
    records = privacy.inferred_records(c.real.train.X, c.real.holdout.X, c.X, known, unknown, c.rng("aia"),
                                       config.aia_max_rows, config.aia_neighbours, options)
    c.kept["aia"] = records
    return privacy.attribute_inference_values(records["train"].f1("train"), records["test"].f1("test"))
