"""``HDF5Dataset``: images and instance masks stored as arrays in one HDF5 file.

Reads the layouts that common conversions of the Multi-Object Datasets (CLEVR-with-masks,
Multi-dSprites, Tetrominoes) use: images ``uint8 [N, H, W, 3]`` or ``[N, 3, H, W]``, and masks either
as integer ids ``[N, H, W]`` or as per-slot binary masks ``[N, K, H, W]`` / ``[N, K, H, W, 1]`` whose
slot 0 is the background, as in the original TFRecords.
"""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from deqslots.data._transforms import resize_ids, resize_image
from deqslots.data.errors import DataError

__all__ = ["HDF5Dataset"]


def _dataset_names(handle: h5py.File) -> list[str]:
    names: list[str] = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def has_dataset(path: str | os.PathLike[str], key: str) -> bool:
    """Whether the HDF5 file at ``path`` holds a dataset ``key`` (False if it cannot be opened at all)."""
    try:
        with h5py.File(path, "r") as handle:
            return isinstance(handle.get(key), h5py.Dataset)
    except (OSError, ValueError):
        return False


def _get(handle: h5py.File, key: str, path: Path) -> h5py.Dataset:
    obj = handle.get(key)
    if not isinstance(obj, h5py.Dataset):
        available = ", ".join(_dataset_names(handle)) or "(none)"
        raise DataError(f"{path}: no dataset {key!r}; available datasets: {available}")
    return obj


def _image_layout(data: h5py.Dataset, path: Path) -> str:
    where = f"{path}:{data.name}"
    if not (data.dtype == np.uint8 or np.issubdtype(data.dtype, np.floating)):
        raise DataError(f"{where} has dtype {data.dtype}; expected uint8 (or float in [0, 1])")
    if data.ndim == 4 and data.shape[-1] == 3:
        return "NHWC"
    if data.ndim == 4 and data.shape[1] == 3:
        return "NCHW"
    raise DataError(f"{where} has shape {data.shape}; expected images [N, H, W, 3] or [N, 3, H, W]")


def _mask_layout(data: h5py.Dataset, path: Path, count: int, height: int, width: int) -> str:
    where = f"{path}:{data.name}"
    integral = np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_
    shape = tuple(data.shape)
    if data.ndim == 3 or (data.ndim == 4 and shape[-1] == 1 and shape[1:3] == (height, width)):
        # ids [N, H, W], or [N, H, W, 1] as image libraries write single-channel arrays
        layout, spatial = "ids", shape[1:3]
        if not integral:
            raise DataError(f"{where} has dtype {data.dtype}; id masks [N, H, W] (or [N, H, W, 1]) must be integers")
    elif data.ndim == 4:
        layout, spatial = "slots", shape[2:4]
    elif data.ndim == 5 and shape[-1] == 1:
        layout, spatial = "slots", shape[2:4]
    else:
        raise DataError(
            f"{where} has shape {shape}; expected ids [N, H, W] / [N, H, W, 1] or slot masks [N, K, H, W] / "
            "[N, K, H, W, 1]"
        )
    if layout == "slots" and not (integral or np.issubdtype(data.dtype, np.floating)):
        raise DataError(f"{where} has dtype {data.dtype}; expected integer, bool or float slot masks")
    if shape[0] != count or spatial != (height, width):
        raise DataError(
            f"{where} has shape {shape}, which does not match the images: "
            f"expected {count} masks of {height}x{width}"
        )
    return layout


def _check_float_image(raw: np.ndarray, where: str) -> None:
    """Refuse a float image holding NaN/Inf or values outside [0, 1] (float data is not rescaled)."""
    if not np.isfinite(raw).all():
        raise DataError(f"{where} holds {int(np.count_nonzero(~np.isfinite(raw)))} NaN/Inf pixel values; "
                        "fix or drop that image")
    low, high = float(raw.min()), float(raw.max())
    if low < 0.0 or high > 1.0:
        scale = " (0-255 data: store it as uint8, or divide by 255)" if high > 1.0 and low >= 0.0 else ""
        raise DataError(f"{where} has float pixel values in [{low:.4g}, {high:.4g}]; float images must be "
                        f"in [0, 1]{scale}")


