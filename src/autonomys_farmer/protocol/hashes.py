"""Hash helpers (protocol.md §0.1): plain and keyed BLAKE3, and BLAKE3-254 to a scalar."""

from __future__ import annotations

import blake3


def blake3_hash(*parts: bytes) -> bytes:
    """H(x1 ‖ x2 ‖ …): streaming several updates equals hashing the concatenation."""
    h = blake3.blake3()
    for p in parts:
        h.update(p)
    return h.digest()


def keyed_hash(key: bytes, *parts: bytes) -> bytes:
    if len(key) != 32:
        raise ValueError(f"BLAKE3 key must be 32 bytes, got {len(key)}")
    h = blake3.blake3(key=key)
    for p in parts:
        h.update(p)
    return h.digest()


def blake3_254_hash_to_scalar(data: bytes) -> bytes:
    """H(x) with the top two bits cleared: a big-endian value below 2^254 < r, always a scalar."""
    h = bytearray(blake3_hash(data))
    h[0] &= 0x3F
    return bytes(h)


def xor_bytes(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise ValueError(f"cannot XOR {len(a)} bytes with {len(b)} bytes")
    return bytes(x ^ y for x, y in zip(a, b, strict=True))
