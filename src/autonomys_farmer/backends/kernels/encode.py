"""The record-encoding pipeline as GPU kernels: per-thread bodies and block-cooperative phases.

A batch of B records goes through, all on the device (backends/cuda/pipeline.py launches them):
  extension   bytes -> Montgomery limbs, inverse NTT 2^15, coset scale, NTT 2^15, the 65536 extended chunks
  table 1     ChaCha8 keystream, f1 for every x
  sort        bucket count, scan, scatter, per-bucket rank sort by the canonical key, gather
  tables 2..7 matching (one block per bucket pair, the right bucket as an r map in shared memory), fn, sort
  proofs      first table-7 candidate for all 65536 s-buckets, ranks, trace + pack + hash + mask for the first
              32768 proven ones, the keep rule, the stored chunks and the encoded map.
Order never depends on thread scheduling: atomics only reserve slots, and every table is then sorted by
the full canonical key (y, x) or (y, left, right) of pos.md §6, so the output equals the CPU backend's.

Arrays are per record along their first axis. Capacity C bounds every table (2^K·5/4); a record whose
table, bucket or chunk does not fit is flagged in `overflow` and re-encoded by the CPU backend.
"""

from __future__ import annotations

import numpy as np

from autonomys_farmer.backends.kernels.blake3 import compress  # noqa: F401  (kernel namespace)
from autonomys_farmer.backends.kernels.chacha import chacha8_block, f1
from autonomys_farmer.backends.kernels.fr import (
    bit_reverse_swap,
    fr_load,
    fr_mul,
    is_canonical,
    load_scalar,
    mont_mul_into,
    ntt_butterfly,
    store_words,
)
from autonomys_farmer.backends.kernels.intrinsics import atomic_add
from autonomys_farmer.backends.kernels.ints import I32, I64, U8, U16, U32, U64
from autonomys_farmer.backends.kernels.pos import (
    NO_ENTRY,
    PARAM_BC,
    first_candidate,
    fn,
    hash_proof,
    mark_right_entry,
    probe_left_entry,
    trace_proof,
)
from autonomys_farmer.backends.kernels.source import BlockKernel, GridKernel, kernel

RECORD_NUM_CHUNKS = 32768
TIE_BITS = 21  # left and right positions in a tie key: tables hold at most 2^21 entries
TIE_MASK = (1 << TIE_BITS) - 1
LOCAL_Y_SHIFT = 2 * TIE_BITS  # rank-sort key: (y - bucket·BC) << 42 | tie, 14 + 42 bits
SORT_CAPACITY = 2048  # entries of one bucket sorted in shared memory (a bucket averages 236)
GRID_THREADS = 256
BLOCK_THREADS = 256
SCAN_THREADS = 1024


def table_capacity(k: int) -> int:
    """Entries one table may hold: 2^k plus a quarter. Later tables grow: table 7 of K=20 seeds held
    2^k + 3% to over 6% (a sixteenth was too little for 2 seeds of a 1000-piece sector). Host buffers
    cost memory only where a table reaches (pages never touched are never resident)."""
    return (1 << k) + (1 << k) // 4


# --- extension (protocol.md §3 on a record: source even, parity odd) ------------------------------------


@kernel
def to_montgomery_thread(i, records, limbs, r2, bad):
    n = limbs.shape[1]
    rec = i // n
    c = i - rec * n
    rows = limbs[rec]
    load_scalar(records[rec], 32 * c, rows, c)
    if not is_canonical(rows, c):
        bad[rec] = U32(1)
    mont_mul_into(rows, c, r2, 0, rows, c)


@kernel
def bit_reverse_thread(i, x, log_n):
    n = x.shape[1]
    rec = i // n
    bit_reverse_swap(x[rec], i - rec * n, log_n)


@kernel
def ntt_stage_thread(i, x, twiddles, length, max_domain):
    half_n = x.shape[1] >> 1
    rec = i // half_n
    ntt_butterfly(i - rec * half_n, x[rec], twiddles, length, max_domain)


@kernel
def scale_thread(i, x, scale):
    n = x.shape[1]
    rec = i // n
    j = i - rec * n
    mont_mul_into(x[rec], j, scale, j, x[rec], j)


