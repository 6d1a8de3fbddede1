"""``ImageFolderDataset``: images (and optional instance-id masks) from a folder tree on disk."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from deqslots.data._transforms import centre_square
from deqslots.data.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "MASK_MODES", "ImageFolderDataset"]

#: File extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".jpeg", ".jpg", ".png")
#: PIL modes accepted for masks: single-channel images whose pixel values are instance ids.
MASK_MODES: tuple[str, ...] = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N")

# 16-bit grayscale modes (PNG): scaled by 65535, not clipped at 255.
_WIDE_GRAY_MODES: tuple[str, ...] = ("I", "I;16", "I;16B", "I;16L", "I;16N")

# What PIL raises on files it cannot identify, parse or decode.
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class _Item(NamedTuple):
    image: Path
    mask: Path | None


def _find_images(root: Path) -> list[Path]:
    files = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _index_masks(mask_root: Path) -> dict[tuple[str, str], Path]:
    """Map ``(relative folder, stem)`` to a mask file, preferring ``.png`` when a stem has several."""
    masks: dict[tuple[str, str], Path] = {}
    for path in _find_images(mask_root):
        key = (path.parent.relative_to(mask_root).as_posix(), path.stem)
        if key not in masks or path.suffix.lower() == ".png":
            masks[key] = path
    return masks


def _check_image(path: Path) -> tuple[int, int]:
    """Cheap header parse and integrity check; returns the size or raises a PIL error."""
    with Image.open(path) as im:
        size = im.size
        im.verify()
    return size


def _check_mask(path: Path, image_size: tuple[int, int]) -> None:
    with Image.open(path) as im:
        mode, size = im.mode, im.size
        im.verify()
    if mode not in MASK_MODES:
        modes = ", ".join(MASK_MODES)
        raise ValueError(f"mode {mode}; expected a single-channel integer-id image (modes {modes})")
    if size != image_size:
        raise ValueError(f"size {size[0]}x{size[1]} differs from its image's {image_size[0]}x{image_size[1]}")


class ImageFolderDataset(Dataset):
    """Every ``.png``/``.jpg``/``.jpeg``/``.bmp`` image under a folder, centre-cropped and resized.

    Files are found recursively, matched case-insensitively on the extension, and sorted by their path
    relative to ``root``. Each image is centre-cropped to a square and resized (bicubic) to
    ``resolution``; grayscale, palette and RGBA images become RGB (alpha dropped), 16-bit grayscale is
    scaled by 65535. With ``mask_root``, every image ``root/a/b/x.jpg`` needs a mask ``mask_root/a/b/x.*``
    (same relative folder and stem, ``.png`` preferred) holding integer instance ids in a
    single-channel image; masks get the same crop and a nearest-neighbour resize, so no new ids appear.

    All files are opened and verified when the dataset is built (headers and checksums only, no
    decoding), so ``len`` is known up front. With ``on_error="raise"`` an unreadable or mismatched file
    raises :class:`DataError` naming it; with ``on_error="skip"`` such items are dropped and one warning
    reports how many and the first one. A file that passes the check but fails to decode later still
    raises :class:`DataError` naming it.

    Args:
        root: Folder of images.
        resolution: Output side length in pixels.
        mask_root: Optional folder of masks mirroring ``root``'s layout.
        on_error: ``"raise"`` or ``"skip"``.

    Raises:
        FileNotFoundError: If ``root`` or ``mask_root`` does not exist.
        NotADirectoryError: If either is not a folder.
        ValueError: If no usable image is found, or on a bad argument.
        DataError: On an unreadable image or mask, with ``on_error="raise"``.

    Examples:
        Two 24x16 photos and their masks (id 1 on the right half), centre-cropped to 16x16 and resized:

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     photos, masks = Path(tmp, "photos"), Path(tmp, "masks")
        ...     _ = photos.mkdir(), masks.mkdir()
        ...     ids = np.zeros((16, 24), np.uint8)
        ...     ids[:, 12:] = 1
        ...     for name in ("a", "b"):
        ...         Image.new("RGB", (24, 16), (200, 30, 30)).save(photos / f"{name}.jpg")
        ...         Image.fromarray(ids).save(masks / f"{name}.png")
        ...     data = ImageFolderDataset(photos, resolution=8, mask_root=masks)
        ...     item = data[0]
        >>> [path.name for path in data.files], item["image"].shape
        (['a.jpg', 'b.jpg'], torch.Size([3, 8, 8]))
        >>> item["mask"][0].tolist()  # ids along the first row
        [0, 0, 0, 0, 1, 1, 1, 1]
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        resolution: int,
        mask_root: str | os.PathLike[str] | None = None,
        on_error: str = "raise",
    ) -> None:
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
            raise ValueError(f"resolution must be a positive int; got {resolution!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
        self.root = Path(root)
        self.mask_root = None if mask_root is None else Path(mask_root)
        self.resolution = int(resolution)
        self.on_error = on_error
        for label, folder in (("image", self.root), ("mask", self.mask_root)):
            if folder is None:
                continue
            if not folder.exists():
                raise FileNotFoundError(f"{label} folder {str(folder)!r} does not exist")
            if not folder.is_dir():
                raise NotADirectoryError(f"{label} folder {str(folder)!r} is not a directory")

        images = _find_images(self.root)
        if self.mask_root is not None and self.mask_root.resolve().is_relative_to(self.root.resolve()):
            inside = self.mask_root.resolve()  # masks kept in a subfolder of the images are not images
            images = [p for p in images if not p.resolve().is_relative_to(inside)]
        if not images:
            raise ValueError(
                f"no images found under {str(self.root)!r}: expected files with extensions "
                f"{', '.join(IMAGE_EXTENSIONS)} (any case, searched recursively)"
            )
        masks = _index_masks(self.mask_root) if self.mask_root is not None else {}
        self.items: list[_Item] = []
        skipped: list[str] = []
        for path in images:
            try:
                item = self._check(path, masks)
            except DataError as err:
                if on_error == "raise":
                    raise
                skipped.append(str(err))
                continue
            self.items.append(item)
        if skipped:
            warnings.warn(
                f"skipped {len(skipped)} unreadable files: first {skipped[0]}", UserWarning, stacklevel=2
            )
        if not self.items:
            raise ValueError(f"no readable images under {str(self.root)!r} ({len(skipped)} skipped)")

    def _check(self, path: Path, masks: dict[tuple[str, str], Path]) -> _Item:
        try:
            size = _check_image(path)
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from exc
        if self.mask_root is None:
            return _Item(path, None)
        key = (path.parent.relative_to(self.root).as_posix(), path.stem)
        mask = masks.get(key)
        if mask is None:
            expected = self.mask_root / key[0] / (path.stem + ".png")
            raise DataError(f"{path}: no mask file (expected {expected})")
        try:
            _check_mask(mask, size)
        except _READ_ERRORS as exc:
            raise DataError(f"{mask}: unusable mask ({exc})") from exc
        return _Item(path, mask)

    @property
    def files(self) -> list[Path]:
        """Image paths in item order (after skipping)."""
        return [item.image for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        res = self.resolution
        try:
            with Image.open(item.image) as im:
                box = centre_square(*im.size)
                if im.mode in _WIDE_GRAY_MODES:
                    # 16-bit grayscale: PIL's RGB conversion would clip every value above 255 to white.
                    gray = im.convert("I").convert("F").resize((res, res), Image.Resampling.BICUBIC, box=box)
                    pixels = np.clip(np.asarray(gray, dtype=np.float32) / np.float32(65535.0), 0.0, 1.0)
                    pixels = np.repeat(pixels[:, :, None], 3, axis=2)
                else:
                    rgb = im.convert("RGB").resize((res, res), Image.Resampling.BICUBIC, box=box)
                    pixels = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
        except _READ_ERRORS as exc:
            raise DataError(f"{item.image}: cannot decode image ({type(exc).__name__}: {exc})") from exc
        image = torch.from_numpy(pixels).permute(2, 0, 1)
        out = {"image": image.contiguous()}
        if item.mask is not None:
            out["mask"] = self._load_mask(item.mask, res)
        return out

    @staticmethod
    def _load_mask(path: Path, resolution: int) -> torch.Tensor:
        try:
            with Image.open(path) as im:
                if im.mode.startswith("I;16"):
                    im = im.convert("I")
                box = centre_square(*im.size)
                ids = np.asarray(im.resize((resolution, resolution), Image.Resampling.NEAREST, box=box))
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: cannot decode mask ({type(exc).__name__}: {exc})") from exc
        ids = ids.astype(np.int64)
        if ids.size and ids.min() < 0:
            raise DataError(f"{path}: mask holds negative ids (min {int(ids.min())}); deqslots reads 0 as background "
                            "and 1..K as objects: shift the ids and save the mask again")
        return torch.from_numpy(ids)

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(root={str(self.root)!r}, resolution={self.resolution}, "
            f"mask_root={None if self.mask_root is None else str(self.mask_root)!r}, items={len(self)})"
        )
