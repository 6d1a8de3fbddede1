"""SLATE's Gumbel-softmax temperature schedule: cosine annealing from a start to a final value."""

from __future__ import annotations

import math

__all__ = ["cosine_anneal"]


def cosine_anneal(step: int, start: float = 1.0, final: float = 0.1, steps: int = 30_000) -> float:
    """Half a cosine from ``start`` (step 0) to ``final`` (step ``steps`` and after).

    SLATE anneals the dVAE's Gumbel-softmax temperature 1.0 -> 0.1 over the first 30k steps this way.

    Args:
        step: 0-based optimisation step.
        start: value at step 0.
        final: value from ``steps`` on.
        steps: length of the annealing; 0 switches it off (``start`` throughout).

    Returns:
        The temperature at ``step``.

    Examples:
        >>> cosine_anneal(0), cosine_anneal(30_000), cosine_anneal(15_000)
        (1.0, 0.1, 0.55)
        >>> cosine_anneal(500, steps=0)
        1.0
    """
    if steps < 0:
        raise ValueError(f"annealing steps must be >= 0 (0 = off); got {steps}")
    if steps == 0:
        return float(start)
    if step >= steps:
        return float(final)
    progress = max(step, 0) / steps
    return round(final + 0.5 * (start - final) * (1.0 + math.cos(math.pi * progress)), 12)
