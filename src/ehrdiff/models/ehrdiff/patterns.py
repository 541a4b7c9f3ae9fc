"""Which variables a private model's rows measure: a Chow-Liu tree over the missing indicators (not in the paper).

DP-SGD's network keeps little of which variables a row measures together beyond the declared panels: on CinC 2012
trees told the private model's stays from real ones by the measured variables alone at AUROC 0.93, MST's at 0.83,
and at 0.78 with this tree (benchmarks/cinc_probe.py, per_summary "measured"; docs/conditional-and-dp.md). The
release (private_release.py, mechanism "measured pairs") holds noisy counts of the rows measuring each pair of
units; the rows per class and those measuring each unit per class come from the one-way marginals. From them, as
post-processing, a Chow-Liu tree (Chow and Liu 1968: the maximum spanning tree of the pairwise mutual information;
MST fits the same kind of tree to its noisy two-way marginals) rooted at the class draws a measuring pattern for
each sampled row given its class. The rows take the drawn patterns nearest their own (fewest units changed), and a
unit whose state changes is emptied, or copied whole, with its values, from a row of the same class that measured
it.

A unit is a missing indicator with the columns that share it (a variable's summaries and its count), and a
declared panel's indicators are one unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, logit

from ehrdiff.diffusion.panels import declared_panels

ROOT = -1           # a unit whose parent is the class
ASSIGN_BLOCK = 4000     # rows given patterns together (their distinct patterns compared pair by pair)


def measuring_units(encoder, panels: dict[str, list[str]]) -> list[list[str]]:
    """The units of ``encoder``'s missing indicators: each a list of indicator owners (a column whose indicator is
    its own; the first leads), a declared panel's together."""
    owner_of = {index: name for name, index in encoder.indicator_index().items()}
    members, leaders = declared_panels(encoder, panels) if panels else (np.zeros(0, int), np.zeros(0, int))
    follows = dict(zip(members.tolist(), leaders.tolist()))
    units: dict[int, list[str]] = {}
    for index in sorted(owner_of):
        units.setdefault(follows.get(index, index), []).append(owner_of[index])
    return list(units.values())


def measured_flags(encoder, matrix: np.ndarray, units: list[list[str]]) -> np.ndarray:
    """(rows, units) True where the row measured the unit (its leading indicator is 0), from encoded rows."""
    index = encoder.indicator_index()
    return np.column_stack([np.asarray(matrix)[:, index[unit[0]]] < 0.5 for unit in units])


def fit_tree(units: list[list[str]], rows: np.ndarray, single: np.ndarray, pair: np.ndarray) -> dict[str, Any]:
    """The Chow-Liu tree of noisy counts: ``rows`` per class (k), ``single`` rows measuring each unit per class
    (k x units), ``pair`` rows measuring both of two units (units x units, upper triangle). Returns what model.json
    keeps: the units, the order they are drawn in, each one's parent (ROOT: the class) and its chance of being
    measured per state of the parent (per class, or [parent missing, parent measured]) and per class."""
    rows = np.maximum(np.asarray(rows, dtype=float), 1.0)
    single = np.clip(np.asarray(single, dtype=float), 0.0, rows[:, None])
    total = rows.sum()
    share = np.clip(single.sum(axis=0) / total, 1e-4, 1 - 1e-4)
    n_units = len(units)

    def joint(i: int, j: int) -> np.ndarray:        # [[--, -j], [i-, ij]] shares, valid by clipping
        both = np.clip(pair[min(i, j), max(i, j)] / total, 1e-5, min(share[i], share[j]) - 1e-5)
        table = np.array([[1 - share[i] - share[j] + both, share[j] - both], [share[i] - both, both]])
        table = np.clip(table, 1e-6, None)
        return table / table.sum()

    def information(table: np.ndarray) -> float:
        outer = np.outer(table.sum(axis=1), table.sum(axis=0))
        return float(np.sum(table * np.log(table / outer)))

    by_class = np.clip(single / rows[:, None], 1e-4, 1 - 1e-4)
    class_table = [np.column_stack([rows * (1 - by_class[:, j]), rows * by_class[:, j]]) / total
                   for j in range(n_units)]
    weight = np.array([[information(joint(i, j)) if i != j else -np.inf for j in range(n_units)]
                       for i in range(n_units)])
    root_weight = np.array([information(t) if len(rows) > 1 else 0.0 for t in class_table])
    # Prim's algorithm from the class: each unit joins through its strongest link to the tree so far
    parent = np.full(n_units, ROOT)
    best = root_weight.copy()
    placed, order = np.zeros(n_units, bool), []
    for _ in range(n_units):
        j = int(np.argmax(np.where(placed, -np.inf, best)))
        placed[j] = True
        order.append(j)
        closer = ~placed & (weight[j] > best)
        best[closer], parent[closer] = weight[j][closer], j
    chances = []
    for j in range(n_units):
        if parent[j] == ROOT:
            chances.append(by_class[:, j].tolist())     # per class
        else:
            table = joint(int(parent[j]), j)
            chances.append((table[:, 1] / table.sum(axis=1)).tolist())
    return {"units": units, "order": order, "parent": parent.tolist(),
            "chances": [[round(p, 6) for p in c] for c in chances],
            "by_class": np.round(by_class.T, 6).tolist()}


