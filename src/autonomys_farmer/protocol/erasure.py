"""Erasure coding over the BLS12-381 scalar field (protocol.md §3): extend and recover.

`extend(source)` gives parity[i] = p(ω_{2n}^{2i+1}) where p interpolates source[i] at ω_{2n}^{2i};
interleaved (source, parity) is p on the size-2n domain in natural order. Records use n = 32768
(s-bucket s = domain index), segments use n = 128 across records (piece position = domain index).
All vectors here are Montgomery rows (protocol.field); byte conversion happens at the edges.
"""

from __future__ import annotations

import numpy as np

from autonomys_farmer.protocol import field
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.field import BLS_MODULUS, MAX_DOMAIN, FieldError

COSET_SHIFT = 5  # rust-kzg's shift for the zero-polynomial division; any non-domain point works
SCHOOLBOOK_MAX_DEGREE = 16


class ErasureError(ValueError):
    """Wrong shard count, or too many missing shards to recover."""


def _check_power_of_two(n: int, what: str) -> None:
    if n < 1 or n & (n - 1):
        raise ErasureError(f"{what} must be a power of two, got {n}")


def extend(compute: Compute, source: np.ndarray) -> np.ndarray:
    """Parity rows for n source rows (n power of two, 2n <= 2^16)."""
    n = source.shape[0]
    _check_power_of_two(n, "number of source shards")
    if 2 * n > MAX_DOMAIN:
        raise ErasureError(f"cannot extend {n} shards: 2n exceeds the 2^16 domain")
    coeffs = field.ifft(compute, source)
    shifted = compute.mul(coeffs, field.omega_powers(2 * n, n))
    return field.fft(compute, shifted)


def extend_batch(compute: Compute, sources: np.ndarray) -> np.ndarray:
    """extend() of every (n, 8) block of a (batch, n, 8) array; the archiver's across-record use."""
    batch, n = sources.shape[0], sources.shape[1]
    _check_power_of_two(n, "number of source shards")
    coeffs = compute.ntt(sources, inverse=True)
    scale = compute.mul(field.omega_powers(2 * n, n), field.inverse_of(n))
    shifted = compute.mul(coeffs.reshape(-1, 8), np.tile(scale, (batch, 1))).reshape(batch, n, 8)
    return compute.ntt(shifted)


def interleave(source: np.ndarray, parity: np.ndarray) -> np.ndarray:
    out = np.empty((2 * source.shape[0], *source.shape[1:]), source.dtype)
    out[0::2] = source
    out[1::2] = parity
    return out


def _shift_powers(n: int, inverse: bool) -> np.ndarray:
    return field.power_rows(pow(COSET_SHIFT, -1, BLS_MODULUS) if inverse else COSET_SHIFT, n)


