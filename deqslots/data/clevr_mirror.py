"""``clevr-mirror``: a CLEVR-like pseudo-3D scene in front of a mirror, in the spirit of CLEVR-Mirror.

The lower part of the image is a floor with a brightness gradient; the upper ``mirror_fraction`` of the
image is a mirror (with a thin dark frame at its lower edge) that shows the floor and every object
vertically flipped and dimmed. Objects are shaded spheres, cubes and cylinders in CLEVR's eight
colours, rubber or metal, scaled by depth and painted far to near. An object's reflection shares its
instance id, so a model has to bind the object and its mirror image into one slot; objects in front
occlude the mirror. Ids are renumbered ``1..K`` over the visible objects.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deqslots.data._raster import box_slices, check_count_range, paint, pixel_centres, renumber
from deqslots.data._solids import Box, Cylinder, Light, Solid, Sphere, draw_solid

__all__ = ["ClevrMirrorOptions", "render_clevr_mirror"]

# CLEVR's colour palette (properties.json of the CLEVR dataset generator), RGB / 255.
_CLEVR_COLOURS = (
    np.array(
        [
            [87, 87, 87],
            [173, 35, 35],
            [42, 75, 215],
            [29, 105, 20],
            [129, 74, 25],
            [129, 38, 192],
            [41, 208, 208],
            [255, 238, 51],
        ],
        dtype=np.float32,
    )
    / 255.0
)
# Screen radius of small / large objects at the nearest depth, in image units.
_SIZES = (0.065, 0.105)
_SHININESS = (0.05, 0.6)  # rubber, metal
_FRAME = 0.02  # height of the dark mirror frame, in image units
_REFLECTANCE = 0.6
_ATTEMPTS = 40
_MAX_HIDDEN = 0.5
_MIRROR_TINT = np.array([0.04, 0.06, 0.1], dtype=np.float32)
_CLEVR_COLOURS.flags.writeable = False
_MIRROR_TINT.flags.writeable = False


@dataclasses.dataclass(frozen=True)
class ClevrMirrorOptions:
    """Options of the ``clevr-mirror`` generator.

    Args:
        min_objects: Fewest objects placed per image (before occlusion).
        max_objects: Most objects placed per image; the mask never has more ids than this.
        mirror_fraction: Fraction of the image height, from the top, taken by the mirror and its frame.
        reflections: Draw the objects' reflections (``False`` gives the same scene without them).
        one_colour: Paint every object of a scene in the same CLEVR colour (the first one drawn), so that
            colour no longer tells objects apart (k-means on pixel colour falls from 0.385 to 0.035 FG-ARI at 32x32);
            shading, material and shape still differ. The scene is otherwise the same as without it.

    Raises:
        ValueError: A count that is not an int, ``min_objects < 1`` or ``min_objects > max_objects``,
            ``mirror_fraction`` not a number in ``[0.2, 0.6]``, or ``reflections`` / ``one_colour`` not a bool.

    Examples:
        >>> ClevrMirrorOptions(mirror_fraction=0.35).mirror_fraction
        0.35
    """

    min_objects: int = 3
    max_objects: int = 6
    mirror_fraction: float = 0.4
    reflections: bool = True
    one_colour: bool = False

    def __post_init__(self) -> None:
        check_count_range("min_objects", self.min_objects, "max_objects", self.max_objects)
        if not isinstance(self.mirror_fraction, (int, float)) or not 0.2 <= self.mirror_fraction <= 0.6:
            raise ValueError(f"mirror_fraction must be a number in [0.2, 0.6]; got {self.mirror_fraction!r}")
        if not isinstance(self.reflections, (bool, np.bool_)):
            raise ValueError(f"reflections must be a bool; got {self.reflections!r}")
        if not isinstance(self.one_colour, (bool, np.bool_)):
            raise ValueError(f"one_colour must be a bool; got {self.one_colour!r}")


def _solid(kind: int, cx: float, base: float, radius: float) -> Solid:
    """Build a sphere (0), cube (1) or cylinder (2) standing on the floor at screen row ``base``."""
    if kind == 0:
        return Sphere(cx, base - radius, radius)
    if kind == 1:
        half = 0.85 * radius
        # Objects left of centre show their right face and vice versa, as under a perspective camera.
        depth_x = -0.6 * half * (cx - 0.5) / 0.5
        depth_x = depth_x if abs(depth_x) > 1e-3 else 1e-3
        return Box(cx - half, cx + half, base - 2.0 * half, base, depth_x, 0.8 * half)
    r = 0.85 * radius
    cap = 0.35 * r
    return Cylinder(cx, r, base - cap - 1.8 * radius, base - cap, cap)


def _hidden_fraction(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Fraction of the farther object's screen box covered by the nearer one's box."""
    (ax, ab, ar), (bx, bb, br) = sorted((a, b), key=lambda o: o[1])  # far (higher base) first
    width = min(ax + ar, bx + br) - max(ax - ar, bx - br)
    height = min(ab, bb) - max(ab - 2.0 * ar, bb - 2.0 * br)
    if width <= 0.0 or height <= 0.0:
        return 0.0
    return width * height / (4.0 * ar * ar)


