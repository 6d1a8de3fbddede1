"""The ``--data`` forms for data on disk, and the split each one is read with.

======================================  ==================================================================
``folder:PATH``                         images (recursive), fixed 90/5/5 split (the same for every
                                        ``--seed``); id masks (PNG, 0 = background) from ``PATH/masks``
                                        mirroring the images' names, with the images in ``PATH/images`` or
                                        in ``PATH`` itself (the masks folder is then not read as images); a
                                        ShapeStacks folder is recognised and read as ``shapestacks:PATH``
``hdf5:PATH``                           arrays ``image`` (and ``mask``), fixed 90/5/5 split
``tfrecord:PATH``, ``tfrecord:NAME:PATH``  a Multi-Object Datasets file, streamed; split record by record
``coco:ANNOTATIONS.json:IMAGES``        COCO instances via pycocotools, fixed 90/5/5 split of the file
``clevr-mirror:PATH``                   CLEVR-Mirror images: ``PATH/{train,val,test}`` if present, else
                                        the paper's 70/15/15 split (fixed)
``shapestacks:PATH``                    ShapeStacks with its own splits (``splits/default``)
======================================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Optional, Union

import numpy as np
from torch.utils.data import Dataset

from deqslots.data.coco import CocoDataset
from deqslots.data.hdf5 import HDF5Dataset, has_dataset
from deqslots.data.image_folder import ImageFolderDataset
from deqslots.data.shapestacks import ShapeStacksDataset, is_shapestacks_root
from deqslots.data.stream import SplitStream
from deqslots.data.tfrecord import MultiObjectTFRecord

__all__ = ["DISK_FORMS", "MapSplit", "is_disk_data", "iterate_all", "open_split"]

#: The prefixes of ``--data`` values read from disk.
DISK_FORMS: tuple[str, ...] = ("folder", "hdf5", "tfrecord", "coco", "clevr-mirror", "shapestacks")
_EXAMPLES = {
    "folder": "folder:data/images",
    "hdf5": "hdf5:data/clevr.h5",
    "tfrecord": "tfrecord:clevr_with_masks_train.tfrecords or tfrecord:tetrominoes:tetrominoes_train.tfrecords",
    "coco": "coco:annotations/instances_val2017.json:val2017",
    "clevr-mirror": "clevr-mirror:data/clevr-mirror",
    "shapestacks": "shapestacks:data/shapestacks",
}
_SPLITS = ("train", "val", "test")


class MapSplit:
    """One split of an indexable data set: ``dataset[indices[i]]`` is item ``i``.

    Args:
        dataset: The whole data set (every split), indexable by int.
        indices: ``int [n]`` positions in ``dataset`` of this split's items, in item order.

    Examples:
        >>> from deqslots.data import make_dataset
        >>> part = MapSplit(make_dataset("shapes", "test", resolution=16, size=10), np.array([7, 2, 5]))
        >>> len(part), part.dataset[int(part.indices[0])]["mask"].shape
        (3, torch.Size([16, 16]))
    """

    def __init__(self, dataset: Dataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)


def is_disk_data(data: str) -> bool:
    """Whether ``data`` is one of the on-disk forms (``PREFIX:...``).

    Args:
        data: A ``--data`` value.

    Returns:
        True when ``data`` starts with one of :data:`DISK_FORMS` followed by ``:``; the path is not checked
        (it may be empty or missing).

    Examples:
        >>> is_disk_data("hdf5:data/clevr.h5"), is_disk_data("shapes"), is_disk_data("hdf5")
        (True, False, False)
    """
    return data.split(":", 1)[0] in DISK_FORMS and ":" in data


def _parts(data: str) -> tuple[str, str]:
    kind, sep, rest = data.partition(":")
    if not sep or kind not in DISK_FORMS:
        raise ValueError(f"{data!r} is not a form of data on disk; pass PREFIX:PATH with PREFIX one of "
                         f"{', '.join(DISK_FORMS)}, e.g. {_EXAMPLES['hdf5']}")
    if not rest:
        usage = {"coco": "coco:ANNOTATIONS.json:IMAGES", "tfrecord": "tfrecord:[NAME:]PATH"}.get(kind, f"{kind}:PATH")
        raise ValueError(f"{data!r} names no path; pass {usage}, e.g. {_EXAMPLES[kind]}")
    return kind, rest


def _tfrecord_args(rest: str) -> tuple[Optional[str], str]:
    name, sep, path = rest.partition(":")
    if sep and not Path(rest).exists() and name.replace("-", "_").lower() in (
            "clevr_with_masks", "clevr", "clevr6", "multi_dsprites", "objects_room", "tetrominoes", "tetris"):
        return name, path
    return None, rest


def _coco_args(rest: str) -> tuple[str, str]:
    annotations, sep, images = rest.partition(".json:")
    if sep:
        return annotations + ".json", images
    annotations, sep, images = rest.rpartition(":")
    if not sep or not annotations or not images:
        raise ValueError(f"coco:{rest} needs both the annotations JSON and the image folder: "
                         f"{_EXAMPLES['coco']}")
    return annotations, images


# The permutation that splits files on disk into train/val/test. Fixed, not the run's --seed: runs of several
# seeds must share one test set (and no seed may train on another's test images).
SPLIT_SEED = 0


def _fractions(size: int, split: str, val: float, data: str) -> np.ndarray:
    order = np.random.default_rng(SPLIT_SEED).permutation(size)
    n_val = max(1, int(size * val)) if size >= 3 else 0
    parts = {"val": order[:n_val], "test": order[n_val:2 * n_val], "train": order[2 * n_val:]}
    if len(parts[split]) == 0:
        raise ValueError(f"{data} has too few images ({size}) for a {split} split: files on disk are split "
                         f"{round(100 * (1 - 2 * val))}/{round(100 * val)}/{round(100 * val)} into train/val/test, "
                         "which needs at least 3 images")
    return parts[split]


def open_split(data: str, split: str, resolution: Optional[int], seed: int, mask_root: Optional[str] = None,
               shuffle_buffer: int = 256) -> Union[MapSplit, SplitStream]:
    """Open split ``split`` of the on-disk data ``data`` (see the module docstring for the forms).

    Args:
        data: An on-disk ``--data`` form (``folder:``, ``hdf5:``, ``tfrecord:``, ``coco:``, ``clevr-mirror:``,
            ``shapestacks:``); callers check it with :func:`is_disk_data` first.
        split: ``"train"``, ``"val"`` or ``"test"``.
        resolution: Output side; ``None`` keeps the reader's size (image folders need an int).
        seed: The split and shuffle seed of a streamed TFRecord file; indexable data is split by the fixed
            :data:`SPLIT_SEED` instead, so runs of every seed share one test set.
        mask_root: ``folder:`` only: the mask folder (default: found by :func:`folder_layout`).
        shuffle_buffer: ``tfrecord:`` only: items held for shuffling the train split.

    Returns:
        A :class:`MapSplit` for indexable data, or a :class:`~deqslots.data.stream.SplitStream` for a
        streamed TFRecord file.

    Raises:
        ValueError: ``data`` has no known prefix (one of :data:`DISK_FORMS`) or names no path, a ``coco:`` form
            lacks the JSON or the image folder, or the data has too few images (fewer than 3) for the split; also
            a reader's bad argument.
        FileNotFoundError: The file or folder is missing.
        DataError: From the reader, naming the bad file.

    Examples:
        An HDF5 file of 40 images, split 90/5/5:

        >>> import tempfile
        >>> import h5py
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with h5py.File(f"{tmp}/toy.h5", "w") as f:
        ...         _ = f.create_dataset("image", data=np.zeros((40, 8, 8, 3), np.uint8))
        ...     parts = {s: open_split(f"hdf5:{tmp}/toy.h5", s, None, seed=0) for s in ("train", "val", "test")}
        >>> {s: len(part) for s, part in parts.items()}
        {'train': 36, 'val': 2, 'test': 2}
        >>> sorted(np.concatenate([part.indices for part in parts.values()]).tolist()) == list(range(40))
        True
    """
    kind, rest = _parts(data)
    if kind == "tfrecord":
        name, path = _tfrecord_args(rest)
        source = MultiObjectTFRecord(path, name=name, resolution=resolution)
        return SplitStream(source, split, seed, shuffle_buffer=shuffle_buffer, describe=str(source.path))
    if kind == "shapestacks" or (kind == "folder" and is_shapestacks_root(rest)):
        dataset = ShapeStacksDataset(rest, split, resolution)
        return MapSplit(dataset, np.arange(len(dataset)))
    if kind == "clevr-mirror":
        root = Path(rest)
        if all((root / s).is_dir() for s in _SPLITS):
            dataset = ImageFolderDataset(root / split, resolution)
            return MapSplit(dataset, np.arange(len(dataset)))
        dataset = ImageFolderDataset(root, resolution)
        # Chang et al. (2022) split the CLEVR-Mirror images they got from SLATE's authors 70/15/15.
        return MapSplit(dataset, _fractions(len(dataset), split, 0.15, data))
    if kind == "coco":
        dataset = CocoDataset(*_coco_args(rest), resolution=resolution)
    elif kind == "folder":
        images, masks = folder_layout(rest, mask_root)
        dataset = ImageFolderDataset(images, resolution, mask_root=masks)
    else:  # images only (FG-ARI is then absent) when the file has no "mask" dataset
        dataset = HDF5Dataset(rest, resolution=resolution, mask_key="mask" if has_dataset(rest, "mask") else None)
    return MapSplit(dataset, _fractions(len(dataset), split, 0.05, data))


def iterate_all(data: str, resolution: Optional[int]) -> tuple[Iterator[dict], Optional[int]]:
    """Every item of ``data`` in its stored order (all splits), and the count when it is known up front.

    ShapeStacks and split CLEVR-Mirror folders give their train, val and test items in that order.

    Args:
        data: An on-disk ``--data`` form (as for :func:`open_split`).
        resolution: Output side; ``None`` keeps the reader's size (not allowed for image folders).

    Returns:
        ``(items, count)``: a lazy iterator over the item dicts, and their number, or ``None`` for a streamed
        TFRecord file (counted only by reading it).

    Raises:
        ValueError: ``data`` has no known prefix (one of :data:`DISK_FORMS`) or names no path, a ``coco:`` form
            lacks the JSON or the image folder, or an image folder form without ``resolution``.
        FileNotFoundError: The file or folder is missing.
        DataError: From the reader, naming the bad file (while iterating, for an unreadable item).

    Examples:
        >>> import tempfile
        >>> import h5py
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with h5py.File(f"{tmp}/toy.h5", "w") as f:
        ...         _ = f.create_dataset("image", data=np.zeros((5, 8, 8, 3), np.uint8))
        ...     items, count = iterate_all(f"hdf5:{tmp}/toy.h5", resolution=4)
        ...     shapes = [tuple(item["image"].shape) for item in items]
        >>> count, shapes[0], len(shapes)
        (5, (3, 4, 4), 5)
    """
    kind, rest = _parts(data)
    if kind == "tfrecord":
        name, path = _tfrecord_args(rest)
        return iter(MultiObjectTFRecord(path, name=name, resolution=resolution)), None
    parts: list[Dataset]
    if kind == "shapestacks" or (kind == "folder" and is_shapestacks_root(rest)):
        parts = [ShapeStacksDataset(rest, s, resolution) for s in _SPLITS]
    elif kind == "clevr-mirror" and all((Path(rest) / s).is_dir() for s in _SPLITS):
        parts = [_need_resolution(ImageFolderDataset, Path(rest) / s, resolution, data) for s in _SPLITS]
    elif kind == "coco":
        parts = [CocoDataset(*_coco_args(rest), resolution=resolution)]
    elif kind == "folder":
        images, masks = folder_layout(rest)
        parts = [_need_resolution(ImageFolderDataset, images, resolution, data, mask_root=masks)]
    elif kind == "clevr-mirror":
        parts = [_need_resolution(ImageFolderDataset, rest, resolution, data)]
    else:
        parts = [HDF5Dataset(rest, resolution=resolution, mask_key="mask" if has_dataset(rest, "mask") else None)]
    return (part[i] for part in parts for i in range(len(part))), sum(len(p) for p in parts)


def _need_resolution(cls, path, resolution: Optional[int], data: str, **kw):
    if resolution is None:
        raise ValueError(f"{data}: image folders hold images of any size; pass --resolution R")
    return cls(path, resolution, **kw)


def folder_layout(path: str, mask_root: Optional[str] = None) -> tuple[Path, Optional[Path]]:
    """The image folder and the mask folder (None: no masks) of ``folder:PATH``.

    An explicit ``mask_root`` wins; else ``PATH/images`` + ``PATH/masks``, or images in ``PATH`` with masks in
    ``PATH/masks`` (which :class:`ImageFolderDataset` then leaves out of the images), or ``PATH`` named
    ``images`` beside a ``masks`` folder.
    """
    root = Path(path)
    if mask_root is not None:
        return root, Path(mask_root)
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return root / "images", root / "masks"
    if (root / "masks").is_dir():
        return root, root / "masks"
    if root.name == "images" and (root.parent / "masks").is_dir():
        return root, root.parent / "masks"
    return root, None
