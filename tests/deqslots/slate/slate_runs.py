"""Tiny SLATE training runs shared by the SLATE test files: a config builder and the metrics reader."""

from __future__ import annotations

import csv
from pathlib import Path

from deqslots.training.config import TrainConfig


def tiny_slate_config(out: Path, **kw) -> TrainConfig:
    """A SLATE run small enough for a unit test (16x16, 3 slots, vocabulary 16); ``kw`` overrides any field."""
    base = dict(model="slate", data="shapes", resolution=16, num_slots=3, vocab_size=16, out=str(out),
                progress=False, lr=1e-3, dvae_lr=1e-3, warmup_steps=0, eval_batches=1)
    base.update(kw)
    return TrainConfig(**base)


def metrics_rows(out: Path) -> list[dict]:
    """The rows of a run's metrics.csv."""
    with open(out / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))
