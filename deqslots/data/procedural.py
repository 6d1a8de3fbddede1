"""Registry, dataset wrapper and batch helper for the procedural generators.

Item ``i`` of split ``s`` with seed ``seed`` is drawn from ``numpy.random.default_rng([seed, s_id,
i])``, so any item can be generated on its own, in any order, in any worker process, and equals the
same item generated inside a batch. Splits use distinct ``s_id`` and hence independent streams.
"""

from __future__ import annotations

import dataclasses
import difflib
import operator
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from deqslots.data.clevr_mirror import ClevrMirrorOptions, render_clevr_mirror
from deqslots.data.same_hue import SameHueOptions, render_same_hue
from deqslots.data.shapes import ShapesOptions, render_shapes
from deqslots.data.stacks import StacksOptions, render_stacks

__all__ = [
    "DATASETS",
    "SPLITS",
    "DEFAULT_SIZES",
    "ProceduralDataset",
    "dataset_options",
    "make_dataset",
    "generate_batch",
]


class _Generator(NamedTuple):
    name: str
    options: type
    render: Callable[[np.random.Generator, int, Any], tuple[np.ndarray, np.ndarray]]


_GENERATORS: tuple[_Generator, ...] = (
    _Generator("shapes", ShapesOptions, render_shapes),
    _Generator("clevr-mirror", ClevrMirrorOptions, render_clevr_mirror),
    _Generator("stacks", StacksOptions, render_stacks),
    _Generator("same-hue", SameHueOptions, render_same_hue),
)

#: Names accepted by :func:`make_dataset`.
DATASETS: tuple[str, ...] = tuple(g.name for g in _GENERATORS)
#: Split names; the position in this tuple is the split's stream id.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Number of items per split when ``size`` is not given (train is virtual: items are made on demand).
DEFAULT_SIZES: tuple[tuple[str, int], ...] = (("train", 100_000), ("val", 1_000), ("test", 1_000))


