"""Thread limits for work that runs beside other jobs on a few shared cores.

scikit-learn's gradient boosting and torch both spin OpenMP threads while they wait; with more threads than free
cores a short fit can take minutes. ``limit_threads(n)`` caps torch, BLAS and OpenMP for a block and restores them.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def limit_threads(threads: int | None, *, torch_only: bool = False) -> Iterator[None]:
    """Run the block with at most ``threads`` torch threads (and BLAS / OpenMP ones unless ``torch_only``);
    ``None`` changes nothing."""
    if threads is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with contextlib.nullcontext() if torch_only else threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(previous)


__all__ = ["limit_threads"]
