"""Cross-compiling the GPU kernels to PTX without a GPU, and what ptxas says of them (test tier T3).

numba-cuda compiles a kernel's device functions for "the current device", which needs a driver; here the
compute capability is given instead (sm_90: H100/H200). ptxas (from nvidia-cuda-nvcc, the same CUDA
release as NVVM) then reports registers, spills and stack per kernel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numba
from numba import cuda

from autonomys_farmer.backends.cuda.launch import kernel_python_function
from autonomys_farmer.backends.kernels.source import BlockKernel, GridKernel

HOPPER = (9, 0)


@dataclass(frozen=True)
class KernelReport:
    name: str
    compile_s: float
    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    shared_bytes: int

    def line(self) -> str:
        return (
            f"{self.name:<16} {self.registers:>3} registers {self.spill_stores:>4} B spilled"
            f" {self.stack_bytes:>4} B stack {self.shared_bytes:>6} B shared {self.compile_s:6.2f} s to compile"
        )


def kernel_name(spec: GridKernel | BlockKernel) -> str:
    if isinstance(spec, GridKernel):
        return spec.body.removesuffix("_thread")
    return spec.phases[0].rsplit("_", 1)[0]


def signature(spec: GridKernel | BlockKernel, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """numba types of a launch's arguments (a grid kernel's first argument is the thread count)."""
    types = tuple(numba.typeof(a) for a in args)
    return (numba.int64, *types) if isinstance(spec, GridKernel) else types


def compile_ptx(spec: GridKernel | BlockKernel, argtypes: tuple[Any, ...], cc: tuple[int, int] = HOPPER) -> str:
    """PTX of a kernel for compute capability cc, without a GPU."""
    from numba.cuda import dispatcher

    fake_device = SimpleNamespace(compute_capability=cc)
    with mock.patch.object(dispatcher, "get_current_device", lambda: fake_device):
        ptx, _ = cuda.compile_ptx(kernel_python_function(spec), argtypes, cc=cc)
    return str(ptx)


def ptxas_binary() -> str | None:
    """ptxas of the pip-installed CUDA (matching NVVM's PTX version), else one on PATH."""
    bundled = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in bundled.glob("site-packages/nvidia/cu*/bin/ptxas"):
        return str(candidate)
    return shutil.which("ptxas")


def ptxas_report(ptx: str, name: str, compile_s: float, arch: str = "sm_90") -> KernelReport:
    ptxas = ptxas_binary()
    if ptxas is None:
        raise FileNotFoundError("ptxas not found (pip install nvidia-cuda-nvcc)")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "kernel.ptx"
        source.write_text(ptx)
        done = subprocess.run(
            [ptxas, f"-arch={arch}", "-v", str(source), "-o", str(Path(tmp) / "kernel.cubin")],
            capture_output=True,
            text=True,
            check=True,
        )
    text = done.stdout + done.stderr

    def number(pattern: str) -> int:
        found = re.search(pattern, text)
        return int(found.group(1)) if found else 0

    return KernelReport(
        name,
        compile_s,
        registers=number(r"Used (\d+) registers"),
        spill_stores=number(r"(\d+) bytes spill stores"),
        spill_loads=number(r"(\d+) bytes spill loads"),
        stack_bytes=number(r"(\d+) bytes stack frame"),
        shared_bytes=number(r"(\d+) bytes smem"),
    )


def report(spec: GridKernel | BlockKernel, args: tuple[Any, ...]) -> KernelReport:
    """Cross-compile one kernel for the arguments of a real launch and run ptxas on it."""
    return reports([(spec, args)])[0]


def reports(launches: Sequence[tuple[GridKernel | BlockKernel, tuple[Any, ...]]]) -> list[KernelReport]:
    """report() of several kernels: PTX one at a time (numba holds the GIL), ptxas runs on every core
    (for the curve kernels it takes longer than NVVM)."""
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        pending = []
        for spec, args in launches:
            started = time.perf_counter()
            ptx = compile_ptx(spec, signature(spec, args))
            pending.append(pool.submit(ptxas_report, ptx, kernel_name(spec), time.perf_counter() - started))
        return [done.result() for done in pending]
