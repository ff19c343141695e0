"""One kernel source, several targets.

Kernel bodies are plain Python functions marked with `@kernel`. A target (numba's CPU JIT, numba-cuda's
device compiler, the CUDA simulator) compiles each of them from the same code object: `compile_kernels`
copies every marked function with its module globals rebound to the compiled versions of the others, so a
body that calls `compress` calls that target's `compress`. Plain Python still runs them unchanged (slowly),
which is how the simulator and the reference checks use them.

Rules the bodies follow so that every target gives the same bits: every intermediate is cast explicitly
(U32/U64/I64), no shift count reaches the operand width, no allocation (scratch arrays come in as
arguments), and no Python objects beyond ints, tuples and arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FunctionType, ModuleType, SimpleNamespace
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """Mark a function as part of the one kernel source (compiled for every target)."""
    fn.__kernel__ = True  # type: ignore[attr-defined]
    return fn


def kernel_functions(modules: Iterable[ModuleType]) -> dict[str, FunctionType]:
    """Every marked function defined in `modules`, by name (names are unique across the source)."""
    found: dict[str, FunctionType] = {}
    for module in modules:
        for name, value in vars(module).items():
            if (
                isinstance(value, FunctionType)
                and getattr(value, "__kernel__", False)
                and value.__module__ == module.__name__
            ):
                if name in found:
                    raise ValueError(f"kernel {name!r} is defined twice in the kernel source")
                found[name] = value
    return found


def compile_kernels(
    modules: Iterable[ModuleType], jit: Callable[[FunctionType], Any], intrinsics: dict[str, Any] | None = None
) -> SimpleNamespace:
    """Compile every kernel of `modules` with `jit`, calls between kernels bound to the compiled ones.

    `intrinsics` are the target's own versions of kernels (e.g. `atomic_add`), used instead of compiling
    the plain-Python meaning."""
    modules = list(modules)
    functions = kernel_functions(modules)
    rebound = {module.__name__: dict(vars(module)) for module in modules}
    compiled: dict[str, Any] = dict(intrinsics or {})
    for name, fn in functions.items():
        if name in compiled:
            continue
        copy = FunctionType(fn.__code__, rebound[fn.__module__], fn.__name__, fn.__defaults__, fn.__closure__)
        copy.__qualname__ = fn.__qualname__
        copy.__module__ = fn.__module__
        copy.__doc__ = fn.__doc__
        compiled[name] = jit(copy)
    for namespace in rebound.values():
        namespace.update(compiled)
    return SimpleNamespace(**compiled)


# (name, length, numpy dtype) of an array a kernel gets per thread (scratch) or per block (shared).
ArraySpec = tuple[str, int, Any]


@dataclass(frozen=True)
class GridKernel:
    """A per-thread kernel: `body(i, *args, *scratch)` for every i < n, each thread on its own.

    `atomic` marks kernels that use `atomic_add`; emulated on the CPU they run on one core."""

    body: str
    args: tuple[str, ...]
    scratch: tuple[ArraySpec, ...] = ()
    atomic: bool = False


@dataclass(frozen=True)
class BlockKernel:
    """A block-cooperative kernel: in every block, each phase runs on all `threads` threads, with a
    barrier between phases: `phase(block, thread, nthreads, *shared, *args)`."""

    phases: tuple[str, ...]
    args: tuple[str, ...]
    shared: tuple[ArraySpec, ...]
    threads: int
    atomic: bool = False
