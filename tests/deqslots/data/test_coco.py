"""COCO 2017 instance segmentation through pycocotools, on a small annotations file in COCO's format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("pycocotools")

from deqslots.data.batches import BatchStream  # noqa: E402
from deqslots.cli import main  # noqa: E402
from deqslots.data.coco import CocoDataset  # noqa: E402
from deqslots.data.errors import DataError  # noqa: E402
from tests.deqslots.data.real_data_files import write_coco  # noqa: E402

H, W = 40, 60


def rle(binary: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of zeros."""
    counts, current, run = [], 0, 0
    for value in binary.flatten(order="F").tolist():
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": [int(binary.shape[0]), int(binary.shape[1])]}


def _box(top, left, height, width):
    m = np.zeros((H, W), np.uint8)
    m[top:top + height, left:left + width] = 1
    return m


def _dataset(tmp_path, n=6, with_annotations=True):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]
    anns, truth = [], []
    for i in range(n):
        big, small, crowd = _box(5, 5, 30, 30), _box(10, 10, 8, 8), _box(0, 45, 40, 15)
        entries = [(big, 0), (small, 0), (crowd, 1)]
        for j, (mask, iscrowd) in enumerate(entries):
            anns.append({"id": 100 * i + j + 1, "image_id": i + 1, "category_id": 1, "iscrowd": iscrowd,
                         "area": float(mask.sum()), "bbox": [0, 0, 1, 1], "segmentation": rle(mask)})
        ids = np.zeros((H, W), np.int64)
        ids[big == 1] = 1
        ids[small == 1] = 2  # smaller instances are painted over larger ones
        truth.append(ids)
    ann, folder = write_coco(tmp_path, images, anns, with_annotations)
    return ann, folder, images, truth


def test_instances_become_ids_with_crowd_regions_ignored(tmp_path):
    ann, folder, images, truth = _dataset(tmp_path)
    data = CocoDataset(ann, folder)
    assert len(data) == 6
    item = data[2]
    assert torch.equal(item["image"], torch.from_numpy(images[2]).permute(2, 0, 1).float() / 255)
    assert torch.equal(item["mask"], torch.from_numpy(truth[2]))  # crowd pixels are 0: FG-ARI leaves them out
    small = CocoDataset(ann, folder, resolution=32)[2]
    assert small["image"].shape == (3, 32, 32) and small["mask"].shape == (32, 32)
    assert set(small["mask"].unique().tolist()) == {0, 1, 2}


def test_crowd_policies(tmp_path):
    ann, folder, _, truth = _dataset(tmp_path)
    as_object = CocoDataset(ann, folder, crowd="object")[0]["mask"]
    expected = truth[0].copy()
    expected[expected == 2] = 3  # areas: big 900 (id 1), the crowd region 600 (id 2), small 64 (id 3)
    expected[:, 45:] = 2
    assert torch.equal(as_object, torch.from_numpy(expected))
    with pytest.raises(DataError, match="lists no images without crowd regions"):
        CocoDataset(ann, folder, crowd="drop-image")
    data = json.loads(ann.read_text())
    data["annotations"] = [a for a in data["annotations"] if not (a["iscrowd"] and a["image_id"] != 2)]
    for a in data["annotations"]:
        if not a["iscrowd"]:
            del a["iscrowd"]  # absent means not crowd
    ann.write_text(json.dumps(data))
    kept = CocoDataset(ann, folder, crowd="drop-image")  # only image 2 has a crowd region now
    assert kept.ids == [1, 3, 4, 5, 6] and torch.equal(kept[0]["mask"], torch.from_numpy(truth[0]))
    with pytest.raises(ValueError, match="unknown crowd policy 'keep'; pass one of ignore, object, drop-image"):
        CocoDataset(ann, folder, crowd="keep")


def test_polygons_are_rasterised(tmp_path):
    rng = np.random.default_rng(1)
    ann, folder = write_coco(tmp_path, [rng.integers(0, 256, (H, W, 3), dtype=np.uint8)], [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 300.0, "bbox": [10, 10, 20, 15],
         "segmentation": [[10, 10, 30, 10, 30, 25, 10, 25]]}])
    mask = CocoDataset(ann, folder)[0]["mask"].numpy()
    box = _box(10, 10, 15, 20).astype(bool)
    iou = (mask.astype(bool) & box).sum() / (mask.astype(bool) | box).sum()
    assert iou > 0.85 and set(np.unique(mask)) == {0, 1}


def test_train_and_eval_on_coco_from_the_cli(tmp_path, capsys):
    ann, folder, _, _ = _dataset(tmp_path)
    data = f"coco:{ann}:{folder}"
    assert BatchStream(data, "val", 32, 1, 0).batch(0)["mask"].shape == (1, 32, 32)
    out = tmp_path / "run"
    assert main(["train", "--config", "cpu-small", "--data", data, "--resolution", "32", "--steps", "2",
                 "--batch-size", "2", "--eval-every", "2", "--eval-batches", "1", "--no-progress", "--threads", "1",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--batches", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert isinstance(result["fg_ari"], float) and -1.0 <= result["fg_ari"] <= 1.0


def test_images_without_annotations_evaluate_mse_and_a_null_fg_ari(tmp_path, capsys):
    ann, folder, _, _ = _dataset(tmp_path, with_annotations=False)
    data = CocoDataset(ann, folder, resolution=32)
    assert "mask" not in data[0]
    out = tmp_path / "run"
    assert main(["train", "--config", "cpu-small", "--data", f"coco:{ann}:{folder}", "--resolution", "32",
                 "--steps", "1", "--batch-size", "2", "--eval-batches", "1", "--no-progress", "--threads", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed)["fg_ari"] is None and "NaN" not in printed
    assert json.loads((out / "summary.json").read_text())["fg_ari"] is None
    assert main(["eval", str(out), "--batches", "1"]) == 0
    text = (out / "eval_test.json").read_text()
    assert "NaN" not in text and json.loads(text)["fg_ari"] is None and json.loads(text)["mse"] > 0
