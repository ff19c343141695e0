"""numba-cuda's own versions of the kernel source's intrinsics (backends/kernels/intrinsics.py).

Under the CUDA simulator (plain Python) the arithmetic ones keep their plain-Python meaning."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import config, cuda

from autonomys_farmer.backends.kernels import intrinsics as plain


@cuda.jit(device=True)
def atomic_add(array, index, value):
    return cuda.atomic.add(array, index, value)  # type: ignore[call-arg]


def simulating() -> bool:
    return bool(getattr(config, "ENABLE_CUDASIM", False))


def target_intrinsics() -> dict[str, Any]:
    """The intrinsics `compile_kernels` binds for numba-cuda (or for its simulator)."""
    found: dict[str, Any] = {"atomic_add": atomic_add}
    if simulating():
        return found
    from numba.cuda import libdevice

    @cuda.jit(device=True)
    def mul_wide(a, b):
        return np.uint64(a * b), np.uint64(libdevice.umul64hi(a, b))

    found["mul_wide"] = mul_wide
    found["add_carry"] = cuda.jit(device=True)(plain.add_carry_wrapping)
    found["sub_borrow"] = cuda.jit(device=True)(plain.sub_borrow_wrapping)
    return found
