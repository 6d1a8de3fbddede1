"""Evaluation of any registered model (:mod:`deqslots.training.registry`), by its kind."""

from __future__ import annotations

from typing import Optional

import torch

from ..data.batches import BatchStream
from ..training.registry import MODELS, kind_of
from .fid import FIDScore

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model: torch.nn.Module, stream: BatchStream, batches: int = 4, seed: int = 0,
             iters: Optional[int] = None, fid: Optional[FIDScore] = None) -> dict[str, float]:
    """Mean metrics over the first ``batches`` batches of ``stream`` (the same every time), by the model's kind.

    The slot initialisation uses its own seeded RNG, so evaluation neither depends on nor disturbs the
    training RNG (a resumed run stays identical to an uninterrupted one). The metrics are those of the
    model's :meth:`deqslots.training.protocol.ModelKind.evaluate`; a :class:`deqslots.SLATE` model is evaluated by
    :func:`deqslots.slate.evaluate.evaluate_slate` (its metrics, and FID when a
    :class:`~deqslots.evaluation.fid.FIDScore` is passed as ``fid``).

    Args:
        model: a model of a registered kind (e.g. :class:`deqslots.SlotAutoencoder`, :class:`deqslots.SLATE`).
        stream: the evaluation data.
        batches: how many of its batches, from the first (at least 1).
        seed: seed of the private RNG the slot noise is drawn from.
        iters: slot-attention iterations for this evaluation (None: the model's evaluation default).
        fid: a scorer that also computes FID on the reconstructions (kinds with FID only: SLATE); None = no FID.

    Returns:
        For a :class:`deqslots.SlotAutoencoder`: ``mse`` (mean per pixel and channel, images in [0, 1]),
        ``mse_sum`` (per-image sum of squared errors with images in [0, 1], averaged: SLATE's / the paper's
        Table 3 convention) and ``fg_ari`` (mean over images with foreground; NaN when the data has no masks).
        For other kinds, the keys of their :meth:`~deqslots.training.protocol.ModelKind.evaluate`.

    Raises:
        ValueError: ``batches`` is not a positive int, no registered kind builds ``model``'s class, or ``fid``
            is given for a kind without FID.

    Examples:
        >>> import torch
        >>> from deqslots.data.batches import BatchStream
        >>> from deqslots.evaluation.evaluate import evaluate
        >>> from deqslots.slot_attention import SlotAutoencoder, config_for
        >>> _ = torch.manual_seed(0)
        >>> model = SlotAutoencoder(config_for("cpu-small", resolution=16, num_slots=3, iters=2))
        >>> metrics = evaluate(model, BatchStream("shapes", "val", 16, 2, 0), batches=1)
        >>> sorted(metrics), 0.0 <= metrics["mse"] <= 1.0
        (['fg_ari', 'mse', 'mse_sum'], True)
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"evaluation needs at least one batch (--batches N with N >= 1); got {batches!r}")
    kind = kind_of(model)
    if fid is not None and not kind.fid:
        with_fid = ", ".join(k.title for k in MODELS.values() if k.fid)
        raise ValueError(f"FID is computed for {with_fid} runs only (reconstructions through the slot bottleneck)")
    return kind.evaluate(model, stream, batches, seed=seed, iters=iters, fid=fid)
