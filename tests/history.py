"""A small synthetic archived history for farmer-side tests.

Only the pieces a test sector selects get real records; every other record commitment of the
segment is the identity point. The segment commitment and record witnesses are computed over all
256 commitments exactly as the archiver does, so piece checks run the production path.
"""

from __future__ import annotations

import numpy as np

from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import NUM_PIECES, RECORD_NUM_CHUNKS
from autonomys_farmer.protocol.kzg import IDENTITY_G1, Kzg
from autonomys_farmer.protocol.pieces import (
    Piece,
    record_commitment,
    record_witnesses,
    segment_commitment,
)
from autonomys_farmer.protocol.types import PieceIndex


def source_like_record(rng: np.random.Generator) -> np.ndarray:
    """Chunks as the archiver writes source records: a zero byte then 31 payload bytes."""
    chunks = rng.integers(0, 256, (RECORD_NUM_CHUNKS, 32), dtype=np.uint8)
    chunks[:, 0] = 0
    return chunks


class SyntheticHistory:
    def __init__(self, compute: Compute, kzg: Kzg, piece_indices: list[int], seed: int = 0) -> None:
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
