"""``same-hue``: shaded shapes that all share one hue, on a textured background of that hue.

Colour alone does not separate these objects: every object of a scene has the same hue and saturation,
and each is shaded by a brightness ramp in its own random direction that spans most of the brightness
range, so pixels of equal colour lie on every object (k-means on pixel colour cuts the scene into
brightness bands across objects; its FG-ARI is about 0.1, see
:func:`deqslots.evaluation.metrics.colour_baseline_fg_ari`).
What does separate them is shape and contiguity: each object is one connected region whose brightness
changes smoothly, with a step at its outline where the ramp of the next object or the background starts.
Objects may touch and occlude each other. Per-pixel noise on objects and background means no two pixels
have exactly the same colour.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math

import numpy as np

from deqslots.data._raster import check_count_range, pixel_centres, renumber
from deqslots.data.shapes import SHAPE_KINDS, shape_patch

__all__ = ["SameHueOptions", "render_same_hue"]

# Radii in image units: about 4-7 px at 32 px, a little larger than ``shapes`` so that a 32 px image
# still shows each object's ramp over several pixels.
_SCALE_RANGE = (0.12, 0.21)


@dataclasses.dataclass(frozen=True)
class SameHueOptions:
    """Options of the ``same-hue`` generator.

    Args:
        min_objects: Fewest shapes drawn per image (before occlusion).
        max_objects: Most shapes drawn per image; the mask never has more ids than this.
        noise: Standard deviation of the per-pixel Gaussian noise (image units, before clipping to [0, 1]).

    Raises:
        ValueError: A count that is not an int, ``min_objects < 1`` or ``min_objects > max_objects``, or
            ``noise`` not a number in ``[0, 0.2]``.

    Examples:
        >>> SameHueOptions(max_objects=8).max_objects
        8
    """

    min_objects: int = 3
    max_objects: int = 5
    noise: float = 0.03

    def __post_init__(self) -> None:
        check_count_range("min_objects", self.min_objects, "max_objects", self.max_objects)
        if isinstance(self.noise, bool) or not isinstance(self.noise, (int, float)) or not 0.0 <= self.noise <= 0.2:
            raise ValueError(f"noise must be a number in [0, 0.2]; got {self.noise!r}")


def _rgb(hue: float, saturation: float, value: np.ndarray) -> np.ndarray:
    """Colours of one hue and saturation at brightness ``value`` [...]: float32 [3, ...]."""
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, 1.0)
    return np.stack([np.float32(c) * value for c in (r, g, b)]).astype(np.float32)


def render_same_hue(
    rng: np.random.Generator, resolution: int, options: SameHueOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one ``same-hue`` image and its instance mask.

    Args:
        rng: Source of randomness; the image is a pure function of its state.
        resolution: Side length in pixels.
        options: Generator options.

    Returns:
        ``(image, ids)``: ``float32 [3, H, W]`` in ``[0, 1]`` and ``int64 [H, W]`` with 0 = background
        and visible objects labelled ``1..K``.

    Examples:
        >>> image, ids = render_same_hue(np.random.default_rng(0), 32, SameHueOptions())
        >>> image.shape, ids.shape, int(ids.max()) >= 1
        ((3, 32, 32), (32, 32), True)
    """
    count = int(rng.integers(options.min_objects, options.max_objects + 1))
    hue = float(rng.random())
    object_saturation = float(rng.uniform(0.55, 0.9))
    background_saturation = float(rng.uniform(0.15, 0.4))
    grid = pixel_centres(resolution)

    # Background: the same hue, less saturated, a gentle ramp over the whole image (as a lit floor).
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ramp = (grid[None, :] - 0.5) * np.float32(math.cos(angle)) + (grid[:, None] - 0.5) * np.float32(math.sin(angle))
    value = np.float32(rng.uniform(0.45, 0.7)) + np.float32(0.25) * ramp
    image = _rgb(hue, background_saturation, value)
    ids = np.zeros((resolution, resolution), dtype=np.int64)

    kinds = rng.integers(0, len(SHAPE_KINDS), count)
    radii = rng.uniform(*_SCALE_RANGE, count)
    centres = rng.uniform(0.15, 0.85, (count, 2))
    angles = rng.uniform(0.0, 2.0 * math.pi, count)
    aspects = rng.uniform(0.6, 1.0, count)
    light = rng.uniform(0.0, 2.0 * math.pi, count)  # each object's shading direction
    for k in range(count):
        patch = shape_patch(SHAPE_KINDS[kinds[k]], centres[k], radii[k], angles[k], float(aspects[k]), grid,
                            resolution)
        if patch is None:
            continue
        # Brightness ramps from about 0.25 to 1.0 across the object along its light direction, so the
        # brightness range of every object covers that of every other.
        dx, dy = patch.dx, patch.dy
        along = (dx * np.float32(math.cos(light[k])) + dy * np.float32(math.sin(light[k]))) / np.float32(radii[k])
        shade = np.clip(np.float32(0.62) + np.float32(0.38) * along, 0.2, 1.0)
        colour = _rgb(hue, object_saturation, np.broadcast_to(shade, patch.inside.shape))
        np.copyto(image[:, patch.r0:patch.r1, patch.c0:patch.c1], colour, where=patch.inside[None])
        ids[patch.r0:patch.r1, patch.c0:patch.c1][patch.inside] = k + 1

    ids, _ = renumber(ids, count)
    if options.noise > 0:
        image = image + rng.normal(0.0, options.noise, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32), ids
