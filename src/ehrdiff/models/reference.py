"""The two trivial references every comparison needs (nothing is trained; ``steps`` and ``batch_size`` are accepted
only so that every model takes the same settings).

marginals  every column drawn independently from its training distribution: Bernoulli with the training prevalence
           for binary columns (and 0/1 labels), the column's empirical distribution (missing values included) for
           continuous and categorical ones. It keeps every marginal and destroys all structure between columns.
resample   training rows drawn with replacement: perfect fidelity and no privacy at all (the ceiling on quality
           and the floor on privacy).

Both work in the user's column space (not the encoded one), so values come back exactly as they were in training.
Each column is stored as its distinct values (JSON) plus integer codes or counts (safetensors).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ehrdiff.data.encoding import TableEncoder
from ehrdiff.data.rules import rules_to_json
from ehrdiff.data.table import Table
from ehrdiff.errors import EhrdiffError, ModelFileError
from ehrdiff.models.base import ExperimentRole, Generator, as_table, check_sample_size, declared_rules, register
from ehrdiff.models.gan_common import make_config
from ehrdiff.models.persistence import ModelMetadata, data_fingerprint, load_model_dir, save_model_dir


@dataclass
class ReferenceConfig:
    steps: int = 0        # unused: nothing is trained
    batch_size: int = 0   # unused
    seed: int = 0         # unused at fit time; sample(n, seed) takes its own seed


def _json_value(value):
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _factorize(table: Table) -> tuple[list[str], list[list], np.ndarray]:
    """Model columns, each column's distinct values (missing = None) and the (rows x columns) matrix of codes."""
    names = [c for c in table.columns if table.kinds[c] != "id"]
    uniques, codes = [], np.empty((table.n_rows, len(names)), dtype=np.int64)
    for j, name in enumerate(names):
        column_codes, values = pd.factorize(table.frame[name], use_na_sentinel=False)
        codes[:, j] = column_codes
        uniques.append([_json_value(v) for v in values])
    return names, uniques, codes


class _Reference(Generator):
    """Shared glue: fit the encoder (for ids and dtypes), decode code matrices, save / load."""

    experiment = ExperimentRole(trains=False)

    def __init__(self, **settings) -> None:
        self.config = make_config(ReferenceConfig, self.name, settings)

    @property
    def settings(self) -> dict:
        """Every setting (what ``get_params`` reports for the constructor's ``**settings``)."""
        return dataclasses.asdict(self.config)

    def fit(self, data, *, checkpoint_dir=None, resume=False, progress=True) -> "_Reference":
        table = as_table(data)
        self.encoder_ = TableEncoder().fit(table)
        self.fingerprint_ = data_fingerprint(self.encoder_.transform(table))
        self.columns_, self.uniques_, codes = _factorize(table)
        self._store(codes)
        self.rules_ = declared_rules(table)
        return self

    def _decode(self, codes: np.ndarray) -> Table:
        """A code matrix -> a Table in the training columns, kinds and dtypes (ids made fresh by the encoder)."""
        n = codes.shape[0]
        frame = self.encoder_.inverse_transform(np.zeros((n, self.encoder_.width))).frame
        position = {name: j for j, name in enumerate(self.columns_)}
        for coding in self.encoder_.codings_:
            if coding.name in position:
                j = position[coding.name]
                distinct = np.empty(len(self.uniques_[j]), dtype=object)
                distinct[:] = self.uniques_[j]
                values = pd.Series(distinct[codes[:, j]])
                try:
                    values = values.astype(coding.dtype)
                except (TypeError, ValueError):
                    values = values.infer_objects()
                frame[coding.name] = values
        return Table(frame, {c.name: c.kind for c in self.encoder_.codings_})

    def save(self, path: str | os.PathLike) -> None:
        if not hasattr(self, "encoder_"):
            raise RuntimeError(f"{self.name} is not fitted; call fit() before save()")
        metadata = {"model": self.name, "config": self.get_params(), "encoder": self.encoder_.to_dict(),
                    "columns": self.columns_, "uniques": self.uniques_, "data_fingerprint": self.fingerprint_,
                    "rules": rules_to_json(getattr(self, "rules_", ()))}
        save_model_dir(path, metadata, self._tensors())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "_Reference":
        """The model saved at ``path``: model.json verified (persistence.read_model_metadata), each field checked,
        and the stored codes or counts checked against the distinct values, so sampling cannot fail later."""
        metadata, tensors = load_model_dir(path)
        if metadata["model"] != cls.name:
            raise ModelFileError(f"{path}: holds a '{metadata['model']}' model, not '{cls.name}'")
        try:
            model = cls(**metadata.typed("config", dict, "an object of settings"))
        except ModelFileError:
            raise
        except EhrdiffError as exc:
            raise ModelFileError(f"{path}: invalid model settings ({exc})") from None
        model.encoder_ = metadata.encoder()
        model.columns_, model.uniques_ = _stored_columns(metadata, model.encoder_)
        model.fingerprint_ = metadata.typed("data_fingerprint", str, "text")
        model.rules_ = metadata.rules()
        try:
            model._restore({k: v.numpy() for k, v in tensors.items()})
        except (KeyError, ValueError, IndexError) as exc:
            raise ModelFileError(f"{path}: the weights do not fit model.json ({exc}); train again") from None
        return model

    def _store(self, codes: np.ndarray) -> None: ...
    def _tensors(self) -> dict[str, torch.Tensor]: ...
    def _restore(self, arrays: dict[str, np.ndarray]) -> None: ...


