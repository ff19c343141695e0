"""End to end on a small sector: plot -> read back -> audit -> prove -> verify (as a node would)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from autonomys_farmer.protocol import sector as sec
from autonomys_farmer.protocol.auditing import audit_sector, chunk_distance
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, U64_MAX
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.pieces import Piece, are_pieces_valid, is_piece_valid
from autonomys_farmer.protocol.plotting import plot_sector_in_memory
from autonomys_farmer.protocol.proving import RecordWin, prove_audit, prove_win, prove_wins, winning_records
from autonomys_farmer.protocol.reading import PlottedSectorView, ReadingError, read_piece
from autonomys_farmer.protocol.types import PieceIndex
from autonomys_farmer.protocol.verification import (
    PieceCheckParams,
    SolutionVerificationError,
    VerificationErrorKind,
    _check_piece,
    solution_piece_index,
    verify_solution,
)
from autonomys_farmer.services.tools.synthetic_history import SyntheticHistory

PUBLIC_KEY = bytes(range(32))
REWARD_ADDRESS = bytes([7]) * 32
INFO = sec.FarmerProtocolInfo(
    history_size=1, max_pieces_in_sector=2, recent_segments=5, recent_history_fraction=(1, 10), min_sector_lifetime=4
)
POT = bytes(16)


@dataclasses.dataclass
class Farm:
    history: SyntheticHistory
    piece_indices: list[int]
    data: bytes
    view: PlottedSectorView


@pytest.fixture(scope="module")
def farm(compute, kzg) -> Farm:
    sid = sec.derive_sector_id(PUBLIC_KEY, 0, INFO.history_size)
    indices = sec.derive_sector_piece_indices(sid, 2, INFO)
    history = SyntheticHistory(compute, kzg, indices)
    for index in indices:
        piece, commitment = history.pieces[index], history.segment_commitments[0]
        assert is_piece_valid(compute, kzg, piece, commitment, PieceIndex(index).position())
    done = []
    plotted = plot_sector_in_memory(
        compute,
        PUBLIC_KEY,
        0,
        INFO.history_size,
        [history.pieces[i] for i in indices],
        progress=lambda n, total: done.append((n, total)),
    )
    assert done[-1] == (2, 2)
    metadata = sec.SectorMetadata.from_bytes(plotted.metadata.to_bytes())
    return Farm(history, indices, plotted.data, PlottedSectorView.open(plotted.data, metadata))


def _winning_slot(farm: Farm, compute) -> tuple[int, object]:
    for slot in range(1, 200):
        challenge = sec.derive_global_challenge(sec.derive_global_randomness(POT), slot)
        audit = audit_sector(compute, PUBLIC_KEY, challenge, U64_MAX, farm.data, farm.view.metadata)
        if winning_records(farm.view, audit):
            return slot, audit
    raise AssertionError("no slot with an encoded candidate in 200 slots")


@pytest.fixture(scope="module")
def solution(farm, compute, kzg):
    slot, audit = _winning_slot(farm, compute)
    return slot, next(prove_audit(compute, kzg, PUBLIC_KEY, REWARD_ADDRESS, farm.view, audit))


def _piece_check(farm: Farm, **overrides) -> PieceCheckParams:
    params = PieceCheckParams(
        max_pieces_in_sector=INFO.max_pieces_in_sector, segment_commitment=farm.history.segment_commitments[0],
        recent_segments=INFO.recent_segments, recent_history_fraction=INFO.recent_history_fraction,
        min_sector_lifetime=INFO.min_sector_lifetime, current_history_size=1,
        sector_expiration_check_segment_commitment=None,
    )  # fmt: skip
    return dataclasses.replace(params, **overrides)


def test_sector_layout(farm):
    meta = farm.view.metadata
    assert len(farm.data) == sec.sector_size(2)
    assert blake3_hash(farm.data[:-32]) == farm.data[-32:]
    assert int(meta.s_bucket_sizes.astype(np.int64).sum()) == 2 * RECORD_NUM_CHUNKS
    assert (farm.view.contents.num_encoded() <= RECORD_NUM_CHUNKS).all()
    for offset, index in enumerate(farm.piece_indices):
        record_meta = farm.view.record_metadata(offset)
        piece = farm.history.pieces[index]
        assert record_meta.commitment == piece.commitment
        assert record_meta.piece_checksum == blake3_hash(piece.data)


def test_read_back_every_piece(farm, compute):
    for offset, index in enumerate(farm.piece_indices):
        assert read_piece(compute, farm.view, PUBLIC_KEY, offset) == farm.history.pieces[index]


def test_corrupted_chunk_is_detected(farm, compute):
    data = bytearray(farm.data)
    data[farm.view.layout.chunks_offset + 32 * 5] ^= 0x01
    view = PlottedSectorView.open(bytes(data), farm.view.metadata)
    with pytest.raises(ReadingError):
        for offset in range(2):
            read_piece(compute, view, PUBLIC_KEY, offset)


def test_truncated_sector_is_rejected(farm):
    with pytest.raises(sec.SectorError, match="expected"):
        PlottedSectorView.open(farm.data[:1000], farm.view.metadata)


def test_solution_verifies_with_piece_checks(farm, kzg, solution):
    slot, sol = solution
    assert solution_piece_index(sol, 2, 5, (1, 10)).segment_index() == 0
    distance = verify_solution(sol, slot, POT, U64_MAX, kzg, _piece_check(farm))
    assert distance == verify_solution(sol, slot, POT, U64_MAX, kzg)
    challenge = sec.derive_global_challenge(sec.derive_global_randomness(POT), slot)
    sid = sec.derive_sector_id(PUBLIC_KEY, 0, 1)
    from autonomys_farmer.protocol.pos import proof_hash

    masked = bytes(a ^ b for a, b in zip(sol.chunk, proof_hash(sol.proof_of_space), strict=True))
    assert distance == chunk_distance(challenge, sec.derive_sector_slot_challenge(sid, challenge), masked)


def _expect(kind, sol, slot, kzg, solution_range=U64_MAX, piece_check=None):
    with pytest.raises(SolutionVerificationError) as err:
        verify_solution(sol, slot, POT, solution_range, kzg, piece_check)
    assert err.value.kind is kind


def test_tampered_solutions_are_rejected(farm, kzg, solution):
    slot, sol = solution
    proof = bytearray(sol.proof_of_space)
    proof[0] ^= 0x80
    _expect(
        VerificationErrorKind.INVALID_PROOF_OF_SPACE, dataclasses.replace(sol, proof_of_space=bytes(proof)), slot, kzg
    )
    _expect(VerificationErrorKind.INVALID_PROOF_OF_SPACE, sol, slot + 1000, kzg)
    chunk = bytearray(sol.chunk)
    chunk[31] ^= 1
    _expect(VerificationErrorKind.INVALID_CHUNK_WITNESS, dataclasses.replace(sol, chunk=bytes(chunk)), slot, kzg)
    _expect(
        VerificationErrorKind.INVALID_CHUNK_WITNESS,
        dataclasses.replace(sol, chunk_witness=sol.record_witness),
        slot,
        kzg,
    )
    _expect(
        VerificationErrorKind.INVALID_CHUNK_WITNESS,
        dataclasses.replace(sol, record_commitment=b"\x80" + bytes(47)),
        slot,
        kzg,
    )
    _expect(
        VerificationErrorKind.INVALID_PIECE,
        dataclasses.replace(sol, record_witness=sol.chunk_witness),
        slot,
        kzg,
        piece_check=_piece_check(farm),
    )
    _expect(
        VerificationErrorKind.INVALID_PIECE,
        sol,
        slot,
        kzg,
        piece_check=_piece_check(farm, segment_commitment=farm.history.segment_commitments[0][:47] + b"\x00"),
    )


def test_consensus_limits(farm, kzg, solution):
    slot, sol = solution
    distance = verify_solution(sol, slot, POT, U64_MAX, kzg)
    _expect(VerificationErrorKind.OUTSIDE_SOLUTION_RANGE, sol, slot, kzg, solution_range=2 * distance - 2)
    assert verify_solution(sol, slot, POT, 2 * distance, kzg) == distance
    # A sector from the future: only reachable after PoS/KZG pass, so check the piece stage directly.
    with pytest.raises(SolutionVerificationError) as err:
        future = dataclasses.replace(sol, history_size=3)
        _check_piece(future, sec.derive_sector_id(PUBLIC_KEY, 0, 3), _piece_check(farm), kzg)
    assert err.value.kind is VerificationErrorKind.FUTURE_HISTORY_SIZE
    _expect(
        VerificationErrorKind.INVALID_PIECE_OFFSET,
        sol,
        slot,
        kzg,
        piece_check=_piece_check(farm, max_pieces_in_sector=sol.piece_offset),
    )
    # Expiration falls in [h + msl, 4h + msl) = [5, 8): with history size 8 the sector is expired.
    expired = _piece_check(farm, current_history_size=8, sector_expiration_check_segment_commitment=b"\x22" * 48)
    _expect(VerificationErrorKind.SECTOR_EXPIRED, sol, slot, kzg, piece_check=expired)
    fresh = _piece_check(farm, current_history_size=1, sector_expiration_check_segment_commitment=b"\x22" * 48)
    assert verify_solution(sol, slot, POT, U64_MAX, kzg, fresh) == distance


def test_batch_piece_verification_flags_exactly_the_bad_pieces(farm, compute, kzg):
    commitment = farm.history.segment_commitments[0]
    first, second = (farm.history.pieces[i] for i in farm.piece_indices)
    p1, p2 = (PieceIndex(i).position() for i in farm.piece_indices)
    both = [(first, commitment, p1), (second, commitment, p2)]
    assert are_pieces_valid(compute, kzg, both, bytes(16)) == [True, True]
    flipped = Piece(bytes([first.data[0] ^ 1]) + first.data[1:])  # record no longer matches its commitment
    swapped = Piece.assemble(second.record, second.commitment, first.witness)  # witness of another position
    batch = [
        (flipped, commitment, p1),
        (second, commitment, p2),
        (first, commitment, (p1 + 1) % 256),  # right piece, wrong position
        (swapped, commitment, p2),
        (first, commitment, p1),
    ]
    expected = [is_piece_valid(compute, kzg, piece, c, position) for piece, c, position in batch]
    assert expected == [False, True, False, False, True]
    assert are_pieces_valid(compute, kzg, batch, b"\x01" * 16) == expected


def test_wins_proved_as_one_batch_equal_single_proofs_and_fail_alone(farm, compute, kzg, solution):
    """A proof server proves a slot's wins together (one MSM for every chunk witness); each solution
    is the one proved alone, and a record that cannot be decoded fails without failing the others."""
    _slot, audit = _winning_slot(farm, compute)
    offset, _distance = winning_records(farm.view, audit)[0]
    win = RecordWin.read(PUBLIC_KEY, REWARD_ADDRESS, farm.view, offset, audit.s_bucket)
    other_bucket = int(np.flatnonzero(farm.view.contents.encoded(offset))[-1])
    other = dataclasses.replace(win, s_bucket=other_bucket)
    garbage = np.full_like(win.record.chunks, 0xFF)  # no chunk decodes to a canonical scalar
    broken = dataclasses.replace(win, record=dataclasses.replace(win.record, chunks=garbage))
    results = prove_wins(compute, kzg, [win, broken, other])
    assert results[0] == solution[1] == prove_win(compute, kzg, win)
    assert isinstance(results[1], ReadingError)
    assert results[2] == prove_win(compute, kzg, other)
    assert results[2].chunk_witness != results[0].chunk_witness


def test_a_received_sector_is_checked_before_it_counts(farm, compute, kzg):
    """What a plot client checks of a sector from a plot server: right metadata, every record's
    commitment opening its segment commitment, sampled records read back to their commitments."""
    from autonomys_farmer.protocol.reading import check_sector
    from autonomys_farmer.protocol.types import PieceOffset

    meta = farm.view.metadata
    commitments = {0: farm.history.segment_commitments[0]}
    sample = [PieceOffset(0), PieceOffset(1)]

    def check(data=farm.data, metadata=meta, segment_commitments=commitments, index=0):
        checksum = blake3_hash(bytes(data[:-32]))  # what the receiver hashed as the bytes arrived
        check_sector(
            compute, kzg, PUBLIC_KEY, index, INFO, data, checksum, metadata, segment_commitments, sample, bytes(32)
        )

    check()  # the real sector passes
    tampered = bytearray(farm.data)
    tampered[sec.contents_map_size(2) + 100_000] ^= 0x01  # one bit of a chunk; checksum redone as a forger would
    tampered[-32:] = blake3_hash(bytes(tampered[:-32]))
    with pytest.raises(ReadingError):
        check(data=bytes(tampered))
    with pytest.raises(ReadingError, match="does not open its segment commitment"):
        check(segment_commitments={0: farm.history.segment_commitments[0][:-1] + b"\x00"})
    with pytest.raises(ReadingError, match="metadata describes sector 0"):
        check(index=1)
    with pytest.raises(ReadingError, match="checksum"):
        check(data=farm.data[:-1] + bytes([farm.data[-1] ^ 1]))
