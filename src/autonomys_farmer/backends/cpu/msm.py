"""Multi-scalar multiplication on the CPU cores: the kernel source's MSM thread bodies in the same phase
order as on the GPU (backends/kernels/msm.py), threads spread over the cores; the counting sort runs on
one core (a few milliseconds), where the GPU uses atomics."""

from __future__ import annotations

import numpy as np
from numba import prange

from autonomys_farmer.backends.cpu.kernels import CPU, launcher
from autonomys_farmer.backends.kernels.msm import msm_plan
from autonomys_farmer.protocol.g1 import FP_LIMBS

msm_digits_thread = CPU.msm_digits_thread
msm_count_thread = CPU.msm_count_thread
msm_scatter_thread = CPU.msm_scatter_thread
msm_bucket_thread = CPU.msm_bucket_thread
msm_segment_thread = CPU.msm_segment_thread
msm_window_thread = CPU.msm_window_thread
msm_horner_thread = CPU.msm_horner_thread


@launcher
def msm_launch(bases, scalars, window_bits, windows, segment, log_segment, out):
    sets, n = scalars.shape[0], scalars.shape[1]
    buckets = 1 << (window_bits - 1)
    keys = sets * windows * buckets
    entries = sets * windows * n
    digits = np.empty((sets, windows, n), np.int32)
    for i in prange(sets * n):
        msm_digits_thread(i, scalars, window_bits, windows, digits)
    counts = np.zeros(keys, np.int32)
    for i in range(entries):
        msm_count_thread(i, digits, buckets, counts)
    starts = np.empty(keys, np.int32)
    running = 0
    for key in range(keys):
        starts[key] = running
        running += counts[key]
    fill = np.zeros(keys, np.int32)
    order = np.empty(max(running, 1), np.uint32)
    for i in range(entries):
        msm_scatter_thread(i, digits, buckets, starts, fill, order)
    bucket_sums = np.empty((keys, 4, 6), np.uint64)
    for key in prange(keys):
        msm_bucket_thread(key, bases, order, starts, counts, bucket_sums)
    segments = buckets // segment
    segment_sums = np.empty((2 * keys // segment, 4, 6), np.uint64)
    for i in prange(keys // segment):
        msm_segment_thread(i, bucket_sums, segment, segment_sums)
    window_sums = np.empty((sets * windows, 4, 6), np.uint64)
    for kw in prange(sets * windows):
        msm_window_thread(kw, segment_sums, segments, log_segment, window_sums)
    for k in prange(sets):
        msm_horner_thread(k, window_sums, windows, window_bits, out)


def g1_msm(bases: np.ndarray, scalars: np.ndarray, parallel: bool = True) -> np.ndarray:
    """See Compute.g1_msm."""
    sets, n = scalars.shape[0], scalars.shape[1]
    if bases.shape != (n, 2, FP_LIMBS) or scalars.shape != (sets, n, 8):
        raise ValueError(f"MSM of bases {bases.shape} and scalars {scalars.shape}")
    out = np.zeros((sets, 4, FP_LIMBS // 2), np.uint64)  # Fp words: the same bytes as 12 uint32 limbs
    if n == 0:
        return out.view(np.uint32)
    plan = msm_plan(n, sets)
    msm_launch(
        parallel,
        np.ascontiguousarray(bases, np.uint32).view(np.uint64),
        np.ascontiguousarray(scalars, np.uint32),
        plan.window_bits,
        plan.windows,
        plan.segment,
        plan.log_segment,
        out,
    )
    return out.view(np.uint32)
