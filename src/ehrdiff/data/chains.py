"""Order rules kept by construction of the encoded space (issue 20): a chain ``lo <= x, y, ... <= hi`` of
continuous columns is modelled as

  lo            as it is
  hi            as its spread above lo, hi - lo (>= 0)
  each middle   as its position between them, (x - lo) / (hi - lo), in [0, 1] (0 when hi == lo)

Each then goes through the encoder's scaling (``"normal"``: quantiles to a normal, whose dequantisation spreads the
point masses at spread 0 and positions 0 and 1, a first value equal to the minimum, over stretches the diffusion
can learn, and whose inverse maps them back exactly). Decoding puts hi = lo + spread and x = lo + position *
spread: the knots of spreads are >= 0 and those of positions in [0, 1], so every decoded row keeps the order, and
floating point keeps it too (rounding is monotone: lo + p * s <= lo + s for p <= 1).

A chain whose columns are exactly the group of a count rule (a CinC variable's summaries and its count) also keeps,
when they hold in every training row with enough such rows (``MIN_SUPPORT``), what the number of observations n
implies: with n = 1 the chain's values are equal (spread 0); with n = 2 a middle column that is always at an end
is put at the nearer end, and two such columns that are always at opposite ends (first and last) are put at
opposite ends; a middle column that always lies in [1/n, 1 - 1/n] (a mean: the minimum and the maximum are among
the n values) is clipped there (at n = 2, 1/2). Where such a pair (a, b) and a mean m together always behave as the
first value, the last value and the mean of n values (``summary``): the n values are a, b and n - 2 others in
[0, 1] whose positions add up to n m - a - b, and the minimum (0) and maximum (1) are among them. So with n = 3 one
of a and b is at an end (the nearer one is put there when neither is), and m is clipped to the range those others
allow, [(a + b + e1) / n, (a + b + n - 2 - e0) / n], where e1 is 1 when neither a nor b is the maximum (another value
must be) and 0 otherwise, e0 the same for the minimum (applied to the decoded values, after rounding).

Only chains of two or three levels whose first and last levels are one column each are built, and only where every
training row keeps the order and lo and hi are missing together (a middle value only where lo is present); other
order rules are left to the sampler (models/base.py keep_rules).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ehrdiff.data.rules import Count, Order, mean_range, numbers
from ehrdiff.errors import DataError

log = logging.getLogger(__name__)

# training rows a count fact must hold in (rows with n = 1, rows with n = 2, rows with n >= 2) before it is kept
MIN_SUPPORT = 10
# how far from 1/n a mean's position may lie in the training data (the mean of n floats is not exact)
MEAN_TOLERANCE = 1e-9


@dataclass
class Chain:
    """One order chain as encoded: ``low`` kept, ``high`` as spread, ``middle`` as positions; ``count`` its count
    column ("" when none) and the count facts found in training (module docstring)."""

    low: str
    high: str
    middle: list = field(default_factory=list)
    integer: list = field(default_factory=list)   # middle columns holding whole numbers (rounded when decoded)
    count: str = ""
    one_equal: bool = False                        # n = 1: spread 0
    ends: list = field(default_factory=list)       # n = 2: at position 0 or 1
    opposite: list = field(default_factory=list)   # n = 2: pairs [a, b] with position b = 1 - position a
    means: list = field(default_factory=list)      # n >= 2: position in [1/n, 1 - 1/n]
    summary: list = field(default_factory=list)    # [a, b, m]: first, last and mean of the n values (or [])

    @property
    def columns(self) -> list[str]:
        return [self.low, *self.middle, self.high]

    def describe(self) -> str:
        middle = "{" + ", ".join(self.middle) + "} <= " if self.middle else ""
        return f"{self.low} <= {middle}{self.high}"

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in vars(self).items()}

    # ---- encoding ------------------------------------------------------------------------------------------
    def derive(self, frame: pd.DataFrame, source: str = "data") -> dict[str, np.ndarray]:
        """The spread and the positions (NaN where missing); DataError naming the first row that breaks the
        order or the chain's missingness (the model was fitted on rows that keep them)."""
        low, high = numbers(frame, self.low), numbers(frame, self.high)
        with np.errstate(invalid="ignore"):
            spread = high - low
            bad = (np.isnan(low) != np.isnan(high)) | (spread < 0)
        out = {self.high: spread}
        for name in self.middle:
            x = numbers(frame, name)
            with np.errstate(invalid="ignore", divide="ignore"):
                bad |= (~np.isnan(x) & np.isnan(low)) | (x < low) | (x > high)
                out[name] = np.where(spread > 0, (x - low) / np.where(spread > 0, spread, 1.0), 0.0)
            out[name][np.isnan(x) | np.isnan(low)] = np.nan
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{source}: row {row} breaks {self.describe()} (or has some of them missing "
                            "without the others), which every training row kept; the model encodes them as a "
                            "chain: fix the row or refit")
        return out

    def restore(self, frame: pd.DataFrame) -> None:
        """Decoded spread and positions (columns ``high`` and ``middle`` of ``frame``) back to values, in place,
        with the count facts applied: on positions (equal values, ends), then on the mean's value."""
        low, spread = numbers(frame, self.low), numbers(frame, self.high)
        positions = {name: np.clip(numbers(frame, name), 0.0, 1.0) for name in self.middle}
        n = None
        if self.count:
            n = np.fmax(np.nan_to_num(numbers(frame, self.count), nan=1.0), 1.0)   # present but counted 0: 1
            if self.one_equal:
                spread = np.where(n <= 1, 0.0, spread)
            two = n == 2
            for name in self.ends:
                positions[name] = np.where(two, np.round(positions[name]), positions[name])
            for a, b in self.opposite:
                positions[b] = np.where(two, 1.0 - positions[a], positions[b])
            if self.summary:        # three values: first or last is an end (the nearer one when neither is)
                a, b = positions[self.summary[0]], positions[self.summary[1]]
                three = (n == 3) & ~_at_end(a) & ~_at_end(b)
                nearer_a = np.minimum(a, 1 - a) <= np.minimum(b, 1 - b)
                a[three & nearer_a] = np.round(a[three & nearer_a])
                b[three & ~nearer_a] = np.round(b[three & ~nearer_a])
        high = low + spread
        values = {}
        for name, whole in zip(self.middle, self.integer):
            x = low + positions[name] * spread
            if whole:       # an end stays the end (lo and hi need not be whole); inside, rounded and kept inside
                x = np.where(_at_end(positions[name]), x, np.clip(np.round(x), low, high))
            values[name] = x
        if n is not None:
            several = n >= 2
            for name in self.means:
                values[name] = np.where(several, np.clip(values[name], low + spread / n, high - spread / n),
                                        values[name])
            if self.summary:
                first, last, mean = self.summary
                floor, ceiling = mean_range(values[first], values[last], low, high, n)
                kept = np.clip(np.clip(values[mean], np.fmin(floor, ceiling), ceiling), low, high)   # float sums
                values[mean] = np.where(several, kept, values[mean])
        frame[self.high] = high
        for name in self.middle:
            frame[name] = values[name]


