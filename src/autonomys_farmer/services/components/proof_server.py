"""Proof server: turns a farm's winning record into a full Solution (PoS table regeneration, record
recovery, KZG chunk witness) on the best backend here, so plot clients need no heavy compute.
Requests arrive on a queue group: any one live proof server answers each."""

from __future__ import annotations

import asyncio
import logging
import time

from autonomys_farmer.cluster import subjects
from autonomys_farmer.cluster.messages import ComponentKind, ProofServerStatus, ProveResponse
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.proving import RecordWin, prove_win
from autonomys_farmer.services.components.component import Component

log = logging.getLogger(__name__)


class ProofServer(Component):
    kind = ComponentKind.PROOF_SERVER

    def __init__(self, nats_servers: list[str], compute: Compute, kzg: Kzg, concurrency: int = 1) -> None:
        super().__init__(nats_servers)
        self.compute = compute
        self.kzg = kzg
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self.counts = {"proved": 0, "failed": 0}
        self.last_ms = 0.0

    def status(self) -> ProofServerStatus:
        return ProofServerStatus(
            **self.counts, backend=self.compute.name, device=self.compute.device, last_ms=self.last_ms
        )

    async def start(self) -> None:
        started = time.monotonic()
        await asyncio.to_thread(self.compute.warm_up)  # no proof pays for kernel compilation
        log.info("%s backend on %s ready in %.1fs", self.compute.name, self.compute.device, time.monotonic() - started)
        await super().start()
        await self.nats.serve(subjects.PROVE, self._prove)

    async def _prove(self, win: RecordWin) -> ProveResponse:
        async with self._slots:
            started = time.monotonic()
            try:
                solution = await asyncio.to_thread(prove_win, self.compute, self.kzg, win)
            except Exception as e:
                self.counts["failed"] += 1
                log.warning("proving sector %d offset %d failed: %s", win.sector_index, win.record.piece_offset, e)
                return ProveResponse(None, str(e))
        self.counts["proved"] += 1
        self.last_ms = round((time.monotonic() - started) * 1000, 1)
        log.info("proved sector %d record %d in %.0f ms", win.sector_index, win.record.piece_offset, self.last_ms)
        return ProveResponse(solution)
