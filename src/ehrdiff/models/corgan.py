"""CorGAN (Torfi, Fox; "CorGAN: correlation-capturing convolutional generative adversarial networks for generating
synthetic healthcare records", FLAIRS 2020, arXiv 2001.09346), written from the paper.

1. A 1-D convolutional autoencoder is pre-trained on the patient vector (treated as a one-channel signal, so
   neighbouring columns share filters): strided convolutions down to a tanh code, transposed convolutions back up,
   sigmoid output with a bias per column. The autoencoder's hidden layers use batch norm: without it, on UCI
   diabetes codes (882 columns, about 4 ones per row) it learned only the prevalences and reconstructed no code.
2. A generator (medGAN-style residual MLP with batch norm) produces the autoencoder's code, which the pre-trained
   decoder turns into a patient vector. The decoder stays frozen by default (``finetune_decoder=True`` trains it
   with the generator, as medGAN does): on our block-structured test data the frozen decoder learned the
   co-occurrence structure faster.
3. A 1-D convolutional critic scores decoded vectors. Our choice of loss: Wasserstein with gradient penalty
   (Gulrajani et al. 2017) rather than weight clipping, for stable training without tuning the clipping range;
   therefore no normalisation layers in the critic.

The vector is zero-padded to a multiple of 16 for two stride-4 stages and cropped after decoding, so any width
works, mixed tables included. Defaults (2-core CPU): code 128; 8-16 channels, kernel 8, stride 4 (the critic's cost
grows with channels squared times the width, and it runs 5 times per generator update plus the penalty's double
backward, so it is kept small); autoencoder Adam lr 1e-3 for 2,000 steps, then 2,000 generator updates (5 critic
updates each) with Adam lr 5e-4 (as EMR-WGAN here; WGAN-GP's 1e-4 is too slow for CPU budgets), betas
(0.5, 0.9), penalty weight 10, batch 256 (half the other GANs' default: a CorGAN update costs several times an
EMR-WGAN update on CPU; benchmarks/bench_baselines.py measures both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ehrdiff.models.base import ExperimentRole, register
from ehrdiff.models.gan_common import (AutoencoderGan, Batches, GanConfig, ResidualGenerator, parameters,
                                       wgan_gp_step)

# Two convolution stages, each dividing the length by 4 (kernel 8, stride 4): the padded width is a multiple of 16.
# Wider kernels and strides than image GANs keep the critic's cost at CPU scale for ~1,000-column vectors.
STAGES, KERNEL, STRIDE = 2, 8, 4
PAD = (KERNEL - STRIDE) // 2


@dataclass
class CorGanConfig(GanConfig):
    """``noise_dim`` is also the autoencoder's code size."""

    batch_size: int = 256
    ae_steps: int = 2000
    channels: int = 8
    generator_layers: int = 2
    ae_lr: float = 1e-3
    lr: float = 5e-4
    beta1: float = 0.5
    beta2: float = 0.9
    n_critic: int = 5
    gp_weight: float = 10.0
    finetune_decoder: bool = False


def _padded(width: int) -> int:
    step = STRIDE ** STAGES
    return -(-width // step) * step


def _down(channels: list[int], batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers.append(nn.Conv1d(c_in, c_out, kernel_size=KERNEL, stride=STRIDE, padding=PAD))
        layers += [nn.BatchNorm1d(c_out), nn.LeakyReLU(0.2)] if batch_norm else [nn.LeakyReLU(0.2)]
    return layers


class ConvEncoder(nn.Module):
    def __init__(self, width: int, channels: int, code: int) -> None:
        super().__init__()
        self.width, self.padded = width, _padded(width)
        chans = [1] + [channels * 2 ** i for i in range(STAGES)]
        self.convs = nn.Sequential(*_down(chans, batch_norm=True), nn.Flatten())
        self.to_code = nn.Sequential(nn.Linear(chans[-1] * self.padded // STRIDE ** STAGES, code), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, self.padded - self.width)).unsqueeze(1)
        return self.to_code(self.convs(x))


class ConvDecoder(nn.Module):
    def __init__(self, width: int, channels: int, code: int) -> None:
        super().__init__()
        self.width, self.length = width, _padded(width) // STRIDE ** STAGES
        chans = [channels * 2 ** i for i in reversed(range(STAGES))] + [1]
        self.channels0 = chans[0]
        self.from_code = nn.Linear(code, chans[0] * self.length)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
            # (L - 1) * STRIDE - 2 * PAD + KERNEL = STRIDE * L: each stage multiplies the length by 4
            layers.append(nn.ConvTranspose1d(c_in, c_out, kernel_size=KERNEL, stride=STRIDE, padding=PAD))
            if i < STAGES - 1:
                layers += [nn.BatchNorm1d(c_out), nn.LeakyReLU(0.2)]
        self.deconvs = nn.Sequential(*layers)
        # A transposed convolution shares one bias across all positions, so it cannot say that one code is common
        # and its neighbour rare; a bias per column can, and leaves the convolutions the co-occurrence structure.
        self.column_bias = nn.Parameter(torch.zeros(width))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.from_code(code), 0.2).view(-1, self.channels0, self.length)
        return torch.sigmoid(self.deconvs(h).squeeze(1)[:, :self.width] + self.column_bias)


class ConvCritic(nn.Module):
    def __init__(self, width: int, channels: int) -> None:
        super().__init__()
        self.width, self.padded = width, _padded(width)
        chans = [1] + [channels * 2 ** i for i in range(STAGES)]
        self.net = nn.Sequential(*_down(chans, batch_norm=False), nn.Flatten(),
                                 nn.Linear(chans[-1] * self.padded // STRIDE ** STAGES, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(F.pad(x, (0, self.padded - self.width)).unsqueeze(1)).squeeze(1)


@register("corgan")
class CorGAN(AutoencoderGan):
    Config = CorGanConfig
    experiment = ExperimentRole(pretraining="ae_steps", quick={"noise_dim": 32, "channels": 4, "n_critic": 2})
    sampling_nets = ("generator", "decoder")

    def _build(self, width: int) -> dict[str, nn.Module]:
        c = self.config
        return {"ae_encoder": ConvEncoder(width, c.channels, c.noise_dim),
                "decoder": ConvDecoder(width, c.channels, c.noise_dim),
                "generator": ResidualGenerator(c.noise_dim, c.generator_layers),
                "critic": ConvCritic(width, c.channels)}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, nets = self.config, self.nets_
        adam = dict(lr=c.lr, betas=(c.beta1, c.beta2))
        g_params = [nets["generator"]] + ([nets["decoder"]] if c.finetune_decoder else [])
        return {"ae": torch.optim.Adam(parameters(nets["ae_encoder"], nets["decoder"]), lr=c.ae_lr),
                "critic": torch.optim.Adam(parameters(nets["critic"]), **adam),
                "generator": torch.optim.Adam(parameters(*g_params), **adam)}

    def _gan_step(self, batches: Batches) -> dict[str, float]:
        nets, opts = self.nets_, self._opts
        # A frozen decoder keeps its batch-norm statistics from pre-training (eval mode) and gets no gradients.
        nets["decoder"].train(self.config.finetune_decoder)
        nets["decoder"].requires_grad_(self.config.finetune_decoder)
        return wgan_gp_step(nets["critic"], self._generate, opts["critic"], opts["generator"], batches,
                            self.config.n_critic, self.config.gp_weight)
