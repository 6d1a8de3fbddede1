"""``deqslots data convert SRC DST.h5``: real-data formats to the HDF5 layout, through the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from deqslots.cli import main
from deqslots.data import HDF5Dataset
from deqslots.data.convert import convert
from deqslots.data.tfrecord import MultiObjectTFRecord
from tests.deqslots.data.real_data_files import multi_object_example, write_shapestacks, write_tfrecord


def _tetrominoes(tmp_path, n=5):
    rng = np.random.default_rng(0)
    records = []
    for _ in range(n):
        ids = rng.integers(0, 4, (35, 35))
        masks = np.stack([(ids == e) * 255 for e in range(4)]).astype(np.uint8)[..., None]
        records.append(multi_object_example(rng.integers(0, 256, (35, 35, 3), dtype=np.uint8), masks))
    return write_tfrecord(tmp_path / "tetrominoes_train.tfrecords", records)


def test_tfrecord_to_hdf5_round_trip_through_the_cli(tmp_path, capsys):
    src = _tetrominoes(tmp_path)
    dst = tmp_path / "tetro.h5"
    assert main(["data", "convert", f"tfrecord:{src}", str(dst)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"path": str(dst), "images": 5, "height": 35, "width": 35, "masks": True}
    # stdout is exactly the JSON above; the tqdm bar goes to stderr (the tmp path may hold "5/", so no substring test)
    assert "convert tetro.h5: 5img" in captured.err
    with h5py.File(dst) as handle:
        assert handle["image"].dtype == np.uint8 and handle["image"].shape == (5, 35, 35, 3)
        assert handle["mask"].shape == (5, 35, 35)
    back = HDF5Dataset(dst)
    for i, item in enumerate(MultiObjectTFRecord(src)):
        assert torch.equal(back[i]["image"], item["image"])  # uint8 data: exact
        assert torch.equal(back[i]["mask"], item["mask"])
    assert not list(tmp_path.glob("*.partial"))


def test_convert_resizes_limits_and_pools_shapestacks_splits(tmp_path):
    write_shapestacks(tmp_path / "ss", {"a": "train", "b": "eval", "c": "test"}, cams=(1,))
    result = convert(f"shapestacks:{tmp_path / 'ss'}", tmp_path / "ss.h5", resolution=32, progress=False)
    assert result == {"path": str(tmp_path / "ss.h5"), "images": 6, "height": 32, "width": 32, "masks": True}
    assert convert(f"tfrecord:{_tetrominoes(tmp_path)}", tmp_path / "two.h5", limit=2, progress=False)["images"] == 2


def test_convert_refuses_to_overwrite_and_needs_a_size_for_folders(tmp_path, capsys):
    src = _tetrominoes(tmp_path)
    (tmp_path / "taken.h5").write_text("keep me")
    assert main(["data", "convert", f"tfrecord:{src}", str(tmp_path / "taken.h5"), "--no-progress"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "taken.h5").read_text() == "keep me"
    assert main(["data", "convert", f"tfrecord:{src}", str(tmp_path / "taken.h5"), "--overwrite", "--no-progress"]) == 0
    (tmp_path / "imgs").mkdir()
    assert main(["data", "convert", f"folder:{tmp_path / 'imgs'}", str(tmp_path / "f.h5"), "--no-progress"]) == 2
    assert "pass --resolution R" in capsys.readouterr().err
    assert main(["data", "convert", "shapes", str(tmp_path / "s.h5")]) == 2
    assert "convert reads data on disk" in capsys.readouterr().err


def test_an_interrupted_conversion_leaves_no_output(tmp_path):
    src = _tetrominoes(tmp_path)
    raw = src.read_bytes()
    src.write_bytes(raw[: len(raw) - 40])
    with pytest.raises(ValueError, match="GZIP stream is truncated or corrupt"):
        convert(f"tfrecord:{src}", tmp_path / "out.h5", progress=False)
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.h5.partial").exists()
