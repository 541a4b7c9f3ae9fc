"""The paper's mathematics, one concept per module (nothing here knows about files or tables).

preconditioning  EDM's c_skip, c_out, c_in, c_noise, the denoiser D(x; sigma), loss weight and training loss
schedule         the Karras et al. noise levels used by the sampler
sampler          the deterministic Heun sampler (the paper's) and a stochastic ancestral one
network          the MLP F(x; c_noise) of EHRDiff and its noise-level embeddings
"""

from ehrdiff.diffusion.network import MLPDenoiserNet, NoiseEmbedding, RandomFourierEmbedding, SinusoidalEmbedding
from ehrdiff.diffusion.preconditioning import (Denoiser, EDMLoss, c_in, c_noise, c_out, c_skip, loss_weight,
                                               training_sigma)
from ehrdiff.diffusion.sampler import ancestral_sampler, heun_sampler
from ehrdiff.diffusion.schedule import karras_sigmas

__all__ = ["Denoiser", "ancestral_sampler", "EDMLoss", "MLPDenoiserNet", "NoiseEmbedding", "RandomFourierEmbedding",
           "SinusoidalEmbedding", "c_in", "c_noise", "c_out", "c_skip", "heun_sampler", "karras_sigmas", "loss_weight",
           "training_sigma"]
