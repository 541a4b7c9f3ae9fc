"""What the GAN baselines (medGAN, EMR-WGAN, CorGAN) share: settings, the training loop with atomic checkpoints and
resume, the WGAN gradient penalty, the latent-code generator, the autoencoder loss, and the save / load glue.

A baseline subclasses ``GanBaseline`` and supplies only its networks, its optimisers, its training phases and one
training step; everything that touches files, seeds, devices and progress lives here, once.

Every baseline works on the encoder's [0, 1] space (sigmoid outputs), so mixed tables work: the encoder's
``inverse_transform`` rounds binary columns at 0.5, un-scales continuous ones and takes the argmax of one-hot blocks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ehrdiff.data.encoding import TableEncoder
from ehrdiff.data.table import Table
from ehrdiff.errors import EhrdiffError, ModelFileError
from ehrdiff.fileio import atomic_path
from ehrdiff.models.base import Generator, as_table, check_sample_size
from ehrdiff.models.persistence import data_fingerprint, load_model_dir, save_model_dir
from ehrdiff.training import flush_denormals

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "gan_checkpoint.safetensors"
# Settings that may change between a checkpoint and its resumption (more steps = train longer).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "device")
SAMPLE_CHUNK = 8192


# ---- settings ------------------------------------------------------------------------------------------------
@dataclass
class GanConfig:
    """Settings every GAN baseline has. ``steps`` counts generator updates (each after ``n_critic`` critic updates
    where the model has a critic); autoencoder pre-training, where there is one, adds ``ae_steps`` before them."""

    steps: int = 2000
    batch_size: int = 512
    seed: int = 0
    noise_dim: int = 128
    checkpoint_every: int = 500
    device: str = "auto"

    POSITIVE: ClassVar[tuple[str, ...]] = ("steps", "batch_size", "noise_dim", "checkpoint_every")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "seed" or isinstance(value, (str, bool)):
                continue
            if value < 0 or (value == 0 and f.name in self.POSITIVE):
                need = "positive" if f.name in self.POSITIVE else "zero or more"
                raise EhrdiffError(f"setting {f.name}={value} is invalid: it must be {need}")


def make_config(config_cls: type, model_name: str, overrides: dict):
    """Build a config from keyword settings, refusing unknown names and converting CLI strings ("0.001", "true")."""
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise EhrdiffError(f"{model_name} has no setting '{unknown[0]}' (its settings: {', '.join(known)})")
    values = {k: _coerce(k, known[k].default, v, model_name) for k, v in overrides.items()}
    return config_cls(**values)


def _coerce(name: str, default, value, model_name: str):
    target = type(default)
    try:
        if isinstance(value, str) and target is not str:
            if target is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return target(float(value)) if target is int and float(value).is_integer() else target(value)
        if target is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if target is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, target) and not (target is int and isinstance(value, bool)):
            return value
    except ValueError:
        pass
    wanted = {int: "a whole number", float: "a number", bool: "true or false"}.get(target, "text")
    raise EhrdiffError(f"{model_name}: setting {name}={value!r} must be {wanted}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EhrdiffError(f"device={name} was asked for but no CUDA GPU is available (use device=cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise EhrdiffError(f"unknown device '{name}' (use auto, cpu or cuda)") from None


# ---- building blocks -------------------------------------------------------------------------------------------
class ResidualGenerator(nn.Module):
    """medGAN's generator (Choi et al. 2017, sec. 3.2): layers of the code size with batch norm and shortcut
    connections, h <- h + act(BN(W h)); ReLU inside, tanh on the last layer because the code is a tanh code."""

    def __init__(self, dim: int, n_layers: int = 2) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(dim, eps=1e-3, momentum=0.01) for _ in range(n_layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i, (linear, norm) in enumerate(zip(self.linears, self.norms)):
            act = torch.tanh if i == len(self.linears) - 1 else torch.relu
            h = h + act(norm(linear(h)))
        return h


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, binary: torch.Tensor) -> torch.Tensor:
    """Autoencoder loss summed over columns: cross-entropy on 0/1 columns, squared error on continuous ones
    (medGAN uses cross-entropy for binary and squared error for count variables)."""
    recon = recon.clamp(1e-6, 1 - 1e-6)
    bce = -(target * torch.log(recon) + (1 - target) * torch.log(1 - recon))
    mse = (recon - target) ** 2
    return torch.where(binary, bce, mse).sum(dim=1).mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017, eq. 3): E[(||grad_x D(x_hat)||_2 - 1)^2], x_hat on lines between pairs."""
    alpha = torch.rand(real.shape[0], 1, generator=rng).to(real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def autoencoder_step(encoder: nn.Module, decoder: nn.Module, optimizer, batches: "Batches",
                     binary: torch.Tensor) -> dict[str, float]:
    """One pre-training step of medGAN's / CorGAN's autoencoder."""
    x = batches.real()
    loss = reconstruction_loss(decoder(encoder(x)), x, binary)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"recon": loss.item()}


