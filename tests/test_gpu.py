"""On a GPU (tier T4, `gpu` marker): the CUDA backend's output is byte for byte the CPU backend's."""

from __future__ import annotations

import io

import numpy as np
import pytest
from vectors import S35, S35_PROOFS, S35_TABLE_SIZES

from autonomys_farmer.protocol import g1
from autonomys_farmer.protocol import sector as sec
from autonomys_farmer.protocol.pieces import Piece, are_pieces_valid
from autonomys_farmer.protocol.plotting import SectorRecords, plot_sector
from autonomys_farmer.protocol.proving import prove_wins
from autonomys_farmer.protocol.sector import RecordMetadata
from autonomys_farmer.protocol.types import PieceIndex
from autonomys_farmer.services.tools.synthetic_history import plotted_two_piece_sector, slot_wins, source_like_record

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_backend():
    from autonomys_farmer.backends import select_backend

    backend = select_backend("cuda", gpu_concurrency=4)
    backend.warm_up()
    return backend


def _sector(pieces: int, seed: int) -> SectorRecords:
    rng = np.random.default_rng(seed)
    records = np.stack([source_like_record(rng) for _ in range(pieces)])
    metadata = [RecordMetadata(bytes([i % 256]) * 48, bytes(48), bytes(32)) for i in range(pieces)]
    return SectorRecords(records, metadata)


@pytest.mark.parametrize("pieces", [8, 1000])
def test_cuda_and_cpu_sectors_are_identical(cuda_backend, compute, pieces):
    """Real seeds (derived from the sector id), a whole sector each way."""
    public_key = bytes(range(32))
    outputs = []
    for backend in (cuda_backend, compute):
        sector = _sector(pieces, seed=pieces)
        out = io.BytesIO()
        metadata = plot_sector(backend, public_key, 3, 7, sector, out)
        outputs.append((out.getvalue(), metadata.to_bytes()))
    assert outputs[0] == outputs[1]


def test_cuda_proof_tables_reproduce_the_vectors(cuda_backend):
    table = cuda_backend.proof_table(S35)
    assert tuple(table.sizes) == S35_TABLE_SIZES
    for challenge, proof in S35_PROOFS.items():
        assert table.find_proof(challenge).hex() == proof


def test_cuda_msm_equals_cpu(cuda_backend, compute, kzg):
    """2^15 points (the proving and verification size), three scalar sets, plus a small odd size."""
    rng = np.random.default_rng(3)
    for n, sets in ((1 << 15, 3), (1000, 1)):
        scalars = np.ascontiguousarray(
            rng.integers(0, 2**32, (sets, n, 8), dtype=np.uint64).astype(np.uint32) & np.uint32(0x3FFFFFFF)
        )
        rows = kzg.g1_rows[:n]
        on_gpu, on_cpu = cuda_backend.g1_msm(rows, scalars), compute.g1_msm(rows, scalars)
        assert [g1.xyzz_to_affine(p) for p in on_gpu] == [g1.xyzz_to_affine(p) for p in on_cpu]


PUBLIC_KEY = bytes(range(32))
INFO = sec.FarmerProtocolInfo(1, 2, 5, (1, 10), 4)


@pytest.fixture(scope="module")
def farm(compute, kzg):
    return plotted_two_piece_sector(compute, kzg, PUBLIC_KEY, INFO)


def test_cuda_proofs_equal_cpu(cuda_backend, compute, kzg, farm):
    """Every win of several slots, proved as one batch on the GPU and on the CPU."""
    _history, _indices, plotted = farm
    wins = slot_wins(compute, PUBLIC_KEY, plotted, wanted=4, max_slots=400)
    assert wins
    assert prove_wins(cuda_backend, kzg, wins) == prove_wins(compute, kzg, wins)


def test_cuda_piece_verification_verdicts_equal_cpu(cuda_backend, compute, kzg, farm):
    history, indices, _plotted = farm
    commitment = history.segment_commitments[0]
    first, second = (history.pieces[i] for i in indices)
    p1, p2 = (PieceIndex(i).position() for i in indices)
    flipped = Piece(bytes([first.data[0] ^ 1]) + first.data[1:])
    batch = [(first, commitment, p1), (flipped, commitment, p1), (second, commitment, p2), (first, commitment, p2)]
    verdicts = [are_pieces_valid(backend, kzg, batch, bytes(16)) for backend in (cuda_backend, compute)]
    assert verdicts[0] == verdicts[1] == [True, False, True, False]
