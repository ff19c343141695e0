"""A small synthetic archived history: the farm of the tests, the benches and `benchmark gpu`.

Only the pieces a test sector selects get real records; every other record commitment of the
segment is the identity point. The segment commitment and record witnesses are computed over all
256 commitments exactly as the archiver does, so piece checks run the production path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autonomys_farmer.protocol.auditing import audit_sector
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import NUM_PIECES, RECORD_NUM_CHUNKS, U64_MAX
from autonomys_farmer.protocol.kzg import IDENTITY_G1, Kzg
from autonomys_farmer.protocol.pieces import (
    Piece,
    record_commitment,
    record_witnesses,
    segment_commitment,
)
from autonomys_farmer.protocol.plotting import PlottedSector, SectorRecords, plot_sector_in_memory
from autonomys_farmer.protocol.proving import RecordWin, winning_records
from autonomys_farmer.protocol.reading import PlottedSectorView
from autonomys_farmer.protocol.sector import (
    FarmerProtocolInfo,
    RecordMetadata,
    derive_global_challenge,
    derive_global_randomness,
    derive_sector_id,
    derive_sector_piece_indices,
)
from autonomys_farmer.protocol.types import PieceIndex, SectorIndex


def source_like_record(rng: np.random.Generator) -> np.ndarray:
    """Chunks as the archiver writes source records: a zero byte then 31 payload bytes."""
    chunks = rng.integers(0, 256, (RECORD_NUM_CHUNKS, 32), dtype=np.uint8)
    chunks[:, 0] = 0
    return chunks


def synthetic_sector(pieces: int, rng: np.random.Generator) -> SectorRecords:
    """Records shaped as the archiver writes them, for timing: encoding does not check their metadata."""
    records = np.empty((pieces, RECORD_NUM_CHUNKS, 32), np.uint8)
    for i in range(pieces):
        records[i] = source_like_record(rng)
    return SectorRecords(records, [RecordMetadata(bytes(48), bytes(48), bytes(32))] * pieces)


class SyntheticHistory:
    def __init__(self, compute: Compute, kzg: Kzg, piece_indices: Sequence[int], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.pieces: dict[int, Piece] = {}
        self.segment_commitments: dict[int, bytes] = {}
        by_segment: dict[int, list[int]] = {}
        for index in sorted(set(piece_indices)):
            by_segment.setdefault(PieceIndex(index).segment_index(), []).append(index)
        for seg, indices in by_segment.items():
            records = {i: source_like_record(rng) for i in indices}
            commitments = [IDENTITY_G1] * NUM_PIECES
            for i, rec in records.items():
                commitments[PieceIndex(i).position()] = record_commitment(compute, kzg, rec)
            self.segment_commitments[seg] = segment_commitment(compute, kzg, commitments)
            witnesses = record_witnesses(compute, kzg, commitments, [PieceIndex(i).position() for i in indices])
            for i, w in zip(indices, witnesses, strict=True):
                self.pieces[i] = Piece.assemble(records[i].tobytes(), commitments[PieceIndex(i).position()], w)


def plotted_two_piece_sector(
    compute: Compute, kzg: Kzg, public_key: bytes, info: FarmerProtocolInfo
) -> tuple[SyntheticHistory, list[PieceIndex], PlottedSector]:
    """Sector 0 of `public_key` with 2 pieces of a synthetic history: the proving tests' and benches' farm."""
    indices = derive_sector_piece_indices(derive_sector_id(public_key, 0, info.history_size), 2, info)
    history = SyntheticHistory(compute, kzg, indices)
    pieces = [history.pieces[i] for i in indices]
    plotted = plot_sector_in_memory(compute, public_key, SectorIndex(0), info.history_size, pieces)
    return history, indices, plotted


def slot_wins(
    compute: Compute, public_key: bytes, plotted: PlottedSector, wanted: int, max_slots: int
) -> list[RecordWin]:
    """The winning records of slots 1, 2, … (the widest solution range) until `wanted` are found."""
    view = PlottedSectorView.open(plotted.data, plotted.metadata)
    wins: list[RecordWin] = []
    for slot in range(1, max_slots):
        challenge = derive_global_challenge(derive_global_randomness(bytes(16)), slot)
        audit = audit_sector(compute, public_key, challenge, U64_MAX, plotted.data, plotted.metadata)
        for offset, _distance in winning_records(view, audit):
            wins.append(RecordWin.read(public_key, public_key, view, offset, audit.s_bucket))
        if len(wins) >= wanted:
            break
    return wins
