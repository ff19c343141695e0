"""Slot farming: every slot, audit every farm (the audit engine), read the winning records, have them
proved (a proof server, or this machine when none answers) and submit the solutions.

Audit and proving are decoupled: a slot is skipped only while the previous slot's audit runs. Wins go
to proving in a task of their own, held to their slot's deadline, so proofs of several slots may be in
flight at once and none holds a later audit back (the official farmer proves within its loop, in well
under a second; a proof server on a CPU takes seconds). What it asks of the cluster is `FarmingLink`:
the plot client implements it over NATS, tests with a fake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from enum import Enum
from typing import Any, Protocol

from autonomys_farmer.cluster import farming
from autonomys_farmer.cluster.farming import SkipReason
from autonomys_farmer.cluster.messages import FarmEvent, FarmEventKind, ProveRequest, ProveResponse, SubmitResult
from autonomys_farmer.cluster.messages import SubmitSolution as SubmitRequest
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.farmer_rpc import SlotInfo
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.proving import RecordWin, prove_wins, winning_records
from autonomys_farmer.protocol.reading import PlottedSectorView
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.protocol.types import SectorIndex, SlotNumber
from autonomys_farmer.services import metrics
from autonomys_farmer.services.storage.auditing import AuditEngine, SectorCandidates
from autonomys_farmer.services.storage.farm import Farm

log = logging.getLogger(__name__)

PROOF_TIMEOUT_S = 1.0
SUBMIT_ATTEMPTS = 4  # controllers asked when the ones reached have their node down


class ProveHere(Enum):
    """A proof request's answer when no proof server took the win: prove it on this machine."""

    PROVE_HERE = "prove here"


PROVE_HERE = ProveHere.PROVE_HERE


class ProofServersUnavailableError(ConnectionError):
    """No proof server took the request (none there, or one answered with an error)."""


class FarmingLink(Protocol):
    """What slot farming asks of the cluster."""

    async def request_proof(self, request: ProveRequest, timeout: float) -> ProveResponse:
        """A proof server's answer; TimeoutError when none answered in time, ProofServersUnavailableError
        when none is there."""
        ...

    async def submit_solution(self, request: SubmitRequest) -> SubmitResult:
        """Submit once through one controller (never again after a timeout: it may have reached a node)."""
        ...

    async def farm_event(self, event: FarmEvent) -> None: ...


