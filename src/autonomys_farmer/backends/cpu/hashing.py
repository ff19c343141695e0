"""BLAKE3 row hashing and ChaCha8 keystreams on the CPU, launching the shared kernel bodies."""

from __future__ import annotations

from numba import prange

from autonomys_farmer.backends.cpu.kernels import CPU, launcher
from autonomys_farmer.backends.kernels.blake3 import KEYED_HASH

hash_chunk = CPU.hash_chunk
store_digest = CPU.store_digest
iv_words = CPU.iv_words
key_words = CPU.key_words
chacha8_block = CPU.chacha8_block


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
