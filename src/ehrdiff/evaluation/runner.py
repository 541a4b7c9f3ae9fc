"""``evaluate``: every metric for every synthetic set (and the reference rows), one group at a time.

A group that cannot be computed (too few rows, no label, no binary codes ...) is recorded as null values with the
reason under the dataset's ``skipped``; the other groups still run. Work that does not depend on the synthetic set
(real correlation matrix, real-trained models, member samples) is done once per held-out set and reused.
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from ehrdiff.evaluation import catalog, discriminator, fidelity, prediction, privacy, rows, utility
from ehrdiff.evaluation import references as refs
from ehrdiff.evaluation.config import EvaluationConfig
from ehrdiff.evaluation.inputs import Encoded, Layout, as_train_table, build_layout, prepare
from ehrdiff.evaluation.neighbours import Space, nearest_distance
from ehrdiff.evaluation.report import DatasetDetails, Report
from ehrdiff.evaluation.stats import SkipMetric, Skipped
from ehrdiff.errors import DataError, EhrdiffError

log = logging.getLogger(__name__)


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


class Context:
    """The real side of the comparison (training rows, one held-out set, one column set) and what it caches."""

    def __init__(self, layout: Layout, train: Encoded, holdout: Encoded, config: EvaluationConfig, seed: int):
        self.layout, self.train, self.holdout, self.config, self.seed = layout, train, holdout, config, seed

    def rng(self, purpose: str, name: str = "") -> np.random.Generator:
        """Independent, reproducible streams: real-side samples do not depend on which synthetic set is evaluated."""
        return np.random.default_rng([self.seed, _crc(purpose), _crc(name)])

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
    def real_correlation(self) -> np.ndarray:
        return fidelity.correlation_matrix(self.train.X[:, self.correlation_columns])

    @cached_property
    def cooccurrence_columns(self) -> np.ndarray:
        return fidelity.commonest(self.train.X, self.layout.codes, self.config.correlation_max_columns)

    @cached_property
    def real_moments(self) -> np.ndarray:
        return fidelity.second_moments(self.train.X[:, self.cooccurrence_columns])

    @cached_property
    def dimwise_real(self) -> prediction.CodeScores:
        targets = prediction.choose_targets(self.train.X, self.holdout.X, self.layout.codes, self.config.dimwise_codes)
        return prediction.code_scores(self.train.X, self.holdout.X, targets, self.rng("dimwise-real"),
                                      self.config.dimwise_max_rows, self.config.dimwise_iterations)

    @cached_property
    def trtr(self) -> dict:
        return self.label_metrics(self.train, "trtr", "training")

    def label_metrics(self, source: Encoded, prefix: str, name: str) -> dict:
        if self.holdout.y is None:
            raise SkipMetric("the held-out data has no usable label")
        n_classes = len(self.layout.label_classes)
        if n_classes < 2:
            raise SkipMetric("the training label has one class only")
        fit_rows = source
        if source.n > self.config.utility_max_rows:
            fit_rows = source.rows(np.sort(self.rng("utility", name).choice(source.n, self.config.utility_max_rows,
                                                                        replace=False)))
        scores = utility.classifier_scores(fit_rows.X, fit_rows.y, self.holdout.X, n_classes,
                                           self.config.utility_model, self.seed, self.config.threads)
        roc, prc = utility.label_scores(self.holdout.y, scores, n_classes)
        return {f"{prefix}_auroc": roc, f"{prefix}_auprc": prc}

    # ---- privacy inputs
    @cached_property
    def space(self) -> Space:
        return Space.fit(self.train.X, self.layout.continuous, self.config.dense_columns, self.config.device,
                         self.config.block_elements)

    @cached_property
    def attack_rows(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Balanced member (training) and non-member (held-out) samples for membership inference."""
        n = min(self.train.n, self.holdout.n, self.config.mia_max_rows)
        rng = self.rng("membership")
        return (self.train.X[np.sort(rng.choice(self.train.n, n, replace=False))],
                self.holdout.X[np.sort(rng.choice(self.holdout.n, n, replace=False))])

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
class Outcome:
    values: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


