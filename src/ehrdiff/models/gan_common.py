"""What the GAN baselines (medGAN, EMR-WGAN, CorGAN) share: settings, their training phases as a step of the one
training loop (``GanSteps``, run by ehrdiff.training.run_steps with its checkpoints and resume), the WGAN gradient
penalty, the latent-code generator, the autoencoder loss, and the save / load glue.

A baseline subclasses ``GanBaseline`` and supplies only its networks, its optimisers, its training phases and one
training step; everything that touches files, seeds, devices and progress lives here and in ehrdiff.training.

Every baseline works on the encoder's [0, 1] space (sigmoid outputs), so mixed tables work: the encoder's
``inverse_transform`` rounds binary columns at 0.5, un-scales continuous ones and takes the argmax of one-hot blocks.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from ehrdiff.data.encoding import TableEncoder
from ehrdiff.data.rules import rules_to_json
from ehrdiff.data.table import Table
from ehrdiff.errors import EhrdiffError, ModelFileError
from ehrdiff.models.base import Generator, as_table, check_sample_size, declared_rules
from ehrdiff.models.persistence import data_fingerprint, load_model_dir, save_model_dir
from ehrdiff.settings import check_seed, settings_from_dict
from ehrdiff.training import StepLog, resolve_device, run_steps
from ehrdiff.training.checkpoint import load_optimizer_state, optimizer_state

# Settings that may change between a checkpoint and its resumption (more steps = train longer).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "device")
SAMPLE_CHUNK = 8192
LEGACY_CHECKPOINT = "gan_checkpoint.safetensors"    # ehrdiff 0.1's GAN checkpoint, which this version cannot resume


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
            if f.name == "seed":
                check_seed(value, "setting 'seed'")
                continue
            if isinstance(value, (str, bool)):
                continue
            if value < 0 or (value == 0 and f.name in self.POSITIVE):
                need = "positive" if f.name in self.POSITIVE else "zero or more"
                raise EhrdiffError(f"setting {f.name}={value} is invalid: it must be {need}")


def make_config(config_cls: type, model_name: str, overrides: dict):
    """A baseline's config from keyword settings (unknown names refused, command-line text converted)."""
    return settings_from_dict(config_cls, overrides, model_name)


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
    @property
    def settings(self) -> dict:
        """Every setting (what ``get_params`` reports for the constructor's ``**settings``)."""
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
        self._opts = self._optimizers()
        batches = Batches(torch.from_numpy(matrix).to(self.device_), self.config.batch_size, self.config.noise_dim,
                          torch.Generator().manual_seed(self.config.seed))
        self._binary_mask = torch.from_numpy(self.encoder_.binary_mask).to(self.device_)
        if resume and checkpoint_dir is not None:
            _refuse_legacy_checkpoint(Path(checkpoint_dir))
        steps = GanSteps(self, batches)
        identity = {"model": self.name, "data": fingerprint,
                    "config": {k: v for k, v in self.get_params().items() if k not in RESUMABLE_CHANGES}}
        for net in self.nets_.values():
            net.train()
        run_steps(steps, steps.total, identity=identity, checkpoint_dir=checkpoint_dir, resume=resume,
                  progress=progress, checkpoint_every=self.config.checkpoint_every, log_every=50)
        for net in self.nets_.values():
            net.eval()
        del self._opts  # optimiser state is only needed for training (and lives on in the checkpoint)
        self.n_train_rows_ = table.n_rows
        self.fingerprint_ = fingerprint
        self.rules_ = declared_rules(table)
        return self

    def sample_table(self, n: int, seed: int = 0, **kwargs) -> Table:
        n = check_sample_size(n)
        self.check_fitted()
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
        self.check_fitted()
        tensors = {f"{net}.{k}": v for net in self.sampling_nets for k, v in self.nets_[net].state_dict().items()}
        metadata = {"model": self.name, "config": self.get_params(), "encoder": self.encoder_.to_dict(),
                    "width": self.width_, "n_train_rows": self.n_train_rows_, "data_fingerprint": self.fingerprint_,
                    "rules": rules_to_json(getattr(self, "rules_", ()))}
        save_model_dir(path, metadata, tensors)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GanBaseline":
        """The model saved at ``path``: model.json verified (persistence.read_model_metadata), each field checked."""
        metadata, tensors = load_model_dir(path)
        if metadata["model"] != cls.name:
            raise ModelFileError(f"{path}: holds a '{metadata['model']}' model, not '{cls.name}'")
        config = metadata.typed("config", dict, "an object of settings")
        try:      # the device is where this machine runs it, not where it was trained
            model = cls(**{**config, "device": "auto"})
        except EhrdiffError as exc:
            raise ModelFileError(f"{path}: invalid model settings ({exc})") from None
        model.encoder_ = metadata.encoder()
        width = metadata.typed("width", int, "a whole number")
        if width != model.encoder_.width:
            raise metadata.invalid("width", f"the encoder's width {model.encoder_.width}", width)
        model._init_networks(width, resolve_device("auto"))
        for net in cls.sampling_nets:
            prefix = f"{net}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                model.nets_[net].load_state_dict(state)
            except RuntimeError as exc:
                raise ModelFileError(f"{path}: weights do not fit the {cls.name} network ({str(exc)[:120]})") from None
        for net in model.nets_.values():
            net.eval()
        model.n_train_rows_ = metadata.typed("n_train_rows", int, "a whole number", optional=True)
        model.fingerprint_ = metadata.typed("data_fingerprint", str, "text", optional=True)
        model.rules_ = metadata.rules()
        return model