class HDF5Dataset(Dataset):
    """Images and optional instance-id masks read item by item from an HDF5 file.

    Images become ``float32 [3, H, W]`` in ``[0, 1]`` (uint8 is divided by 255; float data is taken
    as already in ``[0, 1]``). Slot masks are converted to ids by taking, per pixel, the first slot
    with the largest value, so slot 0 (the background in the Multi-Object Datasets convention) maps to
    id 0, slot ``k`` to id ``k``, and a pixel covered by no slot to 0. Ids are the stored slot
    indices, so they need not be contiguous; metrics such as :func:`deqslots.evaluation.metrics.fg_ari` do not
    require it.

    The file is opened on first access in each process (h5py handles must not cross a ``fork``), so
    the dataset works with multi-process ``DataLoader`` workers.

    Args:
        path: The ``.h5``/``.hdf5`` file.
        image_key: Name of the image dataset (nested paths such as ``"train/image"`` work).
        mask_key: Name of the mask dataset, or ``None`` to load images only.
        resolution: ``None`` keeps the stored size; an int centre-crops to a square and resizes
            (antialiased bilinear for images, nearest for masks).

    Raises:
        ValueError: If ``resolution`` is not a positive int or None.
        FileNotFoundError: If ``path`` does not exist (IsADirectoryError if it is a folder).
        DataError: If the file is not HDF5, a key is missing (the message lists the datasets in the
            file), an array has an unsupported shape or dtype, or holds no images. On access: an item
            that cannot be read (corrupt chunk) or a float image with NaN/Inf or values outside [0, 1],
            naming the file, key and index.

    Examples:
        A file of two 8x8 images with slot masks ``[N, K, H, W, 1]``: slot 2 covers the top half, slot 0 (the
        background) the rest:

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     slots = np.zeros((2, 3, 8, 8, 1), np.uint8)
        ...     slots[:, 2, :4], slots[:, 0, 4:] = 1, 1
        ...     with h5py.File(f"{tmp}/clevr_with_masks.h5", "w") as f:
        ...         _ = f.create_dataset("image", data=np.zeros((2, 8, 8, 3), np.uint8))
        ...         _ = f.create_dataset("mask", data=slots)
        ...     data = HDF5Dataset(f"{tmp}/clevr_with_masks.h5", mask_key="mask", resolution=4)
        ...     item = data[0]
        ...     data.close()
        >>> len(data), sorted(item), item["image"].shape
        (2, ['image', 'mask'], torch.Size([3, 4, 4]))
        >>> item["mask"][:, 0].tolist()  # ids down one column
        [2, 2, 0, 0]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        image_key: str = "image",
        mask_key: str | None = "mask",
        resolution: int | None = None,
    ) -> None:
        if resolution is not None and (
            isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1
        ):
            raise ValueError(f"resolution must be a positive int or None; got {resolution!r}")
        self.path = Path(path)
        self.image_key = image_key
        self.mask_key = mask_key
        self.resolution = None if resolution is None else int(resolution)
        if self.path.is_dir():
            raise IsADirectoryError(f"{str(self.path)!r} is a directory; hdf5:PATH needs the .h5/.hdf5 file itself "
                                    "(for a folder of images use folder:PATH)")
        if not self.path.is_file():
            raise FileNotFoundError(f"HDF5 file {str(self.path)!r} does not exist")
        try:
            handle = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot open as HDF5 ({exc})") from exc
        with handle:
            images = _get(handle, image_key, self.path)
            self._image_layout = _image_layout(images, self.path)
            self._length = int(images.shape[0])
            if self._length == 0:
                raise DataError(f"{self.path}:{images.name} holds no images (shape {images.shape})")
            if self._image_layout == "NHWC":
                height, width = images.shape[1:3]
            else:
                height, width = images.shape[2:4]
            self._mask_layout = None
            if mask_key is not None:
                masks = _get(handle, mask_key, self.path)
                self._mask_layout = _mask_layout(masks, self.path, self._length, height, width)
        self._handle: h5py.File | None = None
        self._pid: int | None = None

    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            # A handle inherited through fork shares state with the parent; open a fresh one instead.
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = operator.index(index)
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} items in {self.path}")
        index %= self._length
        handle = self._file()
        raw = self._read(handle, self.image_key, index)
        if raw.dtype != np.uint8:
            _check_float_image(raw, f"{self.path}:{self.image_key}[{index}]")
        if self._image_layout == "NHWC":
            raw = raw.transpose(2, 0, 1)
        image = torch.from_numpy(np.ascontiguousarray(raw))
        image = image.to(torch.float32).div_(255.0) if raw.dtype == np.uint8 else image.to(torch.float32)
        if self.resolution is not None:
            image = resize_image(image, self.resolution)
        out = {"image": image}
        if self._mask_layout is not None:
            mask = self._read(handle, self.mask_key, index)
            if self._mask_layout == "slots":
                mask = mask.reshape(mask.shape[0], *mask.shape[1:3]).argmax(axis=0)
            elif mask.ndim == 3:  # ids [H, W, 1]
                mask = mask[..., 0]
            if self._mask_layout == "ids" and mask.size and mask.min() < 0:
                raise DataError(
                    f"{self.path}:{self.mask_key}[{index}] holds negative instance ids (min {int(mask.min())}); "
                    "deqslots reads 0 as background and 1..K as objects: shift the ids (e.g. mask + 1 if -1 marks "
                    "the background) and write the file again"
                )
            ids = torch.from_numpy(mask.astype(np.int64))
            if self.resolution is not None:
                ids = resize_ids(ids, self.resolution)
            out["mask"] = ids
        return out

    def _read(self, handle: h5py.File, key: str, index: int) -> np.ndarray:
        try:
            return np.asarray(handle[key][index])
        except (OSError, RuntimeError, ValueError) as exc:  # a corrupt chunk fails its filter or checksum
            raise DataError(f"{self.path}:{key}[{index}] cannot be read; the file may be corrupt or "
                            f"truncated ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        """Close this process's file handle (it is reopened on the next access)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"HDF5Dataset(path={str(self.path)!r}, image_key={self.image_key!r}, mask_key={self.mask_key!r}, "
            f"resolution={self.resolution}, items={len(self)})"
        )
