"""The on-disk building blocks of a chunk index: string tables and per-row JSON, memory-mappable.

An index is a folder of flat files (NumPy arrays and UTF-8 blobs with offsets), so every process
can map it read-only and share one copy in the page cache; nothing here knows about BM25.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np


def open_bytes(path: Path, use_mmap: bool) -> bytes | mmap.mmap:
    if not use_mmap or path.stat().st_size == 0:  # an empty file cannot be mapped
        return path.read_bytes()
    with path.open("rb") as handle:
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def open_array(path: Path, use_mmap: bool) -> np.ndarray:
    return np.load(path, mmap_mode="r" if use_mmap else None, allow_pickle=False)


class StringTable(Sequence[str]):
    """Variable-length UTF-8 strings in one blob, addressed by ``offsets`` (n + 1 of them).

    With ``order`` (row numbers sorted by string) it also answers :meth:`find` by binary
    search, touching about log2(n) strings instead of holding a dict of all of them.
    """

    def __init__(self, blob: bytes | mmap.mmap, offsets: np.ndarray, order: np.ndarray | None = None) -> None:
        self._blob = blob
        self._offsets = offsets
        self._order = order

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, row: int) -> str: ...

    @overload
    def __getitem__(self, row: slice) -> list[str]: ...

    def __getitem__(self, row: int | slice) -> str | list[str]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(row)
        return self._blob[int(self._offsets[row]) : int(self._offsets[row + 1])].decode("utf-8")

    def find(self, value: str) -> int:
        """Row holding ``value``, or -1."""
        order = self._order
        if order is None:
            raise TypeError("this table has no sort order")
        lo, hi = 0, len(order)
        while lo < hi:
            mid = (lo + hi) // 2
            if self[int(order[mid])] < value:
                lo = mid + 1
            else:
                hi = mid
        return int(order[lo]) if lo < len(order) and self[int(order[lo])] == value else -1


class Metadatas(Sequence[dict[str, Any]]):
    """Chunk metadata decoded one row at a time from a :class:`StringTable` of JSON objects."""

    def __init__(self, table: StringTable) -> None:
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    @overload
    def __getitem__(self, row: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, row: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, row: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(row, slice):
            return [json.loads(text) for text in self._table[row]]
        return json.loads(self._table[row])


def write_strings(directory: Path, name: str, values: Sequence[str], sort: bool) -> None:
    blob = bytearray()
    offsets = array("q", [0])
    for value in values:
        blob += value.encode("utf-8")
        offsets.append(len(blob))
    (directory / f"{name}.bin").write_bytes(blob)
    np.save(directory / f"{name}.offsets.npy", np.array(offsets, dtype=np.int64))
    if sort:
        order = np.array(sorted(range(len(values)), key=values.__getitem__), dtype=np.int64)
        np.save(directory / f"{name}.order.npy", order)


def id_hash(chunk_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(chunk_id.encode("utf-8"), digest_size=8).digest(), "little")


def id_hashes(chunk_ids: Iterable[str]) -> np.ndarray:
    """64-bit hashes of chunk ids: a sorted array of them finds many rows in one ``searchsorted``."""
    return np.fromiter((id_hash(i) for i in chunk_ids), dtype=np.uint64)


def shard_of(doc_id: str, shards: int) -> int:
    """Stable across processes and machines (unlike ``hash``), so every builder agrees."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big") % shards

