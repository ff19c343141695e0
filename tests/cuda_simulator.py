"""Block-cooperative GPU kernels in numba's CUDA simulator at small K, and the MSM kernels (test tier T2).

Runs as its own process (the simulator must be chosen before numba-cuda is imported):
`NUMBA_ENABLE_CUDASIM=1 python tests/cuda_simulator.py`. The rank sort, matching and scan kernels run in the
simulator (each thread a Python thread, with shared memory, barriers and atomics), the per-thread kernels
on the CPU emulation, and the resulting tables must equal the CPU backend's. Prints "ok" on success.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

K = 12
SIMULATED_THREADS = 32  # the phases work with any block size; the simulator runs a thread per Python thread


def main() -> int:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        print("run with NUMBA_ENABLE_CUDASIM=1", file=sys.stderr)
        return 2
    from numba import cuda

    from autonomys_farmer.backends.cpu.emulation import EmulatedDevice
    from autonomys_farmer.backends.cpu.pos_table import PosTable
    from autonomys_farmer.backends.cuda.launch import kernel_python_function
    from autonomys_farmer.backends.cuda.pipeline import Constants, TableBuffers
    from autonomys_farmer.backends.kernels import encode as kx
    from autonomys_farmer.backends.kernels.encode import table_capacity

    class SimulatedBlocks(EmulatedDevice):
        """Block kernels in the CUDA simulator, per-thread kernels emulated on the CPU."""

        def __init__(self) -> None:
            super().__init__()
            self.simulated: dict[Any, Any] = {}

        def blocks(self, spec: Any, nblocks: int, *args: Any, stream: Any = None) -> None:
            if spec not in self.simulated:
                self.simulated[spec] = cuda.jit(kernel_python_function(spec))
            self.simulated[spec][nblocks, SIMULATED_THREADS](*args)

    device = SimulatedBlocks()
    seeds = [bytes(range(32))]
    buffers = TableBuffers(device, len(seeds), K)
    buffers.build(len(seeds), seeds, Constants.upload(device, table_capacity(K)))
    for seed, table in zip(seeds, buffers.host_tables(len(seeds), seeds), strict=True):
        assert table is not None, "a table overflowed in the simulator"
        expected = PosTable(seed, k=K)
        assert table.sizes == expected.sizes, (table.sizes, expected.sizes)
        assert (table.x_sorted == expected.x_sorted).all()
        assert (table.y7 == expected.y7).all()
        for t in range(2, 8):
            ours, theirs = (
                slice(table.offsets[t], table.offsets[t] + expected.sizes[t - 1]),
                slice(expected.offsets[t], expected.offsets[t] + expected.sizes[t - 1]),
            )
            assert (table.lefts[ours] == expected.lefts[theirs]).all()
            assert (table.rights[ours] == expected.rights[theirs]).all()
    values = np.random.default_rng(3).integers(0, 5, (3, 5000)).astype(np.uint32)
    out = np.empty(values.shape, np.int32)
    totals = np.empty(3, np.int32)
    device.blocks(kx.SCAN, 3, values, out, totals)
    assert (out == np.cumsum(values, axis=1) - values).all() and (totals == values.sum(axis=1)).all()
    check_msm(cuda, kernel_python_function, EmulatedDevice)
    print("ok")
    return 0


MSM_POINTS = 8


def check_msm(cuda: Any, kernel_python_function: Any, emulated_device: Any) -> None:
    """Every MSM kernel in the simulator (atomics from concurrent threads, the Fp code's plain-Python
    meaning), equal to the CPU backend."""
    import random

    from py_arkworks_bls12381 import G1Point, Scalar

    from autonomys_farmer.backends.cpu.msm import g1_msm
    from autonomys_farmer.backends.cuda.msm import DeviceMsm
    from autonomys_farmer.protocol import g1
    from autonomys_farmer.protocol.field import BLS_MODULUS
    from autonomys_farmer.protocol.kzg import affine_rows

    class Simulated(emulated_device):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.compiled: dict[Any, Any] = {}

        def _kernel(self, spec: Any) -> Any:
            if spec not in self.compiled:
                self.compiled[spec] = cuda.jit(kernel_python_function(spec))
            return self.compiled[spec]

        def grid(self, spec: Any, n: int, *args: Any, stream: Any = None) -> None:
            self._kernel(spec)[(n + SIMULATED_THREADS - 1) // SIMULATED_THREADS, SIMULATED_THREADS](n, *args)

        def blocks(self, spec: Any, nblocks: int, *args: Any, stream: Any = None) -> None:
            self._kernel(spec)[nblocks, SIMULATED_THREADS](*args)

    rng = random.Random(7)
    generator = G1Point()
    points = [generator * Scalar(rng.randrange(1, BLS_MODULUS)) for _ in range(MSM_POINTS - 2)]
    points += [points[0], G1Point.identity()]  # a repeated point and the identity
    rows = affine_rows(points)
    scalars = g1.scalar_rows([rng.randrange(BLS_MODULUS) for _ in range(MSM_POINTS)])[None]
    got = DeviceMsm(Simulated())(rows, scalars)
    assert g1.xyzz_to_affine(got[0]) == g1.xyzz_to_affine(g1_msm(rows, scalars)[0]), "MSM differs in the simulator"


if __name__ == "__main__":
    sys.exit(main())
