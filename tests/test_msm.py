"""G1 multi-scalar multiplication behind the compute contract, against py-arkworks as the oracle.

Fp arithmetic (compiled and as plain Python, the simulator's semantics) against Python integers; the
CPU backend's MSM on edge and random inputs, 1 to 2^15 points; the GPU pipeline's launch sequence on the
CPU emulation (T1) equal to the CPU backend; the MSM kernels cross-compiled to sm_90 (T3); the blst
encodings. The simulator tier (T2) runs in tests/cuda_simulator.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from py_arkworks_bls12381 import G1Point, Scalar

from autonomys_farmer.backends.cpu.kernels import CPU
from autonomys_farmer.backends.cuda.msm import DeviceMsm
from autonomys_farmer.backends.kernels import fp as fp_source
from autonomys_farmer.backends.kernels import msm as mx
from autonomys_farmer.protocol import g1
from autonomys_farmer.protocol.field import BLS_MODULUS
from autonomys_farmer.protocol.g1 import FP_MODULUS, FP_R_INV
from autonomys_farmer.protocol.kzg import affine_rows

G = G1Point()


def words(value: int) -> tuple[np.uint64, ...]:
    return tuple(np.uint64((value >> (64 * j)) & (2**64 - 1)) for j in range(6))


def value(t: tuple[int, ...]) -> int:
    return sum(int(x) << (64 * j) for j, x in enumerate(t))


def random_points(rng: random.Random, n: int) -> list[G1Point]:
    return [G * Scalar(rng.randrange(1, BLS_MODULUS)) for _ in range(n)]


def arkworks_msm(points: list[G1Point], scalars: list[int]) -> bytes:
    total = G1Point.multiexp_unchecked(points, [Scalar(s % BLS_MODULUS) for s in scalars])
    return bytes(total.to_compressed_bytes())


def ours(compute, points: list[G1Point], scalar_sets: list[list[int]]) -> list[bytes]:
    scalars = np.stack([g1.scalar_rows(s) for s in scalar_sets])
    out = compute.g1_msm(affine_rows(points), scalars)
    return [g1.compress(g1.xyzz_to_affine(p)) for p in out]


@pytest.mark.parametrize("plain", [False, True], ids=["compiled", "plain-python"])
def test_fp_arithmetic_matches_integers(plain):
    ops = fp_source if plain else CPU
    rng = random.Random(1)
    edge = [0, 1, 2, FP_MODULUS - 1, FP_MODULUS - 2, 2**64 - 1, 2**383 % FP_MODULUS]
    pairs = [(a, b) for a in edge for b in edge]
    pairs += [(rng.randrange(FP_MODULUS), rng.randrange(FP_MODULUS)) for _ in range(10 if plain else 300)]
    for a, b in pairs:
        assert value(ops.fp_mul(words(a), words(b))) == a * b * FP_R_INV % FP_MODULUS
        assert value(ops.fp_add(words(a), words(b))) == (a + b) % FP_MODULUS
        assert value(ops.fp_sub(words(a), words(b))) == (a - b) % FP_MODULUS
        assert value(ops.fp_neg(words(a))) == -a % FP_MODULUS
        assert bool(ops.fp_is_zero(words(a))) == (a == 0)


def test_encodings_match_arkworks():
    rng = random.Random(2)
    for point in [*random_points(rng, 20), G1Point.identity()]:
        affine = g1.xy_le_to_affine(bytes(point.to_xy_bytes_le()))
        assert g1.compress(affine) == bytes(point.to_compressed_bytes())
        assert bytes(G1Point.from_xy_bytes_unchecked_le(g1.affine_to_xy_le(affine)).to_compressed_bytes()) == bytes(
            point.to_compressed_bytes()
        )
    with pytest.raises(g1.G1Error, match="not on the curve"):
        g1.xy_le_to_affine((1).to_bytes(48, "little") + (1).to_bytes(48, "little"))


def test_msm_edge_cases(compute):
    rng = random.Random(3)
    p, q = random_points(rng, 2)
    identity = G1Point.identity()
    r_minus_1 = BLS_MODULUS - 1
    cases = [
        ([p], [0]),
        ([p], [1]),
        ([p], [r_minus_1]),
        ([identity], [5]),
        ([identity, p], [7, 0]),
        ([p, p], [3, 3]),  # repeated points: the bucket adds a point to itself
        ([p, -p], [2, 2]),  # opposite points: the bucket returns to the identity
        ([p, p, p], [1, r_minus_1, 1]),
        ([p, q], [2**255 % BLS_MODULUS, 2**254]),
        ([p] * 40, list(range(40))),
    ]
    for points, scalars in cases:
        assert ours(compute, points, [scalars]) == [arkworks_msm(points, scalars)], (len(points), scalars)


@pytest.mark.parametrize("n", [1, 2, 3, 17, 100, 1000])
def test_msm_random_sets_match_arkworks(compute, n):
    rng = random.Random(n)
    points = random_points(rng, min(n, 50))
    points = [points[i % len(points)] for i in range(n)]  # repeats, as in a batch of commitments
    sets = [[rng.randrange(BLS_MODULUS) for _ in range(n)] for _ in range(3)]
    assert ours(compute, points, sets) == [arkworks_msm(points, s) for s in sets]


@pytest.fixture(scope="module")
def full_setup(kzg):
    """2^15 setup powers and random scalars: the MSM a commitment or a witness is."""
    rng = random.Random(15)
    scalars = [rng.randrange(BLS_MODULUS) for _ in range(1 << 15)]
    return kzg.g1_rows, g1.scalar_rows(scalars)[None]


def test_msm_of_2_15_points_matches_arkworks(compute, kzg, full_setup):
    rows, scalars = full_setup
    points = [
        G1Point.from_xy_bytes_unchecked_le(g1.affine_to_xy_le(g1.xyzz_to_affine(xyzz))) for xyzz in _as_xyzz(rows)
    ]
    scalar_ints = [int.from_bytes(s.astype("<u4").tobytes(), "little") for s in scalars[0]]
    (result,) = compute.g1_msm(rows, scalars)
    assert g1.compress(g1.xyzz_to_affine(result)) == arkworks_msm(points, scalar_ints)


def _as_xyzz(rows: np.ndarray) -> np.ndarray:
    one = g1.to_fp_row(1)
    out = np.zeros((rows.shape[0], 4, g1.FP_LIMBS), np.uint32)
    out[:, :2] = rows
    out[:, 2] = one
    out[:, 3] = one
    return out


def test_msm_plan_windows_absorb_the_last_carry():
    for c in range(2, mx.MAX_WINDOW_BITS + 1):
        plan = mx.MsmPlan(1, 1, c)
        top_window_bits = 255 - (plan.windows - 1) * c  # of a scalar < 2^255
        assert top_window_bits <= c - 2, c  # plus a carry of 1 it stays a positive digit
    assert mx.msm_plan(1 << 15).window_bits >= 10


def test_t1_emulated_gpu_msm_equals_cpu(compute, emulated, full_setup):
    """The CUDA backend's launch sequence (digits, counting sort with atomics, buckets, segments, windows,
    Horner) on the CPU emulation of the grid, at full size and with two sets."""
    rows, scalars = full_setup
    two_sets = np.concatenate([scalars, scalars[:, ::-1]])
    on_device = DeviceMsm(emulated)(rows, two_sets)
    expected = compute.g1_msm(rows, two_sets)
    assert [g1.xyzz_to_affine(p) for p in on_device] == [g1.xyzz_to_affine(p) for p in expected]


def test_t3_msm_kernels_cross_compile_for_sm_90(emulated, capsys):
    from autonomys_farmer.backends.cuda import crosscompile

    if crosscompile.ptxas_binary() is None:
        pytest.fail("ptxas not installed: the test extra brings nvidia-cuda-nvcc")
    emulated.launches.clear()
    emulated.record_launches = True
    try:
        DeviceMsm(emulated)(g1.affine_rows([None] * 4), np.zeros((1, 4, 8), np.uint32))
    finally:
        emulated.record_launches = False
    launched = {spec: args for spec, args in emulated.launches if spec in mx.MSM_KERNELS}
    assert set(launched) == set(mx.MSM_KERNELS), "every MSM kernel is launched"
    reports = crosscompile.reports(list(launched.items()))
    with capsys.disabled():
        print("\nsm_90 MSM kernels (ptxas):")
        for r in reports:
            print("  " + r.line())
    for r in reports:
        assert 0 < r.registers <= 255
