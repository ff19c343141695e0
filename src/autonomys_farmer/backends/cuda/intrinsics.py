"""numba-cuda's own versions of the kernel source's intrinsics (backends/kernels/intrinsics.py)."""

from __future__ import annotations

from numba import cuda


@cuda.jit(device=True)
def atomic_add(array, index, value):
    return cuda.atomic.add(array, index, value)  # type: ignore[call-arg]
