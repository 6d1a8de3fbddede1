"""Rasterisation helpers shared by the procedural generators.

Every generator works in normalised image coordinates: ``x`` to the right and ``y`` downwards, both in
``[0, 1]``, with pixel ``i`` centred at ``(i + 0.5) / resolution``. Shapes are evaluated only inside
their bounding box, so drawing cost scales with object area rather than image area.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["pixel_centres", "box_slices", "paint", "renumber", "check_count_range"]


def pixel_centres(resolution: int) -> np.ndarray:
    """Return the normalised coordinates of the pixel centres along one axis.

    Args:
        resolution: Number of pixels along the axis.

    Returns:
        ``float32`` array of shape ``[resolution]`` with values ``(i + 0.5) / resolution``.

    Examples:
        >>> pixel_centres(4).tolist()
        [0.125, 0.375, 0.625, 0.875]
    """
    return (np.arange(resolution, dtype=np.float32) + 0.5) / np.float32(resolution)


def box_slices(
    x_min: float, x_max: float, y_min: float, y_max: float, resolution: int
) -> tuple[int, int, int, int]:
    """Convert a normalised bounding box into clipped pixel index bounds.

    Returns the pixels whose centres lie inside the box (callers pad the box slightly, so that float
    rounding cannot drop a boundary pixel of the shape evaluated inside it).

    Args:
        x_min: Left edge in normalised coordinates.
        x_max: Right edge.
        y_min: Top edge.
        y_max: Bottom edge.
        resolution: Image side length in pixels.

    Returns:
        ``(row_start, row_stop, col_start, col_stop)``; the range is empty when the box misses the image.

    Examples:
        >>> box_slices(0.25, 0.5, 0.0, 1.0, 8)
        (0, 8, 2, 4)
    """
    col_start = max(0, math.ceil(x_min * resolution - 0.5))
    col_stop = min(resolution, math.floor(x_max * resolution - 0.5) + 1)
    row_start = max(0, math.ceil(y_min * resolution - 0.5))
    row_stop = min(resolution, math.floor(y_max * resolution - 0.5) + 1)
    return row_start, max(row_start, row_stop), col_start, max(col_start, col_stop)


def paint(
    image: np.ndarray,
    ids: np.ndarray,
    rows: tuple[int, int],
    cols: tuple[int, int],
    inside: np.ndarray,
    colour: np.ndarray,
    object_id: int,
) -> None:
    """Draw one object patch over what is already there (painter's algorithm), in place.

    Args:
        image: ``float32 [3, H, W]`` canvas.
        ids: ``int64 [H, W]`` instance-id canvas.
        rows: ``(start, stop)`` rows of the patch.
        cols: ``(start, stop)`` columns of the patch.
        inside: ``bool [h, w]`` coverage of the patch.
        colour: ``float32 [3, h, w]`` or ``[3, 1, 1]`` colour of the covered pixels.
        object_id: Id written into ``ids`` where ``inside`` is true.
    """
    r0, r1 = rows
    c0, c1 = cols
    np.copyto(image[:, r0:r1, c0:c1], colour, where=inside[None])
    ids[r0:r1, c0:c1][inside] = object_id


def renumber(ids: np.ndarray, num_drawn: int) -> tuple[np.ndarray, np.ndarray]:
    """Relabel instance ids so that the visible objects are exactly ``1..K``.

    Objects hidden entirely by later ones would otherwise leave ids with no pixels, which breaks the
    "every id has pixels" contract and inflates slot counts.

    Args:
        ids: ``int64 [H, W]`` ids in ``0..num_drawn`` (0 = background).
        num_drawn: Number of objects that were drawn.

    Returns:
        ``(new_ids, kept)`` where ``kept`` holds the 0-based indices of the drawn objects that stayed
        visible, in order, so that ``kept[k - 1]`` is the object now labelled ``k``.

    Examples:
        >>> new, kept = renumber(np.array([[0, 3], [3, 1]]), 3)
        >>> new.tolist(), kept.tolist()
        ([[0, 2], [2, 1]], [0, 2])
    """
    visible = np.bincount(ids.ravel(), minlength=num_drawn + 1)[1:] > 0
    kept = np.flatnonzero(visible)
    if kept.size == num_drawn:
        return ids, kept
    lookup = np.zeros(num_drawn + 1, dtype=np.int64)
    lookup[kept + 1] = np.arange(1, kept.size + 1)
    return lookup[ids], kept


def check_count_range(low_name: str, low: int, high_name: str, high: int, minimum: int = 1) -> None:
    """Validate an inclusive ``[low, high]`` range of object counts.

    Args:
        low_name: Option name of the lower bound, for the error message.
        low: Lower bound.
        high_name: Option name of the upper bound.
        high: Upper bound.
        minimum: Smallest allowed lower bound.

    Raises:
        ValueError: If a bound is not an int, ``low < minimum`` or ``low > high``.
    """
    for name, value in ((low_name, low), (high_name, high)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an int; got {value!r}")
    if low < minimum:
        raise ValueError(f"{low_name} must be >= {minimum}; got {low}")
    if low > high:
        raise ValueError(f"{low_name} ({low}) must be <= {high_name} ({high})")
