"""ICD code rules: raw codes (strings; leading zeros matter) -> the categories used as matrix columns.

Every function takes a pandas Series of raw code strings and returns ``(categories, bad)``: the category of each
code (NaN where the code is unreadable) and a boolean mask of unreadable codes, so a source can name the row.

Rules
  ICD-9-CM diagnoses, MIMIC style (undotted, ``0389``, ``V5861``, ``E8497``): the EHRDiff paper's MIMIC-III rule,
      codes starting with ``E`` keep 4 characters, all others 3 (``0389`` -> ``038``, ``E8497`` -> ``E849``).
  ICD-9-CM diagnoses, UCI style (``250.83``, ``8``, ``V57``, ``E909``): UCI drops leading zeros, so the category
      is the integer part zero-padded (3 digits; V codes 2 digits after the letter; E codes 3).
  ICD-9-CM procedures (``3961`` = 39.61): the 2-digit procedure category (``39``).
  ICD-10-CM diagnoses (``I10``, ``E119``, ``E11.9``): the 3-character category (``I10``, ``E11``): a letter, a
      digit and a digit or letter (``C4A``), ICD-10-CM's own category level, as the ICD-9 rule keeps ICD-9's. A
      valid code has 3 to 7 characters; a shorter one (``I1``) is unreadable, not a category of its own.
  ICD-10-PCS procedures (``0DTJ4ZZ``): the first 3 characters (section, body system, root operation).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

# Column-name prefixes keep vocabularies apart (ICD-9 "E11" is not ICD-10 "E11").
PREFIX = {"icd9": "ICD9:", "icd10": "ICD10:", "icd9proc": "ICD9PROC:", "icd10pcs": "ICD10PCS:"}

_ICD9_MIMIC = r"\d{3,5}|V\d{2,4}|E\d{3,4}"
_ICD9_PROC = r"\d{2,4}"
_ICD10_CM = r"[A-Z]\d[0-9A-Z]{1,5}"
_ICD10_PCS = r"[0-9A-Z]{3,7}"


def _on_distinct(rule):
    """Apply a rule to the distinct codes only (a code table repeats few codes many times), then spread back."""

    @functools.wraps(rule)
    def wrapper(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
        index, distinct = pd.factorize(pd.Series(raw, dtype=object), use_na_sentinel=True)
        categories, bad = rule(pd.Series(np.asarray(distinct, dtype=object), dtype=object))
        lookup = np.append(categories.to_numpy(dtype=object, na_value=pd.NA), pd.NA)
        flags = np.append(bad.to_numpy(dtype=bool), False)
        return (pd.Series(lookup[index], index=raw.index, dtype="string"),
                pd.Series(flags[index], index=raw.index, dtype=bool))

    return wrapper


def _clean(raw: pd.Series, drop_dots: bool = True) -> pd.Series:
    codes = raw.astype("string").str.strip().str.upper()
    return codes.str.replace(".", "", regex=False) if drop_dots else codes


def _result(codes: pd.Series, pattern: str, category: pd.Series) -> tuple[pd.Series, pd.Series]:
    ok = _match(codes, pattern)
    bad = ~ok & codes.notna()
    return category.where(ok), bad


@_on_distinct
def icd9_diagnosis(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """MIMIC-style ICD-9-CM diagnosis codes -> 3-character categories (E codes: 4)."""
    codes = _clean(raw)
    category = codes.str[:4].where(codes.str.startswith("E"), codes.str[:3])
    return _result(codes, _ICD9_MIMIC, category)


@_on_distinct
def icd9_diagnosis_uci(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """UCI-style ICD-9-CM codes without leading zeros (``8``, ``250.83``, ``V57``, ``E909``) -> categories."""
    codes = _clean(raw, drop_dots=False)
    parts = codes.str.split(".", n=1)
    head, tail = parts.str[0].astype("string"), parts.str[1].astype("string")
    tail_ok = tail.isna() | _match(tail, r"\d{1,2}")
    category = pd.Series(pd.NA, index=codes.index, dtype="string")
    for pattern, letter, width in ((r"\d{1,3}", "", 3), (r"V\d{1,2}", "V", 2), (r"E\d{1,3}", "E", 3)):
        mask = _match(head, pattern) & tail_ok
        category[mask] = letter + head[mask].str[len(letter):].str.zfill(width)
    bad = category.isna() & codes.notna()
    return category, bad


def _match(values: pd.Series, pattern: str) -> pd.Series:
    return values.str.fullmatch(pattern).fillna(False).astype(bool)


@_on_distinct
def icd9_procedure(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """ICD-9-CM procedure codes (undotted) -> 2-digit procedure categories."""
    codes = _clean(raw)
    return _result(codes, _ICD9_PROC, codes.str[:2])


@_on_distinct
def icd10_diagnosis(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """ICD-10-CM diagnosis codes -> 3-character categories."""
    codes = _clean(raw)
    return _result(codes, _ICD10_CM, codes.str[:3])


@_on_distinct
def icd10_procedure(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """ICD-10-PCS procedure codes -> their first 3 characters."""
    codes = _clean(raw)
    return _result(codes, _ICD10_PCS, codes.str[:3])
