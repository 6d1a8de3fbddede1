"""ShapeStacks as distributed: rendered stacks with their instance segmentation maps and split lists.

The layout (as read by the ShapeStacks code and by GENESIS and SLATE after it)::

    ROOT/splits/default/{train,eval,test}.txt     scenario names, one per line
    ROOT/recordings/SCENARIO/rgb-w=W-f=F-l=L-c=C-cam_N-mono-0.png      224x224 renders
    ROOT/recordings/SCENARIO/iseg-w=0-f=0-l=0-c=original-cam_N-mono-0.map   instance map (a PNG)

Every rgb render of a camera (all wall/floor/light/colour variants, pooled as SLATE did) shares that
camera's instance map, whose first channel holds instance id ``k`` as the value ``32 k`` (ShapeStacks
encodes 8 labels in the 256 values; 0 = background). Images and maps are centre-cropped to 196x196
(GENESIS's crop, which drops the border around the stack) and resized.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from deqslots.data._transforms import resize_ids
from deqslots.data.errors import DataError

__all__ = ["SHAPESTACKS_SPLITS", "ShapeStacksDataset", "is_shapestacks_root"]

#: Our split names and the ShapeStacks split files they read.
SHAPESTACKS_SPLITS: dict[str, str] = {"train": "train.txt", "val": "eval.txt", "test": "test.txt"}
_CROP = 196
_LABEL_BIN = 32  # 256 values / 8 labels
_CAMERA = re.compile(r"-cam_(\d+)-")
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def is_shapestacks_root(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a ShapeStacks root (``splits/`` and ``recordings/`` folders).

    Args:
        path: A folder (a missing path is simply not a root).

    Returns:
        True when ``path/recordings`` and ``path/splits`` are both folders; their contents are not checked.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     before = is_shapestacks_root(tmp)
        ...     (Path(tmp) / "recordings").mkdir()
        ...     (Path(tmp) / "splits").mkdir()
        ...     before, is_shapestacks_root(tmp)
        (False, True)
    """
    root = Path(path)
    return (root / "recordings").is_dir() and (root / "splits").is_dir()


