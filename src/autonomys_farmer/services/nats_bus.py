"""NATS connection shared by every cluster component: payload-size check, retrying requests, queue-group
responders, JetStream streams and KV buckets created on first use with replicas matching the cluster."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.kv import KeyValue

from autonomys_farmer.cluster import wire

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_MAX_PAYLOAD = 3 * 1024 * 1024
REQUEST_DEADLINE_S = 60.0  # as the official cluster: retry a request for at most a minute


class NatsConfigError(RuntimeError):
    pass


class Bus:
    def __init__(self, nc: Client, name: str) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=10)
        self.name = name
        self._kv: dict[str, KeyValue] = {}

    @classmethod
    async def connect(cls, servers: list[str], name: str, initial_timeout: float = 120.0) -> Bus:
        """Connect (waiting for the servers to come up) and check max_payload."""

        async def on_error(e: Exception) -> None:
            log.debug("nats: %s", e)

        async def on_disconnect() -> None:
            if not (nc.is_closed or nc.is_draining):  # our own close() is not an outage
                log.warning("%s: disconnected from NATS; reconnecting", name)

        async def on_reconnect() -> None:
            log.info("%s: reconnected to NATS %s", name, nc.connected_url.netloc if nc.connected_url else "")

        loop = asyncio.get_running_loop()
        deadline = loop.time() + initial_timeout
        delay = 0.2
        while True:
            try:
                # With unlimited reconnects nats-py retries an unreachable first server forever itself:
                # bound each attempt so `initial_timeout` holds and the wait is logged.
                nc = await asyncio.wait_for(
                    nats.connect(
                        servers=servers,
                        name=name,
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=0.5,
                        connect_timeout=2,
                        error_cb=on_error,
                        disconnected_cb=on_disconnect,
                        reconnected_cb=on_reconnect,
                    ),
                    max(1.0, min(10.0, deadline - loop.time())),
                )
                break
            except (nats.errors.NoServersError, OSError, TimeoutError) as e:
                if loop.time() > deadline:
                    raise NatsConfigError(
                        f"no NATS server reachable at {', '.join(servers)}: {str(e) or 'timed out'}"
                    ) from e
                log.info("waiting for NATS at %s (%s)", ", ".join(servers), str(e) or "timed out")
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 5.0)
        if nc.max_payload < MIN_MAX_PAYLOAD:
            await nc.close()
            raise NatsConfigError(
                f"NATS max_payload is {nc.max_payload} bytes; the cluster needs at least {MIN_MAX_PAYLOAD} "
                "(set `max_payload: 3MB` in the nats-server config)"
            )
        return cls(nc, name)

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()

    @property
    def replicas(self) -> int:
        """JetStream replicas for our streams/buckets: up to 3, never more than the known servers."""
        hosts = {f"{u.hostname}:{u.port}" for u in self.nc.servers}
        return max(1, min(3, len(hosts)))

    async def replicas_for_new_state(self, wait_s: float = 10.0) -> int:
        """Replicas for a stream or bucket about to be created (its first creator decides them for
        good). A clustered server announces its peers once its routes are up, which can lag our
        connect: wait a little for up to three of them rather than create an unreplicated stream."""
        if not getattr(self.nc, "_server_info", {}).get("cluster"):  # a lone server: nothing to wait for
            return 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self.replicas < 3 and loop.time() < deadline:
            await asyncio.sleep(0.2)
        return self.replicas

    # --- core NATS ------------------------------------------------------------------------------

    async def publish(self, subject: str, message: Any) -> None:
        data = message if isinstance(message, bytes) else wire.encode(message)
        await self.nc.publish(subject, data)

    async def request(
        self, subject: str, message: Any, timeout: float = 5.0, deadline: float = REQUEST_DEADLINE_S
    ) -> bytes:
        """Request with retries on no responders / timeout (backoff 0.5 s × 1.5, ±50 %) until `deadline`."""
        data = message if isinstance(message, bytes) else wire.encode(message)
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        delay = 0.5
        while True:
            try:
                return (await self.nc.request(subject, data, timeout=timeout)).data
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError):
                if loop.time() + delay > end:
                    raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 1.5, 10.0)

    async def request_as(self, cls: type[T], subject: str, message: Any, **kw: Any) -> T:
        return wire.decode(cls, await self.request(subject, message, **kw))

    async def serve(self, subject: str, handler: Callable[[bytes], Awaitable[Any | None]], queue: str = "") -> Any:
        """Answer requests on `subject` (one member of `queue` answers each); `None` sends no reply."""

        async def on_message(msg: Msg) -> None:
            try:
                reply = await handler(msg.data)
            except Exception as e:  # a bad request must not take the responder down
                log.warning("%s: request on %s failed: %s", self.name, subject, e, exc_info=log.isEnabledFor(10))
                return
            if reply is not None and msg.reply:
                await msg.respond(reply if isinstance(reply, bytes) else wire.encode(reply))

        return await self.nc.subscribe(subject, queue=queue, cb=on_message)

    async def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]], queue: str = "") -> Any:
        async def on_message(msg: Msg) -> None:
            try:
                await handler(msg)
            except Exception as e:
                log.warning("%s: message on %s failed: %s", self.name, msg.subject, e, exc_info=log.isEnabledFor(10))

        return await self.nc.subscribe(subject, queue=queue, cb=on_message)

    # --- JetStream ------------------------------------------------------------------------------

    async def kv(self, bucket: str) -> KeyValue:
        """The bucket, created on first use; waits out JetStream leader elections and outages."""
        if bucket not in self._kv:
            self._kv[bucket] = await retry_forever(f"JetStream bucket {bucket}", lambda: self._open_kv(bucket))
        return self._kv[bucket]

    async def _open_kv(self, bucket: str) -> KeyValue:
        try:
            return await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            try:
                config = KeyValueConfig(bucket=bucket, history=1, replicas=await self.replicas_for_new_state())
                return await self.js.create_key_value(config)
            except nats.js.errors.BadRequestError:  # created concurrently by another component
                return await self.js.key_value(bucket)

    async def kv_get(self, bucket: str, key: str) -> bytes | None:
        try:
            entry = await (await self.kv(bucket)).get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return entry.value

    async def ensure_work_queue(self, stream: str, subject: str) -> None:
        """Create the durable work-queue stream once; waits out JetStream leader elections and outages."""
        await retry_forever(f"JetStream stream {stream}", lambda: self._ensure_work_queue(stream, subject))

    async def _ensure_work_queue(self, stream: str, subject: str) -> None:
        try:
            await self.js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            config = StreamConfig(
                name=stream,
                subjects=[subject],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=await self.replicas_for_new_state(),
                duplicate_window=120.0,
            )
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await self.js.stream_info(stream)


async def retry_forever(what: str, fn: Callable[[], Awaitable[T]], max_delay: float = 10.0) -> T:
    """Run fn until it succeeds, backing off: for loops that must outlive a NATS or node outage."""
    delay = 0.5
    while True:
        try:
            return await fn()
        except (nats.errors.Error, TimeoutError, OSError, ConnectionError) as e:
            log.warning("%s failed (%s); retrying in %.1fs", what, str(e) or type(e).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, max_delay)