def _stored_columns(metadata: ModelMetadata, encoder: TableEncoder) -> tuple[list[str], list[list]]:
    """model.json's ``columns`` (the encoder's columns but ids) and ``uniques`` (each one's distinct values)."""
    columns = metadata.typed("columns", list, "a list of column names")
    expected = [c.name for c in encoder.codings_ if c.coding != "id"]
    if columns != expected:
        raise metadata.invalid("columns", f"the encoder's columns {expected}", columns)
    uniques = metadata.typed("uniques", list, "a list of distinct values per column")
    if len(uniques) != len(columns) or not all(isinstance(u, list) and u and all(_is_value(v) for v in u)
                                               for u in uniques):
        raise metadata.invalid("uniques", f"{len(columns)} non-empty lists of values", uniques)
    return columns, uniques


def _is_value(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _check_codes(codes: np.ndarray, uniques: list[list]) -> None:
    """ValueError unless every code of column j indexes one of its ``uniques[j]`` distinct values."""
    if codes.ndim != 2 or codes.shape[1] != len(uniques):
        raise ValueError(f"codes for {codes.shape[-1]} columns, {len(uniques)} expected")
    if codes.size and ((codes < 0).any() or (codes.max(axis=0) >= [len(u) for u in uniques]).any()):
        raise ValueError("a code past its column's distinct values")


@register("marginals")
class Marginals(_Reference):
    def _store(self, codes: np.ndarray) -> None:
        self.counts_ = [np.bincount(codes[:, j], minlength=len(u)) for j, u in enumerate(self.uniques_)]

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {f"counts.{j}": torch.from_numpy(c.astype(np.int64)) for j, c in enumerate(self.counts_)}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts_ = [arrays[f"counts.{j}"] for j in range(len(self.columns_))]
        for j, (counts, values) in enumerate(zip(self.counts_, self.uniques_)):
            if counts.shape != (len(values),) or (counts < 0).any() or counts.sum() <= 0:
                raise ValueError(f"counts.{j} do not count the {len(values)} distinct values of its column")

    def sample_table(self, n: int, seed: int = 0, **kwargs) -> Table:
        n = check_sample_size(n)
        self.check_fitted()
        rng = np.random.default_rng(seed)
        codes = np.empty((n, len(self.columns_)), dtype=np.int64)
        for j, counts in enumerate(self.counts_):
            codes[:, j] = rng.choice(len(counts), size=n, p=counts / counts.sum())
        return self._decode(codes)


@register("resample")
class Resample(_Reference):
    def _store(self, codes: np.ndarray) -> None:
        self.codes_ = codes

    def _tensors(self) -> dict[str, torch.Tensor]:
        # One byte per entry where a column has at most 256 distinct values (binary codes), four bytes otherwise.
        small = np.array([len(u) <= 256 for u in self.uniques_])
        tensors = {"codes_small": torch.from_numpy(np.ascontiguousarray(self.codes_[:, small].astype(np.uint8)))}
        if (~small).any():
            tensors["codes_large"] = torch.from_numpy(np.ascontiguousarray(self.codes_[:, ~small].astype(np.int32)))
        return tensors

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        small = np.array([len(u) <= 256 for u in self.uniques_])
        codes = np.empty((arrays["codes_small"].shape[0], len(self.uniques_)), dtype=np.int64)
        codes[:, small] = arrays["codes_small"]
        if (~small).any():
            codes[:, ~small] = arrays["codes_large"]
        _check_codes(codes, self.uniques_)
        self.codes_ = codes

    def sample_table(self, n: int, seed: int = 0, **kwargs) -> Table:
        n = check_sample_size(n)
        self.check_fitted()
        rows = np.random.default_rng(seed).integers(0, self.codes_.shape[0], size=n)
        return self._decode(self.codes_[rows])
