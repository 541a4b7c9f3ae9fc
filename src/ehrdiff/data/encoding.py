"""Encoding a Table into the model's [0, 1] space and decoding model output back into the user's columns.

binary       kept as 0/1; decoded by clipping to [0, 1] and rounding at 0.5 (the paper's rule)
continuous   scaled to [0, 1] with training statistics: min-max (``"minmax"``, the paper's), or through the training
             distribution's quantiles (``"quantile"``: each value goes to its quantile level, so a column is spread
             evenly over [0, 1] however skewed it is, and a value many rows share, such as a count of 0 or an FiO2
             of 1.0, gets a stretch of its own that decodes to exactly that value), or those quantile levels on to
             a standard normal (``"normal"``: z = Phi^-1(level), the transform TabDDPM uses, Kotelnikov et al.
             2023; every column then has the same Gaussian shape, the one EDM's noise is made of); a
             ``NAME__missing`` indicator column is added when the training data has missing values (encoded value:
             the training median's), one shared by the columns missing in exactly the same training rows with
             ``share_missing`` (a CinC variable's five summaries: missing together in every decoded row);
             decoded by clipping, unscaling, rounding integer columns, and NaN where the indicator is >= 0.5
categorical  one-hot, one column per training category (``NAME=VALUE``); decoded by argmax
label        as binary when its values are 0/1, otherwise as categorical
date         as continuous, on the day count since 1970-01-01 (min-max scaled: the days since the column's earliest
             training date, its reference date, over its training span); decoded to datetime64 inside the training
             range, rounded to the column's resolution (``ColumnCoding.date_unit``: days for dates, minutes for times
             kept to the minute, ...) and localised to its time zone if it had one
id           not encoded, nothing about it is kept; decoding numbers the synthetic rows 1, 2, 3, ... (text ids:
             "synthetic-1", ...), the same whatever the real ids were, so they tell nothing about them

With ``order_chains``, the table's order rules lo <= x <= hi are kept by construction: hi is encoded as its spread
above lo and each x as its position between them (data/chains.py), each then scaled as a continuous column.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from ehrdiff.data.chains import chains_from_dicts, derive, find_chains, restore
from ehrdiff.data.table import Table, _is_binary, as_dates, date_resolution, days_to_dates, wall_clock_days
from ehrdiff.errors import DataError

MISSING_SUFFIX = "__missing"
MISSING_CATEGORY = "<missing>"
CONTINUOUS_SCALINGS = ("minmax", "quantile", "normal")
# "normal": quantile levels are kept in [NORMAL_TAIL, 1 - NORMAL_TAIL] before Phi^-1, so z stays within +-4.75
NORMAL_TAIL = 1e-6
# Quantile levels kept per continuous column (the knots of its piecewise-linear map): at most 1/256 of the training
# values lie between neighbouring knots, which bounds the marginal error the interpolation adds (KS) near 0.004.
QUANTILE_LEVELS = 257
# The first synthetic id. Fixed, not derived from the data: an id past the largest real one (as ehrdiff 0.1 did)
# tells whoever holds the samples that this real id was in training.
SYNTHETIC_ID_START = 1
CODINGS = ("binary", "continuous", "onehot", "id")
# Fields of older files that are no longer used, dropped on reading (id_start: ehrdiff 0.1's first synthetic id).
LEGACY_FIELDS = ("id_start",)


@dataclass
class ColumnCoding:
    """How one user column maps to encoded columns."""

    name: str
    kind: str                     # the user-facing kind
    coding: str                   # "binary" | "continuous" | "onehot" | "id"
    width: int = 1                # encoded columns it occupies (continuous + indicator = 2)
    low: float = 0.0
    high: float = 1.0
    fill: float = 0.5             # encoded value used for missing continuous entries
    integer: bool = False
    step: float = 0.0             # a declared recording resolution (privacy/declared.py): decoded values are rounded
                                  # to its multiples inside the range (0: none)
    has_missing: bool = False
    missing_with: str = ""        # continuous: the column whose missing indicator this one shares ("": its own)
    zero_when_missing: bool = False   # with missing_with: a count, 0 exactly where that indicator says missing
    categories: list = field(default_factory=list)
    dtype: str = "float64"
    scaling: str = "minmax"       # continuous: "minmax", or "quantile" / "normal" through the knots below
    knots: list = field(default_factory=list)      # "quantile": training values at evenly spaced quantile levels,
    knot_low: list = field(default_factory=list)   # each with the share of training values below it
    knot_high: list = field(default_factory=list)  # and the share at or below it (its stretch of [0, 1])
    date_unit: str = ""           # date: the resolution sampled dates are rounded to (table.DATE_UNITS: "D", "min")
    date_tz: str = ""             # date: the column's time zone ("" when it had none)

    def encoded_names(self) -> list[str]:
        if self.coding == "id":
            return []
        if self.coding == "onehot":
            return [f"{self.name}={c}" for c in self.categories]
        if self.own_indicator:
            return [self.name, self.name + MISSING_SUFFIX]
        return [self.name]

    def numbers(self, values: pd.Series, source: str = "data") -> np.ndarray:
        """The numbers this coding scales: a date column's day counts since 1970-01-01 (local wall-clock time),
        any other column's values as floats; NaN where missing. DataError naming ``source`` for a non-date."""
        if self.kind == "date":
            return wall_clock_days(as_dates(values, self.name, source))
        return values.to_numpy(dtype=float, na_value=np.nan)

    @property
    def own_indicator(self) -> bool:
        """A continuous column with missing values and an indicator of its own (not shared, ``missing_with``)."""
        return self.coding == "continuous" and self.has_missing and not self.missing_with

    @property
    def uses_knots(self) -> bool:
        return self.scaling in ("quantile", "normal")

    def scale(self, raw: np.ndarray) -> np.ndarray:
        """Continuous values to the model's space. Min-max: values outside the training range fall outside [0, 1].
        Quantile: a knot goes to the middle of its stretch (a value many rows share fills a wide one), a value
        between two knots in proportion across the gap between their stretches, values past the ends to 0 or 1.
        Normal: the quantile level through Phi^-1 (a standard normal's quantile function)."""
        if not self.uses_knots:
            return (raw - self.low) / (self.high - self.low)
        level = self._level(raw)
        return ndtri(np.clip(level, NORMAL_TAIL, 1 - NORMAL_TAIL)) if self.scaling == "normal" else level

    def _level(self, raw: np.ndarray) -> np.ndarray:
        """The quantile level in [0, 1] of each raw value (see ``scale``)."""
        knots, low, high = (np.asarray(v, dtype=float) for v in (self.knots, self.knot_low, self.knot_high))
        raw = np.asarray(raw, dtype=float)
        i = np.clip(np.searchsorted(knots, raw, side="right") - 1, 0, len(knots) - 2)   # knots[i] <= raw
        t = np.clip((raw - knots[i]) / (knots[i + 1] - knots[i]), 0.0, 1.0)
        out = high[i] + t * (low[i + 1] - high[i])
        at = np.where(raw == knots[i + 1], i + 1, i)            # the knot equal to raw, if any (t is 0 or 1 there)
        out = np.where(raw == knots[at], (low[at] + high[at]) / 2, out)
        return np.where(raw < knots[0], 0.0, np.where(raw > knots[-1], 1.0, out))

    def unscale(self, encoded: np.ndarray) -> np.ndarray:
        """The inverse of ``scale`` (model output outside [0, 1] is clipped first; with "normal", any real z maps
        to a level); with quantiles, any point of a knot's stretch gives the knot, so a value many rows share is
        reproduced exactly, and no value falls outside the training range."""
        if self.scaling == "normal":
            encoded = ndtr(np.asarray(encoded, dtype=float))
        encoded = np.clip(encoded, 0, 1)
        if not self.uses_knots:
            return self.low + encoded * (self.high - self.low)
        knots, low, high = (np.asarray(v, dtype=float) for v in (self.knots, self.knot_low, self.knot_high))
        j = np.clip(np.searchsorted(low, encoded, side="right") - 1, 0, len(knots) - 1)  # low[j] <= encoded
        k = np.minimum(j + 1, len(knots) - 1)
        gap = np.where(k > j, low[k] - high[j], 1.0)
        t = np.clip((encoded - high[j]) / np.where(gap > 0, gap, 1.0), 0.0, 1.0)
        between = knots[j] + t * (knots[k] - knots[j])
        return np.where(encoded <= high[j], knots[j], between)

    def stretches(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """"normal" scaling: each knot's encoded value and the quantile levels its stretch spans (low, high), for
        spreading a training value over its stretch (dequantisation, diffusion/refresh.py)."""
        knots, low, high = (np.asarray(v, dtype=float) for v in (self.knots, self.knot_low, self.knot_high))
        return self.scale(knots), low, high


class TableEncoder:
    """Fit on training data; ``transform`` to the model space, ``inverse_transform`` back to a Table.
    ``continuous``: how continuous columns are scaled, "minmax", "quantile" or "normal" (module docstring).
    ``order_chains``: the table's order rules encoded as chains (spread and positions, data/chains.py)."""

    def __init__(self, continuous: str = "minmax", share_missing: bool = False, order_chains: bool = False) -> None:
        if continuous not in CONTINUOUS_SCALINGS:
            raise ValueError(f"continuous scaling must be one of {CONTINUOUS_SCALINGS}, got {continuous!r}")
        self.continuous = continuous
        self.share_missing = share_missing
        self.order_chains = order_chains
        self.codings_: list[ColumnCoding] = []
        self.chains_: list = []

    # ---- fitting -------------------------------------------------------------------------------------------
    def fit(self, table: Table) -> "TableEncoder":
        self.chains_ = find_chains(table.frame, table.kinds, table.rules, _whole_numbers) if self.order_chains \
            else []
        frame = derive(table.frame, self.chains_, "training data")
        self.codings_ = [self._fit_column(name, table.kinds[name], frame[name]) for name in table.columns]
        for c in self.codings_:
            if c.name in self._derived():          # a spread or a position: the value's dtype, cast after decoding
                c.dtype = str(table.frame[c.name].dtype)
        if self.share_missing:
            self._share_indicators(frame)
        return self

    def _share_indicators(self, frame: pd.DataFrame) -> None:
        """Continuous columns missing in exactly the same training rows (a CinC variable's first, last, min, max and
        mean) share one indicator, the first one's: a value is then missing with its siblings by construction, not
        by the model drawing several indicators alike."""
        leaders: dict[bytes, str] = {}
        for c in self.codings_:
            if c.kind != "continuous" or not c.own_indicator:
                continue
            pattern = np.packbits(frame[c.name].isna().to_numpy()).tobytes()
            if pattern in leaders:
                c.missing_with, c.width = leaders[pattern], 1
            else:
                leaders[pattern] = c.name

    def _derived(self) -> set[str]:
        """The columns encoded as a chain's spread or positions."""
        return {name for chain in self.chains_ for name in (chain.high, *chain.middle)}

    @property
    def has_continuous(self) -> bool:
        return any(c.coding == "continuous" for c in self.codings_)

    def _fit_column(self, name: str, kind: str, values: pd.Series) -> ColumnCoding:
        dtype = str(values.dtype)
        if kind == "id":        # only its dtype: no value of a real id is kept
            return ColumnCoding(name, kind, "id", width=0, dtype=dtype)
        if kind == "binary" or (kind == "label" and _is_binary(values) and values.notna().all()):
            return ColumnCoding(name, kind, "binary", dtype=dtype)
        if kind == "date":     # a continuous column of day counts, decoded back to dates of its resolution
            dates = as_dates(values, name)
            coding = self._fit_column(name, "continuous", pd.Series(wall_clock_days(dates)))
            coding.kind, coding.dtype, coding.integer = kind, dtype, False
            coding.date_unit, coding.date_tz = date_resolution(dates), str(getattr(dates.dtype, "tz", None) or "")
            return coding
        if kind == "continuous":
            observed = values.dropna().to_numpy(dtype=float)
            if len(observed) == 0:
                raise DataError(f"column '{name}' has no observed values; drop it or fill it")
            low, high = float(observed.min()), float(observed.max())
            span = high - low if high > low else 1.0
            has_missing = bool(values.isna().any())
            integer = _whole_numbers(values)
            coding = ColumnCoding(name, kind, "continuous", width=2 if has_missing else 1, low=low, high=low + span,
                                  integer=integer, has_missing=has_missing, dtype=dtype)
            if self.continuous in ("quantile", "normal") and high > low:
                coding.scaling = self.continuous
                coding.knots, coding.knot_low, coding.knot_high = _quantile_knots(observed)
            coding.fill = float(coding.scale(np.median(observed)))
            return coding
        # categorical, or a label with more than two classes
        # distinct values first (vectorised), then the per-value key: a long column has few distinct values
        categories = sorted({_category(v) for v in pd.unique(values.to_numpy(dtype=object))},
                            key=lambda c: (isinstance(c, str), c))
        return ColumnCoding(name, kind, "onehot", width=len(categories), categories=categories, dtype=dtype)

    # ---- encoding ------------------------------------------------------------------------------------------
    @property
    def encoded_columns(self) -> list[str]:
        return [n for c in self.codings_ for n in c.encoded_names()]

    @property
    def width(self) -> int:
        return sum(c.width for c in self.codings_)

    @property
    def binary_mask(self) -> np.ndarray:
        """True for encoded columns that are 0/1 (binary codes, missing indicators, one-hot)."""
        mask = []
        for c in self.codings_:
            if c.coding == "continuous":
                mask += [False] + ([True] if c.own_indicator else [])
            else:
                mask += [True] * c.width
        return np.array(mask, dtype=bool)

    def code_columns(self) -> np.ndarray:
        """Indices of the encoded columns that hold binary codes (kind "binary"; labels and indicators excluded)."""
        starts = np.cumsum([0] + [c.width for c in self.codings_])
        return np.array([start for c, start in zip(self.codings_, starts)
                         if c.coding == "binary" and c.kind == "binary"], dtype=np.int64)

    def discrete_groups(self) -> list[tuple[str, int, int]]:
        """(kind, start, stop) of the encoded 0/1 columns: ("binary", ...) runs of independent 0/1 columns
        (codes, labels, missing indicators) and one ("onehot", ...) per categorical column."""
        groups: list[tuple[str, int, int]] = []
        start = 0
        for c in self.codings_:
            if c.coding == "onehot":
                groups.append(("onehot", start, start + c.width))
            elif c.coding == "binary" or c.own_indicator:
                first = start if c.coding == "binary" else start + 1
                if groups and groups[-1][0] == "binary" and groups[-1][2] == first:
                    groups[-1] = ("binary", groups[-1][1], first + 1)
                else:
                    groups.append(("binary", first, first + 1))
            start += c.width
        return groups

    def indicator_index(self) -> dict[str, int]:
        """{column name: encoded index of its own missing indicator} (shared indicators under their owner's name)."""
        starts = np.cumsum([0] + [c.width for c in self.codings_])
        return {c.name: int(s) + 1 for c, s in zip(self.codings_, starts) if c.own_indicator}

    def indicator_columns(self) -> np.ndarray:
        """Encoded indices of the missing indicators (each continuous column's own; shared ones once)."""
        return np.array(list(self.indicator_index().values()), dtype=np.int64)

    def missing_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Encoded index of each continuous column with missing values, and of its indicator (its own or the one
        it shares)."""
        starts = np.cumsum([0] + [c.width for c in self.codings_])
        indicator = self.indicator_index()
        pairs = [(s, indicator[c.missing_with or c.name]) for c, s in zip(self.codings_, starts)
                 if c.coding == "continuous" and c.has_missing]
        return tuple(np.array([p[i] for p in pairs], dtype=np.int64) for i in (0, 1))

    def normal_stretches(self) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(encoded index, knots' encoded values, their stretches' low and high levels) of each column scaled to
        a normal (``ColumnCoding.stretches``)."""
        starts = np.cumsum([0] + [c.width for c in self.codings_])
        return [(int(s), *c.stretches()) for c, s in zip(self.codings_, starts)
                if c.coding == "continuous" and c.scaling == "normal"]

    def transform(self, table: Table, dtype=np.float32) -> np.ndarray:
        self._check_fitted()
        missing = [c.name for c in self.codings_ if c.name not in table.frame.columns and c.coding != "id"]
        if missing:
            raise DataError(f"columns missing from the data that the model was fitted on: {', '.join(missing[:5])}")
        frame = derive(table.frame, self.chains_)
        out = np.empty((table.n_rows, self.width), dtype=dtype)
        j = 0
        for c in self.codings_:
            if c.coding == "id":
                continue
            values = frame[c.name]
            if c.coding == "binary":
                out[:, j] = values.to_numpy(dtype=float)
            elif c.coding == "continuous":
                raw = c.numbers(values)
                isna = np.isnan(raw) | ((raw == 0) if c.zero_when_missing else False)
                out[:, j] = np.where(isna, c.fill, c.scale(raw))
                if c.own_indicator:
                    out[:, j + 1] = isna
                elif c.missing_with:
                    _check_shared_missing(c, isna, frame[c.missing_with].isna().to_numpy())
                elif isna.any():
                    raise DataError(f"column '{c.name}' row {int(np.argmax(isna))} is missing, but the training data "
                                    "had no missing values there; fill it or refit with missing values")
            else:
                codes = _category_codes(values, c)
                block = np.zeros((len(values), c.width), dtype=dtype)
                block[np.arange(len(values)), codes] = 1
                out[:, j:j + c.width] = block
            j += c.width
        return out

    def inverse_transform(self, encoded: np.ndarray, id_offset: int = 0) -> Table:
        """Turn model output (any real values) back into the user's columns and kinds."""
        self._check_fitted()
        encoded = np.asarray(encoded, dtype=np.float64)
        if encoded.ndim != 2 or encoded.shape[1] != self.width:
            raise DataError(f"expected a matrix with {self.width} encoded columns, got shape {encoded.shape}")
        n = encoded.shape[0]
        columns: dict[str, object] = {}
        starts = np.cumsum([0] + [c.width for c in self.codings_])
        missing = {c.name: encoded[:, s + 1] >= 0.5 for c, s in zip(self.codings_, starts) if c.own_indicator}
        derived = self._derived()
        j = 0
        for c in self.codings_:
            block = encoded[:, j:j + c.width]
            if c.coding == "id":
                columns[c.name] = _synthetic_ids(c, n, id_offset)
            elif c.coding == "binary":
                columns[c.name] = _cast(np.round(np.clip(block[:, 0], 0, 1)), c.dtype)
            elif c.kind == "date":
                days = c.unscale(block[:, 0])
                absent = missing.get(c.missing_with or c.name, np.zeros(n, dtype=bool))
                columns[c.name] = days_to_dates(np.where(absent, np.nan, days), c.date_unit, c.date_tz)
            elif c.coding == "continuous":
                values = c.unscale(block[:, 0])
                if c.integer:
                    values = np.round(values)
                elif c.step:
                    values = on_grid(values, c.step, c.low, c.high)
                if c.zero_when_missing:     # a count: 0 where its group is missing, at least 1 elsewhere
                    columns[c.name] = _cast(np.where(missing[c.missing_with], 0.0, np.maximum(values, 1.0)), c.dtype)
                else:
                    series = pd.Series(values)
                    if c.has_missing:
                        series[missing[c.missing_with or c.name]] = np.nan
                    columns[c.name] = series if c.has_missing or c.name in derived else _cast(values, c.dtype)
            else:
                picked = [c.categories[k] for k in block.argmax(axis=1)]
                columns[c.name] = pd.Series([None if v == MISSING_CATEGORY else v for v in picked])
            j += c.width
        frame = pd.DataFrame(columns)
        if self.chains_:
            restore(frame, self.chains_)
            for c in self.codings_:
                if c.name in derived and not c.has_missing:
                    frame[c.name] = _cast(frame[c.name].to_numpy(), c.dtype)
        return Table(frame, {c.name: c.kind for c in self.codings_})

    # ---- persistence ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        chains = {"chains": [chain.to_dict() for chain in self.chains_]} if self.chains_ else {}
        return {"continuous": self.continuous, "columns": [vars(c) for c in self.codings_], **chains}

    @classmethod
    def from_dict(cls, data: dict) -> "TableEncoder":
        """The encoder :meth:`to_dict` wrote. ValueError naming the column and the field when it is not what
        ehrdiff writes (a hand-edited or crafted model file), so that nothing fails later while sampling."""
        if not isinstance(data, dict) or not isinstance(data.get("columns"), list) or not data["columns"]:
            raise ValueError("expected an object with a non-empty list of 'columns'")
        encoder = cls(data.get("continuous", "minmax"))     # files of older versions: min-max only
        encoder.codings_ = [coding_from_dict(c, i) for i, c in enumerate(data["columns"])]
        names = [c.name for c in encoder.codings_]
        if len(set(names)) != len(names):
            raise ValueError("a column name appears twice")
        owners = {c.name for c in encoder.codings_ if c.own_indicator}
        for c in encoder.codings_:
            if c.missing_with and (c.missing_with not in owners or not c.has_missing or c.kind != "continuous"):
                raise ValueError(f"column {c.name!r}: 'missing_with' {c.missing_with!r} is not a continuous column "
                                 "with an indicator of its own")
        encoder.share_missing = any(c.missing_with for c in encoder.codings_)
        encoder.chains_ = chains_from_dicts(data.get("chains", []), {c.name: c.coding for c in encoder.codings_})
        encoder.order_chains = bool(encoder.chains_)
        return encoder

    def _check_fitted(self) -> None:
        if not self.codings_:
            raise RuntimeError("TableEncoder is not fitted; call fit() first")


def coding_from_dict(data: dict, position: int) -> ColumnCoding:
    """One column's coding as stored by ``to_dict``, checked: each field of its type, the coding's width and
    scaling consistent (ValueError naming column ``position`` otherwise). Older files' ``LEGACY_FIELDS`` are
    dropped."""
    if not isinstance(data, dict):
        raise ValueError(f"column {position} is not an object")
    where = f"column {position} ({data.get('name')!r})"
    known = {f.name: f for f in fields(ColumnCoding)}
    values = {k: v for k, v in data.items() if k not in LEGACY_FIELDS}
    for name in ("name", "kind", "coding"):
        if name not in values:
            raise ValueError(f"{where}: '{name}' is missing")
    for name, value in values.items():
        if name not in known:
            raise ValueError(f"{where}: unknown field '{name}'")
        if not _has_field_type(value, _field_type(known[name])):
            raise ValueError(f"{where}: '{name}' has the wrong type ({type(value).__name__})")
    coding = ColumnCoding(**values)
    problem = _coding_problem(coding)
    if problem:
        raise ValueError(f"{where}: {problem}")
    return coding


def _field_type(f) -> type:
    if f.default is not MISSING:
        return type(f.default)
    return type(f.default_factory()) if f.default_factory is not MISSING else str


def _has_field_type(value, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _coding_problem(c: ColumnCoding) -> str | None:
    """What makes a coding unusable, or None."""
    if c.coding not in CODINGS:
        return f"unknown coding {c.coding!r} (known: {', '.join(CODINGS)})"
    if c.coding == "onehot" and not (c.categories and all(_is_scalar(v) for v in c.categories)):
        return "'categories' must be a non-empty list of values"
    if c.width != len(c.encoded_names()):
        return f"'width' {c.width} does not fit its coding ({len(c.encoded_names())} encoded columns)"
    if c.zero_when_missing and not (c.coding == "continuous" and c.missing_with):
        return "'zero_when_missing' needs a continuous column that shares an indicator ('missing_with')"
    if c.coding != "continuous":
        return None
    if c.scaling not in CONTINUOUS_SCALINGS:
        return f"unknown scaling {c.scaling!r}"
    if not c.high > c.low:
        return "'high' must be above 'low'"
    if not 0 <= c.step <= c.high - c.low:
        return "'step' must be 0 (none) or a positive number at most the range's width"
    if c.uses_knots:
        knots = (c.knots, c.knot_low, c.knot_high)
        if not (len(c.knots) >= 2 and all(len(k) == len(c.knots) for k in knots)
                and all(_has_field_type(v, float) for k in knots for v in k)
                and all(a < b for a, b in zip(c.knots, c.knots[1:]))):
            return "quantile knots must be increasing numbers, with as many shares below and at or below them"
    return None


def on_grid(values: np.ndarray, step: float, low: float, high: float) -> np.ndarray:
    """``values`` rounded to the nearest multiple of ``step`` within [low, high], written with the step's decimals
    (1.7, not 17 x 0.1 = 1.7000000000000002: a value typed as 1.7 in a file compares equal)."""
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + 3
    return np.round(np.clip(np.round(values / step), first, last) * step, decimals)


def _whole_numbers(values: pd.Series) -> bool:
    """A continuous column of whole numbers in an integer-like column (decoded values are rounded)."""
    observed = values.dropna().to_numpy(dtype=float)
    return bool(np.all(np.mod(observed, 1) == 0)) and pd.api.types.is_integer_dtype(values.dropna().convert_dtypes())


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _quantile_knots(observed: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """The distinct training values at ``QUANTILE_LEVELS`` evenly spaced levels (smallest and largest included),
    and for each the share of training values below it and at or below it."""
    ordered = np.sort(observed)
    levels = np.linspace(0.0, 1.0, min(QUANTILE_LEVELS, len(ordered)))
    knots = np.unique(np.quantile(ordered, levels, method="inverted_cdf"))
    low = np.searchsorted(ordered, knots, side="left") / len(ordered)
    high = np.searchsorted(ordered, knots, side="right") / len(ordered)
    return knots.tolist(), low.tolist(), high.tolist()


def _check_shared_missing(c: ColumnCoding, isna: np.ndarray, leader: np.ndarray) -> None:
    """DataError naming the first row where a column that shares ``missing_with``'s indicator is missing alone."""
    differ = isna != leader
    if differ.any():
        row = int(np.argmax(differ))
        raise DataError(f"column '{c.name}' row {row} is {'' if isna[row] else 'not '}missing while "
                        f"'{c.missing_with}' is {'not ' if isna[row] else ''}: the model was fitted on data where "
                        "the two are missing in the same rows; refit on this data")


def _category(value):
    """A JSON-safe category key: missing values become one category, numpy scalars plain Python values."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return MISSING_CATEGORY
    return value.item() if isinstance(value, np.generic) else value


def _category_codes(values: pd.Series, c: ColumnCoding) -> np.ndarray:
    """Position of each value among the fitted categories; an unseen value is an error naming its row."""
    keys = np.array(values.to_numpy(dtype=object), dtype=object, copy=True)
    keys[pd.isna(keys)] = MISSING_CATEGORY
    codes = pd.Index(c.categories, dtype=object).get_indexer(keys)
    if (codes < 0).any():
        row = int(np.argmax(codes < 0))
        raise DataError(f"column '{c.name}' row {row} has value {values.iloc[row]!r}, never seen when the model was "
                        f"fitted (known: {', '.join(map(str, c.categories[:8]))}); refit on data that has it, or "
                        "map it to a known value")
    return codes


def _cast(values: np.ndarray, dtype: str):
    try:
        return values.astype(dtype)
    except (TypeError, ValueError):
        return values


def _synthetic_ids(c: ColumnCoding, n: int, offset: int):
    """Ids of the synthetic rows ``offset`` .. ``offset + n - 1`` of a sample, numbered from SYNTHETIC_ID_START."""
    ids = np.arange(SYNTHETIC_ID_START + offset, SYNTHETIC_ID_START + offset + n, dtype=np.int64)
    if "int" in c.dtype:
        return ids
    return [f"synthetic-{i}" for i in ids]
