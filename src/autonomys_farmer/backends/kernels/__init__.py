"""The one kernel source of every compute backend (see `source` for how it is compiled per target).

`ints` fixed-width helpers, `chacha` (ChaCha8 blocks, f1), `blake3` (compression, one-chunk hashing),
`pos` (fn, the matching probe, proof lookup, traceback and packing), `fr` (Montgomery arithmetic, the
NTT butterfly, scalar byte conversions), `fp` and `g1` (the curve's base field and XYZZ point arithmetic),
`msm` (Pippenger multi-scalar multiplication), `encode` (the GPU record-encoding pipeline's thread bodies and
block phases), `intrinsics` (what each target provides itself, e.g. atomics).
"""

from __future__ import annotations

from autonomys_farmer.backends.kernels import blake3, chacha, encode, fp, fr, g1, intrinsics, ints, msm, pos
from autonomys_farmer.backends.kernels.source import (
    BlockKernel,
    GridKernel,
    compile_kernels,
    kernel,
    kernel_functions,
)

KERNEL_MODULES = (ints, intrinsics, chacha, blake3, pos, fr, fp, g1, msm, encode)

__all__ = ["KERNEL_MODULES", "BlockKernel", "GridKernel", "compile_kernels", "kernel", "kernel_functions"]
