"""NATS connection shared by every cluster component: payload-size check, retrying requests, queue-group
responders, JetStream streams and KV buckets created on first use with replicas matching the cluster."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from autonomys_farmer.cluster import wire
from autonomys_farmer.cluster.subjects import Broadcast, Bucket, Request, WorkQueue

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
ERROR_HEADER = "Autonomys-Error"

MIN_MAX_PAYLOAD = 3 * 1024 * 1024
REQUEST_DEADLINE_S = 60.0  # as the official cluster: retry a request for at most a minute


FIRST_ATTEMPT_S = 2.0
PROBE_TIMEOUT_S = 1.5


class NatsConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class NatsAuth:
    """How this process proves who it is to NATS (nothing: the URL's user:password@ if any) and
    whether it speaks TLS. Secrets come from files, never from the command line."""

    user: str | None = None
    password_file: Path | None = None
    token_file: Path | None = None
    creds_file: Path | None = None  # a .creds file (JWT and NKey seed)
    nkey_seed_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.user is not None:
            options["user"] = self.user
        if self.password_file is not None:
            options["password"] = self.password_file.read_text().strip()
        if self.token_file is not None:
            options["token"] = self.token_file.read_text().strip()
        if self.creds_file is not None:
            options["user_credentials"] = str(self.creds_file)
        if self.nkey_seed_file is not None:
            options["nkeys_seed"] = str(self.nkey_seed_file)
        if self.tls_ca is not None or self.tls_cert is not None:
            context = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
            if self.tls_cert is not None:
                context.load_cert_chain(str(self.tls_cert), str(self.tls_key) if self.tls_key else None)
            options["tls"] = context
        return options

    def authenticates(self) -> bool:
        return any(v is not None for v in (self.password_file, self.token_file, self.creds_file, self.nkey_seed_file))


_warned_open = False


async def diagnose(servers: list[str], error: BaseException) -> str:
    """Why no server answers, per address: the TCP connection's own failure (connection refused,
    unknown host, no answer) when there is one, else what the NATS handshake reported (authorization,
    TLS)."""
    causes = []
    for server in servers:
        url = urlsplit(server)
        host, port = url.hostname or "", url.port or 4222
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT_S)
        except socket.gaierror:
            causes.append(f"{server}: unknown host {host!r}")
            continue
        except ConnectionRefusedError:
            causes.append(f"{server}: connection refused")
            continue
        except (TimeoutError, OSError) as e:
            causes.append(f"{server}: {getattr(e, 'strerror', None) or 'no answer'}")
            continue
        writer.close()
        causes.append(f"{server}: {_handshake_cause(error)}")
    return "; ".join(causes)


def _refusal(error: BaseException) -> str | None:
    """ "authentication" or "TLS" when the error is the server refusing us, else None."""
    text = str(error).lower()
    if isinstance(error, nats.errors.AuthorizationError) or "authoriz" in text or "authentic" in text:
        return "authentication"
    if "tls" in text or "ssl" in text or "certificate" in text:
        return "TLS"
    return None


def _lasting_refusal(error: BaseException) -> bool:
    """A refused login or certificate, as against a TLS handshake cut short by a server restarting."""
    return _refusal(error) == "authentication" or "certificate" in str(error).lower()


def _most_telling(errors: list[Exception]) -> Exception | None:
    """Of the errors one connection attempt met, the one that says why: a refused login or a TLS
    failure rather than the connection reset that follows it."""
    return next((error for error in errors if _refusal(error)), errors[-1] if errors else None)


def _handshake_cause(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "reachable, but no NATS handshake in time (is it a NATS server?)"
    text = str(error) or type(error).__name__
    refusal = _refusal(error)
    return f"{refusal} failed ({text})" if refusal else f"reachable, but the NATS handshake failed ({text})"


class Bus:
    def __init__(self, nc: Client, name: str) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=10)
        self.name = name
        self._kv: dict[str, KeyValue] = {}
        self.bad_messages = BadMessages(name)

    @classmethod
    async def connect(
        cls, servers: list[str], name: str, initial_timeout: float = 120.0, auth: NatsAuth | None = None
    ) -> Bus:
        """Connect (waiting for the servers to come up; a refused login or certificate fails at once)
        and check max_payload. Without credentials (options or URL user:password@) the cluster is open
        to anyone who reaches NATS: said once."""
        global _warned_open
        auth = auth if auth is not None else NatsAuth()
        credentials = auth.connect_options()
        if not (auth.authenticates() or any(urlsplit(server).password or urlsplit(server).username
                                            for server in servers)) and not _warned_open:  # fmt: skip
            _warned_open = True
            log.warning("connecting to NATS without credentials: anyone who reaches it can act as any component")

        errors: list[Exception] = []  # what nats-py met while connecting (auth, TLS, protocol)

        async def on_error(e: Exception) -> None:
            errors[:] = [*errors[-19:], e]
            log.debug("nats: %s", e)

        async def on_disconnect() -> None:
            if not (nc.is_closed or nc.is_draining):  # our own close() is not an outage
                log.warning("%s: disconnected from NATS; reconnecting", name)

        async def on_reconnect() -> None:
            log.info("%s: reconnected to NATS %s", name, nc.connected_url.netloc if nc.connected_url else "")

        loop = asyncio.get_running_loop()
        deadline = loop.time() + initial_timeout
        delay = 0.2
        attempt_s = FIRST_ATTEMPT_S  # the first trouble is reported within this
        reported = ""
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
                        **credentials,
                    ),
                    max(0.5, min(attempt_s, deadline - loop.time())),
                )
                break
            except (nats.errors.NoServersError, nats.errors.Error, OSError, TimeoutError) as e:
                telling = _most_telling(errors) or e
                cause = await diagnose(servers, telling)
                errors.clear()
                if _lasting_refusal(telling):  # waiting will not mend wrong credentials or certificates
                    raise NatsConfigError(f"NATS refused us at {', '.join(servers)}: {cause}") from e
                if loop.time() > deadline:
                    raise NatsConfigError(f"no NATS server reachable at {', '.join(servers)}: {cause}") from e
                if cause != reported:  # a new cause is worth a warning; the same one is not repeated
                    log.warning("%s: NATS unreachable (%s); retrying", name, cause)
                    reported = cause
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 5.0)
                attempt_s = 10.0
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
        good). Servers of a cluster announce their peers once their routes are up, which can lag our
        connect: wait a little for up to three of them rather than create an unreplicated stream."""
        if len(self.nc.servers) < 2 and not self.clustered_server:
            return 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self.replicas < 3 and loop.time() < deadline:
            await asyncio.sleep(0.2)
        return self.replicas

    @property
    def clustered_server(self) -> bool:
        """Is our server one of a routed cluster? Its INFO names the cluster from the first byte, where
        the peers' URLs come only once the routes are up (a JetStream request to find out can hang
        until the cluster has elected its meta leader). nats-py keeps the INFO private."""
        return bool(self.nc._server_info.get("cluster"))

    # --- core NATS: typed subjects (cluster.subjects) -----------------------------------------------

    async def publish(self, subject: Broadcast[T], message: T, *tokens: str) -> None:
        """Publish, naming ourselves in a header (what a receiver logs a refused message by; the
        subject's permissions, not the header, decide who may send)."""
        await self.nc.publish(subject.subject(*tokens), subject.codec.encode(message), headers={SENDER: self.name})

    async def subscribe(
        self,
        subject: Broadcast[T],
        handler: Callable[[T], Awaitable[None]] | Callable[[T, str], Awaitable[None]],
        *tokens: str,
        queue: str = "",
        with_sender: bool = False,
    ) -> Subscription:
        """Handle every `subject` message (all of them, or those with these tokens); a malformed one is
        logged once and dropped, a failing handler logged: neither stops the subscription. With
        `with_sender` the handler also gets the name the sender gave."""

        async def on_message(msg: Msg) -> None:
            try:
                message = subject.codec.decode(msg.data)
                if subject.bound is not None and msg.subject != subject.subject(*subject.bound(message)):
                    raise wire.WireError(f"content says {subject.subject(*subject.bound(message))!r}")
            except wire.WireError as e:
                self.bad_messages.report(msg.subject, e)
                return
            try:
                if with_sender:
                    await handler(message, (msg.headers or {}).get(SENDER, "?"))  # type: ignore[call-arg]
                else:
                    await handler(message)  # type: ignore[call-arg]
            except Exception as e:
                log.warning("%s: message on %s failed: %s", self.name, msg.subject, e, exc_info=log.isEnabledFor(10))

        name = subject.subject(*tokens) if tokens else subject.pattern
        return await self.nc.subscribe(name, queue=queue, cb=on_message)

    async def request(
        self,
        subject: Request[T, R],
        message: T,
        timeout: float = 5.0,
        deadline: float = REQUEST_DEADLINE_S,
        once: bool = False,
    ) -> R:
        """Ask one responder; retries on no responders / timeout (backoff 0.5 s × 1.5, ±50 %) until
        `deadline`. `once`: a request that must not reach two responders (a solution) is retried only
        when nobody took it, never after a timeout. A responder's error answer raises RemoteError."""
        data = subject.codec.encode(message)
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        delay = 0.5
        while True:
            try:
                reply = await self.nc.request(subject.name, data, timeout=timeout)
                break
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError) as e:
                if loop.time() + delay > end or (once and not isinstance(e, nats.errors.NoRespondersError)):
                    raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 1.5, 10.0)
        if reply.headers and ERROR_HEADER in reply.headers:
            raise RemoteError(f"{subject.name}: {reply.headers[ERROR_HEADER]}")
        return subject.reply_codec.decode(reply.data)

    async def serve(
        self, subject: Request[T, R], handler: Callable[[T], Awaitable[R]], concurrent: bool = False
    ) -> Subscription:
        """Answer `subject` as one member of its queue group. A malformed request or a failing handler
        is answered with an error (the caller stops waiting) and logged; the responder carries on.
        Requests are handled one after another unless `concurrent` (then the handler bounds its work,
        e.g. by batching them)."""

        async def answer(msg: Msg) -> None:
            try:
                request = subject.codec.decode(msg.data)
            except wire.WireError as e:
                self.bad_messages.report(msg.subject, e)
                await self._answer_error(msg, f"malformed request: {e}")
                return
            try:
                reply = await handler(request)
            except Exception as e:  # a bad request must not take the responder down
                log.warning("%s: request on %s failed: %s", self.name, subject.name, e, exc_info=log.isEnabledFor(10))
                await self._answer_error(msg, str(e) or type(e).__name__)
                return
            if msg.reply:
                await msg.respond(subject.reply_codec.encode(reply))

        in_flight: set[asyncio.Task[None]] = set()

        async def answer_concurrently(msg: Msg) -> None:
            task = asyncio.create_task(answer(msg))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

        on_message = answer_concurrently if concurrent else answer
        return await self.nc.subscribe(subject.name, queue=subject.queue, cb=on_message)

    async def _answer_error(self, msg: Msg, text: str) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, b"", headers={ERROR_HEADER: text[:500]})

    # --- JetStream ------------------------------------------------------------------------------

    async def kv(self, bucket: Bucket[Any]) -> KeyValue:
        """The bucket, once a controller has created it; waits out JetStream leader elections, outages
        and a cluster whose controller has not created it yet."""
        if bucket.name not in self._kv:
            self._kv[bucket.name] = await retry_forever(
                f"JetStream bucket {bucket.name}", lambda: self._open_kv(bucket.name)
            )
        return self._kv[bucket.name]

    async def _open_kv(self, name: str) -> KeyValue:
        try:
            return await self.js.key_value(name)
        except nats.js.errors.BucketNotFoundError:
            raise NotCreatedError(f"bucket {name}") from None

    async def create_state(self, buckets: Sequence[Bucket[Any]], queue: WorkQueue[Any], ack_wait: float) -> None:
        """The controller's part, as the owner of the cluster's JetStream state (no other role may):
        create the buckets, the work-queue stream and its consumers' durable consumer, or bring the
        consumer to `ack_wait` and lift any pause. Waits out leader elections and outages."""
        for name in (bucket.name for bucket in buckets):
            self._kv[name] = await retry_forever(f"creating bucket {name}", partial(self._create_kv, name))
        await retry_forever(f"creating stream {queue.stream}", lambda: self._create_work_queue(queue))
        await retry_forever(f"creating consumer {queue.consumer}", lambda: self._create_consumer(queue, ack_wait))

    async def _create_kv(self, name: str) -> KeyValue:
        try:
            return await self._open_kv(name)
        except NotCreatedError:
            try:
                config = KeyValueConfig(bucket=name, history=1, replicas=await self.replicas_for_new_state())
                return await self.js.create_key_value(config)
            except nats.js.errors.BadRequestError:  # created concurrently by another controller
                return await self.js.key_value(name)

    async def kv_get(self, bucket: Bucket[T], key: str) -> T | None:
        """The value under key, None when absent or malformed (a malformed value is logged once)."""
        try:
            entry = await (await self.kv(bucket)).get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return self._kv_value(bucket, key, entry.value)

    def _kv_value(self, bucket: Bucket[T], key: str, raw: bytes | None) -> T | None:
        if not raw:
            return None
        try:
            return bucket.codec.decode(raw)
        except wire.WireError as e:
            self.bad_messages.report(f"{bucket.name}/{key}", e)
            return None

    async def kv_put(self, bucket: Bucket[T], key: str, value: T) -> None:
        await (await self.kv(bucket)).put(key, bucket.codec.encode(value))

    async def kv_delete(self, bucket: Bucket[Any], key: str) -> None:
        await (await self.kv(bucket)).delete(key)

    async def kv_watch(self, bucket: Bucket[T]) -> AsyncIterator[tuple[str, T | None]]:
        """(key, value) for every entry now and every change after (None: deleted or malformed);
        resumes after a NATS outage."""
        while True:
            try:
                watcher = await (await self.kv(bucket)).watchall()
                async for entry in watcher:
                    if entry is None:  # the initial values are all delivered
                        continue
                    value = (
                        None if entry.operation in ("DEL", "PURGE") else self._kv_value(bucket, entry.key, entry.value)
                    )
                    yield entry.key, value
            except (nats.errors.Error, TimeoutError) as e:
                log.info("%s: watch of %s interrupted (%s); resuming", self.name, bucket.name, e)
                await asyncio.sleep(1.0)

    async def await_work_queue(self, queue: WorkQueue[Any]) -> None:
        """Wait until a controller has created the work-queue stream (and through outages)."""
        await retry_forever(f"JetStream stream {queue.stream}", lambda: self._stream_exists(queue.stream))

    async def _stream_exists(self, stream: str) -> None:
        try:
            await self.js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            raise NotCreatedError(f"stream {stream}") from None

    async def _create_work_queue(self, queue: WorkQueue[Any]) -> None:
        try:
            await self._stream_exists(queue.stream)
        except NotCreatedError:
            config = StreamConfig(
                name=queue.stream,
                subjects=[queue.subject],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=await self.replicas_for_new_state(),
                duplicate_window=120.0,
            )
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await self.js.stream_info(queue.stream)

    async def _create_consumer(self, queue: WorkQueue[Any], ack_wait: float) -> None:
        config = ConsumerConfig(
            name=queue.consumer,
            durable_name=queue.consumer,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,
        )
        await self.js.add_consumer(queue.stream, config)  # creates it, or updates its settings
        await self.js.resume_consumer(queue.stream, queue.consumer)

    async def work_queue_consumer(self, queue: WorkQueue[Any]) -> JetStreamContext.PullSubscription:
        """Bind to the work queue's durable consumer, once a controller has created it."""
        return await retry_forever(f"JetStream consumer {queue.consumer}", lambda: self._bind_consumer(queue))

    async def _bind_consumer(self, queue: WorkQueue[Any]) -> JetStreamContext.PullSubscription:
        try:
            await self.js.consumer_info(queue.stream, queue.consumer)
        except nats.js.errors.NotFoundError:
            raise NotCreatedError(f"consumer {queue.consumer}") from None
        return await self.js.pull_subscribe_bind(durable=queue.consumer, stream=queue.stream)

    async def enqueue(self, queue: WorkQueue[T], message: T, message_id: str) -> int:
        """Add a job (JetStream drops a second one with the same id within its duplicate window); returns
        its sequence number in the stream."""
        ack = await self.js.publish(queue.subject, queue.codec.encode(message), headers={"Nats-Msg-Id": message_id})
        return int(ack.seq)

    async def queued(self, queue: WorkQueue[Any], sequence: int) -> bool:
        """Is the job with this sequence still in the work queue (waiting, or delivered and not yet
        acknowledged)? A work queue drops a job once it is acknowledged."""
        try:
            await self.js.get_msg(queue.stream, sequence)
        except nats.js.errors.NotFoundError:
            return False
        return True


