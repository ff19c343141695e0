"""Pieces and segments (protocol.md §1, §4.3; node-and-cluster.md §3.3–§3.6).

A piece is record (1 MiB) ‖ record commitment (48) ‖ record witness (48). The witness opens the
segment commitment, a KZG commitment over H254 of the segment's 256 record commitments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from autonomys_farmer.protocol import field, g1
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import (
    COMMITMENT_SIZE,
    NUM_PIECES,
    PIECE_SIZE,
    RECORD_NUM_CHUNKS,
    RECORD_SIZE,
)
from autonomys_farmer.protocol.field import BLS_MODULUS, FieldError
from autonomys_farmer.protocol.hashes import blake3_254_hash_to_scalar, blake3_hash
from autonomys_farmer.protocol.kzg import Kzg, KzgError, affine_rows, decode_g1, msm


class PieceError(ValueError):
    """Bad piece bytes, or a segment of the wrong shape."""


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


def record_commitment(compute: Compute, kzg: Kzg, record_chunks: np.ndarray) -> bytes:
    """commit(poly(chunks)) over the size-32768 domain."""
    return record_commitments(compute, kzg, record_chunks[None])[0]


COMMIT_BATCH = 16  # records committed in one MSM launch (about 100 MB of working memory on the CPU)


def record_commitments(
    compute: Compute, kzg: Kzg, records: np.ndarray, progress: Callable[[int, int], None] | None = None
) -> list[bytes]:
    """record_commitment() of every record of a (count, 32768, 32) array, batched; `progress(done,
    total)` after each batch (archiving a segment takes a minute on a small CPU)."""
    out: list[bytes] = []
    if progress is not None:
        progress(0, records.shape[0])
    for start in range(0, records.shape[0], COMMIT_BATCH):
        batch = records[start : start + COMMIT_BATCH]
        rows = field.scalars_to_rows(compute, batch.reshape(-1, 32)).reshape(batch.shape[0], RECORD_NUM_CHUNKS, 8)
        out += kzg.commit_many(compute, field.ifft_batch(compute, rows))
        if progress is not None:
            progress(len(out), records.shape[0])
    return out


def segment_polynomial(compute: Compute, record_commitments: list[bytes]) -> np.ndarray:
    """poly([H254(commitment_k)]) over the size-256 domain."""
    if len(record_commitments) != NUM_PIECES:
        raise PieceError(f"a segment has {NUM_PIECES} record commitments, got {len(record_commitments)}")
    values = np.frombuffer(b"".join(blake3_254_hash_to_scalar(c) for c in record_commitments), np.uint8)
    return field.ifft(compute, field.scalars_to_rows(compute, values.reshape(NUM_PIECES, 32)))


def segment_commitment(compute: Compute, kzg: Kzg, record_commitments: list[bytes]) -> bytes:
    return kzg.commit(compute, segment_polynomial(compute, record_commitments))


def record_witnesses(compute: Compute, kzg: Kzg, record_commitments: list[bytes], positions: list[int]) -> list[bytes]:
    """Record witnesses (openings of the segment polynomial) for the given piece positions."""
    return kzg.create_witnesses(compute, segment_polynomial(compute, record_commitments), NUM_PIECES, positions)


def is_record_witness_valid(kzg: Kzg, commitment: bytes, witness: bytes, seg_commitment: bytes, position: int) -> bool:
    return kzg.verify(seg_commitment, NUM_PIECES, position, blake3_254_hash_to_scalar(commitment), witness)


def is_piece_valid(compute: Compute, kzg: Kzg, piece: Piece, seg_commitment: bytes, position: int) -> bool:
    """Farmer-side check of a downloaded piece: chunks are scalars, the commitment is the record's,
    and the witness opens the segment commitment at this position."""
    try:
        decode_g1(piece.witness)
        decode_g1(seg_commitment)
        computed = record_commitment(compute, kzg, piece.record_chunks())
    except (KzgError, FieldError):
        return False
    if computed != piece.commitment:
        return False
    return is_record_witness_valid(kzg, piece.commitment, piece.witness, seg_commitment, position)


BATCH_WEIGHT_BYTES = 16  # 128-bit weights: a bad piece passes a batch with probability <= 2^-127


def batch_weights(randomness: bytes, count: int) -> list[int]:
    """Nonzero weights for a batch check, derived from caller-supplied randomness."""
    if len(randomness) < BATCH_WEIGHT_BYTES:
        raise PieceError(f"batch verification needs at least {BATCH_WEIGHT_BYTES} random bytes")
    return [
        int.from_bytes(blake3_hash(randomness + k.to_bytes(4, "little"))[:BATCH_WEIGHT_BYTES], "little") | 1
        for k in range(count)
    ]


def are_pieces_valid(
    compute: Compute, kzg: Kzg, pieces: Sequence[tuple[Piece, bytes, int]], randomness: bytes
) -> list[bool]:
    """`is_piece_valid` for (piece, segment commitment, position) triples at about the cost of one.

    Commitments and openings are linear, so with random weights w_k a batch holds iff (but for a
    2^-127 chance) every piece in it does: commit(poly(Σ w_k·record_k)) == Σ w_k·commitment_k (one
    2^15 MSM instead of one per piece) and the witnesses pass `Kzg.verify_batch` (one pairing check).
    A failing batch is split in halves until the bad pieces stand alone (a batch of one is exactly
    the single-piece check, the weight being invertible)."""
    weights = batch_weights(randomness, len(pieces))
    valid = [True] * len(pieces)
    commitments = np.zeros((len(pieces), 2, g1.FP_LIMBS), np.uint32)  # decoded once for every batch
    for k, (piece, seg_commitment, _position) in enumerate(pieces):
        try:
            commitments[k] = affine_rows([decode_g1(piece.commitment)])[0]
            decode_g1(piece.witness)
            decode_g1(seg_commitment)
        except KzgError:
            valid[k] = False
        if valid[k] and not field.canonical_mask(piece.record_chunks()).all():
            valid[k] = False

    def holds(batch: list[int]) -> bool:
        combined = _weighted_record(compute, pieces[batch[0]][0], weights[batch[0]])
        for k in batch[1:]:  # one record's rows at a time: memory stays at two records
            combined = compute.add(combined, _weighted_record(compute, pieces[k][0], weights[k]))
        expected = msm(compute, commitments[batch], [weights[k] for k in batch])
        if kzg.commit(compute, kzg.poly(compute, combined)) != g1.compress(expected):
            return False
        openings = [
            (seg, NUM_PIECES, position, blake3_254_hash_to_scalar(piece.commitment), piece.witness)
            for piece, seg, position in (pieces[k] for k in batch)
        ]
        return kzg.verify_batch(compute, openings, [weights[k] for k in batch])

    pending = [[k for k, ok in enumerate(valid) if ok]]
    while pending:
        batch = pending.pop()
        if not batch or holds(batch):
            continue
        if len(batch) == 1:
            valid[batch[0]] = False
        else:
            pending += [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
    return valid


def _weighted_record(compute: Compute, piece: Piece, weight: int) -> np.ndarray:
    """Montgomery rows of weight·record in one multiplication: mont_mul(raw, w·R²) = w·raw·R."""
    factor = field.int_to_limbs(weight * field.R_MONT * field.R_MONT % BLS_MODULUS)[None, :]
    return compute.mul(field.bytes_to_rows(piece.record_chunks()), factor)
