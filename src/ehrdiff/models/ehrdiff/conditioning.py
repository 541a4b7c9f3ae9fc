"""Class-conditional EHRDiff with classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598).

    model = EHRDiff("cpu-fast", condition="label").fit(table)
    deaths = model.sample(500, seed=0, condition=1, guidance=1.0)    # 500 rows of class label=1
    cohort = model.sample(3000, seed=0)                               # every class, in the training balance

The condition column (a label, categorical or binary column) is not modelled as a feature: its K classes get a
learned embedding (class K is the "null" class, meaning no condition) that is added to the noise-level embedding
before the network uses it (``NoiseEmbedding`` in ehrdiff.diffusion.network; the class indices reach the network as
the ``class_labels`` argument of its forward, as in EDM). During training each row's class is replaced by the null
class with probability ``condition_dropout`` (0.1), so one network learns both D(x; sigma, c) and the unconditional
D(x; sigma). Sampling with guidance w uses

    D = D(x; sigma, null) + (1 + w) (D(x; sigma, c) - D(x; sigma, null))

so w = 0 is plain conditional sampling and larger w pushes the rows further towards their class.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from ehrdiff.data.encoding import MISSING_CATEGORY, _cast, _category
from ehrdiff.data.table import Table
from ehrdiff.diffusion.count_matching import apportion
from ehrdiff.errors import DataError, EhrdiffError
from ehrdiff.models.base import check_sample_size
from ehrdiff.settings import parse_assignments

CONDITION_KINDS = ("label", "categorical", "binary")
MAX_CLASSES = 1000


# ---- the condition column ------------------------------------------------------------------------------------
@dataclass
class ConditionSpec:
    """What a conditional model knows about its condition column."""

    column: str
    kind: str
    dtype: str
    position: int          # the column's place in the training table (restored in samples)
    classes: list          # JSON-safe values, in the encoder's category order
    counts: list[int]      # training rows per class

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def null_index(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ConditionSpec":
        return cls(**data)

    def resolve(self, value: Any) -> int:
        """The class index of ``value``; strings from the command line match by their text ("1" matches 1)."""
        key = _category(value)
        for i, c in enumerate(self.classes):
            if c == key or str(c) == str(value):
                return i
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None:
                for i, c in enumerate(self.classes):
                    if isinstance(c, (int, float)) and not isinstance(c, bool) and float(c) == number:
                        return i
        known = ", ".join(map(str, self.classes[:12])) + (" ..." if len(self.classes) > 12 else "")
        raise EhrdiffError(f"condition {self.column}={value!r} was never seen in training (known values: {known})")


def split_condition(table: Table, column: str) -> tuple[Table, np.ndarray, ConditionSpec]:
    """(the table without ``column``, each row's class index, the spec); DataError for an unusable column."""
    if column not in table.frame.columns:
        shown = ", ".join(table.columns[:8]) + (" ..." if len(table.columns) > 8 else "")
        raise DataError(f"condition column '{column}' is not in the data (columns: {shown})")
    kind = table.kinds[column]
    if kind not in CONDITION_KINDS:
        raise DataError(f"condition column '{column}' is {kind}; conditioning needs a label, categorical or binary "
                        "column (bin a continuous column into categories first)")
    values = table.frame[column]
    keys = [_category(v) for v in values.to_numpy(dtype=object)]
    classes = sorted(set(keys), key=lambda c: (isinstance(c, str), c))
    if len(classes) < 2:
        raise DataError(f"condition column '{column}' has only one value ({classes[0]!r}); nothing to condition on")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"condition column '{column}' has {len(classes)} distinct values (at most {MAX_CLASSES}); "
                        "is it really categorical?")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
    rest = [c for c in table.columns if c != column]
    if not [c for c in rest if table.kinds[c] != "id"]:
        raise DataError(f"the data has no columns besides the condition column '{column}' to model")
    kept = tuple(r for r in table.rules if column not in r.columns)     # the features' rules (chains, data/chains.py)
    features = Table(table.frame[rest].reset_index(drop=True), {c: table.kinds[c] for c in rest}, kept)
    spec = ConditionSpec(column, kind, str(values.dtype), table.columns.index(column), classes,
                         np.bincount(labels, minlength=len(classes)).tolist())
    return features, labels, spec


