"""Farming at the seed's scale: one plot client's audit of 1000, 8000 and 4 × 8000 sectors of 1000 pieces.

python bench/bench_farming.py [--base DIR] [--slots N] [--layouts 1000,8000,4x8000]

Farms are laid out once under --base (tests/farms.py: well-formed metadata, sparse plot.bin, about
1 GiB of metadata per 8000 sectors) and reused. For each layout: the time to open the farms, the audit
per slot with warm pages (the plot files' s-buckets in the page cache) and with cold pages: random data
is written where this run's slots audit (so every audited s-bucket is on the device) and the page cache
is dropped before each slot; the bytes the device delivered per audited sector come from /proc/self/io.
Last, one 1000-piece sector received over bulk TCP into a farm, with the process's peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from farms import GENESIS, lay_out_farm

from autonomys_farmer.backends.cpu.backend import CpuBackend
from autonomys_farmer.protocol.constants import U64_MAX
from autonomys_farmer.protocol.sector import derive_global_challenge
from autonomys_farmer.services.storage import plot_io
from autonomys_farmer.services.storage.auditing import AuditEngine, warm_up_audits
from autonomys_farmer.services.storage.farm import Farm


def read_bytes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("read_bytes"))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def fill_audited_s_buckets(farms: list[Farm], challenges: list[bytes]) -> int:
    """Random bytes into exactly the s-buckets these challenges audit, in every sector; returns bytes."""
    written = 0
    rng = np.random.default_rng(1)
    for farm in farms:
        plotted = farm.sectors_in_memory
        rows = plotted.indices()
        fd = os.open(farm.plot_path, os.O_WRONLY)
        for challenge in challenges:
            _keys, _s_buckets, first_chunks, starts, _status = plot_io.read_audited_s_buckets(
                farm.plot_fd(), rows, plotted.sector_ids, np.frombuffer(challenge, np.uint8), plotted.sizes,
                plotted.offsets, farm.sector_size, farm.layout.chunks_offset, np.empty((0, 32), np.uint8),
            )  # fmt: skip
            for row, first, start, stop in zip(rows, first_chunks, starts[:-1], starts[1:], strict=True):
                data = rng.integers(0, 256, (stop - start) * 32, np.uint8).tobytes()
                os.pwrite(fd, data, int(row) * farm.sector_size + farm.layout.chunks_offset + 32 * int(first))
                written += len(data)
        os.fsync(fd)
        os.close(fd)
    return written


def audit_slots(
    engine: AuditEngine, challenges: list[bytes], solution_range: int, cold: bool
) -> tuple[list[float], int, int]:
    times, read, audited = [], 0, 0
    for challenge in challenges:
        if cold:
            for farm in engine.farms:
                os.posix_fadvise(farm.plot_fd(), 0, 0, os.POSIX_FADV_DONTNEED)
        before = read_bytes()
        audit = engine.audit(challenge, solution_range)
        read += read_bytes() - before
        audited += audit.sectors
        times.append(audit.seconds)
    return times, read, audited


def bench_layout(base: Path, farms_count: int, sectors: int, slots: int) -> None:
    directories = [base / f"{sectors}-sectors-{i}" for i in range(farms_count)]
    for i, directory in enumerate(directories):
        if not directory.exists():
            started = time.perf_counter()
            lay_out_farm(directory, sectors, seed=i)
            print(f"  laid out {directory} in {time.perf_counter() - started:.1f} s", flush=True)
    before = rss_mib()
    started = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(farms_count) as pool:
        farms = list(pool.map(lambda d: Farm(d, sectors, 1000, GENESIS), directories))
    opened = time.perf_counter() - started
    held = rss_mib() - before
    compute = CpuBackend()
    warm_up_audits(compute)
    engine = AuditEngine(compute, farms)
    total = farms_count * sectors
    solution_range = min(U64_MAX, int(2**64 * 10 / (total * 500)))  # about ten candidates per slot
    warm_challenges = [derive_global_challenge(bytes(32), slot) for slot in range(slots + 2)]
    audit_slots(engine, warm_challenges[:2], solution_range, cold=False)  # pages in
    warm, _, _ = audit_slots(engine, warm_challenges[:2] * (slots // 2 + 1), solution_range, cold=False)
    cold_challenges = [derive_global_challenge(bytes(32), 1000 + slot) for slot in range(slots)]
    filled = fill_audited_s_buckets(farms, cold_challenges)
    cold, read, audited = audit_slots(engine, cold_challenges, solution_range, cold=True)
    tib = total * farms[0].sector_size / 2**40
    print(
        f"{farms_count} x {sectors} sectors of 1000 pieces ({tib:.1f} TiB), {farms[0].threads} farming threads per farm"
    )
    print(f"  open: {opened:.2f} s for all farms side by side; metadata in memory {held:.0f} MiB "
          f"({held * 2**20 / total / 1024:.1f} KiB per sector)")  # fmt: skip
    print(f"  audit per slot, warm pages: median {statistics.median(warm) * 1000:.0f} ms, "
          f"max {max(warm) * 1000:.0f} ms; {tib / statistics.median(warm):.0f} TiB/s")  # fmt: skip
    print(f"  audit per slot, cold pages ({filled / 2**20:.0f} MiB of real data where audited): median "
          f"{statistics.median(cold) * 1000:.0f} ms, max {max(cold) * 1000:.0f} ms; "
          f"{read / max(audited, 1) / 1024:.1f} KiB read from the device per audited sector", flush=True)  # fmt: skip
    for farm in farms:
        farm.close()


def bench_keyed_hash() -> None:
    """The audit launch alone, on one core: keyed BLAKE3 of 32-byte chunks and candidate selection."""
    from autonomys_farmer.protocol.compute import AuditedChunks

    rng = np.random.default_rng(2)
    sectors, per_sector = 2000, 500
    chunks = rng.integers(0, 256, (sectors * per_sector, 32), np.uint8)
    starts = np.arange(sectors + 1, dtype=np.int64) * per_sector
    audited = AuditedChunks(chunks, starts, rng.integers(0, 256, (sectors, 32), np.uint8))
    compute = CpuBackend()
    compute.audit_chunks(audited, bytes(32), 2**40)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        compute.audit_chunks(audited, bytes(32), 2**40)
        times.append(time.perf_counter() - started)
    print(f"keyed hash of a 32-byte chunk, with candidate selection, one core: "
          f"{min(times) / len(chunks) * 1e9:.1f} ns")  # fmt: skip


def bench_collect(base: Path) -> None:
    """One 1000-piece sector served by a bulk server in this process and received into a farm."""
    from autonomys_farmer.cluster.bulk_ops import FetchSector, SectorPart
    from autonomys_farmer.services.transport import bulk

    farm = Farm(base / "collect", 2, 1000, GENESIS)
    payload = base / "collect-sector.bin"
    size = farm.sector_size + 131_116
    if not payload.exists() or payload.stat().st_size != size:
        with open(payload, "wb") as f:
            for offset in range(0, size, 1 << 26):
                f.write(os.urandom(min(1 << 26, size - offset)))

    async def serve(_operation: object, _payload: bytes):  # type: ignore[no-untyped-def]
        with open(payload, "rb") as f:
            offset = 0
            while chunk := await asyncio.to_thread(f.read, 4 << 20):
                yield SectorPart(offset), chunk
                offset += len(chunk)

    async def run() -> float:
        server = bulk.BulkServer(serve, None)
        await server.start("127.0.0.1", 0)
        before = rss_mib()
        started = time.perf_counter()
        receiver = await asyncio.to_thread(farm.receive, 0)
        async for _part, data in bulk.request(
            server.address("127.0.0.1"), FetchSector("ab" * 16), SectorPart, secret=None
        ):
            await asyncio.to_thread(receiver.write, data)
        receiver.finish()
        took = time.perf_counter() - started
        await server.close()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"collect: a 1000-piece sector ({size / 2**30:.2f} GiB) received and hashed in {took:.1f} s; "
              f"resident memory {before:.0f} MiB before, peak {peak:.0f} MiB, {rss_mib():.0f} MiB after")  # fmt: skip
        return took

    asyncio.run(run())
    farm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="/tmp/autonomys-bench-farms", help="where farms are laid out (reused)")
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--layouts", default="1000,8000,4x8000", help="farms x sectors, comma separated")
    args = parser.parse_args()
    base = Path(args.base)
    base.mkdir(parents=True, exist_ok=True)
    bench_keyed_hash()
    bench_collect(base)
    for layout in filter(None, args.layouts.split(",")):
        count, _, sectors = layout.rpartition("x")
        bench_layout(base, int(count or 1), int(sectors), args.slots)


if __name__ == "__main__":
    main()
