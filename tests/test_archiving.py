"""Archiver packing rules and segment headers (node-and-cluster.md §3), without the KZG cost."""

from __future__ import annotations

import pytest

from autonomys_farmer.protocol.archiving import (
    Archiver,
    ArchivingError,
    LastArchivedBlock,
    SegmentHeader,
    genesis_block_with_padding,
    segment_records,
)
from autonomys_farmer.protocol.constants import RECORDED_HISTORY_SEGMENT_SIZE as SIZE
from autonomys_farmer.protocol.scale import decode_compact, encode_compact

HEADER_0_HASH = "73761a1572dda68ca4999c46c9654cee8aca2ddb1263a0bf720607964ed0e0f1"
HEADER_1_HASH = "8b211222edffa7cfb9230b18be46e3f0dd514f603d700903fb0bf1fe1e91233c"


def test_segment_header_vectors():
    h0 = SegmentHeader(0, b"\x11" * 48, bytes(32), LastArchivedBlock(0, 123))
    assert len(h0.to_scale()) == 98 and h0.hash().hex() == HEADER_0_HASH
    h1 = SegmentHeader(1, b"\x22" * 48, h0.hash(), LastArchivedBlock(5, None))
    assert len(h1.to_scale()) == 94 and h1.hash().hex() == HEADER_1_HASH
    for h in (h0, h1):
        assert SegmentHeader.from_scale(h.to_scale()) == h
        assert SegmentHeader.from_json(h.to_json()) == h
    assert h1.to_json()["v0"]["lastArchivedBlock"] == {"number": 5, "archivedProgress": "complete"}
    with pytest.raises(ArchivingError):
        SegmentHeader.from_json({"v0": {"segmentIndex": 1}})


@pytest.mark.parametrize("value", [0, 63, 64, 16383, 16384, 2**30 - 1, 2**30, 2**64 - 1])
def test_compact_round_trip(value):
    encoded = encode_compact(value)
    assert decode_compact(encoded) == (value, len(encoded))
    assert encode_compact(1_048_672) == ((1_048_672 << 2) | 2).to_bytes(4, "little")


class Recorder:
    """Stands in for the KZG step: keeps segment bytes, returns a fixed commitment."""

    def __init__(self) -> None:
        self.segments: list[bytes] = []

    def __call__(self, segment: bytes):
        self.segments.append(segment)
        return b"\x99" * 48, []


def test_genesis_fills_segment_zero_and_spills_six_bytes(compute):
    recorder = Recorder()
    archiver = Archiver(recorder)
    genesis = genesis_block_with_padding(compute, b"genesis block", b"\x05" * 32)
    assert len(genesis) == SIZE
    (segment,) = archiver.add_block(genesis, 0)
    assert segment.header.last_archived_block == LastArchivedBlock(0, SIZE - 6)
    data = recorder.segments[0]
    assert len(data) == SIZE
    assert data[0] == 0 and data[1] == 2  # V0, then BlockStart
    length, offset = decode_compact(data, 2)
    assert length == SIZE - 6 and data[offset : offset + length] == genesis[: SIZE - 6]
    # The next segment starts with the parent header, then the 6-byte continuation of block 0.
    big = b"\x07" * (SIZE // 2)
    assert archiver.add_block(big, 1) == []
    (second,) = archiver.add_block(big, 2)
    data = recorder.segments[1]
    assert data[1] == 4 and data[2:96] == segment.header.to_scale()[:94]
    header_len = len(segment.header.to_scale())
    assert data[2 + header_len] == 3  # BlockContinuation
    assert decode_compact(data, 3 + header_len)[0] == 6
    assert second.header.prev_segment_header_hash == segment.header.hash()
    assert second.header.segment_index == 1
    # Block 1 fitted whole; block 2 spilled: partial progress counts its bytes in this segment.
    block = second.header.last_archived_block
    assert block.number == 2 and 0 < block.partial < len(big)


def test_segment_waits_for_enough_data():
    archiver = Archiver(Recorder())
    assert archiver.add_block(b"small", 0) == []
    assert archiver.segment_index == 0 and len(archiver.buffer) == 1


def test_segment_records_prepend_zero_bytes():
    data = bytes(range(256)) * (SIZE // 256)
    records = segment_records(data)
    assert records.shape == (128, 32768, 32)
    assert (records[:, :, 0] == 0).all()
    assert records[0, 0, 1:].tobytes() == data[:31]
    with pytest.raises(ArchivingError, match="segment must be"):
        segment_records(data[:-1])


def test_extend_commitments_is_erasure_coding_in_the_exponent(compute, kzg):
    """By linearity, extending commitments of constants v_i·G1 gives the commitments of extend(v)."""
    from py_arkworks_bls12381 import G1Point, Scalar

    from autonomys_farmer.protocol import erasure, field
    from autonomys_farmer.protocol.archiving import extend_commitments

    values = list(range(1, 129))
    source = [bytes((G1Point() * Scalar(v)).to_compressed_bytes()) for v in values]
    extended = extend_commitments(kzg, source)
    parity = field.rows_to_ints(erasure.extend(compute, field.ints_to_rows(values)))
    assert extended[0::2] == source
    for i in (0, 1, 77, 127):
        assert extended[2 * i + 1] == bytes((G1Point() * Scalar(parity[i])).to_compressed_bytes())
