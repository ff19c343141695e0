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
def double_round(x):
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15 = x
    x0, x4, x8, x12 = quarter_round(x0, x4, x8, x12)
    x1, x5, x9, x13 = quarter_round(x1, x5, x9, x13)
    x2, x6, x10, x14 = quarter_round(x2, x6, x10, x14)
    x3, x7, x11, x15 = quarter_round(x3, x7, x11, x15)
    x0, x5, x10, x15 = quarter_round(x0, x5, x10, x15)
    x1, x6, x11, x12 = quarter_round(x1, x6, x11, x12)
    x2, x7, x8, x13 = quarter_round(x2, x7, x8, x13)
    x3, x4, x9, x14 = quarter_round(x3, x4, x9, x14)
    return (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15)


@kernel
def chacha8_words(k0, k1, k2, k3, k4, k5, k6, k7, counter):
    """The 16 words of keystream block `counter` (IETF layout, zero nonce) for key words k0..k7."""
    i0 = U32(0x61707865)
    i1 = U32(0x3320646E)
    i2 = U32(0x79622D32)
    i3 = U32(0x6B206574)
    i12 = U32(counter)
    z = U32(0)
    x = (i0, i1, i2, i3, k0, k1, k2, k3, k4, k5, k6, k7, i12, z, z, z)
    # Four double rounds written out: a loop around them keeps the CPU's loop over lanes from vectorising.
    x = double_round(x)
    x = double_round(x)
    x = double_round(x)
    x = double_round(x)
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15 = x
    return (
        U32(x0 + i0), U32(x1 + i1), U32(x2 + i2), U32(x3 + i3),
        U32(x4 + k0), U32(x5 + k1), U32(x6 + k2), U32(x7 + k3),
        U32(x8 + k4), U32(x9 + k5), U32(x10 + k6), U32(x11 + k7),
        U32(x12 + i12), x13, x14, x15,
    )  # fmt: skip


@kernel
def chacha8_block(key, counter, out, offset):
    """Keystream block `counter` into out[offset:offset+64]; key: uint32[8]. One block per GPU thread."""
    words = chacha8_words(
        U32(key[0]), U32(key[1]), U32(key[2]), U32(key[3]), U32(key[4]), U32(key[5]), U32(key[6]), U32(key[7]),
        counter,
    )  # fmt: skip
    for w in range(16):
        store_word_le(out, offset + 4 * w, words[w])


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
