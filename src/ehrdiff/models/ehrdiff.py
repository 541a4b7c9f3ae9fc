"""EHRDiff (Yuan et al., arXiv 2303.05656): an EDM diffusion model over the encoded patient x feature matrix.

    model = EHRDiff(preset="paper-mimic", steps=20_000).fit(table)     # any setting of EHRDiffConfig overrides
    synthetic = model.sample(10_000, seed=0)                           # a Table in the training table's columns
    model.save("run/"); EHRDiff.load("run/")

Training adds Gaussian noise to the encoded rows (binary codes 0/1, continuous features scaled to [0, 1]) and fits
the preconditioned denoiser with the EDM loss; sampling integrates the probability-flow ODE with the 32-level Heun
sampler from the EMA weights, and the encoder turns the output back into the user's columns (binary columns
clipped to [0, 1] and rounded at 0.5, continuous ones clipped to the training range).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import numpy as np
import torch

from ehrdiff.data.encoding import TableEncoder
from ehrdiff.data.table import Table
from ehrdiff.diffusion import Denoiser, EDMLoss, MLPDenoiserNet, NoiseEmbedding, heun_sampler, karras_sigmas
from ehrdiff.errors import DataError, EhrdiffError, ModelFileError
from ehrdiff.models.base import Generator, as_table, check_sample_size, register
from ehrdiff.models.persistence import data_fingerprint, load_model_dir, save_model_dir
from ehrdiff.presets import EHRDiffConfig, config_from_dict, make_config
from ehrdiff.training import BatchNoise, TrainSettings, distributed_context, is_main_process, resolve_device, train

log = logging.getLogger(__name__)


def build_denoiser(config: EHRDiffConfig, width: int, seed: int | None = None) -> Denoiser:
    """The preconditioned network for data of ``width`` encoded columns; weights drawn from ``seed``
    (without touching PyTorch's global random state)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed if seed is None else seed)
        embedding = NoiseEmbedding(config.embedding, config.embedding_size(width), config.embedding_width)
        net = MLPDenoiserNet(width, config.hidden_dims, embedding)
    return Denoiser(net, config.sigma_data)


def _edm_row_loss(loss: EDMLoss):
    def row_loss(model: torch.nn.Module, rows: torch.Tensor, noise: BatchNoise) -> torch.Tensor:
        sigma_normal = noise.randn(1)           # ln sigma draws first, then the data noise (as the official code)
        return loss(model, rows, sigma_normal, noise.randn(rows.shape[1]))
    return row_loss


@register("ehrdiff")
class EHRDiff(Generator):
    """The paper's diffusion model. ``preset``: paper-mimic (default), paper-cinc, paper-ecg or cpu-fast;
    keyword arguments override any field of :class:`ehrdiff.presets.EHRDiffConfig` (steps, batch_size, seed, lr,
    hidden_dims, sigma_data, ...)."""

    def __init__(self, preset: str = "paper-mimic", **overrides: Any) -> None:
        self.preset = preset
        self.overrides = dict(overrides)
        self.config = make_config(preset, **overrides)      # validates now: bad settings fail before training

    def __repr__(self) -> str:
        args = ", ".join([repr(self.preset)] + [f"{k}={v!r}" for k, v in self.overrides.items()])
        return f"EHRDiff({args})"

    # ---- training --------------------------------------------------------------------------------------------
    def fit(self, data, *, checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
            progress: bool = True) -> "EHRDiff":
        table = as_table(data)
        encoder = TableEncoder().fit(table)
        matrix = encoder.transform(table, dtype=np.float32)
        if matrix.shape[1] == 0:
            raise DataError("the table has no columns to model")
        if not np.isfinite(matrix).all():
            row, col = np.argwhere(~np.isfinite(matrix))[0]
            raise DataError(f"encoded column '{encoder.encoded_columns[col]}' row {row} is not finite; "
                            "replace NaN/infinite values")
        cfg = self.config
        n_rows, width = matrix.shape
        total = cfg.total_steps(n_rows)
        context = distributed_context(cfg.device)
        denoiser = build_denoiser(cfg, width)
        settings = TrainSettings(steps=total, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                                 warmup_steps=cfg.effective_warmup(total), ema_decay=cfg.ema_decay, seed=cfg.seed,
                                 checkpoint_every=cfg.checkpoint_every)
        fingerprint = data_fingerprint(matrix)
        identity = {"model": self.name, "config": cfg.identity(), "data": fingerprint, "shape": [n_rows, width]}
        if context.is_main:
            log.info("training EHRDiff (%s) on %d rows x %d columns: %d steps of batch %d on %s%s", self.preset,
                     n_rows, width, total, cfg.batch_size, context.device,
                     f" x {context.world_size} processes" if context.world_size > 1 else "")
        loss = EDMLoss(sigma_data=cfg.sigma_data, P_mean=cfg.P_mean, P_std=cfg.P_std)
        result = train(denoiser, torch.from_numpy(matrix), _edm_row_loss(loss), settings,
                       checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, identity=identity,
                       context=context)
        denoiser.load_state_dict(result.ema_state)              # sampling uses the EMA weights
        self.denoiser_ = denoiser.eval()
        self.encoder_ = encoder
        self.n_rows_, self.n_features_ = n_rows, width
        self.data_fingerprint_ = fingerprint
        self.train_steps_ = total
        self.final_loss_ = result.final_loss
        return self

    # ---- sampling --------------------------------------------------------------------------------------------
    def sample_matrix(self, n: int, seed: int = 0) -> np.ndarray:
        """Raw sampler output in the encoded space (unclipped), ``n`` x ``n_features_``."""
        n = check_sample_size(n)
        self._check_fitted()
        cfg = self.config
        device = resolve_device(cfg.device)
        denoiser = self.denoiser_.to(device)
        sigmas = karras_sigmas(cfg.num_noise_levels, cfg.sigma_min, cfg.sigma_max, cfg.rho, device=device)
        generator = torch.Generator(device=device).manual_seed(int(seed))
        out = []
        with torch.inference_mode():
            for start in range(0, n, cfg.sample_batch_size):
                rows = min(cfg.sample_batch_size, n - start)
                latents = torch.randn((rows, self.n_features_), generator=generator, device=device)
                x = heun_sampler(denoiser, latents.to(torch.float64) * sigmas[0], sigmas)
                out.append(x.to("cpu", torch.float32).numpy())
        return np.concatenate(out)

    def sample(self, n: int, seed: int = 0) -> Table:
        matrix = self.sample_matrix(n, seed=seed)
        return self.encoder_.inverse_transform(matrix)

    def _check_fitted(self) -> None:
        if not hasattr(self, "denoiser_"):
            raise RuntimeError("this EHRDiff model is not fitted yet; call fit() or EHRDiff.load() first")

    # ---- persistence -----------------------------------------------------------------------------------------
    def _content(self) -> dict[str, Any]:
        return {"model": self.name, "preset": self.preset, "overrides": self.overrides,
                "config": self.config.to_dict(), "encoder": self.encoder_.to_dict(),
                "columns": [c.name for c in self.encoder_.codings_], "n_rows": self.n_rows_,
                "n_features": self.n_features_, "data_fingerprint": self.data_fingerprint_,
                "train_steps": self.train_steps_, "final_loss": self.final_loss_}

    def save(self, path: str | os.PathLike) -> None:
        """Write model.json + weights.safetensors (EMA weights). Under torchrun only rank 0 writes."""
        self._check_fitted()
        if not is_main_process():
            return
        content = json.loads(json.dumps(self._content()))
        metadata = {**content, "content_sha256": _content_hash(content)}
        save_model_dir(path, metadata, self.denoiser_.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EHRDiff":
        metadata, tensors = load_model_dir(path)
        if metadata.get("model") != "ehrdiff":
            raise ModelFileError(f"{path}: holds a '{metadata.get('model')}' model, not an ehrdiff one")
        content = {k: v for k, v in metadata.items()
                   if k not in ("content_sha256", "format_version", "ehrdiff_version", "weights_sha256")}
        if metadata.get("content_sha256") != _content_hash(content):
            raise ModelFileError(f"{path}/model.json was modified after saving (checksum mismatch); "
                                 "restore it or train again")
        try:
            model = cls.__new__(cls)
            model.preset, model.overrides = metadata["preset"], metadata["overrides"]
            model.config = config_from_dict(metadata["config"])
            model.encoder_ = TableEncoder.from_dict(metadata["encoder"])
            model.n_rows_, model.n_features_ = int(metadata["n_rows"]), int(metadata["n_features"])
            model.data_fingerprint_ = metadata["data_fingerprint"]
            model.train_steps_, model.final_loss_ = metadata["train_steps"], metadata["final_loss"]
            if model.encoder_.width != model.n_features_:
                raise ValueError("encoder width differs from n_features")
            denoiser = build_denoiser(model.config, model.n_features_)
            denoiser.load_state_dict(tensors, strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: model.json and the weights do not fit together "
                                 f"({str(exc).splitlines()[0][:200]}); train again") from None
        except EhrdiffError as exc:  # config validation: here a problem of the model file
            raise ModelFileError(f"{path}: invalid model settings ({exc})") from None
        model.denoiser_ = denoiser.eval()
        return model


def _content_hash(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
