"""Auditing (protocol.md §7): which stored chunks of a sector are close enough to the challenge.

Only one s-bucket per sector is read per slot: s = u16le(sector_id XOR global_challenge). Each of
its stored chunks is keyed-hashed with the sector slot challenge; its first 8 bytes (u64 LE) are
compared with the challenge's by bidirectional distance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autonomys_farmer.protocol.compute import AuditHits, Compute
from autonomys_farmer.protocol.hashes import keyed_hash
from autonomys_farmer.protocol.sector import (
    SectorBytes,
    SectorLayout,
    SectorMetadata,
    derive_s_bucket_audit_index,
    derive_sector_id,
    derive_sector_slot_challenge,
)
from autonomys_farmer.protocol.types import SBucket, SectorIndex


@dataclass(frozen=True)
class ChunkCandidate:
    chunk_index: int  # position within the audited s-bucket
    distance: int


@dataclass(frozen=True)
class AuditResult:
    sector_index: SectorIndex
    s_bucket: SBucket
    candidates: tuple[ChunkCandidate, ...]  # ascending distance, ties in chunk order

    @property
    def best_distance(self) -> int | None:
        return self.candidates[0].distance if self.candidates else None


def bidirectional_distance(a: int, b: int) -> int:
    diff = (a - b) % 2**64
    return min(diff, 2**64 - diff if diff else 0)


def chunk_distance(global_challenge: bytes, sector_slot_challenge: bytes, chunk: bytes) -> int:
    """Distance of one stored chunk from the challenge (the reference form of the vector code)."""
    audit = int.from_bytes(keyed_hash(sector_slot_challenge, chunk)[:8], "little")
    return bidirectional_distance(int.from_bytes(global_challenge[:8], "little"), audit)


def chunk_distances(
    compute: Compute, global_challenge: bytes, sector_slot_challenge: bytes, chunks: np.ndarray
) -> np.ndarray:
    """Vectorised chunk_distance over (n, 32) chunks, as uint64."""
    digests = compute.keyed_hash_rows(sector_slot_challenge, np.ascontiguousarray(chunks, np.uint8))
    audit = digests[:, :8].copy().view("<u8").ravel()
    target = np.uint64(int.from_bytes(global_challenge[:8], "little"))
    forward = target - audit  # uint64 arithmetic wraps mod 2^64
    backward = audit - target
    return np.minimum(forward, backward)


def audit_sector(
    compute: Compute,
    public_key: bytes,
    global_challenge: bytes,
    solution_range: int,
    sector: SectorBytes,
    metadata: SectorMetadata,
) -> AuditResult:
    """Audit one plotted sector; `sector` is its bytes (an mmap slice is enough: one s-bucket is read)."""
    sid = derive_sector_id(public_key, metadata.sector_index, metadata.history_size)
    ssc = derive_sector_slot_challenge(sid, global_challenge)
    s = derive_s_bucket_audit_index(ssc)
    size = int(metadata.s_bucket_sizes[s])
    if size == 0:
        return AuditResult(metadata.sector_index, s, ())
    start = SectorLayout(metadata.pieces_in_sector).chunks_offset + 32 * int(metadata.s_bucket_offsets()[s])
    chunks = np.frombuffer(memoryview(sector)[start : start + 32 * size], np.uint8).reshape(size, 32)
    distances = chunk_distances(compute, global_challenge, ssc, chunks)
    winners = np.flatnonzero(distances <= np.uint64(solution_range // 2))
    order = winners[np.argsort(distances[winners], kind="stable")]
    return AuditResult(metadata.sector_index, s, tuple(ChunkCandidate(int(k), int(distances[k])) for k in order))


def audit_results(
    hits: AuditHits, sector_indices: Sequence[int] | np.ndarray, s_buckets: np.ndarray
) -> list[AuditResult]:
    """A batched audit's hits (Compute.audit_chunks over sectors sector_indices, whose audited
    s-buckets were s_buckets) as one AuditResult per sector that has any: the form audit_sector gives."""
    order = np.lexsort((hits.chunk, hits.distance, hits.sector))
    sectors, chunks, distances = hits.sector[order], hits.chunk[order], hits.distance[order]
    bounds = np.flatnonzero(np.diff(sectors)) + 1
    results = []
    for group in np.split(np.arange(len(sectors)), bounds) if len(sectors) else ():
        position = int(sectors[group[0]])
        candidates = tuple(ChunkCandidate(int(chunks[i]), int(distances[i])) for i in group)
        sector_index, s_bucket = SectorIndex(int(sector_indices[position])), SBucket(int(s_buckets[position]))
        results.append(AuditResult(sector_index, s_bucket, candidates))
    return results
