"""Plot client: owns farms on disk. Its parts work over the shared farms and are wired here to NATS and
TCP: sector jobs (plotting, replotting, collection), slot farming (audit, proving, submission), expiry
and reward signing. It also builds the status its heartbeat carries. The rules they follow are
`cluster.farming`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import nats.errors

from autonomys_farmer.cluster import subjects
from autonomys_farmer.cluster.farming import SkipReason
from autonomys_farmer.cluster.messages import (
    AppInfoRequest,
    ComponentKind,
    FarmEvent,
    FarmStatus,
    PlotClientStatus,
    PlotJob,
    ProveRequest,
    ProveResponse,
    SubmitResult,
    SubmitSolution,
)
from autonomys_farmer.protocol.archiving import SegmentHeader
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.farmer_rpc import FarmerAppInfo, RewardSignatureResponse, SlotInfo
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.types import SegmentIndex
from autonomys_farmer.services.components.component import Component
from autonomys_farmer.services.components.plot_client.farming import (
    PROOF_TIMEOUT_S,
    ProofServersUnavailableError,
    SlotFarming,
)
from autonomys_farmer.services.components.plot_client.jobs import SectorJobs
from autonomys_farmer.services.components.plot_client.upkeep import Expiry, RewardSigner
from autonomys_farmer.services.storage.auditing import AuditEngine, warm_up_audits
from autonomys_farmer.services.storage.farm import Farm
from autonomys_farmer.services.storage.piece_getter import SegmentCommitments
from autonomys_farmer.services.transport.nats_bus import RemoteError, retry_forever

log = logging.getLogger(__name__)


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
        self.jobs: SectorJobs | None = None
        self.farming: SlotFarming | None = None
        self._segment_commitments: SegmentCommitments | None = None

    def status(self) -> PlotClientStatus:
        if self.jobs is None or self.farming is None:
            return PlotClientStatus()
        jobs, slots = self.jobs, self.farming
        farms = tuple(
            FarmStatus(
                f.id, str(f.directory), f.sectors, f.plotted_count(), len(jobs.replot[f.id]),
                slots.farm_audit_ms.get(f.id, 0.0),
            )
            for f in self.farms
        )  # fmt: skip
        return PlotClientStatus(
            **slots.counts,
            skipped_audit_running=slots.skipped[SkipReason.AUDIT_RUNNING],
            skipped_implausible=slots.skipped[SkipReason.IMPLAUSIBLE],
            audit_ms=slots.audit_ms,
            audited=slots.audited,
            proving=slots.proving,
            proof_s=round(slots.proof_time.seconds, 2),
            farms=farms,
            plotting=tuple(jobs.progress.values()),
        )

    async def start(self) -> None:
        await super().start()  # NATS trouble is named within seconds, before anything slow
        self._segment_commitments = SegmentCommitments(self.nats)
        info = await self.app_info()
        pieces = info.protocol_info.max_pieces_in_sector
        started = time.monotonic()
        # Kernels compile (once per install) while the farms open, all before this client joins.
        warming = asyncio.create_task(asyncio.to_thread(warm_up_audits, self.compute))
        self.farms = list(
            await asyncio.gather(
                *(
                    asyncio.to_thread(Farm, path, sectors, pieces, info.genesis_hash)
                    for path, sectors in self.farm_specs
                )
            )
        )
        await warming
        for farm in self.farms:
            log.info(
                "farm %s at %s: %d/%d sectors plotted", farm.id, farm.directory, farm.plotted_count(), farm.sectors
            )
        log.info("%d farm(s) open and audits ready in %.1fs", len(self.farms), time.monotonic() - started)
        self.jobs = SectorJobs(
            self.farms, self.compute, self.kzg, self, self.spawn, self.max_plotting,
            cluster_secret=self.credentials.cluster_secret,
        )  # fmt: skip
        engine = AuditEngine(self.compute, self.farms)
        self.farming = SlotFarming(
            engine, self.compute, self.kzg, self.reward_address, self, self.spawn, info.farming_timeout_secs,
            self.proof_timeout,
        )  # fmt: skip
        expiry = Expiry(self.farms, self.jobs.replot, self.segment_commitments, self.farm_event)
        signer = RewardSigner(self.farms, self.send_signature)
        slots = self.farming

        async def on_slot(slot: SlotInfo, sender: str) -> None:
            slots.on_slot(slot, sender)

        async def on_segment(header: SegmentHeader) -> None:
            self.spawn(self._check_expiry(expiry, header.segment_index))

        for farm in self.farms:
            await self.nats.subscribe(subjects.PLOT_PROGRESS, self.jobs.on_progress, farm.id)
        await self.nats.await_work_queue(subjects.PLOT_JOBS)
        await self.nats.subscribe(subjects.SLOT_INFO, on_slot, with_sender=True)
        await self.nats.subscribe(subjects.REWARD_SIGNING_INFO, signer.on_request)
        await self.nats.subscribe(subjects.ARCHIVED_SEGMENT_HEADER, on_segment)
        for farm in self.farms:
            self.spawn(self.jobs.plot_farm(farm))
        self.spawn(self._check_expiry(expiry, info.protocol_info.history_size.in_segments_index()))

    async def _check_expiry(self, expiry: Expiry, current_segment: SegmentIndex) -> None:
        await expiry.check(current_segment, (await self.app_info()).protocol_info)

    # --- the cluster, as the parts ask for it (jobs.JobsLink, farming.FarmingLink) ------------------------

    async def app_info(self) -> FarmerAppInfo:
        return await retry_forever(
            "farmer app info", lambda: self.nats.request(subjects.FARMER_APP_INFO, AppInfoRequest())
        )

    async def enqueue(self, job: PlotJob) -> int:
        message_id = f"{job.job_id}-{job.attempt}"
        return await retry_forever(
            "plot job submission", lambda: self.nats.enqueue(subjects.PLOT_JOBS, job, message_id)
        )

    async def still_queued(self, sequence: int) -> bool:
        return await retry_forever("plot job lookup", lambda: self.nats.queued(subjects.PLOT_JOBS, sequence))

    async def plot_server_alive(self, server_id: str) -> bool:
        key = f"{ComponentKind.PLOT_SERVER}.{server_id}"
        return await retry_forever("membership", lambda: self.nats.kv_get(subjects.MEMBERS, key)) is not None

    async def segment_commitments(self, segments: Iterable[SegmentIndex]) -> Mapping[SegmentIndex, bytes]:
        known = self._segment_commitments
        assert known is not None
        wanted = set(segments)
        return await retry_forever("segment headers", lambda: known.get_many(wanted))

    async def farm_event(self, event: FarmEvent) -> None:
        await self.nats.publish(subjects.FARM_EVENTS, event, event.farm_id)

    async def request_proof(self, request: ProveRequest, timeout: float) -> ProveResponse:
        try:
            return await self.nats.request(subjects.PROVE, request, timeout=timeout, deadline=0)
        except (nats.errors.TimeoutError, TimeoutError) as e:
            raise TimeoutError(str(e)) from e
        except (nats.errors.Error, RemoteError) as e:
            raise ProofServersUnavailableError(str(e) or type(e).__name__) from e

    async def submit_solution(self, request: SubmitSolution) -> SubmitResult:
        return await self.nats.request(subjects.SUBMIT_SOLUTION, request, timeout=5, deadline=5, once=True)

    async def send_signature(self, response: RewardSignatureResponse) -> None:
        await self.nats.publish(subjects.REWARD_SIGNATURE, response)
