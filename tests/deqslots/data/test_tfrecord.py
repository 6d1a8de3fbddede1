"""The Multi-Object Datasets TFRecord reader, on small files written in the published format."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from deqslots.data.batches import BatchStream
from deqslots.cli import main
from deqslots.data.errors import DataError
from deqslots.data.stream import BLOCK, record_split
from deqslots.data.tfrecord import MultiObjectTFRecord, masked_crc32c, parse_example, read_records
from tests.deqslots.data.real_data_files import frame, multi_object_example, write_tfrecord

# A record written by the `tfrecord` package (1.14.6, TFRecordWriter) for {"x": [1, 2] int, "b": b"ab" byte}:
# an independent check of the framing (length, masked CRC-32C, data, masked CRC-32C).
GOLDEN = bytes.fromhex("1c00000000000000c8c1951d0a1a0a0b0a016212060a040a0261620a0b0a017812061a040a020102ee1b399c")


def test_framing_and_example_match_an_independent_writer(tmp_path):
    payload = GOLDEN[12:-4]
    assert frame(payload) == GOLDEN
    assert masked_crc32c(GOLDEN[:8]) == int.from_bytes(GOLDEN[8:12], "little")
    (tmp_path / "g.tfrecord").write_bytes(GOLDEN)
    (tmp_path / "g.gz").write_bytes(gzip.compress(GOLDEN * 2))
    assert list(read_records(tmp_path / "g.tfrecord")) == [payload]
    assert list(read_records(tmp_path / "g.gz")) == [payload, payload]
    assert parse_example(payload) == {"b": ("bytes", (1, b"ab")), "x": ("int64", [1, 2])}


def _scene(rng, h, w, k, channels=3):
    """An image and K entity masks (entity 0 = background) of random rectangles, and the true ids."""
    ids = np.zeros((h, w), np.int64)
    for e in range(1, k):
        top, left = rng.integers(0, h - 4), rng.integers(0, w - 4)
        ids[top:top + rng.integers(3, h // 2), left:left + rng.integers(3, w // 2)] = e
    masks = np.stack([(ids == e) * 255 for e in range(k)]).astype(np.uint8)[..., None]  # [K, H, W, 1]
    image = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    return image, masks, ids


def _write(tmp_path, name, n, h, w, k, channels=3, pixel_major=False, extra=None, seed=0):
    rng = np.random.default_rng(seed)
    records, truth = [], []
    for _ in range(n):
        image, masks, ids = _scene(rng, h, w, k, channels)
        stored = masks.transpose(1, 2, 0, 3) if pixel_major else masks  # Multi-dSprites: [H, W, K, 1]
        records.append(multi_object_example(image, stored, floats=extra(k) if extra else None))
        truth.append((image, ids))
    return write_tfrecord(tmp_path / f"{name}.tfrecords", records), truth


def _factors(*names):
    return lambda k: {n: np.zeros(k, np.float32) for n in names}


FORMATS = [  # name, H, W, K, channels, pixel-major, extra float features
    ("tetrominoes", 35, 35, 4, 3, False, _factors("x", "y", "shape", "visibility")),
    ("multi_dsprites", 64, 64, 5, 3, True, _factors("x", "y", "orientation", "scale", "visibility")),
    ("multi_dsprites", 64, 64, 4, 1, True, _factors("orientation", "scale")),  # binarized: grayscale
    ("objects_room", 64, 64, 7, 3, False, None),
    ("clevr_with_masks", 240, 320, 11, 3, False, _factors("x", "y", "z", "rotation", "visibility")),
]


@pytest.mark.parametrize("name,h,w,k,c,pixel_major,extra", FORMATS)
def test_each_data_set_is_recognised_and_decoded_exactly(tmp_path, name, h, w, k, c, pixel_major, extra):
    path, truth = _write(tmp_path, name, 2, h, w, k, c, pixel_major, extra)
    data = MultiObjectTFRecord(path)
    assert data.spec.name == name and data.spec.entities == (k,)
    items = list(data)
    assert len(items) == 2
    for item, (image, ids) in zip(items, truth):
        if name == "clevr_with_masks":  # Slot Attention's crop
            image, ids = image[29:221, 64:256], ids[29:221, 64:256]
        expected = torch.from_numpy(image).permute(2, 0, 1).float() / 255
        assert torch.equal(item["image"], expected.expand(3, -1, -1))
        assert torch.equal(item["mask"], torch.from_numpy(ids))
        assert item["image"].dtype == torch.float32 and item["mask"].dtype == torch.int64
    named = MultiObjectTFRecord(path, name=name, resolution=32)
    first = next(iter(named))
    assert first["image"].shape == (3, 32, 32) and first["mask"].shape == (32, 32)
    assert set(first["mask"].unique().tolist()) <= set(range(k))  # nearest resize: no new ids


def test_clevr6_keeps_scenes_with_at_most_six_objects(tmp_path):
    rng = np.random.default_rng(1)
    records = []
    for objects in (3, 8, 6, 10):
        image, masks, _ = _scene(rng, 240, 320, 11)
        masks[objects + 1:] = 0  # entities beyond the scene's objects are empty
        records.append(multi_object_example(image, masks))
    path = write_tfrecord(tmp_path / "clevr.tfrecords", records)
    counts = [len(item["mask"].unique()) - 1 for item in MultiObjectTFRecord(path, name="clevr6")]
    assert len(counts) == 2 and max(counts) <= 6
    assert len(list(MultiObjectTFRecord(path))) == 4


def test_a_wrong_name_or_an_unknown_layout_is_refused(tmp_path):
    path, _ = _write(tmp_path, "tetrominoes", 1, 35, 35, 4)
    with pytest.raises(DataError, match="named 'objects_room' but its first record looks like tetrominoes"):
        MultiObjectTFRecord(path, name="objects_room")
    with pytest.raises(ValueError, match="unknown Multi-Object data set 'mnist'"):
        MultiObjectTFRecord(path, name="mnist")
    odd = write_tfrecord(tmp_path / "odd.tfrecords",
                         [multi_object_example(np.zeros((10, 10, 3), np.uint8), np.zeros((2, 10, 10, 1), np.uint8))])
    with pytest.raises(DataError, match="'image' feature holds 300 bytes, which matches none"):
        MultiObjectTFRecord(odd)


def test_the_byte_feature_trap_is_reported_not_read_as_one_byte(tmp_path):
    """A whole image stored as ONE bytes element is joined correctly; a short one is refused by name."""
    from tests.deqslots.data.real_data_files import example_class

    rng = np.random.default_rng(0)
    image, masks, ids = _scene(rng, 35, 35, 4)
    ex = example_class()()
    ex.features.feature["image"].bytes_list.value.append(image.tobytes())
    ex.features.feature["mask"].bytes_list.value.append(masks.tobytes())
    path = write_tfrecord(tmp_path / "joined.tfrecords", [ex.SerializeToString()])
    item = next(iter(MultiObjectTFRecord(path, name="tetrominoes")))
    assert torch.equal(item["mask"], torch.from_numpy(ids))
    good = multi_object_example(image, masks)
    bad = multi_object_example(image, masks[:, :30])
    path = write_tfrecord(tmp_path / "short.tfrecords", [good, bad])
    with pytest.raises(DataError,
                       match=r"short.tfrecords: record 1: feature 'mask' holds 4200 bytes; tetrominoes needs 4900"):
        list(MultiObjectTFRecord(path))


def test_truncated_corrupt_and_foreign_files_name_the_file_and_record(tmp_path):
    path, _ = _write(tmp_path, "tetrominoes", 3, 35, 35, 4)
    raw = gzip.decompress(path.read_bytes())
    cut = tmp_path / "cut.tfrecords"
    cut.write_bytes(gzip.compress(raw[: len(raw) - 100]))
    with pytest.raises(DataError, match="cut.tfrecords: truncated in record 2"):
        list(MultiObjectTFRecord(cut))
    cut_gzip = tmp_path / "cutgz.tfrecords"
    cut_gzip.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="cutgz.tfrecords: the GZIP stream is truncated or corrupt"):
        list(MultiObjectTFRecord(cut_gzip))
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.tfrecords"
    bad.write_bytes(gzip.compress(bytes(flipped)))
    with pytest.raises(DataError, match=r"bad.tfrecords: record 1 fails its CRC-32C check"):
        list(MultiObjectTFRecord(bad))
    foreign = tmp_path / "foreign.tfrecords"
    foreign.write_text("not a tfrecord file at all")
    with pytest.raises(DataError, match="foreign.tfrecords is not a TFRecord file"):
        MultiObjectTFRecord(foreign)
    empty = tmp_path / "empty.tfrecords"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="holds no records"):
        MultiObjectTFRecord(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MultiObjectTFRecord(tmp_path / "missing.tfrecords")


def test_streamed_splits_are_disjoint_deterministic_and_resumable(tmp_path):
    n = 2 * BLOCK
    path, truth = _write(tmp_path, "tetrominoes", n, 35, 35, 4, extra=_factors("x", "y", "shape", "visibility"))
    splits = [record_split(i, 0) for i in range(n)]
    assert splits.count("val") == splits.count("test") == 2
    data = f"tfrecord:{path}"
    val = BatchStream(data, "val", 32, 2, seed=0)
    expected = [MultiObjectTFRecord(path, resolution=32).decode(r, i)
                for i, r in enumerate(read_records(path)) if splits[i] == "val"]
    batch = val.batch(0)
    assert torch.equal(batch["image"], torch.stack([e["image"] for e in expected]))
    assert torch.equal(batch["mask"], torch.stack([e["mask"] for e in expected]))
    train = BatchStream(data, "train", 32, 4, seed=0)
    run = [train.batch(s)["image"] for s in range(30)]  # 36 train images per epoch, 9 batches each
    for step in (7, 20, 29):  # a fresh stream skips to the same place (20, 29: counted, then the epoch replayed)
        assert torch.equal(BatchStream(data, "train", 32, 4, seed=0).batch(step)["image"], run[step])
    assert torch.equal(train.batch(29)["image"], run[29]) and torch.equal(train.batch(28)["image"], run[28])
    assert torch.equal(train.batch(3)["image"], run[3])  # going back rereads from the start
    epoch = torch.cat(run[:9])
    train_images = {tuple(img[0, :2, :2].flatten().tolist()) for img in epoch}
    assert len(train_images) == 36  # every train record exactly once per epoch
    assert not torch.equal(torch.cat(run[:9]), torch.cat(run[9:12] + run[:6]))
    ranks = [BatchStream(data, "train", 32, 4, seed=0, rank=r, world_size=2).batch(5)["image"] for r in (0, 1)]
    assert torch.equal(torch.cat(ranks), run[5])


def test_too_few_records_for_a_split(tmp_path):
    path, _ = _write(tmp_path, "tetrominoes", 3, 35, 35, 4)
    stream = BatchStream(f"tfrecord:{path}", "val", 32, 2, seed=0)
    with pytest.raises(DataError, match="has no val items: .*at least 20 records"):
        stream.batch(0)


def test_train_and_eval_from_the_cli_with_fg_ari(tmp_path, capsys):
    path, _ = _write(tmp_path, "tetrominoes", BLOCK, 35, 35, 4, extra=_factors("x", "y", "shape", "visibility"))
    out = tmp_path / "run"
    args = ["train", "--config", "cpu-small", "--data", f"tfrecord:tetrominoes:{path}", "--resolution", "32",
            "--steps", "2", "--batch-size", "2", "--eval-every", "2", "--eval-batches", "1", "--no-progress",
            "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--batches", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["fg_ari"] <= 1.0 or result["fg_ari"] is None
    assert json.loads((out / "eval_test.json").read_text())["mse"] == result["mse"]