SENDER = "Autonomys-Sender"


class NotCreatedError(nats.errors.Error):
    """JetStream state a controller creates is not there yet: waited for (retry_forever)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not created yet (a controller creates it)")


class RemoteError(RuntimeError):
    """A responder answered a request with an error."""


class BadMessages:
    """Malformed messages are logged once per subject (then counted), so a flood cannot fill the log."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.counts: dict[str, int] = {}

    def report(self, where: str, error: Exception) -> None:
        seen = self.counts.get(where, 0)
        self.counts[where] = seen + 1
        if seen == 0:
            log.warning("%s: dropped a malformed message on %s: %s (later ones are counted)", self.owner, where, error)


async def retry_forever(what: str, fn: Callable[[], Awaitable[T]], max_delay: float = 10.0) -> T:
    """Run fn until it succeeds, backing off: for loops that must outlive a NATS or node outage."""
    delay = 0.5
    while True:
        try:
            return await fn()
        except (nats.errors.Error, TimeoutError, OSError, ConnectionError, RemoteError) as e:
            if isinstance(e, NotCreatedError):  # a start-up order (the controller not up yet), not a failure
                log.info("%s: %s; waiting", what, e)
            else:
                log.warning("%s failed (%s); retrying in %.1fs", what, str(e) or type(e).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, max_delay)
