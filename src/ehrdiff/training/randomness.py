"""Reproducible randomness for training: every draw comes from a generator seeded by (seed, step, stream, ...).

The batch rows (epoch e is a permutation of the data seeded by (seed, e); epochs follow each other without gaps)
and the loss's normal draws at step s (``BatchNoise``) depend on the seed, the data and s alone, so a run resumed
from any checkpoint continues exactly like an uninterrupted one, and N processes draw what one process would.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

# stream tags for the per-step seeds (other modules take their own: private training uses 101 and 102)
BATCH_STREAM, NOISE_STREAM = 1, 2


def step_seed(seed: int, step: int, stream: int, *more: int) -> int:
    """An independent 63-bit seed for (seed, step, stream, ...)."""
    words = [seed & 0xFFFFFFFFFFFFFFFF, step, stream, *more]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


class BatchOrder:
    """Row indices of the global batch at each step: epoch e is a permutation of the rows seeded by (seed, e),
    and batches walk through the concatenated epochs (a batch may span an epoch boundary)."""

    def __init__(self, n_rows: int, batch_size: int, seed: int) -> None:
        self.n_rows, self.batch_size, self.seed = n_rows, batch_size, seed
        self._cache: dict[int, torch.Tensor] = {}
        self._generator = torch.Generator()

    def _epoch(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            self._generator.manual_seed(step_seed(self.seed, epoch, BATCH_STREAM))
            self._cache = {e: p for e, p in self._cache.items() if e >= epoch - 1}
            self._cache[epoch] = torch.randperm(self.n_rows, generator=self._generator)
        return self._cache[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch_size
        end = start + self.batch_size
        first, last = start // self.n_rows, (end - 1) // self.n_rows
        if first == last:
            offset = start - first * self.n_rows
            return self._epoch(first)[offset:offset + self.batch_size]
        joined = torch.cat([self._epoch(e) for e in range(first, last + 1)])
        offset = start - first * self.n_rows
        return joined[offset:offset + self.batch_size]


class BatchNoise:
    """Standard normal draws for one optimiser step, made in blocks of ``BLOCK`` rows of the global batch, each
    block from its own generator seeded by (seed, step, draw number, block). A process makes only the blocks
    that overlap its rows, and a row gets the same numbers however many processes share the batch."""

    BLOCK = 128

    def __init__(self, generator: torch.Generator, seed: int, step: int, lo: int, hi: int,
                 device: torch.device) -> None:
        self.generator, self.seed, self.step, self.lo, self.hi, self.device = generator, seed, step, lo, hi, device
        self.draws = 0

    # below this many numbers per block the draws stay in this thread (a thread hand-off costs more than it saves)
    PARALLEL_MIN = 1 << 16

    def randn(self, *row_shape: int) -> torch.Tensor:
        """(this process's rows, *row_shape) standard normal numbers; each call gives fresh numbers."""
        self.draws += 1
        out = torch.empty((self.hi - self.lo, *row_shape), device=self.device)
        blocks = range(self.lo // self.BLOCK, (self.hi - 1) // self.BLOCK + 1)
        workers = torch.get_num_threads()
        if (self.device.type == "cpu" and workers > 1 and len(blocks) > 1
                and self.BLOCK * math.prod(row_shape) >= self.PARALLEL_MIN):
            # PyTorch draws CPU normals in one thread per generator; the blocks have their own seeds, so they are
            # drawn side by side with the same numbers as one after another
            list(_noise_threads(workers).map(lambda block: self._fill(out, block, row_shape, torch.Generator()),
                                             blocks))
        else:
            for block in blocks:
                self._fill(out, block, row_shape, self.generator)
        return out

    def _fill(self, out: torch.Tensor, block: int, row_shape: tuple, generator: torch.Generator) -> None:
        start, end = block * self.BLOCK, (block + 1) * self.BLOCK
        generator.manual_seed(step_seed(self.seed, self.step, NOISE_STREAM, self.draws, block))
        if start >= self.lo and end <= self.hi:     # the whole block is ours: draw straight into the output
            out[start - self.lo:end - self.lo].normal_(generator=generator)
        else:                                       # a block cut by this process's rows: draw it whole, keep ours
            rows = torch.randn((self.BLOCK, *row_shape), generator=generator, device=self.device)
            a, b = max(start, self.lo), min(end, self.hi)
            out[a - self.lo:b - self.lo] = rows[a - start:b - start]


@functools.lru_cache(maxsize=None)
def _noise_threads(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ehrdiff-noise")


__all__ = ["BATCH_STREAM", "NOISE_STREAM", "BatchNoise", "BatchOrder", "step_seed"]
