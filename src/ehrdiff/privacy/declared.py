"""Public declarations for a private release (``--bounds FILE``): facts about columns that come from the user, not
from the training rows, so they cost no privacy.

The file is JSON, one entry per column (columns not named are estimated privately):

    {"age":       {"low": 0, "high": 120},
     "glucose":   {"low": 20, "high": 600},
     "admitted":  {"low": "2000-01-01", "high": "2030-12-31"},
     "race":      {"categories": ["Caucasian", "AfricanAmerican", "Asian", "Hispanic", "Other", null]}}

Continuous (and date) columns take ``low`` < ``high`` (dates as text), categorical and label columns
``categories`` (null is the missing value). A continuous column may add ``"step"``, the resolution its values are
recorded at (1 for a score or beats per minute, 0.1 for potassium in mmol/L): sampled values are rounded to its
multiples (without it, a private model spreads each value over its histogram bin, and a variable recorded in whole
numbers comes out with decimals). Values outside a declared range are clipped to it; values outside the declared
categories become the most frequent one (by the noisy counts).

A continuous column may also name the ``"panel"`` it is measured in, e.g. ``"SysABP": {"low": 0, "high": 300,
"panel": "arterial line"}`` (with or without a range): the columns of a panel are recorded together (one device,
one lab order), so a private model ties their missing values (diffusion/panels.py). A private model cannot find
panels in the rows, as the default model does, without spending budget on every pair of columns.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ehrdiff.data.table import Table, wall_clock_days
from ehrdiff.errors import DataError

RANGE_KINDS = ("continuous", "date")
CATEGORY_KINDS = ("categorical", "label")


@dataclass
class Declarations:
    """Declared ranges (continuous and date columns, in the encoder's numbers) and category lists."""

    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, list] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)    # continuous columns' declared recording resolution
    panels: dict[str, list[str]] = field(default_factory=dict)   # panel name -> its continuous columns, file order
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "bounds": sorted(self.bounds), "categories": sorted(self.categories),
                "steps": dict(sorted(self.steps.items())),
                **({"panels": dict(sorted(self.panels.items()))} if self.panels else {})}


def read_declarations(path: str | Path | None, table: Table) -> Declarations:
    """The declarations in ``path`` for ``table``'s columns (none when ``path`` is None); DataError, one line
    naming the file and the column, for anything that cannot be used."""
    if path is None:
        return Declarations()
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: bounds file not found (give a JSON file of public column ranges, "
                        "docs/conditional-and-dp.md)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON bounds file ({exc}); see docs/conditional-and-dp.md") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object of columns, e.g. {{\"age\": {{\"low\": 0, \"high\": 120}}}}")
    out = Declarations(source=str(path))
    for name, entry in raw.items():
        where = f"{path}: column '{name}'"
        if name not in table.kinds:
            raise DataError(f"{where} is not in the training data; remove it from the bounds file")
        kind = table.kinds[name]
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object with low/high or categories")
        if kind == "continuous" and "panel" in entry:
            entry = dict(entry)
            out.panels.setdefault(_panel_name(entry.pop("panel"), where), []).append(name)
            if not entry:                   # a panel only: the range is estimated privately
                continue
        if kind in RANGE_KINDS:
            out.bounds[name] = _declared_range(entry, kind, where)
            if "step" in entry:
                out.steps[name] = _declared_step(entry["step"], out.bounds[name], where)
        elif kind in CATEGORY_KINDS:
            categories = entry.get("categories")
            if set(entry) != {"categories"} or not isinstance(categories, list) or not categories \
                    or not all(c is None or isinstance(c, (str, int, float, bool)) for c in categories):
                raise DataError(f"{where} is {kind}: give {{\"categories\": [values...]}} (a non-empty list)")
            out.categories[name] = categories
        else:
            raise DataError(f"{where} is {kind}: only continuous, date, categorical and label columns take "
                            "declarations (binary columns are public 0/1)")
    for panel, columns in out.panels.items():
        if len(columns) < 2:
            raise DataError(f"{path}: panel '{panel}' has one column ({columns[0]}); a panel ties the missing values "
                            "of two or more columns (give the others the same \"panel\" or remove it)")
    return out


def _panel_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: 'panel' ({value!r}) must be a non-empty name, e.g. \"arterial line\"")
    return value.strip()


def _declared_range(entry: dict, kind: str, where: str) -> tuple[float, float]:
    allowed = {"low", "high", "step"} if kind == "continuous" else {"low", "high"}
    if not {"low", "high"} <= set(entry) <= allowed:
        extra = ' (and optionally "step": S, "panel": NAME)' if kind == "continuous" else " and nothing else"
        raise DataError(f"{where} is {kind}: give {{\"low\": L, \"high\": H}}{extra}")
    low, high = (_number(entry[k], kind, where) for k in ("low", "high"))
    if not high > low:
        raise DataError(f"{where}: 'high' ({entry['high']}) must be above 'low' ({entry['low']})")
    return low, high


def _declared_step(value: Any, bounds: tuple[float, float], where: str) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (number and 0 < value <= bounds[1] - bounds[0]):
        raise DataError(f"{where}: 'step' ({value!r}) must be a number above 0 and at most the range's width")
    return float(value)


def _number(value: Any, kind: str, where: str) -> float:
    if kind == "date":
        try:
            return float(wall_clock_days(pd.Series(pd.to_datetime([value])))[0])
        except (ValueError, TypeError):
            raise DataError(f"{where}: {value!r} is not a date (write e.g. \"2020-01-31\")") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where}: {value!r} is not a finite number")
    return float(value)


__all__ = ["Declarations", "read_declarations"]
