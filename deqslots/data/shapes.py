"""``shapes``: a Multi-dSprites-like generator of flat coloured 2D shapes with occlusion.

Each image holds ``min_objects..max_objects`` squares, ellipses, triangles and hearts with random
scale, rotation, position and colour, drawn in order so that later shapes occlude earlier ones. The
instance mask records the visible pixels only; shapes hidden entirely are dropped and the remaining ids
renumbered ``1..K``. Every object colour differs from the background colour by at least
``_MIN_CONTRAST`` in some channel, so the mask is exactly the set of non-background pixels.
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType
from typing import NamedTuple, Sequence

import numpy as np

from deqslots.data._raster import box_slices, check_count_range, pixel_centres, renumber

__all__ = ["SHAPE_KINDS", "BACKGROUNDS", "ShapesOptions", "render_shapes", "unit_shape", "shape_patch", "ShapePatch",
           "ShapeObject", "sample_shapes", "draw_shapes"]

SHAPE_KINDS: tuple[str, ...] = ("square", "ellipse", "triangle", "heart")
BACKGROUNDS: tuple[str, ...] = ("random", "black")

# Radii (in image units) of the unit shapes below; about 3-8 px at 32 px, like Multi-dSprites sprites.
_SCALE_RANGE = (0.08, 0.19)
_MIN_CONTRAST = 0.15
# Radius of a circle that contains each unit shape at any rotation, for its bounding box.
_BOUND = MappingProxyType({"square": 0.8 * math.sqrt(2.0), "ellipse": 1.0, "triangle": 1.3, "heart": 1.3})


@dataclasses.dataclass(frozen=True)
class ShapesOptions:
    """Options of the ``shapes`` generator.

    Args:
        min_objects: Fewest shapes drawn per image (before occlusion).
        max_objects: Most shapes drawn per image; the mask never has more ids than this.
        background: ``"random"`` (uniform random colour per image) or ``"black"``.
        kinds: Shape kinds to sample from, a subset of :data:`SHAPE_KINDS`.

    Raises:
        ValueError: A count that is not an int, ``min_objects < 1`` or ``min_objects > max_objects``, an
            unknown ``background``, or ``kinds`` empty or holding an unknown kind.

    Examples:
        >>> ShapesOptions(max_objects=4, background="black").max_objects
        4
    """

    min_objects: int = 2
    max_objects: int = 6
    background: str = "random"
    kinds: tuple[str, ...] = SHAPE_KINDS

    def __post_init__(self) -> None:
        check_count_range("min_objects", self.min_objects, "max_objects", self.max_objects)
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}; got {self.background!r}")
        kinds = tuple(self.kinds) if not isinstance(self.kinds, str) else (self.kinds,)
        bad = [k for k in kinds if k not in SHAPE_KINDS]
        if not kinds or bad:
            raise ValueError(f"kinds must be a non-empty subset of {SHAPE_KINDS}; got {self.kinds!r}")
        object.__setattr__(self, "kinds", kinds)


class ShapePatch(NamedTuple):
    """One shape rasterised in its bounding box: rows ``r0:r1``, columns ``c0:c1``, the ``inside`` mask
    [h, w] and the offsets ``dx`` [w] / ``dy`` [h, 1] of the pixel centres from the shape's centre.

    Attributes:
        r0: First row of the box (pixel index).
        r1: Row after the last (``h = r1 - r0``).
        c0: First column of the box.
        c1: Column after the last (``w = c1 - c0``).
        inside: ``bool [h, w]``: the box's pixels whose centres the shape covers.
        dx: ``float32 [w]``: x of each column's pixel centre minus the shape's centre, in image units.
        dy: ``float32 [h, 1]``: y of each row's pixel centre minus the shape's centre (broadcasts with ``dx``).

    Examples:
        >>> grid = (np.arange(8, dtype=np.float32) + 0.5) / 8  # the pixel centres of an 8-pixel side
        >>> patch = shape_patch("square", np.array([0.5, 0.5]), 0.25, 0.0, 1.0, grid, 8)
        >>> patch.r0, patch.r1, patch.c0, patch.c1, patch.inside.shape, patch.dx.shape, patch.dy.shape
        (2, 6, 2, 6, (4, 4), (4,), (4, 1))
    """

    r0: int
    r1: int
    c0: int
    c1: int
    inside: np.ndarray
    dx: np.ndarray
    dy: np.ndarray


def shape_patch(kind: str, centre: np.ndarray, radius: float, angle: float, aspect: float, grid: np.ndarray,
                resolution: int) -> "ShapePatch | None":
    """Rasterise shape ``kind`` (centre, radius in image units, rotation, aspect) inside its bounding box;
    None when the box holds no pixel. ``grid`` is :func:`pixel_centres` of ``resolution``.

    Args:
        kind: One of :data:`SHAPE_KINDS`.
        centre: ``(x, y)`` of the shape's centre in image units (``[0, 1]`` spans the image, y down).
        radius: Scale of the unit shape (:func:`unit_shape`), in image units.
        angle: Rotation in radians.
        aspect: Height-to-width ratio of an ellipse (other kinds ignore it).
        grid: ``float32 [resolution]`` pixel-centre coordinates ``(i + 0.5) / resolution``.
        resolution: Image side length in pixels.

    Returns:
        The :class:`ShapePatch` of the shape's bounding box clipped to the image, or ``None`` when the box
        lies outside the image.

    Examples:
        >>> grid = (np.arange(8, dtype=np.float32) + 0.5) / 8  # the pixel centres of an 8-pixel side
        >>> patch = shape_patch("ellipse", np.array([0.5, 0.5]), 0.3, 0.0, 0.5, grid, 8)
        >>> patch.r0, patch.r1, patch.c0, patch.c1  # the box: 4 x 4 pixels
        (2, 6, 2, 6)
        >>> patch.inside.astype(int).tolist()  # a flat ellipse (aspect 0.5) covers the middle rows
        [[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]]
        >>> shape_patch("square", np.array([2.0, 2.0]), 0.1, 0.0, 1.0, grid, 8) is None  # off the image
        True
    """
    cx, cy = centre
    reach = radius * _BOUND[kind] + 1e-3
    r0, r1, c0, c1 = box_slices(cx - reach, cx + reach, cy - reach, cy + reach, resolution)
    if r0 == r1 or c0 == c1:
        return None
    cos, sin = math.cos(angle) / radius, math.sin(angle) / radius
    dx = grid[c0:c1] - np.float32(cx)
    dy = (grid[r0:r1] - np.float32(cy))[:, None]
    u = dx * np.float32(cos) + dy * np.float32(sin)
    v = dy * np.float32(cos) - dx * np.float32(sin)
    return ShapePatch(r0, r1, c0, c1, unit_shape(kind, u, v, aspect), dx, dy)


def unit_shape(kind: str, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    """Coverage of a shape of radius about 1 in local coordinates (``v`` points down the image).

    A square of half-side 0.8, an ellipse of semi-axes 1 and ``aspect``, an equilateral triangle of
    circumradius 1.3 (apex up), or a heart about 1.3 across.

    Args:
        kind: One of :data:`SHAPE_KINDS`.
        u: Local x coordinates (rotated and divided by the radius), any shape broadcasting with ``v``.
        v: Local y coordinates, pointing down the image.
        aspect: Height-to-width ratio of the ellipse (other kinds ignore it).

    Returns:
        ``bool`` array of the broadcast shape of ``u`` and ``v``: True where the shape covers the point.

    Raises:
        ValueError: ``kind`` is not one of :data:`SHAPE_KINDS`.

    Examples:
        >>> u = np.array([0.0, 0.7, 0.9])
        >>> unit_shape("square", u, np.zeros(3), 1.0).tolist(), unit_shape("ellipse", np.zeros(3), u, 0.8).tolist()
        ([True, True, False], [True, True, False])
    """
    if kind == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if kind == "ellipse":
        return u * u + (v * v) / (aspect * aspect) <= 1.0
    if kind == "triangle":
        # Equilateral, circumradius 1.3, apex up: three half-planes at the inradius 0.65.
        return (v <= 0.65) & (0.866 * u - 0.5 * v <= 0.65) & (-0.866 * u - 0.5 * v <= 0.65)
    if kind != "heart":
        raise ValueError(f"unknown shape kind {kind!r}; pass one of {', '.join(SHAPE_KINDS)}")
    # Heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, y up, shifted so its bounding box is centred.
    x = u * 1.05
    y = 0.12 - v * 1.05
    r = x * x + y * y - 1.0
    return r * r * r <= x * x * y * y * y


def _object_colours(rng: np.random.Generator, count: int, background: np.ndarray) -> np.ndarray:
    """Uniform random colours, each kept at least ``_MIN_CONTRAST`` away from the background."""
    colours = rng.random((count, 3), dtype=np.float32)
    close = np.abs(colours - background).max(axis=1) < _MIN_CONTRAST
    # Shifting every channel by half the range puts a colour at least 0.35 away in each channel.
    colours[close] = (colours[close] + np.float32(0.5)) % np.float32(1.0)
    return colours


def render_shapes(
    rng: np.random.Generator, resolution: int, options: ShapesOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one ``shapes`` image and its instance mask.

    Args:
        rng: Source of randomness; the image is a pure function of its state.
        resolution: Side length in pixels.
        options: Generator options.

    Returns:
        ``(image, ids)``: ``float32 [3, H, W]`` in ``[0, 1]`` and ``int64 [H, W]`` with 0 = background
        and visible objects labelled ``1..K``.

    Examples:
        >>> image, ids = render_shapes(np.random.default_rng(0), 32, ShapesOptions())
        >>> image.shape, ids.shape, int(ids.min())
        ((3, 32, 32), (32, 32), 0)
    """
    background, objects = sample_shapes(rng, options)
    image, ids, _ = draw_shapes(background, objects, resolution)
    return image, ids


