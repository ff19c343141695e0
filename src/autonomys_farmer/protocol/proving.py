"""Proving (protocol.md §8): turn an audit win into a full Solution.

For the winning record: regenerate its PoS table, decode and erasure-recover the record polynomial
from the sector, open it at ω_65536^s (chunk witness) and attach the proof of space.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from autonomys_farmer.backends import ComputeBackend, get_backend
from autonomys_farmer.backends.cpu import fr_kernel as fr
from autonomys_farmer.protocol import erasure
from autonomys_farmer.protocol.auditing import AuditResult
from autonomys_farmer.protocol.constants import RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.reading import PlottedSectorView, ReadingError, decode_record_chunks
from autonomys_farmer.protocol.sector import derive_evaluation_seed, sector_id
from autonomys_farmer.protocol.solution import Solution


def winning_records(sector: PlottedSectorView, audit: AuditResult) -> list[tuple[int, int]]:
    """(piece_offset, distance) of candidates whose chunk is encoded; raw chunks cannot win."""
    records_with_s = np.flatnonzero(sector.contents.s_bucket_has(audit.s_bucket))
    wins = []
    for candidate in audit.candidates:
        offset = int(records_with_s[candidate.chunk_index])
        if sector.contents.encoded[offset, audit.s_bucket]:
            wins.append((offset, candidate.distance))
    return wins


def prove_record(
    public_key: bytes,
    reward_address: bytes,
    sector: PlottedSectorView,
    piece_offset: int,
    s_bucket: int,
    kzg: Kzg,
    backend: ComputeBackend | None = None,
) -> Solution:
    backend = backend or get_backend()
    meta = sector.metadata
    sid = sector_id(public_key, meta.sector_index, meta.history_size)
    table = backend.pos_table(derive_evaluation_seed(sid, piece_offset))
    proof = table.find_proof(s_bucket)
    if proof is None:
        raise ReadingError(f"record {piece_offset}: no PoS proof for s-bucket {s_bucket}")
    present, shards = decode_record_chunks(sector, piece_offset, table)
    chunk = fr.mont_to_scalars(shards[s_bucket : s_bucket + 1]).tobytes()
    poly = erasure.recover_poly(shards, present)
    record_meta = sector.record_metadata(piece_offset)
    return Solution(
        public_key=public_key,
        reward_address=reward_address,
        sector_index=meta.sector_index,
        history_size=meta.history_size,
        piece_offset=piece_offset,
        record_commitment=record_meta.commitment,
        record_witness=record_meta.witness,
        chunk=chunk,
        chunk_witness=kzg.create_witness(poly, RECORD_NUM_S_BUCKETS, s_bucket),
        proof_of_space=proof,
    )


def prove_audit(
    public_key: bytes,
    reward_address: bytes,
    sector: PlottedSectorView,
    audit: AuditResult,
    kzg: Kzg,
    backend: ComputeBackend | None = None,
) -> Iterator[Solution]:
    """Solutions for an audit's winning records, best distance first (lazily: stop when done)."""
    for piece_offset, _distance in winning_records(sector, audit):
        yield prove_record(public_key, reward_address, sector, piece_offset, audit.s_bucket, kzg, backend)
