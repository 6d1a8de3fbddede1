"""The schedules of a run: the learning rate (Slot Attention's linear warm-up, then exponential decay; each
switchable), SLATE's plateau halving (:class:`Plateau`) and its Gumbel-softmax temperature (cosine annealing)."""

from __future__ import annotations

import math
from typing import Optional, Union

__all__ = ["learning_rate", "Plateau", "cosine_anneal"]


def learning_rate(step: int, base: float, warmup_steps: int = 0, decay_rate: float = 0.5,
                  decay_steps: Optional[int] = None) -> float:
    """``base * min(1, (step + 1) / warmup) * decay_rate ** (step / decay_steps)``.

    Args:
        step: 0-based optimisation step.
        base: peak learning rate.
        warmup_steps: 0 disables the warm-up.
        decay_rate: factor per ``decay_steps`` (Slot Attention: 0.5 per 100k).
        decay_steps: None disables the decay.

    Returns:
        The learning rate for ``step``.

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


class Plateau:
    """SLATE's learning-rate rule: every rate halves after ``patience`` evaluations in a row without a new best
    validation loss (its train.py counts epochs); ``patience`` 0 = never. Its state goes into checkpoints.

    Args:
        patience: evaluations in a row without a new best before the rates halve; 0 switches the rule off.
        best: the lowest loss seen so far (``inf`` before the first evaluation).
        stale: evaluations since the last new best (or since the last halving).
        factor: the current multiplier of every learning rate (1.0, then 0.5, 0.25, ...).

    Examples:
        >>> rule = Plateau(2)
        >>> for loss in (3.0, 2.0, 2.5, 2.1, 1.0, 1.5, 1.5):
        ...     rule.update(loss)
        >>> rule.factor, rule.best
        (0.25, 1.0)
        >>> Plateau(2, **rule.state()).factor  # restored from a checkpoint
        0.25
    """

    def __init__(self, patience: int, best: float = math.inf, stale: int = 0, factor: float = 1.0) -> None:
        self.patience, self.best, self.stale, self.factor = patience, best, stale, factor

    def update(self, loss: float) -> None:
        """Count one evaluation's loss (NaN counts as no improvement).

        Args:
            loss: the validation loss of this evaluation; lower is better.
        """
        if not self.patience:
            return
        if loss < self.best:
            self.best, self.stale = loss, 0
            return
        self.stale += 1
        if self.stale >= self.patience:
            self.factor, self.stale = self.factor / 2.0, 0

    def state(self) -> dict[str, Union[float, int]]:
        """What a checkpoint stores: ``best``, ``stale`` and ``factor`` (``Plateau(patience, **state)`` restores it).

        Returns:
            The rule's counters by constructor argument name (``patience`` excluded: it comes from the config):
            ``best`` and ``factor`` floats, ``stale`` an int.
        """
        return {"best": self.best, "stale": self.stale, "factor": self.factor}


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

    Raises:
        ValueError: when ``steps`` is negative.

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
