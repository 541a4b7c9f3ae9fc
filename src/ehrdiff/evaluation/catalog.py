"""Every metric the report can hold: its group (computed together), section, direction and ideal value.

The report's tables and docs/metrics.md follow this list; a test checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    key: str
    group: str        # metrics computed together (skipped together when their input is unusable)
    section: str      # fidelity | continuous | categorical | utility | privacy | about
    best: str         # short statement of the direction / ideal, e.g. "higher (1)", "0.5", "lower (0)"
    text: str         # one-line definition for tables


def _prevalence() -> list[MetricInfo]:
    out = []
    for scope, what in (("", "all codes"), ("rare_", "rare codes"), ("medium_", "medium codes"),
                        ("common_", "common codes")):
        out += [
            MetricInfo(f"prevalence_{scope}pearson", "prevalence", "fidelity", "higher (1)",
                       f"Pearson correlation of per-code prevalence, synthetic vs training ({what})"),
            MetricInfo(f"prevalence_{scope}spearman", "prevalence", "fidelity", "higher (1)",
                       f"Spearman correlation of per-code prevalence ({what})"),
            MetricInfo(f"prevalence_{scope}rmse", "prevalence", "fidelity", "lower (0)",
                       f"root mean squared prevalence difference ({what})"),
            MetricInfo(f"prevalence_{scope}max_abs_diff", "prevalence", "fidelity", "lower (0)",
                       f"largest absolute prevalence difference ({what})"),
        ]
    return out


METRICS: list[MetricInfo] = [
    MetricInfo("n_rows", "about", "about", "-", "rows in the synthetic (or reference) set"),
    MetricInfo("training_fraction", "about", "about", "-", "share of the training data the run was trained on "
               "(training-size runs only)"),
    *_prevalence(),
    MetricInfo("codes_never_generated", "prevalence", "fidelity", "lower (0)",
               "codes present in the training data that no synthetic row has"),
    MetricInfo("codes_per_patient_mean", "codes_per_patient", "fidelity", "= training mean",
               "mean number of codes per synthetic row"),
    MetricInfo("codes_per_patient_mean_diff", "codes_per_patient", "fidelity", "0",
               "synthetic minus training mean codes per row"),
    MetricInfo("codes_per_patient_wasserstein", "codes_per_patient", "fidelity", "lower (0)",
               "Wasserstein distance between the codes-per-row distributions"),
    MetricInfo("empty_row_rate", "codes_per_patient", "fidelity", "= training rate",
               "share of synthetic rows without any code"),
    MetricInfo("correlation_distance", "correlation", "fidelity", "lower (0)",
               "Frobenius norm of the difference of the column correlation matrices"),
    MetricInfo("cooccurrence_distance", "cooccurrence", "fidelity", "lower (0)",
               "relative Frobenius distance of the pairwise co-occurrence probabilities"),
    MetricInfo("discriminator_auroc", "discriminator", "fidelity", "0.5",
               "cross-validated AUROC of gradient-boosted trees telling real from synthetic rows"),
    MetricInfo("discriminator_auroc_lr", "discriminator", "fidelity", "0.5",
               "the same with logistic regression on every column (rates, no interactions)"),
    MetricInfo("dimwise_prediction_auroc_gap", "dimwise", "fidelity", "lower (0)",
               "mean |AUROC(trained on synthetic) - AUROC(trained on real)| over the K commonest codes"),
    MetricInfo("dimwise_prediction_agreement", "dimwise", "fidelity", "higher (1)",
               "Pearson correlation of the per-code AUROCs, synthetic-trained vs real-trained"),
    MetricInfo("dimwise_prediction_auroc_mean", "dimwise", "fidelity", "= real-trained",
               "mean per-code AUROC of the models trained on synthetic rows"),
    MetricInfo("dimwise_prediction_auroc_mean_real", "dimwise", "fidelity", "-",
               "mean per-code AUROC of the models trained on real training rows (the reference)"),
    MetricInfo("dimwise_prediction_f1_gap", "dimwise", "fidelity", "lower (0)",
               "mean |F1(synthetic-trained) - F1(real-trained)| at threshold 0.5"),
    MetricInfo("dimwise_prediction_codes", "dimwise", "fidelity", "-", "codes predicted (K, or fewer)"),
    MetricInfo("continuous_ks_mean", "continuous", "continuous", "lower (0)",
               "mean Kolmogorov-Smirnov statistic over continuous columns"),
    MetricInfo("continuous_ks_max", "continuous", "continuous", "lower (0)", "largest KS statistic"),
    MetricInfo("continuous_wasserstein_mean", "continuous", "continuous", "lower (0)",
               "mean Wasserstein distance on training-min-max-scaled values"),
    MetricInfo("continuous_missing_rate_diff", "continuous", "continuous", "lower (0)",
               "mean absolute difference of the missing-value rates"),
    MetricInfo("continuous_correlation_distance", "continuous_correlation", "continuous", "lower (0)",
               "Frobenius norm of the correlation difference over continuous columns"),
    MetricInfo("categorical_tvd_mean", "categorical", "categorical", "lower (0)",
               "mean total variation distance of the category frequencies"),
    MetricInfo("tstr_auroc", "tstr", "utility", "= trtr_auroc",
               "label AUROC on real test rows of a classifier trained on synthetic rows"),
    MetricInfo("tstr_auprc", "tstr", "utility", "= trtr_auprc", "the same, area under the precision-recall curve"),
    MetricInfo("label_tvd", "tstr", "utility", "lower (0)",
               "total variation distance between the label's class frequencies"),
    MetricInfo("trtr_auroc", "trtr", "utility", "-",
               "label AUROC of the same classifier trained on real training rows"),
    MetricInfo("trtr_auprc", "trtr", "utility", "-", "the same, area under the precision-recall curve"),
    MetricInfo("mia_auroc", "membership", "privacy", "0.5",
               "membership-inference AUROC from the distance to the nearest synthetic record"),
    MetricInfo("mia_accuracy", "membership", "privacy", "0.5", "best accuracy of that attack (balanced samples)"),
    MetricInfo("dcr_train_median", "membership", "privacy", "= dcr_test_median",
               "median distance of training records to their closest synthetic record"),
    MetricInfo("dcr_test_median", "membership", "privacy", "-",
               "median distance of held-out records to their closest synthetic record"),
    MetricInfo("dcr_ratio", "membership", "privacy", "1 (< 1 leaks)",
               "mean distance to the closest synthetic record, training records / held-out records"),
    MetricInfo("exact_copy_rate", "copies", "privacy", "<= holdout's",
               "share of synthetic rows identical to a training row"),
    MetricInfo("exact_copy_rate_holdout", "copies", "privacy", "-",
               "share of real held-out rows identical to a training row (the yardstick)"),
    MetricInfo("nnaa_train", "nnaa", "privacy", "0.5", "nearest-neighbour adversarial accuracy, training vs synthetic"),
    MetricInfo("nnaa_test", "nnaa", "privacy", "0.5", "the same, held-out vs synthetic"),
    MetricInfo("nnaa_privacy_loss", "nnaa", "privacy", "0 (> 0 leaks)", "nnaa_test - nnaa_train"),
    MetricInfo("aia_f1_train", "aia", "privacy", "= aia_f1_test",
               "F1 of inferring training records' other codes from the nearest synthetic records"),
    MetricInfo("aia_f1_test", "aia", "privacy", "-", "the same for held-out records"),
    MetricInfo("aia_f1_gap", "aia", "privacy", "0 (> 0 leaks)", "aia_f1_train - aia_f1_test"),
    MetricInfo("dp_epsilon", "dp", "privacy", "lower", "epsilon spent by the generator's differentially private "
               "training (from its model.json: ehrdiff evaluate --model NAME=RUN)"),
    MetricInfo("dp_delta", "dp", "privacy", "lower", "delta of that (epsilon, delta) guarantee"),
]

BY_KEY = {m.key: m for m in METRICS}
SECTIONS = ("about", "fidelity", "continuous", "categorical", "utility", "privacy")
REQUIRED = ("prevalence_pearson", "prevalence_spearman", "prevalence_rmse", "codes_never_generated",
            "correlation_distance", "cooccurrence_distance", "discriminator_auroc", "dimwise_prediction_agreement",
            "mia_auroc", "aia_f1_train", "aia_f1_test", "nnaa_privacy_loss", "dcr_ratio", "exact_copy_rate")


def group_keys(group: str) -> list[str]:
    return [m.key for m in METRICS if m.group == group]
