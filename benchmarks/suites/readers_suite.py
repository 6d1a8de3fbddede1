"""Suite ``readers``: images per second of each real-data reader, on files it writes in the exact published formats:
``python -m benchmarks readers [--readers NAME ...] [--items N] [--resolution R]``.

Method: docs/benchmarks/methods.md#readers
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np

from benchmarks.suites.common import Option, RunContext, SuiteResult, Table

__all__ = ["READERS", "measure", "run", "OPTIONS", "TABLES", "write_files"]

TABLES = MappingProxyType({"readers": ("reader", "resolution", "items", "reads", "images_per_s")})
# what writing the test files needs (the `dev` extra)
_WRITERS = ("google.protobuf", "pycocotools")

#: Reader name -> (height, width, entities, channels, pixel-major masks) for the TFRecord sets.
_TFRECORD = {
    "clevr_with_masks": (240, 320, 11, 3, False),
    "multi_dsprites": (64, 64, 5, 3, True),
    "objects_room": (64, 64, 7, 3, False),
    "tetrominoes": (35, 35, 4, 3, False),
}
READERS: tuple[str, ...] = (*_TFRECORD, "coco", "shapestacks")


def _scene(rng: np.random.Generator, h: int, w: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.empty((h, w, 3), np.uint8)
    image[:] = rng.integers(0, 256, 3)
    ids = np.zeros((h, w), np.int64)
    for e in range(1, k):
        top, left = rng.integers(0, h - h // 4), rng.integers(0, w - w // 4)
        size_h, size_w = rng.integers(h // 8, h // 3), rng.integers(w // 8, w // 3)
        ids[top:top + size_h, left:left + size_w] = e
        image[top:top + size_h, left:left + size_w] = rng.integers(0, 256, 3)
    return image, ids


def write_files(reader: str, folder: Path, items: int, seed: int = 0) -> str:
    """Write ``items`` items of ``reader``'s format under ``folder``; return the ``--data`` value."""
    from tests.deqslots.data.real_data_files import (multi_object_example, write_coco, write_shapestacks,
                                                write_tfrecord)

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if reader in _TFRECORD:
        h, w, k, c, pixel_major = _TFRECORD[reader]
        records = []
        for _ in range(items):
            image, ids = _scene(rng, h, w, k)
            masks = np.stack([(ids == e) * 255 for e in range(k)]).astype(np.uint8)[..., None]
            factors = {"orientation": np.zeros(k), "scale": np.zeros(k)} if reader == "multi_dsprites" else None
            records.append(multi_object_example(image, masks.transpose(1, 2, 0, 3) if pixel_major else masks,
                                                floats=factors))
        return f"tfrecord:{write_tfrecord(folder / f'{reader}.tfrecords', records)}"
    if reader == "coco":
        from pycocotools import mask as mask_utils

        images, anns = [], []
        for i in range(items):
            image, ids = _scene(rng, 480, 640, 8)
            images.append(image)
            for e in range(1, 8):
                rle = mask_utils.encode(np.asfortranarray((ids == e).astype(np.uint8)))
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                             "area": float((ids == e).sum()), "bbox": [0, 0, 1, 1],
                             "segmentation": {"counts": rle["counts"].decode(), "size": rle["size"]}})
        ann, images_dir = write_coco(folder, images, anns)
        return f"coco:{ann}:{images_dir}"
    if reader == "shapestacks":
        scenarios = {f"env_ccs-easy-h=3-vcom=0-vpsf=0-v={i}": "train" for i in range(max(1, items // 4))}
        write_shapestacks(folder, scenarios, cams=(1, 2), seed=seed)
        return f"shapestacks:{folder}"
    raise ValueError(f"unknown reader {reader!r}; pass one of {', '.join(READERS)}")


def measure(data: str, resolution: int, items: int) -> float:
    """Images per second reading ``items`` train items of ``data`` through ``BatchStream``."""
    from deqslots.data.batches import BatchStream

    stream = BatchStream(data, "train", resolution, 1, seed=0)
    stream.batch(0)  # open files, fill the shuffle buffer's first items
    start = time.perf_counter()
    for step in range(1, items + 1):
        stream.batch(step)
    return items / (time.perf_counter() - start)


OPTIONS = (
    Option("--readers", "default: all", nargs="+", choices=READERS),
    Option("--items", "items written per format (and read, in epochs); default 200, quick 12, tiny 8", at_least=1,
           type=int),
    Option("--reads", "items timed (default: --items)", at_least=1, type=int),
    Option("--resolution", "default 128 (quick 64, tiny 16)", at_least=1, type=int),
    Option("--workdir", "where the files go (default: a temporary folder)"),
)


def run(ctx: RunContext, bar) -> SuiteResult:
    """Write each format's files, then time reading them; ``bar`` advances once per reader."""
    o = ctx.overrides
    items = o.get("items") or {"tiny": 8, "quick": 12}.get(ctx.size, 200)
    reads = o.get("reads") or items
    resolution = o.get("resolution") or {"tiny": 16, "quick": 64}.get(ctx.size, 128)
    readers = o.get("readers") or list(READERS)
    result = SuiteResult("readers", {"items": items, "reads": reads, "resolution": resolution})
    missing = [m for m in _WRITERS if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        # the files cannot be written without these; say so rather than fail the whole `all` run
        result.notes.append(f"{', '.join(missing)} not installed (pip install -e '.[dev]'): no reader was timed")
        readers = []
    tab = result.tables["readers"] = Table(
        f"Items/s reading {reads} train items at {resolution}x{resolution} through BatchStream (decompression, "
        "CRC checks, parsing, mask-to-id conversion, crop and resize: the path training takes), one process, from "
        f"files this suite wrote in each exact format ({items} items per format).", TABLES["readers"])
    bar.reset(total=max(1, len(readers)))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(o.get("workdir") or tmp)
        for reader in readers:
            bar.set_postfix_str(reader)
            data = write_files(reader, root / reader, items)
            tab.add(reader=reader, resolution=resolution, items=items, reads=reads,
                    images_per_s=measure(data, resolution, reads))
            bar.update()
    if not tab.rows:
        del result.tables["readers"]
    return result
