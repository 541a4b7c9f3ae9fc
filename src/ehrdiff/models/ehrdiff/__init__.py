"""The EHRDiff model, all of it in one package.

model         EHRDiff: fit / sample / save / load, the denoiser it builds and the loss it trains
config        its settings in sections (diffusion, network, optimisation, sampling, running, conditioning, privacy)
presets       the paper's configurations and ours
conditioning  class-conditional training and classifier-free guidance
private       differentially private training (DP-SGD) and its accounting
"""

from ehrdiff.models.ehrdiff.config import EHRDiffConfig, config_from_dict
from ehrdiff.models.ehrdiff.model import (EHRDiff, build_denoiser, code_histograms, edm_row_loss, memorisation_warning,
                                          min_codes, row_refresh, training_loss)
from ehrdiff.models.ehrdiff.presets import PRESETS, make_config

__all__ = ["PRESETS", "EHRDiff", "EHRDiffConfig", "build_denoiser", "code_histograms", "config_from_dict",
           "edm_row_loss", "make_config", "memorisation_warning", "min_codes", "row_refresh", "training_loss"]
