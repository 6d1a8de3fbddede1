"""A figure like Figure 4 of Chang et al. (2022): ground truth, then for each model its reconstruction
through the slots and its attention masks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..evaluation.figures import save_grid  # noqa: E402

if TYPE_CHECKING:  # for hints only
    from .compose import CompositionPairs, Compositions

__all__ = ["plot_slate_grid", "plot_composition_grid"]

Panel = tuple[str, torch.Tensor, Optional[torch.Tensor]]


def plot_slate_grid(images: torch.Tensor, panels: Sequence[Panel], out: Union[str, Path], rows: int = 4) -> Path:
    """One row per image: the input, then per panel a reconstruction and (optionally) its slot masks.

    Each mask is shown as the image inside the mask and white outside, so a slot's object is visible.

    Args:
        images: ground truth [B, 3, H, W] in [0, 1].
        panels: ``(label, recon [B, 3, H, W], masks [B, K, H, W] or None)``, e.g.
            ``[("implicit (IN)", recon_in, masks_in), ("vanilla", recon_v, masks_v)]``.
        out: the PNG to write.
        rows: images shown (at most B).

    Returns:
        ``out`` as a Path.

    Examples:
        >>> import tempfile, torch
        >>> x = torch.rand(2, 3, 8, 8)
        >>> path = plot_slate_grid(x, [("IN", x, torch.rand(2, 3, 8, 8).softmax(1))], tempfile.mktemp(suffix=".png"))
        >>> path.exists()
        True
    """
    rows = min(rows, images.shape[0])
    header = ["ground truth"]
    for label, _, masks in panels:
        header.append(label)
        if masks is not None:
            header += [f"{label} slot {j + 1}" if j == 0 else f"slot {j + 1}" for j in range(masks.shape[1])]
    fig, axes = plt.subplots(rows, len(header), figsize=(1.3 * len(header), 1.4 * rows), squeeze=False)

    def show(ax, img: torch.Tensor) -> None:
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).cpu().numpy())

    for r in range(rows):
        show(axes[r, 0], images[r])
        col = 1
        for _, recon, masks in panels:
            show(axes[r, col], recon[r])
            col += 1
            if masks is not None:
                for j in range(masks.shape[1]):
                    m = masks[r, j].unsqueeze(0)
                    show(axes[r, col], m * images[r] + (1 - m))
                    col += 1
    return save_grid(fig, axes, header, out, fontsize=7)


def plot_composition_grid(pairs: CompositionPairs, compositions: Compositions,
                          out: Union[str, Path], rows: int = 4) -> Path:
    """The paper's Figure 4 for composition, with the truth beside it: per pair, scene A, the slot of A that is
    swapped out (its attention mask on white), scene B, A generated from its own slots, A with the slot swapped
    for B's object's slot, the true composite, and a random swap.

    Args:
        pairs: :class:`deqslots.slate.compose.CompositionPairs`.
        compositions: :func:`deqslots.slate.compose.compose`'s result for ``pairs``.
        out: the PNG to write.
        rows: pairs shown (at most P).

    Returns:
        ``out`` as a Path.

    Examples:
        >>> import tempfile, torch
        >>> from deqslots.slate import SLATE, SLATEConfig
        >>> from deqslots.slate.compose import compose, composition_pairs
        >>> _ = torch.manual_seed(0)
        >>> model = SLATE(SLATEConfig(resolution=8, vocab_size=8, dvae_channels=8, d_model=16, num_blocks=1,
        ...                           num_heads=2, num_slots=3, slot_dim=16, mlp_hidden=16))
        >>> pairs = composition_pairs(2, 8)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = plot_composition_grid(pairs, compose(model, pairs), f"{folder}/composition.png", rows=2)
        ...     path.name, path.exists()
        ('composition.png', True)
    """
    rows = min(rows, pairs.images_a.shape[0])
    header = ["scene A", "A's slot out", "scene B", "A generated", "slot swapped", "true composite",
              "random swap"]
    fig, axes = plt.subplots(rows, len(header), figsize=(1.3 * len(header), 1.4 * rows), squeeze=False)
    for r in range(rows):
        mask = compositions.masks_a[r, int(compositions.slot_a[r])].unsqueeze(0)
        panels = (pairs.images_a[r], mask * pairs.images_a[r] + (1 - mask), pairs.images_b[r],
                  compositions.unswapped[r], compositions.swap[r], pairs.composite[r], compositions.random[r])
        for col, img in enumerate(panels):
            axes[r, col].imshow(img.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
    return save_grid(fig, axes, header, out, fontsize=7)
