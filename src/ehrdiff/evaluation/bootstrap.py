"""Bootstrap confidence intervals: every metric recomputed on B resamples of the rows, a percentile interval centred
on the value (``centred_interval``).

One resample draws, with replacement, as many rows as each row set has: the synthetic rows, the held-out (test) rows
and the training rows, each set on its own. It is stored as multiplicities, an (n, B) matrix of how many times each
row is drawn, so that a metric of the resampled rows is a weighted statistic of the original rows and B resamples
are computed at once (``stats.RankedScores``, weighted sums as one sparse product). Every group of one dataset sees
the same resamples (a row drawn twice is drawn twice for every metric), and resample r of a dataset is the same for
any B >= r + 1.

Which row sets a group resamples, and what it keeps fixed (its fitted models, the training rows its metrics compare
against), is the group's own choice, registered with ``@bootstrap_of(group, resampled=...)`` (``resampled.py``);
docs/metrics.md says what each interval covers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Callable

import numpy as np

from ehrdiff.errors import EhrdiffError
from ehrdiff.evaluation.stats import SkipMetric, Skipped

if TYPE_CHECKING:
    from ehrdiff.evaluation.context import Comparison
    from ehrdiff.evaluation.registry import MetricGroup

log = logging.getLogger(__name__)

BLOCK_ELEMENTS = 16_000_000   # multiplicities held at once per row set (float64): resamples are computed in blocks
MIN_DEFINED = 0.9             # an interval needs the metric defined on at least this share of the resamples


@dataclass(frozen=True)
class Settings:
    """How many resamples and which confidence level; the report's record of how its intervals were made."""

    resamples: int
    confidence: float

    @property
    def quantiles(self) -> tuple[float, float]:
        tail = (1 - self.confidence) / 2
        return tail, 1 - tail


class Draw:
    """A block of resamples of one comparison: for each row set, how many times each of its rows is drawn."""

    def __init__(self, comparison: Comparison, replicates: range):
        self.comparison, self.replicates = comparison, replicates

    @property
    def size(self) -> int:
        return len(self.replicates)

    @cached_property
    def synthetic(self) -> np.ndarray:
        """(synthetic rows, size) multiplicities."""
        return self._counts("synthetic", self.comparison.synthetic.n)

    @cached_property
    def holdout(self) -> np.ndarray:
        """(held-out rows, size) multiplicities."""
        return self._counts("holdout", self.comparison.real.holdout.n)

    @cached_property
    def train(self) -> np.ndarray:
        """(training rows, size) multiplicities."""
        return self._counts("train", self.comparison.real.train.n)

    def _counts(self, rows: str, n: int) -> np.ndarray:
        counts = np.empty((self.size, n))
        for i, replicate in enumerate(self.replicates):
            # one stream per (dataset, row set, resample): resample r does not depend on B or on the block size
            rng = self.comparison.rng(f"bootstrap {rows} {replicate}")
            counts[i] = np.bincount(rng.integers(0, n, n), minlength=n)
        return np.ascontiguousarray(counts.T)

    @staticmethod
    def indices(counts: np.ndarray, i: int) -> np.ndarray:
        """The rows of resample ``i`` of a multiplicity matrix (e.g. ``draw.synthetic``), each as often as drawn."""
        return np.repeat(np.arange(counts.shape[0]), counts[:, i].astype(np.int64))


