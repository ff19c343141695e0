"""CPU kernel benchmarks for plotting and proving (issue: kernels vectorised across lanes); prints
figures for the README (not a test).

python bench/bench_kernels.py [--chiapos]

- fn: ns per match on one core, over every table's real matches of one K=20 seed;
- a whole PoS table (7 tables, K=20): per record on one core, and on all cores;
- with --chiapos: chiapos phase 1 (its 7 forward-propagated tables) at K=20 on one thread, and our
  one-core table's time as a fraction of it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile

import numpy as np
from bench_protocol import timed

from autonomys_farmer.backends.cpu import pos_table
from autonomys_farmer.backends.cpu.kernels import usable_cores
from autonomys_farmer.protocol import pos

SEED = bytes(range(32))


def table_inputs(seed: bytes) -> list[tuple[int, tuple[np.ndarray, ...]]]:
    """Each table's fn inputs (previous entries, matches), as a one-core table build produces them."""
    buffers = pos_table.TableBuffers(pos.K, parallel=False)
    return [
        (m.table, tuple(a.copy() for a in (m.y, m.meta_hi, m.meta_lo, m.left, m.right))) for m in buffers.tables(seed)
    ]


def chiapos_phase1_s(k: int) -> float:
    """chiapos's own phase-1 time (it prints it) for one K=k plot on one thread."""
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "from chiapos import DiskPlotter; "
            f"DiskPlotter().create_plot_disk({tmp!r}, {tmp!r}, {tmp!r}, 'p.plot', {k}, b'', bytes(range(32)), "
            "300, 32, 8192, 1, False)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    found = re.search(r"Time for phase 1 = ([0-9.]+) seconds", out)
    if found is None:
        raise RuntimeError("chiapos printed no phase-1 time")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chiapos", action="store_true", help="also time chiapos phase 1 at K=20 (one thread)")
    args = parser.parse_args()
    print(f"{usable_cores()} cores")
    matches = 0
    fn_s = 0.0
    for table, (y, hi, lo, left, right) in table_inputs(SEED):
        n = len(left)
        out = (np.empty(n, np.int32), np.empty(n, np.uint64), np.empty(n, np.uint64))
        fn_s += timed(lambda: pos_table.fn_table(False, table, pos.K, y, hi, lo, left, right, *out))  # noqa: B023
        matches += n
    print(f"fn, one core:                 {fn_s / matches * 1e9:6.1f} ns/match   (target <= 15)")
    reused = pos_table.TableBuffers(pos.K, parallel=False)  # as plotting does, record after record
    one_core = timed(lambda: pos_table.PosTable(SEED, parallel=False, buffers=reused))
    print(f"PoS table, one core:          {one_core:6.3f} s/record   (target <= 0.8)")
    every_core = timed(lambda: pos_table.PosTable(SEED, parallel=True))
    print(f"PoS table, {usable_cores()} cores:          {every_core:6.3f} s/record")
    if args.chiapos:
        phase1 = chiapos_phase1_s(pos.K)
        print(f"chiapos phase 1, one thread:  {phase1:6.3f} s; our one-core table is {one_core / phase1:.2f}x "
              "of it (target <= 0.25)")  # fmt: skip


if __name__ == "__main__":
    main()
