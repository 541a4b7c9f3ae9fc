"""The in-memory table every part of ehrdiff passes around: a DataFrame plus the kind of each column.

Kinds:
  binary       0/1 values (diagnosis codes, flags); no missing values
  continuous   real numbers; NaN means missing
  categorical  a finite set of values (strings or numbers); NaN is its own category
  label        the prediction target (binary 0/1 or categorical); used by TSTR and conditioning
  id           a subject / stay identifier; never modelled, replaced by fresh ids in synthetic data
  date         calendar dates or date-times (datetime64, ``datetime.date`` values, or ISO 8601 text such as
               ``2019-03-07`` or ``2019-03-07 14:30``); NaT / empty means missing. ``Table.from_frame`` turns them
               into datetime64; a number in a date column is a day count since 1970-01-01 (how NPZ files hold dates)

Inference (``infer_kind``): a column named ``label`` is the label; the ``ID_COLUMN_NAMES`` are ids, and so is any
other ``*_id`` column whose values are whole numbers or text, none missing and none repeated (``visit_occurrence_id``);
a ``*_id`` column of such values that repeat (``care_site_id``, ``provider_id``) names something many rows share and
is categorical; datetime values and ISO 8601 text are dates; 0/1 without gaps is binary; other numbers are continuous;
anything else is categorical.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ehrdiff.data.rules import RULES_ATTR, Rule, carried_rules, check_rules, parse_rules, rules_to_json
from ehrdiff.errors import DataError

KINDS = ("binary", "continuous", "categorical", "label", "id", "date")
# where a DataFrame made by Table.to_frame (and so Generator.sample) carries its column kinds
KINDS_ATTR = "ehrdiff_kinds"
# known patient and stay ids (patient_nbr: UCI diabetes' own name, kept by `prepare uci-diabetes`)
ID_COLUMN_NAMES = ("subject_id", "patient_id", "person_id", "stay_id", "record_id", "hadm_id", "patient_nbr")
ID_SUFFIX = "_id"
# ISO 8601 dates and date-times: 2019-03-07, 2019-03-07 14:30, 2019-03-07T14:30:05.250, ...+01:00 or ...Z
ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
ISO_OFFSET = r"[T ]\d{2}:\d{2}.*(?:Z|[+-]\d{2}:?\d{2})$"      # a date-time with its UTC offset
US_PER_DAY = 86_400_000_000
# The resolutions a date column keeps (microseconds each), coarsest first: sampled dates are rounded to the coarsest
# one that every training value is a whole multiple of, so a column of days gives days and one of minutes minutes.
DATE_UNITS = (("D", US_PER_DAY), ("h", 3_600_000_000), ("min", 60_000_000), ("s", 1_000_000), ("ms", 1_000),
              ("us", 1))


def _is_binary(values: pd.Series) -> bool:
    """True when every observed value is 0 or 1 (and there is at least one)."""
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        return False
    if pd.api.types.is_integer_dtype(values.dtype) and isinstance(values.dtype, np.dtype):
        raw = values.to_numpy()  # plain integers: no missing values, no float copy needed
        return len(raw) > 0 and bool(raw.min() >= 0 and raw.max() <= 1)
    observed = values.to_numpy(dtype=float, na_value=np.nan)
    observed = observed[~np.isnan(observed)]
    return len(observed) > 0 and bool(((observed == 0) | (observed == 1)).all())


def _is_whole_or_text(values: pd.Series) -> bool:
    """True when every value is present and a whole number or text (what an identifier can be)."""
    if len(values) == 0 or values.isna().any() or pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_integer_dtype(values):
        return True
    if pd.api.types.is_float_dtype(values):
        return bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    return all(isinstance(v, str) for v in pd.unique(values.to_numpy(dtype=object)))


def _id_like_kind(name: str, values: pd.Series) -> str | None:
    """"id" for a known id name, or a ``*_id`` column of distinct whole numbers or text; "categorical" for a
    ``*_id`` column of such values that repeat (a care site many patients share); None otherwise."""
    lowered = name.lower()
    if lowered in ID_COLUMN_NAMES:
        return "id"
    if not lowered.endswith(ID_SUFFIX) or not _is_whole_or_text(values):
        return None
    return "id" if values.is_unique else "categorical"


def _is_date(values: pd.Series) -> bool:
    """True for datetime values, ``datetime.date`` objects or ISO 8601 text (at least one present)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return bool(values.notna().any())
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    distinct = pd.unique(values.dropna().to_numpy(dtype=object))
    if len(distinct) == 0:
        return False
    if all(isinstance(v, datetime.date) for v in distinct):     # datetime.datetime and pd.Timestamp included
        return True
    if not isinstance(distinct[0], str) or not _iso_texts(distinct[:1]).all():   # the cheap refusal first
        return False
    return all(isinstance(v, str) for v in distinct) and bool(_iso_texts(distinct).all())


