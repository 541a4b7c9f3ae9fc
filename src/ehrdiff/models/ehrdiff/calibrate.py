"""EHRDiff's side of prevalence calibration (``code_prevalence="data"``, ehrdiff.diffusion.calibration): the
prevalences a model keeps, the scores that choose the swaps, and each chunk's targets.

The prevalences are the training rows' share of ones per code column, noisy under DP (the one-way marginals the
release already pays for), saved in model.json as ``code_prevalence``. A code's score is the Bernoulli head's
prior log-odds F_i at the sampler's last noise level, given the sampled row with that level's noise: for the ideal
denoiser logit P(x0_i = 1 | x) = F_i + (x_i - 1/2) / sigma^2 and x_i's noise is independent of the other columns,
so F_i is the log-odds of code i given the rest of the row (ehrdiff.diffusion.bernoulli).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import ndtri

from ehrdiff.data.encoding import NORMAL_TAIL
from ehrdiff.data.rules import Summary, project
from ehrdiff.data.table import Table
from ehrdiff.diffusion.bernoulli import BernoulliDenoiser
from ehrdiff.diffusion.calibration import code_targets, swap_to_targets
from ehrdiff.diffusion.cooccurrence import match_pairs
from ehrdiff.diffusion.count_matching import split_counts
from ehrdiff.diffusion.panels import counted_pair
from ehrdiff.errors import EhrdiffError
from ehrdiff.models.persistence import ModelMetadata
from ehrdiff.privacy.release import edge_levels, present_counts
from ehrdiff.training import resolve_device


# Below this many training rows "auto" calibrates: on such tables the model holds little beyond the prevalences it
# starts from (on the 80-patient MIMIC demos the held-out stopping rule keeps its first weights), so its rows are
# close to independent draws, whose own noise blurs each prevalence (sd sqrt(p(1 - p) / n)); calibrating removes it
# (MIMIC-IV demo, 3 seeds: prevalence Spearman 1.000 instead of 0.798, no copied rows, membership inference
# 0.495; benchmarks/results/default_training.md).
SMALL_TABLE_ROWS = 1000


def calibrates(model) -> bool:
    """Whether ``model``'s samples are calibrated: setting ``code_prevalence`` ("auto": for a private model or one
    trained on fewer than SMALL_TABLE_ROWS rows), a Bernoulli head and kept prevalences; EhrdiffError when "data"
    is asked of a model that cannot."""
    setting = model.config.sampling.code_prevalence
    if setting == "model":
        return False
    able = getattr(model, "code_prevalence_", None) is not None and isinstance(model.denoiser_, BernoulliDenoiser)
    if setting == "data" and not able:
        raise EhrdiffError("code_prevalence='data' needs a model with the Bernoulli head (binary_head='bernoulli') "
                           "that keeps its code prevalences (trained by this version); use 'model'")
    return able and (setting == "data" or bool(model.config.privacy.dp) or model.n_rows_ < SMALL_TABLE_ROWS)


def calibrates_values(model) -> bool:
    """Whether ``model``'s continuous columns are calibrated (``calibrate_values``): unless ``continuous_marginals``
    is "model", when they are scaled by their quantiles (the default preset's "normal", every private model), so
    that the model keeps their distributions; EhrdiffError when "data" is asked of a model whose continuous
    columns are all min-max scaled (a column of one value is min-max scaled in any model and left as it is)."""
    setting = model.config.sampling.continuous_marginals
    if setting == "model":
        return False
    columns = [c for c in model.encoder_.codings_ if c.coding == "continuous" and c.kind == "continuous"]
    kept = any(c.uses_knots for c in columns)
    if setting == "data" and columns and not kept:
        raise EhrdiffError("continuous_marginals='data' needs continuous columns scaled by their quantiles "
                           "(continuous_scaling 'quantile' or 'normal'); use 'model'")
    return kept


def calibrate_values(encoder, matrix: np.ndarray, labels: np.ndarray | None = None,
                     class_marginals: dict[str, list] | None = None, seed: int = 0, panels=None) -> np.ndarray:
    """``matrix`` (sampled rows, encoded) with each quantile-scaled continuous column's values, among the rows where
    it is present, replaced in their own order by evenly spread levels, (rank + 1/2) / n (through Phi^-1 for
    "normal" scaling): decoded, the column follows the distribution the model keeps (the training quantiles, the
    noisy histogram under DP: post-processing), while the order of the rows, which carries what the model learned
    between columns, is unchanged. With ``class_marginals`` (a private conditional model's noisy histograms per
    class) and the rows' class indices ``labels``, each class's rows are calibrated to its own histogram, missing
    share first (indicators set or cleared at random rows of the class; a panel member's, given ``panels``, first
    at rows where that makes it agree with its leader, set before it), then values."""
    out = np.array(matrix, dtype=np.float64, copy=True)
    starts = np.cumsum([0] + [c.width for c in encoder.codings_])
    indicator = encoder.indicator_index()
    columns = [(c, int(s)) for c, s in zip(encoder.codings_, starts)
               if c.coding == "continuous" and c.kind == "continuous" and c.uses_knots]
    per_class = class_marginals if class_marginals and labels is not None else {}
    n_classes = max((len(h) for h in per_class.values()), default=0)
    class_rows = [labels == k for k in range(n_classes)]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xCA1C]))
    leader_of = dict(zip(*panels)) if panels is not None else {}
    for c, _ in columns:               # the missing shares first: a shared indicator decides its followers' rows
        if c.own_indicator and c.name in per_class:
            flag = indicator[c.name]
            leader = out[:, leader_of[flag]] if flag in leader_of else None
            for rows, counts in zip(class_rows, per_class[c.name]):
                total = float(np.sum(counts))
                _set_missing_share(out[:, flag], rows, counts[-1] / total if total > 0 else 0.0, rng, leader)
    everyone = [(np.ones(len(out), bool), None)]
    for c, s in columns:
        present = out[:, indicator[c.missing_with or c.name]] < 0.5 if c.has_missing else np.ones(len(out), bool)
        for rows, counts in zip(class_rows, per_class[c.name]) if c.name in per_class else everyone:
            where = rows & present
            values = out[where, s]
            if not values.size:
                continue
            levels = (np.argsort(np.argsort(values, kind="stable"), kind="stable") + 0.5) / values.size
            if counts is not None:
                levels = _class_levels(c, counts, levels)
            out[where, s] = ndtri(np.clip(levels, NORMAL_TAIL, 1 - NORMAL_TAIL)) if c.scaling == "normal" else levels
    return out.astype(matrix.dtype, copy=False)


# rounds of "repair the declared rules, then calibrate again" (settle_values): each round leaves the next repair
# less to move; with four the CinC 2012 default model's continuous KS after the final repair was 0.006, a single
# repair leaving 0.013 (benchmarks/results/default_training.md at commits 830de3b and d1e6089, six seeds)
SETTLE_ROUNDS = 4


def settle_values(encoder, matrix: np.ndarray, rules: tuple, labels: np.ndarray | None = None,
                  class_marginals: dict[str, list] | None = None, seed: int = 0,
                  ties: dict[str, list[float]] | None = None, panels=None) -> np.ndarray:
    """A calibrated ``matrix`` whose rows are made to keep the declared ``rules`` and calibrated again, for
    SETTLE_ROUNDS rounds or until no row breaks a rule. The sampler's repair of the rules (models/base.py
    keep_rules) moves values that are out of place, and with them the distributions calibration had put right
    (clipping first values into [min, max] crowds them towards the middle; swapping a minimum above its maximum
    lowers the minima); calibrating again moves each column's values back in their own order, which breaks fewer
    rows, so the repair after the last round moves far less. Both steps are post-processing of the model's rows.
    ``ties`` (``tie_shares``): then the summaries of each summary rule's rows of 3 values or more are made exactly
    equal where real ones are, in the training shares, at the rows nearest to it (``Summary.snap_ties``), and
    repaired once more."""
    for _ in range(SETTLE_ROUNDS if rules else 0):
        table = encoder.inverse_transform(matrix)
        frame, changed = project(table.frame, rules)
        if not changed.any():
            break
        matrix = calibrate_values(encoder, _encoded(encoder, frame, table, matrix.dtype), labels, class_marginals,
                                  seed, panels)
    if ties:        # last: calibrating moves tied columns apart, each by its own quantiles
        table = encoder.inverse_transform(matrix)
        frame = project(table.frame, rules)[0]     # repaired first: the repair makes ties of its own (n = 3)
        for rule in rules:
            if rule.kind == "summary" and rule.count in ties:
                rule.snap_ties(frame, ties[rule.count])
        matrix = _encoded(encoder, project(frame, rules)[0], table, matrix.dtype)
    return matrix


def tie_counts(frame, count_ties: dict[str, list]) -> None:
    """Each member count of ``count_ties`` (member -> [leader, share]) set, in place, to its leader's in rows that
    counted both until that share of them are equal: the rows where the two are nearest first (relative to the
    larger), so the counts move least. On decoded rows, before the sampler keeps the rules (a row's summaries then
    follow its new count): encoded again, unrounded values such as a mean of two would come back a few 1e-9 off."""
    for member, (leader, share) in count_ties.items():
        if member not in frame or leader not in frame:
            continue
        a, b, both = counted_pair(frame, leader, member)
        equal = a[both] == b[both]
        wanted = int(round(share * len(both))) - int(equal.sum())
        if wanted <= 0:
            continue
        distance = np.where(equal, np.inf, np.abs(a[both] - b[both]) / np.maximum(a[both], b[both]))
        rows = both[np.argsort(distance, kind="stable")[:wanted]]
        frame.loc[frame.index[rows], member] = frame[leader].to_numpy()[rows]


def checked_count_ties(metadata: ModelMetadata, rules: tuple) -> dict[str, list] | None:
    """model.json's ``count_ties`` (absent: None), refused unless each pairs two count columns of count rules with a
    share in [0, 1]."""
    value: Any = metadata.typed("count_ties", dict, "an object of [leader, share] per member count", optional=True)
    if value is None:
        return None
    counts = {r.column for r in rules if r.kind == "count"}
    for name, tie in value.items():
        if not (name in counts and isinstance(tie, list) and len(tie) == 2 and tie[0] in counts and tie[0] != name
                and isinstance(tie[1], (int, float)) and not isinstance(tie[1], bool) and 0 <= tie[1] <= 1):
            raise metadata.invalid("count_ties", "for a count column of a count rule, [another count column, a "
                                   "share between 0 and 1]", {name: tie})
    return value


def _encoded(encoder, frame, drawn: Table, dtype) -> np.ndarray:
    """``frame`` (``drawn`` repaired) encoded again; a repair that empties a column the model never leaves empty
    keeps the drawn value there (keep_rules decides in the end)."""
    for c in encoder.codings_:
        if c.coding == "continuous" and not c.has_missing:
            frame[c.name] = frame[c.name].fillna(drawn.frame[c.name])
    return encoder.transform(Table(frame, drawn.kinds), dtype=dtype)


def tie_shares(frame, rules: tuple) -> dict[str, list[float]] | None:
    """What model.json keeps for settle_values' ties (models without DP): each summary rule's tie shares in the
    training rows (``Summary.tie_shares``), by its count column; None when no rule has enough rows."""
    shares = {r.count: s for r in rules if r.kind == "summary" and (s := r.tie_shares(frame)) is not None}
    return shares or None


def checked_tie_shares(metadata: ModelMetadata, rules: tuple) -> dict[str, list[float]] | None:
    """model.json's ``tie_shares`` (absent: None), refused unless each names the count column of a summary rule
    and holds one share in [0, 1] per tie (``Summary.TIES``)."""
    value: Any = metadata.typed("tie_shares", dict, "an object of shares per summary rule", optional=True)
    if value is None:
        return None
    counts = {r.count for r in rules if r.kind == "summary"}
    for name, shares in value.items():
        if not (name in counts and isinstance(shares, list) and len(shares) == len(Summary.TIES) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in shares)):
            raise metadata.invalid("tie_shares", "for the count column of a summary rule, one share between 0 and "
                                   f"1 per tie ({len(Summary.TIES)})", {name: shares})
    return value


def _set_missing_share(flags: np.ndarray, rows: np.ndarray, share: float, rng: np.random.Generator,
                       leader: np.ndarray | None = None) -> None:
    """Indicators (in place) of ``rows`` set or cleared at random rows until round(share x rows) are missing; with
    a panel ``leader``'s indicators, first at the rows where the change makes the two agree."""
    where = np.flatnonzero(rows)
    missing = flags[where] >= 0.5
    change = int(round(share * len(where))) - int(missing.sum())
    pool = where[~missing] if change > 0 else where[missing]
    if leader is None:
        flags[rng.choice(pool, size=min(abs(change), len(pool)), replace=False)] = 1.0 if change > 0 else 0.0
        return
    pool = rng.permutation(pool)       # then, stably, the rows where the change agrees with the leader first
    pool = pool[np.argsort((leader[pool] >= 0.5) != (change > 0), kind="stable")]
    flags[pool[:abs(change)]] = 1.0 if change > 0 else 0.0


