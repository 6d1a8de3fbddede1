"""Evaluation of SLATE: losses, reconstruction through the slot bottleneck (MSE both ways), FG-ARI of the
attention masks, and FID when a feature network is given."""

from __future__ import annotations

from typing import Optional

import torch

from ..batches import BatchStream
from ..eval_mode import seeded_eval
from ..metrics import fg_ari, mean_fg_ari, mse_per_image_sum, mse_per_pixel
from .fid import FIDScore
from .model import SLATE

__all__ = ["evaluate_slate"]


@torch.no_grad()
def evaluate_slate(model: SLATE, stream: BatchStream, batches: int = 4, seed: int = 0, iters: Optional[int] = None,
                   fid: Optional[FIDScore] = None, use_cache: bool = True) -> dict[str, float]:
    """Mean metrics over the first ``batches`` batches of ``stream`` (the same every time).

    Slot initialisation noise comes from a forked RNG seeded with ``seed``, so evaluating neither depends
    on nor disturbs the training RNG (resumed runs stay exact).

    Args:
        model: the SLATE model (evaluated in eval mode; its mode is restored).
        stream: the data.
        batches: how many batches.
        seed: seed of the slot noise.
        iters: slot-attention iterations (default: the model's).
        fid: a :class:`FIDScore` to fill with (real, reconstructed) pairs; None skips FID.
        use_cache: generate with the key/value cache.

    Returns:
        ``mse`` / ``mse_sum``: reconstruction through the slots (tokens generated from the slots, then
        decoded) per pixel and as the per-image sum (the paper's Table 3); ``dvae_mse`` / ``dvae_mse_sum``:
        the image's own tokens decoded (the dVAE's limit); ``ce`` / ``ce_per_token``: token cross-entropy
        (teacher forcing); ``fg_ari``: of the slots' attention masks (NaN without ground-truth masks);
        ``fid`` when ``fid`` is given. Images are in [0, 1].
    """
    totals = {"mse": 0.0, "mse_sum": 0.0, "dvae_mse": 0.0, "dvae_mse_sum": 0.0, "ce": 0.0, "ce_per_token": 0.0}
    aris: list[torch.Tensor] = []
    device = next(model.parameters()).device
    with seeded_eval(model, seed):
        for b in range(batches):
            batch = stream.batch(b)
            images = batch["image"].to(device)
            losses = model(images, iters=iters)
            out = model.reconstruct(images, iters=iters, use_cache=use_cache)
            totals["ce"] += float(losses["ce"])
            totals["ce_per_token"] += float(losses["ce_per_token"])
            totals["mse"] += float(mse_per_pixel(out["recon"], images))
            totals["mse_sum"] += float(mse_per_image_sum(out["recon"], images))
            totals["dvae_mse"] += float(mse_per_pixel(out["recon_dvae"], images))
            totals["dvae_mse_sum"] += float(mse_per_image_sum(out["recon_dvae"], images))
            if batch["mask"] is not None:
                aris.append(fg_ari(batch["mask"], out["masks"].argmax(dim=1).cpu()))
            if fid is not None:
                fid.update(images.cpu(), out["recon"].cpu())
    result = {key: value / batches for key, value in totals.items()}
    result["fg_ari"] = mean_fg_ari(aris)
    if fid is not None:
        result["fid"] = fid.compute()
    return result