@kernel
def extended_thread(i, records, parity, one, ext):
    """Extended chunk s of a record as bytes: source chunk s/2 for even s, parity (s-1)/2 for odd s."""
    n = 2 * parity.shape[1]
    rec = i // n
    s = i - rec * n
    out = ext[rec]
    if s & 1 == 0:
        source = records[rec]
        for b in range(32):
            out[32 * s + b] = source[16 * s + b]
    else:
        store_words(fr_mul(fr_load(parity[rec], s >> 1), fr_load(one, 0)), out, 32 * s)


# --- table 1 ---------------------------------------------------------------------------------------------


@kernel
def keystream_thread(i, keys, ks, nblocks):
    rec = i // nblocks
    b = i - rec * nblocks
    chacha8_block(keys[rec], b, ks[rec], 64 * b)


@kernel
def f1_thread(i, ks, k, y, tie):
    n = I64(1) << I64(k)
    rec = i // n
    x = i - rec * n
    y[rec, x] = U32(f1(x, ks[rec], k))
    tie[rec, x] = U64(x)


@kernel
def clear_thread(i, flat):
    flat[i] = 0


# --- sorting a table by (y, tie): buckets of BC y values, each rank-sorted by its canonical key ----------


@kernel
def bucket_count_thread(i, y, sizes, counts):
    cap = y.shape[1]
    rec = i // cap
    j = i - rec * cap
    if j < sizes[rec]:
        atomic_add(counts[rec], I64(y[rec, j]) // PARAM_BC, I32(1))


@kernel
def bucket_scatter_thread(i, y, sizes, starts, fill, order):
    cap = y.shape[1]
    rec = i // cap
    j = i - rec * cap
    if j < sizes[rec]:
        b = I64(y[rec, j]) // PARAM_BC
        slot = atomic_add(fill[rec], b, I32(1))
        order[rec, starts[rec, b] + slot] = I32(j)


@kernel
def sort_bucket(block, counts):
    """(record, bucket, size) of a sorting block: one block per bucket."""
    nb = counts.shape[1]
    rec = block // nb
    b = block - rec * nb
    return rec, b, counts[rec, b]


@kernel
def rank_sort_load(block, thread, nthreads, keys, sources, y, tie, starts, counts, order, overflow, perm):
    rec, b, size = sort_bucket(block, counts)
    if size > keys.shape[0]:  # past shared memory: the CPU redoes this record
        if thread == 0:
            overflow[rec] = U32(1)
        return
    start = starts[rec, b]
    base = U64(b * PARAM_BC)
    for j in range(thread, size, nthreads):
        src = order[rec, start + j]
        keys[j] = U64(U64(U64(U64(y[rec, src]) - base) << U64(LOCAL_Y_SHIFT)) | U64(tie[rec, src]))
        sources[j] = src


@kernel
def rank_sort_place(block, thread, nthreads, keys, sources, y, tie, starts, counts, order, overflow, perm):
    """Each entry's place is the number of smaller keys in its bucket (keys are unique)."""
    rec, b, size = sort_bucket(block, counts)
    if size > keys.shape[0]:
        return
    start = starts[rec, b]
    for j in range(thread, size, nthreads):
        key = keys[j]
        rank = 0
        for q in range(size):
            if keys[q] < key:
                rank += 1
        perm[rec, start + rank] = sources[j]


@kernel
def gather_first_thread(i, perm, sizes, y, y_sorted, x_sorted, meta_hi, meta_lo):
    """Table 1 in (y, x) order: its x values, which are also its metadata."""
    cap = perm.shape[1]
    rec = i // cap
    p = i - rec * cap
    if p < sizes[rec]:
        src = perm[rec, p]
        y_sorted[rec, p] = y[rec, src]
        x_sorted[rec, p] = src
        meta_hi[rec, p] = U64(0)
        meta_lo[rec, p] = U64(src)


@kernel
def gather_table_thread(
    i, perm, sizes, y_new, tie_new, hi_new, lo_new, y_sorted, meta_hi, meta_lo, lefts, rights, offset
):
    """Table t in (y, left, right) order: y, metadata, and (left, right) kept for proof traceback."""
    cap = perm.shape[1]
    rec = i // cap
    p = i - rec * cap
    if p < sizes[rec]:
        src = perm[rec, p]
        tie = U64(tie_new[rec, src])
        y_sorted[rec, p] = y_new[rec, src]
        meta_hi[rec, p] = hi_new[rec, src]
        meta_lo[rec, p] = lo_new[rec, src]
        lefts[rec, offset + p] = I32(tie >> U64(TIE_BITS))
        rights[rec, offset + p] = I32(tie & U64(TIE_MASK))


# --- matching and fn (tables 2..7) -----------------------------------------------------------------------


@kernel
def match_bucket(block, counts):
    """(record, left bucket) of a matching block: one block per adjacent bucket pair."""
    pairs = counts.shape[1] - 1
    rec = block // pairs
    return rec, block - rec * pairs


@kernel
def match_clear(block, thread, nthreads, rmap, found, base, y, starts, counts, targets, left, right, total, overflow):
    for r in range(thread, PARAM_BC, nthreads):
        rmap[r] = U16(NO_ENTRY)


@kernel
def match_mark(block, thread, nthreads, rmap, found, base, y, starts, counts, targets, left, right, total, overflow):
    rec, b = match_bucket(block, counts)
    rs = I64(starts[rec, b + 1])
    re = rs + counts[rec, b + 1]
    if re - rs >= NO_ENTRY:
        if thread == 0:
            overflow[rec] = U32(1)
        return
    for j in range(rs + thread, re, nthreads):
        mark_right_entry(j, y[rec], rs, (b + 1) * PARAM_BC, rmap)


@kernel
def match_count(block, thread, nthreads, rmap, found, base, y, starts, counts, targets, left, right, total, overflow):
    rec, b = match_bucket(block, counts)
    ls = I64(starts[rec, b])
    le = ls + counts[rec, b]
    rs = I64(starts[rec, b + 1])
    re = rs + counts[rec, b + 1]
    n = 0
    if re - rs < NO_ENTRY:
        cap = left.shape[1]  # probing "at" the capacity only counts
        for i in range(ls + thread, le, nthreads):
            n += probe_left_entry(
                i, y[rec], b * PARAM_BC, rs, re, (b + 1) * PARAM_BC, rmap, targets, left[rec], right[rec], cap
            )
    found[thread] = I32(n)


@kernel
def match_reserve(block, thread, nthreads, rmap, found, base, y, starts, counts, targets, left, right, total, overflow):
    """Thread 0 turns per-thread counts into offsets and reserves the block's slots."""
    if thread == 0:
        rec, _b = match_bucket(block, counts)
        running = I32(0)
        for q in range(nthreads):
            c = found[q]
            found[q] = running
            running = I32(running + c)
        base[0] = atomic_add(total, rec, running)


@kernel
def match_emit(block, thread, nthreads, rmap, found, base, y, starts, counts, targets, left, right, total, overflow):
    rec, b = match_bucket(block, counts)
    ls = I64(starts[rec, b])
    le = ls + counts[rec, b]
    rs = I64(starts[rec, b + 1])
    re = rs + counts[rec, b + 1]
    if re - rs >= NO_ENTRY:
        return
    at = I64(base[0]) + found[thread]
    for i in range(ls + thread, le, nthreads):
        at += probe_left_entry(
            i, y[rec], b * PARAM_BC, rs, re, (b + 1) * PARAM_BC, rmap, targets, left[rec], right[rec], at
        )


@kernel
def fn_thread(i, table, k, total, left, right, y_sorted, meta_hi, meta_lo, y_new, tie_new, hi_new, lo_new):
    cap = left.shape[1]
    rec = i // cap
    j = i - rec * cap
    if j < total[rec] and j < cap:
        l = I64(left[rec, j])
        r = I64(right[rec, j])
        y, hi, lo = fn(table, k, y_sorted[rec, l], meta_hi[rec, l], meta_lo[rec, l], meta_hi[rec, r], meta_lo[rec, r])
        y_new[rec, j] = U32(y)
        hi_new[rec, j] = hi
        lo_new[rec, j] = lo
        tie_new[rec, j] = U64(U64(U64(l) << U64(TIE_BITS)) | U64(r))


@kernel
def table_size_thread(i, total, capacity, sizes, overflow, table, table_sizes):
    """The new table's size (also kept per table); a table past the capacity flags its record."""
    if total[i] > capacity:
        overflow[i] = U32(1)
        sizes[i] = capacity
    else:
        sizes[i] = total[i]
    table_sizes[i, table] = sizes[i]


# --- proofs, masking and the keep rule (protocol.md §5.2) ------------------------------------------------


@kernel
def proof_exists_thread(i, y7, sizes, k, positions, proven):
    n = positions.shape[1]
    rec = i // n
    s = i - rec * n
    p = first_candidate(s, y7[rec], sizes[rec], k)
    positions[rec, s] = I32(p)
    proven[rec, s] = U32(1) if p >= 0 else U32(0)


@kernel
def mask_thread(i, positions, proven_rank, x_sorted, lefts, rights, offsets, k, proofs, ext, masked, usable):
    """For the first 32768 proven s-buckets: trace and pack the proof, hash it, mask the extended chunk
    (stored at the proof's rank); usable = the masked chunk is not all zero (upstream's sentinel)."""
    n = positions.shape[1]
    rec = i // n
    s = i - rec * n
    usable[rec, s] = U32(0)
    p = positions[rec, s]
    rank = I64(proven_rank[rec, s])
    if p < 0 or rank >= RECORD_NUM_CHUNKS:
        return
    size = proofs.shape[1] // RECORD_NUM_CHUNKS
    trace_proof(p, x_sorted[rec], lefts[rec], rights[rec], offsets, k, proofs[rec], rank * size)
    hash_proof(proofs[rec], rank * size, size, masked[rec], rank * 32)
    out = masked[rec]
    chunk = ext[rec]
    nonzero = U8(0)
    for b in range(32):
        value = U8(out[rank * 32 + b] ^ chunk[s * 32 + b])
        out[rank * 32 + b] = value
        nonzero = U8(nonzero | value)
    if nonzero != 0:
        usable[rec, s] = U32(1)


@kernel
def kept_thread(i, usable, encoded_rank, encoded_total, kept):
    """Encoded s-buckets, then the lowest others until the record keeps 32768."""
    n = usable.shape[1]
    rec = i // n
    s = i - rec * n
    if usable[rec, s] != 0 or s - encoded_rank[rec, s] < RECORD_NUM_CHUNKS - encoded_total[rec]:
        kept[rec, s] = U32(1)
    else:
        kept[rec, s] = U32(0)


@kernel
def select_thread(i, kept, kept_rank, usable, proven_rank, masked, ext, chunks):
    n = kept.shape[1]
    rec = i // n
    s = i - rec * n
    if kept[rec, s] == 0:
        return
    out = chunks[rec]
    dst = 32 * I64(kept_rank[rec, s])
    if usable[rec, s] != 0:
        src = masked[rec]
        at = 32 * I64(proven_rank[rec, s])
        for b in range(32):
            out[dst + b] = src[at + b]
    else:
        src = ext[rec]
        for b in range(32):
            out[dst + b] = src[32 * s + b]


@kernel
def bitmap_thread(i, usable, bitmap):
    """The encoded map, Lsb0: bit s of byte s/8."""
    n = bitmap.shape[1]
    rec = i // n
    j = i - rec * n
    byte = U32(0)
    for b in range(8):
        byte = U32(byte | U32(U32(usable[rec, 8 * j + b] & U32(1)) << U32(b)))
    bitmap[rec, j] = U8(byte)


# --- exclusive prefix sums, one block per record ---------------------------------------------------------


@kernel
def scan_chunk(thread, nthreads, n):
    chunk = (n + nthreads - 1) // nthreads
    lo = min(thread * chunk, n)
    return lo, min(lo + chunk, n)


@kernel
def scan_sum(block, thread, nthreads, partial, values, out, totals):
    lo, hi = scan_chunk(thread, nthreads, values.shape[1])
    acc = I64(0)
    for j in range(lo, hi):
        acc += I64(values[block, j])
    partial[thread] = I32(acc)


@kernel
def scan_partials(block, thread, nthreads, partial, values, out, totals):
    if thread == 0:
        running = I32(0)
        for q in range(nthreads):
            c = partial[q]
            partial[q] = running
            running = I32(running + c)
        totals[block] = running


@kernel
def scan_write(block, thread, nthreads, partial, values, out, totals):
    lo, hi = scan_chunk(thread, nthreads, values.shape[1])
    running = I64(partial[thread])
    for j in range(lo, hi):
        out[block, j] = I32(running)
        running += I64(values[block, j])


# --- the kernels as launched -----------------------------------------------------------------------------

TO_MONTGOMERY = GridKernel("to_montgomery_thread", ("records", "limbs", "r2", "bad"))
BIT_REVERSE = GridKernel("bit_reverse_thread", ("x", "log_n"))
NTT_STAGE = GridKernel("ntt_stage_thread", ("x", "twiddles", "length", "max_domain"))
SCALE = GridKernel("scale_thread", ("x", "scale"))
EXTENDED = GridKernel("extended_thread", ("records", "parity", "one", "ext"))
KEYSTREAM = GridKernel("keystream_thread", ("keys", "ks", "nblocks"))
F1 = GridKernel("f1_thread", ("ks", "k", "y", "tie"))
CLEAR = GridKernel("clear_thread", ("flat",))
BUCKET_COUNT = GridKernel("bucket_count_thread", ("y", "sizes", "counts"), atomic=True)
BUCKET_SCATTER = GridKernel("bucket_scatter_thread", ("y", "sizes", "starts", "fill", "order"), atomic=True)
RANK_SORT = BlockKernel(
    ("rank_sort_load", "rank_sort_place"),
    ("y", "tie", "starts", "counts", "order", "overflow", "perm"),
    (("keys", SORT_CAPACITY, np.uint64), ("sources", SORT_CAPACITY, np.int32)),
    BLOCK_THREADS,
)
GATHER_FIRST = GridKernel("gather_first_thread", ("perm", "sizes", "y", "y_sorted", "x_sorted", "meta_hi", "meta_lo"))
GATHER_TABLE = GridKernel(
    "gather_table_thread",
    ("perm", "sizes", "y_new", "tie_new", "hi_new", "lo_new", "y_sorted", "meta_hi", "meta_lo", "lefts", "rights",
     "offset"),
)  # fmt: skip
MATCH = BlockKernel(
    ("match_clear", "match_mark", "match_count", "match_reserve", "match_emit"),
    ("y", "starts", "counts", "targets", "left", "right", "total", "overflow"),
    (("rmap", PARAM_BC, np.uint16), ("found", BLOCK_THREADS, np.int32), ("base", 1, np.int32)),
    BLOCK_THREADS,
    atomic=True,
)
FN = GridKernel(
    "fn_thread",
    ("table", "k", "total", "left", "right", "y_sorted", "meta_hi", "meta_lo", "y_new", "tie_new", "hi_new",
     "lo_new"),
)  # fmt: skip
TABLE_SIZE = GridKernel("table_size_thread", ("total", "capacity", "sizes", "overflow", "table", "table_sizes"))
PROOF_EXISTS = GridKernel("proof_exists_thread", ("y7", "sizes", "k", "positions", "proven"))
MASK = GridKernel(
    "mask_thread",
    ("positions", "proven_rank", "x_sorted", "lefts", "rights", "offsets", "k", "proofs", "ext", "masked", "usable"),
)
KEPT = GridKernel("kept_thread", ("usable", "encoded_rank", "encoded_total", "kept"))
SELECT = GridKernel("select_thread", ("kept", "kept_rank", "usable", "proven_rank", "masked", "ext", "chunks"))
BITMAP = GridKernel("bitmap_thread", ("usable", "bitmap"))
SCAN = BlockKernel(
    ("scan_sum", "scan_partials", "scan_write"),
    ("values", "out", "totals"),
    (("partial", SCAN_THREADS, np.int32),),
    SCAN_THREADS,
)
