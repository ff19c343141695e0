"""Sectors: identity, piece selection, challenges, expiration, contents map, metadata and layout.

protocol.md §2 and §5. Everything here is pure byte/integer logic; the heavy per-record work
(PoS tables, erasure coding) lives in plotting/reading through the compute backends.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field

import numpy as np

from autonomys_farmer.protocol.constants import (
    CHECKSUM_SIZE,
    NUM_PIECES,
    RECORD_METADATA_SIZE,
    RECORD_NUM_CHUNKS,
    RECORD_NUM_S_BUCKETS,
    RECORD_SIZE,
    S_BUCKET_BITFIELD_BYTES,
    SECTOR_METADATA_CHECKSUMMED_SIZE,
    SECTOR_METADATA_SIZE,
)
from autonomys_farmer.protocol.hashes import blake3_hash, keyed_hash
from autonomys_farmer.protocol.hexjson import json_uint
from autonomys_farmer.protocol.types import (
    HistorySize,
    PieceIndex,
    PieceOffset,
    SBucket,
    SectorIndex,
    SegmentIndex,
    SlotNumber,
)

U64 = 2**64
SectorBytes = bytes | bytearray | memoryview | mmap.mmap


class SectorError(ValueError):
    """Malformed sector data: wrong sizes, checksum mismatch, impossible contents."""


@dataclass(frozen=True)
class FarmerProtocolInfo:
    """What the node tells farmers (FarmerAppInfo.protocolInfo): sizes that drive piece selection."""

    history_size: HistorySize
    max_pieces_in_sector: int
    recent_segments: int
    recent_history_fraction: tuple[int, int]
    min_sector_lifetime: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "history_size", HistorySize(self.history_size))

    def to_json(self) -> dict[str, object]:
        return {
            "historySize": self.history_size,
            "maxPiecesInSector": self.max_pieces_in_sector,
            "recentSegments": self.recent_segments,
            "recentHistoryFraction": list(self.recent_history_fraction),
            "minSectorLifetime": self.min_sector_lifetime,
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> FarmerProtocolInfo:
        fraction = obj["recentHistoryFraction"]
        if not isinstance(fraction, list) or len(fraction) != 2:
            raise SectorError(f"recentHistoryFraction must be a [num, den] pair, got {fraction!r}")
        pair = {"num": fraction[0], "den": fraction[1]}
        return cls(
            history_size=HistorySize(json_uint(obj, "historySize")),
            max_pieces_in_sector=json_uint(obj, "maxPiecesInSector", 16),
            recent_segments=json_uint(obj, "recentSegments"),
            recent_history_fraction=(json_uint(pair, "num"), json_uint(pair, "den")),
            min_sector_lifetime=json_uint(obj, "minSectorLifetime"),
        )


def derive_sector_id(public_key: bytes, sector_index: SectorIndex | int, history_size: HistorySize | int) -> bytes:
    """SectorId = KH(H(public_key), u16le(sector_index) ‖ u64le(history_size))."""
    if len(public_key) != 32:
        raise SectorError(f"public key must be 32 bytes, got {len(public_key)}")
    if not 0 <= sector_index < 2**16:
        raise SectorError(f"sector index {sector_index} does not fit u16")
    if not 1 <= history_size < U64:
        raise SectorError(f"history size {history_size} must be a non-zero u64")
    return keyed_hash(blake3_hash(public_key), struct.pack("<HQ", sector_index, history_size))


def derive_piece_index(
    sector_id: bytes,
    piece_offset: PieceOffset | int,
    history_size: HistorySize | int,
    max_pieces_in_sector: int,
    recent_segments: int,
    recent_history_fraction: tuple[int, int],
) -> PieceIndex:
    """Which piece of history a sector stores at piece_offset (recent segments favoured for odd
    offsets below the interleave bound once history exceeds min_history_pieces)."""
    f0, f1 = recent_history_fraction
    recent_pieces = recent_segments * NUM_PIECES
    min_history_pieces = recent_pieces * (f1 * NUM_PIECES) // (f0 * NUM_PIECES)
    key = struct.pack("<H", piece_offset) + bytes(30)
    h = int.from_bytes(keyed_hash(key, sector_id), "little")
    history_pieces = history_size * NUM_PIECES
    num_interleaved = max(1, (max_pieces_in_sector * (f0 * NUM_PIECES) // (f1 * NUM_PIECES)) * 2)
    if history_pieces > min_history_pieces and piece_offset < num_interleaved and piece_offset % 2 == 1:
        return PieceIndex(h % recent_pieces + (history_pieces - recent_pieces))
    return PieceIndex(h % history_pieces)


def derive_sector_piece_indices(sector_id: bytes, pieces_in_sector: int, info: FarmerProtocolInfo) -> list[PieceIndex]:
    """Piece index for every offset of a sector; always derived with the protocol's max pieces."""
    return [
        derive_piece_index(
            sector_id,
            offset,
            info.history_size,
            info.max_pieces_in_sector,
            info.recent_segments,
            info.recent_history_fraction,
        )
        for offset in range(pieces_in_sector)
    ]