class SlotFarming:
    def __init__(
        self,
        engine: AuditEngine,
        compute: Compute,
        kzg: Kzg,
        reward_address: bytes,
        link: FarmingLink,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        farming_timeout: float = farming.FARMING_TIMEOUT_S,
        proof_timeout: float = PROOF_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.compute = compute
        self.kzg = kzg
        self.reward_address = reward_address
        self.link = link
        self.spawn = spawn
        self.farming_timeout = farming_timeout
        self.proof_timeout = proof_timeout
        self.slots = farming.SlotSequence()
        self._refused_senders: set[str] = set()
        self.proof_time = farming.ProofTime()
        self.breaker = farming.ProofServerBreaker()
        self.auditing = False
        self.proving = 0
        self._local_proving = asyncio.Lock()  # proofs made here run one batch at a time
        self.counts = dict.fromkeys(("slots", "wins", "accepted", "late", "invalid", "local_proofs", "dropped"), 0)
        self.skipped = dict.fromkeys(SkipReason, 0)
        self.audit_ms = 0.0
        self.audited = 0
        self.farm_audit_ms: dict[str, float] = {}

    # --- slots ----------------------------------------------------------------------------------------

    def on_slot(self, slot: SlotInfo, sender: str = "") -> None:
        """A slot from a controller (every controller sends each one): audit it unless the previous
        slot's audit is still running. An implausible one is counted, and logged once per sender."""
        now = time.monotonic()
        implausible = self.slots.implausible
        if not self.slots.accept(slot.slot_number, now):
            if self.slots.implausible > implausible:
                self._skip(SkipReason.IMPLAUSIBLE)
                if sender not in self._refused_senders:
                    self._refused_senders.add(sender)
                    log.warning(
                        "slot %d from %s refused: the recent slots put the clock at slot %.0f (its later "
                        "refusals are counted)", slot.slot_number, sender or "?", self.slots.expected(now) or 0,
                    )  # fmt: skip
            return
        self.counts["slots"] += 1
        if self.auditing:
            self._skip(SkipReason.AUDIT_RUNNING)
            return
        self.auditing = True
        self.spawn(self._farm_slot(slot, now + self.farming_timeout))

    def _skip(self, reason: SkipReason) -> None:
        self.skipped[reason] += 1
        metrics.SKIPPED_SLOTS.labels(reason.value).inc()
        if reason is SkipReason.AUDIT_RUNNING:
            for farm in self.engine.farms:
                metrics.FARM_SKIPPED_SLOTS.labels(farm.id).inc()

    async def _farm_slot(self, slot: SlotInfo, deadline: float) -> None:
        try:
            try:
                audit = await asyncio.to_thread(self.engine.audit, slot.global_challenge, slot.voting_solution_range)
            finally:
                self.auditing = False
            self.audit_ms, self.audited = round(audit.seconds * 1000, 2), audit.sectors
            metrics.SLOT_AUDITING_TIME.observe(audit.seconds)
            for farm_id, seconds in audit.farm_seconds.items():
                self.farm_audit_ms[farm_id] = round(seconds * 1000, 2)
                metrics.FARM_AUDITING_TIME.labels(farm_id).observe(seconds)
            for farm_id, why in audit.failed.items():
                log.warning("slot %d: farm %s not fully audited: %s", slot.slot_number, farm_id[:8], why)
            if audit.candidates:
                wins = await asyncio.to_thread(self._read_wins, audit.candidates)
                if wins:
                    await self._prove_and_submit(slot.slot_number, wins, deadline)
        except Exception as e:
            log.warning("slot %d: farming failed: %s", slot.slot_number, e)

    def _read_wins(self, candidates: Collection[SectorCandidates]) -> list[tuple[Farm, RecordWin]]:
        """The winning records (encoded chunks) of the best sectors, read from their farms: at most
        MAX_WINS_PER_SLOT, best distance first."""
        wins: list[tuple[Farm, RecordWin]] = []
        for candidate in candidates:
            farm, index = candidate.farm, candidate.audit.sector_index
            metadata = farm.sector_metadata(index)
            if metadata is None or not candidate.still_valid():
                continue
            view = PlottedSectorView.open(farm.source(index), metadata)
            for piece_offset, _distance in winning_records(view, candidate.audit)[
                : farming.MAX_WINS_PER_SLOT - len(wins)
            ]:
                win = RecordWin.read(farm.public_key, self.reward_address, view, piece_offset, candidate.audit.s_bucket)
                if candidate.still_valid():  # not replotted while read
                    wins.append((farm, win))
            if len(wins) >= farming.MAX_WINS_PER_SLOT:
                break
        return wins

    # --- proving and submission -------------------------------------------------------------------------

    async def _prove_and_submit(
        self, slot_number: SlotNumber, wins: list[tuple[Farm, RecordWin]], deadline: float
    ) -> None:
        """A slot's wins, sent for proving together; each solution is submitted the moment it is proved
        (a later win must not hold an earlier one back past the deadline). Records how long proving took
        per win (the estimate and the metric)."""
        left = deadline - time.monotonic()
        count = farming.wins_to_prove(self.farming_timeout - left, self.farming_timeout, self.proof_time.seconds,
                                      len(wins), self.proving)  # fmt: skip
        if count < len(wins):
            log.info(
                "slot %d: %d wins, %d fit the %.1fs left (a proof takes ~%.1fs, %d of earlier slots in flight): "
                "the rest dropped", slot_number, len(wins), count, left, self.proof_time.seconds, self.proving,
            )  # fmt: skip
            self.counts["dropped"] += len(wins) - count
        wins = wins[:count]
        if not wins:
            return
        self.counts["wins"] += len(wins)
        self.proving += len(wins)
        started = time.perf_counter()
        finished: list[float] = []

        async def settle(i: int, solution: Solution | None) -> None:
            farm = wins[i][0]
            self.proving -= 1
            result = "Timeout"
            if solution is not None:  # late or not, it says how long a proof takes here
                finished.append(time.perf_counter() - started)
            if solution is not None and time.monotonic() > deadline:
                log.info("slot %d: a solution proved after the slot's deadline is not submitted (the node would "
                         "ignore it)", slot_number)  # fmt: skip
                solution = None
            if solution is None:
                self.counts["dropped"] += 1
            else:
                try:
                    accepted = await self._submit_solution(farm, slot_number, solution)
                    result = "Success" if accepted else "Rejected"
                except Exception as e:  # e.g. no controller answered in time: not sent again
                    log.warning("slot %d: submitting a solution failed: %s", slot_number, str(e) or type(e).__name__)
                    result = "Failed"
            metrics.FARM_PROVING_TIME.labels(farm.id, result).observe(time.perf_counter() - started)

        await self._prove([win for _farm, win in wins], deadline, settle)
        if finished:
            self.proof_time.observe(max(finished) / len(finished))

    async def _prove(
        self, wins: list[RecordWin], deadline: float, settle: Callable[[int, Solution | None], Awaitable[None]]
    ) -> None:
        """Proof servers get the wins at once (one proves them as a batch) with the slot's remaining
        budget; wins no proof server takes are proved here, together. `settle(i, solution or None)` runs
        for each win as soon as its fate is known. A proof server that is there but too slow costs the
        win (a local proof would land late too); the breaker bypasses proof servers that keep missing
        while a proof here can land."""
        local: list[int] = []

        async def remote(i: int, timeout: float) -> None:
            answer = await self._request_proof(wins[i], timeout)
            if answer is PROVE_HERE:
                local.append(i)
            else:
                await settle(i, answer if isinstance(answer, Solution) else None)

        now = time.monotonic()
        if self.breaker.use_proof_servers(now, local_proof_lands=now + self.proof_time.seconds < deadline):
            timeout = max(self.proof_timeout, deadline - time.monotonic())
            await asyncio.gather(*(remote(i, timeout) for i in range(len(wins))))
        else:
            local = list(range(len(wins)))
        if local:
            await self._prove_here(sorted(local), wins, deadline, settle)

    async def _prove_here(
        self,
        indices: list[int],
        wins: list[RecordWin],
        deadline: float,
        settle: Callable[[int, Solution | None], Awaitable[None]],
    ) -> None:
        """Wins proved on this machine, one batch at a time: a batch that can no longer land before its
        deadline (by the running estimate) is dropped rather than proved late."""
        async with self._local_proving:
            if time.monotonic() + self.proof_time.seconds >= deadline:
                log.info("%d win(s) dropped: their slot's deadline passes before a proof here could land",
                         len(indices))  # fmt: skip
                for i in indices:
                    await settle(i, None)
                return
            self.counts["local_proofs"] += len(indices)
            proved = await asyncio.to_thread(prove_wins, self.compute, self.kzg, [wins[i] for i in indices])
        for i, result in zip(indices, proved, strict=True):
            if not isinstance(result, Solution):
                log.warning("proving sector %d failed: %s", wins[i].sector_index, result)
            await settle(i, result if isinstance(result, Solution) else None)

    async def _request_proof(self, win: RecordWin, timeout: float) -> Solution | ProveHere | None:
        """A proof server's solution, PROVE_HERE or None (the win is dropped)."""
        try:
            response = await self.link.request_proof(ProveRequest(win, timeout), timeout)
            self.breaker.answered()
            if response.solution is not None:
                return response.solution
            log.warning("proof server failed: %s; proving locally", response.error)
        except TimeoutError:
            if self.breaker.missed(time.monotonic()) is farming.Miss.DROP:
                log.info("no proof within the slot's %.1fs budget: win dropped", timeout)
                return None
            log.warning("proof servers keep missing the slot budget: proving locally for %.0fs", self.breaker.bypass_s)
        except ProofServersUnavailableError as e:
            log.info("no proof server answered (%s); proving locally", str(e) or type(e).__name__)
        return PROVE_HERE

    async def _submit_solution(self, farm: Farm, slot_number: SlotNumber, solution: Solution) -> bool:
        """Submit through one controller, once; only a controller whose node is down hands it back for
        another."""
        request = SubmitRequest(slot_number, solution)
        for _ in range(SUBMIT_ATTEMPTS):
            result = await self.link.submit_solution(request)
            if result.submitted:
                break
            log.info("slot %d: solution handed back unsent (%s): asking another controller", slot_number, result.error)
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
        await self.link.farm_event(FarmEvent(farm.id, kind, SectorIndex(solution.sector_index), slot_number,
                                             result.error))  # fmt: skip
        return result.accepted