def draw_patterns(tree: dict[str, Any], labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(rows, units) measuring patterns drawn from ``tree`` given each row's class index ``labels``. A unit under
    another unit keeps its share in each class too: its log-odds given the parent move by one amount per class,
    the one that makes the class's rows, with the parents drawn, measure it at its share in the class."""
    out = np.zeros((len(labels), len(tree["units"])), dtype=bool)
    for j in tree["order"]:
        parent, by_class = tree["parent"][j], np.asarray(tree["by_class"][j])
        if parent == ROOT:
            chance = by_class[labels]
        else:
            odds = logit(np.asarray(tree["chances"][j])[out[:, parent].astype(np.int64)])
            for k in np.unique(labels):
                rows = labels == k
                odds[rows] += _shift(odds[rows], by_class[k])
            chance = expit(odds)
        out[:, j] = rng.random(len(labels)) < chance
    return out


def _shift(odds: np.ndarray, share: float) -> float:
    """The amount that makes expit(odds + amount) average ``share`` (bisection: the mean rises with it)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if expit(odds + middle).mean() < share else (low, middle)
    return (low + high) / 2


def nearest_assignment(own: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """For each row of ``own`` (rows x units, bool) the index of a row of ``drawn`` (as many rows), each used once,
    greedily by the number of units that differ: exact matches first, then one unit off, and so on."""
    own_keys, own_of = np.unique(own, axis=0, return_inverse=True)
    drawn_keys, drawn_of = np.unique(drawn, axis=0, return_inverse=True)
    a, b = own_keys.astype(np.float32), drawn_keys.astype(np.float32)
    # units that differ, per pair of patterns (small integers: the stable sort below is a radix sort)
    distance = np.rint(own.shape[1] - (a @ b.T + (1 - a) @ (1 - b).T)).astype(np.int16)
    waiting = np.bincount(own_of.ravel(), minlength=len(own_keys)).tolist()
    free = np.bincount(drawn_of.ravel(), minlength=len(drawn_keys)).tolist()
    moves, left = [], len(own)
    for flat in np.argsort(distance, axis=None, kind="stable").tolist():
        i, j = divmod(flat, len(drawn_keys))
        take = min(waiting[i], free[j])
        if take:
            moves.append((i, j, take))
            waiting[i] -= take
            free[j] -= take
            left -= take
            if not left:
                break
    # rows of each own pattern take, in turn, the drawn rows of the patterns matched to it
    own_rows, drawn_rows = _rows_by_pattern(own_of, len(own_keys)), _rows_by_pattern(drawn_of, len(drawn_keys))
    out = np.empty(len(own), dtype=np.int64)
    for i, j, take in moves:
        out[own_rows[i][-take:]] = drawn_rows[j][-take:]
        del own_rows[i][-take:], drawn_rows[j][-take:]
    return out


def _rows_by_pattern(pattern_of: np.ndarray, n_patterns: int) -> list[list[int]]:
    """The row indices of each pattern (``pattern_of``: each row's pattern index), in row order."""
    pattern_of = pattern_of.ravel()
    ends = np.cumsum(np.bincount(pattern_of, minlength=n_patterns))[:-1]
    return [list(r) for r in np.split(np.argsort(pattern_of, kind="stable"), ends)]


def meet_patterns(frame, encoder, tree: dict[str, Any], labels: np.ndarray, seed: int) -> None:
    """``frame`` (decoded rows; in place) given measuring patterns drawn from ``tree``, row by row the nearest: a
    unit the pattern leaves out is emptied (its counts 0), one it adds is copied from a row of the same class that
    measured it (a random one: handing the unit over from the rows that give it up told CinC's rows apart more)."""
    columns = {c.name: [] for c in encoder.codings_ if c.own_indicator}
    zero = {c.name for c in encoder.codings_ if c.zero_when_missing}
    for c in encoder.codings_:
        if c.coding == "continuous" and c.has_missing:
            columns[c.missing_with or c.name].append(c.name)
    units = tree["units"]
    if any(owner not in columns for unit in units for owner in unit) or len(frame) == 0:
        return
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x9A77]))
    blocks = [[name for owner in unit for name in columns[owner]] for unit in units]
    own = np.column_stack([frame[unit[0]].notna().to_numpy() for unit in units])
    drawn = draw_patterns(tree, labels, rng)
    target = np.empty_like(own)
    for k in np.unique(labels):         # in blocks of a class's rows in random order: the pairs of patterns compared
        rows = rng.permutation(np.flatnonzero(labels == k))     # grow with the square of the rows
        for block in np.array_split(rows, -(-len(rows) // ASSIGN_BLOCK)):
            target[block] = drawn[block][nearest_assignment(own[block], drawn[block])]
    values = {name: frame[name].to_numpy(dtype=np.float64, copy=True) for block in blocks for name in block}
    for j, block in enumerate(blocks):
        empty, fill = own[:, j] & ~target[:, j], ~own[:, j] & target[:, j]
        for k in np.unique(labels[fill]):       # filled first: the donors' values are still the drawn ones
            donors = np.flatnonzero(own[:, j] & (labels == k))
            rows = np.flatnonzero(fill & (labels == k))
            if not donors.size:
                continue
            source = rng.choice(donors, size=rows.size)
            for name in block:
                values[name][rows] = values[name][source]
        for name in block:
            values[name][empty] = 0.0 if name in zero else np.nan
    for name, column in values.items():
        frame[name] = column.astype(frame[name].dtype) if frame[name].dtype.kind == "f" else column


def row_classes(frame, spec) -> np.ndarray:
    """Each decoded row's class index (0 for all without a condition ``spec``)."""
    if spec is None:
        return np.zeros(len(frame), dtype=np.int64)
    values = frame[spec.column]
    index = {value: spec.resolve(value) for value in values.unique()}
    return np.array([index[value] for value in values], dtype=np.int64)


def checked_tree(metadata, encoder, n_classes: int) -> dict[str, Any] | None:
    """model.json's ``measuring_tree`` (absent: None), refused unless its units are the encoder's indicator owners,
    its order a permutation, each parent the class or an earlier unit, and each unit's chances shares per state."""
    value: Any = metadata.typed("measuring_tree", dict, "an object of units, order, parents and chances",
                                optional=True)
    if value is None:
        return None
    owners = set(encoder.indicator_index())
    units, order, parent, chances, by_class = (value.get(k) for k in ("units", "order", "parent", "chances",
                                                                      "by_class"))

    def shares(c: Any, n: int) -> bool:
        return isinstance(c, list) and len(c) == n and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1 for x in c)

    ok = isinstance(units, list) and all(isinstance(u, list) and u and set(u) <= owners for u in units) \
        and isinstance(order, list) and sorted(order) == list(range(len(units))) \
        and isinstance(parent, list) and isinstance(chances, list) and isinstance(by_class, list) \
        and len(parent) == len(chances) == len(by_class) == len(units)
    if ok:
        place = {j: k for k, j in enumerate(order)}
        for j, (p, c, b) in enumerate(zip(parent, chances, by_class)):
            ok = ok and (p == ROOT or (isinstance(p, int) and 0 <= p < len(units) and place[p] < place[j])) \
                and shares(c, n_classes if p == ROOT else 2) and shares(b, n_classes)
    if not ok:
        raise metadata.invalid("measuring_tree", "units of the encoder's missing indicators, an order of them, each "
                               "one's parent (-1: the class, or a unit earlier in the order), its chances of being "
                               "measured per state of the parent and per class", value)
    return value


__all__ = ["ROOT", "checked_tree", "draw_patterns", "fit_tree", "measured_flags", "measuring_units", "meet_patterns",
           "nearest_assignment", "row_classes"]