def _iso_texts(texts: np.ndarray) -> np.ndarray:
    """Which of ``texts`` are ISO 8601 dates or date-times that exist (2019-02-30 does not)."""
    series = pd.Series(texts, dtype=object).str.strip()
    shaped = series.str.fullmatch(ISO_DATE).fillna(False).to_numpy(dtype=bool)
    if not shaped.any():
        return shaped
    parsed = pd.to_datetime(series.where(shaped), format="ISO8601", errors="coerce", utc=True)
    return shaped & parsed.notna().to_numpy()


# ---- date columns: values <-> day counts ------------------------------------------------------------------------
def as_dates(values: pd.Series, name: str, source: str = "data") -> pd.Series:
    """A date column's values as datetime64 (time zones kept); DataError naming the row of a value that is no date.
    Numbers are day counts since 1970-01-01 (NPZ files hold dates so)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        days = values.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(days_to_dates(days, "us"), index=values.index, name=values.name)
    codes, distinct = pd.factorize(values.to_numpy(dtype=object))     # parse each distinct value once
    distinct = np.asarray(distinct, dtype=object)
    texts = np.array([isinstance(v, str) for v in distinct], dtype=bool)
    good = np.array([isinstance(v, datetime.date) for v in distinct], dtype=bool)
    if texts.any():
        good[texts] = _iso_texts(distinct[texts])
    if not good.all():
        row = int(np.flatnonzero(codes == int(np.argmin(good)))[0])
        raise DataError(f"{source}: date column '{name}' row {row} has {values.iloc[row]!r}, not a date; write dates "
                        "as YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS] (ISO 8601), or declare the column categorical")
    offsets = pd.Series(distinct[texts], dtype=object).str.strip().str.contains(ISO_OFFSET).to_numpy(dtype=bool)
    aware = bool(offsets.any()) or any(getattr(v, "tzinfo", None) is not None for v in distinct)
    parsed = pd.to_datetime(pd.Series(distinct, dtype=object), format="ISO8601" if texts.all() else None, utc=aware)
    dates = parsed.take(np.where(codes < 0, 0, codes)).reset_index(drop=True) if len(distinct) else \
        pd.Series(pd.NaT, index=range(len(values)), dtype="datetime64[us]")
    dates[codes < 0] = pd.NaT
    dates.index, dates.name = values.index, values.name
    return dates


def wall_clock_days(dates: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 of each date's local wall-clock time (float; NaN where missing)."""
    if getattr(dates.dtype, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    micros = dates.to_numpy(dtype="datetime64[us]").astype(np.int64)
    return np.where(dates.isna().to_numpy(), np.nan, micros / US_PER_DAY)


def date_resolution(dates: pd.Series) -> str:
    """The coarsest of ``DATE_UNITS`` that every present value is a whole multiple of ("D" for plain dates)."""
    if getattr(dates.dtype, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    micros = dates.dropna().to_numpy(dtype="datetime64[us]").astype(np.int64)
    return next(unit for unit, size in DATE_UNITS if np.all(micros % size == 0))


def days_to_dates(days: np.ndarray, unit: str, tz: str = "") -> pd.Series:
    """Day counts since 1970-01-01 (NaN: missing) -> datetime64 rounded to ``unit``, localised to ``tz`` if any."""
    size = dict(DATE_UNITS)[unit]
    days = np.asarray(days, dtype=float)
    missing = np.isnan(days)
    micros = np.round(np.where(missing, 0.0, days) * (US_PER_DAY / size)).astype(np.int64) * size
    dates = pd.Series(pd.to_datetime(micros, unit="us"))
    dates[missing] = pd.NaT
    if tz:
        dates = dates.dt.tz_localize(tz, ambiguous=np.zeros(len(dates), dtype=bool), nonexistent="shift_forward")
    return dates


def dates_as_days(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """``frame`` with its date columns as day counts since 1970-01-01: for files that hold numbers only (NPZ)."""
    dates = [c for c in frame.columns if kinds.get(c) == "date"]
    if not dates:
        return frame
    return frame.assign(**{c: wall_clock_days(as_dates(frame[c], c)) for c in dates})


def infer_kind(name: str, values: pd.Series) -> str:
    """Guess a column's kind from its name and values (users override with ``kinds=``)."""
    if name == "label":
        return "label"
    id_kind = _id_like_kind(name, values)
    if id_kind is not None:
        return id_kind
    if _is_date(values):
        return "date"
    if _is_binary(values) and values.notna().all():
        return "binary"  # a 0/1 column with gaps is continuous: the encoder gives it a missing-value indicator
    if pd.api.types.is_numeric_dtype(values):
        return "continuous"
    return "categorical"


@dataclass
class Table:
    """A patient table: ``frame`` holds the values, ``kinds`` maps every column to one of ``KINDS``, ``rules`` are
    the relations between columns its rows keep (data/rules.py)."""

    frame: pd.DataFrame
    kinds: dict[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, kinds: dict[str, str] | None = None, source: str = "data",
                   rules=None) -> "Table":
        """Wrap a DataFrame, inferring the kinds not given, and validate it (errors name ``source``). Kinds the
        frame carries from :meth:`to_frame` are kept for the columns it still has; ``kinds`` win over them. So
        are its rules, unless ``rules`` (Rule objects or their JSON form, a list of dicts) replace them."""
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"{source}: expected a table (pandas DataFrame), got {type(frame).__name__}")
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
        given = {**carried_kinds(frame), **(kinds or {})}
        unknown = sorted(set(given) - set(frame.columns))
        if unknown:
            raise DataError(f"{source}: kinds given for columns that do not exist: {', '.join(unknown[:5])}")
        resolved = {c: given.get(c) or infer_kind(c, frame[c]) for c in frame.columns}
        for column in [c for c, kind in resolved.items() if kind == "date"]:
            frame[column] = as_dates(frame[column], column, source)
        declared = carried_rules(frame, source) if rules is None else parse_rules(rules, source)
        table = cls(frame, resolved, declared)
        table.validate(source)
        return table

    @classmethod
    def from_array(cls, array: np.ndarray, columns: list[str] | None = None, kinds: dict[str, str] | None = None,
                   source: str = "data") -> "Table":
        array = np.asarray(array)
        if array.ndim != 2:
            raise DataError(f"{source}: expected a 2-D matrix (patients x features), got shape {array.shape}")
        columns = list(columns) if columns is not None else [f"x{i}" for i in range(array.shape[1])]
        return cls.from_frame(pd.DataFrame(array, columns=columns), kinds, source)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    def columns_of(self, *kinds: str) -> list[str]:
        return [c for c in self.frame.columns if self.kinds[c] in kinds]

    @property
    def label_column(self) -> str | None:
        labels = self.columns_of("label")
        return labels[0] if labels else None

    @property
    def feature_columns(self) -> list[str]:
        """Every column a generator models (all but ids)."""
        return [c for c in self.frame.columns if self.kinds[c] != "id"]

    def validate(self, source: str = "data") -> None:
        """Raise DataError naming the column and row of the first problem found."""
        if self.frame.shape[1] == 0:
            raise DataError(f"{source}: the table has no columns")
        if len(self.frame) == 0:
            raise DataError(f"{source}: the table has no rows")
        if len(set(self.frame.columns)) != self.frame.shape[1]:
            dup = self.frame.columns[self.frame.columns.duplicated()][0]
            raise DataError(f"{source}: column '{dup}' appears more than once")
        for name, kind in self.kinds.items():
            if kind not in KINDS:
                raise DataError(f"{source}: column '{name}' has unknown kind '{kind}' "
                                f"(choose one of {', '.join(KINDS)})")
            values = self.frame[name]
            numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            if numeric:
                inf = np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
                if inf.any():
                    raise DataError(f"{source}: column '{name}' row {int(np.argmax(inf))} is infinite; "
                                    "replace it with a finite value or leave it empty (missing)")
            if kind == "binary":
                missing = values.isna().to_numpy()
                if missing.any():
                    raise DataError(f"{source}: binary column '{name}' row {int(np.argmax(missing))} is missing (NaN); "
                                    "binary columns must be 0 or 1 (fill it, or declare the column continuous)")
                if not _is_binary(values):
                    as_float = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                    bad = ~np.isin(as_float, (0.0, 1.0))
                    row = int(np.argmax(bad))
                    raise DataError(f"{source}: binary column '{name}' row {row} has value {values.iloc[row]!r}; "
                                    "binary columns hold only 0 and 1 "
                                    "(declare the column continuous if it is not binary)")
            if kind == "date":
                as_dates(values, name, source)
            if kind == "continuous" and not numeric:
                raise DataError(f"{source}: column '{name}' is declared continuous but holds non-numeric values "
                                f"such as {values.dropna().iloc[0]!r}")
        if not self.feature_columns:
            raise DataError(f"{source}: the table has only id columns, nothing to model")
        check_rules(self.rules, self.kinds, source)

    def with_rules(self, rules, source: str = "rules") -> "Table":
        """This table with ``rules`` (Rule objects or their JSON form) added to its own, each checked against its
        columns (DataError naming the rule otherwise)."""
        added = tuple(r for r in parse_rules(rules, source) if r not in self.rules)
        check_rules(added, self.kinds, source)
        return Table(self.frame, dict(self.kinds), self.rules + added)

    def subset(self, rows) -> "Table":
        return Table(self.frame.iloc[rows].reset_index(drop=True), dict(self.kinds), self.rules)

    def to_frame(self) -> pd.DataFrame:
        """A copy of the rows as a plain DataFrame whose ``attrs`` carry the column kinds and the rules."""
        frame = self.frame.copy()
        frame.attrs[KINDS_ATTR] = dict(self.kinds)
        if self.rules:
            frame.attrs[RULES_ATTR] = rules_to_json(self.rules)
        return frame


def carried_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """The kinds a DataFrame carries from :meth:`Table.to_frame`, for the columns it still has (a frame that was
    filtered or had columns added keeps the rest); {} for any other frame."""
    carried = frame.attrs.get(KINDS_ATTR)
    if not isinstance(carried, dict):
        return {}
    return {str(c): k for c, k in carried.items() if str(c) in frame.columns and k in KINDS}
