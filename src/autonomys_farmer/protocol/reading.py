"""Reading a record back out of a sector (protocol.md §6): unmask, recover, check the piece."""

from __future__ import annotations

import mmap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from autonomys_farmer.protocol import erasure, field
from autonomys_farmer.protocol.compute import Compute, ProofTable
from autonomys_farmer.protocol.constants import CHECKSUM_SIZE, NUM_PIECES, RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.field import FieldError
from autonomys_farmer.protocol.hashes import blake3_254_hash_to_scalar, blake3_hash
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.pieces import Piece, batch_weights, record_commitment
from autonomys_farmer.protocol.sector import (
    FarmerProtocolInfo,
    RecordMetadata,
    SectorBytes,
    SectorContentsMap,
    SectorError,
    SectorLayout,
    SectorMetadata,
    contents_map_size,
    derive_evaluation_seed,
    derive_sector_id,
    derive_sector_piece_indices,
)
from autonomys_farmer.protocol.types import PieceIndex, PieceOffset, SectorIndex, SegmentIndex


class ReadingError(SectorError):
    """A record that cannot be read back: missing proof, invalid chunk, checksum mismatch."""


class SectorSource(Protocol):
    """Where a plotted sector's bytes come from: memory, or positioned reads of a farm's plot file (a
    sector of 1000 pieces is a GiB: a reader asks for exactly what it uses)."""

    def read(self, start: int, length: int) -> bytes:
        """length bytes of the sector from start."""
        ...

    def read_chunks(self, start: int, chunk_indices: np.ndarray) -> np.ndarray:
        """uint8[n, 32]: the 32-byte chunks at start + 32·i for each i of chunk_indices."""
        ...


@dataclass(frozen=True)
class SectorInMemory:
    """A SectorSource over the sector's bytes (bytes, memoryview or mmap)."""

    data: SectorBytes

    def read(self, start: int, length: int) -> bytes:
        return bytes(memoryview(self.data)[start : start + length])

    def read_chunks(self, start: int, chunk_indices: np.ndarray) -> np.ndarray:
        count = (len(memoryview(self.data)) - start) // 32
        region = np.frombuffer(self.data, np.uint8, count=32 * count, offset=start).reshape(count, 32)
        return np.asarray(region[chunk_indices])


def sector_source(data: SectorBytes | SectorSource, pieces_in_sector: int) -> SectorSource:
    """A sector's bytes as a SectorSource (bytes in memory are checked for the sector's size)."""
    if not isinstance(data, bytes | bytearray | memoryview | mmap.mmap):
        return data
    size = SectorLayout(pieces_in_sector).size
    if len(memoryview(data)) < size:
        raise SectorError(f"sector data is {len(memoryview(data))} bytes, expected {size}")
    return SectorInMemory(data)


@dataclass(frozen=True)
class PlottedSectorView:
    """A plotted sector: where its bytes are read from, its metadata and its decoded contents map."""

    source: SectorSource
    metadata: SectorMetadata
    contents: SectorContentsMap

    @classmethod
    def open(cls, data: SectorBytes | SectorSource, metadata: SectorMetadata) -> PlottedSectorView:
        source = sector_source(data, metadata.pieces_in_sector)
        pieces = metadata.pieces_in_sector
        return cls(source, metadata, SectorContentsMap.from_bytes(source.read(0, contents_map_size(pieces)), pieces))

    @property
    def layout(self) -> SectorLayout:
        return SectorLayout(self.metadata.pieces_in_sector)

    def record_metadata(self, piece_offset: int) -> RecordMetadata:
        return RecordMetadata.from_bytes(self.source.read(self.layout.record_metadata_offset(piece_offset), 128))

    def record_chunk_positions(self, piece_offset: int) -> tuple[np.ndarray, np.ndarray]:
        """(s-buckets the record has, chunk index of each in the chunks region)."""
        s_buckets = np.flatnonzero(self.contents.record_has_row(piece_offset))
        before = self.contents.kept_before(piece_offset)
        return s_buckets, self.metadata.s_bucket_offsets()[s_buckets] + before[s_buckets]

    def read_chunks(self, chunk_indices: np.ndarray) -> np.ndarray:
        return self.source.read_chunks(self.layout.chunks_offset, chunk_indices)


@dataclass(frozen=True)
class RecordChunks:
    """What a sector stores of one record: enough to decode it anywhere (e.g. on a proof server)."""

    piece_offset: PieceOffset
    s_buckets: np.ndarray  # int64[32768], ascending: the s-buckets the record has a chunk in
    encoded: np.ndarray  # bool per entry of s_buckets: chunk is masked with H(PoS proof)
    chunks: np.ndarray  # uint8[32768, 32] as stored

    def __post_init__(self) -> None:
        object.__setattr__(self, "piece_offset", PieceOffset(self.piece_offset))

    @classmethod
    def read(cls, sector: PlottedSectorView, piece_offset: PieceOffset) -> RecordChunks:
        s_buckets, positions = sector.record_chunk_positions(piece_offset)
        if len(s_buckets) != RECORD_NUM_CHUNKS:
            raise ReadingError(f"record {piece_offset} holds {len(s_buckets)} chunks, expected {RECORD_NUM_CHUNKS}")
        encoded = sector.contents.encoded(piece_offset)[s_buckets]
        return cls(piece_offset, s_buckets, encoded, sector.read_chunks(positions))


