"""Proof-of-space tables on the CPU (pos.md §2–§7), launching the shared kernel bodies.

Tables are kept in the canonical order of pos.md §6.1: table 1 sorted by (y, x), tables 2..7 by
(y, left, right) with left/right the parents' canonical positions. The probe emits each left entry's
matches with right ascending, buckets in order, so matches come out in (left, right) order and a sort by
(y, emission index) yields exactly that canonical order.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from autonomys_farmer.backends.cpu.hashing import keystream_launch
from autonomys_farmer.backends.cpu.kernels import CPU, launcher, split_launch
from autonomys_farmer.backends.kernels.encode import table_capacity
from autonomys_farmer.backends.kernels.pos import NO_ENTRY
from autonomys_farmer.protocol import pos

f1 = CPU.f1
fn_message = CPU.fn_message
fn_hash = CPU.fn_hash
fn_output = CPU.fn_output
fn_input_bytes = CPU.fn_input_bytes
metadata_multiplier = CPU.metadata_multiplier
mark_right_entry = CPU.mark_right_entry
unmark_right_entry = CPU.unmark_right_entry
mark_right_row = CPU.mark_right_row
unmark_right_row = CPU.unmark_right_row
left_entry_hits = CPU.left_entry_hits
emit_left_hits = CPU.emit_left_hits
first_candidate = CPU.first_candidate
trace_proof = CPU.trace_proof
hash_proof = CPU.hash_proof

PARAM_B = pos.PARAM_B
PARAM_BC = pos.PARAM_BC
PARAM_M = pos.PARAM_M
MATCH_CHUNKS = 32
FN_BLOCK = 1024  # matches fn takes a pass at a time (hashed side by side, as many lanes as a vector holds)
FN_TASK = 1 << 16  # matches per task on one core
BUCKET_TOO_LARGE = -2

# SQUARES[64 * parity + m] = (2m + parity)^2 mod PARAM_C: the column term of pos.target (the CPU's matching).
SQUARES = np.array([(2 * m + parity) ** 2 % pos.PARAM_C for parity in (0, 1) for m in range(pos.PARAM_M)], np.int64)


@launcher
def f1_launch(keystream, k, y):
    for x in prange(y.shape[0]):
        y[x] = f1(x, keystream, k)


@launcher
def match_launch(y, bucket_starts, squares, left, right, ends):
    """Matches of every adjacent bucket pair, chunk c of the buckets into region c of left/right;
    ends[c] is where region c's matches end, -1 if it overflowed, BUCKET_TOO_LARGE for a huge bucket.
    The right bucket is held twice: rmap (r -> its first entry) and row bitmaps that test a left
    entry's 64 candidates side by side (kernels/pos.py)."""
    nchunks = ends.shape[0]
    region = left.shape[0] // nchunks
    pairs = bucket_starts.shape[0] - 2
    for c in prange(nchunks):
        rmap = np.full(PARAM_BC, NO_ENTRY, np.uint16)
        rows_lo = np.zeros(PARAM_B + PARAM_M, np.uint64)
        rows_hi = np.zeros(PARAM_B + PARAM_M, np.uint64)
        left_region = left[: (c + 1) * region]
        right_region = right[: (c + 1) * region]
        n = c * region
        for b in range(c * pairs // nchunks, (c + 1) * pairs // nchunks):
            ls, le = bucket_starts[b], bucket_starts[b + 1]
            rs, re = bucket_starts[b + 1], bucket_starts[b + 2]
            if ls == le or rs == re:
                continue
            if re - rs >= NO_ENTRY:
                n = BUCKET_TOO_LARGE
                break
            base_l = b * PARAM_BC
            base_r = (b + 1) * PARAM_BC
            parity = b & 1
            for j in range(rs, re):
                mark_right_entry(j, y, rs, base_r, rmap)
                mark_right_row(j, y, base_r, rows_lo, rows_hi)
            for i in range(ls, le):
                r_left = np.int64(y[i]) - base_l
                hits = left_entry_hits(r_left, parity, rows_lo, rows_hi, squares)
                if hits != 0:
                    n += emit_left_hits(i, r_left, parity, hits, y, rs, re, base_r, rmap, squares, left_region,
                                        right_region, n)  # fmt: skip
            for j in range(rs, re):
                unmark_right_entry(j, y, base_r, rmap)
                unmark_right_row(j, y, base_r, rows_lo, rows_hi)
            if n > (c + 1) * region:
                n = -1
                break
        ends[c] = n


@njit(nogil=True, cache=True)
def fn_lanes(table, k, y, meta_hi, meta_lo, left, right, y_out, hi_out, lo_out, start, end):
    """fn of every match in [start, end) of table `table`, on one core without the GIL, in passes over
    blocks of FN_BLOCK matches (their data stays in L2): the parents' entries are read, the message
    words built, hashed side by side (one SIMD lane per match) and turned into entries. Only metadata
    wider than 64 bits has its high word read or written (hi_out is left alone otherwise)."""
    y_left = np.zeros(FN_BLOCK, np.int64)
    left_hi, left_lo = np.zeros(FN_BLOCK, np.uint64), np.zeros(FN_BLOCK, np.uint64)
    right_hi, right_lo = np.zeros(FN_BLOCK, np.uint64), np.zeros(FN_BLOCK, np.uint64)
    out_hi = np.zeros(FN_BLOCK, np.uint64)
    words = np.zeros((8, FN_BLOCK), np.uint32)
    digest = np.empty((8, FN_BLOCK), np.uint32)
    nbytes = fn_input_bytes(table, k)
    wide_in = k * metadata_multiplier(table - 1) > 64
    wide_out = k * metadata_multiplier(table) > 64
    for base in range(start, end, FN_BLOCK):
        used = min(FN_BLOCK, end - base)
        for i in range(used):
            l = left[base + i]
            r = right[base + i]
            y_left[i] = y[l]
            left_lo[i] = meta_lo[l]
            right_lo[i] = meta_lo[r]
        if wide_in:
            for i in range(used):
                left_hi[i] = meta_hi[left[base + i]]
                right_hi[i] = meta_hi[right[base + i]]
        for i in range(FN_BLOCK):  # all of the block, so the loops have no scalar remainder
            m = fn_message(table, k, y_left[i], left_hi[i], left_lo[i], right_hi[i], right_lo[i])
            for w in range(8):
                words[w, i] = m[w]
        for i in range(FN_BLOCK):
            h = fn_hash(
                words[0, i], words[1, i], words[2, i], words[3, i],
                words[4, i], words[5, i], words[6, i], words[7, i], nbytes,
            )  # fmt: skip
            for w in range(8):
                digest[w, i] = h[w]
        for i in range(used):
            h = (
                digest[0, i], digest[1, i], digest[2, i], digest[3, i],
                digest[4, i], digest[5, i], digest[6, i], digest[7, i],
            )  # fmt: skip
            m = (
                words[0, i], words[1, i], words[2, i], words[3, i],
                words[4, i], words[5, i], words[6, i], words[7, i],
            )  # fmt: skip
            y_out[base + i], out_hi[i], lo_out[base + i] = fn_output(table, k, h, m)
        if wide_out:
            for i in range(used):
                hi_out[base + i] = out_hi[i]


def fn_table(
    parallel: bool, table: int, k: int, y: np.ndarray, meta_hi: np.ndarray, meta_lo: np.ndarray,
    left: np.ndarray, right: np.ndarray, y_out: np.ndarray, hi_out: np.ndarray, lo_out: np.ndarray,
) -> None:  # fmt: skip
    """(y, metadata) of every match of table `table`, from the previous table's entries (hi_out only
    where the table's metadata is wider than 64 bits)."""
    split_launch(parallel, fn_lanes, len(y_out), FN_TASK, table, k, y, meta_hi, meta_lo, left, right,
                 y_out, hi_out, lo_out)  # fmt: skip


@launcher
def first_candidates_launch(challenge_indices, y7, k, out):
    for i in prange(challenge_indices.shape[0]):
        out[i] = first_candidate(challenge_indices[i], y7, y7.shape[0], k)


@launcher
def trace_launch(positions, x_sorted, lefts, rights, offsets, k, proofs):
    size = proofs.shape[1]
    flat = proofs.reshape(-1)
    for i in prange(positions.shape[0]):
        trace_proof(positions[i], x_sorted, lefts, rights, offsets, k, flat, i * size)


@njit(cache=True, nogil=True)
def sort_into(y, bits, keys, order, y_sorted):
    """order = the stable permutation sorting y (< 2^bits, bits <= 31) ascending, y_sorted = y in that
    order: LSD radix sort in two passes over (y << 32 | position) keys (`keys` is scratch), so each pass
    reads its input in order and carries the position along instead of looking y up at random."""
    n = y.shape[0]
    low = (bits + 1) // 2
    high = bits - low
    low_mask = (1 << low) - 1
    high_mask = (1 << high) - 1
    counts_low = np.zeros((1 << low) + 1, np.int64)
    counts_high = np.zeros((1 << high) + 1, np.int64)
    for i in range(n):
        v = y[i]
        counts_low[(v & low_mask) + 1] += 1
        counts_high[((v >> low) & high_mask) + 1] += 1
    for d in range(1 << low):
        counts_low[d + 1] += counts_low[d]
    for d in range(1 << high):
        counts_high[d + 1] += counts_high[d]
    for i in range(n):
        v = y[i]
        d = v & low_mask
        keys[counts_low[d]] = (np.uint64(v) << np.uint64(32)) | np.uint64(i)
        counts_low[d] += 1
    for j in range(n):
        key = keys[j]
        d = (key >> np.uint64(32 + low)) & np.uint64(high_mask)
        at = counts_high[d]
        order[at] = np.int32(key & np.uint64(0xFFFFFFFF))
        y_sorted[at] = key >> np.uint64(32)
        counts_high[d] += 1


@launcher
def gather_launch(order, source, out):
    """out[j] = source[order[j]]: one array per loop, since interleaving several random reads per
    entry thrashes the TLB (five arrays at once took 2.5x as long as one after another)."""
    for j in prange(order.shape[0]):
        out[j] = source[order[j]]


def mapped(n: int, dtype: type) -> np.ndarray:
    """A zeroed array in an anonymous mapping of its own, in huge pages where the kernel gives them: its
    pages are resident only once touched (a table short of its capacity never touches the rest) and go
    back to the system when the array is freed, where glibc keeps freed arrays of up to 32 MiB in its
    heap for reuse (with a warm-up's buffers kept so, the plotting benchmark had 1427 MiB resident
    before plotting a 1000-piece sector; with mappings, 1180 MiB)."""
    nbytes = max(1, n * np.dtype(dtype).itemsize)
    region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):  # random reads across a table: fewer TLB misses
        region.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(region, dtype, n)