class ShapeObject(NamedTuple):
    """One shape of a ``shapes`` scene: its kind, centre (x, y in image units), radius, rotation, aspect and
    ``float32 [3]`` colour.

    Attributes:
        kind: One of :data:`SHAPE_KINDS`.
        centre: ``(x, y)`` of the centre in image units (``[0, 1]`` spans the image, y down).
        radius: Scale of the unit shape, in image units.
        angle: Rotation in radians.
        aspect: Height-to-width ratio of an ellipse (other kinds ignore it).
        colour: ``float32 [3]`` RGB in ``[0, 1]``.

    Examples:
        >>> circle = ShapeObject("ellipse", np.array([0.5, 0.5]), 0.3, 0.0, 1.0, np.array([1, 0, 0], np.float32))
        >>> image, ids, kept = draw_shapes(np.zeros(3, np.float32), [circle], 8)
        >>> int(ids.sum()), float(image[0].max()), kept.tolist()
        (16, 1.0, [0])
    """

    kind: str
    centre: np.ndarray
    radius: float
    angle: float
    aspect: float
    colour: np.ndarray


def sample_shapes(rng: np.random.Generator, options: ShapesOptions) -> tuple[np.ndarray, list[ShapeObject]]:
    """The scene :func:`render_shapes` draws, as data: ``(background float32 [3], objects in drawing order)``.

    Scenes can then be edited (an object removed, one from another scene added) and drawn with
    :func:`draw_shapes`, e.g. the true composites of :mod:`deqslots.slate.compose`.

    Args:
        rng: Source of randomness; consumed exactly as :func:`render_shapes` consumes it.
        options: Generator options (object count range, background, kinds).

    Returns:
        ``(background, objects)``: ``float32 [3]`` background colour and the ``min_objects..max_objects``
        :class:`ShapeObject` s in drawing order (later ones occlude earlier ones; some may end up hidden).

    Examples:
        >>> background, objects = sample_shapes(np.random.default_rng(0), ShapesOptions(max_objects=3))
        >>> background.shape, [obj.kind for obj in objects]
        ((3,), ['triangle', 'heart', 'triangle'])
        >>> image, ids, kept = draw_shapes(background, objects[1:], 32)  # the same scene less its first shape
        >>> len(kept) == int(ids.max()) <= 2
        True
    """
    count = int(rng.integers(options.min_objects, options.max_objects + 1))
    if options.background == "random":
        background = rng.random(3, dtype=np.float32)
    else:
        background = np.zeros(3, dtype=np.float32)
    colours = _object_colours(rng, count, background)
    kinds = rng.integers(0, len(options.kinds), count)
    radii = rng.uniform(*_SCALE_RANGE, count)
    centres = rng.uniform(0.1, 0.9, (count, 2))
    angles = rng.uniform(0.0, 2.0 * math.pi, count)
    aspects = rng.uniform(0.6, 1.0, count)
    return background, [ShapeObject(options.kinds[kinds[k]], centres[k], float(radii[k]), float(angles[k]),
                                    float(aspects[k]), colours[k]) for k in range(count)]


