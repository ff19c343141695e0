"""Plotting (protocol.md §5): record encoding and the exact sector byte layout.

A record's 65536 extended chunks are masked with H(first PoS proof) for the first 32768 s-buckets
that have a proof; if fewer exist, the lowest unset s-buckets are kept raw. The sector stores the
chunks s-bucket-major (for s ascending, records o ascending), so auditing one s-bucket is one read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autonomys_farmer.backends import ComputeBackend, get_backend
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.pieces import Piece
from autonomys_farmer.protocol.sector import (
    RecordMetadata,
    SectorContentsMap,
    SectorError,
    SectorLayout,
    SectorMetadata,
    derive_evaluation_seed,
    sector_id,
)


@dataclass(frozen=True)
class EncodedRecord:
    """The 32768 chunks a record keeps: encoded[s] marks masked chunks; s_buckets ascending."""

    encoded: np.ndarray  # bool[65536]
    s_buckets: np.ndarray  # int64[32768], ascending
    chunks: np.ndarray  # uint8[32768, 32], stored bytes in s_buckets order


def select_chunks(has_proof: np.ndarray, proof_hashes: np.ndarray, extended: np.ndarray) -> EncodedRecord:
    """§5.2 steps 4–6 for one record (also the rule the GPU must reproduce)."""
    candidates = extended ^ proof_hashes
    # A masked chunk of 32 zero bytes is the "no proof" sentinel upstream; reproduce the quirk.
    usable = has_proof & candidates.any(axis=1)
    encoded_s = np.flatnonzero(usable)[:RECORD_NUM_CHUNKS]
    encoded = np.zeros(RECORD_NUM_S_BUCKETS, bool)
    encoded[encoded_s] = True
    fill_s = np.flatnonzero(~encoded)[: RECORD_NUM_CHUNKS - len(encoded_s)]
    s_buckets = np.sort(np.concatenate([encoded_s, fill_s]))
    chunks = np.where(encoded[s_buckets, None], candidates[s_buckets], extended[s_buckets])
    return EncodedRecord(encoded, s_buckets, chunks)


def encode_records(
    seeds: Sequence[bytes], records: np.ndarray, backend: ComputeBackend | None = None
) -> list[EncodedRecord]:
    backend = backend or get_backend()
    has, hashes = backend.proof_hashes(seeds)
    extended = backend.extend_records(records)
    return [select_chunks(has[i], hashes[i], extended[i]) for i in range(len(seeds))]


@dataclass(frozen=True)
class PlottedSector:
    data: bytes
    metadata: SectorMetadata


def write_sector(
    encoded: Sequence[EncodedRecord], record_metadata: Sequence[RecordMetadata], sector_index: int, history_size: int
) -> PlottedSector:
    """Lay encoded records out as on disk and build the sector metadata."""
    pieces_in_sector = len(encoded)
    layout = SectorLayout(pieces_in_sector)
    sizes = np.zeros(RECORD_NUM_S_BUCKETS, np.int64)
    for rec in encoded:
        sizes[rec.s_buckets] += 1
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    chunks_region = np.empty((pieces_in_sector * RECORD_NUM_CHUNKS, 32), np.uint8)
    seen = np.zeros(RECORD_NUM_S_BUCKETS, np.int64)
    for rec in encoded:
        chunks_region[offsets[rec.s_buckets] + seen[rec.s_buckets]] = rec.chunks
        seen[rec.s_buckets] += 1
    contents = SectorContentsMap(np.stack([rec.encoded for rec in encoded]))
    body = contents.to_bytes() + chunks_region.tobytes() + b"".join(m.to_bytes() for m in record_metadata)
    data = body + blake3_hash(body)
    if len(data) != layout.size:
        raise SectorError(f"sector is {len(data)} bytes, layout says {layout.size}")
    metadata = SectorMetadata(sector_index, pieces_in_sector, sizes.astype(np.uint16), history_size)
    return PlottedSector(data, metadata)


def plot_sector(
    public_key: bytes,
    sector_index: int,
    history_size: int,
    pieces: Sequence[Piece],
    backend: ComputeBackend | None = None,
    batch_size: int = 4,
    progress: object | None = None,
) -> PlottedSector:
    """Encode pieces[o] (the piece for offset o, from `sector_piece_indices`) into a sector.

    `progress`, if given, is called as progress(records_done, pieces_in_sector).
    """
    if not pieces:
        raise SectorError("a sector needs at least one piece")
    sid = sector_id(public_key, sector_index, history_size)
    encoded: list[EncodedRecord] = []
    for start in range(0, len(pieces), batch_size):
        batch = pieces[start : start + batch_size]
        seeds = [derive_evaluation_seed(sid, start + i) for i in range(len(batch))]
        records = np.stack([p.record_chunks() for p in batch])
        encoded.extend(encode_records(seeds, records, backend))
        if callable(progress):
            progress(len(encoded), len(pieces))
    metadata = [RecordMetadata(p.commitment, p.witness, blake3_hash(p.data)) for p in pieces]
    return write_sector(encoded, metadata, sector_index, history_size)
