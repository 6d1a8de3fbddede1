"""Writers of small files in the exact formats real data sets are published in, for the reader tests.

The ``tf.Example`` records are built by the ``protobuf`` package from TensorFlow's own message
definitions (``tensorflow/core/example/{feature,example}.proto``, declared here as descriptors), so
the bytes come from an encoder independent of the reader under test; the TFRecord framing (length,
masked CRC-32C, data, masked CRC-32C) follows TensorFlow's ``record_writer``, and
``test_tfrecord.py`` checks it against a record written by the ``tfrecord`` package.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["example_class", "frame", "write_tfrecord", "multi_object_example", "write_coco", "write_shapestacks"]


def _crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def example_class():
    """The ``tensorflow.Example`` message class, built from its descriptor (proto3, packed lists)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    f = descriptor_pb2.FileDescriptorProto(name="tensorflow/core/example/feature.proto", package="tensorflow",
                                           syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    for name, ftype in (("BytesList", T.TYPE_BYTES), ("FloatList", T.TYPE_FLOAT), ("Int64List", T.TYPE_INT64)):
        m = f.message_type.add(name=name)
        field = m.field.add(name="value", number=1, label=T.LABEL_REPEATED, type=ftype)
        if ftype != T.TYPE_BYTES:
            field.options.packed = True
    feature = f.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for i, (fname, tname) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                        ("int64_list", "Int64List"))):
        feature.field.add(name=fname, number=i + 1, label=T.LABEL_OPTIONAL, type=T.TYPE_MESSAGE,
                          type_name=f".tensorflow.{tname}", oneof_index=0)
    features = f.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=T.LABEL_OPTIONAL, type=T.TYPE_STRING)
    entry.field.add(name="value", number=2, label=T.LABEL_OPTIONAL, type=T.TYPE_MESSAGE,
                    type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, label=T.LABEL_REPEATED, type=T.TYPE_MESSAGE,
                       type_name=".tensorflow.Features.FeatureEntry")
    example = f.message_type.add(name="Example")
    example.field.add(name="features", number=1, label=T.LABEL_OPTIONAL, type=T.TYPE_MESSAGE,
                      type_name=".tensorflow.Features")
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def frame(record: bytes) -> bytes:
    """One TFRecord: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the data."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", _crc(length)) + record + struct.pack("<I", _crc(record))


def write_tfrecord(path: Path, records: list[bytes], compress: bool = True) -> Path:
    data = b"".join(frame(r) for r in records)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def multi_object_example(image: np.ndarray, masks: np.ndarray, floats: dict[str, np.ndarray] | None = None,
                         strings: dict[str, np.ndarray] | None = None) -> bytes:
    """A serialised tf.Example as the Multi-Object Datasets store it: uint8 arrays as one-byte strings."""
    cls = example_class()
    ex = cls()
    feats = ex.features.feature
    for name, array in (("image", image), ("mask", masks), *((strings or {}).items())):
        feats[name].bytes_list.value.extend(bytes([v]) for v in np.asarray(array, np.uint8).ravel().tolist())
    for name, array in (floats or {}).items():
        feats[name].float_list.value.extend(np.asarray(array, np.float32).ravel().tolist())
    return ex.SerializeToString()


def write_coco(root: Path, images: list[np.ndarray], annotations: list[dict],
               with_annotations: bool = True) -> tuple[Path, Path]:
    """``root/annotations.json`` (COCO instances format) and ``root/images/*.jpg``-like PNG files."""
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    infos = []
    for i, pixels in enumerate(images):
        name = f"{i:012d}.png"
        Image.fromarray(pixels).save(folder / name)
        infos.append({"id": i + 1, "file_name": name, "height": int(pixels.shape[0]), "width": int(pixels.shape[1])})
    data = {"info": {"description": "test"}, "images": infos,
            "categories": [{"id": 1, "name": "thing", "supercategory": "thing"}]}
    if with_annotations:
        data["annotations"] = annotations
    ann = root / "annotations.json"
    ann.write_text(json.dumps(data))
    return ann, folder


def write_shapestacks(root: Path, scenarios: dict[str, str], size: int = 224, cams: tuple[int, ...] = (1, 2),
                      seed: int = 0) -> dict[str, np.ndarray]:
    """A ShapeStacks tree: splits/default/{train,eval,test}.txt, recordings/SCENARIO/rgb-*.png and iseg-*.map.

    ``scenarios`` maps a scenario name to its split file (train, eval or test). Returns the instance ids
    written per rgb file (relative path), for the tests to compare against.
    """
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {"train": [], "eval": [], "test": []}
    truth = {}
    for scenario, split in scenarios.items():
        lists[split].append(scenario)
        folder = root / "recordings" / scenario
        folder.mkdir(parents=True, exist_ok=True)
        for cam in cams:
            ids = np.zeros((size, size), np.uint8)
            for k in range(1, 4):  # three stacked blocks
                top = size // 2 + (k - 2) * size // 8
                ids[top:top + size // 8, size // 3:2 * size // 3] = k
            rgb = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            # ShapeStacks' maps: instance id k in bin k of 8 (value 32 k) in the first channel
            segmap = np.stack([ids * 32, np.zeros_like(ids), np.zeros_like(ids)], axis=-1)
            Image.fromarray(segmap).save(folder / f"iseg-w=0-f=0-l=0-c=original-cam_{cam}-mono-0.map", format="PNG")
            for variant in ("w=0-f=0-l=0-c=original", "w=5-f=2-l=1-c=unique"):
                name = f"rgb-{variant}-cam_{cam}-mono-0.png"
                Image.fromarray(rgb).save(folder / name)
                truth[f"{scenario}/{name}"] = ids
    split_dir = root / "splits" / "default"
    split_dir.mkdir(parents=True, exist_ok=True)
    for split, names in lists.items():
        (split_dir / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    return truth
