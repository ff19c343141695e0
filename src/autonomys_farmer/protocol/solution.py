"""Solution (protocol.md §8.1): SCALE bytes (412) and the node RPC's JSON shape."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from autonomys_farmer.protocol.constants import COMMITMENT_SIZE, SOLUTION_SCALE_SIZE
from autonomys_farmer.protocol.hexjson import HexError, hex_bytes
from autonomys_farmer.protocol.pos import POS_PROOF_SIZE
from autonomys_farmer.protocol.types import HistorySize, PieceOffset, SectorIndex

_LAYOUT = struct.Struct("<32s32sHQH48s48s32s48s160s")
assert _LAYOUT.size == SOLUTION_SCALE_SIZE


class SolutionError(ValueError):
    """A solution that cannot be decoded (wrong lengths, bad hex, bad field types)."""


def _hex_field(obj: dict[str, object], name: str, size: int) -> bytes:
    try:
        return hex_bytes(obj.get(name), size, name)
    except HexError as e:
        raise SolutionError(str(e)) from e


def _int_field(obj: dict[str, object], name: str, bits: int) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise SolutionError(f"{name} must be a u{bits} number, got {value!r}")
    return value


@dataclass(frozen=True)
class Solution:
    public_key: bytes
    reward_address: bytes
    sector_index: SectorIndex
    history_size: HistorySize
    piece_offset: PieceOffset
    record_commitment: bytes
    record_witness: bytes
    chunk: bytes
    chunk_witness: bytes
    proof_of_space: bytes

    def __post_init__(self) -> None:
        sizes = {
            "public_key": (self.public_key, 32),
            "reward_address": (self.reward_address, 32),
            "record_commitment": (self.record_commitment, COMMITMENT_SIZE),
            "record_witness": (self.record_witness, COMMITMENT_SIZE),
            "chunk": (self.chunk, 32),
            "chunk_witness": (self.chunk_witness, COMMITMENT_SIZE),
            "proof_of_space": (self.proof_of_space, POS_PROOF_SIZE),
        }
        for name, (value, size) in sizes.items():
            if not isinstance(value, bytes) or len(value) != size:
                raise SolutionError(f"{name} must be {size} bytes")
        if self.history_size < 1:
            raise SolutionError(f"history_size must be non-zero, got {self.history_size}")
        object.__setattr__(self, "sector_index", SectorIndex(self.sector_index))
        object.__setattr__(self, "history_size", HistorySize(self.history_size))
        object.__setattr__(self, "piece_offset", PieceOffset(self.piece_offset))

    def to_scale(self) -> bytes:
        return _LAYOUT.pack(
            self.public_key, self.reward_address, self.sector_index, self.history_size, self.piece_offset,
            self.record_commitment, self.record_witness, self.chunk, self.chunk_witness, self.proof_of_space,
        )  # fmt: skip

    @classmethod
    def from_scale(cls, data: bytes) -> Solution:
        if len(data) != SOLUTION_SCALE_SIZE:
            raise SolutionError(f"SCALE solution must be {SOLUTION_SCALE_SIZE} bytes, got {len(data)}")
        return cls(*_LAYOUT.unpack(data))

    def to_json(self) -> dict[str, object]:
        return {
            "publicKey": self.public_key.hex(),
            "rewardAddress": self.reward_address.hex(),
            "sectorIndex": self.sector_index,
            "historySize": self.history_size,
            "pieceOffset": self.piece_offset,
            "recordCommitment": self.record_commitment.hex(),
            "recordWitness": self.record_witness.hex(),
            "chunk": list(self.chunk),  # ScalarBytes is serde(transparent) over [u8; 32]
            "chunkWitness": self.chunk_witness.hex(),
            "proofOfSpace": self.proof_of_space.hex(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> Solution:
        chunk = obj.get("chunk")
        if (
            not isinstance(chunk, list)
            or len(chunk) != 32
            or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in chunk)
        ):
            raise SolutionError(f"chunk must be an array of 32 byte values, got {chunk!r}")
        history_size = _int_field(obj, "historySize", 64)
        if history_size == 0:
            raise SolutionError("historySize must be non-zero")
        return cls(
            public_key=_hex_field(obj, "publicKey", 32),
            reward_address=_hex_field(obj, "rewardAddress", 32),
            sector_index=SectorIndex(_int_field(obj, "sectorIndex", 16)),
            history_size=HistorySize(history_size),
            piece_offset=PieceOffset(_int_field(obj, "pieceOffset", 16)),
            record_commitment=_hex_field(obj, "recordCommitment", COMMITMENT_SIZE),
            record_witness=_hex_field(obj, "recordWitness", COMMITMENT_SIZE),
            chunk=bytes(chunk),
            chunk_witness=_hex_field(obj, "chunkWitness", COMMITMENT_SIZE),
            proof_of_space=_hex_field(obj, "proofOfSpace", POS_PROOF_SIZE),
        )


def pieces_to_solution_range(pieces: int, slot_probability: tuple[int, int]) -> int:
    """Solution range that makes `pieces` of plotted pieces win one slot in slot_probability."""
    num, den = slot_probability
    return (2**64 - 1) // den * num // 32768 * 65536 // pieces


def solution_range_to_pieces(solution_range: int, slot_probability: tuple[int, int]) -> int:
    num, den = slot_probability
    return (2**64 - 1) // den * num // 32768 * 65536 // solution_range