def _record(outcome: Outcome, group: str, run: Callable[[], dict]) -> None:
    """Run one group; a SkipMetric (or a user-data error) marks all its metrics null with the reason."""
    start = time.perf_counter()
    try:
        result = run()
    except (SkipMetric, EhrdiffError) as exc:
        result = {key: Skipped(str(exc)) for key in catalog.group_keys(group)}
    outcome.timings[group] = time.perf_counter() - start
    for key, value in result.items():
        if isinstance(value, Skipped):
            outcome.values[key] = None
            outcome.skipped[key] = value.reason
        elif value is None or (isinstance(value, float) and not np.isfinite(value)):
            outcome.values[key] = None
            outcome.skipped[key] = "the value is undefined on this data"
        else:
            outcome.values[key] = value


def evaluate_one(ctx: Context, name: str, synthetic: Encoded, label_problem: str | None,
                 details: DatasetDetails) -> Outcome:
    """Every metric group for one synthetic set against one context."""
    out = Outcome()
    layout, config, X = ctx.layout, ctx.config, synthetic.X

    def need_codes():
        if len(ctx.codes) == 0:
            raise SkipMetric("the data has no binary code columns")

    def prevalence():
        need_codes()
        counts = np.asarray((X[:, ctx.codes] != 0).sum(axis=0)).ravel()
        p_syn = counts / X.shape[0]
        details.prevalence = pd.DataFrame({"code": [layout.names[j] for j in ctx.codes], "training": ctx.prevalence,
                                           "synthetic": p_syn})
        result = fidelity.prevalence_metrics(ctx.prevalence, p_syn, config.prevalence_buckets)
        result["codes_never_generated"] = fidelity.codes_never_generated(ctx.prevalence, counts)
        return result

    def codes_per_patient():
        need_codes()
        counts = np.asarray(X[:, ctx.codes].sum(axis=1)).ravel()
        details.codes_per_patient = (np.bincount(ctx.code_counts.astype(np.int64)),
                                     np.bincount(counts.astype(np.int64)))
        return fidelity.codes_per_patient(ctx.code_counts, counts)

    def correlation():
        return {"correlation_distance": fidelity.correlation_distance(ctx.real_correlation,
                                                                     X[:, ctx.correlation_columns])}

    def cooccurrence():
        need_codes()
        return {"cooccurrence_distance": fidelity.cooccurrence_distance(ctx.real_moments,
                                                                       X[:, ctx.cooccurrence_columns])}

    def discriminate():
        return discriminator.discriminator_auroc(
            ctx.train.X, X, ctx.rng("discriminator", name), config.discriminator_max_rows,
            config.discriminator_folds, config.discriminator_iterations, ctx.seed, config.threads)

    def dimwise():
        need_codes()
        real = ctx.dimwise_real
        synthetic_scores = prediction.code_scores(X, ctx.holdout.X, real.targets, ctx.rng("dimwise", name),
                                                  config.dimwise_max_rows, config.dimwise_iterations)
        details.dimwise = pd.DataFrame({"code": [layout.names[j] for j in real.targets], "auroc_real": real.auroc,
                                        "auroc_synthetic": synthetic_scores.auroc, "f1_real": real.f1,
                                        "f1_synthetic": synthetic_scores.f1})
        return prediction.agreement(real, synthetic_scores)

    def continuous():
        values = np.flatnonzero(layout.continuous)
        real, syn = _continuous_values(ctx.train.X, layout, values), _continuous_values(X, layout, values)
        return fidelity.continuous_metrics(real[0], syn[0], real[1], syn[1])

    def continuous_correlation():
        columns = np.flatnonzero(layout.continuous)
        if len(columns) < 2:
            raise SkipMetric("needs at least 2 continuous columns")
        real = fidelity.correlation_matrix(ctx.train.X[:, columns])
        return {"continuous_correlation_distance": fidelity.correlation_distance(real, X[:, columns])}

    def categorical():
        columns = np.flatnonzero(layout.categorical)
        return {"categorical_tvd_mean": fidelity.categorical_tvd(
            fidelity.column_means(ctx.train.X[:, columns]), fidelity.column_means(X[:, columns]),
            layout.source[columns])}

    def tstr():
        if label_problem:
            raise SkipMetric(label_problem)
        result = ctx.label_metrics(synthetic, "tstr", name)
        result["label_tvd"] = utility.label_tvd(ctx.train.y, synthetic.y, len(layout.label_classes))
        return result

    def trtr():
        return ctx.trtr

    def membership():
        members, nonmembers = ctx.attack_rows
        if members.shape[0] < 2:
            raise SkipMetric(f"needs at least 2 training and held-out rows, got {members.shape[0]}")
        distance = nearest_distance(ctx.space, sp.vstack([members, nonmembers], format="csr"), X)
        d_members, d_nonmembers = distance[:members.shape[0]], distance[members.shape[0]:]
        details.distances = (d_members, d_nonmembers)
        return {**privacy.membership(d_members, d_nonmembers),
                **privacy.distance_to_closest(d_members, d_nonmembers)}

    def copies():
        return privacy.copy_rates(ctx.train_fingerprints, rows.fingerprints(X, ~layout.continuous),
                                  ctx.holdout_fingerprints)

    def nnaa():
        return privacy.nnaa(ctx.space, ctx.train.X, ctx.holdout.X, X, ctx.rng("nnaa", name), config.nnaa_max_rows)

    def aia():
        known, unknown = ctx.aia_columns
        options = {"dense_columns": config.dense_columns, "device": config.device,
                   "block_elements": config.block_elements}
        return privacy.attribute_inference(ctx.train.X, ctx.holdout.X, X, known, unknown, ctx.rng("aia", name),
                                           config.aia_max_rows, config.aia_neighbours, options)

    groups: list[tuple[str, Callable[[], dict]]] = [
        ("prevalence", prevalence), ("codes_per_patient", codes_per_patient), ("correlation", correlation),
        ("cooccurrence", cooccurrence), ("discriminator", discriminate), ("dimwise", dimwise)]
    if layout.continuous.any():
        groups += [("continuous", continuous), ("continuous_correlation", continuous_correlation)]
    if layout.categorical.any():
        groups.append(("categorical", categorical))
    if layout.label is not None:
        groups += [("tstr", tstr), ("trtr", trtr)]
    groups += [("membership", membership), ("copies", copies), ("nnaa", nnaa), ("aia", aia)]
    for group, run in groups:
        _record(out, group, run)
        log.debug("%s: %s done in %.1f s", name, group, out.timings[group])
    return out