def _class_levels(c, counts, u: np.ndarray) -> np.ndarray:
    """Levels u of a class's noisy histogram (its bins, then missing) as levels of the column's coding: the bin and
    the position inside it that u falls on, then the coding's levels at that bin's edges (its knot_low)."""
    cdf = edge_levels(present_counts(c, counts))
    if cdf is None:
        return u
    b = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, len(cdf) - 2)
    t = np.clip((u - cdf[b]) / np.maximum(cdf[b + 1] - cdf[b], 1e-12), 0.0, 1.0)
    edges = np.asarray(c.knot_low, dtype=np.float64)
    return edges[b] + t * (edges[b + 1] - edges[b])


def checked_class_marginals(metadata: ModelMetadata, encoder, condition) -> dict[str, list] | None:
    """model.json's ``class_marginals`` (absent: None), refused unless each names a quantile-scaled continuous
    column and holds, per class of the condition, one count per knot interval and one for missing values."""
    value: Any = metadata.typed("class_marginals", dict, "an object of per-class histograms", optional=True)
    if value is None:
        return None
    codings = {c.name: c for c in encoder.codings_}
    n_classes = len(condition.classes) if condition is not None else 0
    for name, per_class in value.items():
        c = codings.get(name)
        cells = len(c.knot_low) if c is not None else 0
        if not (c is not None and c.coding == "continuous" and c.uses_knots and isinstance(per_class, list)
                and len(per_class) == n_classes and all(
                    isinstance(h, list) and len(h) == cells and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in h)
                    for h in per_class)):
            raise metadata.invalid("class_marginals", f"for column '{name}', {n_classes} lists of {cells} counts "
                                   ">= 0 (a quantile-scaled continuous column of a conditional model)", per_class)
    return value


