"""Plot server: takes sector jobs from the durable JetStream work queue, fetches and verifies the
sector's pieces, encodes them with the best backend here (GPU when present), buffers the plotted sector
in BASE_PATH and lets the farm's plot client download it over TCP.

A job is acknowledged only once its sector is durably buffered; a server killed mid-job leaves the job
unacknowledged and JetStream hands it to another server after ACK_WAIT_S. The buffer is bounded:
while it is full, no new job is taken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from autonomys_farmer.cluster import subjects, wire
from autonomys_farmer.cluster.bulk_ops import BulkRequest, FetchSector, Released, ReleaseSector, SectorPart
from autonomys_farmer.cluster.messages import (
    ComponentKind,
    DeadLetter,
    PlotJob,
    PlotProgress,
    PlotServerStatus,
    PlotStage,
)
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.pieces import Piece
from autonomys_farmer.protocol.plotting import SectorRecords, plot_sector
from autonomys_farmer.protocol.sector import FarmerProtocolInfo, derive_sector_id, derive_sector_piece_indices
from autonomys_farmer.protocol.types import PieceIndex
from autonomys_farmer.services import metrics
from autonomys_farmer.services.components.component import Component
from autonomys_farmer.services.files import atomic_writer, write_atomically
from autonomys_farmer.services.storage.piece_getter import PieceGetter, PieceVerifier
from autonomys_farmer.services.transport.bulk import Answer

log = logging.getLogger(__name__)

IN_PROGRESS_EVERY_S = 10.0
BUFFER_TTL_S = 15 * 60.0  # a sector whose collection started but never ended is dropped after this
UNCOLLECTED_S = 120.0  # a ready sector nobody starts to fetch (its plot client gone or silent) is released
ANNOUNCE_EVERY_S = 30.0  # 'ready' is said again meanwhile, for a plot client that missed it
STREAM_CHUNK = 4 * 1024 * 1024
WAIT_FOR_PIECES_S = 5.0  # a job whose pieces are not found yet is retried after this
MAX_JOB_DELIVERIES = 50  # a job failing (not waiting) this often is a poison job: dead-lettered


class PiecesUnavailableError(RuntimeError):
    """Some of a sector's pieces are in no cache and the node does not serve them (yet)."""


@dataclass(frozen=True)
class BufferedSector:
    """Sidecar of a buffered sector, written after the sector itself: its presence means complete."""

    job: PlotJob
    size: int


