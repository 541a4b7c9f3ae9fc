"""medGAN (Choi, Biswal, Malin, Duke, Stewart, Sun; "Generating multi-label discrete patient records using
generative adversarial networks", MLHC 2017, arXiv 1703.06490), written from the paper.

1. An autoencoder is pre-trained on the patient vectors: tanh code of size 128, sigmoid decoder, cross-entropy loss
   (squared error on continuous columns, as the paper does for counts).
2. The generator G works in the code space: 128-d Gaussian noise through two 128-d layers with batch norm and
   shortcut connections; its output is decoded by the pre-trained decoder, which is fine-tuned with G (Algorithm 1
   updates the generator and decoder parameters together).
3. The discriminator D (256-128, ReLU, sigmoid output) sees each row concatenated with its minibatch's mean
   ("minibatch averaging", sec. 3.3), which lets it spot a generator that collapses to a few rows.
4. Samples are decoded rows rounded at 0.5 (done by the table encoder for binary columns).

Paper settings vs defaults here (2-core CPU): batch 1,000 (here 512), 100 pre-training epochs and 1,000 training
epochs (here ``ae_steps`` = 4,000 and ``steps`` = 2,000 batches, whatever the data size; on sparse codes the
autoencoder needs the long pre-training: after 1,000 steps it reconstructed few codes of UCI diabetes), Adam with
learning rate 0.001 and L2 weight 0.001 on all parameters (same; applied as Adam weight decay). One D update per
G update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ehrdiff.models.base import ExperimentRole, register
from ehrdiff.models.gan_common import AutoencoderGan, Batches, GanConfig, ResidualGenerator, parameters


@dataclass
class MedGanConfig(GanConfig):
    """``noise_dim`` is also the autoencoder's code size (the paper: 128)."""

    ae_steps: int = 4000
    generator_layers: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-3
    d_steps: int = 1
    finetune_decoder: bool = True


def minibatch_average(x: torch.Tensor) -> torch.Tensor:
    """[x_i, mean_j x_j] for every row i (medGAN sec. 3.3)."""
    return torch.cat([x, x.mean(dim=0, keepdim=True).expand_as(x)], dim=1)


@register("medgan")
class MedGAN(AutoencoderGan):
    Config = MedGanConfig
    experiment = ExperimentRole(pretraining="ae_steps", quick={"noise_dim": 32})
    sampling_nets = ("generator", "decoder")

    def _build(self, width: int) -> dict[str, nn.Module]:
        code = self.config.noise_dim
        return {
            "ae_encoder": nn.Sequential(nn.Linear(width, code), nn.Tanh()),
            "decoder": nn.Sequential(nn.Linear(code, width), nn.Sigmoid()),
            "generator": ResidualGenerator(code, self.config.generator_layers),
            "discriminator": nn.Sequential(nn.Linear(2 * width, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                                           nn.Linear(128, 1)),
        }

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, nets = self.config, self.nets_
        adam = dict(lr=c.lr, weight_decay=c.weight_decay)
        g_params = [nets["generator"]] + ([nets["decoder"]] if c.finetune_decoder else [])
        return {"ae": torch.optim.Adam(parameters(nets["ae_encoder"], nets["decoder"]), **adam),
                "d": torch.optim.Adam(parameters(nets["discriminator"]), **adam),
                "g": torch.optim.Adam(parameters(*g_params), **adam)}

    def _gan_step(self, batches: Batches) -> dict[str, float]:
        nets, opts = self.nets_, self._opts
        disc = nets["discriminator"]
        for _ in range(self.config.d_steps):
            real = batches.real()
            with torch.no_grad():
                fake = self._generate(batches.noise())
            real_logit, fake_logit = disc(minibatch_average(real)), disc(minibatch_average(fake))
            loss_d = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                      + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
            opts["d"].zero_grad(set_to_none=True)
            loss_d.backward()
            opts["d"].step()
        # Non-saturating generator loss: maximise log D(Dec(G(z))) (Goodfellow et al. 2014, sec. 3).
        logit = disc(minibatch_average(self._generate(batches.noise())))
        loss_g = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        opts["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        opts["g"].step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
