"""``mst``: MST (McKenna, Miklau and Sheldon 2021, "Winning the NIST Contest: A scalable and general approach to
differentially private synthetic data"), the private graphical-model baseline, behind the same interface as
``dp-marginals`` and with the same whole-release ledger (model.json ``dp_release``).

    pip install 'ehrdiff[mst]'      # the mbi package (private-pgm) and jax, for fitting only
    ehrdiff train data.parquet -o run/ --model mst --dp --epsilon 1 --delta 1e-5 [--bounds FILE]

Each column is a discrete variable: a binary column 0/1, a categorical or label column its kept categories, a
continuous or date column ``BINS`` equal bins of its declared or private range (plus "missing" when it keeps a
missing indicator), all from the private encoder (ehrdiff.privacy.release). The budget is a zCDP budget rho (the
largest Gaussian that spends epsilon at delta); after the private ranges, MST splits what is left in three:

1. one-way marginals: every column's noisy histogram (the release's Gaussian mechanism, codes' contributions
   bounded as there);
2. selection: d - 1 rounds of the exponential mechanism pick a maximum spanning tree of the columns, an edge
   scored by the L1 distance between its two-way marginal in the data and the one the noisy one-way marginals
   imply (independence; sensitivity 1), each round among the edges that join two components (Kruskal); each
   round is e^2 / 8-zCDP with e = sqrt(8 rho / 3 / (d - 1)), recorded as a Gaussian of the same Renyi DP;
3. two-way marginals of the tree's edges, with Gaussian noise (L2 sensitivity sqrt(d - 1)).

mbi's mirror descent fits a graphical model to the noisy measurements (``iters`` iterations), and model.json keeps
the fitted tree's two-way marginals, from which rows are drawn along the tree (root first, each column given its
parent); so loading and sampling do not need mbi.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from ehrdiff.data.table import Table
from ehrdiff.errors import DataError, EhrdiffError
from ehrdiff.models.base import as_table, check_sample_size, register
from ehrdiff.models.noisy_release import NoisyRelease, check_release_settings
from ehrdiff.privacy.accounting import Ledger, composed_epsilon, smallest_noise
from ehrdiff.privacy.declared import read_declarations
from ehrdiff.privacy.release import BINS, bin_of, point_in_bin, private_encoder
from ehrdiff.privacy.secret import noise_generator, noise_seed

log = logging.getLogger(__name__)


def require_mbi():
    """mbi (the ``mst`` extra), or one line saying how to install it."""
    try:
        import mbi
    except ImportError:
        raise EhrdiffError("--model mst needs the mbi package (private-pgm): pip install 'ehrdiff[mst]'") from None
    return mbi


@dataclass
class MSTConfig:
    dp: bool = True                  # always private; accepted so that ``--dp`` works as for EHRDiff
    dp_epsilon: float = 1.0          # target epsilon of the whole release
    dp_delta: float = 1e-5
    dp_accountant: str = "rdp"       # the selection enters the ledger by its Renyi DP: RDP only
    dp_bounds: str | None = None     # public ranges and categories (JSON, ehrdiff.privacy.declared)
    bounds_share: float = 0.05       # share of epsilon (alone) for ranges estimated privately
    iters: int = 1000                # mirror-descent iterations of the estimation
    seed: int = 0                    # not the noise's: the release, the selection and the pairs draw from a secret
                                     # seed (ehrdiff.privacy.secret); kept as every model's setting

    def validate(self) -> None:
        check_release_settings(self, "mst", 0.5)
        if self.dp_accountant != "rdp":
            raise EhrdiffError("mst composes its exponential mechanisms by Renyi DP: use the rdp accountant")
        if self.iters < 1:
            raise EhrdiffError(f"iters must be at least 1, got {self.iters!r}")


@register("mst")
class MST(NoisyRelease):
    """MST's private tree-structured graphical model (see the module docstring)."""

    config_class = MSTConfig

    def fit(self, data, *, checkpoint_dir=None, resume=False, progress=True) -> "MST":
        require_mbi()
        cfg = self.config
        table = as_table(data)
        declarations = read_declarations(cfg.dp_bounds, table)
        ledger = Ledger(cfg.dp_epsilon, cfg.dp_delta, cfg.dp_accountant)
        rho = _rho(cfg.dp_epsilon, ledger)
        needs_bounds = any(table.kinds[c] in ("continuous", "date") and c not in declarations.bounds
                           for c in table.columns)
        if needs_bounds:        # the same noise private_encoder will draw for the ranges
            z_bounds = smallest_noise(cfg.dp_epsilon * cfg.bounds_share, ledger.accountant_delta, [], 1.0, 1,
                                      ledger.accountant)
            rho -= 1 / (2 * z_bounds ** 2)
        third = rho / 3
        one_way = composed_epsilon([(1 / math.sqrt(2 * third), 1.0, 1)], ledger.accountant_delta, ledger.accountant)
        secret = noise_seed()       # the release's, the selection's and the pairs' noise: not cfg.seed (secret.py)
        release = private_encoder(table, ledger, declarations, cfg.bounds_share, one_way / cfg.dp_epsilon, secret)
        columns = [c for c in release.encoder.codings_ if c.coding != "id"]
        if len(columns) < 2:
            raise DataError("mst needs at least two columns to model (use dp-marginals for one)")
        cells = cell_matrix(release, columns)
        sizes = [domain_size(c) for c in columns]
        measured = one_way_measurements(release, columns)
        rng = noise_generator(secret, 0x357)
        e = math.sqrt(8 * third / (len(columns) - 1))
        ledger.fixed("pair selection (exponential mechanism, as its Renyi-equivalent Gaussian)", 1.0, 2 / e,
                     steps=len(columns) - 1)
        edges = select_tree(cells, sizes, measured, release.n_rows, e, rng)
        two_way = ledger.remaining("two-way marginals", math.sqrt(len(edges)))
        sd = two_way.noise_multiplier * two_way.sensitivity
        pairs = [(a, b, _pair_counts(cells[:, a], cells[:, b], sizes[a], sizes[b]) + rng.normal(0, sd, (sizes[a],
                  sizes[b]))) for a, b in edges]
        self.keep_release(release, table)
        self.tree_ = fit_tree(sizes, measured, pairs, sd, release.n_rows, cfg.iters)
        log.info("mst: epsilon %.4g, delta %.3g spent (target %g, %g)", self.release_["epsilon"],
                 self.release_["delta"], cfg.dp_epsilon, cfg.dp_delta)
        return self

    def sample_table(self, n: int, seed: int = 0, **kwargs) -> Table:
        n = check_sample_size(n)
        self.check_fitted()
        rng = np.random.default_rng(seed)
        columns = [c for c in self.encoder_.codings_ if c.coding != "id"]
        cells = draw_tree(self.tree_, len(columns), n, rng)
        return self.encoder_.inverse_transform(decode_cells(columns, cells, rng))

    def save(self, path: str | os.PathLike) -> None:
        self.save_release(path, {"tree": self.tree_})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MST":
        model, metadata = cls.load_release(path)
        columns = [c for c in model.encoder_.codings_ if c.coding != "id"]
        tree = metadata.typed("tree", dict, "an object (the fitted tree)")
        if not _valid_tree(tree, [domain_size(c) for c in columns]):
            raise metadata.invalid("tree", f"a root and parent tables over the {len(columns)} columns", tree)
        model.tree_ = tree
        return model