def _at_end(p: np.ndarray) -> np.ndarray:
    return (p == 0) | (p == 1)


def derive(frame: pd.DataFrame, chains: list[Chain], source: str = "data") -> pd.DataFrame:
    """``frame`` with each chain's high and middle columns replaced by its spread and positions."""
    if not chains:
        return frame
    out = frame.copy()
    for chain in chains:
        for name, values in chain.derive(frame, source).items():
            out[name] = values
    return out


def restore(frame: pd.DataFrame, chains: list[Chain]) -> None:
    for chain in chains:
        chain.restore(frame)


# ---- finding the chains of a table -----------------------------------------------------------------------------
def find_chains(frame: pd.DataFrame, kinds: dict[str, str], rules, integer) -> list[Chain]:
    """The chains of ``rules`` that can be encoded (module docstring), each column in at most one; ``integer``:
    the encoder's test of a column holding whole numbers."""
    counts = {frozenset(r.group): r.column for r in rules if isinstance(r, Count)}
    chains: list[Chain] = []
    used: set[str] = set()
    for rule in rules:
        if not isinstance(rule, Order) or len(rule.levels) > 3 or len(rule.levels[0]) != 1 \
                or len(rule.levels[-1]) != 1:
            continue
        columns = list(rule.columns)
        if used & set(columns) or any(kinds.get(c) != "continuous" for c in columns):
            continue
        middle = [c for level in rule.levels[1:-1] for c in level]
        chain = Chain(rule.levels[0][0], rule.levels[-1][0], middle, [integer(frame[c]) for c in middle])
        try:
            derived = chain.derive(frame, "training data")
        except DataError as exc:
            log.info("order %s is kept by the sampler, not the encoding: %s", rule.describe(), exc)
            continue
        count = counts.get(frozenset(columns))
        if count is not None and kinds.get(count) == "continuous" and count not in used:
            _count_facts(chain, count, numbers(frame, count), derived)
            used.add(count)
        chains.append(chain)
        used |= set(columns)
    return chains


