"""What a farm holds in memory of its plotted sectors, once, for every slot's audit.

The official farmer keeps every sector's checksummed metadata in memory (131,116 bytes, of which the
65,536 s-bucket sizes are 128 KiB). So does this, in one array per farm that is read straight from
`metadata.bin` (no copy), plus what is derived from it once, when a sector is loaded: its sector id
(so an audit does not hash), its history size, and every 256th s-bucket's chunk offset (so an audit
sums at most 255 sizes instead of 65,536). That is 1,072 bytes per sector beyond the official farmer's.
Pages of sectors not plotted yet are never touched, so they cost no memory.
"""

from __future__ import annotations

import struct
import threading

import numpy as np

from autonomys_farmer.protocol.constants import (
    RECORD_NUM_CHUNKS,
    RECORD_NUM_S_BUCKETS,
    SECTOR_METADATA_CHECKSUMMED_SIZE,
    SECTOR_METADATA_SIZE,
)
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.sector import SectorError, SectorMetadata, derive_sector_id
from autonomys_farmer.protocol.types import HistorySize, SectorIndex
from autonomys_farmer.services.storage.plot_io import S_BUCKET_BLOCKS, index_s_buckets

SIZES_START = 4  # u16 sector index, u16 pieces in sector, then the sizes
SIZES_END = SIZES_START + 2 * RECORD_NUM_S_BUCKETS
HEADER = struct.Struct("<HH")
HISTORY_SIZE = struct.Struct("<Q")


class PlottedSectors:
    """The plotted sectors of one farm (sector i is row i), safe to read while sectors change: a sector
    being written stops counting as plotted first, and its `generation` moves on, so an audit or a
    proof that raced with the write can tell and drop what it read."""

    def __init__(self, sectors: int, pieces_in_sector: int, public_key: bytes) -> None:
        self.pieces_in_sector = pieces_in_sector
        self.public_key = public_key
        self.raw = np.zeros((sectors, SECTOR_METADATA_CHECKSUMMED_SIZE), np.uint8)  # as in metadata.bin
        self.sizes = self.raw[:, SIZES_START:SIZES_END].view("<u2")  # a view: uint16[sectors, 65536]
        self.offsets = np.zeros((sectors, S_BUCKET_BLOCKS), np.uint32)
        self.sector_ids = np.zeros((sectors, 32), np.uint8)
        self.history_sizes = np.zeros(sectors, np.uint64)
        self.plotted = np.zeros(sectors, bool)
        self.generations = np.zeros(sectors, np.int64)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self.plotted.sum())

    def indices(self) -> np.ndarray:
        """int64: the plotted sectors, ascending."""
        return np.flatnonzero(self.plotted)

    def load(self, start: int, stop: int) -> list[tuple[int, str]]:
        """Rows start..stop were just read into `raw`: count those that are plotted sectors of this farm.
        Returns why each other row that is not all zero (never plotted) is unusable: a checksum or a
        size total that does not hold, another sector's metadata."""
        rows = start + np.flatnonzero(self.raw[start:stop].any(axis=1))
        totals = index_s_buckets(self.sizes, rows, self.offsets)
        usable, unusable = [], []
        for index, total in zip(rows, totals, strict=True):
            row = self.raw[index]
            body = row[:SECTOR_METADATA_SIZE].data
            sector_index, pieces = HEADER.unpack_from(body)
            if blake3_hash(body) != bytes(row[SECTOR_METADATA_SIZE:]):
                unusable.append((int(index), "metadata checksum mismatch"))
            elif sector_index != index or pieces != self.pieces_in_sector:
                unusable.append((int(index), f"metadata describes sector {sector_index} of {pieces} pieces"))
            elif total != pieces * RECORD_NUM_CHUNKS:
                unusable.append((int(index), "its s-bucket sizes do not add up to its records' chunks"))
            elif HISTORY_SIZE.unpack_from(body, SIZES_END)[0] == 0:
                unusable.append((int(index), "history size 0"))
            else:
                usable.append(index)
        self._admit(np.array(usable, np.int64))
        return unusable

    def _admit(self, rows: np.ndarray) -> None:
        history_sizes = self.raw[rows, SIZES_END : SIZES_END + 8].copy().view("<u8").ravel()
        self.history_sizes[rows] = history_sizes
        for index, history_size in zip(rows, history_sizes, strict=True):
            sector_id = derive_sector_id(self.public_key, int(index), int(history_size))
            self.sector_ids[index] = np.frombuffer(sector_id, np.uint8)
        with self._lock:
            self.plotted[rows] = True

    def put(self, metadata: SectorMetadata) -> None:
        """A sector newly written (its data durable already)."""
        index = int(metadata.sector_index)
        if metadata.pieces_in_sector != self.pieces_in_sector:
            raise SectorError(f"sector of {metadata.pieces_in_sector} pieces in a farm of {self.pieces_in_sector}")
        self.raw[index] = np.frombuffer(metadata.to_bytes(), np.uint8)
        if self.load(index, index + 1):
            raise SectorError(f"sector {index}: its metadata is not well-formed")

    def drop(self, index: int) -> None:
        """The sector stops counting (it is about to be overwritten)."""
        with self._lock:
            self.plotted[index] = False
            self.generations[index] += 1

    def generation(self, index: int) -> int:
        return int(self.generations[index])

    def metadata(self, index: int) -> SectorMetadata | None:
        """A plotted sector's metadata (its sizes copied: it outlives a replot of the sector)."""
        if not self.plotted[index]:
            return None
        return SectorMetadata(
            SectorIndex(index),
            self.pieces_in_sector,
            self.sizes[index].astype(np.uint16),
            HistorySize(int(self.history_sizes[index])),
        )

    def sector_id(self, index: int) -> bytes:
        return bytes(self.sector_ids[index])
