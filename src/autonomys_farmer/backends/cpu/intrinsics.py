"""The CPU's own versions of the kernel source's arithmetic intrinsics (backends/kernels/intrinsics.py):
a 128-bit multiply in LLVM IR (one `mul`/`mulx` on x86-64) and wrapping carry chains."""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import njit, types
from numba.cpython.unsafe.numbers import trailing_zeros as _trailing_zeros
from numba.extending import intrinsic

from autonomys_farmer.backends.kernels import intrinsics as plain


@intrinsic
def _mul_wide(typingctx: Any, a: Any, b: Any) -> Any:
    signature = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        low = builder.trunc(product, ir.IntType(64))
        high = builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))
        return context.make_tuple(builder, sig.return_type, (low, high))

    return signature, codegen


@njit(inline="always", cache=True)
def mul_wide(a, b):
    return _mul_wide(a, b)  # type: ignore[call-arg]


@njit(inline="always", cache=True)
def trailing_zeros(x):
    return _trailing_zeros(x)  # type: ignore[call-arg]


def target_intrinsics() -> dict[str, Any]:
    """The intrinsics `compile_kernels` binds for the CPU."""
    return {
        "mul_wide": mul_wide,
        "trailing_zeros": trailing_zeros,
        "add_carry": njit(inline="always", cache=True)(plain.add_carry_wrapping),
        "sub_borrow": njit(inline="always", cache=True)(plain.sub_borrow_wrapping),
    }
