"""Operations each target provides its own way, with their plain-Python meaning here.

`compile_kernels` rebinds these names to the target's version: numba-cuda's atomics and libdevice on the
GPU, plain read-modify-write and an LLVM 128-bit multiply on the CPU. The plain-Python meanings are what
the CUDA simulator runs; they never let a uint64 wrap (numpy would warn), which is why the compiled
targets take the `*_wrapping` versions below instead.
"""

from __future__ import annotations

import numpy as np

from autonomys_farmer.backends.kernels.source import kernel

MASK64 = (1 << 64) - 1


@kernel
def atomic_add(array, index, value):
    """array[index] += value atomically; returns the old value."""
    old = array[index]
    array[index] += value
    return old


@kernel
def mul_wide(a, b):
    """(low, high) 64-bit halves of the 128-bit product of two uint64."""
    product = int(a) * int(b)
    return np.uint64(product & MASK64), np.uint64(product >> 64)


@kernel
def trailing_zeros(x):
    """Index of the lowest set bit of a nonzero uint64."""
    x = int(x)
    return (x & -x).bit_length() - 1


@kernel
def add_carry(a, b, carry):
    """(a + b + carry) mod 2^64 and the carry out, for a carry in of 0 or 1."""
    total = int(a) + int(b) + int(carry)
    return np.uint64(total & MASK64), np.uint64(total >> 64)


@kernel
def sub_borrow(a, b, borrow):
    """(a - b - borrow) mod 2^64 and the borrow out, for a borrow in of 0 or 1."""
    total = int(a) - int(b) - int(borrow)
    return np.uint64(total & MASK64), np.uint64(1 if total < 0 else 0)


# --- compiled meanings (uint64 arithmetic wraps silently in compiled code) -------------------------------


def add_carry_wrapping(a, b, carry):
    s = np.uint64(a + b)
    c1 = s < a
    t = np.uint64(s + carry)
    c2 = t < s
    return t, np.uint64(c1 | c2)


def sub_borrow_wrapping(a, b, borrow):
    d = np.uint64(a - b)
    b1 = a < b
    e = np.uint64(d - borrow)
    b2 = d < borrow
    return e, np.uint64(b1 | b2)
