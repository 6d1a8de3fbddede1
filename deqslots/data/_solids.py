"""Pseudo-3D shaded solids (sphere, box, cylinder) rasterised from closed-form screen-space regions.

Screen coordinates are normalised with ``y`` pointing down. Surface normals and the light live in a
view frame with ``x`` right, ``y`` up and ``z`` towards the viewer. A solid's ``shade`` method
evaluates coverage and Lambert-plus-Phong intensity on any grid of sample points given as a column
vector ``ys [h, 1]`` and a row vector ``xs [w]``, which lets a caller remap ``ys`` (for example to draw
a vertically flipped reflection) without touching the geometry code.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from deqslots.data._raster import box_slices, paint

__all__ = ["Light", "Sphere", "Box", "Cylinder", "Solid", "draw_solid"]

_AMBIENT = 0.3
_SHININESS = 24.0


@dataclasses.dataclass(frozen=True)
class Light:
    """A directional light in the view frame, with its Blinn-Phong half vector.

    Build one with :meth:`from_angles`; the vectors are plain float tuples so that arithmetic with
    ``float32`` arrays stays in ``float32``.

    Args:
        direction: Unit vector towards the light.
        halfway: Unit vector halfway between the light and the viewer ``(0, 0, 1)``.

    Examples:
        >>> light = Light.from_angles(azimuth=-0.6, elevation=0.8)
        >>> round(math.hypot(*light.direction), 6)
        1.0
    """

    direction: tuple[float, float, float]
    halfway: tuple[float, float, float]

    @classmethod
    def from_angles(cls, azimuth: float, elevation: float) -> Light:
        """Light from ``azimuth`` radians towards ``+x`` off the view axis, ``elevation`` up."""
        ce = math.cos(elevation)
        d = (ce * math.sin(azimuth), math.sin(elevation), ce * math.cos(azimuth))
        h = (d[0], d[1], d[2] + 1.0)
        norm = math.hypot(*h)
        return cls(direction=d, halfway=(h[0] / norm, h[1] / norm, h[2] / norm))


def _intensity(lambert: np.ndarray | float) -> np.ndarray | float:
    return _AMBIENT + (1.0 - _AMBIENT) * np.maximum(lambert, 0.0)


def _specular(cos_half: np.ndarray | float) -> np.ndarray | float:
    return np.maximum(cos_half, 0.0) ** _SHININESS


@dataclasses.dataclass(frozen=True)
class Sphere:
    """A sphere seen as a disc of radius ``radius`` centred at ``(cx, cy)``."""

    cx: float
    cy: float
    radius: float

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, y_min, y_max)`` of the screen footprint."""
        r = self.radius
        return self.cx - r, self.cx + r, self.cy - r, self.cy + r

    def shade(self, xs: np.ndarray, ys: np.ndarray, light: Light) -> tuple[np.ndarray, ...]:
        """Coverage, diffuse intensity and specular term on the grid ``ys x xs``."""
        inv = 1.0 / self.radius
        nx = (xs - self.cx) * inv
        ny = (self.cy - ys) * inv
        d2 = nx * nx + ny * ny
        inside = d2 <= 1.0
        nz = np.sqrt(np.maximum(1.0 - d2, 0.0))
        to_light, h = light.direction, light.halfway
        lambert = nx * to_light[0] + ny * to_light[1] + nz * to_light[2]
        cos_half = nx * h[0] + ny * h[1] + nz * h[2]
        return inside, _intensity(lambert), _specular(cos_half)


