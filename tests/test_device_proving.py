"""Proving's field work on the device path (tier T1: the GPU launch sequences on the CPU emulation).

A proof server with a GPU runs recovery's large NTTs and the witness MSM on the device; here the CUDA
backend drives the emulated device and must give the CPU backend's polynomials and witnesses.
"""

from __future__ import annotations

import numpy as np

from autonomys_farmer.backends.cuda.backend import CudaBackend
from autonomys_farmer.backends.cuda.field import MIN_DEVICE_ROWS
from autonomys_farmer.protocol import erasure, field


def _random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return field.ints_to_rows([int(v) for v in rng.integers(0, 2**62, n)])


def test_t1_emulated_device_ntts_equal_cpu(compute, emulated):
    device = CudaBackend(device=emulated)
    rng = np.random.default_rng(11)
    for batch, n in ((1, 1 << 16), (4, MIN_DEVICE_ROWS)):
        blocks = _random_rows(rng, batch * n).reshape(batch, n, 8)
        for inverse in (False, True):
            assert np.array_equal(device.ntt(blocks, inverse), compute.ntt(blocks, inverse))


def test_t1_emulated_device_recovery_and_opening_equal_cpu(compute, emulated, kzg):
    """Half the shards missing (the proving case), then two openings of the recovered polynomial."""
    device = CudaBackend(device=emulated)
    rng = np.random.default_rng(12)
    source = _random_rows(rng, 1 << 12)
    shards = erasure.interleave(source, erasure.extend(compute, source))
    present = np.ones(shards.shape[0], bool)
    present[rng.permutation(shards.shape[0])[: shards.shape[0] // 2]] = False
    polys = [erasure.recover_poly(backend, shards, present) for backend in (device, compute)]
    assert np.array_equal(polys[0], polys[1])
    openings = [(polys[0], 5), (polys[0], 4000)]
    assert kzg.open_many(device, openings, shards.shape[0]) == kzg.open_many(compute, openings, shards.shape[0])
