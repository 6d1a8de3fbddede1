"""Evaluation of SLATE: losses, reconstruction through the slot bottleneck (MSE both ways), FG-ARI of the
attention masks, and FID when a feature network is given."""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn import functional as F

from ..data.batches import BatchStream
from ..evaluation.eval_mode import seeded_eval
from ..evaluation.metrics import fg_ari, mean_fg_ari, mse_per_image_sum, mse_per_pixel
from ..evaluation.fid import FIDScore
from .model import SLATE, UPSAMPLING

__all__ = ["evaluate_slate", "mean_colour_mse", "token_oracle_fg_ari"]


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
        ``fid`` when ``fid`` is given; ``fg_ari_token_oracle``: :func:`token_oracle_fg_ari`, what masks on
        this token grid can reach; ``mse_other``: the same generations against the batch's next image
        (close to ``mse`` when generation ignores the input); ``mean_colour_mse``: each image's mean colour
        (the best constant image); ``token_accuracy``: generated tokens equal to the image's own. Images are
        in [0, 1]. A model in stage "dvae" gives only ``dvae_mse``, ``dvae_mse_sum`` and ``mean_colour_mse``.

    Examples:
        >>> import torch
        >>> from deqslots.data.batches import BatchStream
        >>> from deqslots.slate import SLATEConfig
        >>> _ = torch.manual_seed(0)
        >>> model = SLATE(SLATEConfig(resolution=8, vocab_size=8, dvae_channels=8, d_model=16, num_blocks=1,
        ...                           num_heads=2, num_slots=3, slot_dim=16, mlp_hidden=16))
        >>> metrics = evaluate_slate(model, BatchStream("shapes", "val", 8, batch_size=2, seed=0), batches=1)
        >>> sorted(metrics)  # doctest: +NORMALIZE_WHITESPACE
        ['ce', 'ce_per_token', 'dvae_mse', 'dvae_mse_sum', 'fg_ari', 'fg_ari_token_oracle', 'mean_colour_mse',
         'mse', 'mse_other', 'mse_sum', 'token_accuracy']
        >>> sorted(evaluate_slate(model.set_stage("dvae"), BatchStream("shapes", "val", 8, 2, 0), batches=1))
        ['dvae_mse', 'dvae_mse_sum', 'mean_colour_mse']
    """
    device = next(model.parameters()).device
    if model.stage == "dvae":
        return _evaluate_dvae(model, stream, batches, seed, device)
    totals = dict.fromkeys(("mse", "mse_sum", "dvae_mse", "dvae_mse_sum", "ce", "ce_per_token", "mse_other",
                            "mean_colour_mse", "token_accuracy"), 0.0)
    aris: list[torch.Tensor] = []
    oracles: list[torch.Tensor] = []
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
                oracles.append(token_oracle_fg_ari(batch["mask"], model.config.grid, model.config.mask_upsample))
            if fid is not None:
                fid.update(images.cpu(), out["recon"].cpu())
    result = {key: value / batches for key, value in totals.items()}
    result["fg_ari"] = mean_fg_ari(aris)
    result["fg_ari_token_oracle"] = mean_fg_ari(oracles)
    if fid is not None:
        result["fid"] = fid.compute()
    return result


def token_oracle_fg_ari(true_ids: torch.Tensor, grid: int, upsample: str = "nearest") -> torch.Tensor:
    """FG-ARI of an oracle that draws masks the way SLATE's attention does: on the ``grid x grid`` token grid,
    each token's share of every true object, upsampled to pixels as ``upsample`` says, then the argmax.

    What the attention masks can reach at this token size: small objects that share a token with the
    background or a neighbour cost FG-ARI however well the slots bind (on ``shapes`` at 32x32 with 8x8
    tokens, about 0.5; docs/benchmarks/notebook.md, "SLATE on a CPU").

    Args:
        true_ids: ground-truth ids ``[B, H, W]``, 0 = background.
        grid: side of the token grid (``H`` must be a multiple of it).
        upsample: ``"nearest"`` or ``"bilinear"`` (the config's ``mask_upsample``).

    Returns:
        ``float64 [B]`` FG-ARI per image (NaN without foreground), as :func:`deqslots.evaluation.metrics.fg_ari`.

    Raises:
        ValueError: the masks' height or width is not a multiple of ``grid``.

    Examples:
        >>> ids = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> ids[0, :4, :4] = 1  # an object that fills whole tokens is found exactly
        >>> token_oracle_fg_ari(ids, grid=2).tolist()
        [1.0]
        >>> ids[0, :1, :1] = 2  # a one-pixel object inside a token is not
        >>> token_oracle_fg_ari(ids, grid=2).tolist()[0] < 1.0
        True
    """
    height, width = true_ids.shape[-2:]
    if height % grid or width % grid:
        raise ValueError(f"the {height}x{width} masks do not split into a {grid}x{grid} token grid")
    shares = F.one_hot(true_ids, int(true_ids.max()) + 1).permute(0, 3, 1, 2).float()
    shares = F.avg_pool2d(shares, (height // grid, width // grid))
    up = F.interpolate(shares, size=(height, width), **UPSAMPLING[upsample])
    return fg_ari(true_ids, up.argmax(dim=1))


def mean_colour_mse(images: torch.Tensor) -> torch.Tensor:
    """Per-pixel MSE of each image's mean colour (the best constant image per input): the bar a
    reconstruction through the slots has to clear to show it holds more than the average colour.

    Args:
        images: [B, 3, H, W].

    Returns:
        A scalar tensor: the mean over images, channels and pixels of the squared difference from each image's
        per-channel mean.

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
            recon = model.decode_tokens(tokens)
            totals["dvae_mse"] += float(mse_per_pixel(recon, images))
            totals["dvae_mse_sum"] += float(mse_per_image_sum(recon, images))
            totals["mean_colour_mse"] += float(mean_colour_mse(images))
    return {key: value / batches for key, value in totals.items()}
