"""Slot Attention's object-discovery autoencoder as a :class:`deqslots.training.protocol.ModelKind` (``--model
slot-attention``): per-pixel MSE, the MSEs and FG-ARI at evaluation, slots.png."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Optional

import torch

from .config import RECIPES, AutoencoderConfig, config_for
from .autoencoder import SlotAutoencoder
from ..data.batches import BatchStream
from ..evaluation.eval_mode import seeded_eval
from ..evaluation.figures import plot_segmentation_grid, plot_slot_grid
from ..evaluation.metrics import fg_ari, mean_fg_ari, mse_per_image_sum, mse_per_pixel
from ..training.protocol import ModelKind, config_changes

__all__ = ["SlotAttentionKind", "METRIC_COLUMNS"]

METRIC_COLUMNS = ["step", "loss", "lr", "grad_norm", "elapsed_s", "val_mse", "val_mse_sum", "val_fg_ari"]


class SlotAttentionKind(ModelKind):
    """:class:`deqslots.SlotAutoencoder` trained on per-pixel MSE with Slot Attention's recipe (Adam 4e-4,
    warm-up min(10000, steps / 10), halving every 100000 steps, no clipping).

    Examples:
        >>> import torch
        >>> from deqslots.data.batches import BatchStream
        >>> from deqslots.slot_attention import SlotAutoencoder, config_for
        >>> from deqslots.slot_attention.kind import SlotAttentionKind
        >>> kind = SlotAttentionKind()
        >>> _ = torch.manual_seed(0)
        >>> model = SlotAutoencoder(config_for("cpu-small", resolution=16, num_slots=3, iters=2))
        >>> metrics = kind.evaluate(model, BatchStream("shapes", "val", 16, 2, 0), batches=1, seed=0)
        >>> kind.name, sorted(metrics)
        ('slot-attention', ['fg_ari', 'mse', 'mse_sum'])
    """

    name = "slot-attention"
    title = "Slot Attention"
    model_class = SlotAutoencoder
    metric_columns = METRIC_COLUMNS
    defaults = MappingProxyType(dict(lr=4e-4, grad_clip=None, grad_clip_type="l2", warmup_cap=10_000,
                                     decay=100_000))
    recipes = RECIPES
    scene_figure_name = "segmentations.png"

    def model_config(self, config) -> AutoencoderConfig:
        return config_for(config.config, **config_changes(config))

    def loss(self, model, config, images, step):
        # the forward goes through the (possibly DistributedDataParallel-wrapped) model so that gradients sync
        return getattr(model, "module", model).loss(images, step, out=model(images)), {}

    @torch.no_grad()
    def evaluate(self, model: SlotAutoencoder, stream: BatchStream, batches: int, seed: int,
                 iters: Optional[int] = None, fid=None) -> dict[str, float]:
        """``mse`` (mean per pixel and channel, images in [0, 1]), ``mse_sum`` (per-image sum of squared
        errors, averaged: SLATE's / the paper's Table 3 convention) and ``fg_ari`` (mean over images with
        foreground; NaN when the data has no masks).

        Args:
            model: the autoencoder (evaluated in eval mode, restored afterwards).
            stream: the evaluation data.
            batches: how many of its batches, from the first.
            seed: seed of the private RNG the slot noise is drawn from (the training RNG is left untouched).
            iters: slot-attention iterations for this evaluation (None: the model's ``eval_iters``, else
                ``iters``).
            fid (Optional[Any]): unused: Slot Attention has no FID (:func:`~deqslots.evaluation.evaluate.evaluate`
                refuses one).

        Returns:
            ``{"mse", "mse_sum", "fg_ari"}``, each the mean over the ``batches`` batches (``fg_ari`` over the
            images with foreground).
        """
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

    @torch.no_grad()
    def figures(self, model: SlotAutoencoder, stream: BatchStream, metrics_path: Path, out: Path, seed: int) -> None:
        """slots.png: input, reconstruction and each slot's masked colour for four validation images.

        Args:
            model: the autoencoder.
            stream: the validation data; the first four images of its first batch are drawn.
            metrics_path: the run's metrics.csv (unused: the loss curves are drawn by the training loop).
            out: folder that slots.png is written into.
            seed: seed of the slot noise.
        """
        device = next(model.parameters()).device
        with seeded_eval(model, seed):
            images = stream.batch(0)["image"][:4]
            result = model(images.to(device))
        plot_slot_grid(images, result["recon"].cpu(), result["masks"].cpu(), result["rgb"].cpu(), out / "slots.png")

    def scene_figure(self, model: SlotAutoencoder, data: str, out: Path, split: str = "test", seed: int = 0,
                     rows: int = 6) -> dict[str, float]:
        """Draws :func:`~deqslots.evaluation.figures.plot_segmentation_grid`: input, true objects, the model's
        segmentation, the colour-only control's, the reconstruction and each slot; returns both FG-ARIs on these
        scenes.

        Args:
            model: the autoencoder.
            data: a procedural data set name that gives masks (e.g. ``"shapes"``).
            out: the PNG path.
            split: which split the scenes come from.
            seed: data seed of the scenes, also seeding the slot noise and the k-means.
            rows: how many scenes (the first ``rows`` of the split), one per row.

        Returns:
            ``{"fg_ari": the model's mean over the rows, "colour_fg_ari": the colour control's}``.
        """
        return plot_segmentation_grid(model, data, out, split=split, rows=rows, seed=seed)
