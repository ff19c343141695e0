"""Proving (protocol.md §8): turn an audit win into a full Solution.

For the winning record: regenerate its PoS table, decode and erasure-recover the record polynomial
from the sector, open it at ω_65536^s (chunk witness) and attach the proof of space.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from autonomys_farmer.protocol import erasure, field
from autonomys_farmer.protocol.auditing import AuditResult
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.pos import POS_PROOF_SIZE
from autonomys_farmer.protocol.reading import PlottedSectorView, ReadingError, RecordChunks, decode_chunks
from autonomys_farmer.protocol.sector import RecordMetadata, derive_evaluation_seed, derive_sector_id
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.protocol.types import HistorySize, PieceOffset, SBucket, SectorIndex


def winning_records(sector: PlottedSectorView, audit: AuditResult) -> list[tuple[PieceOffset, int]]:
    """(piece_offset, distance) of candidates whose chunk is encoded; raw chunks cannot win."""
    records_with_s = np.flatnonzero(sector.contents.s_bucket_has(audit.s_bucket))
    encoded = sector.contents.s_bucket_encoded(audit.s_bucket)
    wins = []
    for candidate in audit.candidates:
        offset = int(records_with_s[candidate.chunk_index])
        if encoded[offset]:
            wins.append((PieceOffset(offset), candidate.distance))
    return wins


@dataclass(frozen=True)
class RecordWin:
    """Everything needed to prove one winning record, detached from the farm's disk."""

    public_key: bytes
    reward_address: bytes
    sector_index: SectorIndex
    history_size: HistorySize
    s_bucket: SBucket
    record: RecordChunks
    record_metadata: RecordMetadata

    def __post_init__(self) -> None:
        object.__setattr__(self, "sector_index", SectorIndex(self.sector_index))
        object.__setattr__(self, "history_size", HistorySize(self.history_size))
        object.__setattr__(self, "s_bucket", SBucket(self.s_bucket))

    @classmethod
    def read(
        cls,
        public_key: bytes,
        reward_address: bytes,
        sector: PlottedSectorView,
        piece_offset: PieceOffset,
        s_bucket: SBucket,
    ) -> RecordWin:
        meta = sector.metadata
        return cls(
            public_key,
            reward_address,
            meta.sector_index,
            meta.history_size,
            s_bucket,
            RecordChunks.read(sector, piece_offset),
            sector.record_metadata(piece_offset),
        )


@dataclass(frozen=True)
class RecoveredWin:
    """A win halfway: its proof of space, winning chunk and recovered record polynomial."""

    win: RecordWin
    proof_of_space: bytes
    chunk: bytes
    poly: np.ndarray

    def solution(self, chunk_witness: bytes) -> Solution:
        win = self.win
        return Solution(
            public_key=win.public_key,
            reward_address=win.reward_address,
            sector_index=win.sector_index,
            history_size=win.history_size,
            piece_offset=win.record.piece_offset,
            record_commitment=win.record_metadata.commitment,
            record_witness=win.record_metadata.witness,
            chunk=self.chunk,
            chunk_witness=chunk_witness,
            proof_of_space=self.proof_of_space,
        )


def recover_win(compute: Compute, win: RecordWin) -> RecoveredWin:
    """Regenerate the record's PoS table, decode its chunks and recover its polynomial."""
    piece_offset = win.record.piece_offset
    sid = derive_sector_id(win.public_key, win.sector_index, win.history_size)
    table = compute.proof_table(derive_evaluation_seed(sid, piece_offset))
    proof = table.find_proof(win.s_bucket)
    if proof is None:
        raise ReadingError(f"record {piece_offset}: no PoS proof for s-bucket {win.s_bucket}")
    present, shards = decode_chunks(compute, win.record, table)
    chunk = field.rows_to_scalars(compute, shards[win.s_bucket : win.s_bucket + 1]).tobytes()
    try:
        poly = erasure.recover_poly(compute, shards, present)
    except erasure.ErasureError as e:
        raise ReadingError(f"record {piece_offset}: {e}") from e
    return RecoveredWin(win, proof, chunk, poly)


def prove_win(compute: Compute, kzg: Kzg, win: RecordWin) -> Solution:
    """Regenerate the record's PoS table, recover its polynomial and open it at the winning s-bucket."""
    (solution,) = prove_wins(compute, kzg, [win])
    if isinstance(solution, Exception):
        raise solution
    return solution


def prove_wins(compute: Compute, kzg: Kzg, wins: Sequence[RecordWin]) -> list[Solution | ReadingError]:
    """Several wins at once: each record recovered on its own (a record that cannot be read fails
    alone, as its ReadingError), then every chunk witness from one batched MSM."""
    recovered: list[RecoveredWin | ReadingError] = []
    for win in wins:
        try:
            recovered.append(recover_win(compute, win))
        except ReadingError as e:
            recovered.append(e)
    ready = [r for r in recovered if isinstance(r, RecoveredWin)]
    witnesses = iter(kzg.open_many(compute, [(r.poly, r.win.s_bucket) for r in ready], RECORD_NUM_S_BUCKETS))
    return [r.solution(next(witnesses)) if isinstance(r, RecoveredWin) else r for r in recovered]


def warm_up_proving(compute: Compute, kzg: Kzg) -> None:
    """Run every kernel a proof uses once, on small inputs, so that no proof pays for compilation:
    the backend's own warm-up (PoS tables), proof hashing, scalar decoding, recovery of a polynomial
    with a missing shard (NTTs, products, inversion, the zero polynomial) and one opening (MSM)."""
    compute.warm_up()
    compute.hash_rows(np.zeros((1, POS_PROOF_SIZE), np.uint8))
    shards = field.scalars_to_rows(compute, np.zeros((8, 32), np.uint8))
    present = np.ones(8, bool)
    present[1] = False
    poly = erasure.recover_poly(compute, shards, present)
    kzg.open_many(compute, [(poly, 1)], 8)


def prove_record(
    compute: Compute,
    kzg: Kzg,
    public_key: bytes,
    reward_address: bytes,
    sector: PlottedSectorView,
    piece_offset: PieceOffset,
    s_bucket: SBucket,
) -> Solution:
    return prove_win(compute, kzg, RecordWin.read(public_key, reward_address, sector, piece_offset, s_bucket))


def prove_audit(
    compute: Compute,
    kzg: Kzg,
    public_key: bytes,
    reward_address: bytes,
    sector: PlottedSectorView,
    audit: AuditResult,
) -> Iterator[Solution]:
    """Solutions for an audit's winning records, best distance first (lazily: stop when done)."""
    for piece_offset, _distance in winning_records(sector, audit):
        yield prove_record(compute, kzg, public_key, reward_address, sector, piece_offset, audit.s_bucket)