@dataclass(frozen=True)
class Matches:
    """What fn takes to make table `table`: the previous table's entries (sorted y, metadata) and the
    (left, right) positions of its matches. Views into the build's buffers: copy them to keep them."""

    table: int
    y: np.ndarray
    meta_hi: np.ndarray
    meta_lo: np.ndarray
    left: np.ndarray
    right: np.ndarray


class TableBuffers:
    """One table build's working memory, allocated once: a core plotting record after record builds
    every table in the same arrays (fresh ones per record cost page faults and let the allocator's
    arenas grow past what is live). A table built here is views into them, valid until the next build.

    Each table is built from the previous one in ping-pong pairs: fn reads (y, meta) and writes
    (y_new, hi_new, lo_new) in match order; the sort (its keys in meta_hi, free by then) and the gathers
    bring them back into (y, meta) in table order."""

    def __init__(self, k: int, parallel: bool) -> None:
        self.k, self.parallel = k, parallel
        self.capacity = c = table_capacity(k)
        self.keystream = mapped(-(-(k << k) // 512) * 64 + 8, np.uint8)
        self.y, self.y_new = mapped(c, np.int32), mapped(c, np.int32)
        self.meta_hi, self.meta_lo = mapped(c, np.uint64), mapped(c, np.uint64)
        self.hi_new, self.lo_new = mapped(c, np.uint64), mapped(c, np.uint64)
        self.order = mapped(c, np.int32)
        # Matching splits the buckets into chunks, one region each (twice the chunk's share: ~1 match
        # per entry); on one core, one region of a whole table.
        chunks = MATCH_CHUNKS if parallel else 1
        self.region = 2 * c // MATCH_CHUNKS + 8192 if parallel else c
        self.left, self.right = mapped(chunks * self.region, np.int32), mapped(chunks * self.region, np.int32)
        self.ends = np.empty(chunks, np.int64)
        self.x_sorted = mapped(1 << k, np.int32)
        self.lefts = mapped((pos.NUM_TABLES - 1) * c, np.int32)
        self.rights = mapped((pos.NUM_TABLES - 1) * c, np.int32)
        self.offsets = np.zeros(pos.NUM_TABLES + 1, np.int64)
        self.sizes: list[int] = []

    def tables(self, seed: bytes) -> Iterator[Matches]:
        """Build every table of `seed` (pos.md §3–§6), yielding each table's fn inputs before fn runs."""
        k, n, parallel = self.k, 1 << self.k, self.parallel
        y_bits = k + pos.PARAM_EXT
        keystream_launch(parallel, np.array(pos.chacha8_key_words(seed), np.uint32), self.keystream)
        f1_launch(parallel, self.keystream, k, self.y_new[:n])
        sort_into(self.y_new[:n], y_bits, self.meta_hi[:n], self.x_sorted, self.y[:n])  # x in (y, x) order
        self.meta_lo[:n] = self.x_sorted
        bucket_bounds = np.arange(pos.num_buckets(k) + 1, dtype=np.int64) * pos.PARAM_BC
        self.sizes = [n]
        end = 0
        for table in range(2, pos.NUM_TABLES + 1):
            size = self.sizes[-1]
            y, meta_hi, meta_lo = self.y[:size], self.meta_hi[:size], self.meta_lo[:size]
            left, right = self._matches(y, np.searchsorted(y, bucket_bounds))
            m = len(left)
            yield Matches(table, y, meta_hi, meta_lo, left, right)
            y_new, hi_new, lo_new = self.y_new[:m], self.hi_new[:m], self.lo_new[:m]
            fn_table(parallel, table, k, y, meta_hi, meta_lo, left, right, y_new, hi_new, lo_new)
            # Sorted by y, stably: emission order breaks ties, which is (y, left, right) order.
            order = self.order[:m]
            sort_into(y_new, y_bits, self.meta_hi[:m], order, self.y[:m])
            self.offsets[table] = end
            gather_launch(parallel, order, left, self.lefts[end : end + m])
            gather_launch(parallel, order, right, self.rights[end : end + m])
            if table < pos.NUM_TABLES:
                gather_launch(parallel, order, lo_new, self.meta_lo[:m])
                if pos.metadata_bits(table, k) > 64:  # fn reads the high word only of metadata that wide
                    gather_launch(parallel, order, hi_new, self.meta_hi[:m])
            end += m
            self.sizes.append(m)

    def _matches(self, y: np.ndarray, bucket_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All (left, right) position pairs between adjacent buckets, in (left, right) order, as the
        first entries of self.left/right (each chunk's region moved down behind the previous one)."""
        match_launch(self.parallel, y, bucket_starts, SQUARES, self.left, self.right, self.ends)
        if (self.ends == BUCKET_TOO_LARGE).any():
            raise RuntimeError(f"a PoS bucket holds {NO_ENTRY} or more entries")
        if (self.ends < 0).any():
            raise RuntimeError("PoS matches overflowed their buffer")
        end = 0
        for c, chunk_end in enumerate(self.ends.tolist()):
            start = c * self.region
            if start != end:
                self.left[end : end + chunk_end - start] = self.left[start:chunk_end]
                self.right[end : end + chunk_end - start] = self.right[start:chunk_end]
            end += chunk_end - start
        if end > self.capacity:
            raise RuntimeError(f"a PoS table of {end} entries overflows its {self.capacity}")
        return self.left[:end], self.right[:end]


def find_matches(y: np.ndarray, bucket_starts: np.ndarray, parallel: bool) -> tuple[np.ndarray, np.ndarray]:
    """All (left, right) position pairs between adjacent buckets of sorted y, in (left, right) order."""
    k = max(1, (len(y) - 1).bit_length())
    return TableBuffers(k, parallel)._matches(y, bucket_starts)


class PosTable:
    """The tables of one seed, enough to find proofs: x by table-1 position, (left, right) for
    tables 2..7 and the sorted y of table 7. `parallel=False` builds it on one core; `buffers` (of
    the same k, made for the same `parallel`) are reused, and the table lives in them until they build
    the next one."""

    def __init__(self, seed: bytes, k: int = pos.K, parallel: bool = True, buffers: TableBuffers | None = None) -> None:
        self.seed = seed
        self.k = k
        self.parallel = parallel
        built = buffers if buffers is not None else TableBuffers(k, parallel)
        if (built.k, built.parallel) != (k, parallel):
            raise ValueError(f"table buffers for k={built.k}, parallel={built.parallel} given to a k={k} build")
        for _ in built.tables(seed):
            pass
        self.sizes = list(built.sizes)
        self.x_sorted = built.x_sorted
        total = sum(self.sizes[1:])
        self.lefts, self.rights = built.lefts[:total], built.rights[:total]
        self.offsets = built.offsets.copy()
        self.y7 = built.y[: self.sizes[-1]]

    @classmethod
    def from_arrays(
        cls,
        seed: bytes,
        k: int,
        sizes: list[int],
        x_sorted: np.ndarray,
        lefts: np.ndarray,
        rights: np.ndarray,
        offsets: np.ndarray,
        y7: np.ndarray,
        parallel: bool = True,
    ) -> PosTable:
        """Tables built elsewhere (the GPU): x by table-1 position, (left, right) of table t from
        offsets[t], and table 7's sorted y."""
        table = cls.__new__(cls)
        table.seed, table.k, table.parallel, table.sizes = seed, k, parallel, list(sizes)
        table.x_sorted = np.ascontiguousarray(x_sorted, np.int32)
        table.lefts = np.ascontiguousarray(lefts, np.int32)
        table.rights = np.ascontiguousarray(rights, np.int32)
        table.offsets = np.ascontiguousarray(offsets, np.int64)
        table.y7 = np.ascontiguousarray(y7, np.int64)
        return table

    def first_candidates(self, challenge_indices: np.ndarray) -> np.ndarray:
        """Table-7 position of the first proof for each challenge index, or -1."""
        indices = np.ascontiguousarray(challenge_indices, dtype=np.uint32)
        out = np.empty(len(indices), np.int64)
        first_candidates_launch(self.parallel, indices, self.y7, self.k, out)
        return out

    def proofs_at(self, table7_positions: np.ndarray) -> np.ndarray:
        """Packed 160-byte proofs, one row per table-7 position."""
        positions = np.ascontiguousarray(table7_positions, np.int64)
        proofs = np.zeros((len(positions), 64 * self.k // 8), np.uint8)
        trace_launch(self.parallel, positions, self.x_sorted, self.lefts, self.rights, self.offsets, self.k, proofs)
        return proofs

    def find_proof(self, challenge_index: int) -> bytes | None:
        (position,) = self.first_candidates(np.array([challenge_index]))
        if position < 0:
            return None
        return bytes(self.proofs_at(np.array([position]))[0])

    def find_proofs(self, challenge_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(has_proof bool[n], proofs uint8[n, 160]) for many challenges (all s-buckets when plotting)."""
        positions = self.first_candidates(challenge_indices)
        has = positions >= 0
        proofs = np.zeros((len(positions), 64 * self.k // 8), np.uint8)
        proofs[has] = self.proofs_at(positions[has])
        return has, proofs
