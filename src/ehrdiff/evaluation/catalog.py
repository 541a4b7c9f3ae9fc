"""Every metric the report can hold, in report order: its group (computed together), section, direction and ideal.

The computed metrics come from the registered metric groups (``groups.py``); this module adds the facts about a
dataset that no group computes (its size, the generator's privacy budget) and the metric lists other parts of the
package pick from. The report's tables and docs/metrics.md follow ``metrics()``; a test checks that the two agree.
"""

from __future__ import annotations

from ehrdiff.evaluation import groups  # noqa: F401  (importing it registers the metric groups)
from ehrdiff.evaluation.registry import REGISTRY, MetricInfo

ABOUT = [
    MetricInfo("n_rows", "about", "about", "-", "rows in the synthetic (or reference) set"),
    MetricInfo("training_fraction", "about", "about", "-", "share of the training data the run was trained on "
               "(training-size runs only)"),
]
# read from the generator's model.json by Report.add_model_facts, not measured on the rows
MODEL_FACTS = [
    MetricInfo("dp_epsilon", "dp", "privacy", "lower", "epsilon of the generator's whole private release (every "
               "noisy statistic it keeps and its DP-SGD training, composed; from its model.json: ehrdiff evaluate "
               "--model NAME=RUN)"),
    MetricInfo("dp_delta", "dp", "privacy", "lower", "delta of that (epsilon, delta) guarantee"),
]


def metrics() -> list[MetricInfo]:
    """Every metric in report order: the dataset's size, each registered group's metrics, the generator's facts."""
    return [*ABOUT, *(m for group in REGISTRY.values() for m in group.metrics), *MODEL_FACTS]


def by_key() -> dict[str, MetricInfo]:
    """Every metric by its key (read from the registry on each call, so a group registered later is included)."""
    return {m.key: m for m in metrics()}


SECTIONS = ("about", "fidelity", "continuous", "categorical", "utility", "privacy")
# a dataset that cannot be read at all still reports these keys (as nulls with the reason)
REQUIRED = ("prevalence_pearson", "prevalence_spearman", "prevalence_rmse", "codes_never_generated",
            "correlation_distance", "cooccurrence_distance", "discriminator_auroc", "dimwise_prediction_agreement",
            "mia_auroc", "aia_f1_train", "aia_f1_test", "nnaa_privacy_loss", "dcr_ratio", "exact_copy_rate")

# Metrics against the share of training data a model was trained on. The figure of the evaluation report
# (training_size.png) draws the privacy attacks too; the experiments' data-scale table leaves them out, because a run
# trained on a share of the training rows is attacked with the whole training set, mostly non-members to it.
TRAINING_SIZE_FIGURE_METRICS = ("prevalence_spearman", "discriminator_auroc", "dimwise_prediction_auroc_gap",
                                "tstr_auroc", "mia_auroc", "nnaa_privacy_loss")
DATA_SCALE_TABLE_METRICS = ("tstr_auroc", "prevalence_spearman", "discriminator_auroc", "dimwise_prediction_auroc_gap",
                            "correlation_distance", "continuous_ks_mean")
