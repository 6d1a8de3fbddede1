"""Checks on the images a model is given: shape, dtype and values, with messages that say what to do."""

from __future__ import annotations

import torch

__all__ = ["check_images", "IMAGE_RANGE_SLACK"]

# Values this far outside [0, 1] are accepted (interpolation may overshoot slightly); beyond it the
# images are on another scale (0-255, or normalised with a mean and std) and the model would be fed garbage.
IMAGE_RANGE_SLACK = 0.1


def check_images(images: torch.Tensor, resolution: int, who: str, hint: str = "") -> None:
    """Raise a clear error unless ``images`` is a finite float batch [B, 3, R, R] with values in [0, 1].

    One reduction over the batch (a single host sync) checks the values; the models it guards already
    synchronise in every solver step, so it costs nothing measurable.

    Args:
        images: the batch a model was called with.
        resolution: the side length R the model was built for.
        who: the model's name, for the message.
        hint: appended to the shape error (e.g. how to change the model's resolution).

    Raises:
        TypeError: if ``images`` is not a tensor or not floating point (e.g. uint8 straight from a file).
        ValueError: on a wrong shape, NaN/Inf values, or values outside [0, 1] (e.g. 0-255 floats).
            Values up to :data:`IMAGE_RANGE_SLACK` outside [0, 1] are accepted.

    Examples:
        >>> import torch
        >>> from deqslots.nn.inputs import check_images
        >>> check_images(torch.rand(2, 3, 8, 8), 8, "SlotAutoencoder")
        >>> check_images(torch.rand(2, 8, 8, 3), 8, "SlotAutoencoder")
        Traceback (most recent call last):
        ...
        ValueError: SlotAutoencoder expects images [batch, 3, 8, 8] in [0, 1]; got (2, 8, 8, 3); these look
        channels-last: pass images.permute(0, 3, 1, 2)
        >>> check_images(255 * torch.rand(2, 3, 8, 8), 8, "SlotAutoencoder")
        Traceback (most recent call last):
        ...
        ValueError: SlotAutoencoder expects images with values in [0, 1]; got values in [...] (this looks like 0-255:
        divide by 255)
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{who} expects images as a tensor [batch, 3, {resolution}, {resolution}]; "
                        f"got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1:] != (3, resolution, resolution):
        if images.dim() == 4 and images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
            advice = "; these look channels-last: pass images.permute(0, 3, 1, 2)"
        elif images.dim() == 3:
            advice = "; for a single image pass images[None] (a batch of one)"
        elif images.dim() == 4 and images.shape[1] == 1:
            advice = "; for grayscale images pass images.expand(-1, 3, -1, -1)"
        elif images.dim() == 4 and images.shape[1] == 4:
            advice = "; for RGBA images drop the alpha channel: images[:, :3]"
        elif images.dim() == 4 and images.shape[1] == 3:
            advice = hint
        else:
            advice = ""
        raise ValueError(f"{who} expects images [batch, 3, {resolution}, {resolution}] in [0, 1]; got "
                         f"{tuple(images.shape)}{advice}")
    if not images.is_floating_point():
        raise TypeError(f"{who} expects floating images in [0, 1]; got dtype {images.dtype}. Convert "
                        f"with images.float() / 255 for 8-bit images")
    if images.numel() == 0:
        raise ValueError(f"{who} got an empty batch {tuple(images.shape)}")
    low, high = torch.aminmax(images.detach())
    low, high = float(low), float(high)  # NaN anywhere makes both NaN
    if low >= -IMAGE_RANGE_SLACK and high <= 1.0 + IMAGE_RANGE_SLACK:
        return
    bad = ~torch.isfinite(images.detach()).flatten(1).all(dim=1)
    if bool(bad.any()):
        samples = torch.nonzero(bad).flatten().tolist()
        raise ValueError(f"{who} got images with NaN/Inf values in batch sample(s) {samples[:10]}; check the data "
                         f"(deqslots' loaders refuse such files, naming them)")
    scale = " (this looks like 0-255: divide by 255)" if high > 2.0 and low >= 0.0 else ""
    raise ValueError(f"{who} expects images with values in [0, 1]; got values in [{low:.3g}, {high:.3g}]{scale}")
