"""ChaCha8 keystream blocks and f1 (pos.md §2): one block, one x per thread."""

from __future__ import annotations

from autonomys_farmer.backends.kernels.ints import I64, U8, U32, rotl32
from autonomys_farmer.backends.kernels.source import kernel

PARAM_EXT = 6


@kernel
def quarter_round(a, b, c, d):
    a = U32(a + b)
    d = rotl32(U32(d ^ a), 16)
    c = U32(c + d)
    b = rotl32(U32(b ^ c), 12)
    a = U32(a + b)
    d = rotl32(U32(d ^ a), 8)
    c = U32(c + d)
    b = rotl32(U32(b ^ c), 7)
    return a, b, c, d


@kernel
def chacha8_block(key, counter, out, offset):
    """Keystream block `counter` (IETF layout, zero nonce) into out[offset:offset+64]; key: uint32[8]."""
    i0 = U32(0x61707865)
    i1 = U32(0x3320646E)
    i2 = U32(0x79622D32)
    i3 = U32(0x6B206574)
    i4, i5, i6, i7 = U32(key[0]), U32(key[1]), U32(key[2]), U32(key[3])
    i8, i9, i10, i11 = U32(key[4]), U32(key[5]), U32(key[6]), U32(key[7])
    i12 = U32(counter)
    z = U32(0)
    x0, x1, x2, x3, x4, x5, x6, x7 = i0, i1, i2, i3, i4, i5, i6, i7
    x8, x9, x10, x11, x12, x13, x14, x15 = i8, i9, i10, i11, i12, z, z, z
    for _ in range(4):
        x0, x4, x8, x12 = quarter_round(x0, x4, x8, x12)
        x1, x5, x9, x13 = quarter_round(x1, x5, x9, x13)
        x2, x6, x10, x14 = quarter_round(x2, x6, x10, x14)
        x3, x7, x11, x15 = quarter_round(x3, x7, x11, x15)
        x0, x5, x10, x15 = quarter_round(x0, x5, x10, x15)
        x1, x6, x11, x12 = quarter_round(x1, x6, x11, x12)
        x2, x7, x8, x13 = quarter_round(x2, x7, x8, x13)
        x3, x4, x9, x14 = quarter_round(x3, x4, x9, x14)
    store_word_le(out, offset, U32(x0 + i0))
    store_word_le(out, offset + 4, U32(x1 + i1))
    store_word_le(out, offset + 8, U32(x2 + i2))
    store_word_le(out, offset + 12, U32(x3 + i3))
    store_word_le(out, offset + 16, U32(x4 + i4))
    store_word_le(out, offset + 20, U32(x5 + i5))
    store_word_le(out, offset + 24, U32(x6 + i6))
    store_word_le(out, offset + 28, U32(x7 + i7))
    store_word_le(out, offset + 32, U32(x8 + i8))
    store_word_le(out, offset + 36, U32(x9 + i9))
    store_word_le(out, offset + 40, U32(x10 + i10))
    store_word_le(out, offset + 44, U32(x11 + i11))
    store_word_le(out, offset + 48, U32(x12 + i12))
    store_word_le(out, offset + 52, U32(x13 + z))
    store_word_le(out, offset + 56, U32(x14 + z))
    store_word_le(out, offset + 60, U32(x15 + z))


@kernel
def store_word_le(out, offset, w):
    out[offset] = U8(w & U32(0xFF))
    out[offset + 1] = U8(U32(w >> U32(8)) & U32(0xFF))
    out[offset + 2] = U8(U32(w >> U32(16)) & U32(0xFF))
    out[offset + 3] = U8(w >> U32(24))


@kernel
def f1(x, keystream, k):
    """y of x: k keystream bits starting at bit k·x (MSB-first), then the top PARAM_EXT bits of x."""
    x = I64(x)
    bit = I64(k) * x
    byte = bit >> I64(3)
    shift = bit & I64(7)
    w = (
        (I64(keystream[byte]) << I64(24))
        | (I64(keystream[byte + 1]) << I64(16))
        | (I64(keystream[byte + 2]) << I64(8))
        | I64(keystream[byte + 3])
    )
    partial = (w >> I64(32 - k - shift)) & I64((1 << k) - 1)
    return (partial << I64(PARAM_EXT)) | (x >> I64(k - PARAM_EXT))
