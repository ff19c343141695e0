"""Bulk data between peers over plain TCP: pieces from caches, sectors from plot servers.

A connection carries one request frame (an operation of `cluster.bulk_ops` as its header) and the answer
frames (`{"answer": ...}`), then an `{"end": true}` frame, or `{"error": ...}`. A frame is u32 LE header
length ‖ u64 LE payload length ‖ JSON header ‖ payload, so a sector of a GiB streams without touching NATS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from autonomys_farmer.cluster import wire
from autonomys_farmer.cluster.bulk_ops import BulkRequest

log = logging.getLogger(__name__)
A = TypeVar("A")

_LENGTHS = struct.Struct("<IQ")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 1 << 32
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


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    try:
        head_len, payload_len = _LENGTHS.unpack(await reader.readexactly(_LENGTHS.size))
        if head_len > MAX_HEADER or payload_len > MAX_PAYLOAD:
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

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    def address(self, advertise_host: str) -> str:
        return f"{advertise_host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        operation: Any = None
        try:
            header, payload = await read_frame(reader)
            operation = wire.from_obj(BulkRequest, header, "bulk request")
            async for answer, data in self._handler(operation, payload):
                await write_frame(writer, {"answer": wire.to_obj(answer)}, data)
            await write_frame(writer, {"end": True})
        except (BulkError, ConnectionError) as e:
            log.debug("bulk connection dropped: %s", e)
        except Exception as e:
            log.warning("bulk request %s failed: %s", type(operation).__name__ if operation else "?", e)
            try:
                await write_frame(writer, {"error": str(e)})
                await write_frame(writer, {"end": True})
            except ConnectionError:
                pass
        finally:
            writer.close()


async def request(
    address: str, operation: BulkRequest, answer_type: type[A], payload: bytes = b"", timeout: float = 30.0
) -> AsyncIterator[tuple[A, bytes]]:
    """Send one operation to host:port and yield its answers (each must arrive within `timeout`)."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port), limit=1 << 22), timeout)
    try:
        await write_frame(writer, wire.to_obj(operation), payload)
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
    address: str, operation: BulkRequest, answer_type: type[A], payload: bytes = b"", timeout: float = 30.0
) -> list[tuple[A, bytes]]:
    return [frame async for frame in request(address, operation, answer_type, payload, timeout=timeout)]


def outbound_address() -> str:
    """This host's address on the route out (what peers dial unless `--advertise-host` says otherwise)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