def chunk_targets(prevalence: np.ndarray, code_plans: list) -> list[np.ndarray | None]:
    """Per chunk of a sample, the ones wanted per code column: with count matching the whole sample's total of codes
    is known before sampling (rows per number of codes), so the whole sample's targets are apportioned once and split
    over the chunks (a rare code is not rounded away in every chunk); without it None (each chunk's own total)."""
    totals = []
    for codes in code_plans:
        parts = codes if isinstance(codes, list) else [codes]
        if any(p is None for p in parts):
            return [None] * len(code_plans)
        totals.append(sum(int(np.dot(np.arange(len(p)), p)) for p in parts))
    return split_counts(code_targets(prevalence, sum(totals)), totals)


def calibrate(model, matrix: np.ndarray, labels: np.ndarray | None, targets: np.ndarray | None,
              seed: int) -> np.ndarray:
    """``matrix`` (sampled rows, encoded) with its code columns swapped to ``targets`` (None: the model's
    prevalences apportioned to the rows' own total of codes)."""
    codes = model.encoder_.code_columns()
    current = matrix[:, codes] >= 0.5
    total = int(current.sum())
    if targets is None:
        targets = code_targets(model.code_prevalence_, total)
    elif int(np.sum(targets)) != total:     # count matching gave a rare tail its nearest count: the plan's total is off
        targets = code_targets(targets, total)
    scores = code_scores(model, matrix, labels, seed)[:, codes]
    out = matrix.copy()
    out[:, codes] = swap_to_targets(current, scores, targets)
    return out


