"""Multi-scalar multiplication over BLS12-381 G1 (Pippenger), as thread bodies every target runs.

Σ_j s_kj·P_j for K scalar sets over the same n affine bases, all sets at once:

1. digits: each scalar becomes signed base-2^c digits d in (-2^(c-1), 2^(c-1)], W windows;
2. count, scan, scatter: (point, sign) entries grouped by bucket key (set, window, |d| - 1), a counting
   sort (atomics on the GPU, one core on the CPU);
3. buckets: one thread per bucket key adds its points (affine + XYZZ, the y negated for d < 0);
4. segments: each window's 2^(c-1) buckets in segments of L, one thread per segment computing
   T = Σ (b+1)·bucket_b and R = Σ bucket_b over its buckets by running sums;
5. windows: one thread per window: Σ_s T_s + L·Σ_s s·R_s (running sums again, then log2 L doublings);
6. Horner: one thread per set: Σ_w 2^(c·w)·window_w.

The sum is exact group arithmetic, so the order the GPU's atomics give entries within a bucket changes
nothing but the XYZZ representative of the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autonomys_farmer.backends.kernels.fp import fp_is_zero, fp_load, fp_neg
from autonomys_farmer.backends.kernels.g1 import (
    XYZZ_IDENTITY,
    xyzz_add,
    xyzz_add_affine,
    xyzz_load,
    xyzz_store,
)
from autonomys_farmer.backends.kernels.intrinsics import atomic_add
from autonomys_farmer.backends.kernels.ints import I32, U32
from autonomys_farmer.backends.kernels.source import GridKernel, kernel

SCALAR_BITS = 256  # scalars are canonical Fr limbs (< r < 2^255), 8 x 32 bits
MAX_WINDOW_BITS = 16
SEGMENT_BUCKETS = 32  # buckets per segment thread (fewer when a window has fewer)
NEGATIVE = np.uint32(0x80000000)  # sign bit of a sorted entry; the low 31 bits are the point index
INDEX_MASK = np.uint32(0x7FFFFFFF)
MADD_COST = 10  # field multiplications: affine + XYZZ
ADD_COST = 14  # XYZZ + XYZZ


@dataclass(frozen=True)
class MsmPlan:
    """Sizes of one MSM launch: K sets of n scalars, windows of c bits."""

    points: int
    sets: int
    window_bits: int

    @property
    def windows(self) -> int:
        """W with W·c > 256: the top window of a scalar < 2^255 then stays below 2^(c-2), so the signed
        digits' last carry is absorbed."""
        return SCALAR_BITS // self.window_bits + 1

    @property
    def buckets(self) -> int:
        return 1 << (self.window_bits - 1)

    @property
    def keys(self) -> int:
        return self.sets * self.windows * self.buckets

    @property
    def segment(self) -> int:
        return min(SEGMENT_BUCKETS, self.buckets)

    @property
    def log_segment(self) -> int:
        return self.segment.bit_length() - 1

    @property
    def segments(self) -> int:
        """Segments per window."""
        return self.buckets // self.segment

    @property
    def entries(self) -> int:
        """Upper bound on nonzero digits: one per point, window and set."""
        return self.sets * self.windows * self.points


def msm_plan(points: int, sets: int = 1) -> MsmPlan:
    """The window width with the fewest field multiplications: W·(n·madd + 2^(c-1)·2·add)."""
    if points >= 1 << 31:
        raise ValueError(f"an MSM of {points} points does not fit 31-bit entry indices")

    def cost(c: int) -> int:
        plan = MsmPlan(points, sets, c)
        return plan.windows * (points * MADD_COST + plan.buckets * 2 * ADD_COST)

    best = min(range(2, MAX_WINDOW_BITS + 1), key=cost)
    return MsmPlan(points, sets, best)


@kernel
def window_value(scalars, k, j, bit, width):
    """Bits [bit, bit + width) of scalar (k, j) of a (K, n, 8) uint32 array (zero past bit 255)."""
    limb = bit // 32
    if limb >= 8:
        return U32(0)
    shift = bit % 32
    v = U32(scalars[k, j, limb] >> U32(shift))
    if shift + width > 32 and limb + 1 < 8:
        v = U32(v | U32(scalars[k, j, limb + 1] << U32(32 - shift)))
    return U32(v & U32(U32(U32(1) << U32(width)) - U32(1)))


@kernel
def msm_digits_thread(i, scalars, window_bits, windows, digits):
    """Signed digits of scalar i (flat over sets and points) into digits[k, w, j]."""
    n = scalars.shape[1]
    k = i // n
    j = i % n
    half = I32(1 << (window_bits - 1))
    full = I32(1 << window_bits)
    carry = I32(0)
    for w in range(windows):
        d = I32(I32(window_value(scalars, k, j, w * window_bits, window_bits)) + carry)
        if d > half:
            d = I32(d - full)
            carry = I32(1)
        else:
            carry = I32(0)
        digits[k, w, j] = d