def derive_evaluation_seed(sector_id: bytes, piece_offset: PieceOffset | int) -> bytes:
    """PoS seed of the record at piece_offset: H(sector_id ‖ u16le(offset))."""
    return blake3_hash(sector_id, struct.pack("<H", piece_offset))


def derive_global_randomness(pot_output: bytes) -> bytes:
    return blake3_hash(pot_output)


def derive_global_challenge(global_randomness: bytes, slot: SlotNumber | int) -> bytes:
    return blake3_hash(global_randomness, struct.pack("<Q", slot))


def derive_sector_slot_challenge(sector_id: bytes, global_challenge: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(sector_id, global_challenge, strict=True))


def derive_s_bucket_audit_index(sector_slot_challenge: bytes) -> SBucket:
    return SBucket(int.from_bytes(sector_slot_challenge[:2], "little"))


def expiration_check_segment_index(history_size: HistorySize | int, min_sector_lifetime: int) -> SegmentIndex:
    """The segment whose commitment decides when a sector plotted at history_size expires."""
    return HistorySize(history_size).sector_expiration_check(min_sector_lifetime).in_segments_index()


def derive_expiration_history_size(
    sector_id: bytes, history_size: HistorySize | int, segment_commitment: bytes, min_sector_lifetime: int
) -> HistorySize | None:
    """History size at which the sector expires, uniformly in [h + msl, 4h + msl); None on overflow."""
    check = history_size + min_sector_lifetime
    last = min_sector_lifetime + history_size * 4
    if check >= U64 or last >= U64 or last < check:
        return None
    x = int.from_bytes(blake3_hash(sector_id, segment_commitment), "little")
    return HistorySize(check + x % (last - check))


def sector_size(pieces_in_sector: int) -> int:
    """Bytes of a plotted sector: contents map, chunks, record metadata and checksum."""
    return (
        contents_map_size(pieces_in_sector)
        + pieces_in_sector * RECORD_SIZE
        + pieces_in_sector * RECORD_METADATA_SIZE
        + CHECKSUM_SIZE
    )


def contents_map_size(pieces_in_sector: int) -> int:
    return S_BUCKET_BITFIELD_BYTES * pieces_in_sector + CHECKSUM_SIZE


# --- SectorContentsMap ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SectorContentsMap:
    """Per record, which s-buckets hold an encoded chunk (bit set; Lsb0 bit order on disk)."""

    encoded: np.ndarray  # bool[pieces_in_sector, 65536]

    @property
    def pieces_in_sector(self) -> int:
        return int(self.encoded.shape[0])

    def num_encoded(self) -> np.ndarray:
        return np.asarray(self.encoded.sum(axis=1))

    def record_has_row(self, piece_offset: int) -> np.ndarray:
        """bool[65536]: s-buckets record o has (encoded, or among its first unencoded fill)."""
        encoded = self.encoded[piece_offset]
        clear = ~encoded
        clear_before = np.cumsum(clear) - clear
        return np.asarray(encoded | (clear & (clear_before < RECORD_NUM_CHUNKS - int(encoded.sum()))))

    def s_bucket_has(self, s_bucket: int) -> np.ndarray:
        """bool[P]: which records have a chunk in s-bucket s (the audit's view of one s-bucket)."""
        encoded = self.encoded[:, s_bucket]
        clear_before = s_bucket - self.encoded[:, :s_bucket].sum(axis=1)
        return np.asarray(encoded | (~encoded & (clear_before < RECORD_NUM_CHUNKS - self.num_encoded())))

    def to_bytes(self) -> bytes:
        bitfields = np.packbits(self.encoded, axis=1, bitorder="little").tobytes()
        return bitfields + blake3_hash(bitfields)

    @classmethod
    def from_bytes(cls, data: bytes, pieces_in_sector: int) -> SectorContentsMap:
        expected = contents_map_size(pieces_in_sector)
        if len(data) != expected:
            raise SectorError(f"contents map is {len(data)} bytes, expected {expected}")
        bitfields, checksum = data[:-CHECKSUM_SIZE], data[-CHECKSUM_SIZE:]
        if blake3_hash(bitfields) != checksum:
            raise SectorError("contents map checksum mismatch")
        raw = np.frombuffer(bitfields, np.uint8).reshape(pieces_in_sector, S_BUCKET_BITFIELD_BYTES)
        encoded = np.unpackbits(raw, axis=1, bitorder="little").astype(bool)
        counts = encoded.sum(axis=1)
        if (counts > RECORD_NUM_CHUNKS).any():
            bad = int(np.flatnonzero(counts > RECORD_NUM_CHUNKS)[0])
            raise SectorError(f"record {bad} claims {int(counts[bad])} encoded chunks (> {RECORD_NUM_CHUNKS})")
        return cls(encoded)