def code_scores(model, matrix: np.ndarray, labels: np.ndarray | None, seed: int) -> np.ndarray:
    """The network's prior log-odds F (every encoded column) of each row noised at the sampler's last level."""
    sampling = model.config.sampling
    device = resolve_device(model.config.device)
    denoiser = model.denoiser_.to(device)
    generator = torch.Generator(device=device).manual_seed(
        int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xCA1B]).generate_state(1)[0]))
    sigma = torch.tensor(sampling.sigma_min, dtype=torch.float64, device=device)
    out, batch = [], model.config.sample_batch_size
    with torch.inference_mode():
        for start in range(0, len(matrix), batch):
            x = torch.from_numpy(np.ascontiguousarray(matrix[start:start + batch])).to(device, torch.float64)
            x = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
            classes = None if labels is None else torch.from_numpy(labels[start:start + batch]).to(device)
            out.append(denoiser(x, sigma, classes, raw=True).to("cpu", torch.float64).numpy())
    return np.concatenate(out) if out else np.zeros((0, matrix.shape[1]))


def code_prevalence(shares: np.ndarray, codes: np.ndarray) -> list[float] | None:
    """What model.json keeps: each code column's share of ones (None without code columns)."""
    return [float(v) for v in np.clip(shares[codes], 0.0, 1.0)] if codes.size else None


