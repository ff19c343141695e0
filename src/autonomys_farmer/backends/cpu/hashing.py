"""BLAKE3 row hashing, audits and ChaCha8 keystreams on the CPU, launching the shared kernel bodies.

The audit launcher feeds its per-chunk body lane-major blocks: AUDIT_LANES chunks' words transposed into
one array per message word, so that the loop over lanes compiles to one SIMD lane per chunk.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from autonomys_farmer.backends.cpu.kernels import CPU, launcher
from autonomys_farmer.backends.kernels.blake3 import KEYED_HASH

hash_chunk = CPU.hash_chunk
store_digest = CPU.store_digest
iv_words = CPU.iv_words
key_words = CPU.key_words
chacha8_block = CPU.chacha8_block
audit_chunk_head = CPU.audit_chunk_head
audit_distance = CPU.audit_distance

AUDIT_LANES = 32  # chunks hashed side by side (a multiple of 16: two AVX-512 vectors of words)


@launcher
def hash_rows_launch(rows, out):
    n, length = rows.shape
    flat = rows.reshape(-1)
    digests = out.reshape(-1)
    for i in prange(n):
        store_digest(hash_chunk(flat, i * length, length, iv_words(), 0), digests, 32 * i)


@launcher
def keyed_hash_rows_launch(key, rows, out):
    n, length = rows.shape
    flat = rows.reshape(-1)
    digests = out.reshape(-1)
    cv = key_words(key)
    for i in prange(n):
        store_digest(hash_chunk(flat, i * length, length, cv, KEYED_HASH), digests, 32 * i)


@launcher
def keystream_launch(key, out):
    """ChaCha8 blocks 0..len(out)//64-1 into out (key: uint32[8])."""
    for b in prange(out.shape[0] // 64):
        chacha8_block(key, b, out, 64 * b)


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
