"""Proof server: turns a farm's winning record into a full Solution (PoS table regeneration, record
recovery, KZG chunk witness) on the best backend here, so plot clients need no heavy compute.
Requests arrive on a queue group: any one live proof server answers each. Wins that arrive together
(several wins of one slot) are proved as one batch: their chunk witnesses come from one MSM."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque

import numpy as np

from autonomys_farmer.cluster import subjects
from autonomys_farmer.cluster.farming import FARMING_TIMEOUT_S
from autonomys_farmer.cluster.messages import ComponentKind, ProofServerStatus, ProveRequest, ProveResponse
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.proving import RecordWin, prove_wins, warm_up_proving
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.services.components.component import Component

log = logging.getLogger(__name__)

MAX_BATCH = 16  # wins proved together at most
LATENCY_WINDOW = 512  # proofs the p50/p99 figures cover

Pending = tuple[RecordWin, float, float, "asyncio.Future[ProveResponse]"]  # win, arrived, deadline, answer


class ProofServer(Component):
    kind = ComponentKind.PROOF_SERVER

    def __init__(self, nats_servers: list[str], compute: Compute, kzg: Kzg, concurrency: int = 1) -> None:
        super().__init__(nats_servers)
        self.compute = compute
        self.kzg = kzg
        self.workers = max(1, concurrency)
        self._queue: asyncio.PriorityQueue[tuple[float, int, Pending]] = asyncio.PriorityQueue()
        self._arrivals = itertools.count()  # ties of deadline keep arrival order
        self.counts = {"proved": 0, "failed": 0, "expired": 0, "batches": 0}
        self.last_ms = 0.0
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def status(self) -> ProofServerStatus:
        p50, p99 = (
            (round(float(v), 1) for v in np.percentile(self._latencies_ms, (50, 99)))
            if self._latencies_ms
            else (0.0, 0.0)
        )
        return ProofServerStatus(
            **self.counts,
            backend=self.compute.name,
            device=self.compute.device,
            last_ms=self.last_ms,
            p50_ms=p50,
            p99_ms=p99,
            queued=self._queue.qsize(),
        )

    async def start(self) -> None:
        await super().start()  # NATS first: trouble there is named in seconds, not after compiling
        await self.warm_up(self.compute, lambda: warm_up_proving(self.compute, self.kzg))  # no proof compiles
        for _ in range(self.workers):
            self.spawn(self._prove_batches())
        await self.nats.serve(subjects.PROVE, self._prove, concurrent=True)

    async def _prove(self, request: ProveRequest) -> ProveResponse:
        """Queue a win by its deadline: its budget, at most the farming timeout (a request asking for
        minutes would only hold the queue: no node takes a proof that late)."""
        future: asyncio.Future[ProveResponse] = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        deadline = now + min(request.budget_s, FARMING_TIMEOUT_S)
        self._queue.put_nowait((deadline, next(self._arrivals), (request.win, now, deadline, future)))
        return await future

    async def _prove_batches(self) -> None:
        """Take the queued wins with the earliest deadlines (up to MAX_BATCH) and prove them together:
        earliest deadline first, so wins that can still land go before those that cannot."""
        while True:
            batch = self._unexpired([(await self._queue.get())[2]])
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch += self._unexpired([self._queue.get_nowait()[2]])
            if not batch:
                continue
            wins = [win for win, _, _, _ in batch]
            started = time.monotonic()
            try:
                results: list[Solution | Exception] = list(
                    await asyncio.to_thread(prove_wins, self.compute, self.kzg, wins)
                )
            except Exception as e:  # the batch as a whole failed (e.g. the device): every win fails
                results = [e] * len(batch)
            self.counts["batches"] += 1
            took_ms = (time.monotonic() - started) * 1000
            for (win, arrived, _deadline, future), result in zip(batch, results, strict=True):
                self._answer(win, arrived, future, result, took_ms, len(batch))

    def _unexpired(self, pending: list[Pending]) -> list[Pending]:
        """Requests whose slot budget is already spent are answered at once, not proved: after a stall
        the queue must not be worked through proof by useless proof."""
        now, kept = time.monotonic(), []
        for item in pending:
            win, _arrived, deadline, future = item
            if now < deadline:
                kept.append(item)
            elif not future.done():
                self.counts["expired"] += 1
                log.info("sector %d record %d: slot budget spent before proving; dropped",
                         win.sector_index, win.record.piece_offset)  # fmt: skip
                future.set_result(ProveResponse(None, "the slot's budget was spent before proving started"))
        return kept

    def _answer(
        self,
        win: RecordWin,
        arrived: float,
        future: asyncio.Future[ProveResponse],
        result: Solution | Exception,
        took_ms: float,
        batch: int,
    ) -> None:
        if future.done():  # the request was cancelled (connection gone)
            return
        if isinstance(result, Exception):
            self.counts["failed"] += 1
            log.warning("proving sector %d offset %d failed: %s", win.sector_index, win.record.piece_offset, result)
            future.set_result(ProveResponse(None, str(result) or type(result).__name__))
            return
        self.counts["proved"] += 1
        latency_ms = (time.monotonic() - arrived) * 1000
        self._latencies_ms.append(latency_ms)
        self.last_ms = round(latency_ms, 1)
        log.info(
            "proved sector %d record %d in %.0f ms (batch of %d: %.0f ms)",
            win.sector_index, win.record.piece_offset, latency_ms, batch, took_ms,
        )  # fmt: skip
        future.set_result(ProveResponse(result))
