"""The learning-rate schedule and the EMA decay of the official EHRDiff code."""

from __future__ import annotations

import math


def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero, for 0-based ``step`` (the formula of transformers'
    ``get_cosine_schedule_with_warmup``, which the official EHRDiff code uses)."""
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def ema_decay(n_updates: int, max_decay: float = 0.999) -> float:
    """EMA decay for update number ``n_updates`` (1 for the first): min(max_decay, (1 + n) / (10 + n)),
    the warm-started EMA of the official code (as in score_sde's ExponentialMovingAverage)."""
    return min(max_decay, (1 + n_updates) / (10 + n_updates))


__all__ = ["ema_decay", "learning_rate"]
