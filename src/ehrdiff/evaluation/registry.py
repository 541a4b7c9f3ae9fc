"""The registry of metric groups: each group is one function, registered once together with the metrics it returns.

A metric group computes several metrics together (they share their inputs) and is skipped as a whole when those
inputs are unusable. Register one with the decorator::

    @metric_group("name", "section", [("metric_key", "best value", "one-line definition"), ...])
    def name(c: Comparison) -> dict: ...

Groups run in registration order for every dataset, and their metrics appear in that order in metrics.json,
report.md and report.html (``catalog.metrics()``, which the report follows, is read from this registry).

A group's confidence intervals (``evaluate(..., bootstrap=B)``) come from its bootstrap function, registered with
``@bootstrap_of("name", resampled="what is resampled")`` (see ``bootstrap.py``); a group without one gets none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Sequence

from ehrdiff.errors import EhrdiffError
from ehrdiff.evaluation.stats import SkipMetric, Skipped

if TYPE_CHECKING:
    from ehrdiff.evaluation.bootstrap import Draw
    from ehrdiff.evaluation.context import Comparison
    from ehrdiff.evaluation.inputs import Layout


@dataclass(frozen=True)
class MetricInfo:
    key: str
    group: str        # metrics computed together (skipped together when their input is unusable)
    section: str      # fidelity | continuous | categorical | utility | privacy | about
    best: str         # short statement of the direction / ideal, e.g. "higher (1)", "0.5", "lower (0)"
    text: str         # one-line definition for tables


@dataclass(frozen=True)
class MetricGroup:
    name: str
    compute: Callable[[Comparison], dict]
    metrics: tuple[MetricInfo, ...]
    applies: Callable[[Layout], bool]   # False: the data has no columns of this kind, so the metrics are left out
    # (Comparison, Draw) -> {metric key: (B,) values on B resamples}, run after ``compute`` on the same Comparison
    bootstrap: Callable[[Comparison, Draw], dict] | None = None
    resampled: str = ""                 # what the bootstrap resamples, for the report (e.g. "synthetic rows")

    @property
    def keys(self) -> list[str]:
        return [m.key for m in self.metrics]

    def run(self, comparison: Comparison) -> dict:
        """The group's values; a SkipMetric (or a user-data error) makes every metric of the group ``Skipped``."""
        try:
            return self.compute(comparison)
        except (SkipMetric, EhrdiffError) as exc:
            return {key: Skipped(str(exc)) for key in self.keys}


REGISTRY: dict[str, MetricGroup] = {}


def metric_group(name: str, section: str, metrics: Sequence[tuple[str, str, str]],
                 applies: Callable[[Layout], bool] | None = None) -> Callable:
    """Register the decorated function ``(Comparison) -> {metric key: value}`` as the metric group ``name``.

    ``metrics``: (key, best, definition) of every metric the function returns, in report order; ``section``: the
    report section they are listed under; ``applies``: run the group only for layouts where it returns True (the
    default: always). A value may be ``Skipped(reason)`` for one metric; raising ``SkipMetric`` skips them all."""
    infos = tuple(MetricInfo(key, name, section, best, text) for key, best, text in metrics)
    taken = {m.key for group in REGISTRY.values() for m in group.metrics}
    clashes = sorted(taken.intersection(m.key for m in infos))
    if name in REGISTRY or clashes:
        raise ValueError(f"metric group '{name}' is registered twice or repeats metric keys {clashes}")

    def register(compute: Callable[[Comparison], dict]) -> Callable[[Comparison], dict]:
        REGISTRY[name] = MetricGroup(name, compute, infos, applies or _always)
        return compute

    return register


def bootstrap_of(name: str, resampled: str) -> Callable:
    """Register the decorated function ``(Comparison, Draw) -> {metric key: (B,) array}`` as the bootstrap of the
    metric group ``name``: its metrics on a block of B resamples at once (NaN where undefined). It runs after the
    group on the same Comparison, so it can reuse what the group kept in ``c.kept``. ``resampled`` says in a few
    words which rows are resampled and what is kept fixed; the report shows it beside the intervals."""
    def register(function: Callable) -> Callable:
        if name not in REGISTRY or REGISTRY[name].bootstrap is not None:
            raise ValueError(f"bootstrap of metric group '{name}': no such group, or it has one already")
        REGISTRY[name] = replace(REGISTRY[name], bootstrap=function, resampled=resampled)
        return function

    return register


def _always(layout: Layout) -> bool:
    return True


def groups_for(layout: Layout) -> list[MetricGroup]:
    """The registered groups that apply to data with this layout, in registration order."""
    return [group for group in REGISTRY.values() if group.applies(layout)]


__all__ = ["REGISTRY", "MetricGroup", "MetricInfo", "bootstrap_of", "groups_for", "metric_group"]