def _place(rng: np.random.Generator, count: int, floor_top: float) -> list[tuple[float, float, float]]:
    """Sample ``(cx, base_row, radius)`` per object with CLEVR-like spacing and visibility checks.

    A candidate is redrawn when it stands too close to a placed object on the ground, or when either
    would hide more than ``_MAX_HIDDEN`` of the other's screen box (CLEVR likewise rejects scenes
    with barely visible objects). After ``_ATTEMPTS`` draws the last candidate is kept anyway.
    """
    near, far = 0.96, floor_top + 0.1
    placed: list[tuple[float, float, float]] = []
    sizes = rng.integers(0, 2, count)
    for k in range(count):
        for _attempt in range(_ATTEMPTS):
            base = float(rng.uniform(far, near))
            depth = (base - far) / (near - far)
            radius = _SIZES[sizes[k]] * (0.55 + 0.45 * depth)
            cx = float(rng.uniform(0.06 + radius, 0.94 - radius))
            candidate = (cx, base, radius)
            # The floor recedes, so a row step on screen is a longer step on the ground.
            if all(
                (cx - ox) ** 2 + (2.0 * (base - ob)) ** 2 >= (0.9 * (radius + orad)) ** 2
                and _hidden_fraction(candidate, (ox, ob, orad)) <= _MAX_HIDDEN
                for ox, ob, orad in placed
            ):
                break
        placed.append(candidate)
    return placed


def _background(resolution: int, horizon: float, mirror_bottom: float, tint: np.ndarray) -> np.ndarray:
    """Floor gradient below the horizon, its dimmed reflection in the mirror above, a dark frame between."""
    grid = pixel_centres(resolution)
    scale = mirror_bottom / (1.0 - horizon)
    floor_row = np.clip((grid - horizon) / (1.0 - horizon), 0.0, 1.0)
    mirror_row = np.clip((mirror_bottom - grid) / scale / (1.0 - horizon), 0.0, 1.0)
    brightness = np.where(
        grid >= horizon,
        0.36 + 0.3 * floor_row,
        np.where(grid < mirror_bottom, _REFLECTANCE * (0.36 + 0.3 * mirror_row), 0.08),
    ).astype(np.float32)
    rows = tint[:, None] * brightness[None, :]
    rows[:, grid < mirror_bottom] += _MIRROR_TINT[:, None]
    # A soft vignette across x stands in for the spot-light falloff of CLEVR renders.
    cols = 1.0 - 0.25 * (2.0 * grid - 1.0) ** 2
    return rows[:, :, None] * cols[None, None, :]


