"""Deterministic train/val/test streams over data that can only be read in order (a GZIP TFRecord file).

A streamed file cannot be indexed, so its split is decided record by record: in every block of 20
consecutive records a permutation seeded by ``(seed, block)`` picks one for ``val`` and one for
``test`` (5% each, 90% ``train``), which needs no record count up front. The ``train`` split is
shuffled with a seeded buffer (as ``tf.data``'s ``shuffle``: fill ``buffer`` items, then emit a random
one and put the next in its place), reseeded every epoch; ``val`` and ``test`` keep file order and are
cached in memory once read (evaluation reads their first batches again and again). Item ``p`` of the
stream is therefore a function of (file, seed, ``p``) alone, so a resumed run sees the same data. Going
back, or starting far ahead (a resumed run), first counts the split's items in one pass that only
decompresses, then replays the shuffle from the start of the epoch that holds ``p``: at most about two
passes over the file, however many epochs lie before ``p``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional, Protocol

import numpy as np
import torch

from deqslots.data.errors import DataError

__all__ = ["BLOCK", "RecordSource", "SplitStream", "record_split"]

#: Records per split block: one goes to val, one to test, the rest to train.
BLOCK = 20
_SPLIT_CODES = {"val": 0, "test": 1}


class RecordSource(Protocol):
    """What :class:`SplitStream` reads: raw records in order, decoded on demand.

    A structural type: any object with these three methods is one (e.g.
    :class:`~deqslots.data.MultiObjectTFRecord`); nothing needs to subclass it.

    Examples:
        An in-memory source of 40 records, whose item ``i`` is an image filled with ``i``:

        >>> class Numbers:
        ...     def records(self):
        ...         return (bytes([i]) for i in range(40))
        ...     def accepts(self, record, index):
        ...         return True
        ...     def decode(self, record, index):
        ...         return {"image": torch.full((3, 2, 2), float(record[0]))}
        >>> stream = SplitStream(Numbers(), "test", seed=0)
        >>> [int(item["image"][0, 0, 0]) for item in stream.items([0, 1, 2])]  # records 6 and 33, again 6
        [6, 33, 6]
    """

    def records(self) -> Iterator[bytes]:
        """A fresh pass over the raw records, in their stored order (called once per pass).

        Returns:
            An iterator over the records' bytes.
        """
        ...

    def accepts(self, record: bytes, index: int) -> bool:
        """Whether :meth:`decode` keeps this record, as cheaply as possible (used to count a split's items).

        Args:
            record: A raw record of :meth:`records`.
            index: Its position in the pass (0-based), the same position :meth:`decode` gets.

        Returns:
            True exactly when ``decode(record, index)`` would not return ``None``.
        """
        ...

    def decode(self, record: bytes, index: int) -> Optional[dict[str, torch.Tensor]]:
        """One record as an item.

        Args:
            record: A raw record of :meth:`records`.
            index: Its position in the pass (0-based), for error messages.

        Returns:
            The item (e.g. ``{"image": float32 [3, R, R], "mask": int64 [R, R]}``), or ``None`` to drop the
            record (e.g. a scene a filter leaves out).
        """
        ...


def record_split(index: int, seed: int, _cache: Optional[dict] = None) -> str:
    """The split (``"train"``, ``"val"`` or ``"test"``) of record ``index`` under ``seed``.

    Each block of :data:`BLOCK` consecutive records sends one record to ``val``, one to ``test`` and the rest
    to ``train``, by a permutation seeded by ``(seed, block)``.

    Args:
        index: The record's position in the file (0-based).
        seed: The split seed.
        _cache: A dict that keeps the last block's permutation between calls (a pass reads the records in
            order, so one block is enough); ``None`` draws the permutation on every call.

    Returns:
        ``"train"``, ``"val"`` or ``"test"``.

    Examples:
        >>> sorted(record_split(i, 0) for i in range(20)).count("train")
        18
        >>> [i for i in range(40) if record_split(i, 0) == "val"]
        [9, 23]
    """
    block, offset = divmod(index, BLOCK)
    if _cache is not None and block in _cache:
        perm = _cache[block]
    else:
        perm = np.random.default_rng([seed, block, 0x5EED]).permutation(BLOCK)
        if _cache is not None:
            _cache.clear()
            _cache[block] = perm
    code = int(perm[offset])
    return "val" if code == 0 else "test" if code == 1 else "train"


class SplitStream:
    """The items of one split of a :class:`RecordSource`, as an endless deterministic sequence.

    Args:
        source: Gives ``records()`` and ``decode(record, index)`` (``None`` drops an item, e.g. a
            filtered scene).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: Split and shuffle seed.
        shuffle_buffer: Items held for shuffling the train split (1 = file order).
        cache_items: Most items of a val/test split kept in memory.
        describe: Names the data in errors.

    Examples:
        A source of 40 in-memory records (item ``i`` an image filled with ``i``); ``val`` is one record of
        every :data:`BLOCK`, in file order, and repeats endlessly; ``train`` is shuffled through the buffer:

        >>> class Numbers:
        ...     def records(self):
        ...         return (bytes([i]) for i in range(40))
        ...     def accepts(self, record, index):
        ...         return True
        ...     def decode(self, record, index):
        ...         return {"image": torch.full((3, 2, 2), float(record[0]))}
        >>> def values(items):
        ...     return [int(item["image"][0, 0, 0]) for item in items]
        >>> values(SplitStream(Numbers(), "val", seed=0).items([0, 1, 2, 3]))
        [9, 23, 9, 23]
        >>> values(SplitStream(Numbers(), "train", seed=0, shuffle_buffer=4).items([0, 1, 2, 3, 4]))
        [0, 3, 1, 2, 8]
    """

    def __init__(self, source: RecordSource, split: str, seed: int, shuffle_buffer: int = 256,
                 cache_items: int = 4096, describe: str = "the data") -> None:
        self.source, self.split, self.seed = source, split, seed
        self.shuffle_buffer = shuffle_buffer if split == "train" else 1
        self.cache_items = cache_items if split != "train" else 0
        self.describe = describe
        self._cache: list[dict[str, torch.Tensor]] = []
        self._cache_complete = False
        self._iter: Optional[Iterator[dict[str, torch.Tensor]]] = None
        self._next = 0
        self._epoch_size: Optional[int] = None  # items per epoch, known after one pass

    def _split_items(self) -> Iterator[dict[str, torch.Tensor]]:
        """One pass over the file: this split's items, in file order."""
        blocks: dict = {}
        for index, record in enumerate(self.source.records()):
            if record_split(index, self.seed, blocks) != self.split:
                continue
            item = self.source.decode(record, index)
            if item is not None:
                yield item

    def _epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        if self.shuffle_buffer <= 1:
            yield from self._split_items()
            return
        rng = np.random.default_rng([self.seed, epoch, 0xB0FF])
        buffer: list = []
        for item in self._split_items():
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
                continue
            j = int(rng.integers(len(buffer)))
            yield buffer[j]
            buffer[j] = item
        for j in rng.permutation(len(buffer)):
            yield buffer[int(j)]

    def _count(self) -> int:
        """Items per epoch, by one pass that decompresses and checks records but decodes none."""
        blocks: dict = {}
        return sum(1 for index, record in enumerate(self.source.records())
                   if record_split(index, self.seed, blocks) == self.split and self.source.accepts(record, index))

    def _endless(self, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            count = 0
            for item in self._epoch(epoch):
                count += 1
                yield item
            self._epoch_size = count
            if count == 0:
                raise DataError(
                    f"{self.describe} has no {self.split} items: streamed files are split record by record, one "
                    f"in every {BLOCK} consecutive records to val and one to test, so the file needs at least "
                    f"{BLOCK} records (after any filtering)")
            epoch += 1

    def item(self, position: int) -> dict[str, torch.Tensor]:
        """Item ``position`` of the endless sequence.

        Reading forward continues the current pass; going back, or jumping more than an epoch ahead, counts
        the split's items once and replays the epoch that holds ``position`` from its start.

        Args:
            position: The 0-based position; epoch ``e`` holds positions ``e * n .. (e + 1) * n - 1`` for a
                split of ``n`` items.

        Returns:
            The decoded item, the same for the same ``(source, split, seed, position)``.

        Raises:
            DataError: The split has no items (fewer than :data:`BLOCK` records, or all filtered out).
        """
        if position < len(self._cache):
            return self._cache[position]
        size = self._epoch_size
        far = bool(size) and position // size > self._next // size + 1  # whole epochs ahead: jump there
        if self._iter is None or position < self._next or far:
            if self._epoch_size is None and position >= 64:
                self._epoch_size = self._count()
            epoch = position // self._epoch_size if self._epoch_size else 0
            self._iter, self._next = self._endless(epoch), epoch * (self._epoch_size or 0)
        while True:
            item = next(self._iter)
            current = self._next
            self._next += 1
            if current == len(self._cache) and len(self._cache) < self.cache_items:
                self._cache.append(item)
            if current == position:
                return item

    def items(self, positions: list[int]) -> list[dict[str, torch.Tensor]]:
        """Items at ascending ``positions`` (a batch), reading forward as needed.

        Args:
            positions: 0-based positions, as for :meth:`item`; ascending avoids replaying the file.

        Returns:
            The items, in the order of ``positions``.

        Raises:
            DataError: The split has no items.
        """
        return [self.item(p) for p in positions]

