"""COCO 2017 instance segmentation as distributed: an annotations JSON and a folder of images.

The annotations are read with pycocotools (``pip install -e ".[coco]"``); images are opened one at a
time when an item is read, so only the annotation index is held in memory. Each image's instances
become integer ids ``1..n``; crowd regions (``iscrowd = 1``) follow an explicit policy.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from deqslots.data._transforms import centre_square, resize_ids
from deqslots.data.errors import DataError

__all__ = ["CROWD_POLICIES", "CocoDataset"]

#: ``ignore``: crowd pixels get id 0, so FG-ARI leaves them out as it leaves out the background;
#: ``object``: each crowd region is one more instance; ``drop-image``: images with a crowd region are
#: left out.
CROWD_POLICIES: tuple[str, ...] = ("ignore", "object", "drop-image")

_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _load_index(path: Path):
    try:
        from pycocotools.coco import COCO
    except ImportError as err:
        raise ImportError("coco:ANNOTATIONS.json:IMAGES needs pycocotools: pip install -e \".[coco]\" "
                          "(or pip install pycocotools)") from err
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory; coco: needs the annotations JSON file first, "
                                "e.g. coco:annotations/instances_val2017.json:val2017")
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotations file {str(path)!r} does not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress to stdout
            coco = COCO(str(path))
    except (ValueError, AssertionError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a COCO annotations JSON file ({type(exc).__name__}: {exc})") from exc
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: malformed COCO annotations (field {exc}); expected 'images' entries with 'id' "
                        "and 'annotations' entries with 'id', 'image_id' and 'category_id'") from exc
    if not isinstance(coco.dataset.get("images"), list):
        raise DataError(f"{path}: no 'images' list; a COCO annotations file lists its images with 'id', "
                        "'file_name', 'height' and 'width'")
    return coco


class CocoDataset(Dataset):
    """COCO images with instance-id masks, read through pycocotools.

    Images are listed in increasing image id. Each item is
    ``{"image": float32 [3, R, R] in [0, 1], "mask": int64 [R, R]}``: the image is centre-cropped to a
    square and resized (bicubic), the instance masks (``annToMask``: polygons and RLE) are painted
    largest first so that small objects lying on large ones stay visible, numbered ``1..n`` in that
    order, and resized with nearest neighbours. An image without annotations has an all-zero mask (its
    FG-ARI is undefined and left out of the mean). A JSON without an ``annotations`` list (COCO's
    ``image_info_test2017.json``) gives images alone.

    Args:
        annotations: The instances JSON, e.g. ``annotations/instances_val2017.json``.
        images: The folder holding its ``file_name`` entries, e.g. ``val2017``.
        resolution: Output side (the paper: 96); ``None`` keeps each image's own size, uncropped.
        crowd: One of :data:`CROWD_POLICIES` (default ``ignore``).

    Raises:
        ValueError: A ``resolution`` that is not a positive int or None, or an unknown ``crowd`` policy.
        ImportError: pycocotools is not installed.
        FileNotFoundError: A missing annotations file or image folder.
        IsADirectoryError: ``annotations`` is a folder (NotADirectoryError: ``images`` is a file).
        DataError: A file that is not COCO JSON, or one that lists no images (none without crowd regions
            under ``drop-image``), or, when an item is read, a missing or unreadable image, an image whose
            size differs from its ``height``/``width`` entry, or an annotation whose ``segmentation`` cannot
            be decoded, naming the file and the field.

    Examples:
        One 20x16 image with one square polygon, written in COCO's instances format:

        >>> import json, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Path(tmp, "images").mkdir()
        ...     Image.new("RGB", (20, 16), (120, 80, 40)).save(Path(tmp, "images", "1.png"))
        ...     square = [4, 4, 12, 4, 12, 12, 4, 12]  # polygon x, y pairs
        ...     coco = {"images": [{"id": 1, "file_name": "1.png", "height": 16, "width": 20}],
        ...             "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 64.0,
        ...                              "segmentation": [square]}],
        ...             "categories": [{"id": 1, "name": "box"}]}
        ...     _ = Path(tmp, "instances.json").write_text(json.dumps(coco))
        ...     data = CocoDataset(Path(tmp, "instances.json"), Path(tmp, "images"), resolution=8)
        ...     item = data[0]
        >>> len(data), item["image"].shape, item["mask"].unique().tolist()
        (1, torch.Size([3, 8, 8]), [0, 1])
    """

    def __init__(self, annotations: str | os.PathLike[str], images: str | os.PathLike[str],
                 resolution: Optional[int] = None, crowd: str = "ignore") -> None:
        if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                       or resolution < 1):
            raise ValueError(f"resolution must be a positive int or None; got {resolution!r}")
        if crowd not in CROWD_POLICIES:
            raise ValueError(f"unknown crowd policy {crowd!r}; pass one of {', '.join(CROWD_POLICIES)}")
        self.annotations, self.images = Path(annotations), Path(images)
        self.resolution, self.crowd = resolution, crowd
        self.coco = _load_index(self.annotations)
        if not self.images.exists():
            raise FileNotFoundError(f"COCO image folder {str(self.images)!r} does not exist")
        if not self.images.is_dir():
            raise NotADirectoryError(f"COCO image folder {str(self.images)!r} is not a directory")
        self.has_masks = isinstance(self.coco.dataset.get("annotations"), list)
        ids = sorted(self.coco.getImgIds())
        if self.has_masks and crowd == "drop-image":
            ids = [i for i in ids if not any(a.get("iscrowd", 0) for a in self.coco.imgToAnns[i])]
        if not ids:
            raise DataError(f"{self.annotations} lists no images" + (" without crowd regions" if self.coco.getImgIds()
                                                                      else ""))
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def _ids(self, info: dict, size: tuple[int, int]) -> np.ndarray:
        height, width = size
        ids = np.zeros((height, width), np.int64)
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[info["id"]]))
        if self.crowd == "ignore":
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        anns.sort(key=lambda a: (-float(a.get("area", 0.0)), a.get("id", 0)))
        for k, ann in enumerate(anns, start=1):
            try:
                binary = self.coco.annToMask(ann)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                raise DataError(f"{self.annotations}: annotation {ann.get('id')} (image {info['id']}) has a "
                                f"'segmentation' that cannot be decoded ({type(exc).__name__}: {exc})") from exc
            if binary.shape != (height, width):
                raise DataError(f"{self.annotations}: annotation {ann.get('id')} gives a {binary.shape[1]}x"
                                f"{binary.shape[0]} mask for image {info['id']} of {width}x{height}")
            ids[binary.astype(bool)] = k
        return ids

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        info = self.coco.loadImgs([self.ids[index]])[0]
        try:
            path = self.images / info["file_name"]
        except KeyError as exc:
            raise DataError(f"{self.annotations}: image {info.get('id')} has no 'file_name'") from exc
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
        except FileNotFoundError as exc:
            raise DataError(f"{path}: image {info['id']} of {self.annotations} is missing from {self.images}") from exc
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from exc
        width, height = rgb.size
        if self.has_masks and (info.get("height"), info.get("width")) != (height, width):
            raise DataError(f"{path} is {width}x{height} but {self.annotations} gives height {info.get('height')}, "
                            f"width {info.get('width')} for image {info['id']}")
        res = self.resolution
        if res is not None:
            rgb = rgb.resize((res, res), Image.Resampling.BICUBIC, box=centre_square(width, height))
        image = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / np.float32(255.0)).permute(2, 0, 1).contiguous()
        out = {"image": image}
        if self.has_masks:
            ids = torch.from_numpy(self._ids(info, (height, width)))
            out["mask"] = resize_ids(ids, res) if res is not None else ids
        return out

    def __repr__(self) -> str:
        return (f"CocoDataset(annotations={str(self.annotations)!r}, images={str(self.images)!r}, "
                f"resolution={self.resolution}, crowd={self.crowd!r}, items={len(self)})")
