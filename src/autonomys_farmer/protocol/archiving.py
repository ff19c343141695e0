"""Archiving (node-and-cluster.md §3): blocks -> segments -> 256 pieces with KZG commitments.

The Archiver packs SCALE-encoded blocks into 130,023,424-byte segments of items (Block, BlockStart,
BlockContinuation, ParentSegmentHeader; zero bytes decode as Padding), spilling a block that does
not fit into the next segment. `archive_segment` turns segment bytes into pieces: erasure coding
across the 128 source records, record commitments, the segment commitment and record witnesses.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from py_arkworks_bls12381 import G1Point, Scalar

from autonomys_farmer.protocol import erasure
from autonomys_farmer.protocol import field as fr
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import (
    NUM_PIECES,
    NUM_RAW_RECORDS,
    RECORD_NUM_CHUNKS,
    RECORDED_HISTORY_SEGMENT_SIZE,
)
from autonomys_farmer.protocol.field import BLS_MODULUS, SAFE_BYTES, bit_reverse_indices, root_of_unity
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.pieces import Piece, record_commitments, record_witnesses, segment_commitment
from autonomys_farmer.protocol.scale import ScaleError, compact_size, encode_compact
from autonomys_farmer.protocol.types import SegmentIndex


class ArchivingError(ValueError):
    """Bad segment header bytes/JSON or archiver misuse."""


# --- Segment headers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LastArchivedBlock:
    number: int
    partial: int | None  # bytes archived so far, or None when the block is complete

    def to_scale(self) -> bytes:
        progress = b"\x00" if self.partial is None else b"\x01" + struct.pack("<I", self.partial)
        return struct.pack("<I", self.number) + progress

    def to_json(self) -> dict[str, object]:
        progress: object = "complete" if self.partial is None else {"partial": self.partial}
        return {"number": self.number, "archivedProgress": progress}


@dataclass(frozen=True)
class SegmentHeader:
    segment_index: SegmentIndex
    segment_commitment: bytes
    prev_segment_header_hash: bytes
    last_archived_block: LastArchivedBlock

    def __post_init__(self) -> None:
        object.__setattr__(self, "segment_index", SegmentIndex(self.segment_index))

    def to_scale(self) -> bytes:
        return (
            b"\x00"
            + struct.pack("<Q", self.segment_index)
            + self.segment_commitment
            + self.prev_segment_header_hash
            + self.last_archived_block.to_scale()
        )

    def hash(self) -> bytes:
        return blake3_hash(self.to_scale())

    @classmethod
    def from_scale(cls, data: bytes) -> SegmentHeader:
        if len(data) not in (94, 98) or data[0] != 0:
            raise ArchivingError(f"segment header must be a 94/98-byte V0 encoding, got {len(data)} bytes")
        (index,) = struct.unpack_from("<Q", data, 1)
        (number,) = struct.unpack_from("<I", data, 89)
        if data[93] == 0 and len(data) == 94:
            partial = None
        elif data[93] == 1 and len(data) == 98:
            (partial,) = struct.unpack_from("<I", data, 94)
        else:
            raise ArchivingError("bad archived progress in segment header")
        return cls(index, data[9:57], data[57:89], LastArchivedBlock(number, partial))

    def to_json(self) -> dict[str, object]:
        return {
            "v0": {
                "segmentIndex": self.segment_index,
                "segmentCommitment": self.segment_commitment.hex(),
                "prevSegmentHeaderHash": self.prev_segment_header_hash.hex(),
                "lastArchivedBlock": self.last_archived_block.to_json(),
            }
        }

    @classmethod
    def from_json(cls, obj: object) -> SegmentHeader:
        try:
            v0 = obj["v0"]  # type: ignore[index]
            block = v0["lastArchivedBlock"]
            progress = block["archivedProgress"]
            partial = None if progress == "complete" else int(progress["partial"])
            commitment = bytes.fromhex(v0["segmentCommitment"])
            prev = bytes.fromhex(v0["prevSegmentHeaderHash"])
            if len(commitment) != 48 or len(prev) != 32:
                raise ValueError("wrong commitment or hash length")
            index = SegmentIndex(int(v0["segmentIndex"]))
            return cls(index, commitment, prev, LastArchivedBlock(int(block["number"]), partial))
        except (KeyError, TypeError, ValueError) as e:
            raise ArchivingError(f"malformed segment header JSON {obj!r}: {e}") from e


# --- Segment items and the archiver ----------------------------------------------------------------

ItemKind = Literal["block", "block_start", "block_continuation", "parent_segment_header"]
_VARIANT = {"block": 1, "block_start": 2, "block_continuation": 3, "parent_segment_header": 4}


@dataclass
class SegmentItem:
    kind: ItemKind
    data: bytes
    block_number: int = 0
    archived_before: int = 0  # bytes of this block in earlier segments (continuations)
    block_size: int = 0  # full encoded block size

    def encoded_size(self) -> int:
        if self.kind == "parent_segment_header":
            return 1 + len(self.data)
        return 1 + compact_size(len(self.data)) + len(self.data)

    def encode(self) -> bytes:
        if self.kind == "parent_segment_header":
            return bytes([_VARIANT[self.kind]]) + self.data
        return bytes([_VARIANT[self.kind]]) + encode_compact(len(self.data)) + self.data


@dataclass(frozen=True)
class ArchivedSegment:
    header: SegmentHeader
    pieces: list[Piece] = field(repr=False)


SegmentArchiveFn = Callable[[bytes], tuple[bytes, list[tuple[bytes, bytes, bytes]]]]


@dataclass
class Archiver:
    """Stateful blocks-to-segments packer; `add_block` returns the segments that became full.

    `archive` turns full segment bytes into (segment commitment, pieces); `Archiver.with_kzg` uses
    the real KZG path, tests of the packing rules can pass something cheaper.
    """

    archive: SegmentArchiveFn
    segment_index: int = 0
    prev_header_hash: bytes = bytes(32)
    last_archived_block: LastArchivedBlock = field(default_factory=lambda: LastArchivedBlock(0, 0))
    buffer: deque[SegmentItem] = field(default_factory=deque)

    @classmethod
    def with_kzg(cls, compute: Compute, kzg: Kzg, progress: Callable[[int, int], None] | None = None) -> Archiver:
        """`progress(records committed, records)` while a segment is archived."""
        return cls(lambda segment: archive_segment(compute, kzg, segment, progress))

    @classmethod
    def resume(cls, archive: SegmentArchiveFn, last: SegmentHeader, partial_block: bytes | None) -> Archiver:
        """The archiver as it was after producing segment `last`: the next segment starts with `last`
        (as a parent header item) and, if a block was split, that block's remainder (`partial_block` is
        the whole block then; the header says how much of it was archived)."""
        archiver = cls(archive, last.segment_index + 1, last.hash(), last.last_archived_block)
        archiver.buffer.append(SegmentItem("parent_segment_header", last.to_scale()))
        block = last.last_archived_block
        if block.partial is not None:
            if partial_block is None:
                raise ArchivingError(f"block {block.number} was partly archived: its bytes are needed to resume")
            remainder = partial_block[block.partial :]
            archiver.buffer.append(
                SegmentItem("block_continuation", remainder, block.number, block.partial, len(partial_block))
            )
        return archiver

    def add_block(self, block: bytes, number: int) -> list[ArchivedSegment]:
        self.buffer.append(SegmentItem("block", block, number, 0, len(block)))
        archived = []
        while (segment := self._produce_segment()) is not None:
            archived.append(segment)
        return archived

    def _produce_segment(self) -> ArchivedSegment | None:
        items: list[SegmentItem] = []
        size = 1  # the V0 variant byte
        while size < RECORDED_HISTORY_SEGMENT_SIZE - 2:
            if not self.buffer:
                self.buffer.extendleft(reversed(items))  # not enough data yet: wait for more blocks
                return None
            item = self.buffer.popleft()
            size += item.encoded_size()
            items.append(item)
        spill = size - RECORDED_HISTORY_SEGMENT_SIZE
        if spill > 0:
            last = items.pop()
            if last.kind not in ("block", "block_continuation"):
                raise ArchivingError(f"cannot split a {last.kind} item across segments")
            keep = len(last.data) - spill
            if keep > 0:
                items.append(
                    SegmentItem(
                        "block_start" if last.kind == "block" else "block_continuation",
                        last.data[:keep],
                        last.block_number,
                        last.archived_before,
                        last.block_size,
                    )
                )
                rest = last.data[keep:]
                self.buffer.appendleft(
                    SegmentItem(
                        "block_continuation", rest, last.block_number, last.archived_before + keep, last.block_size
                    )
                )
            else:
                self.buffer.appendleft(last)
        body = b"\x00" + b"".join(item.encode() for item in items)
        segment_bytes = body + bytes(RECORDED_HISTORY_SEGMENT_SIZE - len(body))
        for item in items:
            if item.kind == "parent_segment_header":
                continue
            archived = item.archived_before + len(item.data)
            partial = None if archived == item.block_size else archived
            self.last_archived_block = LastArchivedBlock(item.block_number, partial)
        commitment, pieces = self.archive(segment_bytes)
        header = SegmentHeader(
            SegmentIndex(self.segment_index), commitment, self.prev_header_hash, self.last_archived_block
        )
        self.prev_header_hash = header.hash()
        self.segment_index += 1
        self.buffer.appendleft(SegmentItem("parent_segment_header", header.to_scale()))
        return ArchivedSegment(header, [Piece.assemble(*p) for p in pieces])


def genesis_block_with_padding(compute: Compute, genesis_block: bytes, state_root: bytes) -> bytes:
    """Genesis is extended with ChaCha8 bytes (seeded by its state root) to fill segment 0 at once."""
    missing = RECORDED_HISTORY_SEGMENT_SIZE - len(genesis_block)
    if missing <= 0:
        return genesis_block
    keystream = compute.chacha8_keystream(state_root, -(-missing // 64))
    return genesis_block + keystream[:missing].tobytes()


# --- Segment bytes -> pieces -----------------------------------------------------------------------


def g1_fft(points: list[G1Point], inverse: bool = False) -> list[G1Point]:
    """Natural-order radix-2 FFT of G1 points over ω_n (n = len(points)); inverse includes 1/n."""
    n = len(points)
    omega = root_of_unity(n)
    if inverse:
        omega = pow(omega, -1, BLS_MODULUS)
    out = [points[i] for i in bit_reverse_indices(n)]
    length = 2
    while length <= n:
        w_len = pow(omega, n // length, BLS_MODULUS)
        twiddles = [Scalar(pow(w_len, k, BLS_MODULUS)) for k in range(length // 2)]
        for start in range(0, n, length):
            for k in range(length // 2):
                u = out[start + k]
                v = out[start + k + length // 2] * twiddles[k]
                out[start + k] = u + v
                out[start + k + length // 2] = u - v
        length *= 2
    if inverse:
        n_inv = Scalar(pow(n, -1, BLS_MODULUS))
        out = [p * n_inv for p in out]
    return out


def extend_commitments(kzg: Kzg, source_commitments: list[bytes]) -> list[bytes]:
    """256 record commitments from the 128 source ones by linearity (sources stay at even positions)."""
    points = [G1Point.from_compressed_bytes_unchecked(c) for c in source_commitments]
    coeffs = g1_fft(points, inverse=True) + [G1Point.identity()] * len(points)
    return [bytes(p.to_compressed_bytes()) for p in g1_fft(coeffs)]


def segment_records(segment_bytes: bytes) -> np.ndarray:
    """(128, 32768, 32) source records: every 31-byte chunk gets a leading zero byte."""
    if len(segment_bytes) != RECORDED_HISTORY_SEGMENT_SIZE:
        raise ArchivingError(f"segment must be {RECORDED_HISTORY_SEGMENT_SIZE} bytes, got {len(segment_bytes)}")
    raw = np.frombuffer(segment_bytes, np.uint8).reshape(NUM_RAW_RECORDS, RECORD_NUM_CHUNKS, SAFE_BYTES)
    records = np.zeros((NUM_RAW_RECORDS, RECORD_NUM_CHUNKS, 32), np.uint8)
    records[:, :, 1:] = raw
    return records


def archive_segment(
    compute: Compute, kzg: Kzg, segment_bytes: bytes, progress: Callable[[int, int], None] | None = None
) -> tuple[bytes, list[tuple[bytes, bytes, bytes]]]:
    """(segment commitment, [(record, record commitment, witness)] for the 256 piece positions);
    `progress` follows the source records' commitments, the bulk of the work."""
    source = segment_records(segment_bytes)
    # Erasure coding across records: chunk k of the 128 source records -> 128 parity chunks.
    by_chunk = np.ascontiguousarray(source.transpose(1, 0, 2)).reshape(-1, 32)
    rows = fr.scalars_to_rows(compute, by_chunk).reshape(RECORD_NUM_CHUNKS, NUM_RAW_RECORDS, 8)
    parity_rows = erasure.extend_batch(compute, rows)
    parity = fr.rows_to_scalars(compute, parity_rows.reshape(-1, 8)).reshape(RECORD_NUM_CHUNKS, NUM_RAW_RECORDS, 32)
    parity = parity.transpose(1, 0, 2)
    source_commitments = record_commitments(compute, kzg, source, progress)
    commitments = extend_commitments(kzg, source_commitments)
    seg_commitment = segment_commitment(compute, kzg, commitments)
    witnesses = record_witnesses(compute, kzg, commitments, list(range(NUM_PIECES)))
    pieces = []
    for position in range(NUM_PIECES):
        record = source[position // 2] if position % 2 == 0 else parity[position // 2]
        pieces.append((np.ascontiguousarray(record).tobytes(), commitments[position], witnesses[position]))
    return seg_commitment, pieces


__all__ = ["ArchivedSegment", "Archiver", "ScaleError", "SegmentHeader", "archive_segment"]
