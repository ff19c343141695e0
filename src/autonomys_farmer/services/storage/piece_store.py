"""Crash-safe on-disk item store in the official piece-cache element format (node-and-cluster.md §5.1).

`piece_cache.bin` is an array of elements `u64 LE key ‖ item ‖ blake3(u64 LE key ‖ item)`. An element is
written in place and fdatasync'ed; a torn write fails its checksum and reads as an empty slot, so a crash
loses at most the item being written and never another. With item = piece, a directory holding this
file is exactly what the official cache reads; split-parity caches store half-piece shards the same way.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from pathlib import Path

from autonomys_farmer.protocol.hashes import blake3_hash

log = logging.getLogger(__name__)

FILE_NAME = "piece_cache.bin"
KEY_SIZE = 8
CHECKSUM_SIZE = 32


class PieceStoreError(RuntimeError):
    pass


class StoreFullError(PieceStoreError):
    pass


class PieceStore:
    def __init__(self, directory: Path, item_size: int, capacity: int | None = None) -> None:
        """`capacity` elements, or None to grow without bound (the full-history cache)."""
        self.directory = directory
        self.item_size = item_size
        self.element_size = KEY_SIZE + item_size + CHECKSUM_SIZE
        self.capacity = capacity
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self.offsets: dict[int, int] = {}  # key -> element offset
        self._free: list[int] = []
        self._end = 0
        self._scan()

    def close(self) -> None:
        os.close(self._fd)

    def rescan(self) -> None:
        """Forget what we believe and re-read the file (operators' re-initialisation)."""
        with self._lock:
            self.offsets.clear()
            self._free.clear()
            self._scan()

    def _scan(self) -> None:
        size = os.fstat(self._fd).st_size
        if size % self.element_size:
            log.warning("%s: %d trailing bytes of a torn element ignored", self.path, size % self.element_size)
        self._end = size // self.element_size
        for offset in range(self._end):
            key = self._read_valid_key(offset)
            if key is None or key in self.offsets:
                self._free.append(offset)
            else:
                self.offsets[key] = offset
        if self.capacity is not None and len(self.offsets) > self.capacity:
            raise PieceStoreError(
                f"{self.path} holds {len(self.offsets)} items, more than its capacity {self.capacity}"
            )
        self._free.sort(reverse=True)  # reuse low offsets first

    def _read_element(self, offset: int) -> bytes:
        return os.pread(self._fd, self.element_size, offset * self.element_size)

    def _read_valid_key(self, offset: int) -> int | None:
        element = self._read_element(offset)
        if len(element) != self.element_size:
            return None
        body, checksum = element[:-CHECKSUM_SIZE], element[-CHECKSUM_SIZE:]
        if blake3_hash(body) != checksum:
            return None
        return struct.unpack_from("<Q", body)[0]

    def __len__(self) -> int:
        return len(self.offsets)

    def __contains__(self, key: int) -> bool:
        return key in self.offsets

    def keys(self) -> list[int]:
        return list(self.offsets)

    def get(self, key: int) -> bytes | None:
        """The item, or None if absent or its element no longer checks out (then it is dropped)."""
        with self._lock:
            offset = self.offsets.get(key)
            if offset is None:
                return None
            element = self._read_element(offset)
        body, checksum = element[:-CHECKSUM_SIZE], element[-CHECKSUM_SIZE:]
        if blake3_hash(body) != checksum or struct.unpack_from("<Q", body)[0] != key:
            log.warning("%s: element %d for key %d is corrupt; dropping it", self.path, offset, key)
            self.delete(key)
            return None
        return body[KEY_SIZE:]

    def put(self, key: int, item: bytes) -> None:
        if len(item) != self.item_size:
            raise PieceStoreError(f"item for key {key} is {len(item)} bytes, expected {self.item_size}")
        with self._lock:
            if key in self.offsets:
                return
            if self._free:
                offset = self._free.pop()
            elif self.capacity is None or self._end < self.capacity:
                offset = self._end
                self._end += 1
            else:
                raise StoreFullError(f"{self.path} is full ({self.capacity} items)")
            body = struct.pack("<Q", key) + item
            os.pwrite(self._fd, body + blake3_hash(body), offset * self.element_size)
            os.fdatasync(self._fd)
            self.offsets[key] = offset

    def delete(self, key: int) -> None:
        with self._lock:
            offset = self.offsets.pop(key, None)
            if offset is None:
                return
            # Zero the key and checksum: the element no longer verifies, the slot reads as empty.
            os.pwrite(self._fd, bytes(KEY_SIZE), offset * self.element_size)
            os.pwrite(self._fd, bytes(CHECKSUM_SIZE), (offset + 1) * self.element_size - CHECKSUM_SIZE)
            os.fdatasync(self._fd)
            self._free.append(offset)
            self._free.sort(reverse=True)

    @property
    def free_slots(self) -> int | None:
        return None if self.capacity is None else self.capacity - len(self.offsets)
