"""Sectors: identity, piece selection, challenges, expiration, contents map, metadata and layout.

protocol.md §2 and §5. Everything here is pure byte/integer logic; the heavy per-record work
(PoS tables, erasure coding) lives in plotting/reading through the compute backends.
"""

from __future__ import annotations

import functools
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

POPCOUNT = np.array([bin(b).count("1") for b in range(256)], np.uint8)
# NTH_CLEAR[b, k]: position of the k-th (1-based) clear bit of byte b, Lsb0 (8 where there is none).
NTH_CLEAR = np.array(
    [[([i for i in range(8) if not b >> i & 1] + [8] * 9)[k - 1] if k else 8 for k in range(9)] for b in range(256)],
    np.int64,
)
FILL_END_BLOCK = 128  # records per step of fill_ends: bounded temporaries for 1000-piece sectors


def fill_ends(bitfields: np.ndarray) -> np.ndarray:
    """Per record (encoded maps uint8[n, 8192], Lsb0) the s-bucket below which it keeps its unencoded
    chunks. A record keeps its encoded s-buckets and its first 32768 − (encoded count) unencoded ones
    (protocol.md §5.2): exactly the unencoded s-buckets below this end, so that
    kept(o, s) = encoded(o, s) or s < fill_end(o)."""
    bitfields = np.asarray(bitfields, np.uint8).reshape(-1, S_BUCKET_BITFIELD_BYTES)
    ends = np.zeros(len(bitfields), np.int64)
    for start in range(0, len(bitfields), FILL_END_BLOCK):
        block = bitfields[start : start + FILL_END_BLOCK]
        clear_through = np.cumsum(8 - POPCOUNT[block], axis=1, dtype=np.int32)  # unencoded up to each byte
        fill = clear_through[:, -1].astype(np.int64) - RECORD_NUM_CHUNKS  # 32768 - encoded count
        if (fill < 0).any():
            raise SectorError(f"a record claims more than {RECORD_NUM_CHUNKS} encoded chunks")
        byte = np.argmax(clear_through >= fill[:, None], axis=1)  # where the fill-th unencoded one is
        before = np.where(byte > 0, clear_through[np.arange(len(block)), byte - 1], 0)
        position = NTH_CLEAR[block[np.arange(len(block)), byte], fill - before]
        ends[start : start + len(block)] = np.where(fill > 0, 8 * byte + position + 1, 0)
    return ends


def kept_slab(bits: np.ndarray, first_s_bucket: int, ends: np.ndarray) -> np.ndarray:
    """Which s-buckets of a slab (bits: encoded, bool[n, width] from first_s_bucket) each record keeps."""
    s_buckets = np.arange(first_s_bucket, first_s_bucket + bits.shape[1])
    return np.asarray(bits | (s_buckets[None, :] < ends[:, None]))


@dataclass(frozen=True)
class SectorContentsMap:
    """Per record, which s-buckets hold an encoded chunk: the on-disk bitfields (Lsb0), held packed
    (8 KiB per record, not 64 KiB of booleans)."""

    bitfields: np.ndarray  # uint8[pieces_in_sector, 8192]

    @classmethod
    def from_encoded(cls, encoded: np.ndarray) -> SectorContentsMap:
        """From bool[pieces_in_sector, 65536]."""
        return cls(np.packbits(np.asarray(encoded, bool), axis=1, bitorder="little"))

    @property
    def pieces_in_sector(self) -> int:
        return int(self.bitfields.shape[0])

    @functools.cached_property
    def ends(self) -> np.ndarray:
        """fill_ends of every record."""
        return fill_ends(self.bitfields)

    def num_encoded(self) -> np.ndarray:
        return np.asarray(POPCOUNT[self.bitfields].sum(axis=1, dtype=np.int64))

    def encoded(self, piece_offset: int) -> np.ndarray:
        """bool[65536]: the s-buckets where record o's chunk is encoded."""
        return np.unpackbits(self.bitfields[piece_offset], bitorder="little").astype(bool)

    def record_has_row(self, piece_offset: int) -> np.ndarray:
        """bool[65536]: s-buckets record o has (encoded, or among its first unencoded fill)."""
        return np.asarray(
            kept_slab(self.encoded(piece_offset)[None, :], 0, self.ends[piece_offset : piece_offset + 1])[0]
        )

    def s_bucket_encoded(self, s_bucket: int) -> np.ndarray:
        """bool[P]: which records' chunk in s-bucket s is encoded."""
        return np.asarray((self.bitfields[:, s_bucket >> 3] >> (s_bucket & 7)) & 1, bool)

    def s_bucket_has(self, s_bucket: int) -> np.ndarray:
        """bool[P]: which records have a chunk in s-bucket s (the audit's view of one s-bucket)."""
        return np.asarray(self.s_bucket_encoded(s_bucket) | (s_bucket < self.ends))

    def kept_before(self, piece_offset: int) -> np.ndarray:
        """int64[65536]: per s-bucket, how many records before o keep a chunk in it (record o's chunk is
        that far into its s-bucket), counted slab by slab of s-buckets."""
        counts = np.zeros(RECORD_NUM_S_BUCKETS, np.int64)
        width = 8 * 256
        for s0 in range(0, RECORD_NUM_S_BUCKETS, width):
            bits = np.unpackbits(self.bitfields[:piece_offset, s0 // 8 : (s0 + width) // 8], axis=1, bitorder="little")
            counts[s0 : s0 + width] = kept_slab(bits.astype(bool), s0, self.ends[:piece_offset]).sum(axis=0)
        return counts

    def to_bytes(self) -> bytes:
        bitfields = np.ascontiguousarray(self.bitfields, np.uint8).tobytes()
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
        counts = POPCOUNT[raw].sum(axis=1, dtype=np.int64)
        if (counts > RECORD_NUM_CHUNKS).any():
            bad = int(np.flatnonzero(counts > RECORD_NUM_CHUNKS)[0])
            raise SectorError(f"record {bad} claims {int(counts[bad])} encoded chunks (> {RECORD_NUM_CHUNKS})")
        return cls(raw)


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
