"""Learning-rate schedule of Slot Attention: linear warm-up, then exponential decay; each switchable."""

from __future__ import annotations

from typing import Optional

__all__ = ["learning_rate"]


def learning_rate(step: int, base: float, warmup_steps: int = 0, decay_rate: float = 0.5,
                  decay_steps: Optional[int] = None) -> float:
    """``base * min(1, (step + 1) / warmup) * decay_rate ** (step / decay_steps)``.

    Args:
        step: 0-based optimisation step.
        base: peak learning rate.
        warmup_steps: 0 disables the warm-up.
        decay_rate: factor per ``decay_steps`` (Slot Attention: 0.5 per 100k).
        decay_steps: None disables the decay.

    Examples:
        >>> learning_rate(0, 4e-4, warmup_steps=4)
        0.0001
        >>> learning_rate(100, 1.0, decay_steps=100)
        0.5
    """
    lr = base
    if warmup_steps > 0:
        lr *= min(1.0, (step + 1) / warmup_steps)
    if decay_steps:
        lr *= decay_rate ** (step / decay_steps)
    return lr
