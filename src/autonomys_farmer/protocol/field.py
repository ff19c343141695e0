"""BLS12-381 scalar field facts (protocol.md §0.3, §3.1) and Fr vectors.

Field vectors are "rows": uint32 arrays of shape (n, 8), the little-endian 32-bit limbs of each element,
in Montgomery form (a·2^256 mod r) whenever they go through the compute contract. This module holds the
pure conversions (bytes, Python ints, constant tables) and the FFT built on the contract's NTT.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from autonomys_farmer.protocol.compute import Compute

BLS_MODULUS = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
FIELD_ELEMENT_BYTES = 32  # ScalarBytes::FULL_BYTES
SAFE_BYTES = 31  # ScalarBytes::SAFE_BYTES
PRIMITIVE_ROOT = 7
MAX_DOMAIN_LOG2 = 16  # scale of every production FFTSettings (Record::NUM_S_BUCKETS)
MAX_DOMAIN = 1 << MAX_DOMAIN_LOG2
LIMBS = 8
R_MONT = 1 << 256
R_MONT_INV = pow(R_MONT, -1, BLS_MODULUS)


class FieldError(ValueError):
    """A 32-byte value that is not a canonical scalar (big-endian value >= r)."""


@cache
def root_of_unity(n: int) -> int:
    """ω_n = 7^((r-1)/n): natural-order domains, no bit reversal anywhere in Subspace."""
    if n < 1 or n & (n - 1) or n > 1 << 32:
        raise FieldError(f"domain size must be a power of two <= 2^32, got {n}")
    return pow(PRIMITIVE_ROOT, (BLS_MODULUS - 1) // n, BLS_MODULUS)


def scalar_to_bytes(value: int) -> bytes:
    return (value % BLS_MODULUS).to_bytes(FIELD_ELEMENT_BYTES, "big")


def scalar_from_safe_bytes(data: bytes) -> bytes:
    """31 payload bytes -> a 32-byte scalar with a zero top byte (always below r)."""
    if len(data) != SAFE_BYTES:
        raise FieldError(f"safe scalar payload must be 31 bytes, got {len(data)}")
    return b"\x00" + data


def next_power_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def bit_reverse_indices(n: int) -> list[int]:
    """The radix-2 FFT input permutation for a power-of-two n."""
    bits = n.bit_length() - 1
    return [int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n)]


# --- rows: limbs, bytes and Python ints ------------------------------------------------------------------


def int_to_limbs(value: int) -> np.ndarray:
    return np.frombuffer(value.to_bytes(32, "little"), "<u4").astype(np.uint32)


def limbs_to_int(limbs: np.ndarray) -> int:
    return int.from_bytes(np.ascontiguousarray(limbs, "<u4").tobytes(), "little")


def ints_to_limb_rows(values: list[int]) -> np.ndarray:
    """Plain (not Montgomery) limb rows of integers below 2^256."""
    blob = b"".join(v.to_bytes(32, "little") for v in values)
    return np.frombuffer(blob, "<u4").astype(np.uint32).reshape(-1, LIMBS)


def ints_to_rows(values: list[int]) -> np.ndarray:
    """Montgomery rows of integers (reduced mod r), in pure Python: for constants and small inputs."""
    return ints_to_limb_rows([v % BLS_MODULUS * R_MONT % BLS_MODULUS for v in values])


def rows_to_ints(rows: np.ndarray) -> list[int]:
    """The integers held by Montgomery rows (pure Python)."""
    blob = np.ascontiguousarray(rows, "<u4").tobytes()
    return [int.from_bytes(blob[32 * i : 32 * i + 32], "little") * R_MONT_INV % BLS_MODULUS for i in range(len(rows))]


def bytes_to_rows(chunks: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 big-endian scalars -> (n, 8) uint32 limbs (not yet Montgomery)."""
    words = np.ascontiguousarray(chunks, dtype=np.uint8).reshape(-1, 32).view(">u4")
    return np.ascontiguousarray(words[:, ::-1]).astype(np.uint32)


def rows_to_bytes(rows: np.ndarray) -> np.ndarray:
    """(n, 8) limbs -> (n, 32) big-endian bytes."""
    return np.ascontiguousarray(rows[:, ::-1]).astype(">u4").view(np.uint8).reshape(-1, 32)


_MODULUS_BE = np.frombuffer(BLS_MODULUS.to_bytes(32, "big"), np.uint8).astype(np.int16)


