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

__all__ = ["evaluate_slate", "mean_colour_mse"]


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
        ``fid`` when ``fid`` is given; ``mse_other``: the same generations against the batch's next image
        (close to ``mse`` when generation ignores the input); ``mean_colour_mse``: each image's mean colour
        (the best constant image); ``token_accuracy``: generated tokens equal to the image's own. Images are
        in [0, 1]. A model in stage "dvae" gives only ``dvae_mse``, ``dvae_mse_sum`` and ``mean_colour_mse``.
    """
    device = next(model.parameters()).device
    if model.stage == "dvae":
        return _evaluate_dvae(model, stream, batches, seed, device)
    totals = dict.fromkeys(("mse", "mse_sum", "dvae_mse", "dvae_mse_sum", "ce", "ce_per_token", "mse_other",
                            "mean_colour_mse", "token_accuracy"), 0.0)
    aris: list[torch.Tensor] = []
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
            # the same generations scored against the batch's next image: as large as mse when the
            # generation ignores its input, much larger when it is the input's own
            totals["mse_other"] += float(mse_per_pixel(out["recon"], images.roll(1, dims=0)))
            totals["mean_colour_mse"] += float(mean_colour_mse(images))
            totals["token_accuracy"] += float((out["generated"] == out["tokens"]).float().mean())
            if batch["mask"] is not None:
                aris.append(fg_ari(batch["mask"], out["masks"].argmax(dim=1).cpu()))
            if fid is not None:
                fid.update(images.cpu(), out["recon"].cpu())
    result = {key: value / batches for key, value in totals.items()}
    result["fg_ari"] = mean_fg_ari(aris)
    if fid is not None:
        result["fid"] = fid.compute()
    return result


def mean_colour_mse(images: torch.Tensor) -> torch.Tensor:
    """Per-pixel MSE of each image's mean colour (the best constant image per input): the bar a
    reconstruction through the slots has to clear to show it holds more than the average colour.

    Examples:
        >>> images = torch.zeros(1, 3, 2, 2)
        >>> images[0, 0, 0] = 1.0  # top row red, bottom row black: mean red 0.5, error 0.25 on a third
        >>> round(float(mean_colour_mse(images)), 6)
        0.083333
    """
    return (images - images.mean(dim=(2, 3), keepdim=True)).pow(2).mean()


@torch.no_grad()
def _evaluate_dvae(model: SLATE, stream: BatchStream, batches: int, seed: int, device: torch.device
                   ) -> dict[str, float]:
    """Stage "dvae": the dVAE's own reconstruction (no slots or decoder are trained yet)."""
    totals = dict.fromkeys(("dvae_mse", "dvae_mse_sum", "mean_colour_mse"), 0.0)
    with seeded_eval(model, seed):
        for b in range(batches):
            images = stream.batch(b)["image"].to(device)
            _, tokens = model.tokenize(images)
            recon = model.dvae.decode_tokens(tokens, model.config.grid).clamp(0, 1)
            totals["dvae_mse"] += float(mse_per_pixel(recon, images))
            totals["dvae_mse_sum"] += float(mse_per_image_sum(recon, images))
            totals["mean_colour_mse"] += float(mean_colour_mse(images))
    return {key: value / batches for key, value in totals.items()}
