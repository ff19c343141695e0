"""Proof-of-space tables on the CPU (pos.md §2–§7), launching the shared kernel bodies.

Tables are kept in the canonical order of pos.md §6.1: table 1 sorted by (y, x), tables 2..7 by
(y, left, right) with left/right the parents' canonical positions. The probe emits each left entry's
matches with right ascending, buckets in order, so matches come out in (left, right) order and a sort by
(y, emission index) yields exactly that canonical order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from autonomys_farmer.backends.cpu.hashing import keystream_launch
from autonomys_farmer.backends.cpu.kernels import CPU, launcher, split_launch
from autonomys_farmer.backends.kernels.pos import NO_ENTRY
from autonomys_farmer.protocol import pos

f1 = CPU.f1
fn_message = CPU.fn_message
fn_hash = CPU.fn_hash
fn_output = CPU.fn_output
fn_input_bytes = CPU.fn_input_bytes
mark_right_entry = CPU.mark_right_entry
unmark_right_entry = CPU.unmark_right_entry
probe_left_entry = CPU.probe_left_entry
first_candidate = CPU.first_candidate
trace_proof = CPU.trace_proof
hash_proof = CPU.hash_proof

PARAM_BC = pos.PARAM_BC
MATCH_CHUNKS = 32
FN_LANES = 16  # matches hashed side by side: one AVX-512 vector of 32-bit words
FN_TASK = 1 << 16  # matches per task on one core
BUCKET_TOO_LARGE = -2


def left_targets() -> np.ndarray:
    """targets[parity, r, m]: the 64 right-entry r values a left entry matches (uint16, 3.9 MB)."""
    r = np.arange(pos.PARAM_BC, dtype=np.int64)[:, None]
    m = np.arange(pos.PARAM_M, dtype=np.int64)[None, :]
    return np.stack([pos.target(parity, r, m) for parity in (0, 1)]).astype(np.uint16)  # type: ignore[arg-type]


LEFT_TARGETS = left_targets()


@launcher
def f1_launch(keystream, k, y):
    for x in prange(y.shape[0]):
        y[x] = f1(x, keystream, k)


@launcher
def match_launch(y, bucket_starts, targets, left, right, ends):
    """Matches of every adjacent bucket pair, chunk c of the buckets into region c of left/right;
    ends[c] is where region c's matches end, -1 if it overflowed, BUCKET_TOO_LARGE for a huge bucket."""
    nchunks = ends.shape[0]
    region = left.shape[0] // nchunks
    pairs = bucket_starts.shape[0] - 2
    for c in prange(nchunks):
        rmap = np.full(PARAM_BC, NO_ENTRY, np.uint16)
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
            for j in range(rs, re):
                mark_right_entry(j, y, rs, base_r, rmap)
            for i in range(ls, le):
                n += probe_left_entry(i, y, base_l, rs, re, base_r, rmap, targets, left_region, right_region, n)
            for j in range(rs, re):
                unmark_right_entry(j, y, base_r, rmap)
            if n > (c + 1) * region:
                n = -1
                break
        ends[c] = n


@njit(nogil=True, cache=True)
def fn_lanes(table, k, y, meta_hi, meta_lo, left, right, y_out, hi_out, lo_out, start, end):
    """fn of every match in [start, end) of table `table`, on one core without the GIL: per block
    of FN_LANES matches, their message words are built one by one into lane-major arrays (one per
    word), hashed side by side (one SIMD lane per match) and turned into entries one by one."""
    words = np.zeros((8, FN_LANES), np.uint32)
    digest = np.empty((8, FN_LANES), np.uint32)
    nbytes = fn_input_bytes(table, k)
    for base in range(start, end, FN_LANES):
        used = min(FN_LANES, end - base)
        for lane in range(used):
            l = left[base + lane]
            r = right[base + lane]
            m = fn_message(table, k, y[l], meta_hi[l], meta_lo[l], meta_hi[r], meta_lo[r])
            for w in range(8):
                words[w, lane] = m[w]
        for lane in range(FN_LANES):  # all lanes, so the loop has no scalar remainder
            h = fn_hash(
                words[0, lane], words[1, lane], words[2, lane], words[3, lane],
                words[4, lane], words[5, lane], words[6, lane], words[7, lane], nbytes,
            )  # fmt: skip
            for w in range(8):
                digest[w, lane] = h[w]
        for lane in range(used):
            i = base + lane
            l = left[i]
            r = right[i]
            h = (
                digest[0, lane], digest[1, lane], digest[2, lane], digest[3, lane],
                digest[4, lane], digest[5, lane], digest[6, lane], digest[7, lane],
            )  # fmt: skip
            y_out[i], hi_out[i], lo_out[i] = fn_output(table, k, h, meta_hi[l], meta_lo[l], meta_hi[r], meta_lo[r])