def zero_polynomial(compute: Compute, missing: np.ndarray, domain_size: int) -> np.ndarray:
    """Coefficients (low to high, length |missing| + 1) of Π (X − ω_N^m) over the missing indices.

    A product tree of monic polynomials; leaves are padded with X (root 0, outside the domain) up to
    a power of two and the padding is divided out at the end by dropping zero low coefficients.
    """
    count = len(missing)
    padded = 1 if count <= 1 else 1 << (count - 1).bit_length()
    half = domain_size // 2
    powers = field.omega_powers(domain_size, half)
    missing = np.asarray(missing, np.int64)
    # -ω^m: ω^(N/2) = -1, so -ω^m = ω^(m - N/2) for m >= N/2, and r - ω^m below.
    upper = missing >= half
    neg_roots = np.zeros((padded, 8), np.uint32)  # padding leaves are X - 0
    neg_roots[:count][~upper] = compute.negate(np.ascontiguousarray(powers[missing[~upper]]))
    neg_roots[:count][upper] = powers[missing[upper] - half]
    level = neg_roots.reshape(padded, 1, 8)
    while level.shape[0] > 1:
        d = level.shape[1]
        a, b = level[0::2], level[1::2]
        if d <= SCHOOLBOOK_MAX_DEGREE:
            level = compute.mul_monic_pairs(np.ascontiguousarray(a), np.ascontiguousarray(b))
            continue
        pairs = a.shape[0]
        fa = np.zeros((pairs, 2 * d, 8), np.uint32)
        fb = np.zeros((pairs, 2 * d, 8), np.uint32)
        fa[:, :d] = a
        fb[:, :d] = b
        fa = compute.ntt(fa)
        fb = compute.ntt(fb)
        prod = compute.mul(fa.reshape(-1, 8), fb.reshape(-1, 8)).reshape(pairs, 2 * d, 8)
        prod = compute.ntt(prod, inverse=True)
        low = compute.mul(prod.reshape(-1, 8), field.inverse_of(2 * d)).reshape(pairs, 2 * d, 8)
        # (X^d + a)(X^d + b) = X^2d + X^d (a + b) + a·b, and deg(a·b) <= 2d - 2 fits without wrap.
        mid = compute.add(a.reshape(-1, 8), b.reshape(-1, 8)).reshape(pairs, d, 8)
        upper = compute.add(low[:, d:].reshape(-1, 8), mid.reshape(-1, 8)).reshape(pairs, d, 8)
        low[:, d:] = upper
        level = low
    monic = np.vstack([level[0], field.ONE_ROW])  # degree `padded`, with the leading 1
    return np.ascontiguousarray(monic[padded - count :])


def _validate_shards(shards: np.ndarray, present: np.ndarray) -> tuple[int, np.ndarray]:
    n = shards.shape[0]
    _check_power_of_two(n, "number of shards")
    if n > MAX_DOMAIN:
        raise ErasureError(f"at most {MAX_DOMAIN} shards, got {n}")
    if present.shape[0] != n:
        raise ErasureError(f"presence mask has {present.shape[0]} entries for {n} shards")
    missing = np.flatnonzero(~present)
    if len(missing) > n // 2:
        raise ErasureError(f"{len(missing)} of {n} shards missing; at most {n // 2} can be recovered")
    return n, missing


def recover_poly(compute: Compute, shards: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Coefficients of the unique polynomial through the present shards, trailing zeros trimmed.

    shards: (N, 8) Montgomery rows in interleaved natural order (rows where ~present are ignored).
    """
    n, missing = _validate_shards(shards, present)
    if len(missing) == 0:
        return _trim(field.ifft(compute, shards))
    z = zero_polynomial(compute, missing, n)
    z_full = np.zeros((n, 8), np.uint32)
    z_full[: z.shape[0]] = z
    z_evals = field.fft(compute, z_full)
    known = np.where(present[:, None], shards, 0).astype(np.uint32)
    dz = field.ifft(compute, compute.mul(known, z_evals))
    shift = _shift_powers(n, False)
    dz_coset = field.fft(compute, compute.mul(dz, shift))
    z_coset = field.fft(compute, compute.mul(z_full, shift))
    d_coset = compute.mul(dz_coset, compute.invert(z_coset))
    coeffs = compute.mul(field.ifft(compute, d_coset), _shift_powers(n, True))
    return _trim(coeffs)


def recover(compute: Compute, shards: np.ndarray, present: np.ndarray) -> np.ndarray:
    """All N shards (evaluations in natural order) from at least half of them."""
    coeffs = recover_poly(compute, shards, present)
    full = np.zeros((shards.shape[0], 8), np.uint32)
    full[: coeffs.shape[0]] = coeffs
    return field.fft(compute, full)


def _trim(coeffs: np.ndarray) -> np.ndarray:
    nonzero = np.flatnonzero(coeffs.any(axis=1))
    length = int(nonzero[-1]) + 1 if len(nonzero) else 1
    return coeffs[:length]


def extend_scalars(compute: Compute, source: np.ndarray) -> np.ndarray:
    """Byte-level extend: (n, 32) big-endian scalars -> (n, 32) parity scalars."""
    try:
        rows = field.scalars_to_rows(compute, source)
    except FieldError as e:
        raise ErasureError(str(e)) from e
    return field.rows_to_scalars(compute, extend(compute, rows))
