"""The private encoder: everything a private model keeps about its training rows, noised or declared public.

A non-private model reads off the training rows each continuous column's minimum, maximum and median, the category
lists and the number of rows. Here each of those comes from the user's declarations (``declared.py``) or from two
Gaussian mechanisms recorded in the ledger (``accounting.py``):

1. ``continuous bounds`` (only for continuous and date columns without declared ranges): a noisy histogram of
   each column on a fixed grid, symmetric in log10(1 + |x|) with ``GRID_PER_DECADE`` bins per decade up to
   ``GRID_DECADES`` (chosen before seeing data, so public). Bins below ``BOUND_THRESHOLD`` noise deviations are
   dropped and the range is the noisy histogram's ``BOUND_QUANTILE`` .. 1 - ``BOUND_QUANTILE`` quantiles: one
   patient's value cannot move it beyond what the noise allows. Values outside the range are clipped to it.
2. ``one-way marginals``: the number of rows and a noisy histogram of every modelled column at once (binary
   codes: their counts of ones, each row's codes weighted so that it adds at most sqrt(``CODE_CONTRIBUTION``) in
   L2 norm; categorical and label: their declared categories, or the values seen, kept only above a noisy
   threshold (an integer label always has 0 and 1); continuous: ``BINS`` bins over the range, equal in
   sign(x) log10(1 + |x|) (public edges, fine where lab values crowd the low end of a wide clinical range; a
   date's equal in time), plus missing; with a condition whose classes are public, one such histogram per class,
   each row in one of them). The L2 sensitivity is sqrt(``CODE_CONTRIBUTION`` + other columns + 1).
   From it, post-processing only: the kept categories, each continuous column's scaling (the noisy histogram's CDF
   at the bin edges as the knots of a "quantile" coding: the model sees evenly spread levels, as without DP), its
   median (the fill of missing values) and whether it keeps a missing indicator, each encoded column's share (the
   Bernoulli head's starting bias, dp-marginals' sampling) and
   class counts; a declared count rule's group sharing one missing indicator (``share_count_group``); per class,
   each continuous column's histograms cleared of noise outside the column's support and shrunk towards the
   classes' pooled shape (``_class_histograms``; with ``dp_tail_floor``, a floor put back in the cleared bins).
3. ``recording grids`` (only with a share, EHRDiff's): where a continuous column declares a ``step`` whose grid
   of multiples in the range holds at most ``GRID_CELLS`` values, a noisy count of each grid value (all classes
   together; every such column at once, L2 sensitivity sqrt(columns)). Real measurements heap on a few values
   (FiO2 1.0, 0.5 and 0.4; SaO2 98 and 99; GCS 15) that a bin of the marginals spreads evenly over its width.
   Post-processing: the marginals' bins are split at the grid's midpoints and each bin's noisy count (each class's
   too) shared among its pieces: a value whose noisy count clears ``GRID_THRESHOLD`` deviations keeps its count,
   the rest of the bin's mass is spread by width, so the coding's levels put the heaps where they are and noise
   piles nothing on random values (``_split_on_grid``).

What is treated as public schema: column names, kinds, pandas dtypes (integer or not: an integer column's sampled
values are rounded, as are those of a column with a declared ``step`` to its multiples) and a date column's
resolution and time zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.stats import norm

from ehrdiff.data.encoding import MISSING_CATEGORY, ColumnCoding, TableEncoder
from ehrdiff.data.table import Table, as_dates, date_resolution, wall_clock_days
from ehrdiff.errors import DataError
from ehrdiff.privacy.accounting import Ledger
from ehrdiff.privacy.declared import Declarations
from ehrdiff.privacy.secret import noise_generator

GRID_DECADES, GRID_PER_DECADE = 10, 20      # public grid for private bounds: |x| up to 1e10, bins 12 % wide
BOUND_THRESHOLD = 4.0      # grid bins below this many noise deviations count as empty
BOUND_QUANTILE = 0.002     # the private range leaves out this share of the noisy mass at each end
BINS = 32                  # equal bins of a continuous column's range in the one-way marginals
MISSING_INDICATOR_SHARE = 0.001    # a continuous column keeps a missing indicator above this noisy share
MISSING_INDICATOR_SD = 3.0         # ... and above this many noise deviations (noise alone clears it with p 0.13%)
SUPPORT_PENALTY = 0.5      # a bin's gain towards a column's stretch of values: its noisy count less this many sd
SUPPORT_KEEP = 3.0         # a bin outside that stretch kept above this many noise deviations
SUPPORT_MIN = 2.0          # ... looked for when the values' noisy total clears this many sd of that total
CODE_CONTRIBUTION = 16     # codes per row counted in full in the marginals; a row with more is weighted down
GRID_CELLS = 128           # a declared step whose grid has at most this many values gets counted per value
GRID_THRESHOLD = 3.0       # a grid value's noisy count above this many noise deviations is a heap it keeps


@dataclass
class ColumnMarginal:
    """One column's noisy histogram: its cells (categories, 0/1, or the range's bins then "missing")."""

    cells: list
    counts: np.ndarray        # noisy counts (clipped at 0)
    noise_sd: float = 0.0     # the Gaussian noise's standard deviation per count
    by_class: np.ndarray | None = None   # a continuous column's noisy counts per class of the condition (counts: sum)


@dataclass
class PrivateRelease:
    """The private encoder and what it was built from: all of it noised or declared public."""

    encoder: TableEncoder
    matrix: np.ndarray                 # training rows encoded (clipped to the ranges, categories mapped)
    marginals: dict[str, ColumnMarginal]
    n_rows: int                        # noisy
    ledger: Ledger
    declarations: Declarations = field(default_factory=Declarations)

    def encoded_shares(self, encoder: TableEncoder | None = None) -> np.ndarray:
        """Each encoded column's noisy mean: P(1) of 0/1 columns, category shares, missing shares; the noisy
        median of a continuous value (``encoder``: a subset of the columns, e.g. without the condition)."""
        out = []
        for c in (encoder or self.encoder).codings_:
            if c.coding == "id":
                continue
            counts = self.marginals[c.name].counts
            shares = counts / max(counts.sum(), 1e-9)
            if c.coding == "binary":
                out.append(shares[[_key(v) for v in self.marginals[c.name].cells].index(1)])
            elif c.coding == "onehot":
                out.extend(shares)
            else:
                out.append(c.fill)
                if c.own_indicator:
                    out.append(shares[-1])
        return np.asarray(out, dtype=np.float64)

    def class_counts(self, column: str, classes: list) -> list[int]:
        """Noisy rows per class of ``column`` (a condition), in the order of ``classes``."""
        m = self.marginals[column]
        index = {_key(c): i for i, c in enumerate(m.cells)}
        return [int(round(m.counts[index[_key(c)]])) if _key(c) in index else 0 for c in classes]

    def to_dict(self) -> dict:
        return {**self.ledger.to_dict(), "n_rows": self.n_rows, "declared": self.declarations.to_dict()}


def private_encoder(table: Table, ledger: Ledger, declarations: Declarations, bounds_share: float,
                    marginals_share: float | None, seed: int, count_rules: tuple = (),
                    condition: str | None = None, grid_share: float = 0.0, tail_floor: float = 0.0) -> PrivateRelease:
    """The private encoder of ``table``: mechanisms 1 and 2 of the module docstring (and 3 with a ``grid_share``),
    added to ``ledger`` with their shares of its epsilon (``marginals_share`` None: the marginals spend what is
    left, and no grids); noise drawn from
    ``seed`` (a secret one: privacy/secret.py). ``count_rules``: declared count rules whose groups share one missing
    indicator (``share_count_group``); ``condition``: a column whose classes are public (declared, or a 0/1 label),
    by which continuous columns get one histogram per class (``ColumnMarginal.by_class``: each row is in one class,
    so at no cost in sensitivity); ``tail_floor``: see ``_class_histograms``."""
    rng = noise_generator(seed, 0xD9)
    names = [c for c in table.columns if table.kinds[c] != "id"]
    if not names:
        raise DataError("the table has no columns to model")
    numbers = {c: _numbers(table, c) for c in names if table.kinds[c] in ("continuous", "date")}
    bounds = dict(declarations.bounds)
    estimate = [c for c in numbers if c not in bounds]
    if estimate:
        bounds.update(_private_bounds({c: numbers[c] for c in estimate}, ledger, bounds_share, rng))
    marginals, n_rows = _one_way_marginals(table, names, numbers, bounds, declarations, ledger, marginals_share,
                                           rng, _class_index(table, condition, declarations), tail_floor)
    pieces = {}
    if grid_share > 0 and marginals_share is not None:
        pieces = _split_on_grid(table, numbers, bounds, declarations.steps, marginals, ledger, grid_share, rng)
    codings = [_coding(table, c, marginals.get(c), bounds.get(c), declarations.steps, pieces.get(c))
               for c in table.columns]
    for rule in count_rules:
        share_count_group(codings, rule, marginals[rule.column])
    encoder = TableEncoder("minmax")
    encoder.codings_ = codings
    matrix = _encode(table, encoder, marginals)
    return PrivateRelease(encoder, matrix, marginals, n_rows, ledger, declarations)


def _numbers(table: Table, name: str) -> np.ndarray:
    values = table.frame[name]
    if table.kinds[name] == "date":
        return wall_clock_days(as_dates(values, name))
    return values.to_numpy(dtype=float, na_value=np.nan)


# ---- 1. private bounds -----------------------------------------------------------------------------------------
def _grid_edges() -> np.ndarray:
    """Public bin edges: symmetric in t = sign(x) log10(1 + |x|), from -GRID_DECADES to GRID_DECADES."""
    t = np.linspace(-GRID_DECADES, GRID_DECADES, 2 * GRID_DECADES * GRID_PER_DECADE + 1)
    return np.sign(t) * (10.0 ** np.abs(t) - 1)


def _private_bounds(columns: dict[str, np.ndarray], ledger: Ledger, share: float,
                    rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    edges = _grid_edges()
    mechanism = ledger.gaussian("continuous bounds", math.sqrt(len(columns)), share)
    sd = mechanism.noise_multiplier * mechanism.sensitivity
    out = {}
    for name, values in columns.items():
        observed = np.clip(values[~np.isnan(values)], edges[0], edges[-1])
        counts = np.histogram(observed, bins=edges)[0] + rng.normal(0, sd, len(edges) - 1)
        counts = np.where(counts > BOUND_THRESHOLD * sd, counts, 0.0)
        if counts.sum() <= 0:
            raise DataError(f"column '{name}': too few values to estimate its range privately; declare it in "
                            "--bounds FILE (e.g. {\"" + name + "\": {\"low\": 0, \"high\": 100}})")
        cdf = np.cumsum(counts) / counts.sum()
        first = int(np.searchsorted(cdf, BOUND_QUANTILE, side="right"))
        last = int(np.searchsorted(cdf, 1 - BOUND_QUANTILE, side="left"))
        low, high = float(edges[first]), float(edges[min(last, len(edges) - 2) + 1])
        out[name] = (low, high if high > low else low + 1.0)
    return out


# ---- 2. one-way marginals --------------------------------------------------------------------------------------
def bin_edges(low: float, high: float, kind: str) -> np.ndarray:
    """The BINS + 1 public edges of a range: equal steps of sign(x) log10(1 + |x|) for a continuous column, equal
    steps for a date."""
    if kind != "continuous":
        return np.linspace(low, high, BINS + 1)
    t = np.linspace(*(np.sign(v) * np.log10(1 + abs(v)) for v in (low, high)), BINS + 1)
    edges = np.sign(t) * (10.0 ** np.abs(t) - 1)
    edges[0], edges[-1] = low, high
    return edges


def bin_of(coding: ColumnCoding, encoded: np.ndarray) -> np.ndarray:
    """The marginal's bin (0 .. BINS - 1) of a continuous coding's encoded values: by the levels at the bin edges
    (a value in a bin the noise emptied goes to the bin below), or equal steps of [0, 1] (a min-max range)."""
    encoded = np.asarray(encoded, dtype=np.float64)
    if coding.uses_knots:
        return np.clip(np.searchsorted(np.asarray(coding.knot_low), encoded, side="left") - 1, 0, BINS - 1)
    return np.clip((encoded * BINS).astype(np.int64), 0, BINS - 1)


def point_in_bin(coding: ColumnCoding, bins: np.ndarray, u: np.ndarray) -> np.ndarray:
    """An encoded value at relative position ``u`` (uniform draws) inside each of ``bins``: decoded, a point of
    the bin's range drawn uniformly."""
    if coding.uses_knots:
        levels = np.asarray(coding.knot_low)
        return levels[bins] + u * (levels[bins + 1] - levels[bins])
    return (bins + u) / BINS


