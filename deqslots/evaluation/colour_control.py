"""The colour-only control beside every FG-ARI: what k-means on pixel colour alone scores on the same images."""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..data.batches import BatchStream
from .metrics import colour_baseline_fg_ari, mean_fg_ari

__all__ = ["colour_control"]


def colour_control(stream: BatchStream, batches: int, seed: int = 0, fg_ari: Optional[float] = None
                   ) -> dict[str, Optional[float]]:
    """The colour-only control on the images :func:`evaluate` scores: k-means on pixel RGB with k = true
    objects + 1 per image (:func:`deqslots.evaluation.metrics.colour_baseline_fg_ari`), mean FG-ARI over the first
    ``batches`` batches of ``stream``, and a model's margin over it.

    A model's FG-ARI says it found objects only by its margin over this number: on flat, distinct colours
    (``shapes``) colour alone scores about 1.0, on scenes whose objects share a hue (``same-hue``) about 0.

    Args:
        stream: the images (those of the model's evaluation, for a fair comparison).
        batches: how many of its batches, from the first.
        seed: k-means random state.
        fg_ari: the model's FG-ARI on the same images, for the margin (None: no margin).

    Returns:
        ``colour_fg_ari`` and ``fg_ari_margin`` (``fg_ari - colour_fg_ari``), NaN when the data has no masks
        (null in the JSON reports) or the model gave no FG-ARI.

    Examples:
        >>> from deqslots.data.batches import BatchStream
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
