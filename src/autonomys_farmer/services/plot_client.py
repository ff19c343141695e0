"""Plot client: owns farms on disk. It asks plot servers for the sectors its farms lack (or that are
about to expire), writes what comes back crash-safely, audits every plotted sector each slot, gets
wins proved by a proof server (or proves locally on the CPU if none answers in time), submits the
solutions through the controller and signs rewards for its farms' keys."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from autonomys_farmer.cluster import messages as m
from autonomys_farmer.cluster import wire
from autonomys_farmer.protocol import reward_signing
from autonomys_farmer.protocol.archiving import SegmentHeader
from autonomys_farmer.protocol.auditing import AuditResult, audit_sector
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import SECTOR_METADATA_CHECKSUMMED_SIZE
from autonomys_farmer.protocol.farmer_rpc import FarmerAppInfo, RewardSignatureResponse, RewardSigningInfo, SlotInfo
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.proving import RecordWin, prove_win, winning_records
from autonomys_farmer.protocol.reading import PlottedSectorView
from autonomys_farmer.protocol.sector import (
    SectorMetadata,
    derive_expiration_history_size,
    derive_sector_id,
    expiration_check_segment_index,
)
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.services import bulk, metrics
from autonomys_farmer.services.component import Component
from autonomys_farmer.services.farm import Farm
from autonomys_farmer.services.nats_bus import retry_forever
from autonomys_farmer.services.piece_getter import SegmentCommitments

log = logging.getLogger(__name__)

JOB_SILENCE_S = 90.0  # no word on a job for this long: ask again (its server probably died)
PROOF_TIMEOUT_S = 2.0
PROOF_SERVER_STRIKES = 3  # proof-server timeouts in a row before proving locally for a while
PROOF_SERVER_BYPASS_S = 60.0
FETCH_TIMEOUT_S = 60.0


class PlotClient(Component):
    kind = m.PLOT_CLIENT

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
        self.plotting: dict[str, set[int]] = {}
        self.replot: dict[str, set[int]] = {}
        self._jobs: dict[str, asyncio.Queue[m.PlotProgress]] = {}
        self._last_slot = -1
        self._farming = False
        self.farming_timeout = 4.0
        self.proof_estimate_s = 0.0  # moving average of win-to-submission time
        self.segment_commitments: SegmentCommitments | None = None
        self._proof_server_strikes = 0
        self._bypass_proof_servers_until = 0.0
        self.counts = {
            "slots": 0,
            "skipped": 0,
            "wins": 0,
            "accepted": 0,
            "rejected": 0,
            "local_proofs": 0,
            "dropped": 0,
        }
        self.progress: dict[str, tuple[int, str, int, int]] = {}  # job -> (sector, stage, done, total)

    def status(self) -> dict[str, Any]:
        for farm in self.farms:
            about_to_expire = len(self.replot[farm.id])
            metrics.FARM_SECTORS.labels(farm.id, "Plotted").set(len(farm.plotted) - about_to_expire)
            metrics.FARM_SECTORS.labels(farm.id, "AboutToExpire").set(about_to_expire)
            metrics.FARM_SECTORS.labels(farm.id, "NotPlotted").set(farm.sectors - len(farm.plotted))
        farms = {f.id: {"plotted": len(f.plotted), "sectors": f.sectors, "path": str(f.directory)} for f in self.farms}
        return dict(
            self.counts, proof_s=round(self.proof_estimate_s, 2), farms=farms, plotting=list(self.progress.values())
        )

    async def _app_info(self) -> FarmerAppInfo:
        raw = await retry_forever("farmer app info", lambda: self.nats.request(m.FARMER_APP_INFO, b""))
        return FarmerAppInfo.from_json(wire.decode_json(raw))

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
            log.info("farm %s at %s: %d/%d sectors plotted", farm.id, path, len(farm.plotted), sectors)
            await self.nats.subscribe(f"{m.PLOT_PROGRESS}.{farm.id}", self._on_progress)
        await self.nats.ensure_work_queue(m.PLOT_JOBS_STREAM, m.PLOT_JOBS)
        await self.nats.subscribe(m.SLOT_INFO, self._on_slot)
        await self.nats.subscribe(m.REWARD_SIGNING_INFO, self._on_reward_signing)
        await self.nats.subscribe(m.ARCHIVED_SEGMENT_HEADER, self._on_segment)
        for farm in self.farms:
            self.spawn(self._plot_farm(farm))
        self.spawn(self._check_expiry(info.protocol_info.history_size - 1))

    # --- plotting ------------------------------------------------------------------------------------

    async def _plot_farm(self, farm: Farm) -> None:
        while True:
            busy = self.plotting[farm.id]
            todo = sorted(self.replot[farm.id]) + [i for i in range(farm.sectors) if i not in farm.plotted]
            for index in dict.fromkeys(todo):
                if len(busy) >= self.max_plotting:
                    break
                if index not in busy:
                    busy.add(index)
                    self.spawn(self._plot_sector(farm, index))
            await asyncio.sleep(0.5)

    async def _plot_sector(self, farm: Farm, index: int) -> None:
        job_id = uuid.uuid4().hex
        started = time.perf_counter()
        queue: asyncio.Queue[m.PlotProgress] = asyncio.Queue()
        self._jobs[job_id] = queue
        attempt = 0
        try:
            info = await self._app_info()
            job = m.PlotJob(
                job_id, farm.id, farm.public_key, index, farm.info.pieces_in_sector, info.protocol_info.to_json()
            )
            await self._submit(job)
            self.progress[job_id] = (index, "queued", 0, 0)
            while True:
                try:
                    progress = await asyncio.wait_for(queue.get(), JOB_SILENCE_S)
                except TimeoutError:
                    attempt += 1
                    log.warning("no word on sector %d of farm %s; asking again", index, farm.id[:8])
                    await self._submit(m.PlotJob(**{**job.__dict__, "attempt": attempt}))
                    continue
                self.progress[job_id] = (index, progress.stage, progress.done, progress.total)
                if progress.stage == "error":
                    log.warning("sector %d of farm %s: %s (the job is retried)", index, farm.id[:8], progress.error)
                if progress.stage != "ready":
                    continue
                try:
                    await self._collect(farm, index, progress)
                except Exception as e:
                    attempt += 1
                    log.warning(
                        "collecting sector %d from %s failed (%s); plotting it again", index, progress.address, e
                    )
                    await self._submit(m.PlotJob(**{**job.__dict__, "attempt": attempt}))
                    continue
                await self._release(progress)
                metrics.FARM_SECTOR_PLOTTING_TIME.labels(farm.id).observe(time.perf_counter() - started)
                metrics.FARM_SECTOR_PLOTTED.labels(farm.id).inc()
                return
        finally:
            self._jobs.pop(job_id, None)
            self.progress.pop(job_id, None)
            self.plotting[farm.id].discard(index)

    async def _submit(self, job: m.PlotJob) -> None:
        headers = {"Nats-Msg-Id": f"{job.job_id}-{job.attempt}"}
        await retry_forever(
            "plot job submission", lambda: self.nats.js.publish(m.PLOT_JOBS, wire.encode(job), headers=headers)
        )

    async def _on_progress(self, msg: Msg) -> None:
        progress = wire.decode(m.PlotProgress, msg.data)
        queue = self._jobs.get(progress.job_id)
        if queue is not None:
            queue.put_nowait(progress)
        elif progress.stage == "ready":  # a duplicate of a job already done: free the server's buffer
            await self._release(progress)

    async def _collect(self, farm: Farm, index: int, ready: m.PlotProgress) -> None:
        body = bytearray()
        async for _header, chunk in bulk.request(
            ready.address, {"op": "sector", "job_id": ready.job_id}, timeout=FETCH_TIMEOUT_S
        ):
            body += chunk
        if len(body) != ready.size or blake3_hash(bytes(body)) != ready.checksum:
            raise RuntimeError(f"sector download is corrupt ({len(body)} of {ready.size} bytes)")
        data, raw_metadata = (
            bytes(body[:-SECTOR_METADATA_CHECKSUMMED_SIZE]),
            bytes(body[-SECTOR_METADATA_CHECKSUMMED_SIZE:]),
        )
        metadata = SectorMetadata.from_bytes(raw_metadata)
        await asyncio.to_thread(farm.write_sector, index, data, metadata)
        self.replot[farm.id].discard(index)
        log.info("farm %s: sector %d plotted (%d/%d)", farm.id[:8], index, len(farm.plotted), farm.sectors)
        await self.nats.publish(f"{m.FARM_EVENTS}.{farm.id}", m.FarmEvent(farm.id, "plotted", index))

    async def _release(self, ready: m.PlotProgress) -> None:
        try:
            await bulk.request_all(ready.address, {"op": "release", "job_id": ready.job_id}, timeout=10)
        except (OSError, bulk.BulkError, TimeoutError) as e:
            log.debug("release of %s failed: %s", ready.job_id, e)

    # --- expiry -----------------------------------------------------------------------------------

    async def _on_segment(self, msg: Msg) -> None:
        header = SegmentHeader.from_json(wire.decode_json(msg.data))
        self.spawn(self._check_expiry(header.segment_index))

    async def _check_expiry(self, current_segment: int) -> None:
        info = (await self._app_info()).protocol_info
        sectors = [(farm, index, meta) for farm in self.farms for index, meta in list(farm.plotted.items())]
        segments = {
            expiration_check_segment_index(meta.history_size, info.min_sector_lifetime) for _, _, meta in sectors
        }
        assert self.segment_commitments is not None
        known = self.segment_commitments
        commitments = await retry_forever("segment headers", lambda: known.get_many(segments))
        for farm, index, meta in sectors:
            commitment = commitments.get(expiration_check_segment_index(meta.history_size, info.min_sector_lifetime))
            if commitment is None:  # that segment is not archived yet: the sector cannot expire so soon
                continue
            sid = derive_sector_id(farm.public_key, index, meta.history_size)
            expires = derive_expiration_history_size(sid, meta.history_size, commitment, info.min_sector_lifetime)
            if expires is not None and expires - 1 <= current_segment + 1 and index not in self.replot[farm.id]:
                log.info("farm %s: sector %d expires at segment %d: replotting", farm.id[:8], index, expires - 1)
                self.replot[farm.id].add(index)
                await self.nats.publish(f"{m.FARM_EVENTS}.{farm.id}", m.FarmEvent(farm.id, "replotting", index))

    # --- farming ----------------------------------------------------------------------------------

    async def _on_slot(self, msg: Msg) -> None:
        slot = SlotInfo.from_json(wire.decode_json(msg.data))
        if slot.slot_number <= self._last_slot:  # several controllers broadcast the same slot
            return
        self._last_slot = slot.slot_number
        self.counts["slots"] += 1
        if self._farming:
            self.counts["skipped"] += 1
            for farm in self.farms:
                metrics.FARM_SKIPPED_SLOTS.labels(farm.id).inc()
            return
        self._farming = True
        self.spawn(self._farm_slot(slot))

    def _audit_all(self, slot: SlotInfo) -> list[tuple[int, Farm, int, AuditResult]]:
        found = []
        for farm in self.farms:
            started = time.perf_counter()
            for index, meta in list(farm.plotted.items()):
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
            metrics.FARM_AUDITING_TIME.labels(farm.id).observe(time.perf_counter() - started)
        return sorted(found, key=lambda x: x[0])

    async def _farm_slot(self, slot: SlotInfo) -> None:
        started = time.monotonic()
        proved = 0
        try:
            for _distance, farm, index, audit in await asyncio.to_thread(self._audit_all, slot):
                meta = farm.plotted.get(index)
                if meta is None:
                    continue
                view = PlottedSectorView.open(farm.sector_bytes(index), meta)
                for piece_offset, _d in winning_records(view, audit):
                    elapsed = time.monotonic() - started
                    # The first win is always tried; later ones only if a proof can still land in time
                    # (a late proof is ignored by the node and takes CPU from the next slot's).
                    if elapsed > self.farming_timeout or (
                        proved and elapsed + self.proof_estimate_s > self.farming_timeout
                    ):
                        log.info(
                            "slot %d: %.1fs of %.1fs used, a proof takes ~%.1fs: remaining wins dropped",
                            slot.slot_number, elapsed, self.farming_timeout, self.proof_estimate_s,
                        )  # fmt: skip
                        return
                    proved += 1
                    win = RecordWin.read(farm.public_key, self.reward_address, view, piece_offset, audit.s_bucket)
                    await self._prove_and_submit(farm, slot.slot_number, win, self.farming_timeout - elapsed)
        except Exception as e:
            log.warning("slot %d: farming failed: %s", slot.slot_number, e)
        finally:
            self._farming = False

    async def _prove_and_submit(self, farm: Farm, slot_number: int, win: RecordWin, budget: float) -> None:
        """One win: prove it, submit it, and record how long that took (estimate and metric)."""
        self.counts["wins"] += 1
        started = time.perf_counter()
        result = "Failed"
        try:
            solution = await self._prove(win, budget)
            if solution is None:
                self.counts["dropped"] += 1
                result = "Timeout"
                return
            result = "Success" if await self._submit_solution(farm, slot_number, solution) else "Rejected"
            took = time.perf_counter() - started
            self.proof_estimate_s = took if not self.proof_estimate_s else 0.7 * self.proof_estimate_s + 0.3 * took
        finally:
            metrics.FARM_PROVING_TIME.labels(farm.id, result).observe(time.perf_counter() - started)

    async def _prove(self, win: RecordWin, budget: float) -> Solution | None:
        """A proof server gets the slot's remaining budget; local CPU proving if none is there. A proof
        server that is there but too slow costs the win (the budget is spent: a local proof would
        land late too); after PROOF_SERVER_STRIKES such timeouts in a row it is bypassed for a while."""
        if time.monotonic() >= self._bypass_proof_servers_until:
            timeout = max(self.proof_timeout, budget)
            try:
                raw = await self.nats.request(m.PROVE, m.encode_record_win(win), timeout=timeout, deadline=0)
                self._proof_server_strikes = 0
                response = wire.decode(m.ProveResponse, raw)
                if response.solution is not None:
                    return Solution.from_json(response.solution)
                log.warning("proof server failed: %s; proving locally", response.error)
            except (nats.errors.TimeoutError, TimeoutError):
                self._proof_server_strikes += 1
                if self._proof_server_strikes < PROOF_SERVER_STRIKES:
                    log.info("no proof within the slot's %.1fs budget: win dropped", timeout)
                    return None
                log.warning("proof servers missed %d slots in a row: proving locally for %.0fs",
                            self._proof_server_strikes, PROOF_SERVER_BYPASS_S)  # fmt: skip
                self._proof_server_strikes = 0
                self._bypass_proof_servers_until = time.monotonic() + PROOF_SERVER_BYPASS_S
            except Exception as e:
                log.info("no proof server answered (%s); proving locally on the CPU", type(e).__name__)
        self.counts["local_proofs"] += 1
        return await asyncio.to_thread(prove_win, self.compute, self.kzg, win)

    async def _submit_solution(self, farm: Farm, slot_number: int, solution: Solution) -> bool:
        result = await self.nats.request_as(
            m.SubmitResult, m.SUBMIT_SOLUTION, m.SubmitSolution(slot_number, solution.to_json()), timeout=5, deadline=5
        )
        kind = "solution" if result.accepted else "rejected"
        self.counts["accepted" if result.accepted else "rejected"] += 1
        log.info(
            "slot %d: solution from farm %s sector %d %s",
            slot_number,
            farm.id[:8],
            solution.sector_index,
            "accepted" if result.accepted else f"not accepted: {result.error}",
        )
        event = m.FarmEvent(farm.id, kind, solution.sector_index, slot_number, result.error)
        await self.nats.publish(f"{m.FARM_EVENTS}.{farm.id}", event)
        return result.accepted

    async def _on_reward_signing(self, msg: Msg) -> None:
        info = RewardSigningInfo.from_json(wire.decode_json(msg.data))
        for farm in self.farms:
            if farm.public_key == info.public_key:
                signature = reward_signing.sign(farm.secret_key, farm.public_key, info.hash)
                await self.nats.publish(
                    m.REWARD_SIGNATURE, wire.encode(RewardSignatureResponse(info.hash, signature).to_json())
                )
                return
