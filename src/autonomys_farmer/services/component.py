"""What every cluster component shares: a NATS bus, an ephemeral instance id, a heartbeat that the
controller turns into membership, and an optional bulk TCP server advertised in that heartbeat."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from autonomys_farmer.cluster import messages as m
from autonomys_farmer.services import bulk
from autonomys_farmer.services.nats_bus import Bus

log = logging.getLogger(__name__)


class Component:
    kind = ""

    def __init__(self, nats_servers: list[str]) -> None:
        self.nats_servers = nats_servers
        self.instance_id = uuid.uuid4().hex[:16]
        self.bus: Bus | None = None
        self.bulk: bulk.BulkServer | None = None
        self.address = ""
        self.item_type = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failure: BaseException | None = None

    @property
    def nats(self) -> Bus:
        assert self.bus is not None, "component not started"
        return self.bus

    async def start(self) -> None:
        self.bus = await Bus.connect(self.nats_servers, f"{self.kind}-{self.instance_id}")

    async def start_bulk(self, handler: bulk.Handler, port: int = 0) -> None:
        self.bulk = bulk.BulkServer(handler)
        await self.bulk.start("0.0.0.0", port)
        self.address = self.bulk.address(bulk.advertised_host())

    def status(self) -> dict[str, Any]:
        """Figures for the status view, sent with every heartbeat."""
        return {}

    async def heartbeat_forever(self) -> None:
        subject = f"{m.HEARTBEAT}.{self.kind}.{self.instance_id}"
        while True:
            beat = m.Heartbeat(self.kind, self.instance_id, self.address, self.item_type, time.time(), self.status())
            try:
                await self.nats.publish(subject, beat)
            except Exception as e:
                log.debug("heartbeat not sent: %s", e)
            await asyncio.sleep(m.HEARTBEAT_INTERVAL_S)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task failed", self.kind, exc_info=task.exception())
            self._failure = task.exception()

    async def run(self) -> None:
        """Start, then serve until cancelled; a crashed background task ends the component."""
        await self.start()
        self.spawn(self.heartbeat_forever())
        log.info("%s %s running%s", self.kind, self.instance_id, f" (bulk on {self.address})" if self.address else "")
        try:
            while self._failure is None:
                await asyncio.sleep(0.5)
            raise RuntimeError(f"{self.kind}: background task failed") from self._failure
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self.bulk is not None:
                await self.bulk.close()
            if self.bus is not None:
                await self.bus.close()
