"""The randomness a privacy guarantee rests on: secret, so never the run's seed and never in the model folder.

A run's seed is saved with the model (model.json's config) and is 0 unless the user gives another. Noise drawn
from it could be drawn again by anyone holding the folder and subtracted, giving back the exact counts; and DP-SGD's
accounting assumes that the attacker knows neither which rows each Poisson batch took (the amplification by
subsampling) nor the Gaussian noise added. So every private mechanism (the release's noisy statistics, DP-SGD's
Poisson batches and gradient noise, dp-marginals and MST) draws from a secret seed instead: 62 bits of the operating
system's entropy (``secrets``), drawn by the first process and sent to the others. The seed still drives what is
not privacy noise (initial weights, the diffusion noise of the loss, sampling), but a private run is not
reproducible from it. To reproduce one anyway (tests, an audit) set ``EHRDIFF_DP_NOISE_SEED``: whoever knows that
number can undo the noise, so keep it as private as the data. A run that writes checkpoints keeps its secret next
to them (``SECRET_FILE``, readable by its owner only, written before the first checkpoint) so that a resumed run
continues the same release; the file is removed when training ends.
"""

from __future__ import annotations

import logging
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from ehrdiff.errors import EhrdiffError
from ehrdiff.fileio import PRIVATE_MODE, write_text_atomic

log = logging.getLogger(__name__)

SEED_VARIABLE = "EHRDIFF_DP_NOISE_SEED"
SECRET_FILE = "dp_noise_seed.secret"


def noise_seed(ctx=None, checkpoint_dir: str | os.PathLike | None = None, resume: bool = False) -> int:
    """The secret seed of a private run's noise: ``EHRDIFF_DP_NOISE_SEED`` when set, else the one an interrupted
    run kept in ``checkpoint_dir`` when ``resume``, else a fresh one. ``ctx`` (training.DistContext): every
    process gets the first one's."""
    value = 0
    if ctx is None or ctx.is_main:
        kept = Path(checkpoint_dir) / SECRET_FILE if checkpoint_dir is not None else None
        if os.environ.get(SEED_VARIABLE) is not None:
            value = _given()
        elif resume and kept is not None and kept.exists():
            value = int(kept.read_text())
        else:
            value = secrets.randbits(62)
            log.info("DP noise drawn from a secret seed, not the run's (%s reproduces a run: whoever knows it can "
                     "undo the noise)", SEED_VARIABLE)
    if ctx is not None and ctx.world_size > 1:
        shared = torch.tensor([value], dtype=torch.int64, device=ctx.device)
        dist.broadcast(shared, src=0)
        value = int(shared.item())
    return value


@contextmanager
def given_noise_seed(value: int) -> Iterator[None]:
    """Within the block, private runs draw their noise from ``value`` (EHRDIFF_DP_NOISE_SEED), as before it."""
    before = os.environ.get(SEED_VARIABLE)
    os.environ[SEED_VARIABLE] = str(value)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SEED_VARIABLE, None)
        else:
            os.environ[SEED_VARIABLE] = before


def noise_generator(secret: int, stream: int) -> np.random.Generator:
    """The numpy generator of one mechanism's noise: stream ``stream`` of the secret seed (all of its bits)."""
    return np.random.default_rng(np.random.SeedSequence([int(secret) % (1 << 64), stream]))


def keep_noise_seed(checkpoint_dir: str | os.PathLike | None, value: int, ctx=None) -> None:
    """Write the secret next to the checkpoints of ``checkpoint_dir`` (on the first process), for resuming."""
    if checkpoint_dir is not None and (ctx is None or ctx.is_main):
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(checkpoint_dir) / SECRET_FILE, str(value), mode=PRIVATE_MODE)


def forget_noise_seed(checkpoint_dir: str | os.PathLike | None, ctx=None) -> None:
    """Remove the secret a finished run kept for resuming (on the first process)."""
    if checkpoint_dir is not None and (ctx is None or ctx.is_main):
        (Path(checkpoint_dir) / SECRET_FILE).unlink(missing_ok=True)


def _given() -> int:
    text = os.environ[SEED_VARIABLE]
    try:
        return int(text)
    except ValueError:
        raise EhrdiffError(f"{SEED_VARIABLE}={text!r} is not an integer; unset it to draw the noise from the "
                           "operating system's entropy") from None


__all__ = ["SECRET_FILE", "SEED_VARIABLE", "forget_noise_seed", "given_noise_seed", "keep_noise_seed",
           "noise_generator", "noise_seed"]