def _key(value):
    """A category key as the encoder stores it (missing values: MISSING_CATEGORY, numpy scalars as Python's)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return MISSING_CATEGORY
    return value.item() if isinstance(value, np.generic) else value


def _keys(values: pd.Series) -> np.ndarray:
    return np.array([_key(v) for v in values.to_numpy(dtype=object)], dtype=object)


def _public_cells(table: Table, name: str, declarations: Declarations) -> list:
    """The categories a column has whatever its rows: declared ones, or 0 and 1 of an integer label."""
    declared = declarations.categories.get(name)
    return [_key(c) for c in declared] if declared is not None else _public_classes(table, name)


def _class_index(table: Table, condition: str | None, declarations: Declarations) -> tuple[np.ndarray, int] | None:
    """Each row's class of ``condition`` (-1: none) and the number of classes, when the classes are public (declared
    categories, or 0 and 1 of an integer label); None otherwise."""
    if condition is None or condition not in table.kinds:
        return None
    public = _public_cells(table, condition, declarations)
    if len(public) < 2:
        return None
    return pd.Index(public, dtype=object).get_indexer(_keys(table.frame[condition])), len(public)


def _one_way_marginals(table: Table, names: list[str], numbers: dict[str, np.ndarray],
                       bounds: dict[str, tuple[float, float]], declarations: Declarations, ledger: Ledger,
                       share: float | None, rng: np.random.Generator,
                       classes: tuple[np.ndarray, int] | None = None,
                       tail_floor: float = 0.0) -> tuple[dict[str, ColumnMarginal], int]:
    """The noisy histograms of every column (continuous ones per class of ``classes``: _class_index), and the
    noisy number of rows."""
    codes = [c for c in names if table.kinds[c] == "binary"]
    limit = min(CODE_CONTRIBUTION, len(codes))
    # a row adds at most sqrt(limit) (L2) to the codes' counts, one count to every other column, and one row
    sensitivity = math.sqrt(limit + len(names) - len(codes) + 1)
    mechanism = ledger.gaussian("one-way marginals", sensitivity, share) if share is not None else \
        ledger.remaining("one-way marginals", sensitivity)
    sd = mechanism.noise_multiplier * mechanism.sensitivity
    n_rows = max(1.0, table.n_rows + rng.normal(0, sd))
    out, pending = {}, {}
    if codes:
        ones = _bounded_code_counts(table.frame[codes].to_numpy(dtype=np.float64), limit) + \
            rng.normal(0, sd, len(codes))
        for name, count in zip(codes, np.clip(ones, 0, n_rows)):
            out[name] = ColumnMarginal([0, 1], np.array([n_rows - count, count]), sd)
    selected = [c for c in names if table.kinds[c] in ("categorical", "label") and c not in declarations.categories]
    if selected:     # a value held by one row alone clears the threshold with probability at most delta / columns
        per_column = ledger.selection_budget / len(selected)
        threshold = 1 + sd * float(norm.isf(per_column))
        mechanism.selection_delta = ledger.selection_budget
    for name in names:
        kind = table.kinds[name]
        if kind == "binary":
            continue
        if kind in ("continuous", "date"):
            low, high = bounds[name]
            raw = numbers[name]
            cells = list(range(BINS)) + [MISSING_CATEGORY]
            if classes is not None and kind == "continuous":
                index, n_classes = classes
                per_class = np.stack([_histogram(raw[index == k], low, high, kind) for k in range(n_classes)])
                pending[name] = (cells, per_class + rng.normal(0, sd, per_class.shape))
                continue
            counts = _histogram(raw, low, high, kind)
        else:
            keys = _keys(table.frame[name])
            declared = declarations.categories.get(name)
            public = _public_cells(table, name, declarations)
            seen = [] if declared is not None else \
                sorted(set(keys.tolist()) - set(public), key=lambda c: (isinstance(c, str), c))
            cells = public + seen
            index = pd.Index(cells, dtype=object).get_indexer(keys)
            counts = np.bincount(index[index >= 0], minlength=len(cells)).astype(float)
        noisy = counts + rng.normal(0, sd, len(cells))
        if name in selected:
            keep = (noisy > threshold) | (np.arange(len(cells)) < len(public))
            if not keep.any():
                raise DataError(f"column '{name}': no value is frequent enough to release privately; declare its "
                                "categories in --bounds FILE or drop the column")
            cells, noisy = [c for c, k in zip(cells, keep) if k], noisy[keep]
        out[name] = ColumnMarginal(cells, np.clip(noisy, 0, None), sd)
    if pending:     # each class's size: its histograms' totals averaged over the columns (noise sd / sqrt(columns))
        sizes = np.maximum(np.mean([noisy.sum(axis=1) for _, noisy in pending.values()], axis=0), 1.0)
        for name, (cells, noisy) in pending.items():
            by_class = _class_histograms(noisy, sd, sizes, tail_floor)
            out[name] = ColumnMarginal(cells, by_class.sum(axis=0), sd * math.sqrt(len(sizes)), by_class)
    return {name: out[name] for name in names}, int(round(n_rows))


def _class_histograms(noisy: np.ndarray, sd: float, sizes: np.ndarray, tail_floor: float = 0.0) -> np.ndarray:
    """One continuous column's histograms per class (rows of ``noisy``: its bins, then missing; every count with
    noise ``sd``; ``sizes``: the classes' estimated sizes), as non-negative counts. Two steps, both for noise
    that would otherwise become heaps of rows at values no patient has (post-processing):
    - bins outside the column's support (``_support``, from the classes' pooled counts) are emptied;
    - each class's counts are shrunk towards the pooled shape by how far its differences from it stand above the
      noise (James-Stein): a small class's own histogram is mostly noise at a small epsilon.
    With a ``tail_floor``, each emptied bin gets that many noise deviations back in every class: the noise cannot
    tell such a bin from empty, so the rows there reach the real outliers the support cut, and values few
    patients have (what that costs on CinC 2012: docs/conditional-and-dp.md)."""
    spread = sd * math.sqrt(len(noisy))                           # the pooled counts' noise
    kept = np.append(_support(noisy.sum(axis=0)[:-1], spread), True)       # the missing cell always
    noisy = np.where(kept, noisy, 0.0)
    pooled = _norm_sub(noisy.sum(axis=0))
    shape = pooled / max(pooled.sum(), 1e-12)
    share = sizes / sizes.sum()
    out = []
    for counts, size, p in zip(noisy, sizes, share):
        deviation = counts - shape * size
        noise = sd ** 2 * (1 - 2 * p + float(np.sum(share ** 2)))   # variance of the deviation's noise alone
        signal = max(float(np.mean(deviation[kept] ** 2)) - noise, 0.0)
        out.append(_norm_sub(shape * size + signal / (signal + noise) * deviation))
    return np.stack(out) + np.where(kept, 0.0, tail_floor * sd)


def _support(present: np.ndarray, sd: float) -> np.ndarray:
    """The bins a column's values fill, from their noisy counts (noise ``sd``): real values fill one stretch of
    the range (``_best_run``), so a lone bin away from it is noise unless it clears ``SUPPORT_KEEP`` deviations
    (a heap at 0, say). Every bin when the values' noisy total is too small for a stretch to stand out."""
    if present.sum() < SUPPORT_MIN * sd * math.sqrt(len(present)):
        return np.ones(len(present), dtype=bool)
    return _best_run(present - SUPPORT_PENALTY * sd) | (present > SUPPORT_KEEP * sd)


