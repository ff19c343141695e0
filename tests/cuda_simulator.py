"""Block-cooperative GPU kernels in numba's CUDA simulator at small K (test tier T2).

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
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
