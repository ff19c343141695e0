"""Sector identity, piece selection, layout structures and the Solution encodings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autonomys_farmer.protocol import sector as sec
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.plotting import write_sector
from autonomys_farmer.protocol.solution import (
    Solution,
    SolutionError,
    pieces_to_solution_range,
    solution_range_to_pieces,
)
from autonomys_farmer.protocol.types import PieceIndex, PieceIndexError, SegmentIndex

PUBLIC_KEY = bytes(range(32))
SECTOR_ID_7_100 = "10e662eae96de52ae47df305ae95a203065068ce55535b659603ddd3c3e14c80"


def test_self_generated_vectors():
    sid = sec.derive_sector_id(PUBLIC_KEY, 7, 100)
    assert sid.hex() == SECTOR_ID_7_100
    expected = {0: 21965, 1: 24450, 2: 7173, 3: 25262, 199: 24965, 200: 10227, 201: 14400, 999: 5179}
    for offset, index in expected.items():
        assert sec.derive_piece_index(sid, offset, 100, 1000, 5, (1, 10)) == index
    assert sec.derive_piece_index(sid, 1, 50, 1000, 5, (1, 10)) == 11650
    seed = sec.derive_evaluation_seed(sid, 1)
    assert seed.hex() == "4c096919cefdd1207cc561e0b3f74de03a6b830b32b79dcef1e97b0a4e36662b"
    randomness = sec.derive_global_randomness(bytes([0x11]) * 16)
    assert randomness.hex() == "cc797a5ad3abc14b1efb095786637cadc694580a88d480926fc54a074bd527c3"
    challenge = sec.derive_global_challenge(randomness, 12345)
    assert challenge.hex() == "fc300d9d70959fc958592eec145557a4996cf0452b7db8caf9ecb65f9436b43c"
    ssc = sec.derive_sector_slot_challenge(sid, challenge)
    assert ssc.hex() == "ecd66f7799f87ae3bc24dde9bac0f5a79f3c988b7e2ee3af6fef6b8c57d7f8bc"
    assert sec.derive_s_bucket_audit_index(ssc) == 55020
    assert sec.derive_expiration_history_size(sid, 100, b"\x22" * 48, 4) == 324


def test_recent_pieces_for_odd_offsets_once_history_is_long():
    sid = sec.derive_sector_id(PUBLIC_KEY, 7, 100)
    for offset in range(1, 200, 2):
        assert 24320 <= sec.derive_piece_index(sid, offset, 100, 1000, 5, (1, 10)) < 25600


def test_sector_sizes():
    assert sec.sector_size(1000) == 1_056_896_064
    assert sec.sector_size(1) == 1_056_960
    assert sec.sector_size(10) == 10_569_024


def test_bad_sector_identity_inputs():
    with pytest.raises(sec.SectorError, match="32 bytes"):
        sec.derive_sector_id(b"short", 0, 1)
    with pytest.raises(sec.SectorError, match="u16"):
        sec.derive_sector_id(PUBLIC_KEY, 70000, 1)
    with pytest.raises(sec.SectorError, match="non-zero"):
        sec.derive_sector_id(PUBLIC_KEY, 0, 0)


SOURCE = [
    (0, 0, 0, 0, 2),
    (2, 2, 1, 0, 4),
    (126, 126, 63, 0, 128),
    (128, 128, 64, 0, 130),
    (252, 252, 126, 0, 254),
    (254, 254, 127, 0, 256),
    (256, 0, 0, 1, 258),
    (510, 254, 127, 1, 512),
    (512, 0, 0, 2, 514),
    ((2**64 - 1) // 4 - 1, 254, 127, (2**64 - 1) // 1024, (2**64 - 1) // 4 + 1),
]
PARITY = [
    (1, 1, 0),
    (3, 3, 0),
    (127, 127, 0),
    (129, 129, 0),
    (253, 253, 0),
    (255, 255, 0),
    (257, 1, 1),
    (511, 255, 1),
    (513, 1, 2),
    ((2**64 - 1) // 4, 255, (2**64 - 1) // 1024),
]


@pytest.mark.parametrize(("index", "position", "source_pos", "segment", "next_source"), SOURCE)
def test_source_piece_index_conversion(index, position, source_pos, segment, next_source):
    index = PieceIndex(index)
    assert index.is_source()
    assert index.position() == position
    assert index.source_position() == source_pos
    assert index.segment_index() == segment
    assert index.next_source_index() == next_source
    assert PieceIndex.from_source_position(source_pos, SegmentIndex(segment)) == index


@pytest.mark.parametrize(("index", "position", "segment"), PARITY)
def test_parity_piece_index_conversion(index, position, segment):
    index = PieceIndex(index)
    assert not index.is_source()
    assert index.position() == position
    assert index.segment_index() == segment
    with pytest.raises(PieceIndexError):
        index.source_position()
    with pytest.raises(PieceIndexError):
        index.next_source_index()


@pytest.mark.parametrize("pieces", [1, 3, 5])
def test_solution_range_helpers(pieces):
    assert solution_range_to_pieces(pieces_to_solution_range(pieces, (1, 6)), (1, 6)) == pieces
    assert pieces_to_solution_range(1, (1, 6)) == 6_148_914_691_236_495_360
    assert pieces_to_solution_range(1000, (1, 6)) == 6_148_914_691_236_495


def test_contents_map_round_trip_and_corruption():
    rng = np.random.default_rng(0)
    encoded = np.zeros((3, 65536), bool)
    for o in range(3):
        encoded[o, rng.permutation(65536)[: 30000 + o]] = True
    encoded[2] = False  # a record with no unencoded fill at all
    encoded[2, rng.permutation(65536)[:32768]] = True
    cm = sec.SectorContentsMap.from_encoded(encoded)
    data = cm.to_bytes()
    assert len(data) == sec.contents_map_size(3)
    assert data[0] == int(sum(1 << b for b in range(8) if encoded[0, b]))  # Lsb0 bit order
    back = sec.SectorContentsMap.from_bytes(data, 3)
    assert all((back.encoded(o) == encoded[o]).all() for o in range(3))
    naive = _naive_kept(back.bitfields)
    assert int(back.ends[2]) == 0 and back.num_encoded()[2] == 32768
    for o in range(3):
        has = back.record_has_row(o)
        assert has.sum() == 32768 and has[encoded[o]].all() and (has == naive[o]).all()
        assert (back.kept_before(o) == naive[:o].sum(axis=0)).all()
    for s in (0, 100, 32767, 65535):
        assert (back.s_bucket_has(s) == naive[:, s]).all()
        assert (back.s_bucket_encoded(s) == encoded[:, s]).all()
    corrupt = bytearray(data)
    corrupt[5] ^= 1
    with pytest.raises(sec.SectorError, match="checksum"):
        sec.SectorContentsMap.from_bytes(bytes(corrupt), 3)
    with pytest.raises(sec.SectorError, match="expected"):
        sec.SectorContentsMap.from_bytes(data[:-1], 3)


def test_sector_metadata_round_trip_and_corruption():
    sizes = np.arange(65536, dtype=np.uint16)
    meta = sec.SectorMetadata(5, 1000, sizes, 123456)
    data = meta.to_bytes()
    assert len(data) == 131_116
    assert data[:4] == b"\x05\x00\xe8\x03"
    back = sec.SectorMetadata.from_bytes(data)
    assert (back.sector_index, back.pieces_in_sector, back.history_size) == (5, 1000, 123456)
    assert (back.s_bucket_sizes == sizes).all()
    with pytest.raises(sec.SectorError, match="checksum"):
        sec.SectorMetadata.from_bytes(data[:10] + b"\xff" + data[11:])


def _solution() -> Solution:
    return Solution(
        public_key=bytes(range(32)), reward_address=bytes(range(32, 64)), sector_index=513, history_size=2**60,
        piece_offset=999, record_commitment=b"\x81" * 48, record_witness=b"\x82" * 48, chunk=bytes(range(32)),
        chunk_witness=b"\x83" * 48, proof_of_space=bytes(range(160)),
    )  # fmt: skip


def test_solution_scale_and_json():
    sol = _solution()
    scale = sol.to_scale()
    assert len(scale) == 412
    assert scale[64:66] == (513).to_bytes(2, "little")
    assert scale[66:74] == (2**60).to_bytes(8, "little")
    assert Solution.from_scale(scale) == sol
    obj = json.loads(json.dumps(sol.to_json()))
    assert obj["chunk"] == list(range(32))
    assert obj["publicKey"] == bytes(range(32)).hex()
    assert obj["historySize"] == 2**60
    assert Solution.from_json(obj) == sol


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("publicKey", "0x" + "00" * 32, "without 0x"),
        ("recordWitness", "zz" * 48, "not valid hex"),
        ("proofOfSpace", "00" * 159, "160 bytes"),
        ("chunk", "00" * 32, "array of 32"),
        ("chunk", [0] * 31, "array of 32"),
        ("sectorIndex", 70000, "u16"),
        ("historySize", 0, "non-zero"),
    ],
)
def test_malformed_solution_json(field, value, message):
    obj = _solution().to_json()
    obj[field] = value
    with pytest.raises(SolutionError, match=message):
        Solution.from_json(obj)


def _naive_kept(encoded: np.ndarray) -> np.ndarray:
    """bool[n, 65536]: the s-buckets each record keeps, straight from protocol.md §5.2: its encoded ones,
    then unencoded ones in ascending order until it holds 32768."""
    bits = np.unpackbits(encoded, axis=1, bitorder="little").astype(bool)
    fill = RECORD_NUM_CHUNKS - bits.sum(axis=1)
    clear = ~bits
    clear_before = np.cumsum(clear, axis=1) - clear
    return bits | (clear & (clear_before < fill[:, None]))


def _naive_layout(chunks: np.ndarray, encoded: np.ndarray) -> bytes:
    """The chunks region written the obvious way: for each s-bucket, each record that keeps a chunk there."""
    kept = _naive_kept(encoded)
    position = np.zeros(len(chunks), np.int64)
    out = []
    for s in range(kept.shape[1]):
        for o in np.flatnonzero(kept[:, s]):
            out.append(chunks[o, position[o]].tobytes())
            position[o] += 1
    return b"".join(out)


def _encoded_maps(rng: np.random.Generator, records: int) -> np.ndarray:
    bits = np.zeros((records, RECORD_NUM_S_BUCKETS), bool)
    for o in range(records):
        bits[o, rng.choice(RECORD_NUM_S_BUCKETS, int(rng.integers(0, 32769)), replace=False)] = True
    return np.packbits(bits, axis=1, bitorder="little")


def test_sector_layout_equals_the_naive_order_and_streams_in_bounded_memory():
    import io
    import tracemalloc

    rng = np.random.default_rng(9)
    records = 3
    chunks = rng.integers(0, 256, (records, 32768, 32), dtype=np.uint8)
    encoded = _encoded_maps(rng, records)
    meta = [sec.RecordMetadata(bytes([o]) * 48, bytes(48), bytes(32)) for o in range(records)]
    out = io.BytesIO()
    metadata = write_sector(out, chunks, encoded, meta, 5, 9)
    data = out.getvalue()
    layout = sec.SectorLayout(records)
    assert len(data) == layout.size and data[layout.chunks_offset : layout.metadata_offset] == _naive_layout(
        chunks, encoded
    )
    assert metadata.s_bucket_sizes.sum() == records * 32768

    # 200 records (200 MiB of chunks): the layout holds one slab of s-buckets at a time, not a sector copy.
    many = 200
    chunks = np.zeros((many, 32768, 32), np.uint8)
    encoded = np.repeat(_encoded_maps(rng, 1), many, axis=0)
    meta = [sec.RecordMetadata(bytes(48), bytes(48), bytes(32))] * many

    class Discard(io.RawIOBase):
        def write(self, data):  # type: ignore[override]
            return len(data)

    tracemalloc.start()
    write_sector(Discard(), chunks, encoded, meta, 0, 1)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 2**20, f"laying out {many} records took {peak / 2**20:.0f} MiB at its peak"