# --- Metadata ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordMetadata:
    commitment: bytes
    witness: bytes
    piece_checksum: bytes

    def to_bytes(self) -> bytes:
        return self.commitment + self.witness + self.piece_checksum

    @classmethod
    def from_bytes(cls, data: bytes) -> RecordMetadata:
        if len(data) != RECORD_METADATA_SIZE:
            raise SectorError(f"record metadata is {len(data)} bytes, expected {RECORD_METADATA_SIZE}")
        return cls(data[:48], data[48:96], data[96:128])


@dataclass(frozen=True)
class SectorMetadata:
    """Stored beside the plot (metadata.bin): what auditing needs without reading the sector."""

    sector_index: SectorIndex
    pieces_in_sector: int
    s_bucket_sizes: np.ndarray = field(repr=False)  # uint16[65536]
    history_size: HistorySize

    def __post_init__(self) -> None:
        object.__setattr__(self, "sector_index", SectorIndex(self.sector_index))
        object.__setattr__(self, "history_size", HistorySize(self.history_size))

    def s_bucket_offsets(self) -> np.ndarray:
        """Start of each s-bucket within the chunks region, counted in chunks."""
        sizes = self.s_bucket_sizes.astype(np.int64)
        return np.concatenate([[0], np.cumsum(sizes)[:-1]])

    def to_bytes(self) -> bytes:
        sizes = np.asarray(self.s_bucket_sizes, dtype="<u2").tobytes()
        body = (
            struct.pack("<HH", self.sector_index, self.pieces_in_sector) + sizes + struct.pack("<Q", self.history_size)
        )
        return body + blake3_hash(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> SectorMetadata:
        if len(data) != SECTOR_METADATA_CHECKSUMMED_SIZE:
            raise SectorError(f"sector metadata is {len(data)} bytes, expected {SECTOR_METADATA_CHECKSUMMED_SIZE}")
        body, checksum = data[:SECTOR_METADATA_SIZE], data[SECTOR_METADATA_SIZE:]
        if blake3_hash(body) != checksum:
            raise SectorError("sector metadata checksum mismatch")
        sector_index, pieces_in_sector = struct.unpack_from("<HH", body)
        sizes = np.frombuffer(body, dtype="<u2", count=RECORD_NUM_S_BUCKETS, offset=4).astype(np.uint16)
        (history_size,) = struct.unpack_from("<Q", body, 4 + 2 * RECORD_NUM_S_BUCKETS)
        return cls(sector_index, pieces_in_sector, sizes, history_size)


@dataclass(frozen=True)
class SectorLayout:
    """Byte offsets inside one plotted sector."""

    pieces_in_sector: int

    @property
    def chunks_offset(self) -> int:
        return contents_map_size(self.pieces_in_sector)

    @property
    def metadata_offset(self) -> int:
        return self.chunks_offset + self.pieces_in_sector * RECORD_SIZE

    def record_metadata_offset(self, piece_offset: int) -> int:
        return self.metadata_offset + RECORD_METADATA_SIZE * piece_offset

    @property
    def size(self) -> int:
        return sector_size(self.pieces_in_sector)
