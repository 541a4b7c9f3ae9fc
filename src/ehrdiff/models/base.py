"""The interface every generator follows (scikit-learn style) and the registry that finds any of them.

    model = SomeGenerator(**hyperparameters).fit(table)     # returns self; learned state ends in "_"
    synthetic = model.sample(1000, seed=0)                  # a DataFrame in the training table's columns
    table = model.sample_table(1000, seed=0)                # the same rows as a Table (frame + column kinds)
    model.save("run/"); load_model("run/")

A model joins by one line, ``@register("name")`` on its class, inside ehrdiff (imported by ``ehrdiff.models``) or
in another package that names the class in the entry-point group ``ehrdiff.models`` of its pyproject.toml:

    [project.entry-points."ehrdiff.models"]
    mymodel = "mypackage.module:MyGenerator"

Either way it appears in ``ehrdiff train --model``, ``ehrdiff experiment --models`` and ``load_model``. How the
experiment runner treats it (budget, pre-training, --quick settings, named variants) is the class's ``experiment``
attribute (:class:`ExperimentRole`).
"""

from __future__ import annotations

import inspect
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import numpy as np
import pandas as pd

from ehrdiff.data.rules import Rule, broken_rows, carried_rules, project
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError, EhrdiffError, ModelFileError

log = logging.getLogger(__name__)

REGISTRY: dict[str, type["Generator"]] = {}
ENTRY_POINT_GROUP = "ehrdiff.models"


def register(name: str):
    """Class decorator: make a generator loadable by its ``name`` (stored in model.json as "model")."""

    def wrap(cls):
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


@dataclass(frozen=True)
class ExperimentRole:
    """How ``ehrdiff experiment`` runs a model (declared by the model class as ``experiment``).

    ``trains``: False for references that learn nothing (the step budget does not apply).
    ``pretraining``: the setting that receives budget // 10 pre-training steps (an autoencoder's, not counted).
    ``quick``: settings of ``--quick`` runs (small networks: the pipeline in seconds, numbers meaningless).
    ``variants``: other experiment names for the same class, each with its own role; a variant with
    ``dataset_preset`` trains with the dataset's paper preset (``ehrdiff-paper``).
    ``default``: part of the experiment when ``--models`` is not given.
    """

    trains: bool = True
    pretraining: str | None = None
    quick: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, "ExperimentRole"] = field(default_factory=dict)
    dataset_preset: bool = False
    default: bool = True


