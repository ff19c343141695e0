"""Plot client: owns farms on disk. It asks plot servers for the sectors its farms lack (or that are
about to expire), writes what comes back crash-safely, audits every plotted sector each slot, gets
wins proved by a proof server (or proves locally if none answers in time), submits the solutions
through the controller and signs rewards for its farms' keys. The rules it follows are
`cluster.farming`; this module is their adapter to NATS, TCP and the disk."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path

import nats.errors

from autonomys_farmer.cluster import farming, subjects
from autonomys_farmer.cluster.bulk_ops import FetchSector, Released, ReleaseSector, SectorPart
from autonomys_farmer.cluster.messages import (
    AppInfoRequest,
    ComponentKind,
    FarmEvent,
    FarmEventKind,
    FarmStatus,
    PlotClientStatus,
    PlotJob,
    PlotProgress,
    PlotStage,
    ProveRequest,
    SectorProgress,
    SubmitSolution,
)
from autonomys_farmer.protocol import reward_signing
from autonomys_farmer.protocol.archiving import SegmentHeader
from autonomys_farmer.protocol.auditing import AuditResult, audit_sector
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import SECTOR_METADATA_CHECKSUMMED_SIZE
from autonomys_farmer.protocol.farmer_rpc import FarmerAppInfo, RewardSignatureResponse, RewardSigningInfo, SlotInfo
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.proving import RecordWin, prove_wins, winning_records
from autonomys_farmer.protocol.reading import PlottedSectorView, check_sector
from autonomys_farmer.protocol.sector import SectorMetadata, derive_sector_id, derive_sector_piece_indices
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.protocol.types import PieceIndex, PieceOffset, SectorIndex, SegmentIndex, SlotNumber
from autonomys_farmer.services import metrics
from autonomys_farmer.services.components.component import Component
from autonomys_farmer.services.storage.farm import Farm
from autonomys_farmer.services.storage.piece_getter import SegmentCommitments
from autonomys_farmer.services.transport import bulk
from autonomys_farmer.services.transport.nats_bus import RemoteError, retry_forever

log = logging.getLogger(__name__)

JOB_SILENCE_S = 90.0  # no word on a job for this long: ask again (its server probably died)
PROOF_TIMEOUT_S = 1.0
FETCH_TIMEOUT_S = 60.0
SUBMIT_ATTEMPTS = 4  # controllers asked when the ones reached have their node down


class ProveHere(Enum):
    """A proof request's answer when no proof server took the win: prove it on this machine."""

    PROVE_HERE = "prove here"


PROVE_HERE = ProveHere.PROVE_HERE


