"""Row selection by a discriminator: the sample is drawn from a pool ``POOL`` times larger, each row kept with
weight equal to the odds a classifier, trained at fit on training rows against the model's own sampled rows, gives
it of being real. With balanced classes those odds estimate the density ratio p_real / p_model, so the kept rows
follow the training distribution more closely where the classifier is right (discriminator rejection sampling,
Azadi et al., ICLR 2019; Kim et al., ICML 2023, refine a diffusion model's sampler with such a discriminator).

The classifier is scikit-learn's histogram gradient boosting; its trees are kept as plain arrays (``TreeEnsemble``)
saved with the weights, so a model folder stays free of pickles. It sees rows as the sampler's output becomes data:
decoded and encoded again (``canonical``), so it cannot tell synthetic rows by values that decoding rounds away.
It learns from the training rows themselves, so it is not fitted under DP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ehrdiff.data.encoding import TableEncoder
from ehrdiff.evaluation.stats import auroc

POOL = 4                 # rows drawn per row kept
FIT_ROWS = 10_000        # training rows (and as many sampled rows) the classifier learns from, at most
MIN_ROWS = 1_000         # fewer training rows: no selector. Trees fitted on a few hundred rows would choose rows
                         # for their likeness to single training rows (the small tables' budget avoids memorising
                         # for the same reason: budget.py)
CHECK_SHARE = 0.2        # of those rows, held out of the classifier to measure how well it tells them apart
ROUNDS = 200             # boosting rounds; early stopping on a few thousand rows stopped after 40-60 of them, and
                         # those trees told rows apart less well and selected worse on CinC 2012
MAX_LOG_ODDS = np.log(1000.0)   # a row's weight is at most 1000 times another's: a few outliers cannot take over
PREFIX = "selector."     # the ensemble's tensors in weights.safetensors


@dataclass
class TreeEnsemble:
    """Boosted trees as arrays: node i splits on ``feature[i]`` at ``threshold[i]`` (values <= it go ``left[i]``,
    NaN as ``missing_left[i]`` says) or, where ``leaf[i]``, adds ``value[i]``; tree t starts at ``roots[t]``. The
    log-odds of a row being synthetic is ``baseline`` plus the leaves it reaches."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    leaf: np.ndarray
    missing_left: np.ndarray
    roots: np.ndarray
    baseline: float

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        """log P(synthetic) / P(real) of each row of ``X`` (encoded, canonical)."""
        node = np.broadcast_to(self.roots, (X.shape[0], len(self.roots))).copy()
        while True:
            at_leaf = self.leaf[node]
            if at_leaf.all():
                break
            x = np.take_along_axis(X, self.feature[node], axis=1)
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(at_leaf, node, np.where(go_left, self.left[node], self.right[node]))
        return self.baseline + self.value[node].sum(axis=1)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        arrays = {name: getattr(self, name) for name in ("feature", "threshold", "left", "right", "value", "roots")}
        arrays.update(leaf=self.leaf.astype(np.uint8), missing_left=self.missing_left.astype(np.uint8),
                      baseline=np.array([self.baseline]))
        return {PREFIX + k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], width: int) -> "TreeEnsemble":
        """The ensemble saved by :meth:`to_tensors`; ValueError unless it is a well-formed set of trees over
        ``width`` features (every path from a root reaches a leaf)."""
        a = {k.removeprefix(PREFIX): v.numpy() for k, v in tensors.items()}
        names = {"feature", "threshold", "left", "right", "value", "roots", "leaf", "missing_left", "baseline"}
        if set(a) != names:
            raise ValueError(f"the selector's arrays are {sorted(a)}, not {sorted(names)}")
        n = len(a["feature"])
        if any(a[k].shape != (n,) for k in names - {"roots", "baseline"}) or a["baseline"].shape != (1,):
            raise ValueError("the selector's node arrays differ in length")
        leaf = a["leaf"].astype(bool)
        inner = ~leaf
        links = np.r_[a["left"][inner], a["right"][inner], a["roots"]]
        if (n == 0 or not a["roots"].size or links.min(initial=0) < 0 or links.max(initial=0) >= n
                or (a["feature"][inner] < 0).any() or (a["feature"][inner] >= width).any()
                or (inner & ((a["left"] <= np.arange(n)) | (a["right"] <= np.arange(n)))).any()):
            raise ValueError("the selector's trees point outside themselves")      # children after parents: no loops
        return cls(a["feature"].astype(np.int64), a["threshold"].astype(np.float64), a["left"].astype(np.int64),
                   a["right"].astype(np.int64), a["value"].astype(np.float64), leaf,
                   a["missing_left"].astype(bool), a["roots"].astype(np.int64), float(a["baseline"][0]))