def canonical_mask(chunks: np.ndarray) -> np.ndarray:
    """True where a 32-byte big-endian chunk is a valid scalar (< r)."""
    c = np.asarray(chunks, np.uint8).reshape(-1, 32)
    diff = c.astype(np.int16) - _MODULUS_BE
    nonzero = diff != 0
    first = np.argmax(nonzero, axis=1)
    return np.asarray(nonzero.any(axis=1) & (diff[np.arange(len(c)), first] < 0))


R2_LIMBS = int_to_limbs(R_MONT * R_MONT % BLS_MODULUS)[None, :]  # x·R2 = x in Montgomery form
ONE_LIMBS = int_to_limbs(1)[None, :]  # Montgomery x·1 = x out of Montgomery form
ONE_ROW = ints_to_rows([1])


def to_montgomery(compute: Compute, limbs: np.ndarray) -> np.ndarray:
    return compute.mul(np.ascontiguousarray(limbs, np.uint32), R2_LIMBS)


def from_montgomery(compute: Compute, rows: np.ndarray) -> np.ndarray:
    return compute.mul(np.ascontiguousarray(rows, np.uint32), ONE_LIMBS)


def scalars_to_rows(compute: Compute, chunks: np.ndarray) -> np.ndarray:
    """Strictly decode big-endian scalars into Montgomery rows (FieldError on values >= r)."""
    chunks = np.asarray(chunks, np.uint8).reshape(-1, 32)
    ok = canonical_mask(chunks)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise FieldError(f"chunk {bad} ({bytes(chunks[bad]).hex()}) is not a canonical scalar")
    return to_montgomery(compute, bytes_to_rows(chunks))


def rows_to_scalars(compute: Compute, rows: np.ndarray) -> np.ndarray:
    return rows_to_bytes(from_montgomery(compute, rows))


# --- domains and FFTs ------------------------------------------------------------------------------------


@cache
def power_rows(base: int, count: int) -> np.ndarray:
    """[base^0 … base^(count-1)] as Montgomery rows (read-only; computed once per process)."""
    values = [0] * count
    acc = 1
    for j in range(count):
        values[j] = acc
        acc = acc * base % BLS_MODULUS
    rows = ints_to_rows(values)
    rows.flags.writeable = False
    return rows


def twiddles(inverse: bool) -> np.ndarray:
    """ω^j (or ω^-j) for j < MAX_DOMAIN/2, ω = ω_MAX_DOMAIN: every smaller domain strides this table."""
    omega = root_of_unity(MAX_DOMAIN)
    return power_rows(pow(omega, -1, BLS_MODULUS) if inverse else omega, MAX_DOMAIN // 2)


def check_domain_size(n: int) -> None:
    if n < 1 or n & (n - 1) or n > MAX_DOMAIN:
        raise FieldError(f"FFT length must be a power of two <= {MAX_DOMAIN}, got {n}")


def omega_powers(domain_size: int, count: int) -> np.ndarray:
    """[ω_N^j for j < count] (count <= N/2) as Montgomery rows, sliced from the twiddle table."""
    check_domain_size(domain_size)
    if count > domain_size // 2:
        raise FieldError(f"at most {domain_size // 2} powers of ω_{domain_size}, asked for {count}")
    return twiddles(False)[:: MAX_DOMAIN // domain_size][:count]


def inverse_of(n: int) -> np.ndarray:
    """1/n as one Montgomery row."""
    return ints_to_rows([pow(n, -1, BLS_MODULUS)])


def fft(compute: Compute, rows: np.ndarray) -> np.ndarray:
    """Evaluations at ω_n^i (natural order) of the polynomial with coefficients `rows`."""
    check_domain_size(rows.shape[0])
    return np.asarray(compute.ntt(rows[None])[0])


def ifft(compute: Compute, rows: np.ndarray) -> np.ndarray:
    """Coefficients of the polynomial taking values `rows` at ω_n^i (includes the 1/n)."""
    n = rows.shape[0]
    check_domain_size(n)
    return compute.mul(compute.ntt(rows[None], inverse=True)[0], inverse_of(n))


def ifft_batch(compute: Compute, blocks: np.ndarray) -> np.ndarray:
    """ifft() of every (n, 8) block of a (batch, n, 8) array."""
    batch, n = blocks.shape[0], blocks.shape[1]
    check_domain_size(n)
    coeffs = compute.ntt(blocks, inverse=True)
    return compute.mul(coeffs.reshape(-1, 8), inverse_of(n)).reshape(batch, n, 8)
