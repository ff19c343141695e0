"""A farm on disk, in the official single_disk_farm layout (node-and-cluster.md §6.1).

`plot.bin` holds sector i at i × sector_size; `metadata.bin` holds a header {u8 version, u16 count} and
sector i's checksummed metadata at 1 MiB + i × 131,116. A sector is written (data, fsync) before its
metadata (fsync): after a crash a sector either has valid metadata over complete data or is replotted.
"""

from __future__ import annotations

import fcntl
import json
import logging
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from ulid import ULID

from autonomys_farmer.protocol import reward_signing
from autonomys_farmer.protocol.constants import SECTOR_METADATA_CHECKSUMMED_SIZE
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.sector import SectorError, SectorMetadata, sector_size
from autonomys_farmer.protocol.types import SectorIndex
from autonomys_farmer.services.files import write_atomically

log = logging.getLogger(__name__)

METADATA_HEADER = struct.Struct("<BH")
METADATA_RESERVED = 1024 * 1024
FARM_INFO = "single_disk_farm.json"
IDENTITY = "identity.bin"
MAX_SECTORS = 65534
# What the official farmer reserves besides sectors (node-and-cluster.md §6.2): metadata and farm-info
# reserves and the identity; allocatedSpace is written so that its formula gives our sector count.
FIXED_SPACE = 2 * 1024 * 1024 + 33


class FarmError(RuntimeError):
    pass