def _best_run(gains: np.ndarray) -> np.ndarray:
    """The run of adjacent entries with the largest total gain (maximum subarray, Kadane), as a mask."""
    best, best_run, total, start = -np.inf, (0, len(gains)), 0.0, 0
    for i, gain in enumerate(gains):
        if total <= 0:
            total, start = 0.0, i
        total += gain
        if total > best:
            best, best_run = total, (start, i + 1)
    keep = np.zeros(len(gains), dtype=bool)
    keep[best_run[0]:best_run[1]] = True
    return keep


def _norm_sub(noisy: np.ndarray) -> np.ndarray:
    """Noisy counts made non-negative with their total kept: every count lowered by the one amount tau that leaves
    max(count - tau, 0) adding up to the noisy total ("norm-sub", the Euclidean projection onto the histograms of
    that total). Clipping at 0 instead adds the positive half of the noise to every empty cell, a tail of spurious
    rows that grows with the noise (post-processing either way)."""
    total = float(noisy.sum())
    if total <= 0:
        return np.zeros_like(noisy)
    ordered = np.sort(noisy)[::-1]
    cumulative = np.cumsum(ordered) - total
    k = np.flatnonzero(ordered - cumulative / np.arange(1, len(ordered) + 1) > 0)[-1]
    return np.maximum(noisy - cumulative[k] / (k + 1), 0.0)


