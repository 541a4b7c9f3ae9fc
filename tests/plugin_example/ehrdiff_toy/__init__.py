"""A toy generator from outside ehrdiff, registered through the ``ehrdiff.models`` entry-point group (the worked
example of docs/architecture.md). It keeps each column's training mean and samples around it: nothing useful,
just the smallest model that follows the interface.

Its package declares, in pyproject.toml:

    [project.entry-points."ehrdiff.models"]
    toy = "ehrdiff_toy:ToyGenerator"

(here that declaration is the hand-written ehrdiff_toy-0.1.dist-info/entry_points.txt beside this folder, which is
what pip writes when it installs such a package).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ehrdiff.data.encoding import TableEncoder
from ehrdiff.models import ExperimentRole, Generator
from ehrdiff.models.base import as_table, check_sample_size
from ehrdiff.models.persistence import load_model_dir, save_model_dir


class ToyGenerator(Generator):
    # learns nothing (the experiment's step budget does not apply); runs only when named in --models
    experiment = ExperimentRole(trains=False, default=False)

    def __init__(self, seed: int = 0, spread: float = 0.1) -> None:
        self.seed, self.spread = seed, spread

    def fit(self, data, **kwargs) -> "ToyGenerator":
        table = as_table(data)
        self.encoder_ = TableEncoder().fit(table)
        self.means_ = self.encoder_.transform(table).mean(axis=0)
        return self

    def sample_table(self, n: int, seed: int = 0, **kwargs):
        self.check_fitted()
        rng = np.random.default_rng(seed)
        matrix = self.means_ + self.spread * rng.standard_normal((check_sample_size(n), len(self.means_)))
        return self.encoder_.inverse_transform(np.clip(matrix, 0, 1))

    def save(self, path: str | os.PathLike) -> None:
        self.check_fitted()
        metadata = {"model": self.name, "params": self.get_params(), "encoder": self.encoder_.to_dict()}
        save_model_dir(path, metadata, {"means": torch.from_numpy(self.means_)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ToyGenerator":
        metadata, tensors = load_model_dir(path)
        model = cls(**metadata["params"])
        model.encoder_ = TableEncoder.from_dict(metadata["encoder"])
        model.means_ = tensors["means"].numpy()
        return model