def _draw_reflection(
    image: np.ndarray,
    ids: np.ndarray,
    solid: Solid,
    colour: np.ndarray,
    shininess: float,
    light: Light,
    object_id: int,
    grid: np.ndarray,
    horizon: float,
    mirror_bottom: float,
) -> None:
    """Paint the solid flipped about the mirror's lower edge, squeezed into the mirror, dimmed."""
    scale = mirror_bottom / (1.0 - horizon)
    x0, x1, y0, y1 = solid.bounds()
    top = mirror_bottom - (y1 - horizon) * scale
    bottom = min(mirror_bottom - (max(y0, horizon) - horizon) * scale, mirror_bottom - 1e-6)
    if bottom <= top:
        return
    pad = 1e-3
    r0, r1, c0, c1 = box_slices(x0 - pad, x1 + pad, top - pad, bottom, grid.size)
    if r0 == r1 or c0 == c1:
        return
    source_rows = horizon + (mirror_bottom - grid[r0:r1]) / np.float32(scale)
    inside, intensity, specular = solid.shade(grid[c0:c1], source_rows[:, None], light)
    inside &= (source_rows >= horizon)[:, None]
    patch = colour[:, None, None] * intensity + np.float32(shininess) * specular
    patch = np.float32(_REFLECTANCE) * np.clip(patch, 0.0, 1.0) + _MIRROR_TINT[:, None, None]
    paint(image, ids, (r0, r1), (c0, c1), inside, patch, object_id)


def render_clevr_mirror(
    rng: np.random.Generator, resolution: int, options: ClevrMirrorOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one ``clevr-mirror`` image and its instance mask.

    Pixel row ``i`` belongs to the mirror (or its frame) when ``(i + 0.5) / resolution <
    options.mirror_fraction`` and to the floor otherwise.

    Args:
        rng: Source of randomness; the image is a pure function of its state.
        resolution: Side length in pixels.
        options: Generator options.

    Returns:
        ``(image, ids)``: ``float32 [3, H, W]`` in ``[0, 1]`` and ``int64 [H, W]`` with 0 = background
        (floor, mirror, frame) and visible objects, reflections included, labelled ``1..K``.

    Examples:
        >>> image, ids = render_clevr_mirror(np.random.default_rng(0), 64, ClevrMirrorOptions())
        >>> image.shape, ids.shape, 1 <= int(ids.max()) <= 6
        ((3, 64, 64), (64, 64), True)
    """
    # Draw every random number before rasterising so that options such as ``reflections`` change the
    # picture but not the scene.
    count = int(rng.integers(options.min_objects, options.max_objects + 1))
    horizon = float(options.mirror_fraction)
    mirror_bottom = horizon - _FRAME
    tint = rng.uniform(0.85, 1.0, 3).astype(np.float32)
    light = Light.from_angles(float(rng.uniform(-1.0, -0.3)), float(rng.uniform(0.6, 1.0)))
    kinds = rng.integers(0, 3, count)
    colours = _CLEVR_COLOURS[rng.integers(0, len(_CLEVR_COLOURS), count)]
    if options.one_colour:  # after the draw, so the rest of the scene is unchanged
        colours = np.repeat(colours[:1], count, axis=0)
    shininess = np.asarray(_SHININESS)[rng.integers(0, 2, count)].tolist()
    placed = _place(rng, count, horizon)

    order = sorted(range(count), key=lambda k: placed[k][1])  # painter's order: far (high) first
    solids = [_solid(int(kinds[k]), *placed[k]) for k in order]
    colours = colours[order]
    shininess = [shininess[k] for k in order]

    grid = pixel_centres(resolution)
    image = _background(resolution, horizon, mirror_bottom, tint)
    ids = np.zeros((resolution, resolution), dtype=np.int64)
    if options.reflections:
        # In the mirror the nearest object is the farthest away, so reflections go near to far.
        for k in reversed(range(count)):
            _draw_reflection(
                image, ids, solids[k], colours[k], shininess[k], light, k + 1, grid, horizon, mirror_bottom
            )
    for k in range(count):
        draw_solid(image, ids, solids[k], colours[k], shininess[k], light, k + 1, grid)
    ids, _ = renumber(ids, count)
    return image, ids
