"""Panels of missing indicators: variables measured together (ehrdiff's default model, not in the EHRDiff paper).

Lab tests come in panels: in CinC 2012 a stay with ALT measured has AST measured in 99.8% of the training stays, a
blood gas gives PaO2, PaCO2 and pH together, an arterial line DiasABP, SysABP and MAP. The model learned each
variable's missing indicator as a Bernoulli column of its own, and its samples broke panels apart: ALT without AST
in 12% of synthetic stays against 0.2% of real ones, and trees told synthetic stays from real ones by which
variables were measured alone (AUROC 0.80; benchmarks/cinc_probe.py's missingness probe).

Here an indicator that agrees with an earlier one (its panel's leader) is modelled as its disagreement with the
leader, m XOR l: a rare 0/1 column, so that a member missing with its leader is what the model draws unless it
learned otherwise, and the sampled bit goes back through the same XOR. Agreeing means: the rows where the two differ
are at most ``MAX_DISAGREEMENT`` of the rows in the rarer state (measured or missing) of either column, so a
variable missing in 2% of the rows is not tied to one missing in 0.06% of them (CinC's Gender) merely because both
are nearly always there. The transform is exact and its own inverse (``m + l - 2 m l`` for 0/1 values), so
encoding, decoding, calibration and the declared rules see the indicators as they are; only the network and its
loss see the disagreements. Leaders are never members, and each member is tied to its leader directly (no chains),
so one pass either way suffices.
"""

from __future__ import annotations

import numpy as np

NO_PANELS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
# A member disagrees with its leader in at most this share of the rows in the rarer state of either (CinC 2012:
# liver tests 3-6%, blood gases and pressures under 3%, the basic labs 0-25%; Glucose, K, Mg and Urine, 30-85%, are
# left on their own).
MAX_DISAGREEMENT = 0.25


def find_panels(matrix: np.ndarray, indicators: np.ndarray,
                max_disagreement: float = MAX_DISAGREEMENT) -> tuple[np.ndarray, np.ndarray]:
    """(members, leaders): encoded indices of indicator columns and of the earlier indicator each one follows.
    Greedy in column order: an indicator joins the first leader it agrees with (module docstring), else leads a
    panel of its own. An indicator constant over the rows leads nothing and joins nothing (it carries no measuring
    pattern)."""
    flags = np.asarray(matrix)[:, indicators] >= 0.5
    shares = flags.mean(axis=0)
    rarer = np.minimum(shares, 1 - shares)            # each column's rarer state, measured or missing
    leaders: list[int] = []
    members, followed = [], []
    for k in range(len(indicators)):
        column = flags[:, k]
        if rarer[k] == 0:
            continue
        match = next((j for j in leaders
                      if np.mean(column != flags[:, j]) <= max_disagreement * min(rarer[k], rarer[j])), None)
        if match is None:
            leaders.append(k)
        else:
            members.append(int(indicators[k]))
            followed.append(int(indicators[match]))
    return np.array(members, dtype=np.int64), np.array(followed, dtype=np.int64)


def declared_panels(encoder, panels: dict[str, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(members, leaders) for the panels a private run declares (privacy/declared.py: panel name -> columns): the
    missing indicators the columns use (their own or the one they share), each panel's first in the encoding as
    the leader. Columns never missing have no indicator and leave their panel; ValueError, naming both, when one
    indicator is in two panels (columns that share their missing values belong to one panel)."""
    index = encoder.indicator_index()
    flag_of = {c.name: index[c.missing_with or c.name] for c in encoder.codings_
               if c.coding == "continuous" and c.has_missing}
    members, leaders, seen = [], [], {}
    for panel, columns in panels.items():
        flags = sorted({flag_of[name] for name in columns if name in flag_of})
        for flag in flags:
            if seen.setdefault(flag, panel) != panel:
                raise ValueError(f"panels '{seen[flag]}' and '{panel}' both hold columns missing in the same rows; "
                                 "declare them as one panel")
        members += flags[1:]
        leaders += flags[:1] * (len(flags) - 1)
    order = np.argsort(members, kind="stable")
    return np.array(members, dtype=np.int64)[order], np.array(leaders, dtype=np.int64)[order]


def panel_counts(panels: dict[str, list[str]], rules) -> list[tuple[str, str]]:
    """(leader, member) count columns of the declared ``panels``: a variable's count is the column of the count
    rule whose group holds one of the panel's columns (the rules a table declares, data/rules.py); the panel's first
    counted variable in file order leads."""
    count_of = {name: r.column for r in rules if r.kind == "count" for name in r.group}
    pairs = []
    for columns in panels.values():
        counts = list(dict.fromkeys(count_of[c] for c in columns if c in count_of))
        pairs += [(counts[0], member) for member in counts[1:]]
    return pairs


def counted_pair(frame, leader: str, member: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A panel pair's counts (missing as 0) and the rows counting both above 0: the rows whose equal counts a
    private release measures and its sampling sets (count ties)."""
    a, b = (frame[c].to_numpy(dtype=float, na_value=0.0) for c in (leader, member))
    return a, b, np.flatnonzero((a > 0) & (b > 0))


def disagreement_shares(shares: np.ndarray, members: np.ndarray, leaders: np.ndarray) -> np.ndarray:
    """Each encoded column's share of ones with the members as their disagreement with the leader, from one-way
    shares alone (a private model's noisy ones): |p_member - p_leader|, the fewest disagreements those shares
    allow, which a panel measured together is near."""
    out = np.array(shares, dtype=np.float64, copy=True)
    out[members] = np.abs(out[members] - out[leaders])
    return out


def xor_panels(x, members, leaders):
    """A copy of ``x`` (numpy array or torch tensor, rows x encoded columns) with each member column replaced by
    its XOR with its leader: into the model's space and, applied again, back out of it."""
    out = x.clone() if hasattr(x, "clone") else np.array(x, copy=True)
    if len(members):
        m, lead = x[:, members], x[:, leaders]
        out[:, members] = m + lead - 2 * m * lead
    return out


def panels_to_names(columns: list[str], panels: tuple[np.ndarray, np.ndarray]) -> list[list[str]]:
    """[[member, leader], ...] by encoded column name (``columns``), as model.json keeps them."""
    return [[columns[m], columns[lead]] for m, lead in zip(*panels)]


def panels_from_names(columns: list[str], indicators: np.ndarray, pairs) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`panels_to_names`; ValueError unless each pair names two indicator columns, the
    leader before its member, and no leader is itself a member."""
    index = {columns[i]: int(i) for i in indicators}
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and all(n in index for n in p)
                                              for p in pairs):
        raise ValueError("a list of [member, leader] pairs of missing-indicator columns")
    members = np.array([index[m] for m, _ in pairs], dtype=np.int64)
    leaders = np.array([index[lead] for _, lead in pairs], dtype=np.int64)
    if len(set(members.tolist())) != len(members) or set(members.tolist()) & set(leaders.tolist()) \
            or np.any(leaders >= members):
        raise ValueError("each member once, after its leader, and no leader a member")
    return members, leaders


__all__ = ["MAX_DISAGREEMENT", "NO_PANELS", "counted_pair", "declared_panels", "disagreement_shares", "find_panels",
           "panel_counts", "panels_from_names", "panels_to_names", "xor_panels"]
