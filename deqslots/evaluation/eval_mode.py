"""Running a model for evaluation without touching the training run's state."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["seeded_eval"]


@contextlib.contextmanager
def seeded_eval(model: torch.nn.Module, seed: int) -> Iterator[None]:
    """Eval mode and a private CPU RNG seeded with ``seed``; both are restored on exit.

    Slot initialisation draws from the global RNG: forking it keeps evaluation deterministic and keeps
    the training RNG untouched, so a resumed run stays identical to an uninterrupted one.

    Args:
        model: the model to put in eval mode (its training flag is restored on exit).
        seed: seed of the forked CPU RNG (and of the RNG of each CUDA device holding ``model``'s parameters).

    Yields:
        None, once, with the model in eval mode and the forked RNG seeded.

    Examples:
        >>> import torch
        >>> from deqslots.evaluation.eval_mode import seeded_eval
        >>> model = torch.nn.Linear(2, 2)
        >>> state = torch.get_rng_state()
        >>> with seeded_eval(model, seed=0):
        ...     first, mode = torch.rand(2), model.training
        >>> with seeded_eval(model, seed=0):
        ...     second = torch.rand(2)
        >>> torch.equal(first, second), mode, model.training, torch.equal(torch.get_rng_state(), state)
        (True, False, True, True)
    """
    was_training = model.training
    # on a GPU the slot noise comes from that device's generator: fork it too
    devices = sorted({p.device.index for p in model.parameters() if p.device.type == "cuda"})
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        model.train(was_training)