@kernel
def digit_key(digits, i, buckets):
    """(bucket key, digit) of entry i (flat over set, window, point); key -1 for a zero digit."""
    n = digits.shape[2]
    windows = digits.shape[1]
    kw = i // n
    d = digits[kw // windows, kw % windows, i % n]
    if d == 0:
        return -1, d
    return kw * buckets + abs(d) - 1, d


@kernel
def msm_count_thread(i, digits, buckets, counts):
    key, _d = digit_key(digits, i, buckets)
    if key >= 0:
        atomic_add(counts, key, I32(1))


@kernel
def msm_scatter_thread(i, digits, buckets, starts, fill, order):
    key, d = digit_key(digits, i, buckets)
    if key >= 0:
        slot = starts[key] + atomic_add(fill, key, I32(1))
        entry = U32(i % digits.shape[2])
        if d < 0:
            entry = U32(entry | NEGATIVE)
        order[slot] = entry


@kernel
def msm_bucket_thread(key, bases, order, starts, counts, bucket_sums):
    """Sum of bucket `key`'s points (bases: (n, 2, 12) affine Montgomery, y = 0 the identity)."""
    acc = XYZZ_IDENTITY
    start = starts[key]
    for e in range(start, start + counts[key]):
        entry = order[e]
        j = entry & INDEX_MASK
        y = fp_load(bases, j, 1)
        if fp_is_zero(y):
            continue
        if entry & NEGATIVE:
            y = fp_neg(y)
        acc = xyzz_add_affine(acc, fp_load(bases, j, 0), y)
    xyzz_store(bucket_sums, key, acc)


# The reductions below make every addition at one call site (a doubling is p + p): each call of
# xyzz_add is a few hundred kB of inlined GPU code, and ptxas time and instruction-cache pressure grow
# with every copy.


@kernel
def msm_segment_thread(i, bucket_sums, segment, segment_sums):
    """Segment i's T = Σ (b+1)·bucket_b and R = Σ bucket_b into segment_sums[2i], [2i + 1]."""
    running = XYZZ_IDENTITY
    total = XYZZ_IDENTITY
    for step in range(2 * segment):
        if step % 2 == 0:
            lhs = running
            rhs = xyzz_load(bucket_sums, i * segment + segment - 1 - step // 2)
        else:
            lhs = total
            rhs = running
        result = xyzz_add(lhs, rhs)
        if step % 2 == 0:
            running = result
        else:
            total = result
    xyzz_store(segment_sums, 2 * i, total)
    xyzz_store(segment_sums, 2 * i + 1, running)


@kernel
def msm_window_thread(kw, segment_sums, segments, log_segment, window_sums):
    """Window kw's Σ_v v·bucket_v = Σ_s T_s + L·Σ_s s·R_s: running sums over s = S-1..1 give Σ s·R_s,
    log2 L doublings scale it, then the T_s are added."""
    base = kw * segments
    running = XYZZ_IDENTITY
    weighted = XYZZ_IDENTITY
    weighing = 2 * (segments - 1)
    for step in range(weighing + log_segment + segments):
        to_running = step < weighing and step % 2 == 0
        lhs = weighted
        if to_running:
            lhs = running
            rhs = xyzz_load(segment_sums, 2 * (base + segments - 1 - step // 2) + 1)
        elif step < weighing:
            rhs = running
        elif step < weighing + log_segment:
            rhs = weighted
        else:
            rhs = xyzz_load(segment_sums, 2 * (base + step - weighing - log_segment))
        result = xyzz_add(lhs, rhs)
        if to_running:
            running = result
        else:
            weighted = result
    xyzz_store(window_sums, kw, weighted)


@kernel
def msm_horner_thread(k, window_sums, windows, window_bits, out):
    """Set k's result Σ_w 2^(c·w)·window_w: from the top window, c doublings then the next window."""
    acc = XYZZ_IDENTITY
    for step in range(windows * (window_bits + 1)):
        w = windows - 1 - step // (window_bits + 1)
        if step % (window_bits + 1) < window_bits:
            operand = acc
        else:
            operand = xyzz_load(window_sums, k * windows + w)
        acc = xyzz_add(acc, operand)
    xyzz_store(out, k, acc)


# --- the kernels as launched -----------------------------------------------------------------------------

MSM_DIGITS = GridKernel("msm_digits_thread", ("scalars", "window_bits", "windows", "digits"))
MSM_COUNT = GridKernel("msm_count_thread", ("digits", "buckets", "counts"), atomic=True)
MSM_SCATTER = GridKernel("msm_scatter_thread", ("digits", "buckets", "starts", "fill", "order"), atomic=True)
MSM_BUCKET = GridKernel("msm_bucket_thread", ("bases", "order", "starts", "counts", "bucket_sums"))
MSM_SEGMENT = GridKernel("msm_segment_thread", ("bucket_sums", "segment", "segment_sums"))
MSM_WINDOW = GridKernel("msm_window_thread", ("segment_sums", "segments", "log_segment", "window_sums"))
MSM_HORNER = GridKernel("msm_horner_thread", ("window_sums", "windows", "window_bits", "out"))
MSM_KERNELS = (MSM_DIGITS, MSM_COUNT, MSM_SCATTER, MSM_BUCKET, MSM_SEGMENT, MSM_WINDOW, MSM_HORNER)
