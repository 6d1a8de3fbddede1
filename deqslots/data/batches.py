"""Deterministic batch streams: batch ``s`` depends only on (data, seed, s), so a resumed run sees the
same data as an uninterrupted one."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from .assignments import parse_assignments
from . import DATASETS, SPLITS, generate_batch, make_dataset
from .sources import is_disk_data, open_split
from .stream import SplitStream

__all__ = ["BatchStream", "describe_data", "procedural_data"]


def procedural_data(data: str) -> Optional[tuple[str, dict[str, Any]]]:
    """``(name, options)`` for a generated data set written ``NAME`` or ``NAME@KEY=VALUE,KEY=VALUE``, else None.

    Options are the generator's (:func:`deqslots.data.dataset_options`), values Python literals or bare
    strings, e.g. ``same-hue@min_objects=6,max_objects=8`` (scenes with more objects than training saw).

    Args:
        data: A ``--data`` value.

    Returns:
        ``(name, options)`` when ``data`` names a generator of :data:`deqslots.data.DATASETS` (``options``
        empty when no ``@...`` part is given), ``None`` for anything else (e.g. an on-disk form).

    Raises:
        ValueError: The ``@`` part is not ``KEY=VALUE,KEY=VALUE``.

    Examples:
        >>> procedural_data("same-hue@min_objects=6,max_objects=8")
        ('same-hue', {'min_objects': 6, 'max_objects': 8})
        >>> procedural_data("hdf5:clevr.h5") is None
        True
    """
    name, sep, text = data.partition("@")
    if name not in DATASETS:
        return None
    return name, parse_assignments(text, f"{name}@min_objects=6,max_objects=8")


def describe_data() -> str:
    """The ``--data`` forms :class:`BatchStream` accepts, as one line of text for help and error messages.

    Returns:
        The generator names and the on-disk forms (``folder:``, ``hdf5:``, ``tfrecord:``, ``coco:``,
        ``clevr-mirror:``, ``shapestacks:``).

    Examples:
        >>> describe_data()
        'one of shapes, clevr-mirror, stacks, same-hue (generator options as NAME@KEY=VALUE,...), or folder:PATH ...'
    """
    return (f"one of {', '.join(DATASETS)} (generator options as NAME@KEY=VALUE,...), or folder:PATH "
            "(images, optional PATH/../masks), hdf5:PATH, "
            "tfrecord:[NAME:]PATH (Multi-Object Datasets), coco:ANNOTATIONS.json:IMAGES, clevr-mirror:PATH "
            "or shapestacks:PATH")


class BatchStream:
    """Batches of ``{"image": [B, 3, R, R], "mask": [B, R, R] or None}`` for a step index.

    Args:
        data: a procedural dataset name or an on-disk form of :mod:`deqslots.data.sources`
            (``folder:PATH``, ``hdf5:PATH``, ``tfrecord:[NAME:]PATH``, ``coco:ANNOTATIONS.json:IMAGES``,
            ``clevr-mirror:PATH``, ``shapestacks:PATH``).
        split: "train", "val" or "test" (files on disk: a seeded 90/5/5 partition unless the data set
            defines its splits; a streamed TFRecord file is split record by record).
        resolution: image size.
        batch_size: images per batch (the global batch when ``world_size > 1``).
        seed: data seed.
        mask_root: folder data: where the id-mask PNGs are (default: ``PATH/masks``, or ``PATH/../masks`` when
            PATH is an ``images`` folder; see :func:`deqslots.data.sources.folder_layout`).
        rank: this process's share of each batch in multi-process training: rank ``r`` gets positions
            ``r * b .. (r + 1) * b - 1`` of the global batch, ``b = batch_size // world_size``, so the ranks'
            shares put together are exactly the single-process batch.
        world_size: the number of processes sharing each batch.

    Attributes:
        size: items in the split (the generator's split size for procedural data, e.g. 100 000 for train);
            ``None`` for a streamed TFRecord file, whose length is not known up front.
        local_batch_size: ``batch_size // world_size``, the images :meth:`batch` returns.

    Raises:
        ValueError: an unknown ``split`` or ``data`` form, a ``batch_size`` that is not a positive int or not
            divisible by ``world_size``, or ``rank`` outside ``[0, world_size)``.
        DataError: from the on-disk reader (:class:`~deqslots.data.DataError`), naming the bad file.

    Examples:
        >>> stream = BatchStream("shapes", "train", resolution=16, batch_size=4, seed=0)
        >>> batch = stream.batch(0)
        >>> batch["image"].shape, batch["mask"].shape
        (torch.Size([4, 3, 16, 16]), torch.Size([4, 16, 16]))
        >>> half = BatchStream("shapes", "train", resolution=16, batch_size=4, seed=0, rank=1, world_size=2)
        >>> bool((half.batch(0)["image"] == batch["image"][2:]).all())  # rank 1's share of the global batch
        True
    """

    def __init__(self, data: str, split: str, resolution: int, batch_size: int, seed: int,
                 mask_root: Optional[str] = None, rank: int = 0, world_size: int = 1) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; pass one of {', '.join(SPLITS)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"BatchStream rank must be in [0, world_size); got rank {rank}, world_size {world_size}")
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the world size {world_size}: each "
                             f"process takes an equal share of the global batch; pass a --batch-size that is a "
                             f"multiple of {world_size} or start a number of processes that divides it")
        self.data, self.split, self.resolution = data, split, resolution
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch_size = batch_size // world_size
        self.dataset = None
        self.stream: Optional[SplitStream] = None
        generated = procedural_data(data)
        self.generator = generated
        if generated is not None:
            self.size = len(make_dataset(generated[0], split, resolution=resolution, seed=seed, **generated[1]))
        elif is_disk_data(data):
            part = open_split(data, split, resolution, seed, mask_root=mask_root)
            if isinstance(part, SplitStream):  # a streamed file: read in order, never indexed
                self.stream, self.size = part, None
            else:
                self.dataset, self.indices, self.size = part.dataset, part.indices, len(part)
        else:
            raise ValueError(f"unknown data {data!r}: pass {describe_data()}")

    def batch(self, step: int) -> dict[str, Optional[torch.Tensor]]:
        """The batch for optimisation step ``step`` (epoch-wise reshuffled for data on disk): this rank's share.

        Args:
            step: the optimisation step (0-based); the same ``(data, seed, step)`` always gives the same batch.

        Returns:
            ``{"image": float32 [b, 3, R, R] in [0, 1], "mask": int64 [b, R, R] or None}`` with
            ``b = local_batch_size``; the mask is ``None`` when an item of the batch has none.

        Raises:
            DataError: an on-disk item that cannot be read (naming the file), or a streamed split with no items.
        """
        start = step * self.batch_size + self.rank * self.local_batch_size
        positions = [(start + i) for i in range(self.local_batch_size)]
        if self.stream is not None:
            return _collate(self.stream.items(positions))
        if self.dataset is None:
            name, options = self.generator
            images, masks = generate_batch(name, [p % self.size for p in positions], self.split,
                                           self.resolution, self.seed, **options)
            return {"image": images, "mask": masks}
        items, perms = [], {}
        for p in positions:
            epoch, offset = divmod(p, self.size)
            if epoch not in perms:
                perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            perm = perms[epoch]
            items.append(self.dataset[int(self.indices[perm[offset]])])
        return _collate(items)


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, Optional[torch.Tensor]]:
    images = torch.stack([it["image"] for it in items])
    masks = torch.stack([it["mask"] for it in items]) if all("mask" in it for it in items) else None
    return {"image": images, "mask": masks}
