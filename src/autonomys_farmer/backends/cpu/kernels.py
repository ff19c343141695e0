"""The one kernel source compiled for the CPU with numba, and how CPU launchers are compiled.

Each launcher (a loop over "threads" calling a kernel body) is compiled twice from the same function:
`parallel` spreads its prange over every core (one big job, e.g. proving one record), `serial` runs on
one core without the GIL, so that several records encode at once, one per core, with no nested
threading (numba's workqueue layer may not be entered from two threads at once).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FunctionType
from typing import Any

import numba
from numba import njit

import autonomys_farmer


def kernel_cache_dir() -> Path:
    """numba's on-disk cache for exactly this kernel source. numba keys a cached function by its own file
    only, so a launcher would keep a stale copy of a kernel body changed in another file; naming the
    directory by a hash of every file compiled code depends on (the backends and the protocol constants
    they import) rules that out: an upgrade compiles afresh, once."""
    package = Path(autonomys_farmer.__file__).resolve().parent
    sources = sorted((package / "backends").rglob("*.py"))
    sources += [package / "protocol" / name for name in ("constants.py", "field.py", "pos.py")]
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    base = os.environ.get("NUMBA_CACHE_DIR") or Path.home() / ".cache" / "autonomys-farmer" / "numba"
    return Path(base) / digest.hexdigest()[:16]


def cpu_features() -> str | None:
    """The CPU features numba compiles for: the host's, and where it has AVX-512, the full 512-bit
    vectors. LLVM otherwise keeps to 256 bits on Intel CPUs (older ones lower their clock for wide
    vectors); the hash kernels are integer lanes bound by ALU throughput, and an audit's keyed BLAKE3
    runs 1.3x faster with twice the lanes. NUMBA_CPU_FEATURES, when set, wins."""
    if numba.config.CPU_FEATURES is not None:  # type: ignore[attr-defined]
        return str(numba.config.CPU_FEATURES)  # type: ignore[attr-defined]
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features().flatten()
    return f"{features},-prefer-256-bit" if "+avx512f" in features.split(",") else None


# Both before any cached function below is compiled (numba keys its cache by the CPU features too).
numba.config.CACHE_DIR = str(kernel_cache_dir())  # type: ignore[attr-defined]
numba.config.CPU_FEATURES = cpu_features()  # type: ignore[attr-defined]

from autonomys_farmer.backends.cpu.intrinsics import target_intrinsics  # noqa: E402
from autonomys_farmer.backends.kernels import KERNEL_MODULES, compile_kernels  # noqa: E402

# Hot helpers inlined at numba level (fn: 112 -> 96 ns): a tuple-carrying call boundary defeats scalar
# replacement. Only for the CPU: on the GPU numba-level inlining makes compile times explode.
CPU_INLINE = frozenset(
    {"rotr32", "rotl32", "bswap32", "mask64", "g", "blake3_round", "compress", "quarter_round", "double_round",
     "chacha8_words", "shifted", "field_in_word", "bits_ending_at", "message_word", "be_words", "from_be_words",
     "metadata_multiplier", "audit_chunk_head", "audit_distance", "fn_message", "fn_hash", "fn_output",
     "fn_input_bytes",
     "mark_right_row", "unmark_right_row", "left_entry_hits", "emit_left_hits", "emit_match_run"}
)  # fmt: skip


def _cpu_jit(fn: FunctionType) -> Any:
    return njit(cache=True, inline="always" if fn.__name__ in CPU_INLINE else "never")(fn)


CPU = compile_kernels(KERNEL_MODULES, _cpu_jit, target_intrinsics())

# numba's default (workqueue) threading layer must not run two parallel launches at once.
PARALLEL_LOCK = threading.RLock()


def usable_cores() -> int:
    """Cores this process may run on (numactl -C and cgroup affinity respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@functools.cache
def core_pool() -> ThreadPoolExecutor:
    """One thread per usable core, for GIL-free single-core kernels split into tasks by hand."""
    return ThreadPoolExecutor(usable_cores(), thread_name_prefix="kernel")


def split_launch(parallel: bool, kernel: Callable[..., Any], n: int, task: int, *args: Any) -> None:
    """`kernel(*args, start, end)` over [0, n) in ranges of `task`, on every core when `parallel`.

    For launchers whose loop body numba's parfor pass cannot take (a whole BLAKE3 inlined into a
    lane-major loop): each range runs as one GIL-free call on a pool thread."""
    if not parallel or n <= task:
        kernel(*args, 0, n)
        return
    for done in [core_pool().submit(kernel, *args, start, min(n, start + task)) for start in range(0, n, task)]:
        done.result()


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


def launcher(fn: Callable[..., Any]) -> Launcher:
    """Compile a launcher for all cores and for one core (distinct names keep numba's caches apart)."""
    assert isinstance(fn, FunctionType)
    serial_copy = FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    serial_copy.__qualname__ = fn.__qualname__ + "_serial"
    serial_copy.__module__ = fn.__module__
    return Launcher(njit(parallel=True, cache=True)(fn), njit(nogil=True, cache=True)(serial_copy))
