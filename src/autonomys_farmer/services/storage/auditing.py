"""One audit engine for every farm of a plot client: each slot, every plotted sector of every farm is
audited at once, on every farm's farming threads.

A farm's plotted sectors are split into batches; each batch is one positioned read per sector of
exactly its audited s-bucket (plot_io, GIL-free) and one `Compute.audit_chunks` launch that hashes
all their chunks and keeps those within the solution range (GIL-free, lanes of SIMD). What Python does
per sector is nothing: the per-slot cost is per batch. `protocol.auditing.audit_sector` stays the
reference this is tested against.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from autonomys_farmer.protocol.auditing import AuditResult, audit_results
from autonomys_farmer.protocol.compute import AuditedChunks, Compute
from autonomys_farmer.protocol.types import SectorIndex
from autonomys_farmer.services.storage import plot_io
from autonomys_farmer.services.storage.farm import Farm, FarmError
from autonomys_farmer.services.storage.plotted import PlottedSectors

log = logging.getLogger(__name__)

MIN_BATCH = 16  # sectors per launch at least (the per-launch overhead is ~20 µs)
MAX_BATCH = 64  # and at most: a batch's chunks (~1 MiB at 1000 pieces) stay in cache between read and hash
BATCHES_PER_THREAD = 4  # more batches than threads, so threads that finish early take more


@dataclass(frozen=True)
class SectorCandidates:
    """A sector with chunks within the solution range, and the generation of the sector it was
    read from (a sector replotted meanwhile is another sector: its candidates are void)."""

    farm: Farm
    audit: AuditResult
    generation: int

    @property
    def best_distance(self) -> int:
        return self.audit.candidates[0].distance

    def still_valid(self) -> bool:
        plotted = self.farm.sectors_in_memory
        return bool(plotted.plotted[self.audit.sector_index]) and plotted.generation(self.audit.sector_index) == (
            self.generation
        )


@dataclass(frozen=True)
class SlotAudit:
    """One slot's audit of every farm: the sectors with candidates, best distance first."""

    candidates: tuple[SectorCandidates, ...]
    sectors: int  # sectors audited
    seconds: float  # the whole audit, every farm
    farm_seconds: Mapping[str, float]  # per farm: from the start until its last batch finished
    failed: Mapping[str, str]  # per farm that could not be read: why


def warm_up_audits(compute: Compute) -> None:
    """Compile (or load) the audit's kernels now, with the argument types a slot passes them, so that
    no slot pays for it (the first audit after an install would otherwise take seconds)."""
    none = np.zeros(0, np.int64)
    sector = PlottedSectors(1, 1, bytes(32))
    challenge = np.frombuffer(bytes(32), np.uint8)
    buffer = np.zeros((0, 32), np.uint8)
    plot_io.read_audited_s_buckets(-1, none, sector.sector_ids, challenge, sector.sizes, sector.offsets, 0, 0, buffer)
    plot_io.read_chunks_at(-1, 0, none, buffer)
    chunks = AuditedChunks(np.zeros((1, 32), np.uint8), np.array([0, 1], np.int64), np.zeros((1, 32), np.uint8))
    compute.audit_chunks(chunks, bytes(32), 0)


class AuditEngine:
    def __init__(self, compute: Compute, farms: Sequence[Farm]) -> None:
        self.compute = compute
        self.farms = list(farms)
        self._local = threading.local()  # each farming thread's read buffer, kept from slot to slot

    def _buffer(self) -> np.ndarray:
        buffer: np.ndarray | None = getattr(self._local, "chunks", None)
        if buffer is None:
            buffer = self._local.chunks = np.empty((MIN_BATCH * 1000, 32), np.uint8)
        return buffer

    def audit(
        self,
        global_challenge: bytes,
        solution_range: int,
        excluded: Mapping[str, Collection[SectorIndex]] | None = None,
    ) -> SlotAudit:
        """Audit every plotted sector of every farm except `excluded` ones (being plotted)."""
        started = time.perf_counter()
        challenge = np.frombuffer(global_challenge, np.uint8)
        pending: list[tuple[Farm, np.ndarray, Future[list[SectorCandidates]]]] = []
        sectors = 0
        for farm in self.farms:
            plotted = farm.sectors_in_memory
            rows = plotted.indices()
            skip = (excluded or {}).get(farm.id)
            if skip:
                rows = rows[~np.isin(rows, np.fromiter(skip, np.int64, len(skip)))]
            sectors += len(rows)
            size = int(np.clip(len(rows) // (farm.threads * BATCHES_PER_THREAD), MIN_BATCH, MAX_BATCH))
            for start in range(0, len(rows), size):
                batch = rows[start : start + size]
                future = farm.pool.submit(self._audit_batch, farm, batch, challenge, solution_range)
                pending.append((farm, batch, future))
        found: list[SectorCandidates] = []
        finished: dict[str, float] = {farm.id: 0.0 for farm in self.farms}
        failed: dict[str, str] = {}
        for farm, _batch, future in pending:
            try:
                found += future.result()
            except (OSError, FarmError) as e:
                failed.setdefault(farm.id, str(e))
            finished[farm.id] = max(finished[farm.id], time.perf_counter() - started)
        found.sort(key=lambda c: c.best_distance)
        return SlotAudit(tuple(found), sectors, time.perf_counter() - started, finished, failed)

    def _audit_batch(
        self, farm: Farm, rows: np.ndarray, challenge: np.ndarray, solution_range: int
    ) -> list[SectorCandidates]:
        plotted = farm.sectors_in_memory
        generations = plotted.generations[rows].copy()
        while True:
            buffer = self._buffer()
            challenges, s_buckets, _first, starts, failed = plot_io.read_audited_s_buckets(
                farm.plot_fd(),
                rows,
                plotted.sector_ids,
                challenge,
                plotted.sizes,
                plotted.offsets,
                farm.sector_size,
                farm.layout.chunks_offset,
                buffer,
            )
            if failed != plot_io.TOO_SMALL:
                break
            self._local.chunks = np.empty((int(starts[-1]) * 5 // 4, 32), np.uint8)
        chunks = buffer[: starts[-1]]
        if failed >= 0:
            index = int(rows[failed])
            os.pread(farm.plot_fd(), 32, index * farm.sector_size)  # raises the system's error if there is one
            raise FarmError(f"{farm.plot_path}: sector {index} could not be read")
        hits = self.compute.audit_chunks(AuditedChunks(chunks, starts, challenges), bytes(challenge), solution_range)
        if not len(hits):
            return []
        changed = plotted.generations[rows] != generations  # replotted while read: another sector now
        results = audit_results(hits, rows, s_buckets)
        position = {int(index): i for i, index in enumerate(rows)}
        return [
            SectorCandidates(farm, result, int(generations[position[result.sector_index]]))
            for result in results
            if not changed[position[result.sector_index]]
        ]
