"""ShapeStacks and CLEVR-Mirror read in the folder layouts their authors distribute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deqslots.data.batches import BatchStream
from deqslots.data.errors import DataError
from deqslots.data.shapestacks import ShapeStacksDataset
from tests.deqslots.data.real_data_files import write_shapestacks

SCENARIOS = {"env_ccs-easy-h=3-vcom=0-vpsf=0-v=1": "train", "env_ccs-easy-h=3-vcom=1-vpsf=0-v=2": "train",
             "env_blocks-hard-h=3-vcom=0-vpsf=1-v=3": "eval", "env_blocks-easy-h=3-vcom=0-vpsf=0-v=4": "test"}


def test_shapestacks_splits_and_instance_maps(tmp_path):
    truth = write_shapestacks(tmp_path, SCENARIOS)
    train = ShapeStacksDataset(tmp_path, "train")
    assert len(train) == 8  # 2 scenarios x 2 cameras x 2 render variants, pooled
    assert len(ShapeStacksDataset(tmp_path, "val")) == len(ShapeStacksDataset(tmp_path, "test")) == 4
    for index in (0, 5):
        render, _ = train.items[index]
        item = train[index]
        ids = truth[f"{render.parent.name}/{render.name}"][14:210, 14:210]  # the 196x196 centre crop
        assert torch.equal(item["mask"], torch.from_numpy(ids.astype(np.int64)))
        pixels = np.asarray(Image.open(render).convert("RGB"))[14:210, 14:210]
        assert torch.equal(item["image"], torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    assert set(torch.unique(train[0]["mask"]).tolist()) == {0, 1, 2, 3}
    stream = BatchStream(f"shapestacks:{tmp_path}", "val", 32, 2, 0)
    batch = stream.batch(0)
    assert batch["image"].shape == (2, 3, 32, 32) and set(batch["mask"].unique().tolist()) <= {0, 1, 2, 3}
    same = BatchStream(f"folder:{tmp_path}", "val", 32, 2, 0).batch(0)  # folder: recognises the layout
    assert torch.equal(same["mask"], batch["mask"])


def test_shapestacks_missing_parts_are_named(tmp_path):
    write_shapestacks(tmp_path, SCENARIOS)
    recording = tmp_path / "recordings" / "env_blocks-hard-h=3-vcom=0-vpsf=1-v=3"
    (recording / "iseg-w=0-f=0-l=0-c=original-cam_2-mono-0.map").unlink()
    with pytest.raises(DataError, match=r"rgb-w=0-f=0-l=0-c=original-cam_2-mono-0.png: no instance map \(expected "
                                        r".*iseg-w=0-f=0-l=0-c=original-cam_2-mono-0.map\)"):
        ShapeStacksDataset(tmp_path, "val")
    (tmp_path / "splits" / "default" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test.txt does not exist: a ShapeStacks folder has splits/default"):
        ShapeStacksDataset(tmp_path, "test")


def _images(folder, count, seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")


def test_clevr_mirror_uses_its_split_folders_or_the_papers_70_15_15(tmp_path):
    _images(tmp_path / "flat", 20)
    sizes = {s: BatchStream(f"clevr-mirror:{tmp_path / 'flat'}", s, 16, 1, 0).size for s in ("train", "val", "test")}
    assert sizes == {"train": 14, "val": 3, "test": 3}
    for split, count in (("train", 5), ("val", 2), ("test", 3)):
        _images(tmp_path / "split" / split, count, seed=count)
    sizes = {s: BatchStream(f"clevr-mirror:{tmp_path / 'split'}", s, 16, 1, 0).size for s in ("train", "val", "test")}
    assert sizes == {"train": 5, "val": 2, "test": 3}
    batch = BatchStream(f"clevr-mirror:{tmp_path / 'split'}", "val", 16, 2, 0).batch(0)
    assert batch["image"].shape == (2, 3, 16, 16) and batch["mask"] is None