@dataclass
class Batches:
    """Random training batches and noise, all drawn from one seeded generator (saved in checkpoints)."""

    data: torch.Tensor
    batch_size: int
    noise_dim: int
    rng: torch.Generator

    def real(self) -> torch.Tensor:
        rows = torch.randint(0, self.data.shape[0], (self.batch_size,), generator=self.rng)
        return self.data[rows.to(self.data.device)]

    def noise(self, n: int | None = None) -> torch.Tensor:
        n = self.batch_size if n is None else n
        return torch.randn(n, self.noise_dim, generator=self.rng).to(self.data.device)


def wgan_gp_step(critic: nn.Module, generate: Callable[[torch.Tensor], torch.Tensor], opt_critic, opt_generator,
                 batches: Batches, n_critic: int, gp_weight: float) -> dict[str, float]:
    """One generator update after ``n_critic`` critic updates (Gulrajani et al. 2017, Algorithm 1)."""
    for _ in range(n_critic):
        real = batches.real()
        with torch.no_grad():
            fake = generate(batches.noise())
        gap = critic(fake).mean() - critic(real).mean()
        loss = gap + gp_weight * gradient_penalty(critic, real, fake, batches.rng)
        opt_critic.zero_grad(set_to_none=True)
        loss.backward()
        opt_critic.step()
    loss_g = -critic(generate(batches.noise())).mean()
    opt_generator.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_generator.step()
    return {"w_dist": -gap.item(), "loss_g": loss_g.item()}


