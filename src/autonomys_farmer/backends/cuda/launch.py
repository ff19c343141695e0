"""The one kernel source compiled by numba-cuda, and the GPU as a device for the encoding pipeline.

Kernels are compiled on first launch (numba-cuda caches nothing across processes here, so a plot server
warms them up before its first sector). `cuda_kernel` gives the `cuda.jit` kernel of a GridKernel or
BlockKernel spec; the same wrappers cross-compile to PTX without a GPU (tests T3).
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace
from typing import Any

import numpy as np
from numba import cuda

from autonomys_farmer.backends.cuda import intrinsics
from autonomys_farmer.backends.kernels import KERNEL_MODULES, compile_kernels
from autonomys_farmer.backends.kernels.encode import GRID_THREADS
from autonomys_farmer.backends.kernels.source import BlockKernel, GridKernel
from autonomys_farmer.backends.kernels.wrappers import (
    block_kernel_name,
    compile_wrapper,
    cuda_block_source,
    cuda_grid_source,
    wrapper_namespace,
)


@cache
def device_kernels() -> SimpleNamespace:
    """Every kernel body as a numba-cuda device function (plain device functions: numba-level inlining
    makes compile times explode; NVVM inlines them anyway). Under the CUDA simulator the bodies stay plain
    Python: its device-function wrapper swaps module globals on every call, which the Fp code's thousands
    of calls per point addition cannot afford (atomics still go through the simulator's)."""
    if intrinsics.simulating():
        return compile_kernels(KERNEL_MODULES, lambda fn: fn, intrinsics=intrinsics.target_intrinsics())
    return compile_kernels(
        KERNEL_MODULES, lambda fn: cuda.jit(device=True)(fn), intrinsics=intrinsics.target_intrinsics()
    )


def kernel_python_function(spec: GridKernel | BlockKernel) -> Any:
    """The wrapper of a spec as a plain Python function (for cuda.jit or compile_ptx)."""
    namespace = wrapper_namespace(spec, device_kernels(), {"cuda": cuda})
    if isinstance(spec, GridKernel):
        name, source = f"{spec.body}_kernel", cuda_grid_source(spec)
    else:
        name = block_kernel_name(spec)
        source = cuda_block_source(spec, name)
    return compile_wrapper(source, name, namespace, lambda fn: fn)


@cache
def cuda_kernel(spec: GridKernel | BlockKernel) -> Any:
    return cuda.jit(kernel_python_function(spec))


class CudaDevice:
    """The visible GPU as the encoding pipeline's device: device arrays, streams, kernel launches."""

    name = "cuda"

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return cuda.device_array(shape, dtype)

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return cuda.pinned_array(shape, dtype)

    def to_device(self, host: np.ndarray) -> Any:
        return cuda.to_device(np.ascontiguousarray(host))

    def upload(self, host: np.ndarray, device: Any, stream: Any = 0) -> None:
        device.copy_to_device(host, stream=stream)

    def download(self, device: Any, host: np.ndarray, stream: Any = 0) -> None:
        device.copy_to_host(host, stream=stream)

    def stream(self) -> Any:
        return cuda.stream()

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def grid(self, spec: GridKernel, n: int, *args: Any, stream: Any = 0) -> None:
        if n > 0:
            cuda_kernel(spec)[(n + GRID_THREADS - 1) // GRID_THREADS, GRID_THREADS, stream](n, *args)

    def blocks(self, spec: BlockKernel, nblocks: int, *args: Any, stream: Any = 0) -> None:
        if nblocks > 0:
            cuda_kernel(spec)[nblocks, spec.threads, stream](*args)
