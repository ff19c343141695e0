"""Plotting (protocol.md §5): which chunks a record keeps, and the exact sector byte layout.

A record's 65536 extended chunks are masked with H(first PoS proof) for the first 32768 s-buckets that
have a proof; if fewer exist, the lowest unset s-buckets are kept raw. The sector stores the chunks
s-bucket-major (for s ascending, records o ascending), so auditing one s-bucket is one read. The heavy
part (extension, PoS tables, proofs) is the compute backend's `encode_records`; the layout is here.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import blake3
import numpy as np

from autonomys_farmer.protocol import erasure, field
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.pieces import Piece
from autonomys_farmer.protocol.sector import (
    RecordMetadata,
    SectorError,
    SectorLayout,
    SectorMetadata,
    derive_evaluation_seed,
    derive_sector_id,
    fill_ends,
    kept_slab,
)
from autonomys_farmer.protocol.types import HistorySize, SectorIndex

Progress = Callable[[int, int], None]
LAYOUT_SLAB_S_BUCKETS = 512  # s-buckets laid out per write: ~8 MiB of a 1000-piece sector at a time


def extend_record(compute: Compute, record: np.ndarray) -> np.ndarray:
    """The record's 65536 erasure-coded chunks in s-bucket order (source even, parity odd), as bytes."""
    parity = erasure.extend(compute, field.scalars_to_rows(compute, record))
    return erasure.interleave(np.asarray(record, np.uint8), field.rows_to_scalars(compute, parity))