def load_entry_points() -> None:
    """Register the generators other packages declare in the ``ehrdiff.models`` entry-point group. A broken
    plug-in is reported and skipped, so it cannot take the built-in models down with it."""
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in REGISTRY:
            continue
        try:
            cls = point.load()
        except Exception as exc:  # a third party's import error: say which plug-in, keep going
            log.warning("model plug-in '%s' (%s) could not be loaded: %s", point.name, point.value, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            log.warning("model plug-in '%s' (%s) is not an ehrdiff Generator class; skipped", point.name, point.value)
            continue
        register(point.name)(cls)


def model_class(name: str) -> type["Generator"]:
    """The generator registered as ``name``; EhrdiffError listing the known ones."""
    if name not in REGISTRY:
        raise EhrdiffError(f"unknown model '{name}' (choose one of {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


def build_model(name: str, settings: dict[str, Any]) -> "Generator":
    """``name``'s generator constructed with ``settings``; a setting it does not take is refused with one line."""
    cls = model_class(name)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = [p for p in params if p != "self"]
        for key in settings:
            if key not in known:
                what = ("--" + key.replace("_", "-") if key in ("preset", "checkpoint_every", "condition", "dp")
                        else f"setting '{key}'")
                raise EhrdiffError(f"model '{name}' does not take {what} (its settings: {', '.join(known)})")
    try:
        return cls(**settings)
    except TypeError as exc:      # a wrong keyword for a model with **kwargs
        raise EhrdiffError(f"model '{name}': {exc}") from None


def experiment_models() -> dict[str, tuple[str, ExperimentRole]]:
    """Every name ``ehrdiff experiment --models`` accepts -> (registered model, its role), variants included."""
    out: dict[str, tuple[str, ExperimentRole]] = {}
    for name, cls in REGISTRY.items():
        out[name] = (name, cls.experiment)
        for variant, role in cls.experiment.variants.items():
            out[variant] = (name, role)
    return out


def as_table(data, kinds: dict[str, str] | None = None) -> Table:
    """Accept a Table, a DataFrame or a 2-D array from users and return a validated Table."""
    if isinstance(data, Table):
        if kinds:
            return Table.from_frame(data.frame, {**data.kinds, **kinds}, rules=data.rules)
        data.validate()
        return data
    if isinstance(data, pd.DataFrame):
        return Table.from_frame(data, kinds)
    if isinstance(data, np.ndarray):
        return Table.from_array(data, kinds=kinds)
    raise DataError(f"expected a Table, DataFrame or numpy matrix, got {type(data).__name__}")


def declared_rules(data) -> tuple[Rule, ...]:
    """The rules a training input declares (a Table's, or those a DataFrame carries), which ``fit`` keeps as
    ``rules_`` (saved in model.json) for the sampler to keep."""
    if isinstance(data, Table):
        return data.rules
    return carried_rules(data) if isinstance(data, pd.DataFrame) else ()


RESAMPLE_ROUNDS = 10      # draws of replacement rows at most (fewer when one draw gives no row that keeps the rules)
MIN_RESAMPLE_DRAW = 64    # rows drawn at least per round (a sampler pass costs about the same for 1 row or 64)


@dataclass
class RuleCost:
    """What keeping the rules cost one sample: rows repaired in place, rows drawn again, extra rows drawn."""

    rows: int = 0
    projected: int = 0
    resampled: int = 0
    drawn: int = 0
    still_broken: int = 0

    def add(self, other: "RuleCost") -> None:
        for key, value in vars(other).items():
            setattr(self, key, getattr(self, key) + value)

    def line(self) -> str:
        text = (f"declared rules kept: {self.projected:,} of {self.rows:,} rows projected, {self.resampled:,} "
                f"resampled ({self.drawn:,} extra rows drawn)")
        if self.still_broken:
            text += (f"; {self.still_broken:,} rows still break a rule after resampling (the model rarely makes rows "
                     "that keep the rules: check them against the training data)")
        return text


def keep_rules(model: "Generator", table: Table, seed: int, options: dict | None = None,
               chunk: int = 0) -> tuple[Table, RuleCost]:
    """``table`` (a sample of ``model``) made to keep the model's declared rules (``rules_``): the rows that
    projection repairs are repaired (data/rules.py), the others replaced by new rows of the model that keep them
    (drawn with ``options``, seeds derived from ``seed`` and ``chunk``); ids are left as they are."""
    rules = getattr(model, "rules_", ())
    cost = RuleCost(rows=table.n_rows)
    if not rules:
        return table, cost
    frame, changed = project(table.frame, rules)
    bad = broken_rows(frame, rules)
    options = {k: v for k, v in (options or {}).items() if k != "progress"}
    values = [c for c in table.columns if table.kinds.get(c) != "id"]
    replaced = np.zeros(len(frame), dtype=bool)
    for round_number in range(1, RESAMPLE_ROUNDS + 1):
        if not bad.any():
            break
        need = int(bad.sum())
        draw_seed = int(np.random.SeedSequence([int(seed), chunk, round_number, 0x2A1E]).generate_state(1)[0])
        extra = model.sample_table(max(2 * need, MIN_RESAMPLE_DRAW), seed=draw_seed, **options)
        cost.drawn += extra.n_rows
        fixed, _ = project(extra.frame, rules)
        good = fixed[~broken_rows(fixed, rules)]
        if good.empty:      # the model (almost) never makes such a row: more draws would not change that
            break
        rows = np.flatnonzero(bad)[:len(good)]
        for column in values:
            frame[column] = _replaced(frame[column], rows, good[column].iloc[:len(rows)])
        bad[rows], replaced[rows] = False, True
    cost.projected, cost.resampled = int((changed & ~replaced).sum()), int(replaced.sum())
    cost.still_broken = int(bad.sum())
    return Table(frame, dict(table.kinds), tuple(rules)), cost


def _replaced(column: pd.Series, rows: np.ndarray, new: pd.Series) -> pd.Series:
    """``column`` with ``rows`` set to ``new``'s values (the dtype widened only where it must be)."""
    combined = pd.concat([column.drop(column.index[rows]), pd.Series(new.to_numpy(), index=column.index[rows],
                                                                     dtype=new.dtype)])
    return combined.reindex(column.index)


def sample_rows(model: "Generator", n: int, seed: int, progress: bool, **options) -> Table:
    """``model.sample_table(n, seed, **options)``, with a progress bar where the model's ``sample_table`` takes
    ``progress`` (EHRDiff's sampler is slow; other generators, one's own included, need not offer it); the rows
    keep the model's declared rules (:func:`keep_rules`, the cost logged)."""
    if "progress" in inspect.signature(model.sample_table).parameters:
        options["progress"] = progress
    table, cost = keep_rules(model, model.sample_table(n, seed=seed, **options), seed, options)
    if getattr(model, "rules_", ()):
        log.info("%s", cost.line())
    return table


def sample_in_chunks(model: "Generator", n: int, seed: int, progress: bool, chunk_rows: int | None = None,
                     **options) -> Iterator[Table]:
    """The rows of :func:`sample_rows`, one chunk at a time, for writing a large sample with bounded memory: a
    model with ``sample_chunks`` (EHRDiff) draws them chunk by chunk (the chunks joined are ``sample(n, seed)``);
    any other generator gives all ``n`` rows as one chunk. ``chunk_rows``: rows per chunk (default: the model's).
    Each chunk keeps the model's declared rules; the cost of the whole sample is logged at the end."""
    chunks = getattr(model, "sample_chunks", None)
    if chunks is None:
        yield sample_rows(model, n, seed, progress, **options)
        return
    draw_options = dict(options)
    if "progress" in inspect.signature(chunks).parameters:
        options["progress"] = progress
    if chunk_rows is not None:
        options["chunk_rows"] = chunk_rows
    total = RuleCost()
    for j, chunk in enumerate(chunks(n, seed=seed, **options)):
        kept, cost = keep_rules(model, chunk, seed, draw_options, chunk=j)
        total.add(cost)
        yield kept
    if getattr(model, "rules_", ()):
        log.info("%s", total.line())


def check_sample_size(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise DataError(f"number of samples must be a positive whole number, got {n!r}")
    return int(n)


class Generator(ABC):
    """A generator. Its constructor takes settings only (stored, not acted on: ``get_params`` reads them back);
    ``fit`` learns state whose names end in "_"; ``check_fitted`` is the one test of being fitted."""

    name: str = "generator"
    experiment: ClassVar[ExperimentRole] = ExperimentRole()

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's settings (scikit-learn's convention: ``type(m)(**m.get_params())`` is an unfitted
        copy). Named parameters are read from attributes of the same name, ``**settings`` from ``self.settings``."""
        params: dict[str, Any] = {}
        for name, p in inspect.signature(type(self).__init__).parameters.items():
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                params.update(getattr(self, "settings", {}))
            elif name != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL:
                params[name] = getattr(self, name)
        return params

    def set_params(self, **params: Any) -> "Generator":
        """Change constructor settings of an unfitted model (validated as the constructor does). Returns self."""
        if self.is_fitted():
            raise EhrdiffError(f"{self.name} is fitted: set_params changes the settings of an unfitted model; "
                               "construct a new one")
        type(self).__init__(self, **{**self.get_params(), **params})
        return self

    def is_fitted(self) -> bool:
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def check_fitted(self) -> None:
        if not self.is_fitted():
            raise RuntimeError(f"this {self.name} model is not fitted yet; call fit() or load() first")

    @abstractmethod
    def fit(self, data, **kwargs) -> "Generator": ...

    @abstractmethod
    def sample_table(self, n: int, seed: int = 0, **kwargs) -> Table:
        """``n`` synthetic rows in the training table's columns, with their kinds (what each model implements)."""

    def sample(self, n: int, seed: int = 0, **kwargs) -> pd.DataFrame:
        """``n`` synthetic rows as a pandas DataFrame in the training table's columns (what SDV and synthcity
        users expect back), keeping the model's declared rules (:func:`keep_rules`). The column kinds and rules
        travel in ``frame.attrs``, so ``fit`` and ``write_table`` given this frame keep them; :meth:`sample_table`
        gives the model's rows as a Table, before the rules are kept."""
        table, _ = keep_rules(self, self.sample_table(n, seed=seed, **kwargs), seed, kwargs)
        return table.to_frame()

    @abstractmethod
    def save(self, path: str | os.PathLike) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike) -> "Generator": ...


def load_model(path: str | os.PathLike) -> Generator:
    """Load any saved generator, dispatching on the "model" name in its verified model.json (the class's ``load``
    checks the weights)."""
    from ehrdiff.models.persistence import read_model_metadata

    name = read_model_metadata(path)["model"]
    if name not in REGISTRY:
        raise ModelFileError(f"{path}: unknown model type '{name}' (known: {', '.join(sorted(REGISTRY))}); a "
                             "plug-in model needs its package installed")
    return REGISTRY[name].load(path)
