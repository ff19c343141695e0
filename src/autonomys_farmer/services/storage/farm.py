"""A farm on disk, in the official single_disk_farm layout (node-and-cluster.md §6.1).

`plot.bin` holds sector i at i × sector_size; `metadata.bin` holds a header {u8 version, u16 count} and
sector i's checksummed metadata at 1 MiB + i × 131,116. A sector is written (data, fsync) before its
metadata (fsync): after a crash a sector either has valid metadata over complete data or is replotted.
The plot file is only ever read with positioned reads of exactly what is used (plot_io), never mapped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3
import numpy as np
from ulid import ULID

from autonomys_farmer.protocol import reward_signing
from autonomys_farmer.protocol.constants import CHECKSUM_SIZE, SECTOR_METADATA_CHECKSUMMED_SIZE
from autonomys_farmer.protocol.sector import SectorLayout, SectorMetadata, sector_size
from autonomys_farmer.protocol.types import SectorIndex
from autonomys_farmer.services.files import write_atomically
from autonomys_farmer.services.storage import plot_io
from autonomys_farmer.services.storage.plotted import PlottedSectors

log = logging.getLogger(__name__)

METADATA_HEADER = struct.Struct("<BH")
METADATA_RESERVED = 1024 * 1024
FARM_INFO = "single_disk_farm.json"
IDENTITY = "identity.bin"
MAX_SECTORS = 65534
# What the official farmer reserves besides sectors (node-and-cluster.md §6.2): metadata and farm-info
# reserves and the identity; allocatedSpace is written so that its formula gives our sector count.
FIXED_SPACE = 2 * 1024 * 1024 + 33


LOAD_BATCH = 256  # sectors of metadata read at once when a farm opens (32 MiB)
MAX_FARMING_THREADS = 32


class FarmError(RuntimeError):
    pass


def farming_threads() -> int:
    """Threads per farm for audits and proving reads, as the official farmer sizes its farming pool:
    the logical CPUs this process may use (those of the first NUMA node among them), at most 32.
    Each keeps one read in flight, so an NVMe's queue is used."""
    cpus = os.sched_getaffinity(0)
    nodes = sorted(Path("/sys/devices/system/node").glob("node[0-9]*"))
    for node in nodes if len(nodes) > 1 else ():
        try:
            first = cpus & _cpu_list((node / "cpulist").read_text())
        except OSError:
            continue
        if first:
            cpus = first
            break
    return max(1, min(MAX_FARMING_THREADS, len(cpus)))


