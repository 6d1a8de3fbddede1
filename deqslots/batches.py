"""Deterministic batch streams: batch ``s`` depends only on (data, seed, s), so a resumed run sees the
same data as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .data import DATASETS, HDF5Dataset, ImageFolderDataset, generate_batch, make_dataset

__all__ = ["BatchStream", "describe_data"]


def describe_data() -> str:
    return f"one of {', '.join(DATASETS)}, or folder:PATH (images, optional PATH/../masks), or hdf5:PATH"


class BatchStream:
    """Batches of ``{"image": [B, 3, R, R], "mask": [B, R, R] or None}`` for a step index.

    Args:
        data: a procedural dataset name, ``folder:PATH`` or ``hdf5:PATH``.
        split: "train", "val" or "test" (files on disk: the split is a seeded 90/5/5 partition).
        resolution: image size.
        batch_size: images per batch.
        seed: data seed.
    """

    def __init__(self, data: str, split: str, resolution: int, batch_size: int, seed: int,
                 mask_root: Optional[str] = None) -> None:
        self.data, self.split, self.resolution = data, split, resolution
        self.batch_size, self.seed = batch_size, seed
        self.dataset = None
        if data in DATASETS:
            self.size = len(make_dataset(data, split, resolution=resolution, seed=seed))
        elif data.startswith("folder:") or data.startswith("hdf5:"):
            kind, path = data.split(":", 1)
            if kind == "folder":
                full = ImageFolderDataset(path, resolution, mask_root=mask_root)
            else:
                full = HDF5Dataset(path, resolution=resolution)
            order = np.random.default_rng(seed).permutation(len(full))
            n_val = max(1, len(full) // 20) if len(full) >= 3 else 0
            parts = {"val": order[:n_val], "test": order[n_val:2 * n_val], "train": order[2 * n_val:]}
            self.indices = parts[split]
            if len(self.indices) == 0:
                raise ValueError(f"{data} has too few images ({len(full)}) for a {split} split")
            self.dataset = full
            self.size = len(self.indices)
        else:
            raise ValueError(f"unknown data {data!r}: pass {describe_data()}")

    def batch(self, step: int) -> dict[str, Optional[torch.Tensor]]:
        """The batch for optimisation step ``step`` (epoch-wise reshuffled for data on disk)."""
        start = step * self.batch_size
        positions = [(start + i) for i in range(self.batch_size)]
        if self.dataset is None:
            images, masks = generate_batch(self.data, [p % self.size for p in positions], self.split,
                                           self.resolution, self.seed)
            return {"image": images, "mask": masks}
        items, perms = [], {}
        for p in positions:
            epoch, offset = divmod(p, self.size)
            if epoch not in perms:
                perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            perm = perms[epoch]
            items.append(self.dataset[int(self.indices[perm[offset]])])
        images = torch.stack([it["image"] for it in items])
        masks = torch.stack([it["mask"] for it in items]) if all("mask" in it for it in items) else None
        return {"image": images, "mask": masks}
