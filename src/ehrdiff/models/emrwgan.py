"""EMR-WGAN (Zhang, Yan, Mesa, Sun, Malin; "Ensuring electronic medical record simulation through better training,
modeling, and evaluation", JAMIA 27(1), 2020), written from the paper.

Unlike medGAN there is no autoencoder: the generator writes the patient vector directly (sigmoid output, rounded at
0.5 by the table encoder), and the model is trained as a Wasserstein GAN with gradient penalty (Gulrajani et al.
2017): the critic has no batch norm (the penalty is per row) and takes ``n_critic`` updates per generator update.
The paper's normalisation choice is layer normalisation; here the critic uses layer norm and the generator batch
norm by default (``generator_norm="layer"`` switches the generator too).

Defaults (2-core CPU): 128-d noise, generator 256-256, critic 256-128 with LeakyReLU, Adam betas (0.5, 0.9),
gradient-penalty weight 10, 5 critic updates per generator update (the WGAN-GP paper's values), batch 512,
2,000 generator updates. The learning rate is 5e-4, not WGAN-GP's 1e-4: at CPU-sized budgets (a few thousand
updates) 1e-4 is still far from converged (benchmarks/bench_baselines.py --uci). The layer widths are our choice,
not taken from the EMR-WGAN paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ehrdiff.errors import EhrdiffError
from ehrdiff.models.base import ExperimentRole, register
from ehrdiff.models.gan_common import Batches, GanBaseline, GanConfig, parameters, wgan_gp_step


@dataclass
class EmrWganConfig(GanConfig):
    hidden_dim: int = 256
    generator_norm: str = "batch"
    lr: float = 5e-4
    beta1: float = 0.5
    beta2: float = 0.9
    n_critic: int = 5
    gp_weight: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.generator_norm not in ("batch", "layer"):
            raise EhrdiffError(f"emrwgan: generator_norm={self.generator_norm!r} must be 'batch' or 'layer'")


@register("emrwgan")
class EMRWGAN(GanBaseline):
    Config = EmrWganConfig
    experiment = ExperimentRole(quick={"noise_dim": 32, "hidden_dim": 64, "n_critic": 2})
    sampling_nets = ("generator",)

    def _build(self, width: int) -> dict[str, nn.Module]:
        c = self.config
        norm = (lambda d: nn.BatchNorm1d(d, momentum=0.01)) if c.generator_norm == "batch" else nn.LayerNorm
        h = c.hidden_dim
        generator = nn.Sequential(nn.Linear(c.noise_dim, h), norm(h), nn.ReLU(), nn.Linear(h, h), norm(h), nn.ReLU(),
                                  nn.Linear(h, width), nn.Sigmoid())
        critic = nn.Sequential(nn.Linear(width, 256), nn.LayerNorm(256), nn.LeakyReLU(0.2),
                               nn.Linear(256, 128), nn.LayerNorm(128), nn.LeakyReLU(0.2), nn.Linear(128, 1),
                               nn.Flatten(0))
        return {"generator": generator, "critic": critic}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        adam = dict(lr=c.lr, betas=(c.beta1, c.beta2))
        return {"critic": torch.optim.Adam(parameters(self.nets_["critic"]), **adam),
                "generator": torch.optim.Adam(parameters(self.nets_["generator"]), **adam)}

    def _generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.nets_["generator"](z)

    def _train_step(self, phase: str, batches: Batches) -> dict[str, float]:
        return wgan_gp_step(self.nets_["critic"], self._generate, self._opts["critic"], self._opts["generator"],
                            batches, self.config.n_critic, self.config.gp_weight)
