"""The paper's mathematics, one concept per module (nothing here knows about files or tables).

preconditioning  EDM's c_skip, c_out, c_in, c_noise, the denoiser D(x; sigma), loss weight and training loss
schedule         the Karras et al. noise levels used by the sampler
sampler          the samplers by name (SAMPLERS): the deterministic Heun sampler (the paper's), a stochastic one
network          the MLP F(x; c_noise) of EHRDiff and its noise-level embeddings
"""

from ehrdiff.diffusion.network import MLPDenoiserNet, NoiseEmbedding, RandomFourierEmbedding, SinusoidalEmbedding
from ehrdiff.diffusion.preconditioning import (Denoiser, EDMLoss, c_in, c_noise, c_out, c_skip, loss_weight,
                                               training_sigma)
from ehrdiff.diffusion.sampler import SAMPLERS, ancestral_sampler, heun_sampler
from ehrdiff.diffusion.schedule import karras_sigmas

__all__ = ["SAMPLERS", "Denoiser", "EDMLoss", "MLPDenoiserNet", "NoiseEmbedding", "RandomFourierEmbedding",
           "SinusoidalEmbedding", "ancestral_sampler", "c_in", "c_noise", "c_out", "c_skip", "heun_sampler",
           "karras_sigmas", "loss_weight", "training_sigma"]