def _rho(epsilon: float, ledger: Ledger) -> float:
    """The zCDP budget: rho = 1 / (2 z^2) of the single Gaussian mechanism (noise multiplier z) that spends
    ``epsilon`` at the ledger's delta."""
    z = smallest_noise(epsilon, ledger.accountant_delta, [], 1.0, 1, ledger.accountant, "mst")
    return 1 / (2 * z ** 2)


# ---- the columns as discrete variables ---------------------------------------------------------------------------
def domain_size(coding) -> int:
    return {"binary": 2, "onehot": coding.width}.get(coding.coding, BINS + int(coding.has_missing))


def cell_matrix(release, columns) -> np.ndarray:
    """Each training row's cell of each column, from the private encoder's matrix (ranges clipped, categories
    mapped, missing values at the fill unless the column keeps an indicator)."""
    matrix, out, j = release.matrix, [], 0
    starts = {}
    for c in release.encoder.codings_:
        starts[c.name] = j
        j += c.width
    for c in columns:
        block = matrix[:, starts[c.name]:starts[c.name] + c.width]
        if c.coding == "binary":
            out.append(block[:, 0].round())
        elif c.coding == "onehot":
            out.append(block.argmax(axis=1))
        else:
            binned = bin_of(c, block[:, 0])
            out.append(np.where(block[:, 1] > 0.5, BINS, binned) if c.has_missing else binned)
    return np.column_stack(out).astype(np.int64)


