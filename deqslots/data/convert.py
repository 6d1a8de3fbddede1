"""``deqslots data convert SRC DST.h5``: any ``--data`` form on disk to the HDF5 layout, for random access.

The output holds ``image`` (``uint8 [N, H, W, 3]``) and, when the source has masks, ``mask``
(``uint16 [N, H, W]`` instance ids, 0 = background): the layout :class:`~deqslots.data.HDF5Dataset`
reads, so ``--data hdf5:DST.h5`` trains on it. Items are streamed from the source and appended in
chunks of one image (gzip level 1), so a data set larger than memory converts in constant memory. The
file is written under a temporary name and renamed when complete: an interrupted conversion leaves
no half-written ``DST.h5``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import h5py
import numpy as np
from tqdm import tqdm

from deqslots.data.errors import DataError
from deqslots.data.sources import is_disk_data, iterate_all

__all__ = ["convert"]


def _as_uint8(image) -> np.ndarray:
    return np.rint(image.permute(1, 2, 0).numpy() * 255.0).clip(0, 255).astype(np.uint8)


def convert(src: str, dst: str | os.PathLike[str], resolution: Optional[int] = None, limit: Optional[int] = None,
            progress: bool = True, overwrite: bool = False) -> dict:
    """Write every item of ``src`` (in stored order, all splits) into the HDF5 file ``dst``.

    Args:
        src: A ``--data`` form on disk (``tfrecord:``, ``coco:``, ``shapestacks:``, ``clevr-mirror:``,
            ``folder:``, ``hdf5:``).
        dst: The ``.h5`` file to write.
        resolution: Resize to this side (centre square crop first; the Multi-Object readers' crops
            apply as when training); ``None`` keeps the reader's size (required for image folders and
            COCO, whose images differ in size).
        limit: Stop after this many items.
        progress: Show a tqdm bar (items and items/s).
        overwrite: Replace an existing ``dst``.

    Returns:
        ``{"path", "images", "height", "width", "masks"}`` of the file written.

    Raises:
        FileExistsError: ``dst`` exists and ``overwrite`` is false.
        FileNotFoundError: The folder ``dst`` is to be written in does not exist.
        ValueError: ``src`` is not an on-disk form, ``limit`` is below 1, or images of different sizes
            without ``resolution``.
        DataError: From the source's reader, naming the bad file and field; also when ``src`` yields no
            items, or a mask holds an id below 0 or above 65535 (what ``uint16`` holds).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import h5py
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with h5py.File(Path(tmp) / "src.h5", "w") as f:  # 5 images 8x8, id masks
        ...         _ = f.create_dataset("image", data=np.zeros((5, 8, 8, 3), np.uint8))
        ...         _ = f.create_dataset("mask", data=np.ones((5, 8, 8), np.int64))
        ...     convert(f"hdf5:{tmp}/src.h5", Path(tmp) / "small.h5", resolution=4, limit=3, progress=False)
        {'path': '.../small.h5', 'images': 3, 'height': 4, 'width': 4, 'masks': True}
    """
    if not is_disk_data(src):
        raise ValueError(f"convert reads data on disk (tfrecord:, coco:, shapestacks:, clevr-mirror:, folder:, "
                         f"hdf5:); got {src!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1; got {limit}")
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} already exists; pass --overwrite to replace it or choose another name")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"folder {str(dst.parent)!r} for {dst.name} does not exist")
    items, total = iterate_all(src, resolution)
    if limit is not None:
        total = min(total, limit) if total is not None else limit
    tmp = dst.with_name(dst.name + ".partial")
    count, shape, has_masks = 0, None, None
    bar = tqdm(total=total, unit="img", desc=f"convert {dst.name}", disable=not progress, dynamic_ncols=True)
    try:
        with h5py.File(tmp, "w") as out:
            for item in items:
                image = _as_uint8(item["image"])
                if shape is None:
                    shape, has_masks = image.shape, "mask" in item
                    out.create_dataset("image", shape=(0, *shape), maxshape=(None, *shape), dtype=np.uint8,
                                       chunks=(1, *shape), compression="gzip", compression_opts=1)
                    if has_masks:
                        out.create_dataset("mask", shape=(0, *shape[:2]), maxshape=(None, *shape[:2]),
                                           dtype=np.uint16, chunks=(1, *shape[:2]), compression="gzip",
                                           compression_opts=1)
                if image.shape != shape:
                    raise ValueError(f"{src}: item {count} is {image.shape[1]}x{image.shape[0]}, the first was "
                                     f"{shape[1]}x{shape[0]}; pass --resolution R to resize them all")
                out["image"].resize(count + 1, axis=0)
                out["image"][count] = image
                if has_masks:
                    ids = item["mask"].numpy()
                    if ids.min(initial=0) < 0:  # uint16 would wrap -1 to 65535: the background an object
                        raise DataError(f"{src}: item {count} has negative instance id {int(ids.min())}; deqslots "
                                        "reads 0 as background and 1..K as objects: shift the ids first")
                    if ids.max(initial=0) > np.iinfo(np.uint16).max:
                        raise DataError(f"{src}: item {count} has instance id {int(ids.max())}, above the 65535 "
                                        "the HDF5 mask holds")
                    out["mask"].resize(count + 1, axis=0)
                    out["mask"][count] = ids.astype(np.uint16)
                count += 1
                bar.update(1)
                if limit is not None and count >= limit:
                    break
        if count == 0:
            raise DataError(f"{src} yielded no items to convert")
        os.replace(tmp, dst)
    finally:
        bar.close()
        if tmp.exists():
            tmp.unlink()
    return {"path": str(dst), "images": count, "height": int(shape[0]), "width": int(shape[1]),
            "masks": bool(has_masks)}
