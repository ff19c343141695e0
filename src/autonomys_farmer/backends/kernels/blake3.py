"""BLAKE3 compression and single-chunk hashing (inputs of at most 1024 bytes): fn, proof hashes, audits.

The `blake3` package is right for single hashes; the proof of space needs one single-block BLAKE3 per
match (~6M per table) and one hash per proof, where a Python call per hash would dominate. Words are
uint32 throughout, truncated after every operation so LLVM and NVVM use native 32-bit adds and rotates.
"""

from __future__ import annotations

import numpy as np

from autonomys_farmer.backends.kernels.ints import U8, U32, U64, rotr32
from autonomys_farmer.backends.kernels.source import kernel

IV = np.array(
    [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19], np.uint32
)
IV0, IV1, IV2, IV3, IV4, IV5, IV6, IV7 = (np.uint32(v) for v in IV)
CHUNK_START = 1
CHUNK_END = 2
ROOT = 8
KEYED_HASH = 16
BLOCK_LEN = 64


@kernel
def g(a, b, c, d, mx, my):
    a = U32(a + b + mx)
    d = rotr32(U32(d ^ a), 16)
    c = U32(c + d)
    b = rotr32(U32(b ^ c), 12)
    a = U32(a + b + my)
    d = rotr32(U32(d ^ a), 8)
    c = U32(c + d)
    b = rotr32(U32(b ^ c), 7)
    return a, b, c, d


@kernel
def blake3_round(v, m):
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = v
    m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15 = m
    v0, v4, v8, v12 = g(v0, v4, v8, v12, m0, m1)
    v1, v5, v9, v13 = g(v1, v5, v9, v13, m2, m3)
    v2, v6, v10, v14 = g(v2, v6, v10, v14, m4, m5)
    v3, v7, v11, v15 = g(v3, v7, v11, v15, m6, m7)
    v0, v5, v10, v15 = g(v0, v5, v10, v15, m8, m9)
    v1, v6, v11, v12 = g(v1, v6, v11, v12, m10, m11)
    v2, v7, v8, v13 = g(v2, v7, v8, v13, m12, m13)
    v3, v4, v9, v14 = g(v3, v4, v9, v14, m14, m15)
    # The message schedule permutation of BLAKE3, applied between rounds.
    permuted = (m2, m6, m3, m10, m7, m0, m4, m13, m1, m11, m12, m5, m9, m14, m15, m8)
    return (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15), permuted


@kernel
def compress(cv, m, counter, block_len, flags):
    """One BLAKE3 compression of 16 uint32 message words; returns the 8-word chaining value."""
    v = (
        U32(cv[0]), U32(cv[1]), U32(cv[2]), U32(cv[3]), U32(cv[4]), U32(cv[5]), U32(cv[6]), U32(cv[7]),
        IV0, IV1, IV2, IV3,
        U32(counter & 0xFFFFFFFF), U32(counter >> 32), U32(block_len), U32(flags),
    )  # fmt: skip
    # Seven rounds written out: a tuple-carrying loop defeats scalar replacement.
    v, m = blake3_round(v, m)
    v, m = blake3_round(v, m)
    v, m = blake3_round(v, m)
    v, m = blake3_round(v, m)
    v, m = blake3_round(v, m)
    v, m = blake3_round(v, m)
    v, m = blake3_round(v, m)
    return (
        U32(v[0] ^ v[8]), U32(v[1] ^ v[9]), U32(v[2] ^ v[10]), U32(v[3] ^ v[11]),
        U32(v[4] ^ v[12]), U32(v[5] ^ v[13]), U32(v[6] ^ v[14]), U32(v[7] ^ v[15]),
    )  # fmt: skip


@kernel
def load_word(data, start, n, j):
    """Little-endian message word j of the block data[start:start+n], zero padded past n."""
    w = U32(0)
    for b in range(4):
        i = 4 * j + b
        if i < n:
            w = U32(w | U32(U32(data[start + i]) << U32(8 * b)))
    return w


@kernel
def load_block(data, start, n):
    return (
        load_word(data, start, n, 0), load_word(data, start, n, 1),
        load_word(data, start, n, 2), load_word(data, start, n, 3),
        load_word(data, start, n, 4), load_word(data, start, n, 5),
        load_word(data, start, n, 6), load_word(data, start, n, 7),
        load_word(data, start, n, 8), load_word(data, start, n, 9),
        load_word(data, start, n, 10), load_word(data, start, n, 11),
        load_word(data, start, n, 12), load_word(data, start, n, 13),
        load_word(data, start, n, 14), load_word(data, start, n, 15),
    )  # fmt: skip


@kernel
def iv_words():
    return (IV0, IV1, IV2, IV3, IV4, IV5, IV6, IV7)


@kernel
def key_words(key):
    """The 8 little-endian words of a 32-byte key (uint8 array)."""
    return (
        load_word(key, 0, 32, 0), load_word(key, 0, 32, 1), load_word(key, 0, 32, 2), load_word(key, 0, 32, 3),
        load_word(key, 0, 32, 4), load_word(key, 0, 32, 5), load_word(key, 0, 32, 6), load_word(key, 0, 32, 7),
    )  # fmt: skip


@kernel
def hash_chunk(data, start, length, cv, base_flags):
    """BLAKE3 root hash (8 words) of data[start:start+length], length <= 1024 (one chunk).

    cv: the IV for plain hashing, the key words with base_flags = KEYED_HASH for keyed hashing."""
    nblocks = max(1, (length + BLOCK_LEN - 1) // BLOCK_LEN)
    for b in range(nblocks):
        off = b * BLOCK_LEN
        n = min(BLOCK_LEN, length - off)
        flags = base_flags
        if b == 0:
            flags |= CHUNK_START
        if b == nblocks - 1:
            flags |= CHUNK_END | ROOT
        cv = compress(cv, load_block(data, start + off, n), 0, n, flags)
    return cv


@kernel
def store_digest(cv, out, start):
    """The 32 digest bytes (words little-endian) into out[start:start+32]."""
    for i in range(8):
        w = U32(cv[i])
        for j in range(4):
            out[start + 4 * i + j] = U8(U32(w >> U32(8 * j)) & U32(0xFF))


AUDIT_FLAGS = KEYED_HASH | CHUNK_START | CHUNK_END | ROOT


@kernel
def audit_chunk_head(key, w0, w1, w2, w3, w4, w5, w6, w7):
    """The first two words of the keyed BLAKE3 of one 32-byte chunk (its 8 little-endian words): the
    u64 an audit compares with the challenge (protocol.md §7). One compression, half the block zero."""
    z = U32(0)
    m = (w0, w1, w2, w3, w4, w5, w6, w7, z, z, z, z, z, z, z, z)
    out = compress(key, m, 0, 32, AUDIT_FLAGS)
    return out[0], out[1]


@kernel
def audit_distance(lo, hi, target):
    """Bidirectional distance of an audit value (lo, hi words) from the challenge's u64 (wrapping)."""
    value = U64(U64(lo) | U64(U64(hi) << U64(32)))
    forward = U64(target - value)
    backward = U64(value - target)
    return min(forward, backward)