class PlotClient(Component):
    kind = ComponentKind.PLOT_CLIENT

    def __init__(
        self,
        nats_servers: list[str],
        reward_address: bytes,
        farm_specs: list[tuple[Path, int]],
        compute: Compute,
        kzg: Kzg,
        max_plotting_sectors_per_farm: int = 2,
        proof_timeout: float = PROOF_TIMEOUT_S,
    ) -> None:
        super().__init__(nats_servers)
        self.reward_address = reward_address
        self.farm_specs = farm_specs
        self.compute = compute
        self.kzg = kzg
        self.max_plotting = max_plotting_sectors_per_farm
        self.proof_timeout = proof_timeout
        self.farms: list[Farm] = []
        self.plotting: dict[str, set[SectorIndex]] = {}
        self.replot: dict[str, set[SectorIndex]] = {}
        self._jobs: dict[str, asyncio.Queue[PlotProgress]] = {}
        self.slots = farming.SlotSequence()
        self._farming = False
        self.farming_timeout = 4.0
        self.proof_time = farming.ProofTime()
        self.breaker = farming.ProofServerBreaker()
        self.segment_commitments: SegmentCommitments | None = None
        self.counts = {
            "slots": 0,
            "skipped": 0,
            "wins": 0,
            "accepted": 0,
            "late": 0,
            "invalid": 0,
            "local_proofs": 0,
            "dropped": 0,
        }
        self.progress: dict[str, SectorProgress] = {}
        self.audit_ms: dict[str, float] = {}

    def status(self) -> PlotClientStatus:
        farms = tuple(
            FarmStatus(
                f.id,
                str(f.directory),
                f.sectors,
                len(f.plotted()),
                len(self.replot[f.id]),
                self.audit_ms.get(f.id, 0.0),
            )
            for f in self.farms
        )
        return PlotClientStatus(
            **self.counts,
            proof_s=round(self.proof_time.seconds, 2),
            farms=farms,
            plotting=tuple(self.progress.values()),
        )

    async def _app_info(self) -> FarmerAppInfo:
        return await retry_forever(
            "farmer app info", lambda: self.nats.request(subjects.FARMER_APP_INFO, AppInfoRequest())
        )

    async def start(self) -> None:
        await super().start()
        self.segment_commitments = SegmentCommitments(self.nats)
        info = await self._app_info()
        self.farming_timeout = info.farming_timeout_secs
        pieces = info.protocol_info.max_pieces_in_sector
        for path, sectors in self.farm_specs:
            farm = await asyncio.to_thread(Farm, path, sectors, pieces, info.genesis_hash)
            self.farms.append(farm)
            self.plotting[farm.id] = set()
            self.replot[farm.id] = set()
            log.info("farm %s at %s: %d/%d sectors plotted", farm.id, path, len(farm.plotted()), sectors)
            await self.nats.subscribe(subjects.PLOT_PROGRESS, self._on_progress, farm.id)
        await self.nats.ensure_work_queue(subjects.PLOT_JOBS)
        await self.nats.subscribe(subjects.SLOT_INFO, self._on_slot)
        await self.nats.subscribe(subjects.REWARD_SIGNING_INFO, self._on_reward_signing)
        await self.nats.subscribe(subjects.ARCHIVED_SEGMENT_HEADER, self._on_segment)
        for farm in self.farms:
            self.spawn(self._plot_farm(farm))
        self.spawn(self._check_expiry(info.protocol_info.history_size.in_segments_index()))

    # --- plotting ------------------------------------------------------------------------------------

    async def _plot_farm(self, farm: Farm) -> None:
        while True:
            busy = self.plotting[farm.id]
            plotted = farm.plotted()
            todo = sorted(self.replot[farm.id]) + [SectorIndex(i) for i in range(farm.sectors) if i not in plotted]
            for index in dict.fromkeys(todo):
                if len(busy) >= self.max_plotting:
                    break
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
            info = await self._app_info()
            job = PlotJob(job_id, farm.id, farm.public_key, index, farm.info.pieces_in_sector, info.protocol_info)
            await self._submit(job)
            self.progress[job_id] = SectorProgress(farm.id, index, PlotStage.QUEUED)
            waited = False
            workers: set[str] = set()  # plot servers that reported work on this job
            while True:
                try:
                    progress = await asyncio.wait_for(queue.get(), JOB_SILENCE_S)
                except TimeoutError:
                    log.warning("no word on sector %d of farm %s; asking again", index, farm.id[:8])
                    job = await self._resubmit(job)
                    continue
                if progress.stage == PlotStage.READY and progress.server_id not in workers:
                    log.warning("sector %d of farm %s: 'ready' from %s, which never worked on it: ignored",
                                index, farm.id[:8], progress.server_id[:16])  # fmt: skip
                    continue
                workers.add(progress.server_id)
                self.progress[job_id] = SectorProgress(farm.id, index, progress.stage, progress.done, progress.total)
                if progress.stage == PlotStage.ERROR:
                    log.warning("sector %d of farm %s: %s (the job is retried)", index, farm.id[:8], progress.error)
                elif progress.stage == PlotStage.WAITING and not waited:
                    waited = True
                    log.info("sector %d of farm %s waits for pieces: %s", index, farm.id[:8], progress.error)
                if progress.stage != PlotStage.READY:
                    continue
                try:
                    await self._collect(farm, index, job, progress)
                except Exception as e:
                    log.warning(
                        "collecting sector %d from %s failed (%s); plotting it again", index, progress.address, e
                    )
                    job = await self._resubmit(job)
                    continue
                await self._release(progress)
                metrics.FARM_SECTOR_PLOTTING_TIME.labels(farm.id).observe(time.perf_counter() - started)
                metrics.FARM_SECTOR_PLOTTED.labels(farm.id).inc()
                return
        finally:
            self._jobs.pop(job_id, None)
            self.progress.pop(job_id, None)
            self.plotting[farm.id].discard(index)

    async def _resubmit(self, job: PlotJob) -> PlotJob:
        again = PlotJob(job.job_id, job.farm_id, job.public_key, job.sector_index, job.pieces_in_sector,
                        job.protocol_info, job.attempt + 1)  # fmt: skip
        await self._submit(again)
        return again

    async def _submit(self, job: PlotJob) -> None:
        message_id = f"{job.job_id}-{job.attempt}"
        await retry_forever("plot job submission", lambda: self.nats.enqueue(subjects.PLOT_JOBS, job, message_id))

    async def _on_progress(self, progress: PlotProgress) -> None:
        queue = self._jobs.get(progress.job_id)
        if queue is not None:
            queue.put_nowait(progress)
        elif progress.stage == PlotStage.READY:  # a duplicate of a job already done: free the server's buffer
            await self._release(progress)

    async def _collect(self, farm: Farm, index: SectorIndex, job: PlotJob, ready: PlotProgress) -> None:
        """Download the sector from the plot server that announced it, check it (reading.check_sector:
        metadata, every record's commitment against its segment commitment, one random record read
        back) and only then write it to the farm."""
        body = bytearray()
        async for _part, chunk in bulk.request(
            ready.address, FetchSector(ready.job_id), SectorPart, timeout=FETCH_TIMEOUT_S
        ):
            body += chunk
        if len(body) != ready.size or blake3_hash(bytes(body)) != ready.checksum:
            raise RuntimeError(f"sector download is corrupt ({len(body)} of {ready.size} bytes)")
        data, raw_metadata = (
            bytes(body[:-SECTOR_METADATA_CHECKSUMMED_SIZE]),
            bytes(body[-SECTOR_METADATA_CHECKSUMMED_SIZE:]),
        )
        metadata = SectorMetadata.from_bytes(raw_metadata)
        info = job.protocol_info
        sid = derive_sector_id(farm.public_key, index, info.history_size)
        segments = {PieceIndex(i).segment_index() for i in derive_sector_piece_indices(sid, job.pieces_in_sector, info)}
        assert self.segment_commitments is not None
        known = self.segment_commitments
        commitments = await retry_forever("segment headers", lambda: known.get_many(segments))
        sample = [PieceOffset(secrets.randbelow(job.pieces_in_sector))]
        await asyncio.to_thread(
            check_sector, self.compute, self.kzg, farm.public_key, index, info, data, metadata, commitments, sample,
            secrets.token_bytes(32),
        )  # fmt: skip
        await asyncio.to_thread(farm.write_sector, index, data, metadata)
        self.replot[farm.id].discard(index)
        log.info("farm %s: sector %d plotted (%d/%d)", farm.id[:8], index, len(farm.plotted()), farm.sectors)
        await self.nats.publish(subjects.FARM_EVENTS, FarmEvent(farm.id, FarmEventKind.PLOTTED, index), farm.id)

    async def _release(self, ready: PlotProgress) -> None:
        try:
            await bulk.request_all(ready.address, ReleaseSector(ready.job_id), Released, timeout=10)
        except (OSError, bulk.BulkError, TimeoutError) as e:
            log.debug("release of %s failed: %s", ready.job_id, e)

    # --- expiry -----------------------------------------------------------------------------------

    async def _on_segment(self, header: SegmentHeader) -> None:
        self.spawn(self._check_expiry(header.segment_index))

    async def _check_expiry(self, current_segment: SegmentIndex) -> None:
        info = (await self._app_info()).protocol_info
        sectors = {
            (farm, index): farming.PlottedSector(
                derive_sector_id(farm.public_key, index, meta.history_size), meta.history_size
            )
            for farm in self.farms
            for index, meta in farm.plotted().items()
        }
        segments = farming.expiry_check_segments(sectors.values(), info.min_sector_lifetime)
        assert self.segment_commitments is not None
        known = self.segment_commitments
        commitments = await retry_forever("segment headers", lambda: known.get_many(segments))
        for farm, index in farming.sectors_to_replot(sectors, commitments, current_segment, info.min_sector_lifetime):
            if index in self.replot[farm.id]:
                continue
            log.info("farm %s: sector %d expires by the next segment: replotting", farm.id[:8], index)
            self.replot[farm.id].add(index)
            event = FarmEvent(farm.id, FarmEventKind.REPLOTTING, index)
            await self.nats.publish(subjects.FARM_EVENTS, event, farm.id)

    # --- farming ----------------------------------------------------------------------------------

    async def _on_slot(self, slot: SlotInfo) -> None:
        implausible = self.slots.implausible
        if not self.slots.accept(slot.slot_number, time.monotonic()):  # several controllers send each slot
            if self.slots.implausible > implausible and self.slots.implausible == 1:
                log.warning(
                    "slot %d refused: implausibly far past slot %s (later ones are counted)",
                    slot.slot_number, self.slots.last,
                )  # fmt: skip
            return
        self.counts["slots"] += 1
        if self._farming:
            self.counts["skipped"] += 1
            for farm in self.farms:
                metrics.FARM_SKIPPED_SLOTS.labels(farm.id).inc()
            return
        self._farming = True
        self.spawn(self._farm_slot(slot))

    def _audit_all(self, slot: SlotInfo) -> list[tuple[int, Farm, SectorIndex, AuditResult]]:
        found = []
        for farm in self.farms:
            started = time.perf_counter()
            for index, meta in farm.plotted().items():
                if index in self.plotting[farm.id]:
                    continue
                audit = audit_sector(
                    self.compute,
                    farm.public_key,
                    slot.global_challenge,
                    slot.voting_solution_range,
                    farm.sector_bytes(index),
                    meta,
                )
                if audit.candidates:
                    found.append((audit.candidates[0].distance, farm, index, audit))
            took = time.perf_counter() - started
            self.audit_ms[farm.id] = round(took * 1000, 2)
            metrics.FARM_AUDITING_TIME.labels(farm.id).observe(took)
        return sorted(found, key=lambda x: x[0])

    async def _farm_slot(self, slot: SlotInfo) -> None:
        started = time.monotonic()
        try:
            wins: list[tuple[Farm, RecordWin]] = []
            for _distance, farm, index, audit in await asyncio.to_thread(self._audit_all, slot):
                meta = farm.sector_metadata(index)
                if meta is None:
                    continue
                view = PlottedSectorView.open(farm.sector_bytes(index), meta)
                for piece_offset, _d in winning_records(view, audit)[: farming.MAX_WINS_PER_SLOT - len(wins)]:
                    wins.append(
                        (farm, RecordWin.read(farm.public_key, self.reward_address, view, piece_offset, audit.s_bucket))
                    )
            elapsed = time.monotonic() - started
            count = farming.wins_to_prove(elapsed, self.farming_timeout, self.proof_time.seconds, len(wins))
            if count < len(wins):
                log.info(
                    "slot %d: %d wins, %d fit the %.1fs left (a proof takes ~%.1fs): the rest dropped",
                    slot.slot_number, len(wins), count, self.farming_timeout - elapsed, self.proof_time.seconds,
                )  # fmt: skip
            if count:
                await self._prove_and_submit(slot.slot_number, wins[:count], self.farming_timeout - elapsed)
        except Exception as e:
            log.warning("slot %d: farming failed: %s", slot.slot_number, e)
        finally:
            self._farming = False

    async def _prove_and_submit(
        self, slot_number: SlotNumber, wins: list[tuple[Farm, RecordWin]], budget: float
    ) -> None:
        """A slot's wins, sent for proving together; each solution is submitted the moment it is
        proved (a later win must not hold an earlier one back past the deadline). Records how long
        proving took per win (the estimate and the metric)."""
        self.counts["wins"] += len(wins)
        started = time.perf_counter()
        finished: list[float] = []

        async def submit(farm: Farm, solution: Solution | None) -> None:
            result = "Timeout"
            if solution is None:
                self.counts["dropped"] += 1
            else:
                finished.append(time.perf_counter() - started)
                accepted = await self._submit_solution(farm, slot_number, solution)
                result = "Success" if accepted else "Rejected"
            metrics.FARM_PROVING_TIME.labels(farm.id, result).observe(time.perf_counter() - started)

        await self._prove([win for _farm, win in wins], budget, lambda i, sol: submit(wins[i][0], sol))
        if finished:
            self.proof_time.observe(max(finished) / len(finished))

    async def _prove(
        self, wins: list[RecordWin], budget: float, settle: Callable[[int, Solution | None], Awaitable[None]]
    ) -> None:
        """Proof servers get the wins at once (one proves them as a batch) with the slot's remaining
        budget; wins no proof server takes are proved here, together. `settle(i, solution or None)`
        runs for each win as soon as its fate is known. A proof server that is there but too slow
        costs the win (the budget is spent: a local proof would land late too); the breaker bypasses
        proof servers that keep missing."""
        local: list[int] = []

        async def remote(i: int, timeout: float) -> None:
            answer = await self._request_proof(wins[i], timeout)
            if answer is PROVE_HERE:
                local.append(i)
            else:
                await settle(i, answer if isinstance(answer, Solution) else None)

        if self.breaker.use_proof_servers(time.monotonic()):
            timeout = max(self.proof_timeout, budget)
            await asyncio.gather(*(remote(i, timeout) for i in range(len(wins))))
        else:
            local = list(range(len(wins)))
        if local:
            self.counts["local_proofs"] += len(local)
            proved = await asyncio.to_thread(prove_wins, self.compute, self.kzg, [wins[i] for i in sorted(local)])
            for i, result in zip(sorted(local), proved, strict=True):
                if not isinstance(result, Solution):
                    log.warning("proving sector %d failed: %s", wins[i].sector_index, result)
                await settle(i, result if isinstance(result, Solution) else None)

    async def _request_proof(self, win: RecordWin, timeout: float) -> Solution | ProveHere | None:
        """A proof server's solution, PROVE_HERE or None (the win is dropped)."""
        try:
            response = await self.nats.request(subjects.PROVE, ProveRequest(win, timeout), timeout=timeout, deadline=0)
            self.breaker.answered()
            if response.solution is not None:
                return response.solution
            log.warning("proof server failed: %s; proving locally", response.error)
        except (nats.errors.TimeoutError, TimeoutError):
            if self.breaker.missed(time.monotonic()) is farming.Miss.DROP:
                log.info("no proof within the slot's %.1fs budget: win dropped", timeout)
                return None
            log.warning("proof servers keep missing the slot budget: proving locally for %.0fs", self.breaker.bypass_s)
        except (nats.errors.Error, RemoteError) as e:
            log.info("no proof server answered (%s); proving locally", str(e) or type(e).__name__)
        return PROVE_HERE

    async def _submit_solution(self, farm: Farm, slot_number: SlotNumber, solution: Solution) -> bool:
        """Submit through one controller, once (a timed-out request may have reached a node: it is not
        sent again); only a controller whose node is down hands it back for another."""
        request = SubmitSolution(slot_number, solution)
        for _ in range(SUBMIT_ATTEMPTS):
            result = await self.nats.request(subjects.SUBMIT_SOLUTION, request, timeout=5, deadline=5, once=True)
            if result.submitted:
                break
        else:
            log.warning("slot %d: solution not submitted: %s (%d tries)", slot_number, result.error, SUBMIT_ATTEMPTS)
            return False
        if result.accepted:
            kind, verdict = FarmEventKind.SOLUTION, "accepted"
        elif result.late:
            kind, verdict = FarmEventKind.LATE, f"late ({result.error})"
        else:
            kind, verdict = FarmEventKind.INVALID, f"invalid: {result.error}"
        self.counts[{FarmEventKind.SOLUTION: "accepted", FarmEventKind.LATE: "late"}.get(kind, "invalid")] += 1
        log.info(
            "slot %d: solution from farm %s sector %d %s", slot_number, farm.id[:8], solution.sector_index, verdict
        )
        event = FarmEvent(farm.id, kind, SectorIndex(solution.sector_index), slot_number, result.error)
        await self.nats.publish(subjects.FARM_EVENTS, event, farm.id)
        return result.accepted

    async def _on_reward_signing(self, info: RewardSigningInfo) -> None:
        for farm in self.farms:
            if farm.public_key == info.public_key:
                signature = reward_signing.sign(farm.secret_key, farm.public_key, info.hash)
                await self.nats.publish(subjects.REWARD_SIGNATURE, RewardSignatureResponse(info.hash, signature))
                return
