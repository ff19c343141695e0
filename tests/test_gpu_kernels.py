"""The GPU backend without a GPU (../shared/design/gpu-backend.md §6).

T1: the CUDA backend's whole pipeline, every kernel body and phase, run at full K=20 on the CPU emulation of
    the grid: tables equal to the spec's vectors, sectors equal to the CPU backend's.
T2: the block-cooperative kernels (rank sort, matching, scan) in numba's CUDA simulator at small K.
T3: every kernel cross-compiled to sm_90 PTX, ptxas's registers/spills/compile time reported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import blake3
import numpy as np
import pytest
from vectors import (
    S35,
    S35_DIGEST1,
    S35_DIGEST2,
    S35_NO_PROOF_CHALLENGE,
    S35_PROOFS,
    S35_S_BUCKETS_WITH_PROOF,
    S35_TABLE_SIZES,
)

from autonomys_farmer.backends.cuda.backend import CudaBackend
from autonomys_farmer.backends.cuda.pipeline import Constants, TableBuffers, records_to_redo
from autonomys_farmer.backends.kernels import encode as kx
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.field import FieldError
from autonomys_farmer.protocol.plotting import select_chunks
from autonomys_farmer.services.tools.synthetic_history import source_like_record

# One worker, in file order: the tier-2 simulator process then loads the emulated kernels tier 1 compiled,
# instead of compiling them beside it on the other worker (110 s more on a cold clean clone).
pytestmark = pytest.mark.xdist_group("emulated-kernels")


def test_t1_emulated_gpu_tables_reproduce_the_spec_vectors(emulated):
    buffers = TableBuffers(emulated, 1, 20)
    buffers.build(1, [S35], Constants.upload(emulated, kx.table_capacity(20)))
    (table,) = buffers.host_tables(1, [S35])
    assert table is not None and tuple(table.sizes) == S35_TABLE_SIZES
    for challenge, proof in S35_PROOFS.items():
        assert table.find_proof(challenge).hex() == proof
    assert table.find_proof(S35_NO_PROOF_CHALLENGE) is None
    has, proofs = table.find_proofs(np.arange(RECORD_NUM_S_BUCKETS, dtype=np.uint32))
    assert int(has.sum()) == S35_S_BUCKETS_WITH_PROOF
    d1, d2 = blake3.blake3(), blake3.blake3()
    for s in np.flatnonzero(has):
        d1.update(int(s).to_bytes(2, "little") + proofs[s].tobytes())
        d2.update(int(s).to_bytes(2, "little") + blake3.blake3(proofs[s].tobytes()).digest())
    assert (d1.hexdigest(), d2.hexdigest()) == (S35_DIGEST1, S35_DIGEST2)


def test_t1_emulated_gpu_encoding_equals_the_cpu_backend(emulated, compute):
    """Two records on two streams (one each): chunks and encoded maps byte for byte."""
    rng = np.random.default_rng(11)
    records = np.stack([source_like_record(rng) for _ in range(2)])
    seeds = [bytes([1]) * 32, S35]
    gpu = CudaBackend(concurrency=1, device=emulated)
    ours, theirs = gpu.encode_records(seeds, records), compute.encode_records(seeds, records)
    assert (ours.chunks == theirs.chunks).all() and (ours.encoded == theirs.encoded).all()
    bad = records.copy()
    bad[1, 5] = 0xFF  # not a scalar: the GPU flags the record and the CPU raises what it always raises
    with pytest.raises(FieldError, match="not a canonical scalar"):
        gpu.encode_records(seeds, bad)


def test_keep_rule_kernels_equal_the_protocol_rule(emulated):
    """kept/select/bitmap on the device vs protocol.plotting.select_chunks, with masked chunks of zeros
    (upstream's sentinel) among the traced proofs and fewer than 32768 proofs."""
    rng = np.random.default_rng(5)
    n = RECORD_NUM_S_BUCKETS
    for proofs in (30000, RECORD_NUM_CHUNKS):
        has = np.zeros(n, bool)
        has[np.sort(rng.choice(n, proofs, replace=False))] = True
        ext = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        zero = np.flatnonzero(has)[[3, 17, 2000]]
        hashes[zero] = ext[zero]  # these mask to 32 zero bytes
        expected_chunks, expected_map = select_chunks(has, np.where(has[:, None], hashes, 0), ext)
        proven_rank = (np.cumsum(has) - has).astype(np.int32)[None]
        candidates = (ext ^ hashes)[has]
        masked = np.zeros((1, RECORD_NUM_CHUNKS * 32), np.uint8)
        masked[0, : 32 * len(candidates)] = candidates.reshape(-1)
        usable = (has & candidates_nonzero(has, ext, hashes)).astype(np.uint32)[None]
        encoded_rank, kept_rank = (np.empty((1, n), np.int32) for _ in range(2))
        encoded_total, kept_total = (np.empty(1, np.int32) for _ in range(2))
        kept = np.empty((1, n), np.uint32)
        chunks = np.zeros((1, RECORD_NUM_CHUNKS * 32), np.uint8)
        bitmap = np.empty((1, n // 8), np.uint8)
        emulated.blocks(kx.SCAN, 1, usable, encoded_rank, encoded_total)
        emulated.grid(kx.KEPT, n, usable, encoded_rank, encoded_total, kept)
        emulated.blocks(kx.SCAN, 1, kept, kept_rank, kept_total)
        emulated.grid(kx.SELECT, n, kept, kept_rank, usable, proven_rank, masked, ext.reshape(1, -1), chunks)
        emulated.grid(kx.BITMAP, n // 8, usable, bitmap)
        assert kept_total[0] == RECORD_NUM_CHUNKS
        assert (chunks.reshape(-1, 32) == expected_chunks).all() and (bitmap[0] == expected_map).all()


def candidates_nonzero(has: np.ndarray, ext: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    return np.where(has, (ext ^ hashes).any(axis=1), False)


def test_records_the_cpu_must_redo():
    overflow = np.array([0, 1, 0, 0, 0], np.uint32)
    bad = np.array([0, 0, 1, 0, 0], np.uint32)
    proven = np.array([40000, 40000, 40000, 40000, 30000], np.int32)
    encoded = np.array([32768, 32768, 32768, 32767, 29999], np.int32)  # 3: a zero mask with proofs left over
    assert records_to_redo(overflow, bad, proven, encoded).tolist() == [False, True, True, True, False]


def test_t2_block_kernels_in_the_cuda_simulator():
    script = Path(__file__).with_name("cuda_simulator.py")
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]


def test_t3_every_kernel_cross_compiles_to_sm90(emulated, capsys):
    """Arguments are taken from a real (emulated, K=12) encode, so the PTX is for what the backend launches."""
    from autonomys_farmer.backends.cuda import crosscompile

    if crosscompile.ptxas_binary() is None:
        pytest.fail("ptxas not installed: the test extra brings nvidia-cuda-nvcc")
    emulated.launches.clear()
    emulated.record_launches = True
    try:
        rng = np.random.default_rng(0)
        CudaBackend(1, device=emulated, k=12).encode_records([bytes(32)], source_like_record(rng)[None])
    finally:
        emulated.record_launches = False
    launched = {(spec, crosscompile.signature(spec, args)): (spec, args) for spec, args in emulated.launches}
    assert {spec for spec, _ in launched} == {
        spec for spec in vars(kx).values() if isinstance(spec, (kx.GridKernel, kx.BlockKernel))
    }, "every kernel spec is launched by the pipeline"
    reports = crosscompile.reports(list(launched.values()))
    with capsys.disabled():
        print("\nsm_90 kernels (ptxas):")
        for r in reports:
            print("  " + r.line())
    for r in reports:
        assert r.registers > 0
        assert r.shared_bytes <= 48 * 1024, f"{r.name} needs more static shared memory than a block may have"


def test_backend_choice_without_a_gpu(caplog):
    import logging

    from autonomys_farmer.backends import BackendUnavailableError, select_backend
    from autonomys_farmer.backends.cuda.device import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        pytest.skip("a GPU is usable here")
    with caplog.at_level(logging.INFO, logger="autonomys_farmer.backends"):
        assert select_backend("auto").name == "cpu"
    assert f"no usable GPU: {reason}" in caplog.text
    with pytest.raises(BackendUnavailableError, match=f"--backend cuda: {reason}"):
        select_backend("cuda")
    done = subprocess.run(
        [sys.executable, "-m", "autonomys_farmer.cli", "cluster", "--nats-server", "nats://127.0.0.1:9",
         "--backend", "cuda", "proof-server"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip() == f"--backend cuda: {reason}"