def draw_shapes(background: np.ndarray, objects: Sequence[ShapeObject], resolution: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``objects`` in order (later ones occlude earlier ones) on ``background``.

    Args:
        background: ``float32 [3]`` RGB in ``[0, 1]``.
        objects: The shapes, first drawn first (e.g. from :func:`sample_shapes`); may be empty.
        resolution: Image side length in pixels.

    Returns:
        ``(image float32 [3, H, W], ids int64 [H, W], kept)``: ids 0 = background and ``1..K`` the visible
        objects; ``kept[k - 1]`` is the index in ``objects`` of the object with id ``k``.

    Examples:
        >>> background, objects = sample_shapes(np.random.default_rng(0), ShapesOptions())
        >>> image, ids, kept = draw_shapes(background, objects, 32)
        >>> same_image, same_ids = render_shapes(np.random.default_rng(0), 32, ShapesOptions())
        >>> bool((image == same_image).all() and (ids == same_ids).all()), len(kept) == int(ids.max())
        (True, True)
    """
    grid = pixel_centres(resolution)
    ids = np.zeros((resolution, resolution), dtype=np.int64)
    for k, obj in enumerate(objects):
        patch = shape_patch(obj.kind, obj.centre, obj.radius, obj.angle, obj.aspect, grid, resolution)
        if patch is not None:
            ids[patch.r0:patch.r1, patch.c0:patch.c1][patch.inside] = k + 1
    ids, kept = renumber(ids, len(objects))
    colours = np.stack([obj.colour for obj in objects]) if objects else np.zeros((0, 3), dtype=np.float32)
    palette = np.concatenate([background[:, None], colours[kept].T], axis=1)
    return np.take(palette, ids, axis=1), ids, kept
