"""What a metric group works on: the real data (training rows, one held-out set, one column set) with the values
derived from it once, and the ``Comparison`` of one synthetic set with that real data.

Work that does not depend on the synthetic set (the real correlation matrix, real-trained models, member samples)
is a cached property of ``RealData``, so it is done once per held-out set and reused for every synthetic set.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ehrdiff.evaluation import fidelity, prediction, privacy, rows, utility
from ehrdiff.evaluation.config import EvaluationConfig
from ehrdiff.evaluation.inputs import Encoded, Layout
from ehrdiff.evaluation.neighbours import Space
from ehrdiff.evaluation.stats import SkipMetric

if TYPE_CHECKING:
    from ehrdiff.evaluation.report import DatasetDetails


def crc(text: str) -> int:
    """A stable number for a text (seeds the random streams; Python's hash() changes between runs)."""
    return zlib.crc32(text.encode())


class RealData:
    """The real side of a comparison (training rows, one held-out set, one column set) and what it caches."""

    def __init__(self, layout: Layout, train: Encoded, holdout: Encoded, config: EvaluationConfig, seed: int):
        self.layout, self.train, self.holdout, self.config, self.seed = layout, train, holdout, config, seed

    def rng(self, purpose: str, name: str = "") -> np.random.Generator:
        """Independent, reproducible streams: real-side samples do not depend on which synthetic set is evaluated."""
        return np.random.default_rng([self.seed, crc(purpose), crc(name)])

    # ---- fidelity inputs
    @cached_property
    def codes(self) -> np.ndarray:
        return np.flatnonzero(self.layout.codes)

    @cached_property
    def prevalence(self) -> np.ndarray:
        return fidelity.column_means(self.train.X[:, self.codes])

    @cached_property
    def code_counts(self) -> np.ndarray:
        return np.asarray(self.train.X[:, self.codes].sum(axis=1)).ravel()

    @cached_property
    def correlation_columns(self) -> np.ndarray:
        return fidelity.commonest(self.train.X, np.ones(self.layout.width, bool), self.config.correlation_max_columns)

    @cached_property
    def correlation(self) -> np.ndarray:
        return fidelity.correlation_matrix(self.train.X[:, self.correlation_columns])

    @cached_property
    def cooccurrence_columns(self) -> np.ndarray:
        return fidelity.commonest(self.train.X, self.layout.codes, self.config.correlation_max_columns)

    @cached_property
    def moments(self) -> np.ndarray:
        return fidelity.second_moments(self.train.X[:, self.cooccurrence_columns])

    @cached_property
    def dimwise(self) -> prediction.CodeScores:
        targets = prediction.choose_targets(self.train.X, self.holdout.X, self.layout.codes, self.config.dimwise_codes)
        return prediction.code_scores(self.train.X, self.holdout.X, targets, self.rng("dimwise-real"),
                                      self.config.dimwise_max_rows, self.config.dimwise_iterations)

    # ---- utility inputs
    @cached_property
    def trtr_scores(self) -> np.ndarray:
        return self.label_scores(self.train, "training")

    @cached_property
    def trtr(self) -> dict:
        return self.label_metrics(self.trtr_scores, "trtr")

    def label_metrics(self, scores: np.ndarray, prefix: str) -> dict:
        """AUROC and AUPRC on the held-out rows of a label classifier's scores (``label_scores``)."""
        roc, prc = utility.label_scores(self.holdout.y, scores, len(self.layout.label_classes))
        return {f"{prefix}_auroc": roc, f"{prefix}_auprc": prc}

    def label_scores(self, source: Encoded, name: str) -> np.ndarray:
        """The held-out rows' scores of the label classifier trained on ``source`` (``name`` seeds the row sample
        when ``source`` has more rows than ``utility_max_rows``)."""
        if self.holdout.y is None:
            raise SkipMetric("the held-out data has no usable label")
        n_classes = len(self.layout.label_classes)
        if n_classes < 2:
            raise SkipMetric("the training label has one class only")
        fit_rows = source
        if source.n > self.config.utility_max_rows:
            fit_rows = source.rows(np.sort(self.rng("utility", name).choice(source.n, self.config.utility_max_rows,
                                                                        replace=False)))
        return utility.classifier_scores(fit_rows.X, fit_rows.y, self.holdout.X, n_classes, self.config.utility_model,
                                         self.seed, self.config.threads)

    # ---- privacy inputs
    @cached_property
    def space(self) -> Space:
        return Space.fit(self.train.X, self.layout.continuous, self.config.dense_columns, self.config.device,
                         self.config.block_elements)

    @cached_property
    def attack_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Balanced member (training) and non-member (held-out) samples for membership inference: row indices."""
        n = min(self.train.n, self.holdout.n, self.config.mia_max_rows)
        rng = self.rng("membership")
        return (np.sort(rng.choice(self.train.n, n, replace=False)),
                np.sort(rng.choice(self.holdout.n, n, replace=False)))

    @cached_property
    def attack_rows(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        members, nonmembers = self.attack_sample
        return self.train.X[members], self.holdout.X[nonmembers]

    @cached_property
    def train_fingerprints(self) -> np.ndarray:
        return rows.fingerprints(self.train.X, ~self.layout.continuous)

    @cached_property
    def holdout_fingerprints(self) -> np.ndarray:
        return rows.fingerprints(self.holdout.X, ~self.layout.continuous)

    @cached_property
    def aia_columns(self) -> tuple[np.ndarray, np.ndarray]:
        return privacy.known_and_unknown(self.train.X, self.layout.codes, self.config.aia_known_codes)


@dataclass
class Comparison:
    """The one argument of every metric group: a synthetic set, the real data it is compared with, and the
    dataset's details (per-code and per-row results a group may fill for the figures and per-code tables)."""

    real: RealData
    name: str                     # the dataset's name; seeds its random samples
    synthetic: Encoded
    label_problem: str | None     # why the synthetic set's label is unusable (None when it is fine)
    details: DatasetDetails
    # what a group computed row by row (scores, distances, sampled rows) for its bootstrap to resample, by name
    kept: dict = field(default_factory=dict)

    @property
    def X(self) -> sp.csr_matrix:
        """The synthetic rows in the real data's encoded columns."""
        return self.synthetic.X

    @property
    def layout(self) -> Layout:
        return self.real.layout

    @property
    def config(self) -> EvaluationConfig:
        return self.real.config

    def rng(self, purpose: str) -> np.random.Generator:
        """A reproducible random stream for this dataset and purpose."""
        return self.real.rng(purpose, self.name)

    def keep(self, key, build):
        """``kept[key]``, built by ``build()`` the first time (shared by a group's bootstrap blocks)."""
        if key not in self.kept:
            self.kept[key] = build()
        return self.kept[key]

    def require_codes(self) -> None:
        if len(self.real.codes) == 0:
            raise SkipMetric("the data has no binary code columns")


__all__ = ["Comparison", "RealData", "crc"]
