"""Proof-of-space kernel bodies (pos.md §3–§7): fn, the matching probe, proof lookup and traceback.

Table entries live in canonical order (pos.md §6.1): table 1 by (y, x), tables 2..7 by (y, left, right),
left/right being positions in the previous table. Tables 2..7 of one seed are stored flat in `lefts` and
`rights`, table t starting at offsets[t].
"""

from __future__ import annotations

from autonomys_farmer.backends.kernels.blake3 import compress, hash_chunk, iv_words, store_digest
from autonomys_farmer.backends.kernels.intrinsics import trailing_zeros
from autonomys_farmer.backends.kernels.ints import I64, U8, U16, U32, U64, bswap32, mask64
from autonomys_farmer.backends.kernels.source import kernel

PARAM_EXT = 6
PARAM_M = 64
PARAM_B = 119
PARAM_C = 127
PARAM_BC = PARAM_B * PARAM_C
FN_FLAGS = 1 | 2 | 8  # CHUNK_START | CHUNK_END | ROOT: every fn input is one block
NO_ENTRY = 0xFFFF  # rmap value of an r that does not occur in the right bucket


@kernel
def metadata_multiplier(table):
    """Metadata bits of a table entry in multiples of k (pos.md §5): (0, 1, 2, 4, 4, 3, 2, 0)[table]."""
    if table == 1:
        return 1
    if table == 2:
        return 2
    if table == 3 or table == 4:
        return 4
    if table == 5:
        return 3
    if table == 6:
        return 2
    return 0


# --- fn's 256-bit big-endian bit buffer as four uint64 words (w0 holds bits 0..63), built branch-free ------
# Every position and width depends on the table only: the CPU hoists them out of its loop over matches,
# which then vectorises with no branch inside (a branch per field kept it scalar); the GPU computes them
# per thread.


@kernel
def shifted(v, s):
    """v moved s bits towards the MSB (s < 0: towards the LSB); bits moved past either end are dropped."""
    up = U64(v << U64(s & 63))
    down = U64(v >> U64((-s) & 63))
    moved = up if s >= 0 else down
    return moved if s > -64 and s < 64 else U64(0)


@kernel
def field_in_word(j, value, pos, nbits):
    """The part of a field of nbits (<= 64) at bit position pos that falls in word j."""
    return shifted(U64(U64(value) & mask64(nbits)), 64 * (j + 1) - (pos + nbits))


@kernel
def bits_ending_at(w0, w1, w2, w3, end):
    """The 64 bits of the buffer that end at bit position end (zeros for positions before the buffer)."""
    start = end - 64
    return U64(shifted(w0, start) | shifted(w1, start - 64) | shifted(w2, start - 128) | shifted(w3, start - 192))


@kernel
def be_words(w):
    """A uint64 as two big-endian-loaded uint32 message words (BLAKE3 reads bytes little-endian)."""
    return bswap32(U32(w >> U64(32))), bswap32(U32(w & U64(0xFFFFFFFF)))


@kernel
def from_be_words(a, b):
    """be_words undone: two uint32 words read big-endian as one uint64."""
    return U64(U64(U64(bswap32(a)) << U64(32)) | U64(bswap32(b)))


@kernel
def fn_input_bytes(table, k):
    """Bytes of fn's BLAKE3 input for `table`: y and the two parents' metadata."""
    return (k + PARAM_EXT + 2 * k * metadata_multiplier(table - 1) + 7) // 8


@kernel
def message_word(j, yb, pb, y_left, meta_left_hi, meta_left_lo, meta_right_hi, meta_right_lo):
    """Word j of fn's input: y (yb bits), then both parents' metadata (pb <= 128 bits each, as hi, lo)."""
    hb = pb - 64 if pb > 64 else 0
    lb = pb - hb
    return U64(
        field_in_word(j, U64(y_left), 0, yb)
        | field_in_word(j, meta_left_hi, yb, hb)
        | field_in_word(j, meta_left_lo, yb + hb, lb)
        | field_in_word(j, meta_right_hi, yb + pb, hb)
        | field_in_word(j, meta_right_lo, yb + pb + hb, lb)
    )