def _choice(kind: str, value: Any, valid: tuple[str, ...]) -> str:
    if value not in valid:
        close = difflib.get_close_matches(str(value), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown {kind} {value!r}{hint}; valid {kind}s: {', '.join(valid)}")
    return value


def _generator(name: str) -> _Generator:
    _choice("dataset", name, DATASETS)
    return next(g for g in _GENERATORS if g.name == name)


def _build_options(generator: _Generator, options: dict[str, Any]) -> Any:
    valid = tuple(f.name for f in dataclasses.fields(generator.options))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, valid, n=1)
            hints.append(repr(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown option(s) {', '.join(hints)} for dataset {generator.name!r}; "
            f"valid options: {', '.join(valid)}"
        )
    return generator.options(**options)


def _check_common(resolution: int, seed: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 8:
        raise ValueError(f"resolution must be an int >= 8; got {resolution!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")


def dataset_options(name: str) -> dict[str, Any]:
    """Return the options a procedural dataset accepts, with their defaults.

    Args:
        name: One of :data:`DATASETS`.

    Returns:
        A new dict mapping option name to default value.

    Raises:
        ValueError: ``name`` is not a generator (the message suggests the closest name).

    Examples:
        >>> dataset_options("stacks")
        {'min_objects': 2, 'max_objects': 6, 'max_towers': 2}
    """
    return dataclasses.asdict(_generator(name).options())


class ProceduralDataset(Dataset):
    """A map-style dataset whose items are rendered on demand from ``(seed, split, index)``.

    Build it with :func:`make_dataset`. Items are dicts ``{"image": float32 [3, H, W] in [0, 1],
    "mask": int64 [H, W]}`` with mask 0 = background and ``1..K`` the visible objects,
    ``K <= max_objects``. Instances hold no open resources and pickle cheaply, so they work with any
    number of ``DataLoader`` workers.

    Args:
        name: Generator name, one of :data:`DATASETS`.
        split: One of :data:`SPLITS`.
        resolution: Image side length in pixels.
        size: Number of items.
        seed: Non-negative base seed.
        options: The generator's validated option object.

    Raises:
        ValueError: An unknown ``name`` or ``split`` (the constructor does not check the other arguments;
            :func:`make_dataset` does).
        IndexError: On ``data[i]`` with ``i`` outside ``[-len(data), len(data))``.

    Examples:
        >>> data = make_dataset("shapes", "test", resolution=32, size=10)
        >>> image, mask = data.render(3)  # numpy arrays, without the tensor wrap
        >>> bool((torch.from_numpy(mask) == data[3]["mask"]).all()), data.max_objects
        (True, 6)
    """

    def __init__(self, name: str, split: str, resolution: int, size: int, seed: int, options: Any) -> None:
        self.name = name
        self.split = split
        self.resolution = int(resolution)
        self.size = int(size)
        self.seed = int(seed)
        self.options = options
        self._split_id = SPLITS.index(_choice("split", split, SPLITS))
        self._render = _generator(name).render

    @property
    def max_objects(self) -> int:
        """Upper bound on the number of object ids in a mask (a natural slot count is this plus one)."""
        return int(self.options.max_objects)

    def __len__(self) -> int:
        return self.size

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Render item ``index`` as numpy arrays ``(image [3, H, W] float32, mask [H, W] int64)``.

        Args:
            index: Non-negative item index; not checked against ``len(self)``, so any index renders.

        Returns:
            ``(image, mask)``: ``float32 [3, H, W]`` in ``[0, 1]`` and ``int64 [H, W]`` with 0 = background
            and ``1..K`` the visible objects; the same arrays as ``self[index]`` holds as tensors.
        """
        rng = np.random.default_rng([self.seed, self._split_id, index])
        return self._render(rng, self.resolution, self.options)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = operator.index(index)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index out of range for {self.name!r} {self.split} split of size {self.size}")
        image, mask = self.render(index)
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask)}

    def __repr__(self) -> str:
        return (
            f"ProceduralDataset(name={self.name!r}, split={self.split!r}, resolution={self.resolution}, "
            f"size={self.size}, seed={self.seed}, options={self.options})"
        )


def make_dataset(
    name: str,
    split: str = "train",
    resolution: int = 64,
    size: int | None = None,
    seed: int = 0,
    **options: Any,
) -> ProceduralDataset:
    """Create a procedural multi-object dataset.

    Args:
        name: ``"shapes"`` (Multi-dSprites-like), ``"clevr-mirror"`` (CLEVR-like scene with a mirror) or
            ``"stacks"`` (ShapeStacks-like towers); see :data:`DATASETS`.
        split: ``"train"``, ``"val"`` or ``"test"``; each split is an independent stream.
        resolution: Image side length in pixels (>= 8).
        size: Number of items; defaults to 100 000 for train and 1 000 for val and test.
        seed: Non-negative base seed; the same ``(seed, split, index)`` always gives the same item.
        **options: Generator options (see :func:`dataset_options`); unknown ones raise ``ValueError``.

    Returns:
        A :class:`ProceduralDataset`.

    Raises:
        ValueError: On an unknown name, split or option, or an invalid value.

    Examples:
        >>> data = make_dataset("shapes", "val", resolution=32, max_objects=4)
        >>> item = data[0]
        >>> item["image"].shape, item["mask"].dtype, len(data)
        (torch.Size([3, 32, 32]), torch.int64, 1000)
    """
    generator = _generator(name)
    _choice("split", split, SPLITS)
    _check_common(resolution, seed)
    if size is None:
        size = dict(DEFAULT_SIZES)[split]
    elif isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int or None; got {size!r}")
    return ProceduralDataset(name, split, resolution, size, seed, _build_options(generator, options))


def generate_batch(
    name: str,
    indices: Iterable[int] | int,
    split: str = "train",
    resolution: int = 64,
    seed: int = 0,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a batch of items directly, without a ``Dataset`` or ``DataLoader``.

    Args:
        name: Generator name, one of :data:`DATASETS`.
        indices: Item indices (any non-negative ints), or an int ``n`` meaning ``range(n)``.
        split: One of :data:`SPLITS`.
        resolution: Image side length in pixels.
        seed: Non-negative base seed.
        **options: Generator options, as for :func:`make_dataset`.

    Returns:
        ``(images, masks)``: ``float32 [B, 3, H, W]`` and ``int64 [B, H, W]``; row ``b`` equals item
        ``indices[b]`` of ``make_dataset(name, split, resolution, seed=seed, **options)``.

    Raises:
        ValueError: ``indices`` is empty or holds a negative index, or as :func:`make_dataset` on an
            unknown name, split or option, or an invalid value.

    Examples:
        >>> images, masks = generate_batch("stacks", [3, 7], split="test", resolution=32)
        >>> images.shape, masks.shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2, 32, 32]))
    """
    indices = range(indices) if isinstance(indices, (int, np.integer)) else list(indices)
    if any(operator.index(i) < 0 for i in indices):
        raise ValueError("indices must be non-negative")
    if len(indices) == 0:
        raise ValueError("indices must not be empty")
    data = make_dataset(name, split, resolution, size=max(indices) + 1, seed=seed, **options)
    images = np.empty((len(indices), 3, resolution, resolution), dtype=np.float32)
    masks = np.empty((len(indices), resolution, resolution), dtype=np.int64)
    for b, index in enumerate(indices):
        images[b], masks[b] = data.render(operator.index(index))
    return torch.from_numpy(images), torch.from_numpy(masks)
