"""Orchestration of the MSM kernels (backends/kernels/msm.py) on a device.

The same code drives the GPU (`CudaDevice`) and its CPU emulation (`backends.cpu.emulation`), so CI runs
exactly this sequence of launches (test tier T1). Buffers are kept per launch shape and reused: a proof
server asks for the same 2^15-point shape every time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from autonomys_farmer.backends.cuda.pipeline import Device
from autonomys_farmer.backends.kernels import encode as kx
from autonomys_farmer.backends.kernels import msm as mx
from autonomys_farmer.protocol.g1 import FP_LIMBS

WORDS = FP_LIMBS // 2  # kernels see Fp elements as 6 uint64 words (the same bytes as 12 uint32 limbs)


@dataclass
class MsmBuffers:
    """Device memory for one plan."""

    plan: mx.MsmPlan
    bases: Any
    scalars: Any
    digits: Any
    counts: Any
    starts: Any
    fill: Any
    totals: Any
    order: Any
    bucket_sums: Any
    segment_sums: Any
    window_sums: Any
    out: Any

    @classmethod
    def allocate(cls, device: Device, plan: mx.MsmPlan) -> MsmBuffers:
        n, sets, keys = plan.points, plan.sets, plan.keys
        return cls(
            plan=plan,
            bases=device.empty((n, 2, WORDS), np.uint64),
            scalars=device.empty((sets, n, 8), np.uint32),
            digits=device.empty((sets, plan.windows, n), np.int32),
            counts=device.empty((keys,), np.int32),
            starts=device.empty((keys,), np.int32),
            fill=device.empty((keys,), np.int32),
            totals=device.empty((1,), np.int32),
            order=device.empty((plan.entries,), np.uint32),
            bucket_sums=device.empty((keys, 4, WORDS), np.uint64),
            segment_sums=device.empty((2 * keys // plan.segment, 4, WORDS), np.uint64),
            window_sums=device.empty((sets * plan.windows, 4, WORDS), np.uint64),
            out=device.empty((sets, 4, WORDS), np.uint64),
        )


class DeviceMsm:
    """Σ_j s_kj·P_j for K scalar sets on a device (see Compute.g1_msm for the array forms)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.stream = device.stream()
        self._buffers: dict[mx.MsmPlan, MsmBuffers] = {}
        self._lock = threading.Lock()

    def __call__(self, bases: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        sets, n = scalars.shape[0], scalars.shape[1]
        if bases.shape != (n, 2, FP_LIMBS) or scalars.shape != (sets, n, 8):
            raise ValueError(f"MSM of bases {bases.shape} and scalars {scalars.shape}")
        result = np.zeros((sets, 4, WORDS), np.uint64)
        if n == 0:
            return result.view(np.uint32)
        plan = mx.msm_plan(n, sets)
        with self._lock:
            if plan not in self._buffers:
                self._buffers[plan] = MsmBuffers.allocate(self.device, plan)
            b = self._buffers[plan]
            d, s = self.device, self.stream
            d.upload(np.ascontiguousarray(bases, np.uint32).view(np.uint64), b.bases, stream=s)
            d.upload(np.ascontiguousarray(scalars, np.uint32), b.scalars, stream=s)
            self._launch(b)
            d.download(b.out, result, stream=s)
            d.synchronize(s)
        return result.view(np.uint32)

    def _launch(self, b: MsmBuffers) -> None:
        d, s, plan = self.device, self.stream, b.plan
        keys = plan.keys
        d.grid(mx.MSM_DIGITS, plan.sets * plan.points, b.scalars, plan.window_bits, plan.windows, b.digits, stream=s)
        d.grid(kx.CLEAR, keys, b.counts, stream=s)
        d.grid(kx.CLEAR, keys, b.fill, stream=s)
        d.grid(mx.MSM_COUNT, plan.entries, b.digits, plan.buckets, b.counts, stream=s)
        d.blocks(kx.SCAN, 1, b.counts.reshape(1, keys), b.starts.reshape(1, keys), b.totals, stream=s)
        d.grid(mx.MSM_SCATTER, plan.entries, b.digits, plan.buckets, b.starts, b.fill, b.order, stream=s)
        d.grid(mx.MSM_BUCKET, keys, b.bases, b.order, b.starts, b.counts, b.bucket_sums, stream=s)
        d.grid(mx.MSM_SEGMENT, keys // plan.segment, b.bucket_sums, plan.segment, b.segment_sums, stream=s)
        d.grid(
            mx.MSM_WINDOW,
            plan.sets * plan.windows,
            b.segment_sums,
            plan.segments,
            plan.log_segment,
            b.window_sums,
            stream=s,
        )
        d.grid(mx.MSM_HORNER, plan.sets, b.window_sums, plan.windows, plan.window_bits, b.out, stream=s)
