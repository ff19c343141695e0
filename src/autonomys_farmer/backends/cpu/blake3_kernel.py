"""BLAKE3 compression as a numba kernel, for hashing millions of tiny inputs per PoS table.

The `blake3` package is right for single hashes; the proof of space needs one single-block BLAKE3
per match (~6M per table), plus per-chunk keyed hashes in auditing and per-proof hashes in
plotting, where a Python call per hash would dominate. Words are held in uint64 scalars and masked
to 32 bits because numba widens small integers anyway.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

MASK32 = np.uint64(0xFFFFFFFF)
IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
CHUNK_START = np.uint64(1)
CHUNK_END = np.uint64(2)
ROOT = np.uint64(8)
KEYED_HASH = np.uint64(16)
BLOCK_LEN = 64
CHUNK_LEN = 1024


@njit(cache=True)
def _rotr(x, n):
    return ((x >> np.uint64(n)) | (x << np.uint64(32 - n))) & MASK32


@njit(cache=True)
def _g(a, b, c, d, mx, my):
    a = (a + b + mx) & MASK32
    d = _rotr(d ^ a, 16)
    c = (c + d) & MASK32
    b = _rotr(b ^ c, 12)
    a = (a + b + my) & MASK32
    d = _rotr(d ^ a, 8)
    c = (c + d) & MASK32
    b = _rotr(b ^ c, 7)
    return a, b, c, d


@njit(cache=True)
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
    """One BLAKE3 compression; returns the 16-word output (first 8 words = new chaining value)."""
    v = (
        cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
        np.uint64(IV[0]), np.uint64(IV[1]), np.uint64(IV[2]), np.uint64(IV[3]),
        counter & MASK32, (counter >> 32) & MASK32, block_len, flags,
    )  # fmt: skip
    for _ in range(7):
        v, m = _round(v, m)
    return (
        v[0] ^ v[8], v[1] ^ v[9], v[2] ^ v[10], v[3] ^ v[11],
        v[4] ^ v[12], v[5] ^ v[13], v[6] ^ v[14], v[7] ^ v[15],
        v[8] ^ cv[0], v[9] ^ cv[1], v[10] ^ cv[2], v[11] ^ cv[3],
        v[12] ^ cv[4], v[13] ^ cv[5], v[14] ^ cv[6], v[15] ^ cv[7],
    )  # fmt: skip


@njit(cache=True)
def _load_block(data, start, n):
    """16 little-endian message words from data[start:start+n], zero padded."""
    w = np.zeros(16, np.uint64)
    for i in range(n):
        w[i >> 2] |= np.uint64(data[start + i]) << np.uint64(8 * (i & 3))
    return (
        w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15],
    )  # fmt: skip


@njit(cache=True)
def hash_chunk_words(data, start, length, key_words, keyed):
    """BLAKE3 root hash (8 words) of data[start:start+length], length <= 1024 (one chunk)."""
    cv = key_words
    base = KEYED_HASH if keyed else np.uint64(0)
    nblocks = max(1, (length + BLOCK_LEN - 1) // BLOCK_LEN)
    for b in range(nblocks):
        off = b * BLOCK_LEN
        n = min(BLOCK_LEN, length - off)
        flags = base
        if b == 0:
            flags |= CHUNK_START
        if b == nblocks - 1:
            flags |= CHUNK_END | ROOT
        out = compress(cv, _load_block(data, start + off, n), np.uint64(0), np.uint64(n), flags)
        cv = (out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7])
    return cv


@njit(cache=True)
def _iv_words():
    return (
        np.uint64(IV[0]), np.uint64(IV[1]), np.uint64(IV[2]), np.uint64(IV[3]),
        np.uint64(IV[4]), np.uint64(IV[5]), np.uint64(IV[6]), np.uint64(IV[7]),
    )  # fmt: skip


@njit(cache=True)
def _key_words(key):
    w = np.zeros(8, np.uint64)
    for i in range(32):
        w[i >> 2] |= np.uint64(key[i]) << np.uint64(8 * (i & 3))
    return (w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7])


@njit(cache=True)
def _store_words(cv, out, row):
    for i in range(8):
        for j in range(4):
            out[row, 4 * i + j] = (cv[i] >> np.uint64(8 * j)) & np.uint64(0xFF)


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