def _lock(path: Path) -> int:
    """Hold an exclusive lock on the farm's single_disk_farm.json for this process's life, as the
    official farmer does (fs4, flock): two farmers on one plot, ours or theirs, would corrupt it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FarmError(f"{path.parent} is in use by another farmer ({path.name} is locked)") from None
    return fd


def _round_up(n: int, to: int = 4096) -> int:
    return (n + to - 1) // to * to


def allocated_space(sectors: int, pieces_in_sector: int) -> int:
    """The allocatedSpace for which the official farmer's target-sectors formula (no farm cache)
    gives exactly `sectors`."""
    sectors_space = sectors * (sector_size(pieces_in_sector) + SECTOR_METADATA_CHECKSUMMED_SIZE)
    return FIXED_SPACE + 4096 + sectors_space + 99  # + 99: the formula rounds down to whole hundreds


def official_target_sectors(allocated: int, pieces_in_sector: int, cache_percentage: int = 0) -> int:
    """node-and-cluster.md §6.2, integer arithmetic left to right."""
    usable = (allocated - FIXED_SPACE) // 100 * (100 - cache_percentage) - 4096
    return usable // (sector_size(pieces_in_sector) + SECTOR_METADATA_CHECKSUMMED_SIZE)


@dataclass(frozen=True)
class FarmInfo:
    id: str
    genesis_hash: bytes
    public_key: bytes
    pieces_in_sector: int
    allocated_space: int

    def to_json(self) -> dict[str, object]:
        return {
            "v0": {
                "id": self.id,
                "genesisHash": self.genesis_hash.hex(),
                "publicKey": self.public_key.hex(),
                "piecesInSector": self.pieces_in_sector,
                "allocatedSpace": self.allocated_space,
            }
        }

    @classmethod
    def from_json(cls, obj: dict[str, dict[str, object]]) -> FarmInfo:
        v0 = obj["v0"]
        return cls(
            str(v0["id"]),
            bytes.fromhex(str(v0["genesisHash"])),
            bytes.fromhex(str(v0["publicKey"])),
            int(v0["piecesInSector"]),  # type: ignore[call-overload]
            int(v0["allocatedSpace"]),  # type: ignore[call-overload]
        )


class Farm:
    def __init__(self, directory: Path, sectors: int, pieces_in_sector: int, genesis_hash: bytes) -> None:
        if not 1 <= sectors <= MAX_SECTORS:
            raise FarmError(f"{directory}: sectors={sectors} is out of range 1..{MAX_SECTORS}")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.sectors = sectors
        identity = directory / IDENTITY
        if not identity.exists():
            write_atomically(identity, reward_signing.identity_file_bytes(os.urandom(32)))
        entropy = reward_signing.entropy_from_identity_file(identity.read_bytes())
        self.public_key, self.secret_key = reward_signing.keypair_from_entropy(entropy)
        info_path = directory / FARM_INFO
        if not info_path.exists():  # created whole (rename), then locked: never rewritten while locked
            fresh = FarmInfo(
                str(ULID()), genesis_hash, self.public_key, pieces_in_sector, allocated_space(sectors, pieces_in_sector)
            )
            write_atomically(info_path, json.dumps(fresh.to_json(), indent=2).encode())
        self._lock_fd = _lock(info_path)
        try:
            self.info = self._check_info(pieces_in_sector, genesis_hash)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.sector_size = sector_size(self.info.pieces_in_sector)
        self.plot_path = directory / "plot.bin"
        self.metadata_path = directory / "metadata.bin"
        self._plot_fd = os.open(self.plot_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._meta_fd = os.open(self.metadata_path, os.O_RDWR | os.O_CREAT, 0o644)
        plot_size = _round_up(sectors * self.sector_size)
        if os.fstat(self._plot_fd).st_size < plot_size:
            os.ftruncate(self._plot_fd, plot_size)
        meta_size = _round_up(METADATA_RESERVED + sectors * SECTOR_METADATA_CHECKSUMMED_SIZE)
        if os.fstat(self._meta_fd).st_size < meta_size:
            os.ftruncate(self._meta_fd, meta_size)
        self._map = mmap.mmap(self._plot_fd, plot_size, prot=mmap.PROT_READ)
        # Audits (a worker thread) read what writes (another worker thread) change: one lock for both.
        self._lock = threading.Lock()
        self._plotted: dict[SectorIndex, SectorMetadata] = {}
        for index in range(sectors):
            metadata = self._read_metadata(index)
            if metadata is not None:
                self._plotted[SectorIndex(index)] = metadata

    def plotted(self) -> dict[SectorIndex, SectorMetadata]:
        """The plotted sectors now (a copy: safe to iterate while sectors are written)."""
        with self._lock:
            return dict(self._plotted)

    def sector_metadata(self, index: SectorIndex) -> SectorMetadata | None:
        with self._lock:
            return self._plotted.get(index)

    @property
    def id(self) -> str:
        return self.info.id

    def _check_info(self, pieces_in_sector: int, genesis_hash: bytes) -> FarmInfo:
        path = self.directory / FARM_INFO
        try:
            info = FarmInfo.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise FarmError(f"{path}: not a single_disk_farm.json ({e})") from None
        if info.genesis_hash != genesis_hash:
            raise FarmError(
                f"{self.directory} was created for genesis {info.genesis_hash.hex()}, node has {genesis_hash.hex()}"
            )
        if info.public_key != self.public_key:
            raise FarmError(f"{self.directory}: identity.bin does not match {FARM_INFO}")
        if info.pieces_in_sector > pieces_in_sector:
            raise FarmError(
                f"{self.directory} has {info.pieces_in_sector} pieces per sector, more than the chain's "
                f"maximum {pieces_in_sector}"
            )
        return info

    def close(self) -> None:
        self._map.close()
        os.close(self._plot_fd)
        os.close(self._meta_fd)
        os.close(self._lock_fd)  # releases the lock

    def _metadata_offset(self, index: int) -> int:
        return METADATA_RESERVED + index * SECTOR_METADATA_CHECKSUMMED_SIZE

    def _read_metadata(self, index: int) -> SectorMetadata | None:
        raw = os.pread(self._meta_fd, SECTOR_METADATA_CHECKSUMMED_SIZE, self._metadata_offset(index))
        if not any(raw):
            return None
        try:
            metadata = SectorMetadata.from_bytes(raw)
        except SectorError as e:
            log.warning("%s: sector %d metadata unreadable (%s); it will be replotted", self.directory, index, e)
            return None
        if metadata.sector_index != index or metadata.pieces_in_sector != self.info.pieces_in_sector:
            log.warning("%s: sector %d metadata describes another sector; it will be replotted", self.directory, index)
            return None
        return metadata

    def sector_bytes(self, index: int) -> memoryview:
        start = index * self.sector_size
        return memoryview(self._map)[start : start + self.sector_size]

    def write_sector(self, index: SectorIndex, data: bytes, metadata: SectorMetadata) -> None:
        """Data first and durable, then the metadata that makes the sector count as plotted."""
        if len(data) != self.sector_size:
            raise FarmError(f"sector {index} is {len(data)} bytes, farm expects {self.sector_size}")
        if metadata.sector_index != index:
            raise FarmError(f"metadata is for sector {metadata.sector_index}, not {index}")
        if blake3_hash(data[:-32]) != data[-32:]:
            raise FarmError(f"sector {index} fails its own checksum")
        with self._lock:
            self._plotted.pop(index, None)
        os.pwrite(self._meta_fd, bytes(SECTOR_METADATA_CHECKSUMMED_SIZE), self._metadata_offset(index))
        os.fdatasync(self._meta_fd)
        os.pwrite(self._plot_fd, data, index * self.sector_size)
        os.fdatasync(self._plot_fd)
        os.pwrite(self._meta_fd, metadata.to_bytes(), self._metadata_offset(index))
        with self._lock:
            count = 0
            while count < self.sectors and (count in self._plotted or count == index):
                count += 1
            os.pwrite(self._meta_fd, METADATA_HEADER.pack(0, count), 0)
            os.fdatasync(self._meta_fd)
            self._plotted[index] = metadata
