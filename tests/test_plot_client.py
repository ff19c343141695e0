"""The plot client's parts without NATS: slot farming (audits never wait for proofs; several slots'
proofs in flight, each to its own deadline), sector jobs (a job that waits is never issued twice)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from farms import GENESIS

from autonomys_farmer.cluster import farming
from autonomys_farmer.cluster.farming import SkipReason
from autonomys_farmer.cluster.messages import (
    FarmEvent,
    PlotJob,
    PlotProgress,
    PlotStage,
    ProveRequest,
    ProveResponse,
    SubmitResult,
    SubmitSolution,
)
from autonomys_farmer.protocol.constants import U64_MAX
from autonomys_farmer.protocol.farmer_rpc import FarmerAppInfo, SlotInfo
from autonomys_farmer.protocol.sector import FarmerProtocolInfo, derive_global_challenge
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.protocol.types import HistorySize, SectorIndex, SlotNumber
from autonomys_farmer.services.components.plot_client.farming import SlotFarming
from autonomys_farmer.services.components.plot_client.jobs import SectorJobs
from autonomys_farmer.services.storage.auditing import AuditEngine, warm_up_audits
from autonomys_farmer.services.storage.farm import Farm
from autonomys_farmer.services.tools.synthetic_history import plotted_two_piece_sector

INFO = FarmerProtocolInfo(HistorySize(1), 2, 5, (1, 10), 4)
PROOF_S = 2.5  # a proof server on a loaded CPU: several slots long, well within the 4 s budget


@pytest.fixture(scope="module")
def plotted_farm(tmp_path_factory: pytest.TempPathFactory, compute, kzg) -> Path:
    directory = tmp_path_factory.mktemp("plot-client") / "farm"
    farm = Farm(directory, 1, 2, GENESIS)
    _history, _indices, plotted = plotted_two_piece_sector(compute, kzg, farm.public_key, INFO)
    farm.write_sector(SectorIndex(0), plotted.data, plotted.metadata)
    farm.close()
    warm_up_audits(compute)  # as the plot client does before it joins: no slot pays for compilation
    return directory


class SlowProofServer:
    """A FarmingLink whose proof server takes PROOF_S per request and whose node accepts everything."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.submitted: list[int] = []

    async def request_proof(self, request: ProveRequest, timeout: float) -> ProveResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(PROOF_S)
        finally:
            self.in_flight -= 1
        win = request.win
        solution = Solution(
            win.public_key, win.reward_address, win.sector_index, win.history_size, win.record.piece_offset,
            win.record_metadata.commitment, win.record_metadata.witness, bytes(32), bytes(48), bytes(160),
        )  # fmt: skip
        return ProveResponse(solution)

    async def submit_solution(self, request: SubmitSolution) -> SubmitResult:
        self.submitted.append(int(request.slot_number))
        return SubmitResult(accepted=True)

    async def farm_event(self, event: FarmEvent) -> None:
        pass


def test_audits_never_wait_for_proofs(plotted_farm: Path, compute, kzg) -> None:
    """Slots every 0.4 s, proofs taking 2.5 s: every slot is audited and proved, proofs of several slots
    are in flight at once, and only a slot whose predecessor's audit still runs would be skipped."""
    link = SlowProofServer()

    async def run() -> SlotFarming:
        farm = Farm(plotted_farm, 1, 2, GENESIS)
        tasks: set[asyncio.Task[Any]] = set()

        def spawn(coro: Any) -> None:
            task = asyncio.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        engine = AuditEngine(compute, [farm])
        slots = SlotFarming(engine, compute, kzg, bytes(32), link, spawn, farming_timeout=4.0)
        for number in range(1, 11):
            challenge = derive_global_challenge(bytes(32), number)
            slots.on_slot(SlotInfo(SlotNumber(number), challenge, U64_MAX, U64_MAX))
            await asyncio.sleep(0.4)
        while tasks:
            await asyncio.sleep(0.1)
        for number in range(1, 11):  # which slots the farm (a fresh identity each run) wins in
            audit = engine.audit(derive_global_challenge(bytes(32), number), U64_MAX)
            if slots._read_wins(audit.candidates):
                winners.add(number)
        farm.close()
        return slots

    winners: set[int] = set()
    slots = asyncio.run(run())
    assert slots.counts["slots"] == 10
    assert slots.skipped[SkipReason.AUDIT_RUNNING] == 0  # an audit of one sector takes milliseconds
    # Proofs of several slots at once: every winning slot of the 2 s after the first win (5 slots, shorter than
    # a proof) is in flight before the first proof comes back. Which slots win is chance (a fresh identity).
    assert winners, "no slot won"
    first = min(winners)
    assert link.most_in_flight >= min(3, len({n for n in winners if n <= first + 5}))
    assert slots.counts["wins"] > 0 and slots.counts["accepted"] == slots.counts["wins"] == len(link.submitted)
    # Every slot that won well before the first proof came back (2.5 s in) was proved beside the others; after
    # that the proof-time estimate lets only what fits the deadline go.
    assert {n for n in winners if n <= 5} <= set(link.submitted) <= winners and slots.proving == 0


