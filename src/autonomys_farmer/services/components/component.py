"""What every cluster component shares: a NATS bus, an ephemeral instance id, a heartbeat (with its
typed status) that the controller turns into membership, and an optional bulk TCP server advertised in
that heartbeat. Its tasks run in one asyncio.TaskGroup: a task that fails ends the component (the
supervisor restarts it) instead of leaving it half alive."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from autonomys_farmer.cluster import subjects
from autonomys_farmer.cluster.messages import (
    HEARTBEAT_INTERVAL_S,
    CacheItemType,
    ComponentKind,
    ComponentStatus,
    Heartbeat,
)
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.services.storage.farm import FarmError
from autonomys_farmer.services.transport import bulk
from autonomys_farmer.services.transport.credentials import Credentials
from autonomys_farmer.services.transport.nats_bus import Bus, NatsConfigError

log = logging.getLogger(__name__)
HOST = socket.gethostname()


class Component:
    kind: ComponentKind

    def __init__(self, nats_servers: list[str]) -> None:
        self.nats_servers = nats_servers
        self.instance_id = uuid.uuid4().hex[:16]
        self.bus: Bus | None = None
        self.bulk: bulk.BulkServer | None = None
        self.address = ""
        self.advertise_host: str | None = None  # what peers dial for our TCP data (default: outbound address)
        self.credentials = Credentials()  # NATS login and cluster secret, handed down by who builds us
        self.item_type: CacheItemType | None = None
        self._group: asyncio.TaskGroup | None = None
        self._pending: list[Coroutine[Any, Any, Any]] = []
        self.started_at = time.time()

    @property
    def nats(self) -> Bus:
        assert self.bus is not None, "component not started"
        return self.bus

    async def start(self) -> None:
        """Connect, subscribe, spawn background tasks; `run` calls it once."""
        self.bus = await Bus.connect(self.nats_servers, f"{self.kind}-{self.instance_id}", auth=self.credentials.nats)

    async def warm_up(self, compute: Compute, compile_kernels: Callable[[], object]) -> None:
        """Compile (or load from the cache) a computing component's kernels once connected, before it
        announces itself (its heartbeat starts when `start` returns)."""
        backend = f"{compute.name} backend on {compute.device}"
        log.info("%s: connected to NATS; compiling the %s kernels (minutes on a cold cache)", self.kind, backend)
        started = time.monotonic()
        await asyncio.to_thread(compile_kernels)
        log.info("%s ready in %.1fs", backend, time.monotonic() - started)

    async def start_bulk(self, handler: bulk.Handler, port: int = 0) -> None:
        self.bulk = bulk.BulkServer(handler, self.credentials.cluster_secret)
        await self.bulk.start(bulk.listen_host(self.advertise_host), port)
        self.address = self.bulk.address(self.advertise_host or bulk.outbound_address())

    def status(self) -> ComponentStatus | None:
        """Figures for the status view and metrics, sent with every heartbeat."""
        return None

    async def heartbeat_forever(self) -> None:
        while True:
            beat = Heartbeat(
                self.kind,
                self.instance_id,
                self.address,
                self.item_type,
                time.time(),
                self.status(),
                HOST,
                self.started_at,
            )
            try:
                await self.nats.publish(subjects.HEARTBEAT, beat, self.kind, self.instance_id)
            except Exception as e:
                log.debug("heartbeat not sent: %s", e)
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a task for the component's lifetime (in its task group; before `run`, once it starts)."""
        if self._group is None:
            self._pending.append(coro)
        else:
            self._group.create_task(coro)

    async def run(self) -> None:
        """Start, then serve until cancelled; a failed task ends the component with its error."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await self.start()
                for coro in self._pending:
                    group.create_task(coro)
                self._pending.clear()
                group.create_task(self.heartbeat_forever())
                where = f" (bulk on {self.address})" if self.address else ""
                log.info("%s %s running%s", self.kind, self.instance_id, where)
        except* Exception as failed:
            first = failed.exceptions[0]
            # An operator's problem (a path, NATS, a farm) is one line; anything else is a bug: traceback.
            expected = isinstance(first, OSError | NatsConfigError | FarmError)
            log.error("%s failed: %s", self.kind, first, exc_info=None if expected else first)
            raise RuntimeError(f"{self.kind}: {first}") from first
        finally:
            self._group = None
            if self.bulk is not None:
                await self.bulk.close()
            if self.bus is not None:
                await self.bus.close()
