"""Source text of the launch wrappers around kernel bodies, one template per target.

A GridKernel becomes "for every i < n: body(i, ...)" and a BlockKernel "for every block: phase 1 on all
threads, barrier, phase 2, ...". The CUDA target turns these into `cuda.jit` kernels (thread index from the
grid, scratch in local memory, shared arrays, `syncthreads`); the CPU target into numba loops that emulate
the grid on the cores (blocks in parallel, threads of a block in order), which is how CI runs the GPU
pipeline at full size without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from autonomys_farmer.backends.kernels.source import BlockKernel, GridKernel

EMULATION_CHUNKS = 64  # grid emulation: threads are split into this many runs over the cores


def _dtype_names(specs: tuple[tuple[str, int, Any], ...], namespace: dict[str, Any]) -> None:
    for name, _size, dtype in specs:
        namespace[f"dtype_{name}"] = numba.from_dtype(np.dtype(dtype))


def compile_wrapper(source: str, name: str, namespace: dict[str, Any], jit: Callable[[Any], Any]) -> Any:
    exec(compile(source, f"<{name} launch wrapper>", "exec"), namespace)
    return jit(namespace[name])


def cuda_grid_source(spec: GridKernel) -> str:
    args = ", ".join(spec.args)
    call = ", ".join(["i", *spec.args, *(name for name, _, _ in spec.scratch)])
    lines = [f"def {spec.body}_kernel(n, {args}):", "    i = cuda.grid(1)", "    if i < n:"]
    lines += [f"        {name} = cuda.local.array({size}, dtype_{name})" for name, size, _ in spec.scratch]
    lines.append(f"        body({call})")
    return "\n".join(lines) + "\n"


def cuda_block_source(spec: BlockKernel, name: str) -> str:
    shared = [shared_name for shared_name, _, _ in spec.shared]
    call = ", ".join(["block", "thread", "nthreads", *shared, *spec.args])
    lines = [
        f"def {name}({', '.join(spec.args)}):",
        "    block = cuda.blockIdx.x",
        "    thread = cuda.threadIdx.x",
        "    nthreads = cuda.blockDim.x",
    ]
    lines += [f"    {n} = cuda.shared.array({size}, dtype_{n})" for n, size, _ in spec.shared]
    for index in range(len(spec.phases)):
        if index:
            lines.append("    cuda.syncthreads()")
        lines.append(f"    phase_{index}({call})")
    return "\n".join(lines) + "\n"


def cpu_grid_source(spec: GridKernel) -> str:
    args = ", ".join(spec.args)
    call = ", ".join(["i", *spec.args, *(name for name, _, _ in spec.scratch)])
    loop = "range" if spec.atomic else "prange"
    # Wrapper locals carry a leading underscore: kernel arguments never do.
    lines = [
        f"def {spec.body}_emulated(n, {args}):",
        f"    _runs = min({EMULATION_CHUNKS}, max(1, n))",
        f"    for _run in {loop}(_runs):",
    ]
    lines += [f"        {name} = np.empty({size}, dtype_{name})" for name, size, _ in spec.scratch]
    lines += ["        for i in range(_run * n // _runs, (_run + 1) * n // _runs):", f"            body({call})"]
    return "\n".join(lines) + "\n"


def cpu_block_source(spec: BlockKernel, name: str) -> str:
    shared = [shared_name for shared_name, _, _ in spec.shared]
    call = ", ".join(["block", "thread", "nthreads", *shared, *spec.args])
    loop = "range" if spec.atomic else "prange"
    lines = [f"def {name}(nblocks, nthreads, {', '.join(spec.args)}):", f"    for block in {loop}(nblocks):"]
    lines += [f"        {n} = np.empty({size}, dtype_{n})" for n, size, _ in spec.shared]
    for index in range(len(spec.phases)):
        lines += ["        for thread in range(nthreads):", f"            phase_{index}({call})"]
    return "\n".join(lines) + "\n"


def wrapper_namespace(spec: GridKernel | BlockKernel, bodies: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Globals for a wrapper: its body or phases (compiled for the target), dtypes, and `extra`."""
    namespace: dict[str, Any] = {"np": np, **extra}
    if isinstance(spec, GridKernel):
        namespace["body"] = getattr(bodies, spec.body)
        _dtype_names(spec.scratch, namespace)
    else:
        for index, phase in enumerate(spec.phases):
            namespace[f"phase_{index}"] = getattr(bodies, phase)
        _dtype_names(spec.shared, namespace)
    return namespace


def block_kernel_name(spec: BlockKernel) -> str:
    return spec.phases[0].rsplit("_", 1)[0] + "_block_kernel"