@dataclasses.dataclass(frozen=True)
class Box:
    """An axis-aligned box in oblique projection: front face, top face and one side face.

    The front face spans ``[left, right] x [top, bottom]``; the receding edges project to the screen
    vector ``(depth_x, -depth_y)``, so the side face is on the right when ``depth_x > 0``.
    """

    left: float
    right: float
    top: float
    bottom: float
    depth_x: float
    depth_y: float

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, y_min, y_max)`` of the screen footprint."""
        return (
            self.left + min(self.depth_x, 0.0),
            self.right + max(self.depth_x, 0.0),
            self.top - self.depth_y,
            self.bottom,
        )

    def shade(self, xs: np.ndarray, ys: np.ndarray, light: Light) -> tuple[np.ndarray, ...]:
        """Coverage, diffuse intensity and specular term on the grid ``ys x xs``."""
        to_light, h = light.direction, light.halfway
        in_x = (xs >= self.left) & (xs <= self.right)
        front = in_x & (ys >= self.top) & (ys <= self.bottom)
        # Top face: walk back along the receding edge by t = (top - y) / depth_y.
        t_top = (self.top - ys) * (1.0 / self.depth_y)
        x_back = xs - t_top * self.depth_x
        top = (t_top > 0.0) & (t_top <= 1.0) & (x_back >= self.left) & (x_back <= self.right)
        edge = self.right if self.depth_x > 0 else self.left
        t_side = (xs - edge) * (1.0 / self.depth_x)
        y_back = ys + t_side * self.depth_y
        side = (t_side > 0.0) & (t_side <= 1.0) & (y_back >= self.top) & (y_back <= self.bottom)
        side_sign = 1.0 if self.depth_x > 0 else -1.0
        face = np.where(top, 1, np.where(side & ~front, 2, 0))
        lambert = np.array([to_light[2], to_light[1], side_sign * to_light[0]], dtype=np.float32)
        cos_half = np.array([h[2], h[1], side_sign * h[0]], dtype=np.float32)
        intensity = np.asarray(_intensity(lambert), dtype=np.float32)
        specular = np.asarray(_specular(cos_half), dtype=np.float32)
        return front | top | side, intensity[face], specular[face]


@dataclasses.dataclass(frozen=True)
class Cylinder:
    """An upright cylinder: body ``[cx - radius, cx + radius] x [top, bottom]`` with elliptic caps.

    ``cap`` is the semi-minor (vertical) axis of the cap ellipses, set by how steeply the camera looks
    down.
    """

    cx: float
    radius: float
    top: float
    bottom: float
    cap: float

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, y_min, y_max)`` of the screen footprint."""
        return self.cx - self.radius, self.cx + self.radius, self.top - self.cap, self.bottom + self.cap

    def shade(self, xs: np.ndarray, ys: np.ndarray, light: Light) -> tuple[np.ndarray, ...]:
        """Coverage, diffuse intensity and specular term on the grid ``ys x xs``."""
        to_light, h = light.direction, light.halfway
        nx = (xs - self.cx) * (1.0 / self.radius)
        nz2 = 1.0 - nx * nx
        nz = np.sqrt(np.maximum(nz2, 0.0))
        dy_top = (ys - self.top) * (1.0 / self.cap)
        cap_top = nz2 >= dy_top * dy_top
        # The body's lower edge is the front half of the bottom cap ellipse.
        body = (nz2 >= 0.0) & (ys >= self.top) & (ys <= self.bottom + self.cap * nz)
        intensity = np.where(cap_top, _intensity(to_light[1]), _intensity(nx * to_light[0] + nz * to_light[2]))
        specular = np.where(cap_top, _specular(h[1]), _specular(nx * h[0] + nz * h[2]))
        return body | cap_top, intensity.astype(np.float32), specular.astype(np.float32)


Solid = Sphere | Box | Cylinder


def draw_solid(
    image: np.ndarray,
    ids: np.ndarray,
    solid: Solid,
    colour: np.ndarray,
    shininess: float,
    light: Light,
    object_id: int,
    grid: np.ndarray,
) -> None:
    """Shade ``solid`` in ``colour`` and paint it over ``image`` and ``ids`` in place.

    Args:
        image: ``float32 [3, H, W]`` canvas.
        ids: ``int64 [H, W]`` instance-id canvas.
        solid: The solid to draw.
        colour: ``float32 [3]`` albedo in ``[0, 1]``.
        shininess: Weight of the specular highlight (0 = matte rubber).
        light: Scene light.
        object_id: Id written under the solid's visible pixels.
        grid: Pixel-centre coordinates from :func:`pixel_centres`.
    """
    x0, x1, y0, y1 = solid.bounds()
    pad = 1e-3
    r0, r1, c0, c1 = box_slices(x0 - pad, x1 + pad, y0 - pad, y1 + pad, grid.size)
    if r0 == r1 or c0 == c1:
        return
    inside, intensity, specular = solid.shade(grid[c0:c1], grid[r0:r1, None], light)
    patch = colour[:, None, None] * intensity + np.float32(shininess) * specular
    np.clip(patch, 0.0, 1.0, out=patch)
    paint(image, ids, (r0, r1), (c0, c1), inside, patch, object_id)