class PlotServer(Component):
    kind = ComponentKind.PLOT_SERVER

    def __init__(
        self,
        nats_servers: list[str],
        base_path: Path,
        listen_port: int,
        compute: Compute,
        kzg: Kzg,
        priority_cache: bool = False,
        max_buffered: int = 4,
        concurrency: int = 1,
    ) -> None:
        super().__init__(nats_servers)
        self.buffer = base_path / "sectors"
        self.buffer.mkdir(parents=True, exist_ok=True)
        self.listen_port = listen_port
        self.kzg = kzg
        self.priority_cache = priority_cache
        self.max_buffered = max_buffered
        self.compute = compute
        self.concurrency = max(1, concurrency)

        self.getter: PieceGetter | None = None
        self._uncollected: dict[str, float] = {}  # job id -> when its sector was first announced ready
        self.counts = {"plotted": 0, "failed": 0, "waiting": 0, "dead_letters": 0, "encoding": 0}
        self.last_sector_s = 0.0
        self.records_per_s = 0.0

    def status(self) -> PlotServerStatus:
        return PlotServerStatus(
            **self.counts,
            buffered=len(self._buffered()),
            backend=self.compute.name,
            device=self.compute.device,
            records_per_s=self.records_per_s,
            last_s=self.last_sector_s,
        )

    def _buffered(self) -> list[Path]:
        return sorted(p for p in self.buffer.glob("*.sector") if p.with_suffix(".job").exists())

    async def start(self) -> None:
        await super().start()  # NATS first: trouble there is named in seconds, not after compiling
        await self.warm_up(self.compute, self.compute.warm_up)  # before the first job, not during it
        await self.start_bulk(self._serve, self.listen_port)
        verifier = PieceVerifier(self.nats, self.compute, self.kzg)
        self.getter = PieceGetter(self.nats, verifier, self.priority_cache, secret=self.credentials.cluster_secret)
        await self.nats.await_work_queue(subjects.PLOT_JOBS)
        for path in self.buffer.glob("*.sector"):  # finished before a restart: tell their farms again
            await self._announce(path)
        for _ in range(self.concurrency):
            self.spawn(self._work_forever())
        self.spawn(self._expire_buffer())

    async def _work_forever(self) -> None:
        subscription = await self.nats.work_queue_consumer(subjects.PLOT_JOBS)
        while True:
            if len(self._buffered()) >= self.max_buffered:
                await asyncio.sleep(0.5)
                continue
            try:
                (msg,) = await subscription.fetch(1, timeout=5)
            except (nats.errors.TimeoutError, TimeoutError, nats.js.errors.FetchTimeoutError):
                continue
            except nats.errors.Error as e:
                log.warning("work queue unavailable (%s); retrying", e)
                await asyncio.sleep(1.0)
                continue
            await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        try:
            job = subjects.PLOT_JOBS.codec.decode(msg.data)
        except wire.WireError as e:
            self.nats.bad_messages.report(subjects.PLOT_JOBS.subject, e)
            await msg.term()
            return
        path = self.buffer / f"{job.job_id}.sector"
        if path.with_suffix(".job").exists():
            await msg.ack()
            await self._announce(path)
            return
        keepalive = asyncio.create_task(self._keep_in_progress(msg))
        try:
            await self._plot(job, path)
        except PiecesUnavailableError as e:  # a start-up wait (history still archived or cached), not a failure
            self.counts["waiting"] += 1
            log.info("sector %d of farm %s waits: %s", job.sector_index, job.farm_id, e)
            await self._progress(job, PlotStage.WAITING, error=str(e))
            await _settle(msg.nak(delay=WAIT_FOR_PIECES_S))
            return
        except Exception as e:
            self.counts["failed"] += 1
            metrics.PLOTTER_ERRORS.labels(self.compute.name).inc()
            log.warning("sector %d of farm %s failed: %s", job.sector_index, job.farm_id, e)
            await self._progress(job, PlotStage.ERROR, error=str(e))
            deliveries = msg.metadata.num_delivered if msg.metadata else 1
            if deliveries >= MAX_JOB_DELIVERIES:
                self.counts["dead_letters"] += 1
                log.error("sector %d of farm %s: dropped after %d deliveries (last error: %s)",
                          job.sector_index, job.farm_id, deliveries, e)  # fmt: skip
                await self.nats.publish(subjects.PLOT_DEAD_LETTERS, DeadLetter(job, deliveries, str(e)))
                await _settle(msg.term())
            else:
                await _settle(msg.nak(delay=2.0))
            return
        finally:
            keepalive.cancel()
        await _settle(msg.ack())  # if the ack is lost, the redelivered job finds the buffered sector
        await self._announce(path)

    async def _keep_in_progress(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(IN_PROGRESS_EVERY_S)
            try:
                await msg.in_progress()
            except Exception as e:
                log.debug("in-progress ack failed: %s", e)

    async def _progress(self, job: PlotJob, stage: PlotStage, **fields: Any) -> None:
        await self.nats.publish(
            subjects.PLOT_PROGRESS, PlotProgress(job.job_id, self.instance_id, stage, **fields), job.farm_id
        )

    async def _plot(self, job: PlotJob, path: Path) -> None:
        assert self.getter is not None
        started = time.monotonic()
        info = job.protocol_info
        sid = derive_sector_id(job.public_key, job.sector_index, info.history_size)
        indexes = derive_sector_piece_indices(sid, job.pieces_in_sector, info)
        await self._progress(job, PlotStage.DOWNLOADING, total=len(indexes))
        found = await self.getter.get_pieces(indexes)
        metrics.PLOTTER_DOWNLOADING_TIME.labels(self.compute.name).observe(time.monotonic() - started)
        missing = [i for i in indexes if i not in found]
        if missing:
            raise PiecesUnavailableError(f"{len(missing)} of {len(indexes)} pieces not found yet, first {missing[0]}")
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:
            asyncio.run_coroutine_threadsafe(self._progress(job, PlotStage.ENCODING, done=done, total=total), loop)

        self.counts["encoding"] += 1
        encoding_started = time.monotonic()
        try:
            size = await asyncio.to_thread(self._encode_to_file, job, info, indexes, found, path, report)
        finally:
            self.counts["encoding"] -= 1
        encoding_s = time.monotonic() - encoding_started
        self.records_per_s = round(job.pieces_in_sector / encoding_s, 1)
        metrics.PLOTTER_ENCODING_TIME.labels(self.compute.name).observe(encoding_s)
        write_atomically(path.with_suffix(".job"), wire.encode(BufferedSector(job, size)))
        self.counts["plotted"] += 1
        self.last_sector_s = round(time.monotonic() - started, 2)
        metrics.PLOTTER_PLOTTING_TIME.labels(self.compute.name).observe(self.last_sector_s)
        metrics.PLOTTER_PLOTTED.labels(self.compute.name).inc()
        log.info("sector %d of farm %s plotted in %.1fs", job.sector_index, job.farm_id[:8], self.last_sector_s)

    def _encode_to_file(
        self,
        job: PlotJob,
        info: FarmerProtocolInfo,
        indexes: list[PieceIndex],
        found: dict[PieceIndex, Piece],
        path: Path,
        report: Callable[[int, int], None],
    ) -> int:
        """Encode the sector straight into its buffer file (sector, then its metadata); returns the
        file's size. Pieces are moved into one records array as it fills, so a sector is held once in
        memory."""
        last_use = {index: offset for offset, index in enumerate(indexes)}

        def pieces_in_order() -> Iterator[Piece]:
            for offset, index in enumerate(indexes):
                yield found.pop(index) if last_use[index] == offset else found[index]

        records = SectorRecords.gather(pieces_in_order(), len(indexes))
        with atomic_writer(path) as f:
            metadata = plot_sector(
                self.compute, job.public_key, job.sector_index, info.history_size, records, f,
                self.compute.batch_records, report,
            )  # fmt: skip
            f.write(metadata.to_bytes())
            return f.tell()

    async def _announce(self, path: Path) -> None:
        buffered = self._sidecar(path)
        if buffered is None:
            return
        self._uncollected.setdefault(path.stem, time.monotonic())
        await self._progress(buffered.job, PlotStage.READY, address=self.address, size=buffered.size)

    def _sidecar(self, path: Path) -> BufferedSector | None:
        try:
            return wire.decode(BufferedSector, path.with_suffix(".job").read_bytes())
        except (OSError, wire.WireError):  # crashed between the two writes: the job will be redelivered
            self._release(path.stem)
            return None

    async def _expire_buffer(self) -> None:
        while True:
            await asyncio.sleep(ANNOUNCE_EVERY_S)
            await self.sweep_buffer(time.monotonic())

    async def sweep_buffer(self, now: float) -> None:
        """Fake or orphaned work must not hold the bounded buffer: a ready sector whose fetch has not
        started within UNCOLLECTED_S is released (logged, and its plot client told, should it come
        back), one still waiting is announced again; one whose collection never ended goes after
        BUFFER_TTL_S."""
        for path in self._buffered():
            since = self._uncollected.get(path.stem)
            if since is None:
                if time.time() - path.stat().st_mtime > BUFFER_TTL_S:
                    log.warning("%s: its collection never ended; dropping it", path.name)
                    self._release(path.stem)
            elif now - since > UNCOLLECTED_S:
                buffered = self._sidecar(path)
                self._release(path.stem)
                if buffered is not None:
                    job = buffered.job
                    log.warning("sector %d of farm %s was not collected within %.0fs (its plot client is gone or "
                                "silent): released", job.sector_index, job.farm_id, UNCOLLECTED_S)  # fmt: skip
                    await self._progress(job, PlotStage.DROPPED)
            else:
                await self._announce(path)

    def _release(self, job_id: str) -> None:
        self._uncollected.pop(job_id, None)
        (self.buffer / f"{job_id}.sector").unlink(missing_ok=True)
        (self.buffer / f"{job_id}.job").unlink(missing_ok=True)

    async def _serve(self, operation: BulkRequest, _payload: bytes) -> AsyncIterator[Answer]:
        if not isinstance(operation, FetchSector | ReleaseSector):
            raise ValueError(f"a plot server does not serve {type(operation).__name__}")
        job_id = operation.job_id
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise ValueError(f"invalid job id {job_id!r}")
        path = self.buffer / f"{job_id}.sector"
        if isinstance(operation, FetchSector):
            if not path.with_suffix(".job").exists():
                raise ValueError(f"sector for job {job_id} is not here")
            self._uncollected.pop(job_id, None)  # being collected: BUFFER_TTL_S bounds it from now
            with path.open("rb") as f:
                offset = 0
                while chunk := await asyncio.to_thread(f.read, STREAM_CHUNK):
                    yield SectorPart(offset), chunk
                    offset += len(chunk)
        else:
            self._release(job_id)
            yield Released(job_id), b""


async def _settle(ack: Awaitable[None]) -> None:
    """Ack/nak a job; a NATS outage here is harmless (the job is redelivered and handled idempotently)."""
    try:
        await ack
    except (nats.errors.Error, TimeoutError) as e:
        log.warning("could not settle a plot job (%s); it will be redelivered", str(e) or type(e).__name__)
