"""Bad and truncated real-data files through the CLI: exit 2, one line naming the file and the field.

The rows of docs/bad-input.md table marked R.
"""

from __future__ import annotations

import gzip
import re
import json

import numpy as np
import pytest
from PIL import Image

from tests.deqslots.data.real_data_files import multi_object_example, write_coco, write_shapestacks, write_tfrecord
from tests.deqslots.test_bad_input import cli_error, tiny_args


def _tetro(rng):
    ids = rng.integers(0, 4, (35, 35))
    return multi_object_example(rng.integers(0, 256, (35, 35, 3), dtype=np.uint8),
                                np.stack([(ids == e) * 255 for e in range(4)]).astype(np.uint8)[..., None])


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    good = [_tetro(rng) for _ in range(3)]
    write_tfrecord(tmp_path / "good.tfrecords", good)
    raw = gzip.decompress((tmp_path / "good.tfrecords").read_bytes())
    (tmp_path / "cut.tfrecords").write_bytes(gzip.compress(raw[:-50]))
    (tmp_path / "cutgz.tfrecords").write_bytes((tmp_path / "good.tfrecords").read_bytes()[:-20])
    flipped = bytearray(raw)
    flipped[-100] ^= 0x55
    (tmp_path / "crc.tfrecords").write_bytes(gzip.compress(bytes(flipped)))
    (tmp_path / "text.tfrecords").write_text("a text file, not a TFRecord file")
    write_tfrecord(tmp_path / "short.tfrecords", [good[0], multi_object_example(np.zeros((35, 35, 3), np.uint8),
                                                                                  np.zeros((4, 35, 30, 1), np.uint8))])
    images = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(4)]
    ann = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0, "bbox": [0, 0, 1, 1],
           "segmentation": {"size": [20, 30]}}  # no counts
    write_coco(tmp_path / "coco", images, [dict(ann, segmentation=[[1, 1, 5, 1, 5, 5]])])
    write_coco(tmp_path / "badseg", images, [dict(ann, id=i, image_id=i) for i in range(1, 5)])
    write_coco(tmp_path / "gone", images, [])
    (tmp_path / "gone" / "images" / "000000000002.png").unlink()
    write_coco(tmp_path / "size", images, [])
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "size" / "images" / "000000000001.png")
    (tmp_path / "notjson.json").write_text("{not json")
    (tmp_path / "noimages.json").write_text(json.dumps({"annotations": []}))
    write_shapestacks(tmp_path / "ss", {"a": "train", "b": "eval", "c": "test"}, cams=(1,))
    (tmp_path / "ss" / "recordings" / "a" / "iseg-w=0-f=0-l=0-c=original-cam_1-mono-0.map").unlink()
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize("data, message", [
    ("tfrecord:{tmp}/missing.tfrecords", r"TFRecord file '.*missing.tfrecords' does not exist"),
    ("tfrecord:{tmp}/empty", r"'.*empty' is a directory; tfrecord:PATH needs the .tfrecords file"),
    ("tfrecord:", r"'tfrecord:' names no path; pass tfrecord:\[NAME:\]PATH"),
    ("tfrecord:{tmp}/text.tfrecords", r"text.tfrecords is not a TFRecord file: the record length field fails"),
    ("tfrecord:{tmp}/cut.tfrecords", r"cut.tfrecords: truncated in record 2 \(.* bytes present\)"),
    ("tfrecord:{tmp}/cutgz.tfrecords", r"cutgz.tfrecords: the GZIP stream is truncated or corrupt at record"),
    ("tfrecord:{tmp}/crc.tfrecords", r"crc.tfrecords: record 2 fails its CRC-32C check"),
    ("tfrecord:{tmp}/short.tfrecords", r"short.tfrecords: record 1: feature 'mask' holds 4200 bytes; tetrominoes "
                                       r"needs 4900"),
    ("tfrecord:objects_room:{tmp}/good.tfrecords", r"named 'objects_room' but its first record looks like tetrominoes"),
    ("tfrecord:{tmp}/good.tfrecords", r"good.tfrecords has no val items: .*at least 20 records"),
    ("coco:{tmp}/missing.json:{tmp}/coco/images", r"COCO annotations file '.*missing.json' does not exist"),
    ("coco:{tmp}/coco/annotations.json", r"coco:.* needs both the annotations JSON and the image folder"),
    ("coco:{tmp}/coco/annotations.json:{tmp}/nowhere", r"COCO image folder '.*nowhere' does not exist"),
    ("coco:{tmp}/notjson.json:{tmp}/coco/images", r"notjson.json: not a COCO annotations JSON file"),
    ("coco:{tmp}/noimages.json:{tmp}/coco/images", r"noimages.json: no 'images' list"),
    ("coco:{tmp}/badseg/annotations.json:{tmp}/badseg/images",
     r"annotation (\d) \(image \1\) has a 'segmentation' that cannot be decoded \(KeyError: 'counts'\)"),
    ("coco:{tmp}/gone/annotations.json:{tmp}/gone/images", r"000000000002.png: image 3 of .* is missing from"),
    ("coco:{tmp}/size/annotations.json:{tmp}/size/images", r"000000000001.png is 10x10 but .* gives height 20, "
                                                           r"width 30 for image 2"),
    ("shapestacks:{tmp}/ss", r"rgb-.*cam_1-mono-0.png: no instance map \(expected .*iseg-.*cam_1-mono-0.map\)"),
    ("shapestacks:{tmp}/empty", r"splits/default/train.txt does not exist: a ShapeStacks folder has splits/default"),
    ("clevr-mirror:{tmp}/empty", r"no images found under '.*empty'"),
])
def test_bad_real_data_files_via_the_cli(files, capsys, data, message):
    err = cli_error(capsys, tiny_args(files / "run", "--data", data.format(tmp=files)))
    assert err.startswith("deqslots train: error: ")
    assert re.search(message, err), err


def test_eval_data_override_is_checked_too(files, capsys):
    from deqslots.cli import main

    out = files / "run"
    assert main(tiny_args(out)) == 0
    err = cli_error(capsys, ["eval", str(out), "--batches", "1", "--data", f"tfrecord:{files}/text.tfrecords"])
    assert "text.tfrecords is not a TFRecord file" in err


def test_eval_data_of_a_pretrained_model_is_checked_too(capsys):
    err = cli_error(capsys, ["eval", "--pretrained", "shapes-IN", "--data", "folder:photos"])
    assert "'photos' does not exist" in err