def _centre(array: np.ndarray, side: int) -> np.ndarray:
    height, width = array.shape[:2]
    side = min(side, height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return array[top:top + side, left:left + side]


class ShapeStacksDataset(Dataset):
    """One split of ShapeStacks, with instance ids from its segmentation maps.

    Args:
        root: The ShapeStacks folder (holding ``splits/`` and ``recordings/``).
        split: ``"train"``, ``"val"`` (the ``eval.txt`` list) or ``"test"``.
        resolution: Output side (the paper: 96); ``None`` keeps the 196x196 crop.
        split_name: The folder under ``splits/`` (``default``).
        masks: Read the ``iseg`` maps (``False``: images only).

    Raises:
        ValueError: An unknown ``split``, or a ``resolution`` that is not a positive int or None.
        FileNotFoundError: ``root`` or a split list is missing.
        DataError: A listed scenario folder is missing or holds no renders, a render has no instance map
            (naming the file expected), the split lists no scenarios, or, when an item is read, an unreadable
            file or an instance map whose size differs from its render's.

    Examples:
        A one-scenario tree with one camera, written in ShapeStacks' layout:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     (Path(tmp) / "splits" / "default").mkdir(parents=True)
        ...     for listing in ("train", "eval", "test"):
        ...         _ = (Path(tmp) / "splits" / "default" / f"{listing}.txt").write_text("stack-1")
        ...     scene = Path(tmp) / "recordings" / "stack-1"
        ...     scene.mkdir(parents=True)
        ...     Image.new("RGB", (16, 16), (90, 120, 200)).save(scene / "rgb-w=0-f=0-l=0-c=original-cam_1-mono-0.png")
        ...     segmap = np.zeros((16, 16, 3), np.uint8)
        ...     segmap[4:12, 6:10, 0] = 32  # instance 1 (value 32 k in the first channel)
        ...     Image.fromarray(segmap).save(scene / "iseg-w=0-f=0-l=0-c=original-cam_1-mono-0.map", format="PNG")
        ...     data = ShapeStacksDataset(tmp, "val", resolution=8)
        ...     item = data[0]
        >>> len(data), item["image"].shape, item["mask"].unique().tolist()
        (1, torch.Size([3, 8, 8]), [0, 1])
    """

    def __init__(self, root: str | os.PathLike[str], split: str, resolution: Optional[int] = None,
                 split_name: str = "default", masks: bool = True) -> None:
        if split not in SHAPESTACKS_SPLITS:
            raise ValueError(f"unknown split {split!r}; pass one of {', '.join(SHAPESTACKS_SPLITS)}")
        if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                       or resolution < 1):
            raise ValueError(f"resolution must be a positive int or None; got {resolution!r}")
        self.root, self.split, self.resolution, self.masks = Path(root), split, resolution, masks
        if not self.root.is_dir():
            raise FileNotFoundError(f"ShapeStacks folder {str(self.root)!r} does not exist")
        listing = self.root / "splits" / split_name / SHAPESTACKS_SPLITS[split]
        if not listing.is_file():
            raise FileNotFoundError(f"{listing} does not exist: a ShapeStacks folder has splits/{split_name}/"
                                    f"{{{','.join(SHAPESTACKS_SPLITS.values())}}} listing its scenarios")
        scenarios = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        self.items: list[tuple[Path, Optional[Path]]] = []
        for scenario in scenarios:
            folder = self.root / "recordings" / scenario
            if not folder.is_dir():
                raise DataError(f"{listing}: scenario {scenario!r} has no folder {folder}")
            renders = sorted(p for p in folder.iterdir() if p.name.startswith("rgb-") and p.suffix == ".png")
            if not renders:
                raise DataError(f"{folder} holds no rgb-*.png renders")
            for render in renders:
                segmap = None
                if masks:
                    camera = _CAMERA.search(render.name)
                    if camera is None:
                        raise DataError(f"{render}: no camera (cam_N) in the file name")
                    segmap = folder / f"iseg-w=0-f=0-l=0-c=original-cam_{camera.group(1)}-mono-0.map"
                    if not segmap.is_file():
                        raise DataError(f"{render}: no instance map (expected {segmap})")
                self.items.append((render, segmap))
        if not self.items:
            raise DataError(f"{listing} lists no scenarios")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        render, segmap = self.items[index]
        try:
            with Image.open(render) as im:
                full = np.asarray(im.convert("RGB"))
            pixels = _centre(full, _CROP)
        except _READ_ERRORS as exc:
            raise DataError(f"{render}: unreadable image ({type(exc).__name__}: {exc})") from exc
        image = Image.fromarray(pixels)
        if self.resolution is not None and self.resolution != pixels.shape[0]:
            image = image.resize((self.resolution, self.resolution), Image.Resampling.BICUBIC)
        out = {"image": torch.from_numpy(np.asarray(image, dtype=np.float32) / np.float32(255.0)).permute(2, 0, 1)
               .contiguous()}
        if segmap is not None:
            try:
                with Image.open(segmap) as im:
                    first = np.asarray(im.convert("RGB"))[:, :, 0]
            except _READ_ERRORS as exc:
                raise DataError(f"{segmap}: unreadable instance map ({type(exc).__name__}: {exc})") from exc
            if first.shape != full.shape[:2]:
                raise DataError(f"{segmap}: instance map of {first.shape[1]}x{first.shape[0]} does not match its "
                                f"render {render.name}")
            ids = torch.from_numpy(_centre(first, _CROP).astype(np.int64) // _LABEL_BIN)
            out["mask"] = resize_ids(ids, self.resolution) if self.resolution is not None else ids
        return out

    def __repr__(self) -> str:
        return (f"ShapeStacksDataset(root={str(self.root)!r}, split={self.split!r}, resolution={self.resolution}, "
                f"items={len(self)})")
