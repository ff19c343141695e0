"""BLAKE3 compression as a numba kernel, for hashing millions of tiny inputs per PoS table.

The `blake3` package is right for single hashes; the proof of space needs one single-block BLAKE3
per match (~6M per table), plus per-chunk keyed hashes in auditing and per-proof hashes in
plotting, where a Python call per hash would dominate. Words are held in uint64 scalars and masked
to 32 bits because numba widens small integers anyway.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

U32 = np.uint32
IV = np.array(
    [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19], np.uint32
)
CHUNK_START = 1
CHUNK_END = 2
ROOT = 8
KEYED_HASH = 16
BLOCK_LEN = 64
CHUNK_LEN = 1024

# Numba widens uint32 arithmetic to 64 bits; truncating every result back to uint32 lets LLVM use
# native 32-bit adds and rotates (2.5x faster than masking 64-bit values).


@njit(inline="always", cache=True)
def _rotr(x, n):
    return U32((x >> U32(n)) | U32(x << U32(32 - n)))


@njit(inline="always", cache=True)
def _g(a, b, c, d, mx, my):
    a = U32(a + b + mx)
    d = _rotr(U32(d ^ a), 16)
    c = U32(c + d)
    b = _rotr(U32(b ^ c), 12)
    a = U32(a + b + my)
    d = _rotr(U32(d ^ a), 8)
    c = U32(c + d)
    b = _rotr(U32(b ^ c), 7)
    return a, b, c, d


@njit(inline="always", cache=True)
def _round(v, m):
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = v
    m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15 = m
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m0, m1)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m2, m3)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m4, m5)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m6, m7)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m8, m9)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m10, m11)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m12, m13)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m14, m15)
    # The message schedule permutation of BLAKE3, applied between rounds.
    permuted = (m2, m6, m3, m10, m7, m0, m4, m13, m1, m11, m12, m5, m9, m14, m15, m8)
    return (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15), permuted


@njit(cache=True)
def compress(cv, m, counter, block_len, flags):
    """One BLAKE3 compression of 16 uint32 message words; returns the 8-word chaining value."""
    v = (
        U32(cv[0]), U32(cv[1]), U32(cv[2]), U32(cv[3]), U32(cv[4]), U32(cv[5]), U32(cv[6]), U32(cv[7]),
        IV[0], IV[1], IV[2], IV[3],
        U32(counter & 0xFFFFFFFF), U32(counter >> 32), U32(block_len), U32(flags),
    )  # fmt: skip
    # Seven rounds written out: a tuple-carrying loop defeats LLVM's scalar replacement.
    v, m = _round(v, m)
    v, m = _round(v, m)
    v, m = _round(v, m)
    v, m = _round(v, m)
    v, m = _round(v, m)
    v, m = _round(v, m)
    v, m = _round(v, m)
    return (
        U32(v[0] ^ v[8]), U32(v[1] ^ v[9]), U32(v[2] ^ v[10]), U32(v[3] ^ v[11]),
        U32(v[4] ^ v[12]), U32(v[5] ^ v[13]), U32(v[6] ^ v[14]), U32(v[7] ^ v[15]),
    )  # fmt: skip


@njit(cache=True)
def _load_block(data, start, n):
    """16 little-endian message words from data[start:start+n], zero padded."""
    w = np.zeros(16, np.uint32)
    for i in range(n):
        w[i >> 2] |= U32(U32(data[start + i]) << U32(8 * (i & 3)))
    return (
        w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15],
    )  # fmt: skip


@njit(cache=True)
def hash_chunk_words(data, start, length, key_words, keyed):
    """BLAKE3 root hash (8 words) of data[start:start+length], length <= 1024 (one chunk)."""
    cv = key_words
    base = KEYED_HASH if keyed else 0
    nblocks = max(1, (length + BLOCK_LEN - 1) // BLOCK_LEN)
    for b in range(nblocks):
        off = b * BLOCK_LEN
        n = min(BLOCK_LEN, length - off)
        flags = base
        if b == 0:
            flags |= CHUNK_START
        if b == nblocks - 1:
            flags |= CHUNK_END | ROOT
        cv = compress(cv, _load_block(data, start + off, n), 0, n, flags)
    return cv


@njit(cache=True)
def _iv_words():
    return (IV[0], IV[1], IV[2], IV[3], IV[4], IV[5], IV[6], IV[7])


@njit(cache=True)
def _key_words(key):
    w = np.zeros(8, np.uint32)
    for i in range(32):
        w[i >> 2] |= U32(U32(key[i]) << U32(8 * (i & 3)))
    return (w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7])


@njit(cache=True)
def _store_words(cv, out, row):
    for i in range(8):
        for j in range(4):
            out[row, 4 * i + j] = (cv[i] >> U32(8 * j)) & U32(0xFF)


@njit(parallel=True, cache=True)
def hash_rows(rows):
    """BLAKE3 of every row of a 2-D uint8 array (row length <= 1024): (n, 32) digests."""
    n, length = rows.shape
    out = np.empty((n, 32), np.uint8)
    flat = rows.reshape(-1)
    for i in prange(n):
        _store_words(hash_chunk_words(flat, i * length, length, _iv_words(), False), out, i)
    return out


@njit(parallel=True, cache=True)
def keyed_hash_rows(key, rows):
    """Keyed BLAKE3 (32-byte key) of every row of a 2-D uint8 array: (n, 32) digests."""
    n, length = rows.shape
    out = np.empty((n, 32), np.uint8)
    flat = rows.reshape(-1)
    kw = _key_words(key)
    for i in prange(n):
        _store_words(hash_chunk_words(flat, i * length, length, kw, True), out, i)
    return out
