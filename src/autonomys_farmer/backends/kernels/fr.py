"""BLS12-381 scalar field (Fr) kernel bodies: Montgomery arithmetic on 8x32-bit limbs, the NTT butterfly.

Field elements are rows of uint32 arrays of shape (n, 8), limbs little-endian, in Montgomery form
(a·2^256 mod r) inside kernels. Every 32x32-bit product plus two 32-bit carries fits one uint64, which is
why 32-bit limbs. Scratch (`t`: 10 words, `v`: 8 words, both uint64) comes from the caller: a CUDA thread's
local memory, or one allocation per chunk of work on the CPU.
"""

from __future__ import annotations

import numpy as np

from autonomys_farmer.backends.kernels.ints import I64, U8, U32, U64
from autonomys_farmer.backends.kernels.source import kernel
from autonomys_farmer.protocol.field import BLS_MODULUS

M32 = np.uint64(0xFFFFFFFF)
MODULUS = np.array([(BLS_MODULUS >> (32 * i)) & 0xFFFFFFFF for i in range(8)], np.uint64)
N0_INV = np.uint64((-pow(BLS_MODULUS, -1, 1 << 32)) % (1 << 32))


@kernel
def reduce_once(t, out):
    """out = t - r if t >= r else t, for t < 2r held in t[0:9]."""
    ge = t[8] != 0
    if not ge:
        ge = True
        for j in range(7, -1, -1):
            if t[j] != MODULUS[j]:
                ge = t[j] > MODULUS[j]
                break
    if ge:
        borrow = U64(0)
        for j in range(8):
            sub = U64(MODULUS[j] + borrow)
            borrow = U64(1) if t[j] < sub else U64(0)
            out[j] = U64(U64(t[j] - sub) & M32)
    else:
        for j in range(8):
            out[j] = t[j]


@kernel
def mont_mul(a, ia, b, ib, out, t):
    """out[0:8] = a[ia] · b[ib] / 2^256 mod r (CIOS)."""
    for j in range(10):
        t[j] = U64(0)
    for i in range(8):
        bi = U64(b[ib, i])
        c = U64(0)
        for j in range(8):
            s = U64(t[j] + U64(a[ia, j]) * bi + c)
            t[j] = U64(s & M32)
            c = U64(s >> U64(32))
        s = U64(t[8] + c)
        t[8] = U64(s & M32)
        t[9] = U64(s >> U64(32))
        m = U64(U64(t[0] * N0_INV) & M32)
        s = U64(t[0] + m * MODULUS[0])
        c = U64(s >> U64(32))
        for j in range(1, 8):
            s = U64(t[j] + m * MODULUS[j] + c)
            t[j - 1] = U64(s & M32)
            c = U64(s >> U64(32))
        s = U64(t[8] + c)
        t[7] = U64(s & M32)
        t[8] = U64(t[9] + U64(s >> U64(32)))
    reduce_once(t, out)


@kernel
def store_row(x, i, v):
    for j in range(8):
        x[i, j] = U32(v[j])


@kernel
def mont_mul_into(a, ia, b, ib, out, io, v, t):
    """out[io] = a[ia] · b[ib] (Montgomery)."""
    mont_mul(a, ia, b, ib, v, t)
    store_row(out, io, v)


@kernel
def add_into(x, ix, y, iy, v, t):
    """x[ix] += y[iy] mod r."""
    c = U64(0)
    for q in range(8):
        s = U64(U64(x[ix, q]) + U64(y[iy, q]) + c)
        t[q] = U64(s & M32)
        c = U64(s >> U64(32))
    t[8] = c
    reduce_once(t, v)
    store_row(x, ix, v)


@kernel
def sub_row(x, i0, v, out, i1):
    """out[i1] = x[i0] - v mod r (v: 8 limbs in uint64 scratch)."""
    borrow = U64(0)
    for j in range(8):
        u = U64(x[i0, j])
        sub = U64(v[j] + borrow)
        if u >= sub:
            out[i1, j] = U32(u - sub)
            borrow = U64(0)
        else:
            out[i1, j] = U32(U64(u + U64(0x100000000)) - sub)
            borrow = U64(1)
    if borrow:
        c = U64(0)
        for j in range(8):
            s = U64(U64(out[i1, j]) + MODULUS[j] + c)
            out[i1, j] = U32(s & M32)
            c = U64(s >> U64(32))


@kernel
def butterfly(x, i0, i1, twiddles, w, v, t):
    """Cooley–Tukey butterfly: (x[i0], x[i1]) = (x[i0] + ω·x[i1], x[i0] − ω·x[i1]), ω = twiddles[w]."""
    mont_mul(x, i1, twiddles, w, v, t)
    sub_row(x, i0, v, x, i1)
    c = U64(0)
    for j in range(8):
        s = U64(U64(x[i0, j]) + v[j] + c)
        t[j] = U64(s & M32)
        c = U64(s >> U64(32))
    t[8] = c
    reduce_once(t, v)
    store_row(x, i0, v)


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
def ntt_butterfly(k, x, twiddles, length, max_domain, v, t):
    """Butterfly k (0 <= k < n/2) of the radix-2 stage of the given length, on bit-reversed input."""
    half = length >> 1
    group = k // half
    j = k - group * half
    i0 = group * length + j
    butterfly(x, i0, i0 + half, twiddles, j * (max_domain // length), v, t)


@kernel
def negate_row(x, i, out):
    """out[i] = r - x[i] for non-zero x[i], else 0 (negation commutes with the Montgomery form)."""
    nonzero = False
    for q in range(8):
        if x[i, q] != 0:
            nonzero = True
    borrow = U64(0)
    for q in range(8):
        if not nonzero:
            out[i, q] = U32(0)
            continue
        sub = U64(U64(x[i, q]) + borrow)
        if MODULUS[q] >= sub:
            out[i, q] = U32(MODULUS[q] - sub)
            borrow = U64(0)
        else:
            out[i, q] = U32(U64(MODULUS[q] + U64(0x100000000)) - sub)
            borrow = U64(1)


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
def store_limb_words(v, out, start):
    """8 limbs held in uint64 scratch (e.g. a mont_mul result) as 32 big-endian bytes at out[start:]."""
    for q in range(8):
        w = U32(v[q])
        base = start + 4 * (7 - q)
        out[base] = U8(w >> U32(24))
        out[base + 1] = U8(U32(w >> U32(16)) & U32(0xFF))
        out[base + 2] = U8(U32(w >> U32(8)) & U32(0xFF))
        out[base + 3] = U8(w & U32(0xFF))
