"""Proof-of-space tables on the CPU: numba kernels for f1, matching and fn (pos.md §2–§7).

Tables are kept in the canonical order of pos.md §6.1: table 1 sorted by (y, x), tables 2..7 by
(y, left, right) with left/right the parents' canonical positions. Matches are emitted in
(left, right) order and then stably sorted by y, which yields exactly that order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from autonomys_farmer.backends.cpu.blake3_kernel import IV, compress
from autonomys_farmer.protocol import pos

U64 = np.uint64
M32 = np.uint64(0xFFFFFFFF)
ALL64 = np.uint64(0xFFFFFFFFFFFFFFFF)
FN_FLAGS = 1 | 2 | 8  # CHUNK_START | CHUNK_END | ROOT: every fn input is one block


@njit(cache=True)
def _chacha_qr(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & M32
    s[d] = s[d] ^ s[a]
    s[d] = ((s[d] << U64(16)) | (s[d] >> U64(16))) & M32
    s[c] = (s[c] + s[d]) & M32
    s[b] = s[b] ^ s[c]
    s[b] = ((s[b] << U64(12)) | (s[b] >> U64(20))) & M32
    s[a] = (s[a] + s[b]) & M32
    s[d] = s[d] ^ s[a]
    s[d] = ((s[d] << U64(8)) | (s[d] >> U64(24))) & M32
    s[c] = (s[c] + s[d]) & M32
    s[b] = s[b] ^ s[c]
    s[b] = ((s[b] << U64(7)) | (s[b] >> U64(25))) & M32


@njit(parallel=True, cache=True)
def chacha8_keystream(key_words, nblocks):
    """ChaCha8 keystream blocks 0..nblocks-1 (IETF layout, zero nonce), plus 8 zero pad bytes."""
    out = np.zeros(nblocks * 64 + 8, np.uint8)
    nchunks = 64
    for c in prange(nchunks):
        s = np.empty(16, np.uint64)
        init = np.empty(16, np.uint64)
        for blk in range(c * nblocks // nchunks, (c + 1) * nblocks // nchunks):
            init[0] = 0x61707865
            init[1] = 0x3320646E
            init[2] = 0x79622D32
            init[3] = 0x6B206574
            for i in range(8):
                init[4 + i] = key_words[i]
            init[12] = blk
            init[13] = 0
            init[14] = 0
            init[15] = 0
            s[:] = init
            for _ in range(4):
                _chacha_qr(s, 0, 4, 8, 12)
                _chacha_qr(s, 1, 5, 9, 13)
                _chacha_qr(s, 2, 6, 10, 14)
                _chacha_qr(s, 3, 7, 11, 15)
                _chacha_qr(s, 0, 5, 10, 15)
                _chacha_qr(s, 1, 6, 11, 12)
                _chacha_qr(s, 2, 7, 8, 13)
                _chacha_qr(s, 3, 4, 9, 14)
            for i in range(16):
                w = (s[i] + init[i]) & M32
                for j in range(4):
                    out[blk * 64 + 4 * i + j] = (w >> U64(8 * j)) & U64(0xFF)
    return out


@njit(parallel=True, cache=True)
def f1_all(keystream, k):
    """y for every x in 0..2^k: k keystream bits (MSB-first) then the top 6 bits of x."""
    n = 1 << k
    y = np.empty(n, np.int64)
    mask = (1 << k) - 1
    for x in prange(n):
        bit = k * x
        byte = bit >> 3
        sh = bit & 7
        w = (
            (np.int64(keystream[byte]) << 24)
            | (np.int64(keystream[byte + 1]) << 16)
            | (np.int64(keystream[byte + 2]) << 8)
            | np.int64(keystream[byte + 3])
        )
        partial = (w >> (32 - k - sh)) & mask
        y[x] = (partial << 6) | (x >> (k - 6))
    return y


def _left_targets() -> np.ndarray:
    """targets[parity, r, m]: the 64 right-entry r values a left entry matches (uint16, 3.9 MB)."""
    r = np.arange(pos.PARAM_BC, dtype=np.int64)[:, None]
    m = np.arange(pos.PARAM_M, dtype=np.int64)[None, :]
    return np.stack(
        [
            ((r // pos.PARAM_C + m) % pos.PARAM_B) * pos.PARAM_C + ((2 * m + parity) ** 2 + r) % pos.PARAM_C
            for parity in (0, 1)
        ]
    ).astype(np.uint16)


LEFT_TARGETS = _left_targets()


@njit(cache=True)
def _match_buckets(y, bucket_starts, b_first, b_last, targets, left, right, out_start, out_end):
    """Matches of left buckets b_first..b_last-1 written from out_start; returns the end or -1."""
    BC = 15113
    first = np.zeros(BC, np.int32)
    count = np.zeros(BC, np.uint8)
    hits = np.empty(64, np.int64)
    found = np.empty(64 * 8, np.int64)
    n = out_start
    for b in range(b_first, b_last):
        ls, le = bucket_starts[b], bucket_starts[b + 1]
        rs, re = bucket_starts[b + 1], bucket_starts[b + 2]
        if ls == le or rs == re:
            continue
        base_r = (b + 1) * BC
        for j in range(rs, re):
            rv = y[j] - base_r
            if count[rv] == 0:
                first[rv] = j
            count[rv] += 1
        parity = b & 1
        base_l = b * BC
        for i in range(ls, le):
            row = targets[parity, y[i] - base_l]
            # Branch-free scan: remember every target whose r value occurs in the right bucket.
            nh = 0
            for m in range(64):
                t = row[m]
                hits[nh] = t
                nh += count[t] != 0
            if nh == 0:
                continue
            nf = 0
            for h in range(nh):
                t = hits[h]
                f = first[t]
                for q in range(count[t]):
                    if nf == found.shape[0]:
                        grown = np.empty(nf * 2, np.int64)
                        grown[:nf] = found[:nf]
                        found = grown
                    found[nf] = f + q
                    nf += 1
            # Few matches per left entry: insertion sort keeps the (left, right) emission order.
            for a in range(1, nf):
                v = found[a]
                p = a - 1
                while p >= 0 and found[p] > v:
                    found[p + 1] = found[p]
                    p -= 1
                found[p + 1] = v
            if n + nf > out_end:
                return -1
            for a in range(nf):
                left[n] = i
                right[n] = found[a]
                n += 1
        for j in range(rs, re):
            count[y[j] - base_r] = 0
    return n


@njit(parallel=True, cache=True)
def find_matches(y, bucket_starts, nbuckets, targets):
    """All (left, right) position pairs between adjacent buckets, in (left, right) order.

    Bucket ranges are matched in parallel into slack regions of one buffer, then compacted.
    Returns (left, right, n) with n = -1 if a region overflowed (never seen: ~1 match/entry).
    """
    nchunks = 32
    entries = y.shape[0]
    region = 2 * entries // nchunks + 8192
    left = np.empty(region * nchunks, np.int32)
    right = np.empty(region * nchunks, np.int32)
    ends = np.empty(nchunks, np.int64)
    for c in prange(nchunks):
        ends[c] = _match_buckets(
            y, bucket_starts, c * (nbuckets - 1) // nchunks, (c + 1) * (nbuckets - 1) // nchunks, targets,
            left, right, c * region, (c + 1) * region,
        )  # fmt: skip
    n = 0
    for c in range(nchunks):
        if ends[c] < 0:
            return left, right, -1
        n += ends[c] - c * region
    left_out = np.empty(n, np.int32)
    right_out = np.empty(n, np.int32)
    n = 0
    for c in range(nchunks):
        size = ends[c] - c * region
        left_out[n : n + size] = left[c * region : ends[c]]
        right_out[n : n + size] = right[c * region : ends[c]]
        n += size
    return left_out, right_out, n


@njit(cache=True)
def _put_bits(buf, pos, value, nbits):
    """OR an nbits (<= 64) value into a big-endian bit buffer of u64 words at bit position pos."""
    if nbits == 0:
        return
    if nbits < 64:
        value &= (U64(1) << U64(nbits)) - U64(1)
    wi = pos >> 6
    off = pos & 63
    if off + nbits <= 64:
        buf[wi] |= value << U64(64 - off - nbits)
    else:
        spill = off + nbits - 64
        buf[wi] |= value >> U64(spill)
        buf[wi + 1] |= value << U64(64 - spill)


@njit(cache=True)
def _get_bits(buf, pos, nbits):
    wi = pos >> 6
    off = pos & 63
    if off + nbits <= 64:
        v = buf[wi] >> U64(64 - off - nbits)
    else:
        spill = off + nbits - 64
        v = (buf[wi] << U64(spill)) | (buf[wi + 1] >> U64(64 - spill))
    if nbits < 64:
        v &= (U64(1) << U64(nbits)) - U64(1)
    return v


@njit(cache=True)
def _put_meta(buf, pos, hi, lo, nbits):
    if nbits > 64:
        _put_bits(buf, pos, hi, nbits - 64)
        _put_bits(buf, pos + nbits - 64, lo, 64)
    else:
        _put_bits(buf, pos, lo, nbits)


@njit(cache=True)
def _bswap32(x):
    return (
        ((x & U64(0xFF)) << U64(24))
        | ((x & U64(0xFF00)) << U64(8))
        | ((x >> U64(8)) & U64(0xFF00))
        | ((x >> U64(24)) & U64(0xFF))
    )


@njit(cache=True)
def _fn_one(table, k, y_left, ml_hi, ml_lo, mr_hi, mr_lo, buf, out_buf):
    """pos.fn for one match: returns (y, meta_hi, meta_lo); buf/out_buf are 4-word scratch."""
    yb = k + 6
    pb = k * (0, 1, 2, 4, 4, 3, 2, 0)[table - 1]
    ob = k * (0, 1, 2, 4, 4, 3, 2, 0)[table]
    total = yb + 2 * pb
    nbytes = (total + 7) // 8
    for i in range(4):
        buf[i] = 0
    _put_bits(buf, 0, U64(y_left), yb)
    _put_meta(buf, yb, ml_hi, ml_lo, pb)
    _put_meta(buf, yb + pb, mr_hi, mr_lo, pb)
    z = np.uint32(0)
    m = (
        np.uint32(_bswap32(buf[0] >> U64(32))), np.uint32(_bswap32(buf[0] & M32)),
        np.uint32(_bswap32(buf[1] >> U64(32))), np.uint32(_bswap32(buf[1] & M32)),
        np.uint32(_bswap32(buf[2] >> U64(32))), np.uint32(_bswap32(buf[2] & M32)),
        np.uint32(_bswap32(buf[3] >> U64(32))), np.uint32(_bswap32(buf[3] & M32)),
        z, z, z, z, z, z, z, z,
    )  # fmt: skip
    cv = (IV[0], IV[1], IV[2], IV[3], IV[4], IV[5], IV[6], IV[7])
    h = compress(cv, m, 0, nbytes, FN_FLAGS)
    for i in range(4):
        out_buf[i] = (_bswap32(U64(h[2 * i])) << U64(32)) | _bswap32(U64(h[2 * i + 1]))
    y = np.int64(out_buf[0] >> U64(64 - yb))
    if table == 2 or table == 3:
        for i in range(4):
            buf[i] = 0
        _put_meta(buf, 256 - 2 * pb, ml_hi, ml_lo, pb)
        _put_meta(buf, 256 - pb, mr_hi, mr_lo, pb)
        return y, buf[2], buf[3]
    if ob == 0:
        return y, U64(0), U64(0)
    if ob > 64:
        return y, _get_bits(out_buf, yb, ob - 64), _get_bits(out_buf, yb + ob - 64, 64)
    return y, U64(0), _get_bits(out_buf, yb, ob)


@njit(parallel=True, cache=True)
def compute_fn(table, k, y, meta_hi, meta_lo, left, right, n):
    """fn for the first n matches: new y and metadata (hi, lo words) per match."""
    y_out = np.empty(n, np.int64)
    hi_out = np.empty(n, np.uint64)
    lo_out = np.empty(n, np.uint64)
    nchunks = 64
    for c in prange(nchunks):
        buf = np.zeros(4, np.uint64)
        out_buf = np.zeros(4, np.uint64)
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            l = left[i]
            r = right[i]
            yy, hh, ll = _fn_one(table, k, y[l], meta_hi[l], meta_lo[l], meta_hi[r], meta_lo[r], buf, out_buf)
            y_out[i] = yy
            hi_out[i] = hh
            lo_out[i] = ll
    return y_out, hi_out, lo_out


def fn_batch(table: int, k: int, y_left: np.ndarray, meta_left: list[int], meta_right: list[int]):
    """Vectorised pos.fn over explicit (y, meta_left, meta_right) triples; used by tests."""
    n = len(y_left)
    y = np.concatenate([np.asarray(y_left, np.int64), np.zeros(n, np.int64)])
    metas = list(meta_left) + list(meta_right)
    hi = np.array([m >> 64 for m in metas], np.uint64)
    lo = np.array([m & (2**64 - 1) for m in metas], np.uint64)
    idx = np.arange(n, dtype=np.int32)
    ys, his, los = compute_fn(table, k, y, hi, lo, idx, idx + n, n)
    return ys, [(int(h) << 64) | int(lo_) for h, lo_ in zip(his, los, strict=True)]


@njit(parallel=True, cache=True)
def trace_proofs(table_index, x_sorted, lefts, rights, offsets, k):
    """Expand table-7 positions into 64 x values each (left before right) and pack them."""
    n = table_index.shape[0]
    nbytes = 64 * k // 8
    proofs = np.zeros((n, nbytes), np.uint8)
    for i in prange(n):
        pos_a = np.empty(64, np.int64)
        pos_b = np.empty(64, np.int64)
        pos_a[0] = table_index[i]
        width = 1
        for t in range(7, 1, -1):  # tables 7..2: positions in table t -> positions in table t-1
            base = offsets[t]
            for j in range(width):
                p = pos_a[j]
                pos_b[2 * j] = lefts[base + p]
                pos_b[2 * j + 1] = rights[base + p]
            width *= 2
            pos_a, pos_b = pos_b, pos_a
        # Pack 64 k-bit x values MSB-first through a small bit accumulator.
        acc = np.uint64(0)
        nbits = 0
        out = 0
        for j in range(64):
            acc = (acc << U64(k)) | U64(x_sorted[pos_a[j]])
            nbits += k
            while nbits >= 8:
                nbits -= 8
                proofs[i, out] = np.uint8((acc >> U64(nbits)) & U64(0xFF))
                out += 1
    return proofs


class PosTable:
    """The tables of one seed, enough to find proofs: x by table-1 position, (left, right) for
    tables 2..7 and the sorted y of table 7."""

    def __init__(self, seed: bytes, k: int = pos.K) -> None:
        self.seed = seed
        self.k = k
        key_words = np.array(pos.chacha8_key_words(seed), np.uint64)
        nblocks = -(-(k << k) // 512)
        keystream = chacha8_keystream(key_words, nblocks)
        y = f1_all(keystream, k)
        order = np.sort((y << np.int64(k)) | np.arange(1 << k, dtype=np.int64))
        self.x_sorted = (order & ((1 << k) - 1)).astype(np.int32)
        y = order >> np.int64(k)
        meta_hi = np.zeros(1 << k, np.uint64)
        meta_lo = self.x_sorted.astype(np.uint64)
        nb = pos.num_buckets(k)
        bucket_bounds = np.arange(nb + 1, dtype=np.int64) * pos.PARAM_BC
        self.sizes = [len(y)]
        lefts: list[np.ndarray] = []
        rights: list[np.ndarray] = []
        for table in range(2, pos.NUM_TABLES + 1):
            starts = np.searchsorted(y, bucket_bounds)
            left, right, n = find_matches(y, starts, nb, LEFT_TARGETS)
            if n < 0:
                raise RuntimeError(f"PoS table {table} overflowed its match buffer for seed {seed.hex()}")
            y_new, hi_new, lo_new = compute_fn(table, k, y, meta_hi, meta_lo, left, right, n)
            # Unique keys (y, emission index): a plain sort is 3x faster than a stable argsort.
            shift = np.int64(int(n).bit_length())
            order = np.sort((y_new << shift) | np.arange(n, dtype=np.int64)) & ((np.int64(1) << shift) - 1)
            y = y_new[order]
            lefts.append(left[order])
            rights.append(right[order])
            if table < pos.NUM_TABLES:
                meta_hi = hi_new[order]
                meta_lo = lo_new[order]
            self.sizes.append(int(n))
        self.y7 = y
        # Tables 2..7 flattened: positions of table t start at offsets[t].
        self.offsets = np.zeros(pos.NUM_TABLES + 1, np.int64)
        self.offsets[2:] = np.cumsum([0] + [len(a) for a in lefts[:-1]])
        self.lefts = np.concatenate(lefts)
        self.rights = np.concatenate(rights)

    def first_candidates(self, challenge_indices: np.ndarray) -> np.ndarray:
        """Table-7 position of the first proof for each challenge index, or -1."""
        ci = np.asarray(challenge_indices, dtype=np.uint32)
        fk = ci.byteswap().astype(np.int64) >> np.int64(32 - self.k)
        lo = fk << np.int64(pos.PARAM_EXT)
        idx = np.searchsorted(self.y7, lo)
        found = idx < len(self.y7)
        found[found] &= (self.y7[idx[found]] >> pos.PARAM_EXT) == fk[found]
        return np.where(found, idx, -1)

    def proofs_at(self, table7_positions: np.ndarray) -> np.ndarray:
        """Packed 160-byte proofs, one row per table-7 position."""
        return trace_proofs(
            np.asarray(table7_positions, np.int64), self.x_sorted, self.lefts, self.rights, self.offsets, self.k
        )

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
