"""The Multi-Object Datasets as published: GZIP-compressed TFRecord files of ``tf.Example`` records.

google-deepmind/multi_object_datasets publishes CLEVR (with masks), Multi-dSprites, Objects Room and
Tetrominoes as one ``.tfrecords`` file each, GZIP-compressed. Every record is a serialised
``tf.Example`` whose ``image`` and ``mask`` features are *fixed-length bytes lists with one byte per
array element* (the publishers' readers parse them with ``FixedLenFeature(shape, tf.string)`` and
``decode_raw(..., tf.uint8)``): ``image`` is ``[H, W, C]`` and ``mask`` ``[K, H, W, 1]`` with entity 0
the background (Multi-dSprites stores it pixel-major, ``[H, W, K, 1]``).

This module reads them without TensorFlow. The TFRecord framing (``uint64 length``, masked CRC-32C of
the length, the record, masked CRC-32C of the record) is read with :mod:`gzip` and checked with
``google-crc32c``; the ``tf.Example`` protobuf is decoded here, because the byte features must be
joined element by element: the ``tfrecord`` package keeps only a bytes list's first element (its
issue #102), which would give one byte per image, and the ``protobuf`` package makes a Python object
per byte (a million per CLEVR record). Lists of one-byte strings are decoded with one numpy view.

Examples:
    >>> data = MultiObjectTFRecord("tetrominoes_train.tfrecords", resolution=32)  # doctest: +SKIP
    >>> data.spec.name, data.spec.entities  # doctest: +SKIP
    ('tetrominoes', 4)
    >>> next(iter(data))["mask"].shape  # doctest: +SKIP
    torch.Size([32, 32])
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from deqslots.data._transforms import resize_ids, resize_image
from deqslots.data.errors import DataError

__all__ = [
    "MULTI_OBJECT_DATASETS",
    "MultiObjectSpec",
    "MultiObjectTFRecord",
    "masked_crc32c",
    "parse_example",
    "read_records",
]


@dataclasses.dataclass(frozen=True)
class MultiObjectSpec:
    """The layout of one of the Multi-Object Datasets.

    Args:
        name: The data set's name, as in the publishers' reader module.
        height: Image height in pixels.
        width: Image width in pixels.
        channels: Allowed image channel counts (Multi-dSprites "binarized" is grayscale).
        entities: Allowed mask counts ``K`` (background included), per published variant.
        pixel_major: Masks stored ``[H, W, K, 1]`` (Multi-dSprites) instead of ``[K, H, W, 1]``.
        crop: ``(top, bottom, left, right)`` crop applied before resizing, or ``None`` for the
            centre square (CLEVR: Slot Attention's 192x192 crop around the objects).

    Examples:
        >>> spec = MULTI_OBJECT_DATASETS["multi_dsprites"]
        >>> spec.height, spec.width, spec.channels, spec.entities, spec.pixel_major
        (64, 64, (1, 3), (4, 5, 6), True)
        >>> MULTI_OBJECT_DATASETS["clevr_with_masks"].crop
        (29, 221, 64, 256)
    """

    name: str
    height: int
    width: int
    channels: tuple[int, ...]
    entities: tuple[int, ...]
    pixel_major: bool = False
    crop: Optional[tuple[int, int, int, int]] = None


#: The four data sets, with the sizes of google-deepmind/multi_object_datasets' reader modules.
MULTI_OBJECT_DATASETS: dict[str, MultiObjectSpec] = {
    # Slot Attention (Locatello et al. 2020) crops CLEVR to rows 29:221, columns 64:256 before resizing.
    "clevr_with_masks": MultiObjectSpec("clevr_with_masks", 240, 320, (3,), (11,), crop=(29, 221, 64, 256)),
    # binarized 4 (grayscale images), colored_on_colored 5, colored_on_grayscale 6
    "multi_dsprites": MultiObjectSpec("multi_dsprites", 64, 64, (1, 3), (4, 5, 6), pixel_major=True),
    # train 7, empty_room 4, six_objects and identical_color 10
    "objects_room": MultiObjectSpec("objects_room", 64, 64, (3,), (4, 7, 10)),
    "tetrominoes": MultiObjectSpec("tetrominoes", 35, 35, (3,), (4,)),
}
# CLEVR6 (Slot Attention): CLEVR scenes with at most 6 objects.
_ALIASES = {"clevr": "clevr_with_masks", "clevr6": "clevr_with_masks", "tetris": "tetrominoes"}
_DEFAULT_MAX_OBJECTS = {"clevr6": 6}

_MASK_DELTA = 0xA282EAD8
_GZIP_MAGIC = b"\x1f\x8b"


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data`` (rotate right by 15 bits, add a constant, mod 2**32).

    Args:
        data: The bytes to checksum (a record's 8-byte length field, or the record itself).

    Returns:
        The masked checksum, an unsigned 32-bit int, as TFRecord framing stores it (little-endian).

    Examples:
        >>> hex(masked_crc32c(b""))
        '0xa282ead8'
    """
    import google_crc32c

    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: Path):
    with open(path, "rb") as handle:
        magic = handle.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def read_records(path: str | os.PathLike[str], check_crc: bool = True) -> Iterator[bytes]:
    """The records of a TFRecord file (GZIP-compressed or not, told by its first bytes), streamed.

    Args:
        path: The ``.tfrecords`` file.
        check_crc: Check each record's masked CRC-32C (the length's is always checked).

    Yields:
        Each record's bytes, in file order.

    Raises:
        DataError: The file is not a TFRecord file, is truncated, or a record or the GZIP stream is
            corrupt; the message names the file and the record number.

    Examples:
        Two records framed as TensorFlow writes them (length, masked CRC-32C, data, masked CRC-32C):

        >>> import struct, tempfile
        >>> def frame(data):
        ...     length = struct.pack("<Q", len(data))
        ...     crcs = struct.pack("<I", masked_crc32c(length)), struct.pack("<I", masked_crc32c(data))
        ...     return length + crcs[0] + data + crcs[1]
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "two.tfrecords"
        ...     _ = path.write_bytes(gzip.compress(frame(b"first") + frame(b"second")))
        ...     list(read_records(path))
        [b'first', b'second']
    """
    path = Path(path)
    index = 0
    try:
        with _open(path) as handle:
            while True:
                header = handle.read(12)
                if not header:
                    return
                if len(header) < 12 and index == 0:
                    raise DataError(f"{path} is not a TFRecord file: it holds {len(header)} bytes, less than one "
                                    "record header")
                if len(header) < 12:
                    raise DataError(f"{path}: truncated in the header of record {index} (the file ends after "
                                    f"{len(header)} of its 12 bytes); re-download or re-create the file")
                length, length_crc = struct.unpack("<QI", header)
                if masked_crc32c(header[:8]) != length_crc:
                    what = "is not a TFRecord file" if index == 0 else f"is corrupt at record {index}"
                    raise DataError(f"{path} {what}: the record length field fails its CRC-32C check "
                                    "(expected TFRecord framing: uint64 length, masked CRC-32C, data, masked CRC-32C)")
                data = handle.read(length)
                footer = handle.read(4)
                if len(data) < length or len(footer) < 4:
                    raise DataError(f"{path}: truncated in record {index} ({len(data)} of its {length} bytes "
                                    "present); re-download or re-create the file")
                if check_crc and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                    raise DataError(f"{path}: record {index} fails its CRC-32C check (corrupt data); "
                                    "re-download the file")
                yield data
                index += 1
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: the GZIP stream is truncated or corrupt at record {index} "
                        f"({type(exc).__name__}: {exc}); re-download the file") from exc


