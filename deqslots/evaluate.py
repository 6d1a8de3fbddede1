"""Evaluation of any registered model (:mod:`deqslots.models`), and the colour-only control beside its FG-ARI."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .batches import BatchStream
from .metrics import colour_baseline_fg_ari, mean_fg_ari
from .models import MODELS, kind_of
from .slate.fid import FIDScore

__all__ = ["evaluate", "colour_control"]


@torch.no_grad()
def evaluate(model: torch.nn.Module, stream: BatchStream, batches: int = 4, seed: int = 0,
             iters: Optional[int] = None, fid: Optional[FIDScore] = None) -> dict[str, float]:
    """Mean metrics over the first ``batches`` batches of ``stream`` (the same every time), by the model's kind.

    The slot initialisation uses its own seeded RNG, so evaluation neither depends on nor disturbs the
    training RNG (a resumed run stays identical to an uninterrupted one). The metrics are those of the
    model's :meth:`deqslots.protocol.ModelKind.evaluate`; a :class:`deqslots.SLATE` model is evaluated by
    :func:`deqslots.slate.evaluate.evaluate_slate` (its metrics, and FID when a
    :class:`~deqslots.slate.fid.FIDScore` is passed as ``fid``).

    Returns:
        For a :class:`deqslots.SlotAutoencoder`: ``mse`` (mean per pixel and channel, images in [0, 1]),
        ``mse_sum`` (per-image sum of squared errors with images in [0, 1], averaged: SLATE's / the paper's
        Table 3 convention) and ``fg_ari`` (mean over images with foreground; NaN when the data has no masks).
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"evaluation needs at least one batch (--batches N with N >= 1); got {batches!r}")
    kind = kind_of(model)
    if fid is not None and not kind.fid:
        with_fid = ", ".join(k.title for k in MODELS.values() if k.fid)
        raise ValueError(f"FID is computed for {with_fid} runs only (reconstructions through the slot bottleneck)")
    return kind.evaluate(model, stream, batches, seed=seed, iters=iters, fid=fid)


def colour_control(stream: BatchStream, batches: int, seed: int = 0, fg_ari: Optional[float] = None
                   ) -> dict[str, Optional[float]]:
    """The colour-only control on the images :func:`evaluate` scores: k-means on pixel RGB with k = true
    objects + 1 per image (:func:`deqslots.metrics.colour_baseline_fg_ari`), mean FG-ARI over the first
    ``batches`` batches of ``stream``, and a model's margin over it.

    A model's FG-ARI says it found objects only by its margin over this number: on flat, distinct colours
    (``shapes``) colour alone scores about 1.0, on scenes whose objects share a hue (``same-hue``) about 0.

    Args:
        stream, batches: the images (those of the model's evaluation, for a fair comparison).
        seed: k-means random state.
        fg_ari: the model's FG-ARI on the same images, for the margin (None: no margin).

    Returns:
        ``colour_fg_ari`` and ``fg_ari_margin`` (``fg_ari - colour_fg_ari``), NaN when the data has no masks
        (null in the JSON reports) or the model gave no FG-ARI.

    Examples:
        >>> from deqslots.batches import BatchStream
        >>> c = colour_control(BatchStream("shapes", "val", 32, 4, 0), batches=1, fg_ari=0.9)
        >>> c["colour_fg_ari"] > 0.97, c["fg_ari_margin"] == 0.9 - c["colour_fg_ari"]
        (True, True)
    """
    scores: list[torch.Tensor] = []
    for b in range(batches):
        batch = stream.batch(b)
        if batch["mask"] is not None:
            scores.append(colour_baseline_fg_ari(batch["image"], batch["mask"], seed=seed))
    colour = mean_fg_ari(scores)
    margin = fg_ari - colour if fg_ari is not None else math.nan
    return {"colour_fg_ari": colour, "fg_ari_margin": margin}
