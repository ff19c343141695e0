"""Solution verification as a node does it (protocol.md §9); checks run in the upstream order."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from autonomys_farmer.protocol import pos
from autonomys_farmer.protocol.auditing import chunk_distance
from autonomys_farmer.protocol.constants import NUM_PIECES, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.field import BLS_MODULUS
from autonomys_farmer.protocol.hashes import blake3_254_hash_to_scalar, xor_bytes
from autonomys_farmer.protocol.kzg import Kzg, KzgError, decode_g1
from autonomys_farmer.protocol.sector import (
    derive_evaluation_seed,
    derive_expiration_history_size,
    derive_global_challenge,
    derive_global_randomness,
    derive_piece_index,
    derive_s_bucket_audit_index,
    derive_sector_id,
    derive_sector_slot_challenge,
)
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.protocol.types import PieceIndex


class VerificationErrorKind(Enum):
    INVALID_PROOF_OF_SPACE = "InvalidProofOfSpace"
    OUTSIDE_SOLUTION_RANGE = "OutsideSolutionRange"
    INVALID_CHUNK_WITNESS = "InvalidChunkWitness"
    INVALID_CHUNK = "InvalidChunk"
    FUTURE_HISTORY_SIZE = "FutureHistorySize"
    INVALID_PIECE_OFFSET = "InvalidPieceOffset"
    INVALID_HISTORY_SIZE = "InvalidHistorySize"
    SECTOR_EXPIRED = "SectorExpired"
    INVALID_PIECE = "InvalidPiece"


class SolutionVerificationError(Exception):
    def __init__(self, kind: VerificationErrorKind, detail: str = "") -> None:
        super().__init__(f"{kind.value}{': ' + detail if detail else ''}")
        self.kind = kind


@dataclass(frozen=True)
class PieceCheckParams:
    max_pieces_in_sector: int
    segment_commitment: bytes  # of the segment holding the solution's piece
    recent_segments: int
    recent_history_fraction: tuple[int, int]
    min_sector_lifetime: int
    current_history_size: int
    sector_expiration_check_segment_commitment: bytes | None


def solution_piece_index(
    solution: Solution, max_pieces_in_sector: int, recent_segments: int, recent_history_fraction: tuple[int, int]
) -> PieceIndex:
    """The piece a solution claims; the node fetches that segment's commitment for the piece check."""
    sid = derive_sector_id(solution.public_key, solution.sector_index, solution.history_size)
    return derive_piece_index(
        sid,
        solution.piece_offset,
        solution.history_size,
        max_pieces_in_sector,
        recent_segments,
        recent_history_fraction,
    )


def verify_solution(
    solution: Solution,
    slot: int,
    proof_of_time: bytes,
    solution_range: int,
    kzg: Kzg,
    piece_check: PieceCheckParams | None = None,
) -> int:
    """Return the solution distance, or raise SolutionVerificationError for the first failed check."""
    sid = derive_sector_id(solution.public_key, solution.sector_index, solution.history_size)
    challenge = derive_global_challenge(derive_global_randomness(proof_of_time), slot)
    ssc = derive_sector_slot_challenge(sid, challenge)
    s_bucket = derive_s_bucket_audit_index(ssc)

    seed = derive_evaluation_seed(sid, solution.piece_offset)
    if not pos.is_proof_valid(seed, s_bucket, solution.proof_of_space):
        raise SolutionVerificationError(VerificationErrorKind.INVALID_PROOF_OF_SPACE)

    masked = xor_bytes(solution.chunk, pos.proof_hash(solution.proof_of_space))
    distance = chunk_distance(challenge, ssc, masked)
    if distance > solution_range // 2:
        raise SolutionVerificationError(
            VerificationErrorKind.OUTSIDE_SOLUTION_RANGE, f"distance {distance} > {solution_range // 2}"
        )

    try:
        decode_g1(solution.record_commitment)
        decode_g1(solution.chunk_witness)
    except KzgError as e:
        raise SolutionVerificationError(VerificationErrorKind.INVALID_CHUNK_WITNESS, str(e)) from e
    if int.from_bytes(solution.chunk, "big") >= BLS_MODULUS:
        raise SolutionVerificationError(VerificationErrorKind.INVALID_CHUNK)
    if not kzg.verify(
        solution.record_commitment, RECORD_NUM_S_BUCKETS, s_bucket, solution.chunk, solution.chunk_witness
    ):
        raise SolutionVerificationError(VerificationErrorKind.INVALID_CHUNK_WITNESS)

    if piece_check is not None:
        _check_piece(solution, sid, piece_check, kzg)
    return distance


def _check_piece(solution: Solution, sid: bytes, p: PieceCheckParams, kzg: Kzg) -> None:
    if solution.history_size > p.current_history_size + 1:
        raise SolutionVerificationError(
            VerificationErrorKind.FUTURE_HISTORY_SIZE,
            f"history size {solution.history_size} > current {p.current_history_size} + 1",
        )
    if solution.piece_offset >= p.max_pieces_in_sector:
        raise SolutionVerificationError(
            VerificationErrorKind.INVALID_PIECE_OFFSET,
            f"piece offset {solution.piece_offset} >= max {p.max_pieces_in_sector}",
        )
    if p.sector_expiration_check_segment_commitment is not None:
        expiration = derive_expiration_history_size(
            sid, solution.history_size, p.sector_expiration_check_segment_commitment, p.min_sector_lifetime
        )
        if expiration is None:
            raise SolutionVerificationError(VerificationErrorKind.INVALID_HISTORY_SIZE)
        if expiration <= p.current_history_size:
            raise SolutionVerificationError(
                VerificationErrorKind.SECTOR_EXPIRED, f"expired at history size {expiration}"
            )
    position = derive_piece_index(
        sid, solution.piece_offset, solution.history_size, p.max_pieces_in_sector,
        p.recent_segments, p.recent_history_fraction,
    ).position()  # fmt: skip
    try:
        decode_g1(p.segment_commitment)
        decode_g1(solution.record_witness)
    except KzgError as e:
        raise SolutionVerificationError(VerificationErrorKind.INVALID_PIECE, str(e)) from e
    if not kzg.verify(
        p.segment_commitment,
        NUM_PIECES,
        position,
        blake3_254_hash_to_scalar(solution.record_commitment),
        solution.record_witness,
    ):
        raise SolutionVerificationError(VerificationErrorKind.INVALID_PIECE, "record witness does not open")