# ---- tf.Example wire format ------------------------------------------------------------------------
# Example{features=1: Features{feature=1: map<string, Feature>}}; Feature{bytes_list=1 | float_list=2 |
# int64_list=3}, each a message whose field 1 is the repeated value (floats and ints usually packed).


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("a varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint is longer than 10 bytes")


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, wire type, value start, value end)`` for each field in ``buf[start:end]``.

    For a varint field (wire type 0) the "value start" is the decoded value and the end is its end.
    """
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError(f"field {number} runs past the end of its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 0:
            value, after = _varint(buf, pos)
            yield number, wire, value, after
            pos = after
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise ValueError(f"field {number} runs past the end of its message")
            yield number, wire, pos, pos + size
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {number})")


def _bytes_list(buf: bytes, start: int, end: int) -> tuple[int, bytes]:
    """The element count and the concatenation of a BytesList's values."""
    # Fast path: all elements one byte long (the Multi-Object Datasets' layout): 0x0a 0x01 VALUE each.
    size = end - start
    if size and size % 3 == 0 and buf[start] == 0x0A and buf[start + 1] == 0x01:
        triples = np.frombuffer(buf, np.uint8, count=size, offset=start).reshape(-1, 3)
        if (triples[:, 0] == 0x0A).all() and (triples[:, 1] == 0x01).all():
            return len(triples), triples[:, 2].tobytes()
    parts = [buf[a:b] for number, wire, a, b in _fields(buf, start, end) if number == 1 and wire == 2]
    return len(parts), b"".join(parts)


