"""BLAKE3 row hashing, audits and ChaCha8 keystreams on the CPU, launching the shared kernel bodies.

The audit launcher feeds its per-chunk body lane-major blocks: AUDIT_LANES chunks' words transposed into
one array per message word, so that the loop over lanes compiles to one SIMD lane per chunk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from autonomys_farmer.backends.cpu.kernels import CPU, split_launch
from autonomys_farmer.backends.kernels.blake3 import BLOCK_LEN, CHUNK_END, CHUNK_START, IV, KEYED_HASH, ROOT

compress = CPU.compress
chacha8_words = CPU.chacha8_words
audit_chunk_head = CPU.audit_chunk_head
audit_distance = CPU.audit_distance

LANES = 16  # rows hashed or keystream blocks made side by side: one AVX-512 vector of 32-bit words
HASH_TASK = 4096  # rows per task on one core
KEYSTREAM_TASK = 8192  # ChaCha8 blocks per task on one core
AUDIT_LANES = 32  # chunks hashed side by side (a multiple of 16: two AVX-512 vectors of words)


@njit(nogil=True, cache=True)
def hash_rows_lanes(words, length, cv, base_flags, out, start, end):
    """BLAKE3 of rows [start, end) (words: their little-endian words, zero padded; each row `length`
    bytes, at most one chunk), keyed when base_flags is KEYED_HASH, into out (uint32[n, 8]) on one
    core without the GIL. LANES rows side by side: per block, their message words lane-major
    (one array per word), compressed with one SIMD lane per row."""
    nblocks = max(1, (length + BLOCK_LEN - 1) // BLOCK_LEN)
    block = np.zeros((16, LANES), np.uint32)
    state = np.empty((8, LANES), np.uint32)
    for base in range(start, end, LANES):
        used = min(LANES, end - base)
        for w in range(8):
            for lane in range(LANES):
                state[w, lane] = cv[w]
        for b in range(nblocks):
            first = b * BLOCK_LEN // 4
            n = min(BLOCK_LEN, length - b * BLOCK_LEN)
            flags = base_flags | (CHUNK_START if b == 0 else 0) | (CHUNK_END | ROOT if b == nblocks - 1 else 0)
            for lane in range(used):
                for w in range(16):
                    block[w, lane] = words[base + lane, first + w] if 4 * w < n else 0
            for lane in range(LANES):  # all lanes, so the loop has no scalar remainder
                h = compress(
                    (state[0, lane], state[1, lane], state[2, lane], state[3, lane],
                     state[4, lane], state[5, lane], state[6, lane], state[7, lane]),
                    (block[0, lane], block[1, lane], block[2, lane], block[3, lane],
                     block[4, lane], block[5, lane], block[6, lane], block[7, lane],
                     block[8, lane], block[9, lane], block[10, lane], block[11, lane],
                     block[12, lane], block[13, lane], block[14, lane], block[15, lane]),
                    0, n, flags,
                )  # fmt: skip
                for w in range(8):
                    state[w, lane] = h[w]
        for lane in range(used):
            for w in range(8):
                out[base + lane, w] = state[w, lane]


def hash_rows(parallel: bool, rows: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
    """BLAKE3 digests (keyed by the 32-byte `key` when given) of equal-length rows of at most 1024 bytes."""
    n, length = rows.shape
    if length > 1024:
        raise ValueError(f"rows of {length} bytes: one BLAKE3 chunk (1024 bytes) at most")
    padded = -(-length // BLOCK_LEN) * BLOCK_LEN or BLOCK_LEN  # whole blocks: every word read exists
    words = np.zeros((n, padded // 4), np.uint32)
    words.view(np.uint8)[:, :length] = rows
    cv = IV if key is None else np.frombuffer(bytes(key), "<u4").astype(np.uint32)
    flags = 0 if key is None else KEYED_HASH
    digests = np.empty((n, 32), np.uint8)
    out = digests.view("<u4")  # written in place, little-endian, as the keystream is
    split_launch(parallel, hash_rows_lanes, n, HASH_TASK, words, length, cv, flags, out)
    return digests


@njit(nogil=True, cache=True)
def keystream_lanes(key, out, start, end):
    """ChaCha8 blocks [start, end) into out (uint32[blocks, 16], key: uint32[8]) on one core without
    the GIL, LANES blocks side by side (one SIMD lane per block counter)."""
    words = np.empty((16, LANES), np.uint32)
    k0, k1, k2, k3, k4, k5, k6, k7 = key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7]
    for base in range(start, end, LANES):
        for lane in range(LANES):  # all lanes, so the loop has no scalar remainder
            (
                words[0, lane], words[1, lane], words[2, lane], words[3, lane],
                words[4, lane], words[5, lane], words[6, lane], words[7, lane],
                words[8, lane], words[9, lane], words[10, lane], words[11, lane],
                words[12, lane], words[13, lane], words[14, lane], words[15, lane],
            ) = chacha8_words(k0, k1, k2, k3, k4, k5, k6, k7, base + lane)  # fmt: skip
        for lane in range(min(LANES, end - base)):
            for w in range(16):
                out[base + lane, w] = words[w, lane]


def keystream_launch(parallel: bool, key: np.ndarray, out: np.ndarray) -> None:
    """ChaCha8 blocks 0..len(out)//64-1 into out (bytes; key: uint32[8])."""
    blocks = out.shape[0] // 64
    words = out[: 64 * blocks].view("<u4").reshape(blocks, 16)  # written in place, little-endian
    split_launch(parallel, keystream_lanes, blocks, KEYSTREAM_TASK, np.ascontiguousarray(key, np.uint32), words)


@njit(nogil=True, cache=True)
def audit_chunks_launch(words, starts, keys, target, half_range, hit_sector, hit_chunk, hit_distance):
    """Audit every sector's chunks (words: uint32[n, 8]; sector i's are rows starts[i]..starts[i+1],
    keyed by keys[i]: uint32[8]) and write those within half_range of target into the hit arrays; returns
    how many there are (more than the arrays hold: call again with larger ones). One core, no GIL."""
    lanes = np.empty((8, AUDIT_LANES), np.uint32)
    lo = np.empty(AUDIT_LANES, np.uint32)
    hi = np.empty(AUDIT_LANES, np.uint32)
    capacity = hit_sector.shape[0]
    count = 0
    for sector in range(starts.shape[0] - 1):
        key = (
            keys[sector, 0], keys[sector, 1], keys[sector, 2], keys[sector, 3],
            keys[sector, 4], keys[sector, 5], keys[sector, 6], keys[sector, 7],
        )  # fmt: skip
        first, end = starts[sector], starts[sector + 1]
        for base in range(first, end, AUDIT_LANES):
            used = min(AUDIT_LANES, end - base)
            for lane in range(used):
                for word in range(8):
                    lanes[word, lane] = words[base + lane, word]
            for lane in range(AUDIT_LANES):  # all lanes, so the loop has no scalar remainder
                lo[lane], hi[lane] = audit_chunk_head(
                    key, lanes[0, lane], lanes[1, lane], lanes[2, lane], lanes[3, lane],
                    lanes[4, lane], lanes[5, lane], lanes[6, lane], lanes[7, lane],
                )  # fmt: skip
            for lane in range(used):
                distance = audit_distance(lo[lane], hi[lane], target)
                if distance <= half_range:
                    if count < capacity:
                        hit_sector[count] = sector
                        hit_chunk[count] = base + lane - first
                        hit_distance[count] = distance
                    count += 1
    return count