@kernel
def fn_message(table, k, y_left, meta_left_hi, meta_left_lo, meta_right_hi, meta_right_lo):
    """The first 8 message words of fn's one BLAKE3 block (the rest are zero): y, then both
    parents' metadata, MSB-first."""
    yb = k + PARAM_EXT
    pb = k * metadata_multiplier(table - 1)
    m0, m1 = be_words(message_word(0, yb, pb, y_left, meta_left_hi, meta_left_lo, meta_right_hi, meta_right_lo))
    m2, m3 = be_words(message_word(1, yb, pb, y_left, meta_left_hi, meta_left_lo, meta_right_hi, meta_right_lo))
    m4, m5 = be_words(message_word(2, yb, pb, y_left, meta_left_hi, meta_left_lo, meta_right_hi, meta_right_lo))
    m6, m7 = be_words(message_word(3, yb, pb, y_left, meta_left_hi, meta_left_lo, meta_right_hi, meta_right_lo))
    return m0, m1, m2, m3, m4, m5, m6, m7


@kernel
def fn_hash(m0, m1, m2, m3, m4, m5, m6, m7, nbytes):
    """fn's BLAKE3 of one block whose first 8 words are given."""
    zw = U32(0)
    message = (m0, m1, m2, m3, m4, m5, m6, m7, zw, zw, zw, zw, zw, zw, zw, zw)
    return compress(iv_words(), message, 0, nbytes, FN_FLAGS)


@kernel
def fn_output(table, k, h, m):
    """(y, metadata hi, metadata lo) of a table-`table` entry from its hash h and fn's input m (8 words
    each). y is the hash's first k + PARAM_EXT bits and the metadata the bits after it: in the hash, or
    for tables 2 and 3 (whose metadata is the parents' concatenated) in the input, after y."""
    yb = k + PARAM_EXT
    ob = k * metadata_multiplier(table)
    o0, o1 = from_be_words(h[0], h[1]), from_be_words(h[2], h[3])
    o2, o3 = from_be_words(h[4], h[5]), from_be_words(h[6], h[7])
    concatenated = table == 2 or table == 3
    s0 = from_be_words(m[0], m[1]) if concatenated else o0
    s1 = from_be_words(m[2], m[3]) if concatenated else o1
    s2 = from_be_words(m[4], m[5]) if concatenated else o2
    s3 = from_be_words(m[6], m[7]) if concatenated else o3
    hb = ob - 64 if ob > 64 else 0
    lo = U64(bits_ending_at(s0, s1, s2, s3, yb + ob) & mask64(ob - hb))
    hi = U64(bits_ending_at(s0, s1, s2, s3, yb + ob - 64) & mask64(hb))
    return I64(o0 >> U64(64 - yb)), hi, lo


@kernel
def fn(table, k, y_left, meta_left_hi, meta_left_lo, meta_right_hi, meta_right_lo):
    """(y, metadata hi, metadata lo) of a table-`table` entry (pos.md §5), one BLAKE3 block. The
    CPU runs its three parts lane by lane (the hash vectorised across matches), the GPU as one body."""
    m = fn_message(table, k, y_left, meta_left_hi, meta_left_lo, meta_right_hi, meta_right_lo)
    h = fn_hash(m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], fn_input_bytes(table, k))
    return fn_output(table, k, h, m)


# --- matching (pos.md §4): the right bucket as an r -> first position map, probed per left entry ---------


@kernel
def mark_right_entry(j, y, right_start, right_base, rmap):
    """rmap[r] = offset in the right bucket (uint16) of its first entry with that r (entries sorted by y)."""
    if j == right_start or y[j] != y[j - 1]:
        rmap[I64(y[j]) - right_base] = U16(j - right_start)


@kernel
def unmark_right_entry(j, y, right_base, rmap):
    rmap[I64(y[j]) - right_base] = U16(NO_ENTRY)