def attach_condition(table: Table, spec: ConditionSpec, labels: np.ndarray) -> Table:
    """``table`` with the condition column (class ``labels``) put back in its training position."""
    picked = [spec.classes[i] for i in labels]
    if MISSING_CATEGORY in spec.classes:
        values: Any = pd.Series([None if v == MISSING_CATEGORY else v for v in picked])
    else:
        values = _cast(np.array(picked, dtype=object if any(isinstance(v, str) for v in picked) else None),
                       spec.dtype)
    frame = table.frame.copy()
    frame.insert(min(spec.position, frame.shape[1]), spec.column, values)
    kinds = {c: (spec.kind if c == spec.column else table.kinds[c]) for c in frame.columns}
    return Table(frame, kinds)


def class_counts(n: int, spec: ConditionSpec, condition: Any = None,
                 balance: Mapping[Any, float] | None = None) -> np.ndarray:
    """Rows per class for ``n`` samples: all of one ``condition``, a chosen ``balance`` ({value: share}), or the
    training balance; whole numbers by the largest-remainder rule (ties to the earlier class)."""
    shares = np.zeros(spec.n_classes)
    if condition is not None and balance is not None:
        raise EhrdiffError("give either a condition or a balance, not both")
    if condition is not None:
        shares[spec.resolve(condition)] = 1.0
    elif balance is not None:
        if not balance:
            raise EhrdiffError("the balance is empty; give VALUE=SHARE for at least one class")
        for value, share in balance.items():
            share = float(share)
            if not math.isfinite(share) or share < 0:
                raise EhrdiffError(f"balance share for {spec.column}={value} must be a number >= 0, got {share}")
            shares[spec.resolve(value)] += share
        if shares.sum() <= 0:
            raise EhrdiffError("the balance shares add up to 0; give at least one positive share")
    else:
        shares[:] = spec.counts
    return apportion(shares, n)


def parse_balance(text: str) -> dict[str, float]:
    """``"0=0.5,1=0.5"`` -> {"0": 0.5, "1": 0.5} (the CLI's --balance)."""
    example = "VALUE=SHARE,VALUE=SHARE (e.g. 0=0.5,1=0.5)"
    out: dict[str, float] = {}
    for value, share in parse_assignments(text.split(","), "--balance", example, parse=False).items():
        try:
            out[value] = float(share)
        except ValueError:
            raise EhrdiffError(f"--balance expects {example}, got '{text}'") from None
    return out


# ---- the network's class input ------------------------------------------------------------------------------
def n_classes(model: nn.Module) -> int:
    """The classes of the network inside a Denoiser (or a DistributedDataParallel around one); 0: unconditional."""
    inner = getattr(model, "module", model)
    return getattr(getattr(getattr(inner, "net", None), "embedding", None), "n_classes", 0)


def drop_labels(labels: torch.Tensor, standard_normal: torch.Tensor, null_index: int, dropout: float) -> torch.Tensor:
    """Replace each label by the null class with probability ``dropout``: Phi(z) of a standard normal z is
    uniform on (0, 1), so the step-seeded normal draws decide (and a resumed run drops the same rows)."""
    drop = torch.special.ndtr(standard_normal) < dropout
    return torch.where(drop, torch.full_like(labels, null_index), labels)


def conditional_row_loss(inner: Callable, null_index: int, dropout: float) -> Callable:
    """Wrap a row loss ``inner(model, rows, noise, class_labels)`` for rows whose last column is the class index:
    ``inner`` gets the feature columns and the (dropped-out) classes. The dropout draw is the step's first normal
    draw."""

    def row_loss(model: nn.Module, rows: torch.Tensor, noise) -> torch.Tensor:
        labels = drop_labels(rows[:, -1].round().long(), noise.randn(), null_index, dropout)
        return inner(model, rows[:, :-1], noise, labels)

    return row_loss