def _numbers(buf: bytes, start: int, end: int, kind: str) -> list:
    values: list = []
    for number, wire, a, b in _fields(buf, start, end):
        if number != 1:
            continue
        if kind == "float":
            if wire == 2:
                values.extend(np.frombuffer(buf, "<f4", count=(b - a) // 4, offset=a).tolist())
            else:
                values.append(struct.unpack("<f", buf[a:b])[0])
        elif wire == 2:
            pos = a
            while pos < b:
                value, pos = _varint(buf, pos)
                values.append(value - (1 << 64) if value >= 1 << 63 else value)
        else:
            values.append(a - (1 << 64) if a >= 1 << 63 else a)
    return values


def parse_example(record: bytes, names: Optional[set[str]] = None) -> dict[str, tuple[str, object]]:
    """Decode a serialised ``tf.Example`` into ``{name: (kind, value)}``.

    ``kind`` is ``"bytes"`` (value: ``(element count, the elements joined)``), ``"float"`` or
    ``"int64"`` (value: a list). With ``names``, only those features are decoded (the others are
    listed with value ``None``), which skips the work on large features nobody reads.

    Args:
        record: One serialised ``tf.Example`` (a record of :func:`read_records`).
        names: The features to decode; ``None`` decodes all.

    Returns:
        ``{feature name: (kind, value)}`` for every feature of the record; ``kind`` is ``"empty"`` (value
        ``None``) for a feature with no list.

    Raises:
        ValueError: The bytes are not a valid ``tf.Example``.

    Examples:
        >>> parse_example(bytes.fromhex("0a0d0a0b0a017812061a040a020102"))
        {'x': ('int64', [1, 2])}
    """
    out: dict[str, tuple[str, object]] = {}
    for number, wire, a, b in _fields(record, 0, len(record)):
        if number != 1 or wire != 2:
            continue
        for fnum, fwire, ea, eb in _fields(record, a, b):
            if fnum != 1 or fwire != 2:
                continue
            key, value = None, (None, None)
            for enum, ewire, va, vb in _fields(record, ea, eb):
                if enum == 1 and ewire == 2:
                    key = bytes(record[va:vb]).decode("utf-8")
                elif enum == 2 and ewire == 2:
                    value = (va, vb)
            if key is None:
                raise ValueError("a feature map entry has no name")
            kind, payload = None, None
            if value[0] is not None:
                for knum, kwire, ka, kb in _fields(record, value[0], value[1]):
                    if kwire != 2 or knum not in (1, 2, 3):
                        continue
                    kind = ("bytes", "float", "int64")[knum - 1]
                    if names is not None and key not in names:
                        break
                    if kind == "bytes":
                        payload = _bytes_list(record, ka, kb)
                    else:
                        payload = _numbers(record, ka, kb, kind)
            out[key] = (kind or "empty", payload)
    return out


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in MULTI_OBJECT_DATASETS:
        names = ", ".join([*MULTI_OBJECT_DATASETS, "clevr6"])
        raise ValueError(f"unknown Multi-Object data set {name!r}; pass one of {names}")
    return key


def _recognise(features: dict, path: Path) -> str:
    for field in ("image", "mask"):
        if features.get(field, ("", None))[0] != "bytes":
            present = ", ".join(sorted(features)) or "(none)"
            raise DataError(f"{path}: record 0 has no bytes feature {field!r} (features: {present}); this is not "
                            "one of the Multi-Object Datasets (CLEVR with masks, Multi-dSprites, Objects Room, "
                            "Tetrominoes)")
    count = len(features["image"][1][1])  # bytes, whether stored one per element (as published) or joined
    sizes = {spec.height * spec.width * c: spec.name for spec in MULTI_OBJECT_DATASETS.values() for c in spec.channels}
    if count == 64 * 64 * 3:  # Multi-dSprites or Objects Room: only Multi-dSprites has generative factors
        return "multi_dsprites" if "orientation" in features or "scale" in features else "objects_room"
    if count not in sizes:
        expected = ", ".join(f"{n} ({b} bytes)" for b, n in sorted(sizes.items()))
        raise DataError(f"{path}: record 0's 'image' feature holds {count} bytes, which matches none of the "
                        f"Multi-Object Datasets: {expected}")
    return sizes[count]


def _peek(path: Path, check_crc: bool) -> dict:
    for record in read_records(path, check_crc):
        try:
            return parse_example(record)
        except ValueError as exc:
            raise DataError(f"{path}: record 0 is not a tf.Example ({exc})") from exc
    raise DataError(f"{path} holds no records (an empty TFRecord file)")


class MultiObjectTFRecord:
    """A Multi-Object Datasets TFRecord file, streamed item by item (never loaded into memory).

    Iterating yields ``{"image": float32 [3, R, R] in [0, 1], "mask": int64 [R, R]}`` with mask id
    ``k`` = entity ``k`` (0 = background, also where no entity covers a pixel), in file order. The
    image is cropped (CLEVR: Slot Attention's rows 29:221, columns 64:256; the others are square) and
    resized as the other loaders do: antialiased bilinear for images, nearest for ids; grayscale
    Multi-dSprites images are repeated to three channels.

    Args:
        path: The ``.tfrecords`` file (GZIP-compressed as published, or uncompressed).
        name: ``clevr_with_masks`` (or ``clevr``), ``clevr6``, ``multi_dsprites``, ``objects_room``,
            ``tetrominoes``; ``None`` recognises it from the first record's features.
        resolution: Output side; ``None`` keeps the (cropped) stored size.
        max_objects: Skip scenes with more non-empty foreground masks (``clevr6`` sets 6).
        check_crc: Check every record's CRC-32C.

    Attributes:
        spec: The data set's :class:`MultiObjectSpec`, narrowed to this file's channel and entity counts.

    Raises:
        ValueError: If ``resolution`` is not a positive int or None, or ``name`` is not one of the above.
        FileNotFoundError: If ``path`` does not exist (IsADirectoryError if it is a folder).
        DataError: If the file is not a TFRecord file of ``tf.Example`` records, or its features do not
            match the named (or any) data set; when iterating, a truncated or corrupt record, naming the
            file, the record number and the feature.

    Examples:
        A Tetrominoes file of three identical records, each ``tf.Example`` encoded by hand (a protobuf
        field is its varint key, varint length and payload; ``image`` and ``mask`` are lists of one-byte
        strings, as published):

        >>> import struct, tempfile
        >>> def varint(n):
        ...     out = b""
        ...     while n >= 0x80:
        ...         out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
        ...     return out + bytes([n])
        >>> def field(number, payload):  # a length-delimited protobuf field
        ...     return varint(number << 3 | 2) + varint(len(payload)) + payload
        >>> def feature(name, array):  # a Features map entry holding a BytesList, one byte per element
        ...     values = b"".join(field(1, bytes([v])) for v in array.ravel().tolist())
        ...     return field(1, field(1, name.encode()) + field(2, field(1, values)))
        >>> def frame(data):
        ...     length = struct.pack("<Q", len(data))
        ...     crcs = struct.pack("<I", masked_crc32c(length)), struct.pack("<I", masked_crc32c(data))
        ...     return length + crcs[0] + data + crcs[1]
        >>> image = np.zeros((35, 35, 3), np.uint8)
        >>> masks = np.zeros((4, 35, 35, 1), np.uint8)  # [K, H, W, 1], entity 0 the background
        >>> masks[0], masks[1, 10:20, 5:15] = 255, 255
        >>> masks[0, 10:20, 5:15] = 0
        >>> record = field(1, feature("image", image) + feature("mask", masks))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "tetrominoes_train.tfrecords"
        ...     _ = path.write_bytes(gzip.compress(frame(record) * 3))
        ...     data = MultiObjectTFRecord(path, resolution=16)
        ...     items = list(data)
        >>> data.spec.name, data.spec.entities, len(items)
        ('tetrominoes', (4,), 3)
        >>> items[0]["image"].shape, items[0]["mask"].unique().tolist()
        (torch.Size([3, 16, 16]), [0, 1])
    """

    def __init__(self, path: str | os.PathLike[str], name: Optional[str] = None, resolution: Optional[int] = None,
                 max_objects: Optional[int] = None, check_crc: bool = True) -> None:
        if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                       or resolution < 1):
            raise ValueError(f"resolution must be a positive int or None; got {resolution!r}")
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"{str(self.path)!r} is a directory; tfrecord:PATH needs the .tfrecords file")
        if not self.path.is_file():
            raise FileNotFoundError(f"TFRecord file {str(self.path)!r} does not exist")
        self.check_crc = check_crc
        self.resolution = resolution
        features = _peek(self.path, check_crc)
        found = _recognise(features, self.path)
        if name is None:
            key = found
        else:
            key = _canonical(name)
            if max_objects is None:
                max_objects = _DEFAULT_MAX_OBJECTS.get(name.strip().lower())
            if key != found:
                raise DataError(f"{self.path}: named {name!r} but its first record looks like {found} (image of "
                                f"{len(features['image'][1][1])} bytes); pass tfrecord:{found}:PATH or the right file")
        spec = MULTI_OBJECT_DATASETS[key]
        pixels = spec.height * spec.width
        image_bytes, mask_bytes = len(features["image"][1][1]), len(features["mask"][1][1])
        channels = image_bytes // pixels
        entities, rest = divmod(mask_bytes, pixels)
        if rest or entities not in spec.entities:
            raise DataError(f"{self.path}: record 0's 'mask' holds {mask_bytes} bytes; {key} masks are "
                            f"K x {spec.height} x {spec.width} bytes with K in {spec.entities}")
        self.spec = dataclasses.replace(spec, channels=(channels,), entities=(entities,))
        self.max_objects = max_objects

    def records(self) -> Iterator[bytes]:
        """The raw records, in file order.

        Returns:
            An iterator over the records' bytes (:func:`read_records` of ``path``), read lazily.
        """
        return read_records(self.path, self.check_crc)

    def accepts(self, record: bytes, index: int) -> bool:
        """Whether ``decode`` keeps this record (cheap unless ``max_objects`` filters).

        Args:
            record: A raw record of :meth:`records`.
            index: Its position in the file, for error messages.

        Returns:
            False when ``decode`` would return ``None``; always True without ``max_objects``.
        """
        return self.max_objects is None or self.decode(record, index) is not None

    def decode(self, record: bytes, index: int) -> Optional[dict[str, torch.Tensor]]:
        """One record as an item, or ``None`` when ``max_objects`` filters it out.

        Args:
            record: A raw record of :meth:`records`.
            index: Its position in the file, for error messages.

        Returns:
            ``{"image": float32 [3, R, R] in [0, 1], "mask": int64 [R, R]}`` (the stored, cropped size when
            ``resolution`` is None), or ``None`` when the scene has more than ``max_objects`` non-empty
            foreground masks.

        Raises:
            DataError: naming the file, the record number and the feature that is wrong.
        """
        spec = self.spec
        where = f"{self.path}: record {index}"
        try:
            features = parse_example(record, {"image", "mask"})
        except ValueError as exc:
            raise DataError(f"{where} is not a tf.Example ({exc})") from exc
        h, w, c, k = spec.height, spec.width, spec.channels[0], spec.entities[0]
        arrays = {}
        for field, size in (("image", h * w * c), ("mask", k * h * w)):
            kind, value = features.get(field, (None, None))
            if kind != "bytes":
                raise DataError(f"{where} has no bytes feature {field!r}")
            if len(value[1]) != size:
                raise DataError(f"{where}: feature {field!r} holds {len(value[1])} bytes; {spec.name} needs {size}")
            arrays[field] = np.frombuffer(value[1], np.uint8)
        if spec.pixel_major:
            masks = arrays["mask"].reshape(h, w, k).transpose(2, 0, 1)
        else:
            masks = arrays["mask"].reshape(k, h, w)
        if self.max_objects is not None and int(masks[1:].any(axis=(1, 2)).sum()) > self.max_objects:
            return None
        ids = masks.argmax(axis=0)  # entity 0 (the background) where no mask covers a pixel
        image = arrays["image"].reshape(h, w, c)
        if spec.crop is not None:
            top, bottom, left, right = spec.crop
            image, ids = image[top:bottom, left:right], ids[top:bottom, left:right]
        tensor = torch.from_numpy(np.array(image.transpose(2, 0, 1))).to(torch.float32).div_(255.0)
        if c == 1:
            tensor = tensor.expand(3, -1, -1)
        ids_t = torch.from_numpy(np.ascontiguousarray(ids).astype(np.int64))
        if self.resolution is not None:
            tensor, ids_t = resize_image(tensor, self.resolution), resize_ids(ids_t, self.resolution)
        return {"image": tensor.contiguous(), "mask": ids_t}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for index, record in enumerate(self.records()):
            item = self.decode(record, index)
            if item is not None:
                yield item

    def __repr__(self) -> str:
        return (f"MultiObjectTFRecord(path={str(self.path)!r}, name={self.spec.name!r}, "
                f"entities={self.spec.entities[0]}, resolution={self.resolution}, max_objects={self.max_objects})")
