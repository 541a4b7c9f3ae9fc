"""The shell shared by the private models that release noisy statistics instead of trained weights (dp-marginals,
mst): settings from a config dataclass, and a model folder holding the encoder, the model's noisy statistics, the
row count, the privacy ledger (``dp_release``, with the composed epsilon and delta beside it) and the table's
declared rules (public metadata, kept by the sampler: models/base.py keep_rules)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

from ehrdiff.data.rules import rules_to_json
from ehrdiff.errors import EhrdiffError, ModelFileError
from ehrdiff.models.base import ExperimentRole, Generator
from ehrdiff.models.gan_common import make_config
from ehrdiff.models.persistence import load_model_dir, save_model_dir
from ehrdiff.privacy.accounting import Ledger


def check_release_settings(config, name: str, max_bounds_share: float) -> None:
    """The checks every such model's settings share: private only, ``bounds_share`` in (0, ``max_bounds_share``),
    a budget the ledger accepts."""
    if not config.dp:
        raise EhrdiffError(f"{name} is a private model: it cannot be trained with dp=False")
    if not 0 < config.bounds_share < max_bounds_share:
        raise EhrdiffError(f"bounds_share must be between 0 and {max_bounds_share:g}, got {config.bounds_share!r}")
    Ledger(config.dp_epsilon, config.dp_delta, config.dp_accountant)      # checks the budget


class NoisyRelease(Generator):
    config_class: ClassVar[type]
    experiment = ExperimentRole(trains=False, default=False)

    def __init__(self, **settings) -> None:
        self.config = make_config(self.config_class, self.name, settings)
        self.config.validate()

    @property
    def settings(self) -> dict:
        return dataclasses.asdict(self.config)

    def keep_release(self, release, table) -> None:
        """What every such model keeps of its fit: the private encoder, the noisy row count, the ledger, and the
        table's declared rules."""
        self.encoder_, self.n_rows_, self.release_ = release.encoder, release.n_rows, release.to_dict()
        self.rules_ = table.rules

    def save_release(self, path: str | os.PathLike, statistics: dict[str, Any]) -> None:
        """Write the model folder: the encoder, ``statistics`` (the model's own noisy quantities) and the ledger."""
        self.check_fitted()
        save_model_dir(path, {"model": self.name, "config": self.get_params(), "encoder": self.encoder_.to_dict(),
                              **statistics, "n_rows": self.n_rows_, "rules": rules_to_json(self.rules_),
                              "dp_release": self.release_,
                              "dp_epsilon": self.release_["epsilon"], "dp_delta": self.release_["delta"]}, {})

    @classmethod
    def load_release(cls, path: str | os.PathLike):
        """The model of a folder written by :meth:`save_release`, with its encoder, row count and ledger, and the
        folder's metadata (for the model's own statistics, which the caller checks)."""
        metadata, _ = load_model_dir(path)
        if metadata["model"] != cls.name:
            raise ModelFileError(f"{path}: holds a '{metadata['model']}' model, not '{cls.name}'")
        try:
            model = cls(**metadata.typed("config", dict, "an object of settings"))
        except EhrdiffError as exc:
            raise ModelFileError(f"{path}: invalid model settings ({exc})") from None
        model.encoder_ = metadata.encoder()
        model.n_rows_ = metadata.typed("n_rows", int, "a whole number")
        model.release_ = metadata.typed("dp_release", dict, "an object")
        model.rules_ = metadata.rules()
        metadata.privacy()
        return model, metadata
