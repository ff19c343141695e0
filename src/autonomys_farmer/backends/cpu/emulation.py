"""The GPU pipeline's kernels emulated on the CPU cores: the same bodies and phases, numba loops for the
grid. CI has no GPU; this runs the CUDA backend's whole orchestration at full size, so what the GPU would
compute is checked against the CPU backend and the spec's vectors (tests T1/T2)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from autonomys_farmer.backends.cpu.kernels import CPU
from autonomys_farmer.backends.kernels.source import BlockKernel, GridKernel
from autonomys_farmer.backends.kernels.wrappers import (
    block_kernel_name,
    compile_wrapper,
    cpu_block_source,
    cpu_grid_source,
    wrapper_namespace,
)


class EmulatedDevice:
    """A device whose memory is numpy arrays and whose kernels run on the CPU (see module doc)."""

    name = "emulated"

    def __init__(self) -> None:
        self._launchers: dict[GridKernel | BlockKernel, Any] = {}
        self.launches: list[tuple[GridKernel | BlockKernel, tuple[Any, ...]]] = []
        self.record_launches = False

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype)

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype)

    def to_device(self, host: np.ndarray) -> np.ndarray:
        return np.array(host, copy=True)

    def upload(self, host: np.ndarray, device: np.ndarray, stream: Any = None) -> None:
        device[...] = host

    def download(self, device: np.ndarray, host: np.ndarray, stream: Any = None) -> None:
        host[...] = device

    def stream(self) -> Any:
        return None

    def synchronize(self, stream: Any) -> None:
        return None

    def grid(self, spec: GridKernel, n: int, *args: Any, stream: Any = None) -> None:
        if self.record_launches:
            self.launches.append((spec, args))
        self._launcher(spec)(n, *args)

    def blocks(self, spec: BlockKernel, nblocks: int, *args: Any, stream: Any = None) -> None:
        if self.record_launches:
            self.launches.append((spec, args))
        self._launcher(spec)(nblocks, spec.threads, *args)

    def _launcher(self, spec: GridKernel | BlockKernel) -> Any:
        if spec not in self._launchers:
            namespace = wrapper_namespace(spec, CPU, {"prange": prange})
            if isinstance(spec, GridKernel):
                name, source = f"{spec.body}_emulated", cpu_grid_source(spec)
            else:
                name = block_kernel_name(spec)
                source = cpu_block_source(spec, name)
            self._launchers[spec] = compile_wrapper(source, name, namespace, njit(parallel=not spec.atomic))
        return self._launchers[spec]