def _histogram(raw: np.ndarray, low: float, high: float, kind: str) -> np.ndarray:
    """Counts per public bin of the range, then the missing values' count."""
    present = raw[~np.isnan(raw)]
    binned = np.histogram(np.clip(present, low, high), bins=bin_edges(low, high, kind))[0]
    return np.append(binned, np.isnan(raw).sum()).astype(float)


def contribution_weights(per_row: np.ndarray, limit: float) -> np.ndarray:
    """Row weights for counts to which a row adds ``per_row`` ones: a row adding k > ``limit`` is weighted by
    sqrt(limit / k), so that its contribution has L2 norm at most sqrt(limit) (contribution bounding: the noise then
    grows with ``limit``, not with the number of counts)."""
    return np.where(per_row > limit, np.sqrt(limit / np.maximum(per_row, 1)), 1.0)


def _bounded_code_counts(codes: np.ndarray, limit: int) -> np.ndarray:
    """Each code column's count of ones, each row weighted by ``contribution_weights`` of its number of codes."""
    return contribution_weights(codes.sum(axis=1), limit) @ codes


def _public_classes(table: Table, name: str) -> list:
    """Cells a column has whatever the data: 0 and 1 for an integer or boolean label (an outcome), none otherwise
    (its values seen in the data are kept by the noisy threshold)."""
    dtype = table.frame[name].dtype
    if table.kinds[name] == "label" and (pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
        return [0, 1]
    return []


# ---- 3. recording grids ----------------------------------------------------------------------------------------
def _grid(low: float, high: float, step: float) -> np.ndarray | None:
    """The multiples of ``step`` in [low, high] (as data/encoding.on_grid rounds to), or None when there are more
    than GRID_CELLS of them (or fewer than 2)."""
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return np.arange(first, last + 1) * step if 2 <= last - first + 1 <= GRID_CELLS else None


def _split_on_grid(table: Table, numbers: dict[str, np.ndarray], bounds: dict[str, tuple[float, float]],
                   steps: dict[str, float], marginals: dict[str, ColumnMarginal], ledger: Ledger, share: float,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Mechanism 3: each gridded column's marginal (``marginals``, replaced) split at its grid's midpoints, with
    its bins' noisy counts shared among the pieces by the noisy grid counts; returns the pieces' edges by column."""
    grids = {c: g for c in marginals if table.kinds[c] == "continuous" and c in steps
             and (g := _grid(*bounds[c], steps[c])) is not None}
    if not grids:
        return {}
    mechanism = ledger.gaussian("recording grids", math.sqrt(len(grids)), share)
    sd = mechanism.noise_multiplier * mechanism.sensitivity
    out = {}
    for name, grid in grids.items():
        low, high = bounds[name]
        present = numbers[name][~np.isnan(numbers[name])]
        nearest = np.clip(np.round(np.clip(present, low, high) / steps[name]) - round(grid[0] / steps[name]), 0,
                          len(grid) - 1).astype(np.int64)
        noisy = np.bincount(nearest, minlength=len(grid)) + rng.normal(0, sd, len(grid))
        coarse = bin_edges(low, high, "continuous")
        edges = np.union1d(coarse, (grid[:-1] + grid[1:]) / 2)
        # each piece lies in one bin of the marginals and holds one grid value or none
        bin_of_piece = np.clip(np.searchsorted(coarse, edges[:-1], side="right") - 1, 0, BINS - 1)
        value_in = np.clip(np.searchsorted(edges, grid, side="right") - 1, 0, len(edges) - 2)
        per_piece, heap = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
        np.add.at(per_piece, value_in, noisy)
        np.add.at(heap, value_in, np.where(noisy > GRID_THRESHOLD * sd, noisy, 0.0))
        width = np.diff(edges)
        bin_width, total = np.bincount(bin_of_piece, width, BINS), np.bincount(bin_of_piece, per_piece, BINS)
        # a value whose count clears the noise keeps it; the rest of its bin's mass is spread by width (noise alone
        # would pile it on random values); so is all of a bin whose grid values the noise emptied. The counts stay
        # as drawn (unbiased): norm-sub lowers every count by one amount, which took a bin's smaller values to 0
        # and gave its heap most of it (SaO2_first at 98 in 46 % of sampled CinC stays against 37 %)
        rest = np.maximum(total - np.bincount(bin_of_piece, heap, BINS), 0.0)
        weight = heap + rest[bin_of_piece] * width / bin_width[bin_of_piece]
        in_bin = np.bincount(bin_of_piece, weight, BINS)[bin_of_piece]
        share_in_bin = np.where(in_bin > 0, weight / np.maximum(in_bin, 1e-300), width / bin_width[bin_of_piece])
        m = marginals[name]

        def split(histogram: np.ndarray) -> np.ndarray:      # the bins, then missing
            return np.append(histogram[:-1][bin_of_piece] * share_in_bin, histogram[-1])

        marginals[name] = replace(m, cells=list(range(len(edges) - 1)) + [MISSING_CATEGORY], counts=split(m.counts),
                                  by_class=None if m.by_class is None else np.stack([split(h) for h in m.by_class]))
        out[name] = edges
    return out


# ---- the encoder -----------------------------------------------------------------------------------------------
def _coding(table: Table, name: str, marginal: ColumnMarginal | None, bounds: tuple[float, float] | None,
            steps: dict[str, float], edges: np.ndarray | None = None) -> ColumnCoding:
    kind, values = table.kinds[name], table.frame[name]
    dtype = str(values.dtype)
    if kind == "id":
        return ColumnCoding(name, kind, "id", width=0, dtype=dtype)
    if kind == "binary" or (kind == "label" and all(c in (0, 1) and not isinstance(c, str) for c in marginal.cells)
                            and len(marginal.cells) == 2):
        return ColumnCoding(name, kind, "binary", dtype=dtype)
    if kind in ("continuous", "date"):
        low, high = bounds
        counts = marginal.counts
        present = counts[:-1]
        # a plain numpy integer column cannot hold a missing value (public schema): no indicator, whatever the noise
        can_miss = not (isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu")
        has_missing = can_miss and bool(counts[-1] > max(MISSING_INDICATOR_SHARE * max(counts.sum(), 1.0),
                                                         MISSING_INDICATOR_SD * marginal.noise_sd))
        median_bin = int(np.searchsorted(np.cumsum(present), present.sum() / 2)) if present.sum() > 0 else BINS // 2
        coding = ColumnCoding(name, kind, "continuous", width=2 if has_missing else 1, low=low, high=high,
                              fill=(min(median_bin, BINS - 1) + 0.5) / BINS, has_missing=has_missing, dtype=dtype,
                              integer=kind == "continuous" and pd.api.types.is_integer_dtype(values.dtype),
                              step=steps.get(name, 0.0))
        if kind == "continuous":    # levels of the noisy CDF (post-processing); the median is level 0.5
            edges = bin_edges(low, high, kind) if edges is None else edges
            levels = edge_levels(present)
            levels = (levels if levels is not None else np.linspace(0.0, 1.0, len(edges))).tolist()
            coding.scaling, coding.fill = "quantile", 0.5
            coding.knots, coding.knot_low, coding.knot_high = edges.tolist(), levels, list(levels)
        if kind == "date":
            dates = as_dates(values, name)
            coding.date_unit, coding.date_tz = date_resolution(dates), str(getattr(dates.dtype, "tz", None) or "")
        return coding
    categories = list(marginal.cells)
    return ColumnCoding(name, kind, "onehot", width=len(categories), categories=categories, dtype=dtype)


def share_count_group(codings: list[ColumnCoding], rule, count: ColumnMarginal) -> None:
    """A declared count rule (``rule.column`` is 0 exactly when its group is missing; public, like every declared
    rule) built into the codings: the group's columns share the first one's missing indicator, and the count is
    encoded only where the group is present (``zero_when_missing``, its levels those of its noisy histogram less
    the bin of 0), so a row's values, missingness and count agree by construction instead of by a vote of separate
    indicators at sampling. Left as it is where the rule does not fit the codings (a column not continuous, the
    group never missing by the noise's reading, a count range without 0)."""
    by_name = {c.name: c for c in codings}
    group = [by_name.get(name) for name in rule.group]
    counter = by_name.get(rule.column)
    if counter is None or any(c is None or c.coding != "continuous" or c.kind != "continuous"
                              for c in (*group, counter)) or not group[0].has_missing or counter.low != 0:
        return
    leader = group[0]
    for c in (*group[1:], counter):
        c.has_missing, c.missing_with, c.width = True, leader.name, 1
    counter.zero_when_missing = True
    levels = edge_levels(present_counts(counter, count.counts))
    if levels is not None:
        counter.knot_low, counter.knot_high = levels.tolist(), levels.tolist()


def present_counts(coding: ColumnCoding, counts) -> np.ndarray:
    """A continuous column's noisy counts of its present values: its bins, less the bin of 0 for a count encoded
    only where its group is present (bin 0 of a range from 0 holds the zeros: bin_edges)."""
    present = np.array(counts[:-1], dtype=np.float64)
    if coding.zero_when_missing:
        present[0] = 0.0
    return present


def edge_levels(present: np.ndarray) -> np.ndarray | None:
    """The noisy CDF at the bin edges (0 first, 1 last); None for a histogram the noise left empty."""
    if not present.sum() > 0:
        return None
    return np.concatenate([[0.0], np.cumsum(present) / present.sum()])


def _encode(table: Table, encoder: TableEncoder, marginals: dict[str, ColumnMarginal]) -> np.ndarray:
    """The rows in the private encoder's space: values outside a kept category list become its most frequent
    category (by the noisy counts), continuous values are clipped to the range, and a missing value of a column
    without an indicator takes the column's fill (encoded through a twin coding that has one, then dropped)."""
    frame = table.frame.copy()
    twins = []
    for c in encoder.codings_:
        if c.coding == "onehot":
            keys = _keys(frame[c.name])
            known = pd.Index(c.categories, dtype=object).get_indexer(keys) >= 0
            if not known.all():
                keys[~known] = c.categories[int(np.argmax(marginals[c.name].counts))]
            frame[c.name] = pd.Series([None if k == MISSING_CATEGORY else k for k in keys], dtype=object)
        twins.append(replace(c, has_missing=True, missing_with="", width=2) if c.coding == "continuous"
                     and not c.own_indicator else c)
    twin = TableEncoder("minmax")
    twin.codings_ = twins
    wide = twin.transform(Table(frame, table.kinds), dtype=np.float32)
    keep, j = [], 0
    for c, t in zip(encoder.codings_, twins):
        if c.coding == "continuous":
            wide[:, j] = np.clip(wide[:, j], 0.0, 1.0)
        keep.extend(range(j, j + c.width))
        j += t.width
    return np.ascontiguousarray(wide[:, keep])


__all__ = ["BINS", "ColumnMarginal", "PrivateRelease", "bin_edges", "bin_of", "contribution_weights", "edge_levels",
           "point_in_bin", "present_counts", "private_encoder"]
