"""Bulk data between peers over plain TCP: pieces from caches, sectors from plot servers.

A connection opens with the server's greeting (`{"bulk": 1, "challenge": hex or null}`), then carries
one request frame (`{"op": <an operation of cluster.bulk_ops>, "auth": hex}`) and the answer frames
(`{"answer": ...}`), then an `{"end": true}` frame, or `{"error": ...}`. A frame is u32 LE header
length ‖ u64 LE payload length ‖ JSON header ‖ payload, so a sector of a GiB streams without touching NATS.

With a cluster secret (`--cluster-secret-file`, every process of the cluster the same), the server's
challenge is a fresh nonce and a request counts only with HMAC-SHA256(secret, nonce): peers that lack
the secret are refused before any operation. A server bounds what a request may cost: the request frame
within REQUEST_TIMEOUT_S, its payload at most one piece (only `repair` carries one), MAX_CONNECTIONS at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from autonomys_farmer.cluster import wire
from autonomys_farmer.cluster.bulk_ops import BulkRequest
from autonomys_farmer.protocol.constants import PIECE_SIZE

log = logging.getLogger(__name__)
A = TypeVar("A")

_LENGTHS = struct.Struct("<IQ")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 1 << 32  # an answer: up to a whole sector
MAX_REQUEST_PAYLOAD = PIECE_SIZE  # a request: only `repair` carries one, exactly one piece
REQUEST_TIMEOUT_S = 30.0  # a connection that sends no request in time is closed
MAX_CONNECTIONS = 256
PROTOCOL = 1
_secret: bytes | None = None  # the cluster secret, set once per process (use_cluster_secret)


def use_cluster_secret(secret: bytes | None) -> None:
    """Authenticate every bulk connection of this process (both ends) with the cluster secret."""
    global _secret
    _secret = secret or None


def _mac(secret: bytes, challenge: bytes) -> str:
    return hmac.new(secret, b"autonomys-bulk-v1" + challenge, hashlib.sha256).hexdigest()


Frame = tuple[dict[str, Any], bytes]
Answer = tuple[Any, bytes]  # an answer dataclass of cluster.bulk_ops and its payload
Handler = Callable[[BulkRequest, bytes], AsyncIterator[Answer]]


class BulkError(ConnectionError):
    pass


async def write_frame(writer: asyncio.StreamWriter, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
    head = json.dumps(header, separators=(",", ":")).encode()
    writer.write(_LENGTHS.pack(len(head), len(payload)) + head)
    if payload:
        writer.write(payload)
    await writer.drain()


async def read_frame(reader: asyncio.StreamReader, max_payload: int = MAX_PAYLOAD) -> Frame:
    try:
        head_len, payload_len = _LENGTHS.unpack(await reader.readexactly(_LENGTHS.size))
        if head_len > MAX_HEADER or payload_len > max_payload:
            raise BulkError(f"frame too large: header {head_len}, payload {payload_len}")
        header = json.loads(await reader.readexactly(head_len))
        payload = await reader.readexactly(payload_len) if payload_len else b""
    except asyncio.IncompleteReadError as e:
        raise BulkError("peer closed the connection mid-frame") from e
    if not isinstance(header, dict):
        raise BulkError("frame header is not an object")
    return header, payload


class BulkServer:
    """Serves one handler; the handler yields answer frames for a request."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self.refused = 0

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> None:
        if _secret is None:
            log.warning("bulk TCP on %s without a cluster secret: any peer that reaches it is served", host)
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    def address(self, advertise_host: str) -> str:
        return f"{advertise_host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= MAX_CONNECTIONS:
            self.refused += 1
            writer.close()
            return
        self.connections += 1
        operation: Any = None
        try:
            challenge = secrets.token_bytes(32) if _secret is not None else None
            await write_frame(writer, {"bulk": PROTOCOL, "challenge": challenge.hex() if challenge else None})
            header, payload = await asyncio.wait_for(read_frame(reader, MAX_REQUEST_PAYLOAD), REQUEST_TIMEOUT_S)
            if _secret is not None and challenge is not None:
                auth = header.get("auth")
                if not isinstance(auth, str) or not hmac.compare_digest(auth, _mac(_secret, challenge)):
                    raise PermissionError("the peer does not hold the cluster secret")
            operation = wire.from_obj(BulkRequest, header.get("op"), "bulk request")
            async for answer, data in self._handler(operation, payload):
                await write_frame(writer, {"answer": wire.to_obj(answer)}, data)
            await write_frame(writer, {"end": True})
        except (BulkError, ConnectionError, TimeoutError) as e:
            log.debug("bulk connection dropped: %s", e)
        except Exception as e:
            log.warning("bulk request %s failed: %s", type(operation).__name__ if operation else "?", e)
            try:
                await write_frame(writer, {"error": str(e)})
                await write_frame(writer, {"end": True})
            except ConnectionError:
                pass
        finally:
            self.connections -= 1
            writer.close()


async def request(
    address: str,
    operation: BulkRequest,
    answer_type: type[A],
    payload: bytes = b"",
    timeout: float = 30.0,
    secret: bytes | None = None,
) -> AsyncIterator[tuple[A, bytes]]:
    """Send one operation to host:port and yield its answers (each must arrive within `timeout`).
    `secret`: the process's cluster secret unless given (b"": none)."""
    key = _secret if secret is None else (secret or None)
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port), limit=1 << 22), timeout)
    try:
        greeting, _ = await asyncio.wait_for(read_frame(reader, 0), timeout)
        if greeting.get("bulk") != PROTOCOL:
            raise BulkError(f"{address}: not a bulk server of this protocol ({str(greeting)[:80]})")
        header: dict[str, Any] = {"op": wire.to_obj(operation)}
        challenge = greeting.get("challenge")
        if challenge is not None:
            if key is None:
                raise BulkError(f"{address} requires the cluster secret (--cluster-secret-file)")
            try:
                header["auth"] = _mac(key, bytes.fromhex(str(challenge)))
            except ValueError as e:
                raise BulkError(f"{address}: malformed challenge") from e
        await write_frame(writer, header, payload)
        while True:
            frame, data = await asyncio.wait_for(read_frame(reader), timeout)
            if frame.get("end"):
                return
            if "error" in frame:
                raise BulkError(f"{address}: {frame['error']}")
            try:
                answer = wire.from_obj(answer_type, frame.get("answer"), f"{address} answer")
            except wire.WireError as e:
                raise BulkError(str(e)) from e
            yield answer, data
    finally:
        writer.close()


async def request_all(
    address: str,
    operation: BulkRequest,
    answer_type: type[A],
    payload: bytes = b"",
    timeout: float = 30.0,
    secret: bytes | None = None,
) -> list[tuple[A, bytes]]:
    return [frame async for frame in request(address, operation, answer_type, payload, timeout, secret)]


def listen_host(advertise_host: str | None) -> str:
    """Where a bulk server listens: loopback only when peers are told to dial loopback (one machine,
    as `dev` runs), else every interface."""
    return advertise_host if advertise_host is not None and _is_loopback(advertise_host) else "0.0.0.0"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def outbound_address() -> str:
    """This host's address on the route out (what peers dial unless `--advertise-host` says otherwise)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
