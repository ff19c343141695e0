"""Proof of space (Chia-derived, K=20), the reference definitions: f1, matching, fn, verification.

This module is the executable spec (pos.md): small functions over Python ints, used by the
verifier (a node checks one proof: 64 f1 values and 63 fn hashes) and as the oracle for the
vectorised table construction in `backends.cpu.pos_table`. Bit strings are MSB-first throughout.
"""

from __future__ import annotations

import struct

import blake3

K = 20
PARAM_EXT = 6
PARAM_M = 1 << PARAM_EXT
PARAM_B = 119
PARAM_C = 127
PARAM_BC = PARAM_B * PARAM_C
NUM_TABLES = 7
# Metadata size per table (index 1..7) in multiples of K.
METADATA_MULTIPLIER = (0, 1, 2, 4, 4, 3, 2, 0)
PROOF_X_COUNT = 64
POS_PROOF_SIZE = PROOF_X_COUNT * K // 8  # 160 bytes

_CHACHA_CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
_M32 = 0xFFFFFFFF


class PosError(ValueError):
    """Malformed proof-of-space input (wrong seed or proof length, bad K)."""


def y_bits(k: int = K) -> int:
    return k + PARAM_EXT


def metadata_bits(table: int, k: int = K) -> int:
    return METADATA_MULTIPLIER[table] * k


def num_buckets(k: int = K) -> int:
    return -(-(1 << y_bits(k)) // PARAM_BC)


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _M32


def _quarter_round(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & _M32
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _M32
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & _M32
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _M32
    s[b] = _rotl(s[b] ^ s[c], 7)


def chacha8_key_words(seed: bytes) -> tuple[int, ...]:
    if len(seed) != 32:
        raise PosError(f"PoS seed must be 32 bytes, got {len(seed)}")
    return struct.unpack("<8I", seed)


def chacha8_block(seed: bytes, counter: int) -> bytes:
    """One 64-byte ChaCha8 keystream block, IETF layout (32-bit counter, zero 96-bit nonce)."""
    init = [*_CHACHA_CONSTANTS, *chacha8_key_words(seed), counter & _M32, 0, 0, 0]
    s = list(init)
    for _ in range(4):
        _quarter_round(s, 0, 4, 8, 12)
        _quarter_round(s, 1, 5, 9, 13)
        _quarter_round(s, 2, 6, 10, 14)
        _quarter_round(s, 3, 7, 11, 15)
        _quarter_round(s, 0, 5, 10, 15)
        _quarter_round(s, 1, 6, 11, 12)
        _quarter_round(s, 2, 7, 8, 13)
        _quarter_round(s, 3, 4, 9, 14)
    return struct.pack("<16I", *((a + b) & _M32 for a, b in zip(s, init, strict=True)))


def f1(seed: bytes, x: int, k: int = K) -> int:
    """y = keystream bits [k*x, k*x+k) followed by the top PARAM_EXT bits of x."""
    start = k * x
    first_block, last_block = start // 512, (start + k - 1) // 512
    stream = b"".join(chacha8_block(seed, b) for b in range(first_block, last_block + 1))
    bit_offset = start - first_block * 512
    value = int.from_bytes(stream, "big")
    partial = (value >> (len(stream) * 8 - bit_offset - k)) & ((1 << k) - 1)
    return (partial << PARAM_EXT) | (x >> (k - PARAM_EXT))


def target(parity: int, r: int, m: int) -> int:
    """The m-th right-entry r value a left entry (bucket parity, r) matches (Chia's M function)."""
    return ((r // PARAM_C + m) % PARAM_B) * PARAM_C + (((2 * m + parity) ** 2 + r) % PARAM_C)


def has_match(y_left: int, y_right: int) -> bool:
    """Verifier's match test: no bucket-adjacency check, exactly as the Subspace verifier."""
    parity = (y_left // PARAM_BC) % 2
    r_left, r_right = y_left % PARAM_BC, y_right % PARAM_BC
    # The B-part of a target fixes m uniquely (64 < B), so only one candidate m needs checking.
    m = (r_right // PARAM_C - r_left // PARAM_C) % PARAM_B
    return m < PARAM_M and target(parity, r_left, m) == r_right


def fn(table: int, y_left: int, meta_left: int, meta_right: int, k: int = K) -> tuple[int, int]:
    """(y, metadata) of a table-`table` entry from its left y and both parents' metadata."""
    yb = y_bits(k)
    pb = metadata_bits(table - 1, k)
    total = yb + 2 * pb
    nbytes = (total + 7) // 8
    packed = ((((y_left << pb) | meta_left) << pb) | meta_right) << (8 * nbytes - total)
    digest = blake3.blake3(packed.to_bytes(nbytes, "big")).digest()
    h = int.from_bytes(digest, "big")
    y = h >> (256 - yb)
    out_bits = metadata_bits(table, k)
    if table in (2, 3):
        meta = (meta_left << pb) | meta_right
    elif out_bits:
        meta = (h >> (256 - yb - out_bits)) & ((1 << out_bits) - 1)
    else:
        meta = 0
    return y, meta


def challenge_fk(challenge_index: int, k: int = K) -> int:
    """The first k bits of the challenge, which is the u32 index as little-endian bytes."""
    return int.from_bytes(challenge_index.to_bytes(4, "little"), "big") >> (32 - k)


def pack_proof(xs: list[int], k: int = K) -> bytes:
    value = 0
    for x in xs:
        value = (value << k) | x
    return value.to_bytes(PROOF_X_COUNT * k // 8, "big")


def unpack_proof(proof: bytes, k: int = K) -> list[int]:
    if len(proof) != PROOF_X_COUNT * k // 8:
        raise PosError(f"proof must be {PROOF_X_COUNT * k // 8} bytes, got {len(proof)}")
    value = int.from_bytes(proof, "big")
    mask = (1 << k) - 1
    return [(value >> (k * (PROOF_X_COUNT - 1 - i))) & mask for i in range(PROOF_X_COUNT)]


def is_proof_valid(seed: bytes, challenge_index: int, proof: bytes, k: int = K) -> bool:
    """Subspace `verify_only`: every one of the 63 pairs must match, then the top k bits of y7."""
    if len(seed) != 32 or len(proof) != PROOF_X_COUNT * k // 8:
        return False
    level = [(f1(seed, x, k), x) for x in unpack_proof(proof, k)]
    for table in range(2, NUM_TABLES + 1):
        nxt = []
        for (yl, ml), (yr, mr) in zip(level[0::2], level[1::2], strict=True):
            if not has_match(yl, yr):
                return False
            nxt.append(fn(table, yl, ml, mr, k))
        level = nxt
    return (level[0][0] >> PARAM_EXT) == challenge_fk(challenge_index, k)


def proof_hash(proof: bytes) -> bytes:
    """PosProof::hash, the mask XORed onto encoded chunks."""
    return blake3.blake3(proof).digest()
