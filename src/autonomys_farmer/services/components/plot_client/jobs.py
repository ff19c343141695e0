"""Sector jobs: which sectors each farm lacks (or must replot), the plot jobs that ask plot servers for
them, and the collection of what comes back.

A job is issued once. It is issued again only when the sector that came back is refused, or when it
has been silent a while and nobody can still plot it (`cluster.farming.issue_job_again`): a job
waiting in the work queue, or held by a plot server, is left alone however long it takes, since both
copies of a job issued twice get plotted. A sector comes back over TCP straight into its place in the
farm, hashed as it arrives, checked (`protocol.reading.check_sector`) and only then counted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from autonomys_farmer.cluster import farming
from autonomys_farmer.cluster.bulk_ops import FetchSector, Released, ReleaseSector, SectorPart
from autonomys_farmer.cluster.messages import (
    FarmEvent,
    FarmEventKind,
    PlotJob,
    PlotProgress,
    PlotStage,
    SectorProgress,
)
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.farmer_rpc import FarmerAppInfo
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.reading import check_sector
from autonomys_farmer.protocol.sector import SectorMetadata, derive_sector_id, derive_sector_piece_indices
from autonomys_farmer.protocol.types import PieceIndex, PieceOffset, SectorIndex, SegmentIndex
from autonomys_farmer.services import metrics
from autonomys_farmer.services.storage.farm import Farm
from autonomys_farmer.services.transport import bulk

log = logging.getLogger(__name__)

JOB_SILENCE_S = 90.0  # no word on a job for this long: find out whether anybody can still plot it
FETCH_TIMEOUT_S = 60.0


class JobsLink(Protocol):
    """What sector jobs ask of the cluster."""

    async def app_info(self) -> FarmerAppInfo: ...

    async def enqueue(self, job: PlotJob) -> int:
        """Queue a job; returns its sequence number in the work queue."""
        ...

    async def still_queued(self, sequence: int) -> bool:
        """Is the job with this sequence still in the work queue (waiting, or taken and unacknowledged)?"""
        ...

    async def plot_server_alive(self, server_id: str) -> bool: ...

    async def segment_commitments(self, segments: Iterable[SegmentIndex]) -> Mapping[SegmentIndex, bytes]: ...

    async def farm_event(self, event: FarmEvent) -> None: ...


class SectorJobs:
    def __init__(
        self,
        farms: list[Farm],
        compute: Compute,
        kzg: Kzg,
        link: JobsLink,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        max_plotting: int = 2,
        job_silence_s: float = JOB_SILENCE_S,
        *,
        cluster_secret: bytes | None,
    ) -> None:
        self.farms = farms
        self.cluster_secret = cluster_secret  # plot servers must prove it before a sector is taken
        self.compute = compute
        self.kzg = kzg
        self.link = link
        self.spawn = spawn
        self.max_plotting = max_plotting
        self.job_silence_s = job_silence_s
        self.plotting: dict[str, set[SectorIndex]] = {farm.id: set() for farm in farms}
        self.replot: dict[str, set[SectorIndex]] = {farm.id: set() for farm in farms}
        self.progress: dict[str, SectorProgress] = {}
        self.issued = 0  # jobs queued, first issues and re-issues
        self._jobs: dict[str, asyncio.Queue[PlotProgress]] = {}

    async def plot_farm(self, farm: Farm) -> None:
        """Keep up to max_plotting sectors of the farm being plotted: replots first, then missing ones."""
        while True:
            busy = self.plotting[farm.id]
            todo = iter([*sorted(self.replot[farm.id]), *map(SectorIndex, farm.unplotted_indices())])
            while len(busy) < self.max_plotting and (index := next(todo, None)) is not None:
                if index not in busy:
                    busy.add(index)
                    self.spawn(self._plot_sector(farm, index))
            await asyncio.sleep(0.5)

    async def _plot_sector(self, farm: Farm, index: SectorIndex) -> None:
        job_id = uuid.uuid4().hex
        started = time.perf_counter()
        queue: asyncio.Queue[PlotProgress] = asyncio.Queue()
        self._jobs[job_id] = queue
        try:
            info = await self.link.app_info()
            job = PlotJob(job_id, farm.id, farm.public_key, index, farm.info.pieces_in_sector, info.protocol_info)
            sequence = await self._issue(job)
            self.progress[job_id] = SectorProgress(farm.id, index, PlotStage.QUEUED)
            said_waiting = False
            workers: set[str] = set()  # plot servers that reported work on this job
            while True:
                try:
                    progress = await asyncio.wait_for(queue.get(), self.job_silence_s)
                except TimeoutError:
                    queued = await self.link.still_queued(sequence)
                    alive = [worker for worker in workers if await self.link.plot_server_alive(worker)]
                    if farming.issue_job_again(queued, bool(alive)):
                        log.warning("sector %d of farm %s: its job left the queue and no plot server that had it "
                                    "is alive; issuing it again", index, farm.id[:8])  # fmt: skip
                        job, sequence = await self._issue_again(job)
                    else:
                        log.info("sector %d of farm %s: no word for %.0fs; its job is %s", index, farm.id[:8],
                                 self.job_silence_s, "still queued" if queued else f"with {alive[0][:16]}")  # fmt: skip
                    continue
                if progress.stage == PlotStage.READY and progress.server_id not in workers:
                    log.warning("sector %d of farm %s: 'ready' from %s, which never worked on it: ignored",
                                index, farm.id[:8], progress.server_id[:16])  # fmt: skip
                    continue
                if progress.stage == PlotStage.DROPPED:
                    if progress.server_id in workers:  # we were too late to collect it: plot it again
                        log.warning("sector %d of farm %s: %s released it uncollected; issuing the job again",
                                    index, farm.id[:8], progress.server_id[:16])  # fmt: skip
                        job, sequence = await self._issue_again(job)
                    continue
                workers.add(progress.server_id)
                self.progress[job_id] = SectorProgress(farm.id, index, progress.stage, progress.done, progress.total)
                if progress.stage == PlotStage.ERROR:
                    log.warning("sector %d of farm %s: %s (the job is retried)", index, farm.id[:8], progress.error)
                elif progress.stage == PlotStage.WAITING and not said_waiting:
                    said_waiting = True
                    log.info("sector %d of farm %s waits for pieces: %s", index, farm.id[:8], progress.error)
                if progress.stage != PlotStage.READY:
                    continue
                try:
                    await self._collect(farm, index, job, progress)
                except Exception as e:
                    log.warning(
                        "collecting sector %d from %s failed (%s); plotting it again", index, progress.address, e
                    )
                    job, sequence = await self._issue_again(job)
                    continue
                await self.release(progress)
                metrics.FARM_SECTOR_PLOTTING_TIME.labels(farm.id).observe(time.perf_counter() - started)
                metrics.FARM_SECTOR_PLOTTED.labels(farm.id).inc()
                return
        finally:
            self._jobs.pop(job_id, None)
            self.progress.pop(job_id, None)
            self.plotting[farm.id].discard(index)

    async def _issue(self, job: PlotJob) -> int:
        self.issued += 1
        return await self.link.enqueue(job)

    async def _issue_again(self, job: PlotJob) -> tuple[PlotJob, int]:
        again = PlotJob(job.job_id, job.farm_id, job.public_key, job.sector_index, job.pieces_in_sector,
                        job.protocol_info, job.attempt + 1)  # fmt: skip
        return again, await self._issue(again)

    async def on_progress(self, progress: PlotProgress) -> None:
        queue = self._jobs.get(progress.job_id)
        if queue is not None:
            queue.put_nowait(progress)
        elif progress.stage == PlotStage.READY:  # a duplicate of a job already done: free the server's buffer
            await self.release(progress)

    async def _collect(self, farm: Farm, index: SectorIndex, job: PlotJob, ready: PlotProgress) -> None:
        """Receive the sector from the plot server that announced it straight into the farm (it stops
        counting while it is overwritten), check it (reading.check_sector: checksum, metadata, every
        record's commitment against its segment commitment, one random record read back) and only
        then count it."""
        info = job.protocol_info
        receiver = await asyncio.to_thread(farm.receive, index)
        async for _part, data in bulk.request(
            ready.address, FetchSector(ready.job_id), SectorPart, timeout=FETCH_TIMEOUT_S, secret=self.cluster_secret
        ):
            await asyncio.to_thread(receiver.write, data)
        checksum = receiver.finish()
        metadata = SectorMetadata.from_bytes(bytes(receiver.metadata))
        sid = derive_sector_id(farm.public_key, index, info.history_size)
        segments = {PieceIndex(i).segment_index() for i in derive_sector_piece_indices(sid, job.pieces_in_sector, info)}
        commitments = await self.link.segment_commitments(segments)
        sample = [PieceOffset(secrets.randbelow(job.pieces_in_sector))]
        await asyncio.to_thread(
            check_sector, self.compute, self.kzg, farm.public_key, index, info, farm.source(index), checksum,
            metadata, commitments, sample, secrets.token_bytes(32),
        )  # fmt: skip
        await asyncio.to_thread(farm.commit, index, metadata)
        self.replot[farm.id].discard(index)
        log.info("farm %s: sector %d plotted (%d/%d)", farm.id[:8], index, farm.plotted_count(), farm.sectors)
        await self.link.farm_event(FarmEvent(farm.id, FarmEventKind.PLOTTED, index))

    async def release(self, ready: PlotProgress) -> None:
        try:
            await bulk.request_all(
                ready.address, ReleaseSector(ready.job_id), Released, timeout=10, secret=self.cluster_secret
            )
        except (OSError, bulk.BulkError, TimeoutError) as e:
            log.debug("release of %s failed: %s", ready.job_id, e)