def _continuous_values(X: sp.csr_matrix, layout: Layout, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled values and a missing mask (from the column's ``__missing`` indicator, when it has one)."""
    dense = X[:, values].toarray()
    missing = np.zeros_like(dense, dtype=bool)
    for j, column in enumerate(values):
        indicator = column + 1
        if indicator < layout.width and layout.source[indicator] == layout.source[column] \
                and layout.names[indicator].endswith("__missing"):
            missing[:, j] = X[:, indicator].toarray().ravel() > 0.5
    return dense, missing


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
    with _thread_limit(config.threads):
        return _evaluate(train, test, synthetic, label, references, seed, scale, config)


@contextlib.contextmanager
def _thread_limit(threads: int | None):
    """Limit torch, BLAS and OpenMP threads for the evaluation, restoring the previous settings afterwards."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(previous)


def _evaluate(train, test, synthetic, label, references, seed, scale, config: EvaluationConfig) -> Report:
    synthetic = dict(synthetic or {})
    runs: dict[str, tuple[object, str | None, float | None]] = {n: (t, None, None) for n, t in synthetic.items()}
    for model, fractions in (scale or {}).items():
        for fraction, table in fractions.items():
            if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
                raise DataError(f"scale run '{model}': the training fraction must be in (0, 1], got {fraction!r}")
            runs[f"{model}@{float(fraction):g}"] = (table, model, float(fraction))
    bad_names = [n for n in runs if not isinstance(n, str) or not n or n.startswith("reference:")]
    if bad_names:
        raise DataError(f"synthetic dataset names must be non-empty and not start with 'reference:': {bad_names[:3]}")
    if not runs and not references:
        raise DataError("nothing to evaluate: give at least one synthetic dataset or keep the reference rows")

    train_table = as_train_table(train)
    layout, codings = build_layout(train_table, label)
    train_prepared = prepare(train_table.frame, layout, codings, "train")
    test_prepared = prepare(test, layout, codings, "test")
    common_warnings = test_prepared.warnings
    if test_prepared.label_problem:
        common_warnings = common_warnings + [f"{test_prepared.label_problem}; utility metrics are skipped"]
    base_mask = test_prepared.usable[layout.source]
    contexts: dict[tuple, Context] = {}

    def context_for(mask: np.ndarray, holdout: Encoded, holdout_key: str) -> Context:
        key = (mask.tobytes(), holdout_key)
        if key not in contexts:
            if mask.all():
                contexts[key] = Context(layout, train_prepared.data, holdout, config, seed)
            else:
                contexts[key] = Context(layout.restrict(mask), train_prepared.data.columns(mask),
                                        holdout.columns(mask), config, seed)
        return contexts[key]

    report = Report(config=config)
    for name, (table, model, fraction) in runs.items():
        source = f"synthetic '{name}'"
        try:
            prepared = prepare(table, layout, codings, source)
        except EhrdiffError as exc:
            report.add_failed(name, str(exc), common_warnings)
            log.warning("%s", exc)
            continue
        mask = base_mask & prepared.usable[layout.source]
        for message in prepared.warnings:
            log.warning("%s", message)
        data = prepared.data if mask.all() else prepared.data.columns(mask)
        _run(report, context_for(mask, test_prepared.data, "test"), name, data, prepared.label_problem,
             common_warnings + prepared.warnings, extra={} if fraction is None else {"training_fraction": fraction})
        if model is not None:
            report.scale[name] = (model, fraction)

    if references:
        train_data, test_data = train_prepared.data, test_prepared.data
        rng = np.random.default_rng([seed, _crc("references")])
        n = train_data.n
        half_synthetic, half_holdout = refs.split_test(test_data, rng)
        builds = [(refs.REAL_TEST, lambda: half_synthetic, "test-half", half_holdout),
                  (refs.TRAIN_RESAMPLE, lambda: refs.train_resample(train_data, n, rng), "test", test_data),
                  (refs.INDEPENDENT, lambda: refs.independent(train_data, layout, n, rng), "test",
                   test_data)]
        for name, build, holdout_key, holdout in builds:
            label_problem = test_prepared.label_problem if name == refs.REAL_TEST else None
            if holdout.n < 2:
                report.add_failed(name, f"the test data has too few rows ({test_data.n}) for this reference",
                                  common_warnings)
                continue
            _run(report, context_for(base_mask, holdout, holdout_key), name, build().columns(base_mask)
                 if not base_mask.all() else build(), label_problem, common_warnings)
    return report


def _run(report: Report, ctx: Context, name: str, data: Encoded, label_problem: str | None, warnings: list[str],
         extra: dict | None = None) -> None:
    details = DatasetDetails()
    started = time.perf_counter()
    outcome = evaluate_one(ctx, name, data, label_problem, details)
    log.info("%s: evaluated in %.1f s", name, time.perf_counter() - started)
    values = {"n_rows": int(data.n), **(extra or {}), **outcome.values}
    report.add(name, values, outcome.skipped, warnings, details, outcome.timings)
