"""Fixed-width integer helpers shared by every kernel body (explicit casts, in-range shifts)."""

from __future__ import annotations

import numpy as np

from autonomys_farmer.backends.kernels.source import kernel

U8 = np.uint8
U16 = np.uint16
U32 = np.uint32
U64 = np.uint64
I32 = np.int32
I64 = np.int64
M32 = np.uint64(0xFFFFFFFF)


@kernel
def rotr32(x, n):
    return U32(U32(x >> U32(n)) | U32(x << U32(32 - n)))


@kernel
def rotl32(x, n):
    return U32(U32(x << U32(n)) | U32(x >> U32(32 - n)))


@kernel
def bswap32(x):
    x = U32(x)
    return U32(
        U32(U32(x & U32(0xFF)) << U32(24))
        | U32(U32(x & U32(0xFF00)) << U32(8))
        | U32(U32(x >> U32(8)) & U32(0xFF00))
        | U32(x >> U32(24))
    )


@kernel
def mask64(nbits):
    """The low nbits set (0 < nbits <= 64)."""
    if nbits >= 64:
        return U64(0xFFFFFFFFFFFFFFFF)
    return U64(U64(U64(1) << U64(nbits)) - U64(1))
