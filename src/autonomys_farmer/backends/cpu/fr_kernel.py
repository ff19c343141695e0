"""BLS12-381 scalar-field arithmetic as numba kernels: Montgomery multiplication on 8x32-bit limbs.

Field elements are rows of a uint32 array of shape (n, 8), limbs little-endian, in Montgomery form
(a·2^256 mod r) while inside kernels. Scratch arrays are passed in so that the inner loops never
allocate. Every 32x32-bit product plus two 32-bit carries fits one uint64, which is why 32-bit limbs.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from autonomys_farmer.protocol.field import BLS_MODULUS, MAX_DOMAIN, FieldError, root_of_unity

LIMBS = 8
M32 = np.uint64(0xFFFFFFFF)
U32S = np.uint64(32)
R_MONT = 1 << 256


def int_to_limbs(value: int) -> np.ndarray:
    return np.array([(value >> (32 * i)) & 0xFFFFFFFF for i in range(LIMBS)], np.uint32)


def limbs_to_int(limbs: np.ndarray) -> int:
    return sum(int(v) << (32 * i) for i, v in enumerate(limbs))


MODULUS = int_to_limbs(BLS_MODULUS).astype(np.uint64)
N0_INV = np.uint64((-pow(BLS_MODULUS, -1, 1 << 32)) % (1 << 32))
R2 = int_to_limbs(R_MONT * R_MONT % BLS_MODULUS)[None, :]
ONE_RAW = int_to_limbs(1)[None, :]
ONE_MONT = int_to_limbs(R_MONT % BLS_MODULUS)[None, :]


@njit(cache=True)
def _mont_mul(a, ia, b, ib, out, t):
    """out[0:8] = a[ia] * b[ib] / 2^256 mod r (CIOS)."""
    for j in range(10):
        t[j] = 0
    for i in range(8):
        bi = np.uint64(b[ib, i])
        c = np.uint64(0)
        for j in range(8):
            s = t[j] + np.uint64(a[ia, j]) * bi + c
            t[j] = s & M32
            c = s >> U32S
        s = t[8] + c
        t[8] = s & M32
        t[9] = s >> U32S
        m = (t[0] * N0_INV) & M32
        s = t[0] + m * MODULUS[0]
        c = s >> U32S
        for j in range(1, 8):
            s = t[j] + m * MODULUS[j] + c
            t[j - 1] = s & M32
            c = s >> U32S
        s = t[8] + c
        t[7] = s & M32
        t[8] = t[9] + (s >> U32S)
    _reduce_once(t, out)


@njit(cache=True)
def _reduce_once(t, out):
    """out = t - r if t >= r else t, for t < 2r held in t[0:9]."""
    ge = t[8] != 0
    if not ge:
        ge = True
        for j in range(7, -1, -1):
            if t[j] != MODULUS[j]:
                ge = t[j] > MODULUS[j]
                break
    if ge:
        borrow = np.uint64(0)
        for j in range(8):
            d = t[j] - MODULUS[j] - borrow
            borrow = np.uint64(1) if t[j] < MODULUS[j] + borrow else np.uint64(0)
            out[j] = d & M32
    else:
        for j in range(8):
            out[j] = t[j]


@njit(cache=True)
def _add_sub_store(x, i0, i1, v, t):
    """Butterfly tail: (x[i0], x[i1]) = (x[i0] + v, x[i0] - v) mod r."""
    c = np.uint64(0)
    for j in range(8):
        s = np.uint64(x[i0, j]) + v[j] + c
        t[j] = s & M32
        c = s >> U32S
    t[8] = c
    borrow = np.uint64(0)
    for j in range(8):
        u = np.uint64(x[i0, j])
        sub = v[j] + borrow
        if u >= sub:
            d = u - sub
            borrow = np.uint64(0)
        else:
            d = u + (np.uint64(1) << U32S) - sub
            borrow = np.uint64(1)
        x[i1, j] = d
    if borrow:
        c = np.uint64(0)
        for j in range(8):
            s = np.uint64(x[i1, j]) + MODULUS[j] + c
            x[i1, j] = s & M32
            c = s >> U32S
    _reduce_once(t, v)
    for j in range(8):
        x[i0, j] = v[j]


@njit(parallel=True, cache=True)
def mont_mul_rows(a, b):
    """Elementwise product of two (n, 8) arrays; b may have one row (broadcast)."""
    n = a.shape[0]
    out = np.empty((n, 8), np.uint32)
    nchunks = min(64, max(1, n))
    bcast = b.shape[0] == 1
    for c in prange(nchunks):
        t = np.empty(10, np.uint64)
        v = np.empty(8, np.uint64)
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            _mont_mul(a, i, b, 0 if bcast else i, v, t)
            for j in range(8):
                out[i, j] = v[j]
    return out


@njit(cache=True)
def _bit_reverse_rows(x):
    n = x.shape[0]
    j = 0
    for i in range(1, n):
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            for q in range(8):
                tmp = x[i, q]
                x[i, q] = x[j, q]
                x[j, q] = tmp


@njit(parallel=True, cache=True)
def ntt_inplace(x, twiddles, max_domain):
    """Natural-order radix-2 NTT of x (n, 8) Montgomery rows; twiddles[j] = ω_max^j (j < max/2).

    Forward with ω powers, inverse with ω^-1 powers (scaling by 1/n is the caller's).
    """
    n = x.shape[0]
    if n <= 1:
        return
    _bit_reverse_rows(x)
    half_n = n >> 1
    nchunks = min(32, half_n)
    length = 2
    while length <= n:
        half = length >> 1
        step = max_domain // length
        for c in prange(nchunks):
            t = np.empty(10, np.uint64)
            v = np.empty(8, np.uint64)
            for k in range(c * half_n // nchunks, (c + 1) * half_n // nchunks):
                group = k // half
                j = k - group * half
                i0 = group * length + j
                i1 = i0 + half
                _mont_mul(x, i1, twiddles, j * step, v, t)
                _add_sub_store(x, i0, i1, v, t)
        length <<= 1


@njit(cache=True)
def synthetic_division(coeffs, point):
    """Quotient of (p(X) - p(x)) / (X - x): q[L-2] = c[L-1], q[j-1] = c[j] + x·q[j] (Montgomery rows)."""
    L = coeffs.shape[0]
    q = np.zeros((max(L - 1, 0), 8), np.uint32)
    t = np.empty(10, np.uint64)
    v = np.empty(8, np.uint64)
    acc = np.zeros((1, 8), np.uint32)
    for j in range(L - 1, 0, -1):
        # acc = c[j] + x * acc
        _mont_mul(acc, 0, point, 0, v, t)
        c = np.uint64(0)
        for q_ in range(8):
            s = np.uint64(coeffs[j, q_]) + v[q_] + c
            t[q_] = s & M32
            c = s >> U32S
        t[8] = c
        _reduce_once(t, v)
        for q_ in range(8):
            acc[0, q_] = v[q_]
            q[j - 1, q_] = v[q_]
    return q


# --- conversions between 32-byte big-endian scalars and limb rows -------------------------------


def bytes_to_rows(chunks: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 big-endian scalars -> (n, 8) uint32 limbs (not yet Montgomery)."""
    words = np.ascontiguousarray(chunks, dtype=np.uint8).reshape(-1, 32).view(">u4")
    return np.ascontiguousarray(words[:, ::-1]).astype(np.uint32)


def rows_to_bytes(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows[:, ::-1]).astype(">u4").view(np.uint8).reshape(-1, 32)


_MODULUS_BE = np.frombuffer(BLS_MODULUS.to_bytes(32, "big"), np.uint8)


def canonical_mask(chunks: np.ndarray) -> np.ndarray:
    """True where a 32-byte big-endian chunk is a valid scalar (< r)."""
    c = np.asarray(chunks, np.uint8).reshape(-1, 32)
    diff = c.astype(np.int16) - _MODULUS_BE.astype(np.int16)
    nonzero = diff != 0
    first = np.argmax(nonzero, axis=1)
    any_diff = nonzero.any(axis=1)
    return any_diff & (diff[np.arange(len(c)), first] < 0)


def to_montgomery(rows: np.ndarray) -> np.ndarray:
    return mont_mul_rows(np.ascontiguousarray(rows, np.uint32), R2)


def from_montgomery(rows: np.ndarray) -> np.ndarray:
    return mont_mul_rows(np.ascontiguousarray(rows, np.uint32), ONE_RAW)


def scalars_to_mont(chunks: np.ndarray) -> np.ndarray:
    """Strictly decode big-endian scalars into Montgomery rows (FieldError on values >= r)."""
    chunks = np.asarray(chunks, np.uint8).reshape(-1, 32)
    ok = canonical_mask(chunks)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise FieldError(f"chunk {bad} ({bytes(chunks[bad]).hex()}) is not a canonical scalar")
    return to_montgomery(bytes_to_rows(chunks))


def mont_to_scalars(rows: np.ndarray) -> np.ndarray:
    return rows_to_bytes(from_montgomery(rows))


def ints_to_mont(values: list[int]) -> np.ndarray:
    rows = np.array([int_to_limbs(v % BLS_MODULUS) for v in values], np.uint32).reshape(-1, 8)
    return to_montgomery(rows)


def mont_to_ints(rows: np.ndarray) -> list[int]:
    return [limbs_to_int(r) for r in from_montgomery(rows)]


def _power_table(base: int, count: int) -> np.ndarray:
    """[base^0, base^1, ...] as Montgomery rows, computed with Python ints once per process."""
    values = [0] * count
    acc = 1
    for j in range(count):
        values[j] = acc
        acc = acc * base % BLS_MODULUS
    return ints_to_mont(values)


class Domain:
    """Twiddle tables of the size-MAX_DOMAIN domain; every smaller power-of-two domain strides it."""

    _instance: Domain | None = None

    def __init__(self) -> None:
        omega = root_of_unity(MAX_DOMAIN)
        self.forward = _power_table(omega, MAX_DOMAIN // 2)
        self.inverse = _power_table(pow(omega, -1, BLS_MODULUS), MAX_DOMAIN // 2)

    @classmethod
    def get(cls) -> Domain:
        if cls._instance is None:
            cls._instance = Domain()
        return cls._instance


def _check_size(n: int) -> None:
    if n < 1 or n & (n - 1) or n > MAX_DOMAIN:
        raise FieldError(f"FFT length must be a power of two <= {MAX_DOMAIN}, got {n}")


def fft(rows: np.ndarray) -> np.ndarray:
    """Evaluations at ω_n^i (natural order) of the polynomial with coefficients `rows`."""
    _check_size(rows.shape[0])
    out = np.array(rows, np.uint32, copy=True)
    ntt_inplace(out, Domain.get().forward, MAX_DOMAIN)
    return out


def ifft(rows: np.ndarray) -> np.ndarray:
    """Coefficients of the polynomial taking values `rows` at ω_n^i (includes the 1/n)."""
    n = rows.shape[0]
    _check_size(n)
    out = np.array(rows, np.uint32, copy=True)
    ntt_inplace(out, Domain.get().inverse, MAX_DOMAIN)
    return mont_mul_rows(out, ints_to_mont([pow(n, -1, BLS_MODULUS)]))


def omega_powers(domain_size: int, count: int) -> np.ndarray:
    """[ω_N^j for j < count] (count <= N/2) as Montgomery rows, sliced from the twiddle table."""
    _check_size(domain_size)
    if count > domain_size // 2:
        raise FieldError(f"at most {domain_size // 2} powers of ω_{domain_size}, asked for {count}")
    return Domain.get().forward[:: MAX_DOMAIN // domain_size][:count]


@njit(cache=True)
def _ntt_serial(x, twiddles, max_domain, t, v):
    n = x.shape[0]
    if n <= 1:
        return
    _bit_reverse_rows(x)
    length = 2
    while length <= n:
        half = length >> 1
        step = max_domain // length
        for group in range(0, n, length):
            for j in range(half):
                i0 = group + j
                _mont_mul(x, i0 + half, twiddles, j * step, v, t)
                _add_sub_store(x, i0, i0 + half, v, t)
        length <<= 1


@njit(parallel=True, cache=True)
def ntt_batch_inplace(x, twiddles, max_domain):
    """Independent NTTs of every x[b] (shape (batch, n, 8)); parallel over the batch."""
    for b in prange(x.shape[0]):
        t = np.empty(10, np.uint64)
        v = np.empty(8, np.uint64)
        _ntt_serial(x[b], twiddles, max_domain, t, v)


@njit(parallel=True, cache=True)
def mul_monic_pairs_schoolbook(a, b):
    """(X^d + a)(X^d + b) for batches of monic degree-d polys given by their low coefficients.

    Returns the low 2d coefficients of the monic degree-2d products (the leading 1 is implicit).
    """
    count, d = a.shape[0], a.shape[1]
    out = np.zeros((count, 2 * d, 8), np.uint32)
    for p in prange(count):
        t = np.empty(10, np.uint64)
        v = np.empty(8, np.uint64)
        acc = np.empty((1, 8), np.uint32)
        for i in range(d):
            for j in range(d):
                _mont_mul(a[p], i, b[p], j, v, t)
                for q in range(8):
                    acc[0, q] = v[q]
                _add_into(out[p], i + j, acc, 0, t, v)
        for i in range(d):
            _add_into(out[p], d + i, a[p], i, t, v)
            _add_into(out[p], d + i, b[p], i, t, v)
    return out


@njit(cache=True)
def _add_into(x, ix, y, iy, t, v):
    """x[ix] += y[iy] mod r."""
    c = np.uint64(0)
    for q in range(8):
        s = np.uint64(x[ix, q]) + np.uint64(y[iy, q]) + c
        t[q] = s & M32
        c = s >> U32S
    t[8] = c
    _reduce_once(t, v)
    for q in range(8):
        x[ix, q] = v[q]


@njit(parallel=True, cache=True)
def add_rows(a, b):
    """Elementwise a + b mod r for (n, 8) arrays."""
    n = a.shape[0]
    out = a.copy()
    nchunks = min(64, max(1, n))
    for c in prange(nchunks):
        t = np.empty(10, np.uint64)
        v = np.empty(8, np.uint64)
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            _add_into(out, i, b, i, t, v)
    return out


@njit(cache=True)
def prefix_products(x):
    """prefix[i] = x[0]·…·x[i] (Montgomery rows), for batch inversion."""
    n = x.shape[0]
    prefix = np.empty((n, 8), np.uint32)
    t = np.empty(10, np.uint64)
    v = np.empty(8, np.uint64)
    prefix[0] = x[0]
    for i in range(1, n):
        _mont_mul(prefix, i - 1, x, i, v, t)
        for q in range(8):
            prefix[i, q] = v[q]
    return prefix


@njit(cache=True)
def batch_inverse_from_prefix(x, prefix, total_inverse):
    """Inverses of every row given the prefix products and the inverse of their total."""
    n = x.shape[0]
    out = np.empty((n, 8), np.uint32)
    t = np.empty(10, np.uint64)
    v = np.empty(8, np.uint64)
    acc = total_inverse.copy()
    for i in range(n - 1, 0, -1):
        _mont_mul(acc, 0, prefix, i - 1, v, t)
        for q in range(8):
            out[i, q] = v[q]
        _mont_mul(acc, 0, x, i, v, t)
        for q in range(8):
            acc[0, q] = v[q]
    out[0] = acc[0]
    return out


def batch_inverse(rows: np.ndarray) -> np.ndarray:
    """Inverse of every (non-zero) Montgomery row with one modular exponentiation."""
    prefix = prefix_products(np.ascontiguousarray(rows))
    (total,) = mont_to_ints(prefix[-1:])
    if total == 0:
        raise FieldError("cannot invert zero")
    return batch_inverse_from_prefix(rows, prefix, ints_to_mont([pow(total, -1, BLS_MODULUS)]))


def batch_ntt(batch: np.ndarray, inverse: bool = False) -> np.ndarray:
    """NTT (or unscaled inverse NTT) of every row block of a (batch, n, 8) array."""
    out = np.array(batch, np.uint32, copy=True)
    _check_size(out.shape[1])
    domain = Domain.get()
    twiddles = domain.inverse if inverse else domain.forward
    if out.shape[0] < 4:  # few large transforms: parallelise inside each one instead
        for block in out:
            ntt_inplace(block, twiddles, MAX_DOMAIN)
    else:
        ntt_batch_inplace(out, twiddles, MAX_DOMAIN)
    return out


@njit(cache=True)
def neg_rows(x):
    """r - x for every non-zero row (negation commutes with the Montgomery form)."""
    n = x.shape[0]
    out = np.zeros((n, 8), np.uint32)
    for i in range(n):
        nonzero = False
        for q in range(8):
            if x[i, q] != 0:
                nonzero = True
        if not nonzero:
            continue
        borrow = np.uint64(0)
        for q in range(8):
            sub = np.uint64(x[i, q]) + borrow
            if MODULUS[q] >= sub:
                out[i, q] = MODULUS[q] - sub
                borrow = np.uint64(0)
            else:
                out[i, q] = MODULUS[q] + (np.uint64(1) << U32S) - sub
                borrow = np.uint64(1)
    return out
