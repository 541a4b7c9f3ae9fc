"""The in-memory table every part of ehrdiff passes around: a DataFrame plus the kind of each column.

Kinds:
  binary       0/1 values (diagnosis codes, flags); no missing values
  continuous   real numbers; NaN means missing
  categorical  a finite set of values (strings or numbers); NaN is its own category
  label        the prediction target (binary 0/1 or categorical); used by TSTR and conditioning
  id           a subject / stay identifier; never modelled, replaced by fresh ids in synthetic data
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ehrdiff.errors import DataError

KINDS = ("binary", "continuous", "categorical", "label", "id")
ID_COLUMN_NAMES = ("subject_id", "patient_id", "stay_id", "record_id", "hadm_id")


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


def infer_kind(name: str, values: pd.Series) -> str:
    """Guess a column's kind from its name and values (users override with ``kinds=``)."""
    if name == "label":
        return "label"
    if name.lower() in ID_COLUMN_NAMES:
        return "id"
    if _is_binary(values) and values.notna().all():
        return "binary"  # a 0/1 column with gaps is continuous: the encoder gives it a missing-value indicator
    if pd.api.types.is_numeric_dtype(values):
        return "continuous"
    return "categorical"


@dataclass
class Table:
    """A patient table: ``frame`` holds the values, ``kinds`` maps every column to one of ``KINDS``."""

    frame: pd.DataFrame
    kinds: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, kinds: dict[str, str] | None = None, source: str = "data") -> "Table":
        """Wrap a DataFrame, inferring the kinds not given, and validate it (errors name ``source``)."""
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"{source}: expected a table (pandas DataFrame), got {type(frame).__name__}")
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
        given = dict(kinds or {})
        unknown = sorted(set(given) - set(frame.columns))
        if unknown:
            raise DataError(f"{source}: kinds given for columns that do not exist: {', '.join(unknown[:5])}")
        resolved = {c: given.get(c) or infer_kind(c, frame[c]) for c in frame.columns}
        table = cls(frame, resolved)
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
            if kind == "continuous" and not numeric:
                raise DataError(f"{source}: column '{name}' is declared continuous but holds non-numeric values "
                                f"such as {values.dropna().iloc[0]!r}")
        if not self.feature_columns:
            raise DataError(f"{source}: the table has only id columns, nothing to model")

    def subset(self, rows) -> "Table":
        return Table(self.frame.iloc[rows].reset_index(drop=True), dict(self.kinds))
