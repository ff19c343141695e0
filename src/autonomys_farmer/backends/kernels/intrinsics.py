"""Operations each target provides its own way, with their plain-Python meaning here.

`compile_kernels` rebinds these names to the target's version: numba-cuda's atomics on the GPU (and in the
simulator), plain read-modify-write on the CPU, where kernels that use them are emulated serially.
"""

from __future__ import annotations

from autonomys_farmer.backends.kernels.source import kernel


@kernel
def atomic_add(array, index, value):
    """array[index] += value atomically; returns the old value."""
    old = array[index]
    array[index] += value
    return old