def _cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if part:
            low, _, high = part.partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    return cpus


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
    """One farm directory: its identity and info (created on first use), the exclusive lock, the plot
    and metadata files, the plotted sectors in memory and the farming thread pool. `read_only` opens a
    farm beside the farmer that holds it (benchmarks): no lock, nothing created or written."""

    def __init__(
        self, directory: Path, sectors: int, pieces_in_sector: int, genesis_hash: bytes, read_only: bool = False
    ) -> None:
        if not 1 <= sectors <= MAX_SECTORS:
            raise FarmError(f"{directory}: sectors={sectors} is out of range 1..{MAX_SECTORS}")
        self.directory = directory
        self.sectors = sectors
        self.read_only = read_only
        identity = directory / IDENTITY
        info_path = directory / FARM_INFO
        if not read_only:
            directory.mkdir(parents=True, exist_ok=True)
            if not identity.exists():
                write_atomically(identity, reward_signing.identity_file_bytes(os.urandom(32)))
        try:
            entropy = reward_signing.entropy_from_identity_file(identity.read_bytes())
        except OSError as e:
            raise FarmError(f"{directory}: cannot read {IDENTITY} ({e.strerror or e})") from None
        self.public_key, self.secret_key = reward_signing.keypair_from_entropy(entropy)
        if not read_only and not info_path.exists():  # created whole (rename), then locked: never rewritten
            fresh = FarmInfo(
                str(ULID()), genesis_hash, self.public_key, pieces_in_sector, allocated_space(sectors, pieces_in_sector)
            )
            write_atomically(info_path, json.dumps(fresh.to_json(), indent=2).encode())
        self._fds: list[int] = [] if read_only else [_lock(info_path)]
        try:
            self.info = self._check_info(pieces_in_sector, genesis_hash)
            self.layout = SectorLayout(self.info.pieces_in_sector)
            self.sector_size = self.layout.size
            self._plot_fd = self._open("plot.bin", _round_up(sectors * self.sector_size))
            self._meta_fd = self._open(
                "metadata.bin", _round_up(METADATA_RESERVED + sectors * SECTOR_METADATA_CHECKSUMMED_SIZE)
            )
            # Audits read ~16 KiB of a sector: without this, each would pull in the device's read-ahead window.
            os.posix_fadvise(self._plot_fd, 0, 0, os.POSIX_FADV_RANDOM)
            self.threads = farming_threads()
            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix=f"farm-{self.info.id[:8]}")
            self.sectors_in_memory = PlottedSectors(sectors, self.info.pieces_in_sector, self.public_key)
            self._load_metadata()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open_existing(cls, directory: Path) -> Farm:
        """A farm as its single_disk_farm.json describes it, read-only (beside a running farmer)."""
        try:
            info = FarmInfo.from_json(json.loads((directory / FARM_INFO).read_text()))
        except OSError as e:
            raise FarmError(f"{directory}: not a farm ({FARM_INFO}: {e.strerror or e})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise FarmError(f"{directory / FARM_INFO}: not a single_disk_farm.json ({e})") from None
        sectors = official_target_sectors(info.allocated_space, info.pieces_in_sector)
        return cls(directory, sectors, info.pieces_in_sector, info.genesis_hash, read_only=True)

    def _open(self, name: str, size: int) -> int:
        path = self.directory / name
        try:
            fd = os.open(path, os.O_RDONLY if self.read_only else os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise FarmError(f"{path}: {e.strerror or e}") from None
        self._fds.append(fd)
        if os.fstat(fd).st_size < size:
            if self.read_only:
                raise FarmError(f"{path} is shorter than {self.sectors} sectors need")
            os.ftruncate(fd, size)
        return fd

    def _load_metadata(self) -> None:
        """Every sector's metadata into memory and checked, a batch of sectors per farming thread. The
        rows the header counts as plotted are read in place; past it, only rows that hold something are
        kept, so sectors never plotted cost no memory."""
        (_version, count) = METADATA_HEADER.unpack(os.pread(self._meta_fd, METADATA_HEADER.size, 0))
        batches = range(0, self.sectors, LOAD_BATCH)
        for reasons in self.pool.map(lambda start: self._load_batch(start, count), batches):
            for index, reason in reasons:
                log.warning("%s: sector %d metadata unusable (%s); it will be replotted", self.directory, index, reason)

    def _load_batch(self, start: int, count: int) -> list[tuple[int, str]]:
        plotted = self.sectors_in_memory
        stop = min(start + LOAD_BATCH, self.sectors)
        offset = METADATA_RESERVED + start * SECTOR_METADATA_CHECKSUMMED_SIZE
        rows = plotted.raw[start:stop]
        if stop > count:
            rows = np.empty((stop - start, SECTOR_METADATA_CHECKSUMMED_SIZE), np.uint8)
        if os.preadv(self._meta_fd, [rows.data.cast("B")], offset) != rows.nbytes:
            raise FarmError(f"{self.metadata_path} is truncated")
        if stop > count:
            written = np.flatnonzero(rows.any(axis=1))
            plotted.raw[start + written] = rows[written]
        return plotted.load(start, stop)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def plot_path(self) -> Path:
        return self.directory / "plot.bin"

    @property
    def metadata_path(self) -> Path:
        return self.directory / "metadata.bin"

    def plotted_count(self) -> int:
        return len(self.sectors_in_memory)

    def plotted_indices(self) -> np.ndarray:
        return self.sectors_in_memory.indices()

    def unplotted_indices(self) -> np.ndarray:
        """Sectors not plotted now (never plotted, unusable, or being written), ascending."""
        return np.flatnonzero(~self.sectors_in_memory.plotted)

    def sector_metadata(self, index: SectorIndex) -> SectorMetadata | None:
        return self.sectors_in_memory.metadata(index)

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
        if hasattr(self, "pool"):
            self.pool.shutdown(wait=False, cancel_futures=True)
        for fd in self._fds:  # the lock's descriptor among them: closing it releases the lock
            os.close(fd)
        self._fds = []

    # --- reading ------------------------------------------------------------------------------------

    def plot_fd(self) -> int:
        return self._plot_fd

    def source(self, index: int) -> FarmSector:
        """Sector `index` as a SectorSource: positioned reads of what is used, on the farming threads."""
        return FarmSector(self, index * self.sector_size)

    def read_sector(self, index: int) -> bytes:
        """A whole sector's bytes (tools and tests: a mainnet sector is a GiB)."""
        return self.source(index).read(0, self.sector_size)

    # --- writing ------------------------------------------------------------------------------------

    def _metadata_offset(self, index: int) -> int:
        return METADATA_RESERVED + index * SECTOR_METADATA_CHECKSUMMED_SIZE

    def receive(self, index: SectorIndex) -> SectorReceiver:
        """Start writing sector `index` in place: it stops counting as plotted (in memory and on disk)
        before its first byte is overwritten."""
        if self.read_only:
            raise FarmError(f"{self.directory} is open read-only")
        self.sectors_in_memory.drop(index)
        os.pwrite(self._meta_fd, bytes(SECTOR_METADATA_CHECKSUMMED_SIZE), self._metadata_offset(index))
        os.fdatasync(self._meta_fd)
        return SectorReceiver(self._plot_fd, index, index * self.sector_size, self.sector_size)

    def commit(self, index: SectorIndex, metadata: SectorMetadata) -> None:
        """The received sector's data made durable, then the metadata that makes it count as plotted."""
        if metadata.sector_index != index:
            raise FarmError(f"metadata is for sector {metadata.sector_index}, not {index}")
        os.fdatasync(self._plot_fd)
        os.pwrite(self._meta_fd, metadata.to_bytes(), self._metadata_offset(index))
        plotted = self.sectors_in_memory
        others = plotted.plotted.copy()
        others[index] = True
        count = int(np.argmin(others)) if not others.all() else self.sectors
        os.pwrite(self._meta_fd, METADATA_HEADER.pack(0, count), 0)
        os.fdatasync(self._meta_fd)
        plotted.put(metadata)

    def write_sector(self, index: SectorIndex, data: bytes, metadata: SectorMetadata) -> None:
        """A whole sector from memory (tools and tests), the way a received one is written."""
        if len(data) != self.sector_size:
            raise FarmError(f"sector {index} is {len(data)} bytes, farm expects {self.sector_size}")
        receiver = self.receive(index)
        receiver.write(data)
        if receiver.finish() != data[-CHECKSUM_SIZE:]:
            raise FarmError(f"sector {index} fails its own checksum")
        self.commit(index, metadata)


@dataclass(frozen=True)
class FarmSector:
    """One sector of a farm as a SectorSource (protocol.reading): positioned reads, a proof's 32,768
    chunk reads spread over the farm's farming threads."""

    farm: Farm
    base: int

    def read(self, start: int, length: int) -> bytes:
        data = os.pread(self.farm.plot_fd(), length, self.base + start)
        if len(data) != length:
            raise FarmError(f"{self.farm.plot_path}: short read at {self.base + start}")
        return data

    def read_chunks(self, start: int, chunk_indices: np.ndarray) -> np.ndarray:
        indices = np.ascontiguousarray(chunk_indices, np.int64)
        out = np.empty((len(indices), 32), np.uint8)
        parts = np.array_split(np.arange(len(indices)), max(1, min(len(indices) // 1024, 4 * self.farm.threads)))

        def read(part: np.ndarray) -> None:
            if len(part):
                lo, hi = int(part[0]), int(part[-1]) + 1
                failed = plot_io.read_chunks_at(self.farm.plot_fd(), self.base + start, indices[lo:hi], out[lo:hi])
                if failed >= 0:
                    os.pread(self.farm.plot_fd(), 32, self.base + start + 32 * int(indices[lo + failed]))
                    raise FarmError(f"{self.farm.plot_path}: short read of chunk {int(indices[lo + failed])}")

        list(self.farm.pool.map(read, parts))
        return out


class SectorReceiver:
    """A sector arriving in parts (from a plot server: its bytes, then its checksummed metadata),
    written straight into its place in plot.bin and hashed once, as it arrives: no copy of a GiB is
    held, and nothing reads it back to check its checksum."""

    def __init__(self, fd: int, index: int, position: int, sector_size: int) -> None:
        self.fd, self.index, self.position, self.sector_size = fd, index, position, sector_size
        self.received = 0
        self.hasher = blake3.blake3()
        self.metadata = bytearray()

    def write(self, part: bytes | memoryview) -> None:
        view = memoryview(part)
        data = view[: max(0, self.sector_size - self.received)]
        if len(data):
            hashed = data[: max(0, self.sector_size - CHECKSUM_SIZE - self.received)]
            self.hasher.update(hashed)
            os.pwrite(self.fd, data, self.position + self.received)
        self.metadata += view[len(data) :]
        if len(self.metadata) > SECTOR_METADATA_CHECKSUMMED_SIZE:
            raise FarmError(f"sector {self.index}: more bytes than a sector and its metadata")
        self.received += len(view)

    def finish(self) -> bytes:
        """The checksum of the sector's bytes (all but their last 32), once they all arrived."""
        if self.received < self.sector_size:
            raise FarmError(f"sector {self.index}: {self.received} bytes received, expected {self.sector_size}")
        return self.hasher.digest()
