"""The one kernel source compiled for the CPU with numba, and how CPU launchers are compiled.

Each launcher (a loop over "threads" calling a kernel body) is compiled twice from the same function:
`parallel` spreads its prange over every core (one big job, e.g. proving one record), `serial` runs on
one core without the GIL, so that several records encode at once, one per core, with no nested
threading (numba's workqueue layer may not be entered from two threads at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FunctionType
from typing import Any

from numba import njit

from autonomys_farmer.backends.kernels import KERNEL_MODULES, compile_kernels

# Small hot helpers inlined at numba level: a tuple-carrying call boundary defeats scalar replacement.
CPU_INLINE = frozenset({"rotr32", "rotl32", "g", "blake3_round", "quarter_round", "or_word", "word_at", "mask64"})


def _cpu_jit(fn: FunctionType) -> Any:
    return njit(cache=True, inline="always" if fn.__name__ in CPU_INLINE else "never")(fn)


CPU = compile_kernels(KERNEL_MODULES, _cpu_jit)

# numba's default (workqueue) threading layer must not run two parallel launches at once.
PARALLEL_LOCK = threading.RLock()


@dataclass(frozen=True)
class Launcher:
    """One launcher function compiled both ways; call `.parallel(...)` or `.serial(...)`."""

    parallel: Callable[..., Any]
    serial: Callable[..., Any]

    def __call__(self, parallel: bool, *args: Any) -> Any:
        if parallel:
            with PARALLEL_LOCK:
                return self.parallel(*args)
        return self.serial(*args)


def launcher(fn: FunctionType) -> Launcher:
    """Compile a launcher for all cores and for one core (distinct names keep numba's caches apart)."""
    serial_copy = FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    serial_copy.__qualname__ = fn.__qualname__ + "_serial"
    serial_copy.__module__ = fn.__module__
    return Launcher(njit(parallel=True, cache=True)(fn), njit(nogil=True, cache=True)(serial_copy))