def select_chunks(
    has_proof: np.ndarray, proof_hashes: np.ndarray, extended: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """§5.2 steps 4–6 for one record: (stored chunks uint8[32768, 32] by ascending s-bucket, encoded map
    uint8[8192] Lsb0). proof_hashes[s] must be H(first proof of s) wherever the result depends on it: for
    the first 32768 proven s-buckets, and all of them when `needs_all_proofs`."""
    candidates = extended ^ proof_hashes
    # A masked chunk of 32 zero bytes is the "no proof" sentinel upstream; reproduce the quirk.
    usable = has_proof & candidates.any(axis=1)
    encoded_s = np.flatnonzero(usable)[:RECORD_NUM_CHUNKS]
    encoded = np.zeros(RECORD_NUM_S_BUCKETS, bool)
    encoded[encoded_s] = True
    fill_s = np.flatnonzero(~encoded)[: RECORD_NUM_CHUNKS - len(encoded_s)]
    s_buckets = np.sort(np.concatenate([encoded_s, fill_s]))
    chunks = np.where(encoded[s_buckets, None], candidates[s_buckets], extended[s_buckets])
    return chunks, np.packbits(encoded, bitorder="little")


def needs_all_proofs(has_proof: np.ndarray, proof_hashes: np.ndarray, extended: np.ndarray) -> bool:
    """With hashes of only the first 32768 proven s-buckets: does the selection need more? Only if one of
    them masks its chunk to zero (never seen: probability 2^-256 per chunk) and more proven ones exist."""
    proven = np.flatnonzero(has_proof)
    if len(proven) <= RECORD_NUM_CHUNKS:
        return False
    traced = proven[:RECORD_NUM_CHUNKS]
    return not bool((extended[traced] ^ proof_hashes[traced]).any(axis=1).all())


@dataclass
class SectorRecords:
    """A sector's records by piece offset, plus the metadata each keeps. Encoding overwrites `records`
    with the stored chunks, so a sector never needs a second record-sized copy in memory."""

    records: np.ndarray  # uint8[pieces_in_sector, 32768, 32]
    metadata: list[RecordMetadata]

    @classmethod
    def gather(cls, pieces: Iterable[Piece], pieces_in_sector: int) -> SectorRecords:
        """From the sector's pieces in offset order; each piece is copied and let go before the next
        (a caller yielding pieces it releases keeps one sector of records in memory, not two)."""
        if pieces_in_sector < 1:
            raise SectorError("a sector needs at least one piece")
        records = np.empty((pieces_in_sector, RECORD_NUM_CHUNKS, 32), np.uint8)
        metadata = []
        for offset, piece in enumerate(pieces):
            if offset == pieces_in_sector:
                raise SectorError(f"more than {pieces_in_sector} pieces for the sector")
            records[offset] = piece.record_chunks()
            metadata.append(RecordMetadata(piece.commitment, piece.witness, blake3_hash(piece.data)))
        if len(metadata) != pieces_in_sector:
            raise SectorError(f"{len(metadata)} pieces for a sector of {pieces_in_sector}")
        return cls(records, metadata)

    @classmethod
    def from_pieces(cls, pieces: Sequence[Piece]) -> SectorRecords:
        return cls.gather(pieces, len(pieces))

    def __len__(self) -> int:
        return int(self.records.shape[0])


def plot_sector(
    compute: Compute,
    public_key: bytes,
    sector_index: SectorIndex,
    history_size: HistorySize,
    sector: SectorRecords,
    out: BinaryIO,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> SectorMetadata:
    """Encode a sector's records (`sector.records[o]` is the piece at offset o, see
    `sector_piece_indices`) and write the plotted sector to `out`; returns its metadata."""
    pieces_in_sector = len(sector)
    if pieces_in_sector == 0:
        raise SectorError("a sector needs at least one piece")
    sid = derive_sector_id(public_key, sector_index, history_size)
    batch_size = batch_size or compute.batch_records
    encoded = np.empty((pieces_in_sector, RECORD_NUM_S_BUCKETS // 8), np.uint8)
    for start in range(0, pieces_in_sector, batch_size):
        stop = min(start + batch_size, pieces_in_sector)
        seeds = [derive_evaluation_seed(sid, offset) for offset in range(start, stop)]
        result = compute.encode_records(seeds, sector.records[start:stop])
        sector.records[start:stop] = result.chunks
        encoded[start:stop] = result.encoded
        if progress is not None:
            progress(stop, pieces_in_sector)
    return write_sector(out, sector.records, encoded, sector.metadata, sector_index, history_size)


def write_sector(
    out: BinaryIO,
    chunks: np.ndarray,
    encoded: np.ndarray,
    record_metadata: Sequence[RecordMetadata],
    sector_index: SectorIndex,
    history_size: HistorySize,
) -> SectorMetadata:
    """Lay encoded records out as on disk, slab by slab of s-buckets (bounded memory), and build the
    sector metadata. chunks: uint8[n, 32768, 32] stored chunks per record; encoded: uint8[n, 8192]."""
    pieces_in_sector = chunks.shape[0]
    layout = SectorLayout(pieces_in_sector)
    encoded = np.ascontiguousarray(encoded, np.uint8)
    ends = fill_ends(encoded)
    hasher = blake3.blake3()
    written = 0

    def emit(data: bytes | np.ndarray) -> None:
        nonlocal written
        view = np.ascontiguousarray(data).data.cast("B") if isinstance(data, np.ndarray) else memoryview(data)
        hasher.update(view)
        out.write(view)
        written += len(view)

    bitfields = encoded.tobytes()  # the contents map: the encoded maps (Lsb0) and their checksum
    emit(bitfields + blake3_hash(bitfields))
    flat = np.ascontiguousarray(chunks).reshape(-1, 32).view("V32").ravel()
    sizes = np.zeros(RECORD_NUM_S_BUCKETS, np.uint16)
    before = np.zeros(pieces_in_sector, np.int32)  # chunks of each record in earlier slabs
    record_base = np.arange(pieces_in_sector, dtype=np.int32)[:, None] * RECORD_NUM_CHUNKS
    for s0 in range(0, RECORD_NUM_S_BUCKETS, LAYOUT_SLAB_S_BUCKETS):
        bits = np.unpackbits(encoded[:, s0 // 8 : (s0 + LAYOUT_SLAB_S_BUCKETS) // 8], axis=1, bitorder="little")
        mask = kept_slab(bits.astype(bool), s0, ends)
        # Index of each kept (record, s) chunk in `flat`, taken s-major (records ascending within s).
        index = record_base + before[:, None] + np.cumsum(mask, axis=1, dtype=np.int32) - 1
        emit(flat[index.T[mask.T]])
        sizes[s0 : s0 + LAYOUT_SLAB_S_BUCKETS] = mask.sum(axis=0)
        before += mask.sum(axis=1, dtype=np.int32)
    if (before != RECORD_NUM_CHUNKS).any():
        raise SectorError("a record does not keep exactly 32768 chunks")
    for meta in record_metadata:
        emit(meta.to_bytes())
    checksum = hasher.digest()
    out.write(checksum)
    if written + len(checksum) != layout.size:
        raise SectorError(f"sector is {written + len(checksum)} bytes, layout says {layout.size}")
    return SectorMetadata(sector_index, pieces_in_sector, sizes, history_size)


@dataclass(frozen=True)
class PlottedSector:
    data: bytes
    metadata: SectorMetadata


def plot_sector_in_memory(
    compute: Compute,
    public_key: bytes,
    sector_index: SectorIndex,
    history_size: HistorySize,
    pieces: Sequence[Piece],
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> PlottedSector:
    """plot_sector into bytes: for small sectors (tests, tools)."""
    out = io.BytesIO()
    metadata = plot_sector(
        compute, public_key, sector_index, history_size, SectorRecords.from_pieces(pieces), out, batch_size, progress
    )
    return PlottedSector(out.getvalue(), metadata)
