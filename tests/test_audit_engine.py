"""The plot client's audit engine against the reference audit (protocol.auditing.audit_sector), on
mainnet-shaped farms (1000-piece sectors, thousands of them) and on really plotted sectors; the reads
it does, measured from the device."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import pytest
from farms import GENESIS, lay_out_farm

from autonomys_farmer.protocol.auditing import audit_sector
from autonomys_farmer.protocol.constants import U64_MAX
from autonomys_farmer.protocol.proving import RecordWin, winning_records
from autonomys_farmer.protocol.reading import PlottedSectorView
from autonomys_farmer.protocol.sector import (
    FarmerProtocolInfo,
    derive_global_challenge,
    derive_global_randomness,
)
from autonomys_farmer.protocol.solution import pieces_to_solution_range
from autonomys_farmer.protocol.types import HistorySize, SectorIndex
from autonomys_farmer.services.storage.auditing import AuditEngine, warm_up_audits
from autonomys_farmer.services.storage.farm import Farm
from autonomys_farmer.services.tools.synthetic_history import plotted_two_piece_sector

SECTORS = 2000
DATA_SECTORS = (3, 1500)


def challenge(slot: int) -> bytes:
    return derive_global_challenge(derive_global_randomness(bytes(16)), slot)


@pytest.fixture(scope="module")
def mainnet_farm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("mainnet") / "farm"
    lay_out_farm(directory, SECTORS, data_sectors=DATA_SECTORS)
    return directory


def reference(farm: Farm, global_challenge: bytes, solution_range: int, compute) -> dict[int, object]:
    """audit_sector over every plotted sector, reading through a mapping of plot.bin."""
    with open(farm.plot_path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as plot:
        results = {}
        for index in farm.plotted_indices():
            view = memoryview(plot)[int(index) * farm.sector_size : (int(index) + 1) * farm.sector_size]
            meta = farm.sector_metadata(SectorIndex(int(index)))
            result = audit_sector(compute, farm.public_key, global_challenge, solution_range, view, meta)
            view.release()
            if result.candidates:
                results[int(index)] = result
        return results


def test_the_batched_audit_equals_the_reference_over_thousands_of_mainnet_sectors(mainnet_farm, compute) -> None:
    farm = Farm(mainnet_farm, SECTORS, 1000, GENESIS)
    try:
        assert farm.plotted_count() == SECTORS
        engine = AuditEngine(compute, [farm])
        # A mainnet-like range (a few hits per slot), a wide one (many, and every chunk of a sparse
        # sector within it: zero chunks all tie, so the order within a sector is then the chunk order).
        ranges = [pieces_to_solution_range(1000, (1, 6)) * 500, U64_MAX // 64, U64_MAX // 8]
        total = 0
        for slot, solution_range in zip((1, 2, 3), ranges, strict=True):
            audit = engine.audit(challenge(slot), solution_range)
            assert audit.sectors == SECTORS and not audit.failed
            expected = reference(farm, challenge(slot), solution_range, compute)
            assert {c.audit.sector_index: c.audit for c in audit.candidates} == expected
            distances = [c.best_distance for c in audit.candidates]
            assert distances == sorted(distances)
            total += len(audit.candidates)
        assert total > SECTORS // 8 and any(len(result.candidates) > 400 for result in expected.values())
        excluded = engine.audit(challenge(4), U64_MAX, {farm.id: {SectorIndex(3), SectorIndex(7)}})
        assert excluded.sectors == SECTORS - 2
        assert {3, 7}.isdisjoint(c.audit.sector_index for c in excluded.candidates)
    finally:
        farm.close()


def test_really_plotted_sectors_audit_and_read_from_the_farm_as_from_memory(tmp_path: Path, compute, kzg) -> None:
    farm = Farm(tmp_path / "farm", 2, 2, GENESIS)
    try:
        info = FarmerProtocolInfo(HistorySize(1), 2, 5, (1, 10), 4)
        _history, _indices, plotted = plotted_two_piece_sector(compute, kzg, farm.public_key, info)
        farm.write_sector(SectorIndex(0), plotted.data, plotted.metadata)
        engine = AuditEngine(compute, [farm])
        in_memory = PlottedSectorView.open(plotted.data, plotted.metadata)
        on_disk = PlottedSectorView.open(farm.source(0), farm.sector_metadata(SectorIndex(0)))
        wins, won = 0, None
        for slot in range(1, 40):
            audit = engine.audit(challenge(slot), U64_MAX)
            expected = audit_sector(compute, farm.public_key, challenge(slot), U64_MAX, plotted.data, plotted.metadata)
            assert [c.audit for c in audit.candidates] == ([expected] if expected.candidates else [])
            for offset, _distance in winning_records(on_disk, expected):
                read = RecordWin.read(farm.public_key, farm.public_key, on_disk, offset, expected.s_bucket)
                want = RecordWin.read(farm.public_key, farm.public_key, in_memory, offset, expected.s_bucket)
                assert read.record_metadata == want.record_metadata and read.sector_index == want.sector_index
                for field in ("s_buckets", "encoded", "chunks"):
                    assert np.array_equal(getattr(read.record, field), getattr(want.record, field))
                wins += 1
                won = slot
        assert wins and won is not None
        (candidate,) = engine.audit(challenge(won), U64_MAX).candidates
        assert candidate.still_valid()
        farm.receive(SectorIndex(0))  # replotting begins: what was audited before is void
        assert not candidate.still_valid() and farm.plotted_count() == 0
    finally:
        farm.close()


def _read_bytes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("read_bytes"))


def test_an_audit_reads_from_the_device_about_its_s_bucket_only(mainnet_farm, compute) -> None:
    """Cold pages (dropped from the page cache), real data: the bytes the device delivered per audited
    sector are its s-bucket's (~16 KiB), not a read-ahead window."""
    farm = Farm(mainnet_farm, SECTORS, 1000, GENESIS)
    try:
        engine = AuditEngine(compute, [farm])
        warm_up_audits(compute)
        only = {farm.id: {SectorIndex(i) for i in range(SECTORS) if i not in DATA_SECTORS}}
        fd = os.open(farm.plot_path, os.O_RDONLY)
        read, audited, s_bucket_bytes = 0, 0, 0
        for slot in range(10, 30):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # cold pages
            before = _read_bytes()
            audit = engine.audit(challenge(slot), U64_MAX, only)
            read += _read_bytes() - before
            audited += audit.sectors
            for candidate in audit.candidates:
                sizes = farm.sector_metadata(candidate.audit.sector_index).s_bucket_sizes
                s_bucket_bytes += 32 * int(sizes[candidate.audit.s_bucket])
        os.close(fd)
        if read == 0:
            pytest.skip("this kernel does not account read_bytes in /proc/self/io")
        per_sector = read / audited
        print(f"\n{per_sector / 1024:.1f} KiB read from the device per audited sector "
              f"(s-buckets average {s_bucket_bytes / audited / 1024:.1f} KiB)")  # fmt: skip
        assert audited == 2 * 20
        assert per_sector < s_bucket_bytes / audited + 3 * 4096  # its pages, a page either side at most
    finally:
        farm.close()
