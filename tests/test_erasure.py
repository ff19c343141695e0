"""Erasure coding (protocol.md §3): the spec vector, recovery patterns and error cases."""

from __future__ import annotations

import numpy as np
import pytest

from autonomys_farmer.protocol import erasure, field
from autonomys_farmer.protocol.erasure import ErasureError
from autonomys_farmer.protocol.field import BLS_MODULUS, root_of_unity

EXTEND_1234 = [
    "39f6d3a994cebea3d2f4059cc9cf699a33dd520044fdadff7fff7fff80000003",
    "665961d85d90c4c04cbd29a60e160a28319e440c9f3b0325ad9f844939f2705c",
    "39f6d3a994cebea3d2f4059cc9cf699a33dd520044fdadff7fff7fff80000003",
    "0d94457acc0cb88873ce7b30718ed2ae0e225ff8d6c658d952617bb5c60d8faa",
]


def _scalars(values):
    return np.frombuffer(b"".join(v.to_bytes(32, "big") for v in values), np.uint8).reshape(-1, 32)


def _random_rows(rng, n):
    return field.ints_to_rows([int.from_bytes(rng.bytes(32), "big") % BLS_MODULUS for _ in range(n)])


def test_extend_vector(compute):
    assert [bytes(p).hex() for p in erasure.extend_scalars(compute, _scalars([1, 2, 3, 4]))] == EXTEND_1234


def test_extend_is_the_odd_points_of_the_interpolant(compute):
    rng = np.random.default_rng(1)
    source = _random_rows(rng, 8)
    parity = field.rows_to_ints(erasure.extend(compute, source))
    coeffs = field.rows_to_ints(field.ifft(compute, source))
    omega = root_of_unity(16)
    for i in range(8):
        x = pow(omega, 2 * i + 1, BLS_MODULUS)
        assert parity[i] == sum(c * pow(x, j, BLS_MODULUS) for j, c in enumerate(coeffs)) % BLS_MODULUS
    assert parity != field.rows_to_ints(source)


def test_ntt_matches_naive_dft(compute):
    rng = np.random.default_rng(2)
    rows = _random_rows(rng, 16)
    values = field.rows_to_ints(rows)
    omega = root_of_unity(16)
    expected = [sum(v * pow(omega, i * j, BLS_MODULUS) for j, v in enumerate(values)) % BLS_MODULUS for i in range(16)]
    assert field.rows_to_ints(field.fft(compute, rows)) == expected
    assert field.rows_to_ints(field.ifft(compute, field.fft(compute, rows))) == values


@pytest.mark.parametrize("n", [4, 128, 32768])
@pytest.mark.parametrize("pattern", ["source-only", "parity-only", "random-half", "few-missing"])
def test_recover(compute, n, pattern):
    rng = np.random.default_rng(n)
    source = _random_rows(rng, n)
    full = erasure.interleave(source, erasure.extend(compute, source))
    present = np.ones(2 * n, bool)
    if pattern == "source-only":
        present[1::2] = False
    elif pattern == "parity-only":
        present[0::2] = False
    elif pattern == "random-half":
        present[rng.permutation(2 * n)[:n]] = False
    else:
        present[rng.permutation(2 * n)[:3]] = False
    shards = np.where(present[:, None], full, 0).astype(np.uint32)
    assert (erasure.recover(compute, shards, present) == full).all()
    poly = erasure.recover_poly(compute, shards, present)
    assert poly.shape[0] <= n  # honest data: degree < n, trailing zeros trimmed
    assert (field.ifft(compute, full)[: poly.shape[0]] == poly).all()


def test_batch_extend_equals_single(compute):
    rng = np.random.default_rng(3)
    sources = np.stack([_random_rows(rng, 128) for _ in range(5)])
    batch = erasure.extend_batch(compute, sources)
    for i in range(5):
        assert (batch[i] == erasure.extend(compute, sources[i])).all()


def test_errors(compute):
    rng = np.random.default_rng(4)
    with pytest.raises(ErasureError, match="power of two"):
        erasure.extend(compute, _random_rows(rng, 255))
    with pytest.raises(ErasureError, match="power of two"):
        erasure.recover(compute, _random_rows(rng, 255), np.ones(255, bool))
    with pytest.raises(ErasureError, match="2\\^16"):
        erasure.extend(compute, np.zeros((65536, 8), np.uint32))
    present = np.ones(8, bool)
    present[:5] = False
    with pytest.raises(ErasureError, match="5 of 8 shards missing"):
        erasure.recover(compute, _random_rows(rng, 8), present)
    with pytest.raises(ErasureError, match="not a canonical scalar"):
        erasure.extend_scalars(compute, np.full((4, 32), 0xFF, np.uint8))


def test_zero_polynomial_roots(compute):
    missing = np.array([1, 5, 6])
    z = field.rows_to_ints(erasure.zero_polynomial(compute, missing, 8))
    assert len(z) == 4 and z[-1] == 1
    omega = root_of_unity(8)
    for i in range(8):
        x = pow(omega, i, BLS_MODULUS)
        value = sum(c * pow(x, j, BLS_MODULUS) for j, c in enumerate(z)) % BLS_MODULUS
        assert (value == 0) == (i in missing)
