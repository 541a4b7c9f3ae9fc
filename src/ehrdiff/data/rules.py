"""Relations between columns that every real row keeps, declared once and kept by every generator's sampler.

Five kinds, each a JSON object (a rules file is a JSON array of them; docs/data.md):

  {"kind": "order", "columns": ["HR_min", ["HR_first", "HR_last", "HR_mean"], "HR_max"]}
      a chain of levels, each a column or a list of columns: every value of a level is <= every value of the
      levels after it (``["a", "b"]`` is a <= b); a missing value takes no part
  {"kind": "count", "column": "HR_count", "group": ["HR_first", "HR_last", "HR_min", "HR_max", "HR_mean"]}
      ``column`` counts the observations behind ``group``: it is 0 exactly when every column of the group is
      missing, and above 0 exactly when none is
  {"kind": "range", "column": "Age", "low": 15, "high": 90, "integer": false}
      present values lie in [low, high] (either end may be null: open) and are whole numbers if ``integer``
  {"kind": "combinations", "columns": ["ICUType", "Gender"], "allowed": [[1, 0], [1, 1], [2, 0]]}
      the row's values of ``columns`` are one of the ``allowed`` tuples (null stands for a missing value)
  {"kind": "summary", "count": "HR_count", "first": "HR_first", "last": "HR_last", "min": "HR_min",
   "max": "HR_max", "mean": "HR_mean"}
      the five are the first, last, minimum, maximum and mean of ``count`` values: what that implies by arithmetic
      (:class:`Summary`: one value, two values, three values, the mean's range)

How a sample is made to keep them (:func:`project`, then the rows still breaking one are drawn again by
models.base): ranges are clipped (and rounded); an order's outer levels are put in order and the levels between
clipped into the range they leave; a count and its group follow the group's missing indicators (fewer than half
present: count 0 and the group missing; otherwise a count of at least 1 and the group complete, its gaps filled with
the mean of its present values); a summary is put on what its count implies (:meth:`Summary.project`).
Combinations are kept by resampling the row. EHRDiff can instead encode an
order's columns so that its rows keep the order by construction (``order_encoding="chains"``, data/chains.py);
projection then finds nothing to repair there.
"""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ehrdiff.errors import DataError

# where a DataFrame (Table.to_frame, read_frame of a Parquet file) carries its table's rules, as JSON-able dicts
RULES_ATTR = "ehrdiff_rules"
NUMERIC_KINDS = ("continuous", "binary", "label")


