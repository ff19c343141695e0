"""`autonomys-farmer benchmark audit|prove`: the plot client's own audit and proving paths on existing
farms, read-only (beside a running farmer: no lock is taken, nothing is written), as the official
farmer's `benchmark audit` and `benchmark prove` measure them."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import U64_MAX
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.proving import RecordWin, prove_wins, winning_records
from autonomys_farmer.protocol.reading import PlottedSectorView, ReadingError
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.services.storage.auditing import AuditEngine, warm_up_audits
from autonomys_farmer.services.storage.farm import Farm, FarmError

TIB = 2**40
CANDIDATES_PER_SLOT = 10  # the audit benchmark's solution range gives about this many per slot


@dataclass(frozen=True)
class AuditFigures:
    farms: int
    sectors: int
    plotted_tib: float
    slots: int
    median_ms: float
    max_ms: float
    tib_per_s: float  # plotted TiB audited per second (at the median)
    candidates_per_slot: float
    threads_per_farm: int

    def lines(self) -> list[str]:
        return [
            f"{self.sectors} sectors in {self.farms} farm(s), {self.plotted_tib:.2f} TiB plotted, "
            f"{self.threads_per_farm} farming threads per farm",
            f"audit per slot over {self.slots} slots: median {self.median_ms:.1f} ms, max {self.max_ms:.1f} ms "
            f"(a slot is 1000 ms; audit, proving and submission must fit in 4 s)",
            f"{self.tib_per_s:.1f} TiB of plot audited per second; {self.candidates_per_slot:.1f} candidates per slot",
        ]


@dataclass(frozen=True)
class ProveFigures:
    proofs: int
    failed: int
    median_read_ms: float  # reading a winning record's chunks from the farm
    median_prove_ms: float  # table, recovery and chunk witness
    max_prove_ms: float
    backend: str

    def lines(self) -> list[str]:
        return [
            f"{self.proofs} wins proved on {self.backend}: median {self.median_prove_ms:.0f} ms, "
            f"max {self.max_prove_ms:.0f} ms per proof (reading the record: median {self.median_read_ms:.0f} ms)",
            *([f"{self.failed} wins could not be proved (not really plotted data?)"] if self.failed else []),
        ]


def open_farms(directories: Sequence[Path]) -> list[Farm]:
    farms: list[Farm] = []
    try:
        for directory in directories:
            farms.append(Farm.open_existing(directory))
    except FarmError:
        for farm in farms:
            farm.close()
        raise
    return farms


def benchmark_audit(compute: Compute, directories: Sequence[Path], slots: int) -> AuditFigures:
    farms = open_farms(directories)
    try:
        warm_up_audits(compute)
        engine = AuditEngine(compute, farms)
        sectors = sum(farm.plotted_count() for farm in farms)
        if not sectors:
            raise FarmError("no plotted sector to audit")
        chunks = sum(farm.plotted_count() * farm.info.pieces_in_sector for farm in farms) * 0.5
        solution_range = min(U64_MAX, int(2**64 * CANDIDATES_PER_SLOT / chunks))
        times, candidates = [], 0
        for _ in range(slots):
            audit = engine.audit(os.urandom(32), solution_range)
            times.append(audit.seconds)
            candidates += sum(len(c.audit.candidates) for c in audit.candidates)
        plotted = sum(farm.plotted_count() * farm.sector_size for farm in farms) / TIB
        median = statistics.median(times)
        return AuditFigures(
            len(farms), sectors, round(plotted, 3), slots, round(median * 1000, 2), round(max(times) * 1000, 2),
            round(plotted / median, 1), round(candidates / slots, 1), farms[0].threads,
        )  # fmt: skip
    finally:
        for farm in farms:
            farm.close()


def benchmark_prove(compute: Compute, kzg: Kzg, directory: Path, count: int) -> ProveFigures:
    (farm,) = open_farms([directory])
    try:
        if not farm.plotted_count():
            raise FarmError("no plotted sector to prove from")
        engine = AuditEngine(compute, [farm])
        reads: list[float] = []
        proofs: list[float] = []
        failed = 0
        for _attempt in range(100 * count):
            if len(proofs) + failed >= count:
                break
            for candidate in engine.audit(os.urandom(32), U64_MAX // max(1, farm.plotted_count())).candidates:
                index = candidate.audit.sector_index
                metadata = farm.sector_metadata(index)
                if metadata is None:
                    continue
                view = PlottedSectorView.open(farm.source(index), metadata)
                wins = winning_records(view, candidate.audit)
                if not wins:
                    continue
                started = time.perf_counter()
                win = RecordWin.read(farm.public_key, farm.public_key, view, wins[0][0], candidate.audit.s_bucket)
                reads.append(time.perf_counter() - started)
                started = time.perf_counter()
                (result,) = prove_wins(compute, kzg, [win])
                if isinstance(result, Solution):
                    proofs.append(time.perf_counter() - started)
                else:
                    assert isinstance(result, ReadingError)
                    failed += 1
                break
        if not proofs and not failed:
            raise FarmError(f"no winning record found in {farm.directory}")
        return ProveFigures(
            len(proofs), failed, round(statistics.median(reads) * 1000, 1),
            round(statistics.median(proofs) * 1000, 1) if proofs else 0.0,
            round(max(proofs) * 1000, 1) if proofs else 0.0, f"{compute.name} ({compute.device})",
        )  # fmt: skip
    finally:
        farm.close()


def as_json(figures: AuditFigures | ProveFigures) -> dict[str, object]:
    return asdict(figures)
