"""Pretrained slot-attention autoencoders shipped with the package (no downloads).

Each entry was trained with the project's own ``deqslots train`` (the command is recorded in the entry)
and stripped of its optimizer state by :func:`export_pretrained`. The FG-ARI and MSE an entry documents
are those of :func:`evaluate_pretrained` on a fixed batch of test scenes, which the test suite checks.

Examples:
    >>> from deqslots.pretrained import PRETRAINED, load_pretrained
    >>> sorted(PRETRAINED)
    ['clevr-mirror-IN', 'clevr-mirror-vanilla', 'same-hue-IN', 'same-hue-vanilla', 'shapes-IN', 'shapes-vanilla']
    >>> model = load_pretrained("shapes-IN")
    >>> model.config.variant, model.training
    ('IN', False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Optional, Union

import torch

from ..autoencoder import AutoencoderConfig, SlotAutoencoder
from ..batches import BatchStream
from ..checkpoint import check_training_checkpoint, load_checkpoint, load_model_state, save_atomic

__all__ = ["PretrainedModel", "PRETRAINED", "FIXED_TEST_BATCH", "pretrained_path", "load_pretrained",
           "evaluate_pretrained", "export_pretrained"]

#: The fixed test batch an entry's documented metrics refer to: split, images per batch, batches, seed.
FIXED_TEST_BATCH = MappingProxyType({"split": "test", "batch_size": 64, "batches": 4, "seed": 0})


@dataclass(frozen=True)
class PretrainedModel:
    """A shipped checkpoint and what it documents.

    Attributes:
        name: the name ``deqslots eval --pretrained`` takes.
        file: file name inside this package.
        variant: slot-attention variant it was trained with.
        data: procedural data set it was trained on.
        fg_ari, mse: metrics of :func:`evaluate_pretrained` on :data:`FIXED_TEST_BATCH` (test split).
        steps, seconds: training length and wall-clock time on the 2-core CPU it was trained on.
        command: the ``deqslots train`` command that trained it.
    """

    name: str
    file: str
    variant: str
    data: str
    fg_ari: float
    mse: float
    steps: int
    seconds: float
    command: str


def _command(variant: str, steps: int) -> str:
    return (f"deqslots train --config cpu-small --data shapes --variant {variant} --steps {steps} --batch-size 16 "
            f"--lr 6e-4 --warmup-steps 200 --eval-every 500 --eval-batches 8 --seed 0 --threads 1 "
            f"--out runs/pretrained-{variant}")


def _objects_command(data: str, variant: str) -> str:
    # cpu-objects' recipe (batch 16, lr 6e-4, warm-up 200, eval every 500) at 8,000 of its 15,000 steps, with
    # the slow lr decay (halving every 100,000 steps) that was the default when these were trained
    return (f"deqslots train --config cpu-objects --data {data} --variant {variant} --steps 8000 "
            f"--decay-steps 100000 --seed 0 --threads 1 --out runs/{data}-{variant}")


PRETRAINED = MappingProxyType({
    "shapes-IN": PretrainedModel("shapes-IN", "shapes-IN.pt", "IN", "shapes", fg_ari=0.8580,
                                 mse=7.616e-04, steps=12000, seconds=762,
                                 command=_command("IN", 12000)),
    "shapes-vanilla": PretrainedModel("shapes-vanilla", "shapes-vanilla.pt", "vanilla", "shapes",
                                      fg_ari=0.8553, mse=1.546e-03,
                                      steps=12000, seconds=884, command=_command("vanilla", 12000)),
    # Where colour fails (issue #11): decoder masks (`cpu-objects`); the colour-only control scores about 0.005
    # on same-hue and 0.38 on clevr-mirror (BENCHMARKS.md, "Objects, not colours"). Seconds: 1 torch thread
    # with another run beside it (clevr-mirror-vanilla: with five other jobs on the 2 cores).
    "same-hue-IN": PretrainedModel("same-hue-IN", "same-hue-IN.pt", "IN", "same-hue", fg_ari=0.4620,
                                   mse=8.598e-03, steps=8000, seconds=1079,
                                   command=_objects_command("same-hue", "IN")),
    "same-hue-vanilla": PretrainedModel("same-hue-vanilla", "same-hue-vanilla.pt", "vanilla", "same-hue",
                                        fg_ari=0.4622, mse=9.647e-03, steps=8000, seconds=1089,
                                        command=_objects_command("same-hue", "vanilla")),
    "clevr-mirror-IN": PretrainedModel("clevr-mirror-IN", "clevr-mirror-IN.pt", "IN", "clevr-mirror",
                                       fg_ari=0.2140, mse=4.670e-03, steps=8000, seconds=1151,
                                       command=_objects_command("clevr-mirror", "IN")),
    "clevr-mirror-vanilla": PretrainedModel("clevr-mirror-vanilla", "clevr-mirror-vanilla.pt", "vanilla",
                                            "clevr-mirror", fg_ari=0.2641, mse=5.982e-03, steps=8000, seconds=2637,
                                            command=_objects_command("clevr-mirror", "vanilla")),
})


def _entry(name: str) -> PretrainedModel:
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; choose one of {', '.join(sorted(PRETRAINED))}")
    return PRETRAINED[name]


def pretrained_path(name: str) -> Path:
    """Path of the shipped checkpoint ``name`` (one of :data:`PRETRAINED`)."""
    path = Path(str(resources.files(__name__).joinpath(_entry(name).file)))
    if not path.is_file():
        raise FileNotFoundError(f"the pretrained checkpoint {path} is missing from this installation; "
                                "reinstall deqslots (pip install -e .) or train one with the entry's command")
    return path


def load_pretrained(name: str) -> SlotAutoencoder:
    """The shipped model ``name`` in eval mode, on the CPU.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    path = pretrained_path(name)
    state = load_checkpoint(path)
    model = SlotAutoencoder(AutoencoderConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                 for k, v in state["model_config"].items()}))
    load_model_state(model, state, path)
    return model.eval()


@torch.no_grad()
def evaluate_pretrained(name: str, split: str = FIXED_TEST_BATCH["split"],
                        batches: int = FIXED_TEST_BATCH["batches"],
                        model: Optional[SlotAutoencoder] = None) -> dict[str, float]:
    """MSE and FG-ARI of the shipped model ``name`` on fixed batches of its data set's ``split``.

    ``model``: ``load_pretrained(name)`` when the caller already holds it (None loads it).
    """
    from ..evaluate import evaluate

    entry = _entry(name)
    model = load_pretrained(name) if model is None else model
    stream = BatchStream(entry.data, split, model.config.resolution, FIXED_TEST_BATCH["batch_size"],
                         FIXED_TEST_BATCH["seed"])
    return evaluate(model, stream, batches, seed=FIXED_TEST_BATCH["seed"])


def export_pretrained(run: Union[str, Path], out: Union[str, Path]) -> Path:
    """Write a run's checkpoint without its optimizer state (what ships), atomically; returns ``out``."""
    source = Path(run) / "checkpoint.pt"
    state = load_checkpoint(source)
    check_training_checkpoint(state, source)
    if state["train_config"].get("model", "slot-attention") != "slot-attention":
        raise ValueError(f"{source} is a {state['train_config']['model']} run; only slot-attention runs ship")
    keep = {"model": state["model"], "model_config": state["model_config"], "train_config": state["train_config"],
            "step": state["step"], "format": state.get("format", 1)}
    save_atomic(keep, out)
    os.chmod(out, 0o644)  # package data: readable by everyone (the atomic write's temporary file is private)
    return Path(out)
