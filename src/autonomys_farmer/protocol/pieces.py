"""Pieces and segments (protocol.md §1, §4.3; node-and-cluster.md §3.3–§3.6).

A piece is record (1 MiB) ‖ record commitment (48) ‖ record witness (48). The witness opens the
segment commitment, a KZG commitment over H254 of the segment's 256 record commitments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autonomys_farmer.backends.cpu import fr_kernel as fr
from autonomys_farmer.protocol.constants import (
    COMMITMENT_SIZE,
    NUM_PIECES,
    PIECE_SIZE,
    RECORD_NUM_CHUNKS,
    RECORD_SIZE,
)
from autonomys_farmer.protocol.field import FieldError
from autonomys_farmer.protocol.hashes import blake3_254_hash_to_scalar
from autonomys_farmer.protocol.kzg import Kzg, KzgError, decode_g1


class PieceError(ValueError):
    """Bad piece bytes or index."""


def segment_index(piece_index: int) -> int:
    return piece_index // NUM_PIECES


def piece_position(piece_index: int) -> int:
    return piece_index % NUM_PIECES


def is_source(piece_index: int) -> bool:
    return piece_index % 2 == 0


def source_position(piece_index: int) -> int:
    if not is_source(piece_index):
        raise PieceError(f"piece {piece_index} is a parity piece and has no source position")
    return piece_position(piece_index) // 2


def from_source_position(source_position_: int, segment_index_: int) -> int:
    return segment_index_ * NUM_PIECES + 2 * source_position_


def next_source_index(piece_index: int) -> int:
    if not is_source(piece_index):
        raise PieceError(f"piece {piece_index} is a parity piece")
    return piece_index + 2


@dataclass(frozen=True)
class Piece:
    data: bytes

    def __post_init__(self) -> None:
        if len(self.data) != PIECE_SIZE:
            raise PieceError(f"piece must be {PIECE_SIZE} bytes, got {len(self.data)}")

    @classmethod
    def assemble(cls, record: bytes, commitment: bytes, witness: bytes) -> Piece:
        return cls(record + commitment + witness)

    @property
    def record(self) -> bytes:
        return self.data[:RECORD_SIZE]

    @property
    def commitment(self) -> bytes:
        return self.data[RECORD_SIZE : RECORD_SIZE + COMMITMENT_SIZE]

    @property
    def witness(self) -> bytes:
        return self.data[RECORD_SIZE + COMMITMENT_SIZE :]

    def record_chunks(self) -> np.ndarray:
        return np.frombuffer(self.record, np.uint8).reshape(RECORD_NUM_CHUNKS, 32)


def record_commitment(kzg: Kzg, record_chunks: np.ndarray) -> bytes:
    """commit(poly(chunks)) over the size-32768 domain."""
    return kzg.commit(kzg.poly(fr.scalars_to_mont(record_chunks)))


def segment_polynomial(record_commitments: list[bytes]) -> np.ndarray:
    """poly([H254(commitment_k)]) over the size-256 domain."""
    if len(record_commitments) != NUM_PIECES:
        raise PieceError(f"a segment has {NUM_PIECES} record commitments, got {len(record_commitments)}")
    values = np.frombuffer(b"".join(blake3_254_hash_to_scalar(c) for c in record_commitments), np.uint8)
    return fr.ifft(fr.scalars_to_mont(values.reshape(NUM_PIECES, 32)))


def segment_commitment(kzg: Kzg, record_commitments: list[bytes]) -> bytes:
    return kzg.commit(segment_polynomial(record_commitments))


def record_witnesses(kzg: Kzg, record_commitments: list[bytes], positions: list[int]) -> list[bytes]:
    """Record witnesses (openings of the segment polynomial) for the given piece positions."""
    poly = segment_polynomial(record_commitments)
    return [kzg.create_witness(poly, NUM_PIECES, p) for p in positions]


def is_record_witness_valid(kzg: Kzg, commitment: bytes, witness: bytes, seg_commitment: bytes, position: int) -> bool:
    return kzg.verify(seg_commitment, NUM_PIECES, position, blake3_254_hash_to_scalar(commitment), witness)


def is_piece_valid(kzg: Kzg, piece: Piece, seg_commitment: bytes, position: int) -> bool:
    """Farmer-side check of a downloaded piece: chunks are scalars, the commitment is the record's,
    and the witness opens the segment commitment at this position."""
    try:
        decode_g1(piece.witness)
        decode_g1(seg_commitment)
        computed = record_commitment(kzg, piece.record_chunks())
    except (KzgError, FieldError):
        return False
    if computed != piece.commitment:
        return False
    return is_record_witness_valid(kzg, piece.commitment, piece.witness, seg_commitment, position)