class AutoencoderGan(GanBaseline):
    """A GAN whose generator produces an autoencoder's code (medGAN, CorGAN): the autoencoder (networks
    "ae_encoder" and "decoder", optimiser "ae") is pre-trained for ``ae_steps``, then the GAN trains for ``steps``
    with rows decoded from the generator's codes. Subclasses implement ``_gan_step``."""

    def _phases(self) -> list[tuple[str, int]]:
        return [("autoencoder", self.config.ae_steps), ("gan", self.config.steps)]

    def _generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.nets_["decoder"](self.nets_["generator"](z))

    def _train_step(self, phase: str, batches: Batches) -> dict[str, float]:
        if phase == "autoencoder":
            nets = self.nets_
            return autoencoder_step(nets["ae_encoder"], nets["decoder"], self._opts["ae"], batches, self._binary_mask)
        return self._gan_step(batches)

    def _gan_step(self, batches: Batches) -> dict[str, float]:
        raise NotImplementedError


class GanSteps:
    """A baseline's training phases as a step of the one training loop: step i runs the phase it falls in
    (``_phases``: e.g. autoencoder pre-training, then the GAN). Its checkpoint state is every network, every
    optimiser and the generator that draws batches and noise."""

    def __init__(self, model: GanBaseline, batches: Batches) -> None:
        self.model, self.batches = model, batches
        self.phases = model._phases()
        self.total = sum(n for _, n in self.phases)
        self.description = f"train {model.name}"

    def __call__(self, step: int) -> StepLog:
        losses = self.model._train_step(_phase_at(self.phases, step), self.batches)
        main = losses.get("loss_g", next(iter(losses.values())))
        return StepLog(main, 1, {k: f"{v:.3g}" for k, v in losses.items()})

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {"rng": self.batches.rng.get_state()}
        meta: dict[str, Any] = {"optimizers": {}}
        for name, net in self.model.nets_.items():
            tensors.update({f"net.{name}.{k}": v for k, v in net.state_dict().items()})
        for name, opt in self.model._opts.items():
            opt_tensors, meta["optimizers"][name] = optimizer_state(opt, f"opt.{name}.")
            tensors.update(opt_tensors)
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
        try:
            for name, net in self.model.nets_.items():
                prefix = f"net.{name}."
                net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            for name, opt in self.model._opts.items():
                saved = meta["optimizers"][name]
                load_optimizer_state(opt, tensors, f"opt.{name}.", saved["groups"], saved["scalars"])
            self.batches.rng.set_state(tensors["rng"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ModelFileError(f"{path}: checkpoint does not fit this {self.model.name} model "
                                 f"({str(exc).splitlines()[0][:160]}); delete it or drop --resume") from None


def _refuse_legacy_checkpoint(folder: Path) -> None:
    if (folder / LEGACY_CHECKPOINT).exists():
        raise EhrdiffError(f"{folder / LEGACY_CHECKPOINT}: a checkpoint of ehrdiff 0.1, whose GAN checkpoints this "
                           "version cannot resume; delete it and train without --resume")


def _phase_at(phases: list[tuple[str, int]], step: int) -> str:
    for name, n in phases:
        if step < n:
            return name
        step -= n
    raise IndexError(step)


def parameters(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]
