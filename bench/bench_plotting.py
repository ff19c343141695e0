"""Plotting benchmark: one whole sector, measured end to end (encode + lay out), not extrapolated.

python bench/bench_plotting.py [--backend cpu|cuda] [--pieces N] [--concurrency B]

Prints seconds per sector, records/s, peak host memory, GPU memory per record in flight (cuda), and the
time per stage of one batch (stages waited for one by one there, so they do not overlap).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from autonomys_farmer.backends import select_backend
from autonomys_farmer.backends.cuda.device import free_memory
from autonomys_farmer.protocol import pos
from autonomys_farmer.protocol.constants import MAX_PIECES_IN_SECTOR
from autonomys_farmer.protocol.plotting import plot_sector
from autonomys_farmer.services.tools.synthetic_history import synthetic_sector


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--pieces", type=int, default=MAX_PIECES_IN_SECTOR)
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("GPU_CONCURRENCY", "4")))
    args = parser.parse_args()
    compute = select_backend(args.backend, args.concurrency)
    print(f"backend: {compute.name} on {compute.device}; {args.pieces} pieces; batch {compute.batch_records} records")
    rng = np.random.default_rng(0)

    gpu_free_before = free_memory() if compute.name == "cuda" else 0
    started = time.perf_counter()
    compute.warm_up()  # also allocates the GPU buffers, once
    print(f"warm-up (kernel compilation or cache load): {time.perf_counter() - started:8.2f} s")
    if compute.name == "cuda":
        per_record = (gpu_free_before - free_memory()) / compute.batch_records
        print(f"GPU memory per record in flight (buffers and constants): {per_record / 2**20:8.1f} MiB")

    stage_seconds: dict[str, float] = {}
    batch = synthetic_sector(compute.batch_records, rng)
    seeds = [bytes([i]) * 32 for i in range(compute.batch_records)]
    if compute.name == "cuda":
        compute.encode_records(seeds, batch.records, stage_seconds)  # type: ignore[call-arg]
    else:
        stage_seconds = cpu_stages(compute, seeds[0], batch.records[0])
    print("time per stage, one batch:")
    for stage, seconds in stage_seconds.items():
        print(f"  {stage:<28} {seconds * 1e3:10.1f} ms")

    sector = synthetic_sector(args.pieces, rng)
    rss_before = peak_rss_mib()
    sampler = RssSampler()
    started = time.perf_counter()
    with open(os.devnull, "wb") as out, sampler:
        plot_sector(compute, bytes(range(32)), 0, 1, sector, out,
                    progress=lambda done, total: sampler.phase("layout" if done == total else "encoding"))  # fmt: skip
    seconds = time.perf_counter() - started
    print(f"sector of {args.pieces} pieces, measured whole: {seconds:8.2f} s")
    print(f"records/s:                                {args.pieces / seconds:8.1f}")
    print(f"peak host memory: {peak_rss_mib():.0f} MiB ({rss_before:.0f} MiB before plotting, the records included)")
    for phase, peak in sampler.peaks.items():
        print(f"  resident while {phase}: up to {peak:.0f} MiB")


class RssSampler:
    """Resident memory sampled every 10 ms, its peak kept per phase of plotting (the encoding of the
    records, then the layout written out), to tell which of them sets the process's peak."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self.current = "encoding"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def phase(self, name: str) -> None:
        self.current = name

    def _run(self) -> None:
        page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
        while not self._stop.wait(0.01):
            with open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * page_mib
            self.peaks[self.current] = max(self.peaks.get(self.current, 0.0), rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_stages(compute: object, seed: bytes, record: np.ndarray) -> dict[str, float]:
    """One record on one core, stage by stage (the batch runs one such record per core), timed on the
    second record, as plotting runs: in table buffers the first one allocated."""
    from autonomys_farmer.backends.cpu.backend import ALL_S_BUCKETS, CpuBackend
    from autonomys_farmer.backends.cpu.pos_table import PosTable, TableBuffers
    from autonomys_farmer.protocol.plotting import extend_record

    one_core = CpuBackend(parallel=False)
    buffers = TableBuffers(pos.K, parallel=False)
    stages: dict[str, float] = {}
    for _ in range(2):
        started = time.perf_counter()
        extend_record(one_core, record)
        stages["extension"] = time.perf_counter() - started
        started = time.perf_counter()
        table = PosTable(seed, parallel=False, buffers=buffers)
        stages["tables"] = time.perf_counter() - started
        started = time.perf_counter()
        positions = table.first_candidates(ALL_S_BUCKETS)
        traced = np.flatnonzero(positions >= 0)[:32768]
        one_core.hash_rows(table.proofs_at(positions[traced]))
        stages["proofs and selection"] = time.perf_counter() - started
    return stages


if __name__ == "__main__":
    main()
