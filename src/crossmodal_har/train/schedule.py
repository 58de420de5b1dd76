"""Learning-rate schedule: linear warmup then cosine decay, as a pure function of the step.

A pure function (rather than a stateful scheduler object) makes resuming exact by construction:
the only state is the step counter, which the checkpoint stores.
"""

from __future__ import annotations

import math


def warmup_cosine_lr(step: int, total_steps: int, lr: float, final_lr: float, warmup_steps: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based) of ``total_steps``.

    Linear from ``lr / warmup_steps`` up to ``lr`` over the first ``warmup_steps`` steps, then a
    half cosine from ``lr`` down to ``final_lr`` reached at the last step.
    """
    if total_steps <= 0:
        raise ValueError("total_steps must be > 0")
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return final_lr + 0.5 * (lr - final_lr) * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(total_steps: int, warmup_fraction: float) -> int:
    """Number of warmup steps: ``warmup_fraction`` of the run, rounded (0 if the fraction is 0)."""
    return int(round(total_steps * warmup_fraction))