def decode_chunks(compute: Compute, record: RecordChunks, table: ProofTable) -> tuple[np.ndarray, np.ndarray]:
    """§6 step 2: (present bool[65536], Montgomery rows[65536]) of the record's erasure-coded chunks."""
    chunks = record.chunks.copy()
    s_buckets, encoded = record.s_buckets, record.encoded
    if encoded.any():
        has, proofs = table.find_proofs(s_buckets[encoded].astype(np.uint32))
        if not has.all():
            missing = int(s_buckets[encoded][~has][0])
            raise ReadingError(f"record {record.piece_offset}: no PoS proof for encoded s-bucket {missing}")
        chunks[encoded] ^= compute.hash_rows(proofs)
    try:
        rows = field.scalars_to_rows(compute, chunks)
    except FieldError as e:
        raise ReadingError(f"record {record.piece_offset}: {e}") from e
    shards = np.zeros((RECORD_NUM_S_BUCKETS, 8), np.uint32)
    shards[s_buckets] = rows
    present = np.zeros(RECORD_NUM_S_BUCKETS, bool)
    present[s_buckets] = True
    return present, shards


def read_piece(compute: Compute, sector: PlottedSectorView, public_key: bytes, piece_offset: PieceOffset) -> Piece:
    """Recover the original piece stored at piece_offset and check it against its checksum."""
    meta = sector.metadata
    sid = derive_sector_id(public_key, meta.sector_index, meta.history_size)
    table = compute.proof_table(derive_evaluation_seed(sid, piece_offset))
    present, shards = decode_chunks(compute, RecordChunks.read(sector, piece_offset), table)
    source = erasure.recover(compute, shards, present)[0::2]
    record_meta = sector.record_metadata(piece_offset)
    piece = Piece.assemble(
        field.rows_to_scalars(compute, source).tobytes(), record_meta.commitment, record_meta.witness
    )
    if blake3_hash(piece.data) != record_meta.piece_checksum:
        raise ReadingError(f"piece at offset {piece_offset} of sector {meta.sector_index}: checksum mismatch")
    return piece


def check_sector(
    compute: Compute,
    kzg: Kzg,
    public_key: bytes,
    sector_index: SectorIndex,
    protocol_info: FarmerProtocolInfo,
    data: SectorBytes | SectorSource,
    checksum: bytes,
    metadata: SectorMetadata,
    segment_commitments: Mapping[SegmentIndex, bytes],
    sample: Sequence[PieceOffset],
    randomness: bytes,
) -> None:
    """What a farmer checks of a sector plotted elsewhere before it counts (ReadingError if any fails):
    its own checksum holds (`checksum`: the BLAKE3 of all its bytes but the last 32, which the receiver
    takes as they arrive rather than reading a GiB again); the metadata is this sector's; every
    record's commitment opens its segment commitment at its piece's position (one batched pairing
    check); and each `sample` record, read back from the sector (table, decoding, recovery), has
    exactly that commitment. A garbage or wrongly encoded sector, whether forged or from a plotting
    bug, is refused."""
    if metadata.sector_index != sector_index or metadata.history_size != protocol_info.history_size:
        raise ReadingError(
            f"metadata describes sector {metadata.sector_index} at history size {metadata.history_size}, "
            f"not sector {sector_index} at {protocol_info.history_size}"
        )
    source = sector_source(data, metadata.pieces_in_sector)
    if source.read(SectorLayout(metadata.pieces_in_sector).size - CHECKSUM_SIZE, CHECKSUM_SIZE) != checksum:
        raise ReadingError(f"sector {sector_index} fails its own checksum")
    view = PlottedSectorView.open(source, metadata)
    sid = derive_sector_id(public_key, sector_index, protocol_info.history_size)
    indices = derive_sector_piece_indices(sid, metadata.pieces_in_sector, protocol_info)
    openings = []
    for offset, index in enumerate(indices):
        piece_index = PieceIndex(index)
        commitment = segment_commitments.get(piece_index.segment_index())
        if commitment is None:
            raise ReadingError(f"no segment commitment for segment {piece_index.segment_index()}")
        record = view.record_metadata(PieceOffset(offset))
        value = blake3_254_hash_to_scalar(record.commitment)
        openings.append((commitment, NUM_PIECES, piece_index.position(), value, record.witness))
    if not kzg.verify_batch(compute, openings, batch_weights(randomness, len(openings))):
        raise ReadingError(f"sector {sector_index}: a record commitment does not open its segment commitment")
    for offset in sample:
        piece = read_piece(compute, view, public_key, offset)
        if record_commitment(compute, kzg, piece.record_chunks()) != piece.commitment:
            raise ReadingError(f"sector {sector_index}: record {offset} read back does not match its commitment")
