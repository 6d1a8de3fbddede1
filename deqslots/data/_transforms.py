"""Centre-crop-and-resize for image tensors and instance-id maps, shared by the on-disk loaders."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["centre_square", "resize_image", "resize_ids"]


def centre_square(width: int, height: int) -> tuple[int, int, int, int]:
    """Return the ``(left, top, right, bottom)`` box of the largest centred square.

    Args:
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        The crop box in PIL's convention (right and bottom exclusive).

    Examples:
        >>> centre_square(320, 240)
        (40, 0, 280, 240)
    """
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def resize_image(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """Centre-crop a ``[3, H, W]`` float image to a square and resize it to ``resolution``.

    Uses antialiased bilinear interpolation, so downscaling does not alias.

    Args:
        image: ``float32 [3, H, W]``.
        resolution: Output side length.

    Returns:
        ``float32 [3, resolution, resolution]`` clamped to the input range ``[0, 1]``.
    """
    left, top, right, bottom = centre_square(image.shape[-1], image.shape[-2])
    crop = image[:, top:bottom, left:right]
    if crop.shape[-1] == resolution:
        return crop.contiguous()
    out = F.interpolate(crop[None], size=(resolution, resolution), mode="bilinear", antialias=True)
    return out[0].clamp_(0.0, 1.0)


def resize_ids(ids: torch.Tensor, resolution: int) -> torch.Tensor:
    """Centre-crop an ``[H, W]`` integer id map to a square and resize it with nearest neighbours.

    Args:
        ids: ``int64 [H, W]``.
        resolution: Output side length.

    Returns:
        ``int64 [resolution, resolution]`` holding only ids present in the crop.
    """
    left, top, right, bottom = centre_square(ids.shape[-1], ids.shape[-2])
    crop = ids[top:bottom, left:right]
    if crop.shape[-1] == resolution:
        return crop.contiguous()
    # Ids below 2**24 are exact in float32, far above any realistic object count.
    size = (resolution, resolution)
    out = F.interpolate(crop[None, None].to(torch.float32), size=size, mode="nearest-exact")
    return out[0, 0].to(torch.int64)
