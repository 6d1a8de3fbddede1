"""Evaluation of a slot autoencoder (reconstruction MSE in both conventions, FG-ARI), or of SLATE."""

from __future__ import annotations

from typing import Optional

import torch

from .batches import BatchStream
from .eval_mode import seeded_eval
from .metrics import fg_ari, mean_fg_ari, mse_per_image_sum, mse_per_pixel
from .slate.evaluate import evaluate_slate
from .slate.fid import FIDScore
from .slate.model import SLATE

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model: torch.nn.Module, stream: BatchStream, batches: int = 4, seed: int = 0,
             iters: Optional[int] = None, fid: Optional[FIDScore] = None) -> dict[str, float]:
    """Mean metrics over the first ``batches`` batches of ``stream`` (the same every time).

    The slot initialisation uses its own seeded RNG, so evaluation neither depends on nor disturbs the
    training RNG (a resumed run stays identical to an uninterrupted one). A :class:`deqslots.SLATE`
    model is evaluated by :func:`deqslots.slate.evaluate.evaluate_slate` (its metrics, and FID when a
    :class:`~deqslots.slate.fid.FIDScore` is passed as ``fid``).

    Returns:
        ``mse`` (mean per pixel and channel, images in [0, 1]), ``mse_sum`` (per-image sum of squared
        errors with images in [0, 1], averaged: SLATE's / the paper's Table 3 convention) and
        ``fg_ari`` (mean over images with foreground; NaN when the data has no masks).
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"evaluation needs at least one batch (--batches N with N >= 1); got {batches!r}")
    if isinstance(model, SLATE):
        return evaluate_slate(model, stream, batches, seed=seed, iters=iters, fid=fid)
    if fid is not None:
        raise ValueError("FID is computed for SLATE runs only (reconstructions through the slot bottleneck)")
    totals = {"mse": 0.0, "mse_sum": 0.0}
    aris: list[torch.Tensor] = []
    device = next(model.parameters()).device
    with seeded_eval(model, seed):
        for b in range(batches):
            batch = stream.batch(b)
            images = batch["image"].to(device)
            out = model(images, iters=iters)
            totals["mse"] += float(mse_per_pixel(out["recon"], images))
            totals["mse_sum"] += float(mse_per_image_sum(out["recon"], images))
            if batch["mask"] is not None:
                aris.append(fg_ari(batch["mask"], out["masks"].argmax(dim=1).cpu()))
    result = {key: value / batches for key, value in totals.items()}
    result["fg_ari"] = mean_fg_ari(aris)
    return result
