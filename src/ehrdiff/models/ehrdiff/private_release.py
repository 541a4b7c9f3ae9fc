"""What a private EHRDiff (``dp=True``) keeps about its training rows, all of it under one budget.

Before DP-SGD runs, the statistics the model needs besides its weights are released with noise
(ehrdiff.privacy), each with a fixed share of the target epsilon:

  continuous bounds     BOUNDS_SHARE (only for columns without a declared range, ``dp_bounds``)
  one-way marginals     ``dp_marginals_share`` (default 0.85): the encoder's categories, medians and missing
                        indicators, the number of rows (which sets DP-SGD's sampling rate and an epoch's steps),
                        the Bernoulli head's starting bias, a condition's class counts and the code prevalences
                        that sampling calibrates to (``code_prevalence``, ehrdiff.diffusion.calibration)
  recording grids       GRID_SHARE (only for continuous columns with a declared step of at most GRID_CELLS
                        values): a noisy count of each recordable value; those that clear the noise keep
                        their share of their bin (heaps such as FiO2 1.0 and SaO2 98 come out where they are)
  panel count ties      COUNT_TIES_SHARE (only with declared panels and count rules): for each variable of a
                        panel and the panel's first, the rows that measured both and those of them with equal
                        counts (one lab order, one device: 92-99 % of the CinC stays), which sampling meets by
                        giving the member its leader's count (calibrate.py ``tie_counts``, on the decoded rows)
  codes per row         HISTOGRAM_SHARE: the histogram of codes per row (per class of a condition) that count
                        matching follows and the floor on codes per row (``min_codes``) comes from
  second moments        ``dp_prior_share`` (default 0.3; only with two or more normal-scaled continuous
                        columns): their noisy second moment (missing values as 0, each row clipped to norm
                        sqrt(columns)), whose PRIOR_RANK leading eigencomponents become the denoiser's Gaussian
                        prior (diffusion/gaussian_prior.py): the relations between columns DP-SGD does not learn
  measured pairs        ``dp_tree_share`` (default 0.1; only with two or more measuring units: missing
                        indicators, a declared panel's as one): the rows measuring each pair of units, whose
                        Chow-Liu tree (with each unit's missing shares per class from the marginals) gives the
                        sampled rows their measuring patterns (patterns.py): what is measured together
  code pairs            ``dp_pairs_share`` (default 0.3; 0: not released): how many rows hold both of a pair of
                        codes, for each of the PAIR_CODES commonest codes (by the noisy marginals) with every code,
                        which sampling meets by swapping codes between rows (ehrdiff.diffusion.cooccurrence)

DP-SGD then gets the least noise that keeps the composed total within the target (``Ledger.remaining``). A share
is what the mechanism would spend alone; under Renyi composition the shares of epsilon do not add up (privacy loss
grows about as the square root of the summed squared inverse noise), so the marginals' 0.5 costs DP-SGD little: on
UCI diabetes at epsilon 1 its noise multiplier goes from 3.20 (share 0.05) to 3.66 while the marginals' noise falls
from 277 to 33 rows (benchmarks/results/private_budget_split.md).
model.json keeps no fingerprint of the data; the checkpoints' identity uses a hash of the released statistics.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.special import ndtri

from ehrdiff.data.encoding import NORMAL_TAIL, TableEncoder
from ehrdiff.data.table import Table
from ehrdiff.diffusion.cooccurrence import PAIR_CODES, pair_counts
from ehrdiff.diffusion.gaussian_prior import low_rank_correlation
from ehrdiff.diffusion.panels import counted_pair, panel_counts
from ehrdiff.errors import DataError, EhrdiffError
from ehrdiff.models.ehrdiff.conditioning import ConditionSpec, split_condition
from ehrdiff.models.ehrdiff.patterns import fit_tree, measured_flags, measuring_units
from ehrdiff.privacy.accounting import Ledger, Mechanism
from ehrdiff.privacy.declared import read_declarations
from ehrdiff.privacy.release import PrivateRelease, contribution_weights, private_encoder
from ehrdiff.privacy.secret import noise_generator

BOUNDS_SHARE, HISTOGRAM_SHARE, GRID_SHARE, COUNT_TIES_SHARE = 0.05, 0.02, 0.1, 0.05
PRIOR_RANK = 30                # eigencomponents the prior keeps at most
PATTERN_NOISE = 0.05           # measured pairs are released only when their noise (sd) is at most this share of rows
PRIOR_MECHANISM, TREE_MECHANISM = "second moments", "measured pairs"   # given up when DP-SGD has no room
COUNT_TIES_THRESHOLD = 3.0     # a pair's noisy rows measuring both below this many noise deviations: no share
HISTOGRAM_THRESHOLD = 2.0      # noisy rows per number of codes below this many noise deviations count as none
PAIR_CONTRIBUTION = 16         # pair counts a row adds to in full; a row in more is weighted down (L2 <= 4)


@dataclass
class PrivateInputs:
    """What fit() trains on and keeps, under DP: all of it noised, declared, or computed from the noised."""

    encoder: TableEncoder          # the features' encoder (without the condition column)
    matrix: np.ndarray             # the features, encoded
    labels: np.ndarray | None      # class index per row (a condition)
    condition: ConditionSpec | None
    shares: np.ndarray             # each encoded column's noisy mean (the Bernoulli head's starting bias)
    code_histograms: dict[str, Any] | None
    release: PrivateRelease
    code_pairs: dict[str, Any] | None = None
    count_ties: dict[str, list] | None = None
    prior: dict[str, Any] | None = None     # the Gaussian prior: columns, loadings, diagonal
    patterns: dict[str, Any] | None = None  # the measuring units' Chow-Liu tree (patterns.py)

    @property
    def n_rows(self) -> int:
        return self.release.n_rows

    def fingerprint(self) -> str:
        """A hash of what was released (not of the rows): the checkpoints' identity of the data."""
        prior = {k: np.round(np.asarray(v, dtype=float), 6).tolist() for k, v in self.prior.items()} \
            if self.prior else None
        text = json.dumps([self.encoder.to_dict(), self.release.to_dict(), self.code_histograms, self.code_pairs,
                           self.count_ties, prior, self.patterns],
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def drop_optional(self) -> str | None:
        """Give up the measuring tree, or else the Gaussian prior, with its mechanism (nothing of it released yet);
        the mechanism's name, or None when neither is left."""
        if self.patterns is not None:
            self.patterns, name = None, TREE_MECHANISM
        elif self.prior is not None:
            self.prior, name = None, PRIOR_MECHANISM
        else:
            return None
        self.release.ledger.withdraw(name)
        return name

    def sgd(self, batch_size: int, steps: int, max_grad_norm: float) -> Mechanism:
        """DP-SGD's mechanism: sampling rate batch / the noisy row count, the noise the budget leaves."""
        from ehrdiff.models.ehrdiff.private import sample_rate

        rate = sample_rate(batch_size, self.n_rows)
        return self.release.ledger.remaining("DP-SGD", max_grad_norm, rate, steps)


def private_inputs(table: Table, privacy, condition: str | None, seed: int, scaling: str = "quantile",
                   count_rules: tuple = ()) -> PrivateInputs:
    """The private release of ``table`` for EHRDiff with ``privacy`` settings (config.PrivacySettings);
    ``scaling`` "normal": continuous columns as the standard normal quantiles of their noisy levels;
    ``count_rules``: declared count rules built into the encoding (release.share_count_group)."""
    if privacy.dp_tail_floor > 0 and condition is None:
        raise EhrdiffError("dp_tail_floor applies to a conditional private model (its per-class histograms of the "
                           "continuous columns): add a condition (--condition COLUMN), or leave dp_tail_floor at 0")
    ledger = Ledger(privacy.dp_epsilon, privacy.dp_delta, privacy.dp_accountant)
    declarations = read_declarations(privacy.dp_bounds, table)
    release = private_encoder(table, ledger, declarations, BOUNDS_SHARE, privacy.dp_marginals_share, seed,
                              count_rules, condition, GRID_SHARE, privacy.dp_tail_floor)
    if scaling == "normal":
        release = as_normal(release)
    encoder, matrix, labels, spec = release.encoder, release.matrix, None, None
    if condition is not None:
        encoder, matrix, labels, spec = _split(release, table, condition)
    histograms = _code_histograms(encoder, matrix, labels, spec, ledger, seed)
    shares = release.encoded_shares(encoder)
    pairs = _code_pairs(encoder, matrix, shares, ledger, privacy.dp_pairs_share, seed) \
        if privacy.dp_pairs_share > 0 else None
    ties = _count_ties(table, release.declarations, ledger, seed)
    prior = _gaussian_prior(encoder, matrix, ledger, release.n_rows, privacy.dp_prior_share, seed) \
        if scaling == "normal" else None
    patterns = _measured_pairs(encoder, matrix, release, spec, ledger, privacy.dp_tree_share, seed)
    return PrivateInputs(encoder, matrix, labels, spec, shares, histograms, release, pairs, ties, prior, patterns)


def class_marginals(inputs: PrivateInputs) -> dict[str, list] | None:
    """What model.json keeps of the per-class histograms (continuous columns of a conditional model, noisy):
    column -> one list of counts per class (the bins, then missing), which sampling calibrates each class to."""
    if inputs.condition is None:
        return None
    kept = {c.name: inputs.release.marginals[c.name].by_class.tolist() for c in inputs.encoder.codings_
            if c.name in inputs.release.marginals and inputs.release.marginals[c.name].by_class is not None}
    return kept or None


def as_normal(release: PrivateRelease) -> PrivateRelease:
    """``release`` with its level-scaled continuous columns through Phi^-1 ("normal" codings with the same knots,
    the median at 0): the default preset's representation, whose marginal an untrained denoiser's prior is near."""
    codings, matrix, j = [], release.matrix.copy(), 0
    for c in release.encoder.codings_:
        if c.coding == "continuous" and c.scaling == "quantile":
            matrix[:, j] = ndtri(np.clip(matrix[:, j], NORMAL_TAIL, 1 - NORMAL_TAIL))
            c = replace(c, scaling="normal", fill=0.0)
        codings.append(c)
        j += c.width
    encoder = TableEncoder("normal")
    encoder.codings_ = codings
    return replace(release, encoder=encoder, matrix=matrix)


def _split(release: PrivateRelease, table: Table, column: str):
    """The condition column taken out of the private encoder: its kept categories are the classes, the noisy
    counts their counts, each row's (mapped) value its class."""
    full = release.encoder
    coding = next(c for c in full.codings_ if c.name == column) if column in table.kinds else None
    if coding is None or coding.coding not in ("binary", "onehot"):
        split_condition(table, column)        # the one-line error for a missing or continuous column
    starts = np.cumsum([0] + [c.width for c in full.codings_])
    j = [c.name for c in full.codings_].index(column)
    block = release.matrix[:, starts[j]:starts[j + 1]]
    if coding.coding == "binary":
        classes, labels = [0, 1], block[:, 0].round().astype(np.int64)
    else:
        classes, labels = list(coding.categories), block.argmax(axis=1).astype(np.int64)
    if len(classes) < 2:
        raise DataError(f"condition column '{column}': only {len(classes)} class clears the privacy noise; declare "
                        "its classes in --bounds FILE (e.g. {\"" + column + "\": {\"categories\": [0, 1]}}) or "
                        "raise --epsilon")
    keep = np.r_[0:starts[j], starts[j + 1]:release.matrix.shape[1]]
    encoder = TableEncoder("minmax")
    encoder.codings_ = [c for c in full.codings_ if c.name != column]
    split_condition(table, column)     # the same checks as a non-private model (one value, too many classes)
    spec = ConditionSpec(column, table.kinds[column], str(table.frame[column].dtype), table.columns.index(column),
                         classes, release.class_counts(column, classes))
    return encoder, np.ascontiguousarray(release.matrix[:, keep]), labels, spec


def _code_histograms(encoder: TableEncoder, matrix: np.ndarray, labels: np.ndarray | None,
                     spec: ConditionSpec | None, ledger: Ledger, seed: int) -> dict[str, Any] | None:
    """Noisy rows per number of codes (per class): each row is in one (class, count) cell, sensitivity 1."""
    codes = encoder.code_columns()
    if not codes.size:
        return None
    mechanism = ledger.gaussian("codes per row", 1.0, HISTOGRAM_SHARE)
    sd = mechanism.noise_multiplier * mechanism.sensitivity
    rng = noise_generator(seed, 0xC0C0)
    counts = matrix[:, codes].sum(axis=1).round().astype(np.int64)
    classes = spec.n_classes if spec is not None else 1
    cells = np.zeros((classes, codes.size + 1))
    np.add.at(cells, (labels if spec is not None else np.zeros(len(counts), np.int64), counts), 1)
    noisy = cells + rng.normal(0, sd, cells.shape)
    noisy = np.where(noisy > HISTOGRAM_THRESHOLD * sd, np.round(noisy), 0).astype(np.int64)
    if not noisy.sum(axis=0).any():
        return None            # nothing clears the noise: no count matching
    for row in noisy:          # a class without any cell above the noise: its rows as the model draws them
        if not row.any():
            return None
    last = int(np.flatnonzero(noisy.sum(axis=0))[-1]) + 1
    noisy = noisy[:, :last]
    return {"all": noisy.sum(axis=0).tolist(), "by_class": noisy.tolist() if spec is not None else None}


def _count_ties(table: Table, declarations, ledger: Ledger, seed: int) -> dict[str, list] | None:
    """Noisy shares of equal counts in the declared panels: member count column -> [leader's, share]. A row adds at
    most one to each pair's two counts (rows measuring both, those with equal counts): L2 sensitivity sqrt(2 x
    pairs). A pair whose noisy rows measuring both do not clear COUNT_TIES_THRESHOLD deviations gets no share."""
    pairs = panel_counts(declarations.panels, table.rules)
    if not pairs or COUNT_TIES_SHARE <= 0:
        return None
    mechanism = ledger.gaussian("panel count ties", np.sqrt(2 * len(pairs)), COUNT_TIES_SHARE)
    sd = mechanism.noise_multiplier * mechanism.sensitivity
    rng = noise_generator(seed, 0x7135)
    out = {}
    for leader, member in pairs:
        a, b, both = counted_pair(table.frame, leader, member)
        measured, equal = len(both) + rng.normal(0, sd), np.sum(a[both] == b[both]) + rng.normal(0, sd)
        if measured > COUNT_TIES_THRESHOLD * sd:
            out[member] = [leader, round(float(np.clip(equal / measured, 0.0, 1.0)), 4)]
    return out or None


def _gaussian_prior(encoder: TableEncoder, matrix: np.ndarray, ledger: Ledger, n_rows: int, share: float,
                    seed: int) -> dict[str, Any] | None:
    """The Gaussian prior of the normal-scaled continuous columns (diffusion/gaussian_prior.py) from their noisy
    second moment: missing values as 0, each row clipped to norm c = sqrt(columns) (a declared constant, not the
    data's), so a row changes the moment's upper triangle by at most c^2 in L2; the noise is added there and
    mirrored. None with fewer than two such columns or a zero share."""
    columns = np.array([index for index, *_ in encoder.normal_stretches()], dtype=np.int64)
    if len(columns) < 2 or share <= 0:
        return None
    z = np.array(matrix[:, columns], dtype=np.float64)
    values, indicators = encoder.missing_pairs()
    where = {int(c): k for k, c in enumerate(columns)}
    for value, indicator in zip(values, indicators):
        if int(value) in where:
            z[matrix[:, indicator] >= 0.5, where[int(value)]] = 0.0
    clip = float(np.sqrt(len(columns)))
    z *= np.minimum(1.0, clip / np.maximum(np.linalg.norm(z, axis=1), 1e-12))[:, None]
    mechanism = ledger.gaussian(PRIOR_MECHANISM, clip ** 2, share)
    sd = mechanism.noise_multiplier * mechanism.sensitivity
    noise = np.triu(noise_generator(seed, 0x5EC0).normal(0.0, sd, (len(columns), len(columns))))
    moment = (z.T @ z + noise + np.triu(noise, 1).T) / max(n_rows, 1)
    loadings, diagonal = low_rank_correlation(moment, PRIOR_RANK)
    return {"columns": columns, "loadings": loadings, "diagonal": diagonal}


def _measured_pairs(encoder: TableEncoder, matrix: np.ndarray, release: PrivateRelease, spec: ConditionSpec | None,
                    ledger: Ledger, share: float, seed: int) -> dict[str, Any] | None:
    """The measuring units' Chow-Liu tree (patterns.py) from noisy counts of the rows measuring each pair of units;
    the rows per class and those measuring each unit per class come from the one-way marginals (their missing
    cells, per class: post-processing). A row measuring m of U units adds one to m (m - 1) / 2 pair counts: L2
    sensitivity sqrt(U (U - 1) / 2). None (nothing released) with fewer than two units, a unit without a marginal,
    a zero share, or noise above PATTERN_NOISE of the rows (the sd and the noisy row count are public)."""
    units = measuring_units(encoder, release.declarations.panels)
    if len(units) < 2 or share <= 0 or any(u[0] not in release.marginals for u in units):
        return None
    flags = measured_flags(encoder, matrix, units).astype(np.float64)
    n_units = len(units)
    mechanism = ledger.gaussian(TREE_MECHANISM, np.sqrt(n_units * (n_units - 1) / 2), share)
    sd = mechanism.noise_multiplier * mechanism.sensitivity
    if sd > PATTERN_NOISE * release.n_rows:     # the noise would draw the tree (CinC at epsilon 1): not released
        ledger.withdraw(mechanism.name)
        return None
    pair = np.triu(flags.T @ flags + noise_generator(seed, 0x9A77).normal(0, sd, (n_units, n_units)), 1)
    histograms = [release.marginals[u[0]] for u in units]       # the bins, then missing
    by_class = [m.by_class if spec is not None and m.by_class is not None else m.counts[None, :] for m in histograms]
    rows = by_class[0].sum(axis=1)
    single = np.stack([h[:, :-1].sum(axis=1) / np.maximum(h.sum(axis=1), 1e-9) * rows for h in by_class], axis=1)
    return fit_tree(units, rows, single, pair)


def _code_pairs(encoder: TableEncoder, matrix: np.ndarray, shares: np.ndarray, ledger: Ledger, share: float,
                seed: int) -> dict[str, Any] | None:
    """Noisy pair counts: for each of the PAIR_CODES commonest code columns (by the noisy shares: post-processing),
    the rows that hold it and each code column. A row holding a of those codes and c codes in all adds 1 to a * c
    counts; above PAIR_CONTRIBUTION it is weighted down (``contribution_weights``), so its L2 contribution is at
    most sqrt(PAIR_CONTRIBUTION). None with fewer than two code columns (no pair to count)."""
    codes = encoder.code_columns()
    if codes.size < 2:
        return None
    targets = np.sort(np.argsort(-shares[codes], kind="stable")[:PAIR_CODES])
    x = matrix[:, codes] >= 0.5
    weights = contribution_weights(x[:, targets].sum(axis=1) * x.sum(axis=1), PAIR_CONTRIBUTION)
    mechanism = ledger.gaussian("code pairs", np.sqrt(PAIR_CONTRIBUTION), share)
    sd = mechanism.noise_multiplier * mechanism.sensitivity
    rng = noise_generator(seed, 0xC0DE)
    counts = pair_counts(x, targets, weights)
    noisy = np.clip(counts + rng.normal(0, sd, counts.shape), 0, None)
    return {"codes": targets.tolist(), "counts": np.round(noisy, 1).tolist()}


__all__ = ["BOUNDS_SHARE", "COUNT_TIES_SHARE", "GRID_SHARE", "HISTOGRAM_SHARE", "PRIOR_RANK",
           "PrivateInputs", "private_inputs"]