def _count_facts(chain: Chain, count: str, n: np.ndarray, derived: dict[str, np.ndarray]) -> None:
    """The count facts that hold in every training row (with at least MIN_SUPPORT rows behind each)."""
    chain.count = count
    spread = derived[chain.high]
    present = ~np.isnan(spread)
    one, two = present & (n == 1), present & (n == 2) & (spread > 0)
    several = present & (n >= 2) & (spread > 0)
    chain.one_equal = bool(one.sum() >= MIN_SUPPORT and np.all(spread[one] == 0))
    if two.sum() >= MIN_SUPPORT:
        chain.ends = [c for c in chain.middle if np.all(np.isin(derived[c][two], (0.0, 1.0)))]
        for i, a in enumerate(chain.ends):
            for b in chain.ends[i + 1:]:
                taken = {c for pair in chain.opposite for c in pair}
                if a not in taken and b not in taken and np.all(derived[a][two] + derived[b][two] == 1.0):
                    chain.opposite.append([a, b])
    if several.sum() >= MIN_SUPPORT:
        inverse = 1 / n[several]
        chain.means = [c for c in chain.middle if c not in chain.ends
                       and np.all(derived[c][several] >= inverse - MEAN_TOLERANCE)
                       and np.all(derived[c][several] <= 1 - inverse + MEAN_TOLERANCE)]
        for (a, b), m in ((pair, m) for pair in chain.opposite for m in chain.means):
            if _summarises(derived[a][several], derived[b][several], derived[m][several], n[several]):
                chain.summary = [a, b, m]
                break


def _summarises(a: np.ndarray, b: np.ndarray, m: np.ndarray, n: np.ndarray) -> bool:
    """Every row: a and b supply the ends n - 2 other values cannot, and m lies in the range the others allow."""
    missing = (~((a == 0) | (b == 0))).astype(int) + (~((a == 1) | (b == 1))).astype(int)
    low, high = mean_range(a, b, np.zeros_like(a), np.ones_like(a), n)
    return bool(np.all(missing <= n - 2) and np.all(m >= low - MEAN_TOLERANCE)
                and np.all(m <= high + MEAN_TOLERANCE))


def chains_from_dicts(items, names: dict[str, str]) -> list[Chain]:
    """Chains as ``Chain.to_dict`` wrote them; ValueError when one does not fit the encoder's columns (``names``:
    column -> coding)."""
    if not isinstance(items, list):
        raise ValueError("'chains' must be a list")
    chains: list[Chain] = []
    used: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - set(Chain.__dataclass_fields__):
            raise ValueError(f"chain {i + 1} is not an object with the fields of a chain")
        try:
            chain = Chain(**item)
        except TypeError as exc:
            raise ValueError(f"chain {i + 1}: {exc}") from None
        if not _fits(chain, names, used):
            raise ValueError(f"chain {i + 1} does not fit the encoder's columns")
        used |= set(chain.columns) | {chain.count}
        chains.append(chain)
    return chains


def _fits(chain: Chain, names: dict[str, str], used: set[str]) -> bool:
    lists = (chain.middle, chain.integer, chain.ends, chain.means, chain.opposite, chain.summary)
    if not (all(isinstance(v, list) for v in lists) and len(chain.integer) == len(chain.middle)
            and all(isinstance(v, bool) for v in (*chain.integer, chain.one_equal))
            and isinstance(chain.count, str)):
        return False
    columns = chain.columns + ([chain.count] if chain.count else [])
    return (all(isinstance(c, str) and names.get(c) == "continuous" for c in columns)
            and not used & set(columns) and len(set(columns)) == len(columns)
            and set(chain.ends) | set(chain.means) <= set(chain.middle)
            and (not chain.summary or (len(chain.summary) == 3 and chain.summary[:2] in chain.opposite
                                       and chain.summary[2] in chain.means))
            and all(isinstance(p, list) and len(p) == 2 and set(p) <= set(chain.ends) for p in chain.opposite))


__all__ = ["Chain", "chains_from_dicts", "derive", "find_chains", "restore"]
