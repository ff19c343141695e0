"""Positioned reads of a farm's plot file from GIL-free code (libc `pread` called from numba).

An audit reads exactly its s-bucket (about 16 KiB of a 1000-piece sector), a proof exactly its record's
chunks: no read-ahead window (the plot file is opened with POSIX_FADV_RANDOM), no page faults in a
mapping of 32 TB, and one read in flight per farming thread, so an NVMe's queue fills. Each function
returns the failing item instead of raising (numba code cannot read errno): the caller repeats that one
read with `os.pread` to get the operating system's error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types

import autonomys_farmer.backends.cpu.kernels  # noqa: F401  # numba's cache directory and CPU settings
from autonomys_farmer.protocol.constants import RECORD_NUM_S_BUCKETS

S_BUCKET_BLOCK = 256  # s-buckets per stored offset: an audit sums at most 255 sizes to find its s-bucket
S_BUCKET_BLOCKS = RECORD_NUM_S_BUCKETS // S_BUCKET_BLOCK
TOO_SMALL = -2

# libc's pread, linked by name (so numba can cache the callers); the buffer address goes as an integer,
# which is how the x86-64 and AArch64 calling conventions pass a pointer anyway.
_pread: Any = types.ExternalFunction("pread", types.int64(types.int32, types.uintp, types.uintp, types.int64))


@njit(nogil=True, cache=True)
def pread_into(fd, out, offset):
    """Fill the contiguous uint8 array `out` from `offset` (short reads continued); False on an error
    or the end of the file."""
    done = 0
    size = out.shape[0]
    while done < size:
        got = _pread(fd, out[done:].ctypes.data, size - done, offset + done)
        if got <= 0:
            return False
        done += got
    return True


@njit(nogil=True, cache=True)
def index_s_buckets(sizes, rows, offsets):
    """For each sector row (s-bucket sizes uint16[sectors, 65536]): the chunk offset of every 256th
    s-bucket into offsets[row], derived once when a sector is loaded so that no audit sums 65,536
    sizes; returns each row's total (its records' chunks, for the caller to check)."""
    totals = np.empty(rows.shape[0], np.int64)
    for i in range(rows.shape[0]):
        row = rows[i]
        total = np.int64(0)
        for block in range(S_BUCKET_BLOCKS):
            offsets[row, block] = total
            block_total = np.int64(0)
            for s in range(block * S_BUCKET_BLOCK, (block + 1) * S_BUCKET_BLOCK):
                block_total += sizes[row, s]
            total += block_total
        totals[i] = total
    return totals


@njit(nogil=True, cache=True)
def read_audited_s_buckets(fd, rows, sector_ids, challenge, sizes, offsets, sector_size, chunks_offset, chunks):
    """For each sector row: its sector slot challenge (sector id XOR global challenge), the s-bucket
    that challenge audits (protocol.md §7) and that s-bucket's chunks, read back to back into `chunks`
    (uint8[capacity, 32], reused from slot to slot: no fresh pages to fault in). Returns (challenges
    uint8[n, 32], s_buckets int64[n], starts int64[n + 1], status): status -1 when all went well, the
    position of the row whose read failed, or TOO_SMALL (nothing read: `chunks` holds fewer than
    starts[n])."""
    n = rows.shape[0]
    challenges = np.empty((n, 32), np.uint8)
    s_buckets = np.empty(n, np.int64)
    starts = np.empty(n + 1, np.int64)
    first_chunk = np.empty(n, np.int64)
    starts[0] = 0
    for i in range(n):
        row = rows[i]
        for b in range(32):
            challenges[i, b] = sector_ids[row, b] ^ challenge[b]
        s = np.int64(challenges[i, 0]) | (np.int64(challenges[i, 1]) << 8)
        s_buckets[i] = s
        offset = np.int64(offsets[row, s // S_BUCKET_BLOCK])
        for t in range(s - s % S_BUCKET_BLOCK, s):
            offset += sizes[row, t]
        first_chunk[i] = offset
        starts[i + 1] = starts[i] + sizes[row, s]
    if starts[n] > chunks.shape[0]:
        return challenges, s_buckets, first_chunk, starts, TOO_SMALL
    flat = chunks.reshape(-1)
    for i in range(n):
        if starts[i + 1] > starts[i]:
            position = rows[i] * sector_size + chunks_offset + 32 * first_chunk[i]
            if not pread_into(fd, flat[32 * starts[i] : 32 * starts[i + 1]], position):
                return challenges, s_buckets, first_chunk, starts, i
    return challenges, s_buckets, first_chunk, starts, -1


@njit(nogil=True, cache=True)
def read_chunks_at(fd, start, chunk_indices, out):
    """out[i] = the 32-byte chunk at start + 32·chunk_indices[i]; returns the failing i or -1."""
    flat = out.reshape(-1)
    for i in range(chunk_indices.shape[0]):
        if not pread_into(fd, flat[32 * i : 32 * i + 32], start + 32 * chunk_indices[i]):
            return i
    return -1
