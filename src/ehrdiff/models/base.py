"""The interface every generator follows (scikit-learn style) and the registry that loads any of them.

    model = SomeGenerator(**hyperparameters).fit(table)     # returns self; learned state ends in "_"
    synthetic = model.sample(1000, seed=0)                  # a Table with the training table's columns
    model.save("run/"); load_model("run/")
"""

from __future__ import annotations

import inspect
import os
from abc import ABC, abstractmethod

import numpy as np
import pandas as pd

from ehrdiff.data.table import Table
from ehrdiff.errors import DataError, ModelFileError

REGISTRY: dict[str, type["Generator"]] = {}


def register(name: str):
    """Class decorator: make a generator loadable by its ``name`` (stored in model.json as "model")."""

    def wrap(cls):
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


def as_table(data, kinds: dict[str, str] | None = None) -> Table:
    """Accept a Table, a DataFrame or a 2-D array from users and return a validated Table."""
    if isinstance(data, Table):
        if kinds:
            return Table.from_frame(data.frame, {**data.kinds, **kinds})
        data.validate()
        return data
    if isinstance(data, pd.DataFrame):
        return Table.from_frame(data, kinds)
    if isinstance(data, np.ndarray):
        return Table.from_array(data, kinds=kinds)
    raise DataError(f"expected a Table, DataFrame or numpy matrix, got {type(data).__name__}")


def sample_rows(model: "Generator", n: int, seed: int, progress: bool, **options) -> Table:
    """``model.sample(n, seed, **options)``, with a progress bar where the model's ``sample`` takes ``progress``
    (EHRDiff's sampler is slow; other generators, one's own included, need not offer it)."""
    if "progress" in inspect.signature(model.sample).parameters:
        options["progress"] = progress
    return model.sample(n, seed=seed, **options)


def check_sample_size(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise DataError(f"number of samples must be a positive whole number, got {n!r}")
    return int(n)


class Generator(ABC):
    name: str = "generator"

    @abstractmethod
    def fit(self, data, **kwargs) -> "Generator": ...

    @abstractmethod
    def sample(self, n: int, seed: int = 0, **kwargs) -> Table: ...

    @abstractmethod
    def save(self, path: str | os.PathLike) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike) -> "Generator": ...


def load_model(path: str | os.PathLike) -> Generator:
    """Load any saved generator, dispatching on the "model" name in its model.json."""
    from ehrdiff.models.persistence import load_model_dir

    metadata, _ = load_model_dir(path)
    name = metadata["model"]
    if name not in REGISTRY:
        raise ModelFileError(f"{path}: unknown model type '{name}' (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name].load(path)
