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