def test_a_slot_is_skipped_only_while_the_previous_audit_runs(plotted_farm: Path, compute, kzg, caplog) -> None:
    link = SlowProofServer()

    async def run() -> SlotFarming:
        farm = Farm(plotted_farm, 1, 2, GENESIS)
        engine = AuditEngine(compute, [farm])
        audit = engine.audit

        def slow_audit(*args: Any) -> Any:
            time.sleep(0.5)
            return audit(*args)

        engine.audit = slow_audit  # type: ignore[method-assign]
        slots = SlotFarming(engine, compute, kzg, bytes(32), link, lambda coro: tasks.append(asyncio.create_task(coro)))
        tasks: list[asyncio.Task[Any]] = []
        for number in (1, 2, 3):  # 2 and 3 arrive while 1 is audited
            slots.on_slot(SlotInfo(SlotNumber(number), derive_global_challenge(bytes(32), number), U64_MAX, U64_MAX))
            await asyncio.sleep(0.1)
        for number, sender in ((900, "controller-a"), (901, "controller-a"), (902, "controller-b")):
            slots.on_slot(SlotInfo(SlotNumber(number), bytes(32), U64_MAX, U64_MAX), sender)  # far from the clock
        await asyncio.gather(*tasks)
        farm.close()
        return slots

    with caplog.at_level(logging.WARNING):
        slots = asyncio.run(run())
    assert slots.skipped == {SkipReason.AUDIT_RUNNING: 2, SkipReason.IMPLAUSIBLE: 3}
    assert slots.counts["slots"] == 3
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2 and "controller-a" in refusals[0] and "controller-b" in refusals[1]  # once per sender


class WaitingQueue:
    """A JobsLink whose jobs wait in the work queue, as when every plot server is busy for long."""

    def __init__(self, queued: bool = True, alive: bool = True) -> None:
        self.jobs: list[PlotJob] = []
        self.queued, self.alive = queued, alive

    async def app_info(self) -> FarmerAppInfo:
        return FarmerAppInfo(GENESIS, (), False, 4.0, INFO)

    async def enqueue(self, job: PlotJob) -> int:
        self.jobs.append(job)
        return len(self.jobs)

    async def still_queued(self, sequence: int) -> bool:
        return self.queued

    async def plot_server_alive(self, server_id: str) -> bool:
        return self.alive

    async def segment_commitments(self, segments: Any) -> dict[Any, bytes]:
        return {}

    async def farm_event(self, event: FarmEvent) -> None:
        pass


@pytest.mark.parametrize(
    ("queued", "alive", "issued"),
    [(True, True, 2), (False, True, 2), (True, False, 2), (False, False, 4)],
)
def test_a_silent_job_is_issued_again_only_when_nobody_can_plot_it(
    tmp_path: Path, compute, kzg, queued: bool, alive: bool, issued: int
) -> None:
    """Two sectors to plot, jobs silent for 0.3 s, watched for 0.5 s: only when the job has left the queue
    and the plot server that reported on it is gone is a job issued again (once per silence)."""
    link = WaitingQueue(queued, alive)

    async def run() -> None:
        farm = Farm(tmp_path / "farm", 2, 2, GENESIS)
        tasks: list[asyncio.Task[Any]] = []
        jobs = SectorJobs([farm], compute, kzg, link, lambda coro: tasks.append(asyncio.create_task(coro)),
                          job_silence_s=0.3, cluster_secret=None)  # fmt: skip
        loop = asyncio.create_task(jobs.plot_farm(farm))
        await asyncio.sleep(0.1)
        for job in list(link.jobs):  # a plot server takes each job and says so once
            await jobs.on_progress(PlotProgress(job.job_id, "server-1", PlotStage.DOWNLOADING, total=2))
        await asyncio.sleep(0.5)
        loop.cancel()
        for task in tasks:
            task.cancel()
        farm.close()

    asyncio.run(run())
    assert len(link.jobs) == issued
    assert {job.sector_index for job in link.jobs} == {0, 1}
    if issued > 2:
        assert {job.attempt for job in link.jobs} == {0, 1}


def test_the_reissue_rule() -> None:
    assert not farming.issue_job_again(still_queued=True, holders_alive=False)  # redelivered by the queue
    assert not farming.issue_job_again(still_queued=False, holders_alive=True)  # being plotted
    assert farming.issue_job_again(still_queued=False, holders_alive=False)  # lost with its server


def test_wire_round_trip_of_the_plot_client_status() -> None:
    from autonomys_farmer.cluster import messages as m
    from autonomys_farmer.cluster import wire

    status = m.PlotClientStatus(slots=5, skipped_audit_running=1, skipped_implausible=2, audit_ms=3.5, audited=9)
    assert wire.decode(m.PlotClientStatus, wire.encode(status)) == status
    assert dataclasses.asdict(status)["proving"] == 0
