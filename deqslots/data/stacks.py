"""``stacks``: ShapeStacks-like towers of shaded blocks standing on a floor in front of a wall.

Each image holds one or two towers with ``min_objects..max_objects`` blocks in all (two towers only
when there are at least four blocks, two or more per tower). Blocks are cubes, cuboids or cylinders in
random colours, stacked bottom to top with small horizontal offsets, so each block occludes the top face
of the one below. The wall and floor are background (id 0); blocks are labelled ``1..K`` over the
visible ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deqslots.data._raster import check_count_range, pixel_centres, renumber
from deqslots.data._solids import Box, Cylinder, Light, Solid, draw_solid

__all__ = ["StacksOptions", "render_stacks"]

_TOP_MARGIN = 0.06  # free space kept above the tallest tower, in image units


@dataclasses.dataclass(frozen=True)
class StacksOptions:
    """Options of the ``stacks`` generator.

    Args:
        min_objects: Fewest blocks per image.
        max_objects: Most blocks per image; the mask never has more ids than this.
        max_towers: 1 or 2; two towers need at least four blocks.

    Raises:
        ValueError: A count that is not an int, ``min_objects < 1`` or ``min_objects > max_objects``, or
            ``max_towers`` not 1 or 2.

    Examples:
        >>> StacksOptions(max_objects=4, max_towers=1).max_towers
        1
    """

    min_objects: int = 2
    max_objects: int = 6
    max_towers: int = 2

    def __post_init__(self) -> None:
        check_count_range("min_objects", self.min_objects, "max_objects", self.max_objects)
        if self.max_towers not in (1, 2) or isinstance(self.max_towers, bool):
            raise ValueError(f"max_towers must be 1 or 2; got {self.max_towers!r}")


def _background(resolution: int, floor: float, wall: np.ndarray, ground: np.ndarray) -> np.ndarray:
    """Wall above the floor line with a vertical gradient; floor below, brighter towards the viewer."""
    grid = pixel_centres(resolution)
    on_floor = grid >= floor
    shade = np.where(on_floor, 0.75 + 0.25 * (grid - floor) / (1.0 - floor), 0.7 + 0.3 * grid / floor)
    rows = np.where(on_floor[None, :], ground[:, None], wall[:, None]) * shade[None, :].astype(np.float32)
    cols = 1.0 - 0.2 * (2.0 * grid - 1.0) ** 2
    return rows[:, :, None] * cols[None, None, :]


def _tower(
    rng: np.random.Generator, count: int, centre: float, floor: float, max_width: float
) -> list[Solid]:
    """Stack ``count`` blocks on the floor around column ``centre``, bottom block first."""
    kinds = rng.integers(0, 3, count)  # cube, cuboid, cylinder
    widths = rng.uniform(0.55, 1.0, count) * max_width
    heights = widths * np.where(kinds == 0, 1.0, np.where(kinds == 1, rng.uniform(0.45, 1.3, count), 0.8))
    shifts = rng.uniform(-0.22, 0.22, count)
    # Shrink the whole tower when it would not fit under the top margin.
    depth = 0.3 * widths
    fit = min(1.0, (floor - _TOP_MARGIN) / float(heights.sum() + depth[-1]))
    widths, heights, depth = widths * fit, heights * fit, depth * fit
    blocks: list[Solid] = []
    base, cx = floor + 0.02, centre
    for k in range(count):
        half, height = float(widths[k]) / 2.0, float(heights[k])
        if k:
            cx += float(shifts[k]) * float(widths[k - 1])
        if kinds[k] == 2:
            cap = float(depth[k]) / 2.0
            blocks.append(Cylinder(cx, half, base - height, base, cap))
        else:
            side = 0.5 * float(depth[k]) * (1.0 if cx < 0.5 else -1.0)
            blocks.append(Box(cx - half, cx + half, base - height, base, side, float(depth[k])))
        base -= height
    return blocks


def render_stacks(
    rng: np.random.Generator, resolution: int, options: StacksOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one ``stacks`` image and its instance mask.

    Args:
        rng: Source of randomness; the image is a pure function of its state.
        resolution: Side length in pixels.
        options: Generator options.

    Returns:
        ``(image, ids)``: ``float32 [3, H, W]`` in ``[0, 1]`` and ``int64 [H, W]`` with 0 = wall and
        floor and visible blocks labelled ``1..K``, bottom of the first tower first.

    Examples:
        >>> image, ids = render_stacks(np.random.default_rng(0), 64, StacksOptions())
        >>> image.shape, ids.shape, int(ids.max()) >= 1
        ((3, 64, 64), (64, 64), True)
    """
    count = int(rng.integers(options.min_objects, options.max_objects + 1))
    floor = float(rng.uniform(0.72, 0.84))
    wall = rng.uniform(0.25, 0.85, 3).astype(np.float32)
    ground = rng.uniform(0.25, 0.85, 3).astype(np.float32)
    light = Light.from_angles(float(rng.uniform(-0.9, 0.9)), float(rng.uniform(0.5, 1.0)))
    two = options.max_towers == 2 and count >= 4 and rng.random() < 0.5
    if two:
        first = int(rng.integers(2, count - 1))
        left, right = rng.uniform(0.25, 0.38), rng.uniform(0.62, 0.75)
        solids = _tower(rng, first, float(left), floor, 0.2)
        solids += _tower(rng, count - first, float(right), floor, 0.2)
    else:
        solids = _tower(rng, count, float(rng.uniform(0.38, 0.62)), floor, 0.3)
    colours = rng.uniform(0.05, 1.0, (count, 3)).astype(np.float32)
    shininess = rng.uniform(0.0, 0.4, count).tolist()

    grid = pixel_centres(resolution)
    image = _background(resolution, floor, wall, ground)
    ids = np.zeros((resolution, resolution), dtype=np.int64)
    for k, solid in enumerate(solids):
        draw_solid(image, ids, solid, colours[k], shininess[k], light, k + 1, grid)
    ids, _ = renumber(ids, count)
    return image, ids