@kernel
def emit_match_run(i, j, target, y, right_end, right_base, left_out, right_out, at, found):
    """Pair left entry i with the right entries from j on whose r is `target`; when left_out has room,
    each pair is inserted among i's matches written from `at` keeping j ascending (there are one or
    two). Returns the new count of i's matches."""
    while j < right_end and I64(y[j]) == right_base + target:
        if at + found < left_out.shape[0]:
            p = at + found
            while p > at and right_out[p - 1] > j:
                left_out[p] = left_out[p - 1]
                right_out[p] = right_out[p - 1]
                p -= 1
            left_out[p] = i
            right_out[p] = j
        found += 1
        j += 1
    return found


@kernel
def probe_left_entry(i, y, left_base, right_start, right_end, right_base, rmap, targets, left_out, right_out, at):
    """Matches of left entry i with the right bucket, one probe of rmap per m: their count, and when
    left_out has room from `at`, the pairs (i, j) written there with j ascending."""
    parity = (left_base // PARAM_BC) & 1
    r_left = I64(y[i]) - left_base
    found = 0
    for m in range(PARAM_M):
        target = I64(targets[parity, r_left, m])
        first = I64(rmap[target])
        if first != NO_ENTRY:
            found = emit_match_run(i, right_start + first, target, y, right_end, right_base, left_out, right_out, at,
                                   found)  # fmt: skip
    return found


# The CPU's matching: the right bucket also as bitmaps of its rows (row r // PARAM_C, column r % PARAM_C;
# a row's 127 columns in two words, and rows 0..63 again after the last, so the 64 rows a left entry
# reaches are contiguous). The 64 tests of a left entry are then shifts of contiguous words, which LLVM
# vectorises, where 64 table lookups and probes run one by one; only the hits are probed in rmap.


@kernel
def mark_right_row(j, y, right_base, rows_lo, rows_hi):
    """Set right entry j's bit in the row bitmaps and in its row's copy (a row without one is set twice).
    Branch-free: numba keeps its array reference counting out of straight-line code only (a branch
    per word took 20 ns a mark)."""
    r = I64(y[j]) - right_base
    row = r // PARAM_C
    col = r - row * PARAM_C
    bit = U64(U64(1) << U64(col & 63))
    lo_bit = bit if col < 64 else U64(0)
    hi_bit = U64(bit ^ lo_bit)
    copy = row + PARAM_B if row < PARAM_M else row
    rows_lo[row] = U64(rows_lo[row] | lo_bit)
    rows_hi[row] = U64(rows_hi[row] | hi_bit)
    rows_lo[copy] = U64(rows_lo[copy] | lo_bit)
    rows_hi[copy] = U64(rows_hi[copy] | hi_bit)


@kernel
def unmark_right_row(j, y, right_base, rows_lo, rows_hi):
    r = I64(y[j]) - right_base
    row = r // PARAM_C
    copy = row + PARAM_B if row < PARAM_M else row
    rows_lo[row] = U64(0)
    rows_hi[row] = U64(0)
    rows_lo[copy] = U64(0)
    rows_hi[copy] = U64(0)


@kernel
def left_entry_hits(r_left, parity, rows_lo, rows_hi, squares):
    """Bit m set where the right bucket holds the r a left entry (bucket parity, r_left) matches with m
    (pos.md §4): row r_left // PARAM_C + m, column (r_left + (2m + parity)^2) mod PARAM_C, whose square
    term is squares[64 * parity + m]. Unsigned indices: contiguous loads, not gathers."""
    row = U64(r_left // PARAM_C)
    col = I64(r_left - I64(row) * PARAM_C)
    hits = U64(0)
    for m in range(PARAM_M):
        c = col + I64(squares[U64(parity * PARAM_M + m)])
        c = c - PARAM_C if c >= PARAM_C else c
        lo = rows_lo[U64(row + U64(m))]
        hi = rows_hi[U64(row + U64(m))]
        word = hi if c >= 64 else lo  # both loaded: a select, not a gather
        hits = U64(hits | U64(U64(U64(word >> U64(c & 63)) & U64(1)) << U64(m)))
    return hits


@kernel
def emit_left_hits(i, r_left, parity, hits, y, right_start, right_end, right_base, rmap, squares, left_out,
                   right_out, at):  # fmt: skip
    """The matches of left entry i behind its `hits` (left_entry_hits), written as probe_left_entry does."""
    row = r_left // PARAM_C
    col = r_left - row * PARAM_C
    found = 0
    while hits != 0:
        m = I64(trailing_zeros(hits))
        hits = U64(hits & U64(hits - U64(1)))
        c = col + I64(squares[parity * PARAM_M + m])
        c = c - PARAM_C if c >= PARAM_C else c
        b = row + m
        b = b - PARAM_B if b >= PARAM_B else b
        target = b * PARAM_C + c
        found = emit_match_run(i, right_start + I64(rmap[target]), target, y, right_end, right_base, left_out,
                               right_out, at, found)  # fmt: skip
    return found


# --- proofs (pos.md §7) ----------------------------------------------------------------------------------


@kernel
def challenge_prefix(challenge_index, k):
    """fk: the first k bits of the challenge index's little-endian bytes."""
    return I64(bswap32(U32(challenge_index)) >> U32(32 - k))


@kernel
def first_candidate(challenge_index, y7, n7, k):
    """Position of the first table-7 entry with y >> PARAM_EXT == fk (canonical order), or -1."""
    fk = challenge_prefix(challenge_index, k)
    lo_y = fk << I64(PARAM_EXT)
    lo = 0
    hi = n7
    while lo < hi:
        mid = (lo + hi) >> 1
        if I64(y7[mid]) < lo_y:
            lo = mid + 1
        else:
            hi = mid
    if lo < n7 and (I64(y7[lo]) >> I64(PARAM_EXT)) == fk:
        return I64(lo)
    return I64(-1)


@kernel
def parents(table, p, lefts, rights, offsets):
    """Positions in table - 1 of the two entries entry p of `table` was matched from."""
    return I64(lefts[offsets[table] + p]), I64(rights[offsets[table] + p])


@kernel
def pack_x(acc, nbits, o, x, k, out):
    """Append k bits of x to the MSB-first bit stream at out[o:] (acc holds nbits pending bits)."""
    acc = U64(U64(acc << U64(k)) | U64(x))
    nbits += k
    while nbits >= 8:
        nbits -= 8
        out[o] = U8(U64(acc >> U64(nbits)) & U64(0xFF))
        o += 1
    return U64(acc & mask64(nbits)) if nbits > 0 else U64(0), nbits, o


@kernel
def trace_proof(t7_position, x_sorted, lefts, rights, offsets, k, out, start):
    """Expand a table-7 entry into its 64 x values (left before right) packed MSB-first at out[start:].

    Depth first, one loop per table: each tree node is read once (126 reads), no scratch arrays."""
    acc = U64(0)
    nbits = 0
    o = start
    p6 = parents(7, I64(t7_position), lefts, rights, offsets)
    for a in range(2):
        p5 = parents(6, p6[a], lefts, rights, offsets)
        for b in range(2):
            p4 = parents(5, p5[b], lefts, rights, offsets)
            for c in range(2):
                p3 = parents(4, p4[c], lefts, rights, offsets)
                for d in range(2):
                    p2 = parents(3, p3[d], lefts, rights, offsets)
                    for e in range(2):
                        p1 = parents(2, p2[e], lefts, rights, offsets)
                        acc, nbits, o = pack_x(acc, nbits, o, x_sorted[p1[0]], k, out)
                        acc, nbits, o = pack_x(acc, nbits, o, x_sorted[p1[1]], k, out)


@kernel
def hash_proof(proofs, start, proof_size, out, out_start):
    """BLAKE3 of proofs[start:start+proof_size] (PosProof::hash) into out[out_start:out_start+32]."""
    store_digest(hash_chunk(proofs, start, proof_size, iv_words(), 0), out, out_start)
