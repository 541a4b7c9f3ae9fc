"""``evaluate``: every registered metric group for every synthetic set (and the reference rows).

A group that cannot be computed (too few rows, no label, no binary codes ...) is recorded as null values with the
reason under the dataset's ``skipped``; the other groups still run. The real side of each comparison (``RealData``)
is built once per column set and held-out set and reused, with everything it caches.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ehrdiff.evaluation import groups, resampled  # noqa: F401  (importing registers the groups and their bootstraps)
from ehrdiff.evaluation import bootstrap
from ehrdiff.evaluation import references as refs
from ehrdiff.evaluation.config import EvaluationConfig
from ehrdiff.evaluation.context import Comparison, RealData, crc
from ehrdiff.evaluation.inputs import Encoded, as_train_table, build_layout, prepare
from ehrdiff.evaluation.registry import MetricGroup, groups_for
from ehrdiff.evaluation.report import DatasetDetails, Report
from ehrdiff.evaluation.stats import Skipped
from ehrdiff.errors import DataError, EhrdiffError
from ehrdiff.threads import limit_threads

log = logging.getLogger(__name__)


def evaluate(train, test, synthetic: Mapping[str, object] | None = None, label: str | None = "label",
             references: bool = True, seed: int = 0, *, scale: Mapping[str, Mapping[float, object]] | None = None,
             config: EvaluationConfig | None = None, **options) -> Report:
    """Evaluate synthetic tables against real training and held-out (test) tables.

    ``synthetic``: {name: Table or DataFrame}. ``scale``: {model name: {training fraction: table}} for runs trained
    on parts of the training data (the metric-vs-training-size figure); each becomes a dataset ``NAME@FRACTION``.
    ``references``: add the reference rows (real test half, resampled training rows, independent columns).
    ``options`` override fields of ``EvaluationConfig`` (e.g. ``dimwise_codes=100``).
    Returns a ``Report`` (``.metrics``, ``.to_json``, ``.to_markdown``, ``.to_html``)."""
    config = (config or EvaluationConfig()).with_options(**options)
    with limit_threads(config.threads):
        runs = _runs(synthetic, scale)
        if not runs and not references:
            raise DataError("nothing to evaluate: give at least one synthetic dataset or keep the reference rows")
        evaluation = Evaluation(train, test, label, config, seed)
        for name, run in runs.items():
            evaluation.add_synthetic(name, run)
        if references:
            evaluation.add_references()
        return evaluation.report


@dataclass
class Run:
    """A synthetic table to evaluate; for a training-size run, the model and the share of training data."""

    table: object
    model: str | None = None
    fraction: float | None = None


def _runs(synthetic: Mapping[str, object] | None,
          scale: Mapping[str, Mapping[float, object]] | None) -> dict[str, Run]:
    """{dataset name: Run}: the synthetic tables, then the training-size runs as ``MODEL@FRACTION``."""
    runs = {name: Run(table) for name, table in dict(synthetic or {}).items()}
    for model, fractions in (scale or {}).items():
        for fraction, table in fractions.items():
            if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
                raise DataError(f"scale run '{model}': the training fraction must be in (0, 1], got {fraction!r}")
            runs[f"{model}@{float(fraction):g}"] = Run(table, model, float(fraction))
    bad_names = [n for n in runs if not isinstance(n, str) or not n or n.startswith("reference:")]
    if bad_names:
        raise DataError(f"synthetic dataset names must be non-empty and not start with 'reference:': {bad_names[:3]}")
    return runs


def _columns(data: Encoded, mask: np.ndarray) -> Encoded:
    return data if mask.all() else data.columns(mask)


class Evaluation:
    """One evaluate() call: the real tables prepared once, the report it fills, and the real sides it has built."""

    def __init__(self, train, test, label: str | None, config: EvaluationConfig, seed: int):
        train_table = as_train_table(train)
        self.layout, self.codings = build_layout(train_table, label)
        self.train = prepare(train_table.frame, self.layout, self.codings, "train")
        self.test = prepare(test, self.layout, self.codings, "test")
        self.warnings = self.test.warnings   # input problems that concern every dataset
        if self.test.label_problem:
            self.warnings = self.warnings + [f"{self.test.label_problem}; utility metrics are skipped"]
        self.usable = self.test.usable[self.layout.source]   # encoded columns the test table can be compared on
        self.config, self.seed = config, seed
        self.report = Report(config=config)
        self._real: dict[tuple, RealData] = {}

    def real_data(self, mask: np.ndarray, holdout: Encoded, holdout_key: str) -> RealData:
        """The real side restricted to the encoded columns in ``mask``, built once per (columns, held-out set)."""
        key = (mask.tobytes(), holdout_key)
        if key not in self._real:
            layout = self.layout if mask.all() else self.layout.restrict(mask)
            self._real[key] = RealData(layout, _columns(self.train.data, mask), _columns(holdout, mask), self.config,
                                       self.seed)
        return self._real[key]

    def add_synthetic(self, name: str, run: Run) -> None:
        """Evaluate one synthetic table on the columns it shares with the training and test tables."""
        try:
            prepared = prepare(run.table, self.layout, self.codings, f"synthetic '{name}'")
        except EhrdiffError as exc:
            self.report.add_failed(name, str(exc), self.warnings)
            log.warning("%s", exc)
            return
        mask = self.usable & prepared.usable[self.layout.source]
        for message in prepared.warnings:
            log.warning("%s", message)
        extra = {} if run.fraction is None else {"training_fraction": run.fraction}
        self.add(self.real_data(mask, self.test.data, "test"), name, _columns(prepared.data, mask),
                 prepared.label_problem, self.warnings + prepared.warnings, extra)
        if run.model is not None:
            self.report.scale[name] = (run.model, run.fraction)

    def add_references(self) -> None:
        """The real test half (against the other half), resampled training rows and independent columns."""
        train, test = self.train.data, self.test.data
        rng = np.random.default_rng([self.seed, crc("references")])
        half_synthetic, half_holdout = refs.split_test(test, rng)
        # built only when evaluated, in this order: each draws from the same random stream
        builds = [(refs.REAL_TEST, lambda: half_synthetic, "test-half", half_holdout),
                  (refs.TRAIN_RESAMPLE, lambda: refs.train_resample(train, train.n, rng), "test", test),
                  (refs.INDEPENDENT, lambda: refs.independent(train, self.layout, train.n, rng), "test", test)]
        for name, build, holdout_key, holdout in builds:
            if holdout.n < 2:
                self.report.add_failed(name, f"the test data has too few rows ({test.n}) for this reference",
                                       self.warnings)
                continue
            label_problem = self.test.label_problem if name == refs.REAL_TEST else None
            self.add(self.real_data(self.usable, holdout, holdout_key), name, _columns(build(), self.usable),
                     label_problem, self.warnings)

    def add(self, real: RealData, name: str, data: Encoded, label_problem: str | None, warnings: list[str],
            extra: dict | None = None) -> None:
        """Every metric group for one dataset, into the report."""
        details = DatasetDetails()
        started = time.perf_counter()
        outcome = evaluate_one(Comparison(real, name, data, label_problem, details))
        log.info("%s: evaluated in %.1f s", name, time.perf_counter() - started)
        values = {"n_rows": int(data.n), **(extra or {}), **outcome.values}
        self.report.add(name, values, outcome.skipped, warnings, details, outcome.timings, outcome.intervals)


@dataclass
class Outcome:
    """One dataset's metric values, the reasons for the null ones, and the seconds each group took."""

    values: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    intervals: bootstrap.Intervals | None = None   # with evaluate(..., bootstrap=B)

    def record(self, group: MetricGroup, comparison: Comparison) -> None:
        started = time.perf_counter()
        result = group.run(comparison)
        self.timings[group.name] = time.perf_counter() - started
        for key, value in result.items():
            if isinstance(value, Skipped):
                self.values[key] = None
                self.skipped[key] = value.reason
            elif value is None or (isinstance(value, float) and not np.isfinite(value)):
                self.values[key] = None
                self.skipped[key] = "the value is undefined on this data"
            else:
                self.values[key] = value


def evaluate_one(comparison: Comparison) -> Outcome:
    """Every metric group that applies to the data, for one synthetic set against one real side; then, when the
    configuration asks for them, the bootstrap intervals of their metrics."""
    outcome = Outcome()
    applicable = groups_for(comparison.layout)
    for group in applicable:
        outcome.record(group, comparison)
        log.debug("%s: %s done in %.1f s", comparison.name, group.name, outcome.timings[group.name])
    config = comparison.config
    if config.bootstrap:
        started = time.perf_counter()
        outcome.intervals = bootstrap.intervals(comparison, applicable, outcome.values,
                                                bootstrap.Settings(config.bootstrap, config.confidence))
        log.info("%s: %d bootstrap resamples in %.1f s", comparison.name, config.bootstrap,
                 time.perf_counter() - started)
    return outcome
