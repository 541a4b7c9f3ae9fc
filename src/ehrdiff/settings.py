"""Typed settings from Python, JSON and the command line: one home for reading ``KEY=VALUE`` text and for checking
a value against a dataclass field's type.

    parse_assignments(["lr=1e-4", "hidden_dims=[512,512]"], "--set")  ->  {"lr": 0.0001, "hidden_dims": [512, 512]}
    settings_from_dict(GanConfig, {"steps": "7"}, "medgan")            ->  GanConfig(steps=7, ...)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, Iterable

from ehrdiff.errors import EhrdiffError

# Seeds every generator of random numbers ehrdiff uses takes (numpy's legacy seed is the narrowest: 32 bits).
SEED_MAX = 2**32 - 1
_TEXT_ALIASES = {"True": True, "False": False, "None": None}
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false/null, lists, quoted strings), else the text itself."""
    if text in _TEXT_ALIASES:
        return _TEXT_ALIASES[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: Iterable[str], flag: str, example: str = "KEY=VALUE", *,
                      parse: bool = True) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> {"a": 1, "b": "x"} (values through :func:`parse_value` when ``parse``); EhrdiffError
    naming ``flag`` for an item without ``=`` or without a key. A later item wins over an earlier one."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise EhrdiffError(f"{flag} expects {example}, got '{item}'")
        out[key] = parse_value(value.strip()) if parse else value.strip()
    return out


def coerce(name: str, value: Any, annotation: str) -> Any:
    """``value`` as the type named by ``annotation`` (a dataclass field's type as text: "int", "float | None",
    "tuple[int, ...]", "bool", "str"); text from the command line is converted ("7", "1e-3", "true").
    EhrdiffError naming the setting otherwise."""
    wanted = _describe(annotation)
    bad = EhrdiffError(f"setting '{name}' has the wrong type: got {value!r}, expected {wanted}")
    if value is None:
        if "None" in annotation:
            return None
        raise bad
    base = annotation.replace(" | None", "").replace("None | ", "").strip()
    if base.startswith("tuple"):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise bad
        item = "float" if "float" in base else "int"
        try:
            return tuple(coerce(name, v, item) for v in value)
        except EhrdiffError:
            raise bad from None
    if isinstance(value, str) and base in ("bool", "int", "float"):
        value = _from_text(value, base)
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise bad
    if isinstance(value, bool):
        raise bad
    if base == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if base == "float":
        if isinstance(value, (int, float)):
            return float(value)
        raise bad
    if base == "str" and not isinstance(value, str):
        raise bad
    return value


def _from_text(text: str, base: str) -> Any:
    """Command-line text as a bool or number, or the text unchanged when it is not one (the caller refuses it)."""
    if base == "bool":
        return _BOOL_WORDS.get(text.strip().lower(), text)
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if base == "int" and number.is_integer() else number


def _describe(annotation: str) -> str:
    words = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}
    base = annotation.replace(" | None", "").strip()
    if base.startswith("tuple"):
        return "a list of " + ("numbers" if "float" in base else "whole numbers")
    text = words.get(base, base)
    return text + " or null" if "None" in annotation else text


def settings_from_dict(cls: type, values: dict[str, Any], owner: str) -> Any:
    """An instance of the dataclass ``cls`` from ``values``, each checked by :func:`coerce`; EhrdiffError for a
    name ``cls`` does not have (``owner`` names the model in the message)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise EhrdiffError(f"unknown {owner} setting '{unknown[0]}' (its settings: {', '.join(fields)})")
    return cls(**{k: coerce(k, v, str(fields[k].type)) for k, v in values.items()})


def check_seed(value: Any, what: str = "seed") -> int:
    """``value`` when it is a whole number from 0 to SEED_MAX; EhrdiffError naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise EhrdiffError(f"{what} must be a whole number from 0 to {SEED_MAX}, got {value!r}")
    return value


def seed_argument(text: str) -> int:
    """argparse ``type`` of every ``--seed``: a whole number from 0 to SEED_MAX (a usage error otherwise)."""
    try:
        return check_seed(int(text))
    except (ValueError, EhrdiffError):
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {SEED_MAX}, got {text!r}") from None


__all__ = ["SEED_MAX", "check_seed", "coerce", "parse_assignments", "parse_value", "seed_argument",
           "settings_from_dict"]