def trees_of(classifier) -> TreeEnsemble:
    """A fitted binary HistGradientBoostingClassifier's trees as a :class:`TreeEnsemble` (numeric splits only).
    scikit-learn keeps them in attributes it does not document (``_predictors``, ``_baseline_prediction``); a test
    compares the ensemble's scores with ``decision_function``, so a change there fails loudly."""
    nodes = [predictors[0].nodes for predictors in classifier._predictors]
    offsets = np.cumsum([0] + [len(t) for t in nodes[:-1]])
    table = np.concatenate(nodes)
    if table["is_categorical"].any():
        raise ValueError("categorical splits are not kept")
    shift = np.repeat(offsets, [len(t) for t in nodes])
    leaf = table["is_leaf"].astype(bool)
    return TreeEnsemble(table["feature_idx"].astype(np.int64), table["num_threshold"].astype(np.float64),
                        np.where(leaf, 0, table["left"].astype(np.int64) + shift),
                        np.where(leaf, 0, table["right"].astype(np.int64) + shift),
                        table["value"].astype(np.float64), leaf, table["missing_go_to_left"].astype(bool),
                        offsets.astype(np.int64), float(np.ravel(classifier._baseline_prediction)[0]))


def canonical(encoder: TableEncoder, matrix: np.ndarray) -> np.ndarray:
    """Encoded rows as the data they stand for: decoded, then encoded again. Training rows go through it too:
    encoding a decoded value can differ from the first encoding in the last bit, a difference trees would find."""
    return encoder.transform(encoder.inverse_transform(matrix), dtype=np.float32)


def fit_selector(real: np.ndarray, synthetic: np.ndarray, seed: int) -> tuple[TreeEnsemble, float]:
    """Trees telling ``synthetic`` rows from ``real`` ones (both canonical, as many of each), and the AUROC they
    reach on a share of the rows they did not learn from (how far the model's own rows are from real ones)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = np.vstack([real, synthetic])
    y = np.r_[np.zeros(len(real)), np.ones(len(synthetic))]
    # with MIN_ROWS rows of each class, both are among the checked rows
    check = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E1E])).random(len(X)) < CHECK_SHARE
    classifier = HistGradientBoostingClassifier(max_iter=ROUNDS, early_stopping=False,
                                                random_state=int(seed) & 0xFFFFFFFF)
    classifier.fit(X[~check], y[~check])
    trees = trees_of(classifier)
    return trees, auroc(y[check].astype(bool), trees.log_odds(X[check]))


def select_rows(log_odds: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices (ascending) of ``n`` rows drawn without replacement with weights exp(-log_odds), the odds of being
    real (Efraimidis and Spirakis' keys u^(1/w): the ``n`` largest keys are such a draw)."""
    weights = np.exp(-np.clip(log_odds, -MAX_LOG_ODDS, MAX_LOG_ODDS))
    u = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5E1F])).random(len(weights))
    keys = np.log(u) / weights
    return np.sort(np.argsort(-keys, kind="stable")[:n])


__all__ = ["FIT_ROWS", "MIN_ROWS", "POOL", "PREFIX", "TreeEnsemble", "canonical", "fit_selector", "select_rows",
           "trees_of"]