class Rule(ABC):
    """One declared relation. ``columns``: every column it names; ``kept_by``: "projection" or "resampling"."""

    kind: ClassVar[str]
    kept_by: ClassVar[str] = "projection"

    @property
    @abstractmethod
    def columns(self) -> tuple[str, ...]: ...

    @abstractmethod
    def broken(self, frame: pd.DataFrame) -> np.ndarray:
        """True for each row of ``frame`` that breaks the rule."""

    def project(self, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """Repair what can be repaired among ``rows`` (a broken mask) in place; return the rows changed."""
        return np.zeros(len(frame), dtype=bool)

    @abstractmethod
    def to_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable form (report rows, log lines)."""

    numeric_columns: ClassVar[bool] = True       # its columns must hold numbers


def numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats, NaN where missing or not a number."""
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _top(level: np.ndarray) -> np.ndarray:
    """Per row, the largest present value of a level (-inf when none is present)."""
    return np.max(np.where(np.isnan(level), -np.inf, level), axis=1)


def _at_extreme(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return (x == low) | (x == high)


def _bottom(level: np.ndarray) -> np.ndarray:
    """Per row, the smallest present value of a level (inf when none is present)."""
    return np.min(np.where(np.isnan(level), np.inf, level), axis=1)


@dataclass(frozen=True)
class Order(Rule):
    levels: tuple[tuple[str, ...], ...]
    kind: ClassVar[str] = "order"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for level in self.levels for c in level)

    def _pairs(self):
        for i, lower in enumerate(self.levels):
            for upper in self.levels[i + 1:]:
                for a in lower:
                    for b in upper:
                        yield a, b

    def broken(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros(len(frame), dtype=bool)
        values = {c: numbers(frame, c) for c in self.columns}
        for a, b in self._pairs():      # every pair, not just neighbours: a missing middle value breaks transitivity
            with np.errstate(invalid="ignore"):
                out |= values[a] > values[b]
        return out

    def project(self, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """From the outside in: the first and last levels are put in order (where they are not, their present
        values are sorted between them), then every level between is clipped into the range they leave, and so on
        inwards. For min <= {first, last, mean} <= max: min and max swap if min > max, the others are clipped into
        [min, max]. Clipping moves only the values out of place, and each only as far as the nearest bound (sorting
        every value into place instead moved the default model's CinC minima and maxima far more:
        benchmarks/results/cinc_rules.md)."""
        index = np.flatnonzero(rows)
        if not len(index):
            return rows.copy()
        levels = [np.column_stack([numbers(frame, c)[index] for c in level]) for level in self.levels]
        low, high = 0, len(levels) - 1
        while low < high:
            ends = np.concatenate([levels[low], levels[high]], axis=1)
            first = np.r_[np.zeros(levels[low].shape[1]), np.ones(levels[high].shape[1])]
            for r in np.flatnonzero(_top(levels[low]) > _bottom(levels[high])):
                seen = ~np.isnan(ends[r])
                places = np.flatnonzero(seen)[np.lexsort((ends[r, seen], first[seen]))]
                ends[r, places] = np.sort(ends[r, seen])
            levels[low], levels[high] = ends[:, :levels[low].shape[1]], ends[:, levels[low].shape[1]:]
            floor, ceiling = _top(levels[low])[:, None], _bottom(levels[high])[:, None]
            for j in range(low + 1, high):
                levels[j] = np.clip(levels[j], floor, ceiling)      # NaN stays NaN
            low, high = low + 1, high - 1
        matrix = np.concatenate(levels, axis=1)
        for j, column in enumerate(self.columns):
            frame.loc[frame.index[index], column] = matrix[:, j]
        return rows.copy()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": [lv[0] if len(lv) == 1 else list(lv) for lv in self.levels]}

    def describe(self) -> str:
        return " <= ".join(lv[0] if len(lv) == 1 else "{" + ", ".join(lv) + "}" for lv in self.levels)


@dataclass(frozen=True)
class Count(Rule):
    column: str
    group: tuple[str, ...]
    kind: ClassVar[str] = "count"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column, *self.group)

    def _state(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        count = numbers(frame, self.column)
        observed = np.column_stack([frame[c].notna().to_numpy() for c in self.group])
        return count, observed

    def broken(self, frame: pd.DataFrame) -> np.ndarray:
        count, observed = self._state(frame)
        none, every = ~observed.any(axis=1), observed.all(axis=1)
        with np.errstate(invalid="ignore"):
            return np.isnan(count) | ((count == 0) & ~none) | ((count != 0) & ~every)

    def project(self, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """Decided by the group's missing indicators: with fewer than half of its columns present, the group is
        set missing and the count 0; otherwise the count is set to at least 1 and a missing group column takes the
        mean of the row's present ones (an order rule then clips them into place). (Deciding by the count, or by a
        vote of the count and the group, put the default model's CinC missing rates further from the training
        data: benchmarks/results/cinc_rules.md.)"""
        count, observed = self._state(frame)
        missing = rows & (observed.mean(axis=1) < 0.5)
        present = rows & ~missing
        if missing.any():
            where = frame.index[missing]
            frame.loc[where, self.column] = 0
            for column in self.group:
                frame.loc[where, column] = np.nan
        if present.any():
            where = frame.index[present]
            frame.loc[where, self.column] = np.fmax(np.nan_to_num(count[present], nan=1.0), 1.0)
            values = np.column_stack([numbers(frame, c)[present] for c in self.group])
            fill = np.nanmean(values, axis=1)           # at least half of them are present
            for j, column in enumerate(self.group):
                gap = np.isnan(values[:, j])
                if gap.any():
                    frame.loc[where[gap], column] = fill[gap]
        return missing | present

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "group": list(self.group)}

    def describe(self) -> str:
        return f"{self.column} = 0 exactly when {{{', '.join(self.group)}}} missing"


@dataclass(frozen=True)
class Range(Rule):
    column: str
    low: float | None = None
    high: float | None = None
    integer: bool = False
    kind: ClassVar[str] = "range"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def broken(self, frame: pd.DataFrame) -> np.ndarray:
        values = numbers(frame, self.column)
        with np.errstate(invalid="ignore"):
            out = np.zeros(len(frame), dtype=bool)
            if self.low is not None:
                out |= values < self.low
            if self.high is not None:
                out |= values > self.high
            if self.integer:
                out |= values != np.round(values)
        return out & ~np.isnan(values)

    def project(self, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """Round (whole numbers) and clip to the range; the ends of a whole-number range are rounded inwards."""
        values = numbers(frame, self.column)[rows]
        low, high = self.low, self.high
        if self.integer:
            values = np.round(values)
            low = None if low is None else math.ceil(low)
            high = None if high is None else math.floor(high)
        values = np.clip(values, -np.inf if low is None else low, np.inf if high is None else high)
        frame.loc[frame.index[rows], self.column] = values
        return rows.copy()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "low": self.low, "high": self.high,
                "integer": self.integer}

    def describe(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{self.column} in [{low}, {high}]" + (" whole" if self.integer else "")


def _plain(value: Any) -> Any:
    """A cell as a comparable plain value: missing -> None, numpy scalars -> Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    return value.item() if isinstance(value, np.generic) else value


def mean_range(first: np.ndarray, last: np.ndarray, low: np.ndarray, high: np.ndarray,
               n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least and the greatest mean of n values in [low, high] whose first is ``first`` and last ``last``: the
    other n - 2 lie in [low, high] and supply the minimum and the maximum where the first and last do not."""
    spread = high - low
    others = np.maximum(n - 2, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        has_low, has_high = (first == low) | (last == low), (first == high) | (last == high)
        return ((first + last + others * low + np.where(has_high, 0, spread)) / n,
                (first + last + others * high - np.where(has_low, 0, spread)) / n)


# a mean is a sum of floats divided: compared with what it should be up to rounding (the other summaries are
# recorded values, compared exactly)
_same_mean = partial(np.isclose, rtol=1e-9, atol=1e-9)
# rows of at least 3 values a table needs before a summary's tie shares are kept (Summary.tie_shares)
MIN_TIE_ROWS = 20


@dataclass(frozen=True)
class Summary(Rule):
    """What summaries of ``count`` observations are by arithmetic (the first, last, minimum, maximum and mean of n
    values): with n = 1 all five are the one value; with n = 2 the minimum and maximum are the first and last and
    the mean is their average; with n = 3 the first or the last is the minimum or the maximum (the one other value
    cannot be both); with n >= 3 the mean lies where n values allow: n - 2 values besides the first and last, within
    [minimum, maximum], one of them at the maximum when neither end is, one at the minimum likewise. Rows where the
    count is not above 0 or a summary is missing take no part (the count rule covers them)."""

    count: str
    first: str
    last: str
    low: str
    high: str
    mean: str
    kind: ClassVar[str] = "summary"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.count, self.first, self.last, self.low, self.high, self.mean)

    def _values(self, frame: pd.DataFrame):
        n, f, last, low, high, mean = (numbers(frame, c) for c in self.columns)
        with np.errstate(invalid="ignore"):
            rows = (n >= 1) & ~np.isnan(np.column_stack([f, last, low, high, mean])).any(axis=1)
        return n, f, last, low, high, mean, rows

    def broken(self, frame: pd.DataFrame) -> np.ndarray:
        n, f, last, low, high, mean, rows = self._values(frame)
        with np.errstate(invalid="ignore"):
            one = (f == last) & (f == low) & (f == high) & _same_mean(mean, f)
            two = (low == np.fmin(f, last)) & (high == np.fmax(f, last)) & _same_mean(mean, (f + last) / 2)
            ends = _at_extreme(f, low, high) | _at_extreme(last, low, high)
            least, most = mean_range(f, last, low, high, n)
            within = ((mean >= least) | _same_mean(mean, least)) & ((mean <= most) | _same_mean(mean, most))
            ok = np.where(n == 1, one, np.where(n == 2, two, within & ((n != 3) | ends)))
        return rows & ~ok

    def project(self, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """n = 1: every summary takes the first value; n = 2: the minimum, maximum and mean follow from the first
        and last; n = 3 with neither end at an extreme: the end nearest an extreme is put on it; n >= 3: the mean is
        clipped into the range n values allow (an order rule has put the ends within [minimum, maximum])."""
        n, f, last, low, high, mean, usable = self._values(frame)
        rows = rows & usable
        one, two, more = rows & (n == 1), rows & (n == 2), rows & (n >= 3)
        low, high, mean = np.where(one, f, low), np.where(one, f, high), np.where(one, f, mean)
        last = np.where(one, f, last)
        low, high = np.where(two, np.fmin(f, last), low), np.where(two, np.fmax(f, last), high)
        mean = np.where(two, (f + last) / 2, mean)
        neither = more & (n == 3) & ~(_at_extreme(f, low, high) | _at_extreme(last, low, high))
        gaps = np.column_stack([f - low, high - f, last - low, high - last])
        nearest = np.argmin(np.where(np.isnan(gaps), np.inf, gaps), axis=1)
        f = np.where(neither & (nearest == 0), low, np.where(neither & (nearest == 1), high, f))
        last = np.where(neither & (nearest == 2), low, np.where(neither & (nearest == 3), high, last))
        least, most = mean_range(f, last, low, high, n)
        mean = np.where(more, np.clip(mean, least, most), mean)
        where = frame.index[rows]
        for column, values in zip(self.columns[1:], (f, last, low, high, mean)):
            frame.loc[where, column] = values[rows]
        return rows.copy()

    # ---- ties: recorded values often repeat (a weight entered once and copied, a first value that stays the
    # highest), so among n >= 3 values the summaries are often exactly equal, which a generator drawing each column
    # as a continuous value almost never makes (benchmarks/results/default_training.md, CinC 2012)
    TIES: ClassVar[tuple[tuple[str, str], ...]] = (("low", "high"), ("first", "low"), ("first", "high"),
                                                    ("last", "low"), ("last", "high"))

    def _ends(self, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The five summaries by the rule's field names (copies) and the indices of the rows of at least 3 values."""
        n, *summaries, rows = self._values(frame)
        named = {key: np.array(v) for key, v in zip(("first", "last", "low", "high", "mean"), summaries)}
        return named, np.flatnonzero(rows & (n >= 3))

    def tie_shares(self, frame: pd.DataFrame) -> list[float] | None:
        """Among rows of at least 3 values, the share where all are equal (minimum = maximum), then where the first
        is the minimum, the first the maximum, the last the minimum, the last the maximum (TIES); None below
        MIN_TIE_ROWS such rows."""
        values, rows = self._ends(frame)
        if len(rows) < MIN_TIE_ROWS:
            return None
        return [float(np.mean(values[a][rows] == values[b][rows])) for a, b in self.TIES]

    def snap_ties(self, frame: pd.DataFrame, shares: list[float]) -> np.ndarray:
        """Rows of at least 3 values made tied, in place, until each tie of TIES holds in its ``shares`` of them:
        the rows nearest to it first (the smallest spread relative to the values; the end nearest the extreme,
        relative to the spread); all equal takes the first value. Values only move onto other recorded values of
        the row, so rounding and the order rules still hold; the mean is left to projection. The rows changed."""
        values, rows = self._ends(frame)
        changed = np.zeros(len(frame), dtype=bool)
        for (a, b), share in zip(self.TIES, shares):
            x, y = values[a][rows], values[b][rows]
            spread = values["high"][rows] - values["low"][rows]
            with np.errstate(invalid="ignore", divide="ignore"):
                if a == "low":      # all equal: the narrowest rows relative to their values
                    distance = spread / np.maximum(np.abs(y) + np.abs(x), 1e-12)
                else:               # an end at an extreme (not one already at the other extreme: all equal), and
                    # not where the other end already sits at it: snapped one tie at a time, the first and the last
                    # would land on the same extreme far more often than in real rows
                    other = values["high" if b == "low" else "low"][rows]
                    partner = values["last" if a == "first" else "first"][rows]
                    distance = np.where((x == other) | (partner == y), np.inf, np.abs(x - y) / spread)
            tied = x == y
            wanted = int(round(share * len(rows))) - int(tied.sum())
            if wanted <= 0:
                continue
            distance[tied] = np.inf
            nearest = np.argsort(distance, kind="stable")[:wanted]
            picked = rows[nearest[np.isfinite(distance[nearest])]]
            if a == "low":
                for key in values:
                    values[key][picked] = values["first"][picked]
            else:
                values[a][picked] = values[b][picked]
            changed[picked] = True
        where = frame.index[changed]
        for key, column in values.items():         # the keys are the rule's field names
            frame.loc[where, getattr(self, key)] = column[changed]
        return changed

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "first": self.first, "last": self.last, "min": self.low,
                "max": self.high, "mean": self.mean}

    def describe(self) -> str:
        return (f"{self.first}, {self.last}, {self.low}, {self.high}, {self.mean} are the first, last, minimum, "
                f"maximum and mean of {self.count} values")


@dataclass(frozen=True)
class Combinations(Rule):
    names: tuple[str, ...]
    allowed: tuple[tuple[Any, ...], ...]
    kind: ClassVar[str] = "combinations"
    kept_by: ClassVar[str] = "resampling"
    numeric_columns: ClassVar[bool] = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.names

    def broken(self, frame: pd.DataFrame) -> np.ndarray:
        allowed = set(self.allowed)
        cells = zip(*(frame[c].astype(object).to_numpy() for c in self.names))
        return np.fromiter((tuple(_plain(v) for v in row) not in allowed for row in cells), dtype=bool,
                           count=len(frame))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": list(self.names), "allowed": [list(t) for t in self.allowed]}

    def describe(self) -> str:
        return f"({', '.join(self.names)}) one of {len(self.allowed)} combinations"


KINDS = {cls.kind: cls for cls in (Order, Count, Range, Summary, Combinations)}
SHAPES = {
    "order": '{"kind": "order", "columns": ["a", ["b", "c"], "d"]}',
    "count": '{"kind": "count", "column": "n", "group": ["a", "b"]}',
    "range": '{"kind": "range", "column": "a", "low": 0, "high": 10, "integer": false}',
    "summary": '{"kind": "summary", "count": "n", "first": "a", "last": "b", "min": "c", "max": "d", "mean": "e"}',
    "combinations": '{"kind": "combinations", "columns": ["a", "b"], "allowed": [["x", 1], ["y", 2]]}',
}


# ---- reading and checking ----------------------------------------------------------------------------------
def parse_rules(items: Any, source: str = "rules") -> tuple[Rule, ...]:
    """Rules from their JSON form (a list of objects); DataError naming the rule (by position) and what its shape
    should be."""
    if isinstance(items, (list, tuple)) and all(isinstance(r, Rule) for r in items):
        return tuple(items)
    if not isinstance(items, (list, tuple)):
        raise DataError(f"{source}: rules must be a JSON array of rule objects, e.g. [{SHAPES['order']}]")
    return tuple(r if isinstance(r, Rule) else _parse_rule(r, f"{source}: rule {i + 1}") for i, r in enumerate(items))


def _parse_rule(item: Any, where: str) -> Rule:
    if not isinstance(item, dict) or item.get("kind") not in KINDS:
        kind = item.get("kind") if isinstance(item, dict) else None
        raise DataError(f"{where}: {'unknown kind ' + repr(kind) if kind is not None else 'no kind'}; a rule is an "
                        f"object with \"kind\" one of {', '.join(KINDS)}")
    kind = item["kind"]
    try:
        rule = _build(kind, item)
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"{where} ({kind}): {exc}; write it as {SHAPES[kind]}") from None
    if len(set(rule.columns)) != len(rule.columns):
        raise DataError(f"{where} ({kind}): names a column twice; write it as {SHAPES[kind]}")
    return rule


def _build(kind: str, item: dict) -> Rule:
    keys = {"order": {"kind", "columns"}, "count": {"kind", "column", "group"},
            "range": {"kind", "column", "low", "high", "integer"},
            "summary": {"kind", "count", "first", "last", "min", "max", "mean"},
            "combinations": {"kind", "columns", "allowed"}}[kind]
    extra = sorted(set(item) - keys)
    if extra:
        raise ValueError(f"unknown field '{extra[0]}'")
    if kind == "order":
        columns = item["columns"]
        if not isinstance(columns, list) or len(columns) < 2:
            raise ValueError("'columns' must list at least two levels")
        levels = tuple((c,) if isinstance(c, str) else _names(c, "a level") for c in columns)
        return Order(levels)
    if kind == "count":
        return Count(_name(item["column"], "'column'"), _names(item["group"], "'group'"))
    if kind == "summary":
        return Summary(*(_name(item[key], f"'{key}'") for key in ("count", "first", "last", "min", "max", "mean")))
    if kind == "range":
        low, high = (_number(item.get(end), f"'{end}'") for end in ("low", "high"))
        integer = item.get("integer", False)
        if not isinstance(integer, bool):
            raise ValueError("'integer' must be true or false")
        if low is None and high is None:
            raise ValueError("give 'low', 'high' or both")
        if low is not None and high is not None and low > high:
            raise ValueError(f"'low' {low:g} is above 'high' {high:g}")
        return Range(_name(item["column"], "'column'"), low, high, integer)
    names = _names(item["columns"], "'columns'")
    allowed = item["allowed"]
    if not isinstance(allowed, list) or not allowed:
        raise ValueError("'allowed' must list at least one combination")
    tuples = []
    for combination in allowed:
        if not isinstance(combination, list) or len(combination) != len(names):
            raise ValueError(f"each allowed combination must list {len(names)} values, got {combination!r}")
        if any(isinstance(v, (list, dict)) for v in combination):
            raise ValueError(f"a combination holds plain values (text, numbers, null), got {combination!r}")
        tuples.append(tuple(_plain(v) for v in combination))
    return Combinations(names, tuple(tuples))


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a column name")
    return value


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{what} must be a non-empty list of column names")
    return tuple(value)


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a number or null")
    return float(value)


def check_rules(rules: tuple[Rule, ...], kinds: dict[str, str], source: str = "data") -> None:
    """DataError for a rule naming a column the table does not have, or comparing a column that holds no numbers."""
    for i, rule in enumerate(rules):
        for column in rule.columns:
            if column not in kinds:
                raise DataError(f"{source}: rule {i + 1} ({rule.describe()}) names column '{column}', which the "
                                "table does not have; fix the name or drop the rule")
            if rule.numeric_columns and kinds[column] not in NUMERIC_KINDS:
                raise DataError(f"{source}: rule {i + 1} ({rule.describe()}) compares column '{column}', which is "
                                f"{kinds[column]}; {rule.kind} rules take number columns (use a combinations rule)")


def rules_to_json(rules: tuple[Rule, ...]) -> list[dict[str, Any]]:
    return [rule.to_dict() for rule in rules]


def read_rules_file(path: str | os.PathLike) -> tuple[Rule, ...]:
    """The rules of a JSON file (an array of rule objects); DataError naming the file otherwise."""
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: rules file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: rules file cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not valid JSON ({getattr(exc, 'msg', exc)}); a rules file is a JSON array of "
                        "rule objects (docs/data.md)") from None
    return parse_rules(items, str(path))


def carried_rules(frame: pd.DataFrame, source: str = "data") -> tuple[Rule, ...]:
    """The rules a DataFrame carries in ``attrs`` whose columns it still has (a frame with columns removed keeps
    the rest, as with the kinds)."""
    carried = frame.attrs.get(RULES_ATTR)
    if not carried:
        return ()
    columns = set(map(str, frame.columns))
    return tuple(r for r in parse_rules(carried, source) if set(r.columns) <= columns)


# ---- keeping them ------------------------------------------------------------------------------------------
def broken_rows(frame: pd.DataFrame, rules: tuple[Rule, ...]) -> np.ndarray:
    """True for each row that breaks at least one rule."""
    out = np.zeros(len(frame), dtype=bool)
    for rule in rules:
        out |= rule.broken(frame)
    return out


PROJECTION_PASSES = 3     # sorting an order can move a value out of its column's range: project again, a few times


def project(frame: pd.DataFrame, rules: tuple[Rule, ...]) -> tuple[pd.DataFrame, np.ndarray]:
    """A copy of ``frame`` with what projection can repair repaired (ranges first: a count is rounded before it is
    compared with 0), and the rows it changed. What one rule's repair breaks again is repaired in the next pass."""
    frame = frame.copy()
    changed = np.zeros(len(frame), dtype=bool)
    ordered = sorted(rules, key=lambda r: ("range", "count", "order", "summary", "combinations").index(r.kind))
    for _ in range(PROJECTION_PASSES):
        changed_now = np.zeros(len(frame), dtype=bool)
        for rule in ordered:
            broken = rule.broken(frame)
            if broken.any():
                changed_now |= rule.project(frame, broken)
        changed |= changed_now
        if not changed_now.any():
            break
    return frame, changed
