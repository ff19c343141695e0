"""On a GPU (tier T4, `gpu` marker): the CUDA backend's output is byte for byte the CPU backend's."""

from __future__ import annotations

import io

import numpy as np
import pytest
from history import source_like_record
from vectors import S35, S35_PROOFS, S35_TABLE_SIZES

from autonomys_farmer.protocol.plotting import SectorRecords, plot_sector
from autonomys_farmer.protocol.sector import RecordMetadata

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