def guided_denoiser(denoiser: nn.Module, label: int, guidance: float = 0.0) -> Callable:
    """D(x; sigma) for the sampler, conditioned on class ``label`` with classifier-free guidance ``guidance``
    (w = 0: conditional only, one network call; otherwise two calls, conditional and null)."""
    device = next(denoiser.parameters()).device
    cond = torch.tensor([label], device=device)
    null = torch.tensor([n_classes(denoiser)], device=device)
    binary = getattr(denoiser, "binary", None)

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        d_cond = denoiser(x, sigma, cond)
        if guidance == 0:
            return d_cond
        d_null = denoiser(x, sigma, null)
        guided = torch.lerp(d_null, d_cond, 1.0 + guidance)     # d_null + (1 + w)(d_cond - d_null)
        if binary is not None:      # Bernoulli head: guide the codes' log-odds (a probability could leave [0, 1])
            logits = torch.lerp(torch.logit(d_null, eps=1e-15), torch.logit(d_cond, eps=1e-15), 1.0 + guidance)
            guided = torch.where(binary, torch.sigmoid(logits), guided)
        return guided

    return fn


def check_sampling_request(spec: ConditionSpec | None, condition: Any, guidance: float | None,
                           balance: Mapping | None) -> float:
    """Refuse conditional options on an unconditional model; return the guidance weight to use."""
    if spec is None:
        given = [name for name, v in (("condition", condition), ("guidance", guidance), ("balance", balance))
                 if v is not None]
        if given:
            raise EhrdiffError(f"{' and '.join(given)} given, but this model was trained without a condition "
                               "(train with --condition COLUMN)")
        return 0.0
    w = 0.0 if guidance is None else guidance
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
        raise EhrdiffError(f"guidance must be a number >= 0 (0: plain conditional sampling), got {guidance!r}")
    return float(w)


def sample_conditional(model, n: int, seed: int, spec: ConditionSpec, condition: Any, guidance: float,
                       balance: Mapping | None, progress: bool = False, *, counts: np.ndarray | None = None,
                       code_counts: list | None = None, id_offset: int = 0,
                       finish: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> Table:
    """``n`` rows from a conditional EHRDiff: each class's share drawn with its own seed (seed, class), rows of
    several classes shuffled by ``seed``, and the condition column put back. One chunk of a large sample
    (EHRDiff.sample_chunks) gives its rows per class (``counts``), per class its rows per number of codes
    (``code_counts[k]``), its first synthetic id (``id_offset``) and what is done to its encoded rows and class
    indices before decoding (``finish``: prevalence calibration)."""
    n = check_sample_size(n)
    counts = class_counts(n, spec, condition, balance) if counts is None else counts
    matrices, labels = [], []
    for k, count in enumerate(counts):
        if count:
            class_seed = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, k]).generate_state(1)[0])
            matrices.append(model.sample_matrix(int(count), seed=class_seed, label=k, guidance=guidance,
                                               progress=progress, code_counts=code_counts[k] if code_counts else None))
            labels.append(np.full(int(count), k, dtype=np.int64))
    matrix, label_index = np.concatenate(matrices), np.concatenate(labels)
    if len(matrices) > 1:
        order = np.random.default_rng(int(seed)).permutation(n)
        matrix, label_index = matrix[order], label_index[order]
    if finish is not None:
        matrix = finish(matrix, label_index)
    return attach_condition(model.encoder_.inverse_transform(matrix, id_offset=id_offset), spec, label_index)


__all__ = ["ConditionSpec", "attach_condition", "check_sampling_request", "class_counts", "conditional_row_loss",
           "drop_labels", "guided_denoiser", "n_classes", "parse_balance", "sample_conditional", "split_condition"]