def fn_table(
    parallel: bool, table: int, k: int, y: np.ndarray, meta_hi: np.ndarray, meta_lo: np.ndarray,
    left: np.ndarray, right: np.ndarray, y_out: np.ndarray, hi_out: np.ndarray, lo_out: np.ndarray,
) -> None:  # fmt: skip
    """(y, metadata) of every match of table `table`, from the previous table's entries."""
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
def stable_order(y, bits):
    """The stable permutation sorting y (< 2^bits, bits <= 31) ascending: LSD radix sort in two passes
    over (y << 32 | position) keys, so each pass reads its input in order and carries the position
    along instead of looking y up at random."""
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
    keys = np.empty(n, np.uint64)
    for i in range(n):
        v = y[i]
        d = v & low_mask
        keys[counts_low[d]] = (np.uint64(v) << np.uint64(32)) | np.uint64(i)
        counts_low[d] += 1
    order = np.empty(n, np.int32)
    for j in range(n):
        key = keys[j]
        d = (key >> np.uint64(32 + low)) & np.uint64(high_mask)
        order[counts_high[d]] = np.int32(key & np.uint64(0xFFFFFFFF))
        counts_high[d] += 1
    return order


@njit(cache=True, nogil=True)
def gather_table(order, y_new, left, right, meta_hi, meta_lo, with_meta):
    """Table entries in `order`: y, left, right (and metadata unless it is table 7)."""
    n = order.shape[0]
    y = np.empty(n, np.int64)
    lefts = np.empty(n, np.int32)
    rights = np.empty(n, np.int32)
    hi = np.empty(n if with_meta else 0, np.uint64)
    lo = np.empty(n if with_meta else 0, np.uint64)
    for j in range(n):
        i = order[j]
        y[j] = y_new[i]
        lefts[j] = left[i]
        rights[j] = right[i]
        if with_meta:
            hi[j] = meta_hi[i]
            lo[j] = meta_lo[i]
    return y, lefts, rights, hi, lo


def find_matches(y: np.ndarray, bucket_starts: np.ndarray, parallel: bool) -> tuple[np.ndarray, np.ndarray]:
    """All (left, right) position pairs between adjacent buckets, in (left, right) order."""
    entries = y.shape[0]
    region = 2 * entries // MATCH_CHUNKS + 8192  # ~1 match per entry: twice that never overflowed
    left = np.empty(region * MATCH_CHUNKS, np.int32)
    right = np.empty(region * MATCH_CHUNKS, np.int32)
    ends = np.empty(MATCH_CHUNKS, np.int64)
    match_launch(parallel, y, bucket_starts, LEFT_TARGETS, left, right, ends)
    if (ends == BUCKET_TOO_LARGE).any():
        raise RuntimeError(f"a PoS bucket holds {NO_ENTRY} or more entries")
    if (ends < 0).any():
        raise RuntimeError("PoS matches overflowed their buffer")
    pieces = [slice(c * region, int(ends[c])) for c in range(MATCH_CHUNKS)]
    return np.concatenate([left[p] for p in pieces]), np.concatenate([right[p] for p in pieces])


class PosTable:
    """The tables of one seed, enough to find proofs: x by table-1 position, (left, right) for
    tables 2..7 and the sorted y of table 7. `parallel=False` builds it on one core."""

    def __init__(self, seed: bytes, k: int = pos.K, parallel: bool = True) -> None:
        self.seed = seed
        self.k = k
        self.parallel = parallel
        key = np.array(pos.chacha8_key_words(seed), np.uint32)
        keystream = np.zeros(-(-(k << k) // 512) * 64 + 8, np.uint8)
        keystream_launch(parallel, key, keystream)
        y = np.empty(1 << k, np.int64)
        f1_launch(parallel, keystream, k, y)
        y_bits = k + pos.PARAM_EXT
        self.x_sorted = stable_order(y, y_bits)  # x in (y, x) order
        y = y[self.x_sorted]
        meta_hi = np.zeros(1 << k, np.uint64)
        meta_lo = self.x_sorted.astype(np.uint64)
        bucket_bounds = np.arange(pos.num_buckets(k) + 1, dtype=np.int64) * pos.PARAM_BC
        self.sizes = [len(y)]
        lefts: list[np.ndarray] = []
        rights: list[np.ndarray] = []
        for table in range(2, pos.NUM_TABLES + 1):
            left, right = find_matches(y, np.searchsorted(y, bucket_bounds), parallel)
            n = len(left)
            y_new = np.empty(n, np.int64)
            hi_new = np.empty(n, np.uint64)
            lo_new = np.empty(n, np.uint64)
            fn_table(parallel, table, k, y, meta_hi, meta_lo, left, right, y_new, hi_new, lo_new)
            # Sorted by y, stably: emission order breaks ties, which is (y, left, right) order.
            order = stable_order(y_new, y_bits)
            y, left, right, meta_hi, meta_lo = gather_table(
                order, y_new, left, right, hi_new, lo_new, table < pos.NUM_TABLES
            )
            lefts.append(left)
            rights.append(right)
            self.sizes.append(n)
        self.y7 = y
        # Tables 2..7 flattened: positions of table t start at offsets[t].
        self.offsets = np.zeros(pos.NUM_TABLES + 1, np.int64)
        self.offsets[2:] = np.cumsum([0] + [len(a) for a in lefts[:-1]])
        self.lefts = np.concatenate(lefts)
        self.rights = np.concatenate(rights)

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