def blocks(resamples: int, largest_set: int) -> list[range]:
    """Consecutive blocks of resamples small enough to hold their multiplicities (``BLOCK_ELEMENTS``)."""
    size = max(1, min(resamples, BLOCK_ELEMENTS // max(largest_set, 1)))
    return [range(start, min(start + size, resamples)) for start in range(0, resamples, size)]


@dataclass
class Intervals:
    """One dataset's intervals {metric: [low, high]}, why some metric with a value has none, and seconds per group."""

    ci: dict[str, list[float]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def intervals(comparison: Comparison, groups: list[MetricGroup], values: dict, settings: Settings) -> Intervals:
    """Percentile intervals for every metric in ``values`` (the point values of ``groups`` on ``comparison``)."""
    out = Intervals()
    runnable = []
    for group in groups:
        computed = [k for k in group.keys if values.get(k) is not None]
        if not computed:
            continue
        if group.bootstrap is None:
            out.missing.update({k: f"metric group '{group.name}' has no bootstrap" for k in computed})
        else:
            runnable.append(group)
    samples: dict[str, list[np.ndarray]] = {}
    failed: dict[str, str] = {}
    largest = max(comparison.synthetic.n, comparison.real.train.n, comparison.real.holdout.n)
    for block in blocks(settings.resamples, largest):
        draw = Draw(comparison, block)
        for group in runnable:
            if group.name not in failed:
                _run(group, comparison, draw, samples, failed, out.timings)
    for group in runnable:
        for key in group.keys:
            if values.get(key) is None:
                continue
            if group.name in failed:
                out.missing[key] = failed[group.name]
            elif key not in samples:
                out.missing[key] = f"metric group '{group.name}' does not resample it"
            else:
                _interval(key, values[key], np.concatenate(samples[key]), settings, out)
    return out


def _run(group: MetricGroup, comparison: Comparison, draw: Draw, samples: dict, failed: dict,
         timings: dict) -> None:
    """One block of one group's resamples into ``samples``; a group that cannot resample is recorded in ``failed``."""
    started = time.perf_counter()
    try:
        result = group.bootstrap(comparison, draw)
    except (SkipMetric, EhrdiffError) as exc:
        failed[group.name] = f"no interval: {exc}"
        return
    finally:
        timings[group.name] = timings.get(group.name, 0.0) + time.perf_counter() - started
    for key, value in result.items():
        samples.setdefault(key, []).append(np.asarray(value, dtype=np.float64).reshape(draw.size))


def _interval(key: str, value: float, resampled: np.ndarray, settings: Settings, out: Intervals) -> None:
    defined = resampled[np.isfinite(resampled)]
    if len(defined) < MIN_DEFINED * len(resampled):
        out.missing[key] = (f"undefined on {len(resampled) - len(defined)} of {len(resampled)} resamples "
                            f"(an interval needs {MIN_DEFINED:.0%})")
        return
    out.ci[key] = list(centred_interval(value, defined, settings.quantiles))


def centred_interval(value: float, resampled: np.ndarray, quantiles: tuple[float, float]) -> tuple[float, float]:
    """The percentile interval of the resamples, moved so that their median sits on the value.

    Resampling adds sampling noise of its own, so metrics that are not plain means drift on resamples: a distance
    that is 0 at best comes out larger, a correlation of prevalences smaller. The resamples' spread still measures
    the noise, their location does not; for means, rates and AUROCs the move is negligible. The interval stays in
    [0, inf) when the value and every resample do, and in [0, 1] when they all lie there (docs/metrics.md)."""
    low, middle, high = np.quantile(resampled, [quantiles[0], 0.5, quantiles[1]])
    low, high = low + value - middle, high + value - middle
    smallest, largest = min(resampled.min(), value), max(resampled.max(), value)
    if smallest >= 0:
        low = max(low, 0.0)
        if largest <= 1:
            high = min(high, 1.0)
    return float(low), float(high)


def replicate_values(function: Callable[..., dict], size: int, *arrays: np.ndarray) -> dict[str, np.ndarray]:
    """Call ``function(row 0 of each array, ...)``, then rows 1, 2, ..., and stack the returned values per key
    (``Skipped`` and None become NaN): a point-value function applied to each resample."""
    results = [function(*(a[i] for a in arrays)) for i in range(size)]
    return {key: np.array([as_number(r.get(key)) for r in results]) for key in results[0]} if results else {}


def as_number(value) -> float:
    return np.nan if value is None or isinstance(value, Skipped) else float(value)


__all__ = ["Draw", "Intervals", "Settings", "blocks", "intervals", "replicate_values"]
