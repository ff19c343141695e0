"""BLS12-381 scalar field (Fr) kernel bodies: Montgomery arithmetic on rows, the NTT butterfly.

Field elements are rows of uint32 arrays of shape (n, 8), limbs little-endian, in Montgomery form
(a·2^256 mod r) inside kernels. A body loads a row as a tuple of 4 uint64 words (`fr_load`), computes on
tuples with the generated `fr_mul`/`fr_add`/`fr_sub` (backends/kernels/montgomery.py) and stores the
result back (`fr_store`); rows keep the contract's uint32 layout, so no caller sees the word size.
"""

from __future__ import annotations

import numpy as np

from autonomys_farmer.backends.kernels import montgomery
from autonomys_farmer.backends.kernels.ints import I64, U8, U32, U64
from autonomys_farmer.backends.kernels.source import kernel
from autonomys_farmer.protocol.field import BLS_MODULUS

MODULUS = np.array([(BLS_MODULUS >> (32 * i)) & 0xFFFFFFFF for i in range(8)], np.uint64)
FR_ZERO = montgomery.words_of(0, 4)

_field = montgomery.define("fr", BLS_MODULUS, globals())
fr_mul = _field["mul"]
fr_add = _field["add"]
fr_sub = _field["sub"]
fr_is_zero = _field["is_zero"]
M32 = np.uint64(0xFFFFFFFF)
SHIFT = np.uint64(32)


@kernel
def fr_load(x, i):
    """Row i of a (n, 8) uint32 array as 4 uint64 words."""
    return (
        U64(U64(x[i, 0]) | U64(U64(x[i, 1]) << SHIFT)),
        U64(U64(x[i, 2]) | U64(U64(x[i, 3]) << SHIFT)),
        U64(U64(x[i, 4]) | U64(U64(x[i, 5]) << SHIFT)),
        U64(U64(x[i, 6]) | U64(U64(x[i, 7]) << SHIFT)),
    )


@kernel
def fr_store(x, i, v):
    """x[i] = the 4 words of v as 8 uint32 limbs."""
    x[i, 0] = U32(v[0] & M32)
    x[i, 1] = U32(v[0] >> SHIFT)
    x[i, 2] = U32(v[1] & M32)
    x[i, 3] = U32(v[1] >> SHIFT)
    x[i, 4] = U32(v[2] & M32)
    x[i, 5] = U32(v[2] >> SHIFT)
    x[i, 6] = U32(v[3] & M32)
    x[i, 7] = U32(v[3] >> SHIFT)


@kernel
def mont_mul_into(a, ia, b, ib, out, io):
    """out[io] = a[ia] · b[ib] (Montgomery)."""
    fr_store(out, io, fr_mul(fr_load(a, ia), fr_load(b, ib)))


@kernel
def add_into(x, ix, y, iy):
    """x[ix] += y[iy] mod r."""
    fr_store(x, ix, fr_add(fr_load(x, ix), fr_load(y, iy)))


@kernel
def butterfly(x, i0, i1, twiddles, w):
    """Cooley–Tukey butterfly: (x[i0], x[i1]) = (x[i0] + ω·x[i1], x[i0] − ω·x[i1]), ω = twiddles[w]."""
    u = fr_load(x, i0)
    v = fr_mul(fr_load(x, i1), fr_load(twiddles, w))
    fr_store(x, i0, fr_add(u, v))
    fr_store(x, i1, fr_sub(u, v))


@kernel
def bit_reverse(i, log_n):
    """i with its low log_n bits reversed (log_n >= 1)."""
    r = U32(0)
    x = U32(i)
    for _ in range(log_n):
        r = U32(U32(r << U32(1)) | U32(x & U32(1)))
        x = U32(x >> U32(1))
    return r


@kernel
def bit_reverse_swap(x, i, log_n):
    """The input permutation of a radix-2 NTT, one index at a time: swap row i with its bit reversal."""
    j = I64(bit_reverse(i, log_n))
    if i < j:
        for q in range(8):
            tmp = x[i, q]
            x[i, q] = x[j, q]
            x[j, q] = tmp


@kernel
def ntt_butterfly(k, x, twiddles, length, max_domain):
    """Butterfly k (0 <= k < n/2) of the radix-2 stage of the given length, on bit-reversed input."""
    half = length >> 1
    group = k // half
    j = k - group * half
    i0 = group * length + j
    butterfly(x, i0, i0 + half, twiddles, j * (max_domain // length))


@kernel
def negate_row(x, i, out):
    """out[i] = r - x[i] for non-zero x[i], else 0 (negation commutes with the Montgomery form)."""
    fr_store(out, i, fr_sub(FR_ZERO, fr_load(x, i)))


@kernel
def load_scalar(chunks, start, rows, i):
    """rows[i] = the 32 big-endian bytes at chunks[start:start+32] as little-endian uint32 limbs."""
    for q in range(8):
        base = start + 4 * (7 - q)
        rows[i, q] = U32(
            U32(U32(chunks[base]) << U32(24))
            | U32(U32(chunks[base + 1]) << U32(16))
            | U32(U32(chunks[base + 2]) << U32(8))
            | U32(chunks[base + 3])
        )


@kernel
def store_scalar(rows, i, out, start):
    """The limbs of rows[i] as 32 big-endian bytes at out[start:start+32]."""
    for q in range(8):
        w = U32(rows[i, q])
        base = start + 4 * (7 - q)
        out[base] = U8(w >> U32(24))
        out[base + 1] = U8(U32(w >> U32(16)) & U32(0xFF))
        out[base + 2] = U8(U32(w >> U32(8)) & U32(0xFF))
        out[base + 3] = U8(w & U32(0xFF))


@kernel
def is_canonical(rows, i):
    """rows[i] (plain limbs) < r: a valid scalar encoding."""
    for q in range(7, -1, -1):
        if U64(rows[i, q]) != MODULUS[q]:
            return U64(rows[i, q]) < MODULUS[q]
    return False


@kernel
def store_word(word, out, start):
    """One 64-bit word as 8 big-endian bytes at out[start:start+8]."""
    for b in range(8):
        out[start + b] = U8(U64(word >> U64(56 - 8 * b)) & U64(0xFF))


@kernel
def store_words(v, out, start):
    """4 words (e.g. an fr_mul result) as 32 big-endian bytes at out[start:start+32]."""
    store_word(v[3], out, start)
    store_word(v[2], out, start + 8)
    store_word(v[1], out, start + 16)
    store_word(v[0], out, start + 24)