def checked_prevalence(metadata: ModelMetadata, n_codes: int) -> list[float] | None:
    """model.json's ``code_prevalence`` (None when absent: files from before calibration), refused unless it is
    one share in [0, 1] per code column."""
    value: Any = metadata.typed("code_prevalence", list, "a list of shares", optional=True)
    if value is None:
        return None
    if len(value) != n_codes or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                                        for v in value):
        raise metadata.invalid("code_prevalence", f"{n_codes} shares between 0 and 1 (one per code column)", value)
    return [float(v) for v in value]


def meet_pairs(model, matrix: np.ndarray, labels: np.ndarray | None, seed: int) -> np.ndarray:
    """``matrix`` (sampled rows, encoded, prevalences calibrated) with codes swapped between rows (of one class,
    given ``labels``) towards the pair counts a private model keeps, scaled to these rows
    (ehrdiff.diffusion.cooccurrence); as it is for a model that keeps none."""
    pairs = getattr(model, "code_pairs_", None)
    if not pairs or not len(matrix):
        return matrix
    codes = model.encoder_.code_columns()
    wanted = np.asarray(pairs["counts"], dtype=np.float64) * (len(matrix) / max(model.n_rows_, 1))
    out = matrix.copy()
    out[:, codes] = match_pairs(matrix[:, codes], np.asarray(pairs["codes"]), wanted, labels, seed)
    return out


def checked_pairs(metadata: ModelMetadata, n_codes: int) -> dict[str, Any] | None:
    """model.json's ``code_pairs`` (absent: None), refused unless it names distinct code columns and holds one
    non-negative count per (named code, code column)."""
    value: Any = metadata.typed("code_pairs", dict, "an object of codes and counts", optional=True)
    if value is None:
        return None
    codes, counts = value.get("codes"), value.get("counts")
    fits = isinstance(codes, list) and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < n_codes
                                           for c in codes) and len(set(codes)) == len(codes) and \
        isinstance(counts, list) and len(counts) == len(codes) and all(
            isinstance(row, list) and len(row) == n_codes and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in row) for row in counts)
    if not fits:
        raise metadata.invalid("code_pairs", f"distinct code columns (0 .. {n_codes - 1}) and, for each, "
                               f"{n_codes} non-negative counts", {"codes": codes})
    return value


__all__ = ["SMALL_TABLE_ROWS", "calibrate", "calibrate_values", "calibrates", "calibrates_values",
           "checked_class_marginals", "checked_count_ties", "checked_pairs", "checked_prevalence",
           "checked_tie_shares", "chunk_targets", "code_prevalence", "code_scores", "meet_pairs", "settle_values",
           "tie_counts", "tie_shares"]