def one_way_measurements(release, columns) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Per column (measured cells, their noisy counts, noise sd): the release's one-way marginals in the domain's
    cells (a binary column: its count of ones, the only number measured; a continuous column without an indicator:
    the missing count moved to the fill's bin)."""
    mechanism = next(m for m in release.ledger.mechanisms if m.name == "one-way marginals")
    sd = mechanism.noise_multiplier * mechanism.sensitivity
    out = []
    for c in columns:
        m = release.marginals[c.name]
        if c.coding == "binary":
            index = [v for v in m.cells].index(1)
            out.append((np.array([1]), np.array([m.counts[index]]), sd))
        elif c.coding == "onehot":
            out.append((np.arange(c.width), np.asarray(m.counts, dtype=float), sd))
        elif c.has_missing:
            out.append((np.arange(BINS + 1), np.asarray(m.counts, dtype=float), sd))
        else:
            counts = np.asarray(m.counts[:BINS], dtype=float).copy()
            counts[int(bin_of(c, c.fill))] += m.counts[BINS]
            out.append((np.arange(BINS), counts, sd))
    return out


def _one_way_shares(measured, sizes, n_rows: int) -> list[np.ndarray]:
    """Each column's probabilities implied by its noisy measurement (clipped at 0, normalised)."""
    shares = []
    for (cells, counts, _), size in zip(measured, sizes):
        full = np.zeros(size)
        if size == 2 and len(cells) == 1:
            ones = float(np.clip(counts[0], 0, n_rows))
            full[:] = [n_rows - ones, ones]
        else:
            full[cells] = np.clip(counts, 0, None)
        shares.append(full / full.sum() if full.sum() > 0 else np.full(size, 1 / size))
    return shares


# ---- selection: a maximum spanning tree by the exponential mechanism ---------------------------------------------
def pair_scores(cells: np.ndarray, sizes: list[int], shares: list[np.ndarray], n_rows: int,
                chunk: int = 4096) -> np.ndarray:
    """d x d: the L1 distance between each pair's two-way counts and n times the product of the noisy one-way
    shares (sensitivity 1: one row moves one cell of the data's table)."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    width = int(offsets[-1])
    counts = np.zeros((width, width))
    for start in range(0, len(cells), chunk):           # all two-way tables at once: one-hot cells, O^T O
        part = cells[start:start + chunk]
        onehot = np.zeros((len(part), width), dtype=np.float32)
        onehot[np.repeat(np.arange(len(part)), part.shape[1]), (part + offsets[:-1]).ravel()] = 1.0
        counts += onehot.T @ onehot
    p = np.concatenate(shares)
    gap = np.abs(counts - n_rows * np.outer(p, p))
    return np.add.reduceat(np.add.reduceat(gap, offsets[:-1], axis=0), offsets[:-1], axis=1)


def select_tree(cells, sizes, measured, n_rows: int, e: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """d - 1 edges, each drawn by the exponential mechanism (parameter ``e``, score sensitivity 1) among the pairs
    that join two components of the edges drawn so far (the Gumbel-max form of exp(e * score / 2))."""
    d = len(sizes)
    scores = pair_scores(cells, sizes, _one_way_shares(measured, sizes, n_rows), n_rows)
    a, b = np.triu_indices(d, k=1)
    weight = scores[a, b] * e / 2
    component = np.arange(d)
    edges = []
    for _ in range(d - 1):
        open_ = component[a] != component[b]
        pick = np.flatnonzero(open_)[np.argmax(weight[open_] + rng.gumbel(size=int(open_.sum())))]
        i, j = int(a[pick]), int(b[pick])
        edges.append((i, j))
        component[component == component[j]] = component[i]
    return edges


def _pair_counts(x: np.ndarray, y: np.ndarray, size_x: int, size_y: int) -> np.ndarray:
    return np.bincount(x * size_y + y, minlength=size_x * size_y).reshape(size_x, size_y).astype(float)


# ---- estimation (mbi) and the tree it gives -------------------------------------------------------------------
def fit_tree(sizes, measured, pairs, pair_sd: float, n_rows: int, iters: int) -> dict:
    """mbi's mirror descent on the noisy one- and two-way measurements; the fitted model's two-way marginal of every
    tree edge as P(child | parent) with the root's marginal (what sampling needs)."""
    mbi = require_mbi()
    import jax.numpy as jnp

    names = [f"c{j}" for j in range(len(sizes))]       # mbi's attributes: positions, not user column names
    domain = mbi.Domain(names, sizes)
    measurements = []
    for j, (cells, counts, sd) in enumerate(measured):
        index = jnp.asarray(cells)
        measurements.append(mbi.LinearMeasurement(jnp.asarray(counts), (names[j],), sd,
                                                  query=lambda f, index=index: f.datavector()[index]))
    for a, b, noisy in pairs:
        measurements.append(mbi.LinearMeasurement(jnp.asarray(noisy.ravel()), (names[a], names[b]), pair_sd))
    model = mbi.estimation.mirror_descent(domain, measurements, known_total=float(n_rows), iters=iters)
    root = 0
    children: dict[int, list[int]] = {j: [] for j in range(len(sizes))}
    for a, b, _ in pairs:
        children[a].append(b)
        children[b].append(a)
    order, parent, seen = [root], {root: None}, {root}
    for node in order:                       # breadth first from the root
        for child in children[node]:
            if child not in seen:
                seen.add(child)
                parent[child] = node
                order.append(child)
    root_marginal = np.asarray(model.project((names[root],)).datavector(flatten=False), dtype=float)
    steps = []
    for child in order[1:]:
        p = parent[child]
        factor = model.project((names[p], names[child]))
        joint = np.asarray(factor.datavector(flatten=False), dtype=float)
        if tuple(factor.domain.attributes) != (names[p], names[child]):
            joint = joint.T
        steps.append({"column": child, "parent": p, "table": _conditional(joint).tolist()})
    return {"root": root, "root_marginal": _normalised(root_marginal).tolist(), "steps": steps}


def _normalised(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.nan_to_num(p), 0, None)
    return p / p.sum() if p.sum() > 0 else np.full(len(p), 1 / len(p))


def _conditional(joint: np.ndarray) -> np.ndarray:
    """P(child | parent) from their joint (a parent cell without mass: the child's marginal)."""
    joint = np.clip(np.nan_to_num(joint), 0, None)
    child = _normalised(joint.sum(axis=0))
    return np.array([_normalised(row) if row.sum() > 0 else child for row in joint])


# ---- sampling -------------------------------------------------------------------------------------------------
def draw_tree(tree: dict, d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of cells drawn along the tree: the root from its marginal, each column given its parent."""
    cells = np.zeros((n, d), dtype=np.int64)
    cells[:, tree["root"]] = _draw(np.asarray(tree["root_marginal"])[None, :].repeat(n, axis=0), rng)
    for step in tree["steps"]:
        table = np.asarray(step["table"], dtype=float)
        cells[:, step["column"]] = _draw(table[cells[:, step["parent"]]], rng)
    return cells


def _draw(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row from each row's probabilities (inverse CDF)."""
    cdf = np.cumsum(probabilities, axis=1)
    u = rng.random((len(probabilities), 1)) * cdf[:, -1:]
    return np.minimum((u > cdf).sum(axis=1), probabilities.shape[1] - 1)


def decode_cells(columns, cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cells back to the encoder's space: 0/1, one-hot, or a uniform point inside the bin (missing: the fill and
    the indicator)."""
    out = []
    for j, c in enumerate(columns):
        x = cells[:, j]
        if c.coding == "binary":
            out.append(x[:, None].astype(np.float64))
        elif c.coding == "onehot":
            out.append(np.eye(c.width)[x])
        else:
            missing = x == BINS
            value = np.where(missing, c.fill, point_in_bin(c, np.minimum(x, BINS - 1), rng.random(len(x))))
            out.append(np.column_stack([value, missing.astype(float)]) if c.has_missing else value[:, None])
    return np.hstack(out)


def _valid_tree(tree: dict, sizes: list[int]) -> bool:
    """A root and one conditional table per other column, each column once, every parent drawn before its child."""
    try:
        d, root = len(sizes), tree["root"]
        if not (isinstance(root, int) and 0 <= root < d and len(tree["root_marginal"]) == sizes[root]):
            return False
        drawn = {root}
        for step in tree["steps"]:
            child, parent, table = step["column"], step["parent"], np.asarray(step["table"], dtype=float)
            if child in drawn or parent not in drawn or table.shape != (sizes[parent], sizes[child]) \
                    or not np.isfinite(table).all() or (table < 0).any():
                return False
            drawn.add(child)
        return len(drawn) == d
    except (KeyError, TypeError, ValueError):
        return False


__all__ = ["MST", "MSTConfig", "require_mbi", "select_tree"]
