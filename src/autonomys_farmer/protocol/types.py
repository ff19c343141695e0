"""Custom types of the protocol: ints that say what they count (consensus-specs' `Slot`, `Epoch`).

They are plain ints at run time (arithmetic gives ints back); the type checker keeps a piece index from
being passed where a segment index is meant. The derivations upstream defines on them (subspace-core-
primitives' `PieceIndex::segment_index`, `HistorySize::sector_expiration_check`, ...) are their methods.
"""

from __future__ import annotations

from autonomys_farmer.protocol.constants import NUM_PIECES


class PieceIndexError(ValueError):
    """A derivation that only exists for source pieces asked of a parity piece."""


class SegmentIndex(int):
    """Index of an archived segment."""

    def first_piece_index(self) -> PieceIndex:
        return PieceIndex(self * NUM_PIECES)


class PieceIndex(int):
    """Index of a piece in the archived history: segment index · 256 + position in the segment."""

    def segment_index(self) -> SegmentIndex:
        return SegmentIndex(self // NUM_PIECES)

    def position(self) -> int:
        """Position within its segment: even for source pieces, odd for parity pieces."""
        return self % NUM_PIECES

    def is_source(self) -> bool:
        return self % 2 == 0

    def source_position(self) -> int:
        """Index of a source piece among its segment's 128 source pieces."""
        if not self.is_source():
            raise PieceIndexError(f"piece {int(self)} is a parity piece and has no source position")
        return self.position() // 2

    @classmethod
    def from_source_position(cls, source_position: int, segment_index: SegmentIndex) -> PieceIndex:
        return cls(segment_index * NUM_PIECES + 2 * source_position)

    def next_source_index(self) -> PieceIndex:
        if not self.is_source():
            raise PieceIndexError(f"piece {int(self)} is a parity piece")
        return PieceIndex(self + 2)


class HistorySize(int):
    """Size of the archived history in segments (non-zero)."""

    def in_segments_index(self) -> SegmentIndex:
        """Index of the last segment of this history."""
        return SegmentIndex(self - 1)

    def sector_expiration_check(self, min_sector_lifetime: int) -> HistorySize:
        """History size whose last segment's commitment decides a sector's expiry (protocol.md §2)."""
        return HistorySize(self + min_sector_lifetime)


class SectorIndex(int):
    """Index of a sector within a farm (u16)."""


class PieceOffset(int):
    """Position of a piece (a record) within a sector (u16)."""


class SBucket(int):
    """Index of one of a record's 65536 erasure-coded chunks (u16); also the audited chunk column."""


class SlotNumber(int):
    """Proof-of-time slot number (u64)."""