# ---- the model wrapper ---------------------------------------------------------------------------------------
class GanBaseline(Generator):
    """fit / sample / save / load for a GAN baseline. Subclasses set ``Config`` and ``sampling_nets`` and
    implement ``_build``, ``_optimizers``, ``_phases``, ``_train_step`` and ``_generate``."""

    Config: ClassVar[type] = GanConfig
    sampling_nets: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **settings) -> None:
        self.config = make_config(self.Config, self.name, settings)

    # -- subclass hooks --
    def _build(self, width: int) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def _phases(self) -> list[tuple[str, int]]:
        return [("gan", self.config.steps)]

    def _train_step(self, phase: str, batches: Batches) -> dict[str, float]:
        raise NotImplementedError

    def _generate(self, z: torch.Tensor) -> torch.Tensor:
        """Noise -> rows in the encoder's [0, 1] space."""
        raise NotImplementedError

    # -- shared --
    def get_params(self) -> dict:
        return dataclasses.asdict(self.config)

    def _init_networks(self, width: int, device: torch.device) -> None:
        # Weight initialisation draws from the global generator: seed it without disturbing the caller's state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.nets_ = {k: v.to(device) for k, v in self._build(width).items()}
        self.width_ = width
        self.device_ = device

    def fit(self, data, *, checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
            progress: bool = True) -> "GanBaseline":
        table = as_table(data)
        self.encoder_ = TableEncoder().fit(table)
        matrix = self.encoder_.transform(table)
        fingerprint = data_fingerprint(matrix)
        self._init_networks(matrix.shape[1], resolve_device(self.config.device))
        optimizers = self._opts = self._optimizers()
        rng = torch.Generator().manual_seed(self.config.seed)
        batches = Batches(torch.from_numpy(matrix).to(self.device_), self.config.batch_size, self.config.noise_dim,
                          rng)
        self._binary_mask = torch.from_numpy(self.encoder_.binary_mask).to(self.device_)
        checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
        start = 0
        if resume and checkpoint is not None and checkpoint.exists():
            start = self._load_checkpoint(checkpoint, optimizers, rng, fingerprint)
            logger.info("%s: resuming from step %d (%s)", self.name, start, checkpoint)
        elif resume:
            logger.info("%s: no checkpoint to resume from, training from the start", self.name)

        phases = self._phases()
        total = sum(n for _, n in phases)
        for net in self.nets_.values():
            net.train()
        with flush_denormals(), tqdm(total=total, initial=min(start, total), desc=f"train {self.name}",
                                     disable=not progress, leave=False) as bar:
            for step in range(start, total):
                losses = self._train_step(_phase_at(phases, step), batches)
                done = step + 1
                if checkpoint is not None and (done % self.config.checkpoint_every == 0 or done == total):
                    self._save_checkpoint(checkpoint, optimizers, rng, fingerprint, done)
                if done % 50 == 0 or done == total:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                bar.update(1)
        for net in self.nets_.values():
            net.eval()
        del self._opts  # optimiser state is only needed for training (and lives on in the checkpoint)
        self.n_train_rows_ = table.n_rows
        self.fingerprint_ = fingerprint
        return self

    def sample(self, n: int, seed: int = 0, **kwargs) -> Table:
        n = check_sample_size(n)
        if not hasattr(self, "nets_"):
            raise RuntimeError(f"{self.name} is not fitted; call fit() or load() first")
        rng = torch.Generator().manual_seed(int(seed))
        chunks = []
        with torch.no_grad():
            for start in range(0, n, SAMPLE_CHUNK):
                m = min(SAMPLE_CHUNK, n - start)
                z = torch.randn(m, self.config.noise_dim, generator=rng).to(self.device_)
                chunks.append(self._generate(z).float().cpu().numpy())
        return self.encoder_.inverse_transform(np.concatenate(chunks))

    # -- files --
    def save(self, path: str | os.PathLike) -> None:
        if not hasattr(self, "nets_"):
            raise RuntimeError(f"{self.name} is not fitted; call fit() before save()")
        tensors = {f"{net}.{k}": v for net in self.sampling_nets for k, v in self.nets_[net].state_dict().items()}
        metadata = {"model": self.name, "config": self.get_params(), "encoder": self.encoder_.to_dict(),
                    "width": self.width_, "n_train_rows": self.n_train_rows_, "data_fingerprint": self.fingerprint_}
        save_model_dir(path, metadata, tensors)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GanBaseline":
        metadata, tensors = load_model_dir(path)
        if metadata.get("model") != cls.name:
            raise ModelFileError(f"{path}: holds a '{metadata.get('model')}' model, not '{cls.name}'")
        # The device is where this machine runs it, not where it was trained.
        model = cls(**{**metadata["config"], "device": "auto"})
        model.encoder_ = TableEncoder.from_dict(metadata["encoder"])
        model._init_networks(int(metadata["width"]), resolve_device("auto"))
        for net in cls.sampling_nets:
            prefix = f"{net}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                model.nets_[net].load_state_dict(state)
            except RuntimeError as exc:
                raise ModelFileError(f"{path}: weights do not fit the {cls.name} network ({str(exc)[:120]})") from None
        for net in model.nets_.values():
            net.eval()
        model.n_train_rows_ = metadata.get("n_train_rows")
        model.fingerprint_ = metadata.get("data_fingerprint")
        return model

    def _save_checkpoint(self, path: Path, optimizers: dict, rng: torch.Generator, fingerprint: str,
                         step: int) -> None:
        """The whole training state in ONE safetensors file, written atomically (a crash keeps the old one)."""
        tensors = {"rng": rng.get_state()}
        groups = {}
        for name, net in self.nets_.items():
            tensors.update({f"net.{name}.{k}": v for k, v in net.state_dict().items()})
        for name, opt in optimizers.items():
            state = opt.state_dict()
            groups[name] = state["param_groups"]
            for pid, values in state["state"].items():
                tensors.update({f"opt.{name}.{pid}.{k}": v for k, v in values.items() if torch.is_tensor(v)})
        info = {"model": self.name, "config": self.get_params(), "step": step, "data_fingerprint": fingerprint,
                "param_groups": groups}
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"ehrdiff_checkpoint": json.dumps(info)})

    def _load_checkpoint(self, path: Path, optimizers: dict, rng: torch.Generator, fingerprint: str) -> int:
        try:
            with safe_open(str(path), framework="pt") as f:
                info = json.loads((f.metadata() or {})["ehrdiff_checkpoint"])
            tensors = load_file(str(path))
        except Exception as exc:  # a damaged or foreign file: say which and what to do
            raise ModelFileError(f"{path}: unreadable training checkpoint ({exc}); delete it or train without "
                                 "--resume") from None
        if info.get("model") != self.name:
            raise ModelFileError(f"{path}: checkpoint of a '{info.get('model')}' model, not '{self.name}'")
        ours, theirs = self.get_params(), info["config"]
        changed = [k for k in ours if k not in RESUMABLE_CHANGES and ours[k] != theirs.get(k)]
        if changed:
            raise EhrdiffError(f"{path}: checkpoint was trained with {changed[0]}={theirs.get(changed[0])!r}, not "
                               f"{ours[changed[0]]!r}; use the same settings or a new output folder")
        if info["data_fingerprint"] != fingerprint:
            raise EhrdiffError(f"{path}: checkpoint was trained on different data; use the same data or a new "
                               "output folder")
        for name, net in self.nets_.items():
            prefix = f"net.{name}."
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for name, opt in optimizers.items():
            prefix = f"opt.{name}."
            state: dict[int, dict] = {}
            for key, value in tensors.items():
                if key.startswith(prefix):
                    pid, field = key[len(prefix):].split(".", 1)
                    state.setdefault(int(pid), {})[field] = value.to(self.device_) if field != "step" else value
            opt.load_state_dict({"state": state, "param_groups": info["param_groups"][name]})
        rng.set_state(tensors["rng"])
        return int(info["step"])


def _phase_at(phases: list[tuple[str, int]], step: int) -> str:
    for name, n in phases:
        if step < n:
            return name
        step -= n
    raise IndexError(step)


def parameters(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]
