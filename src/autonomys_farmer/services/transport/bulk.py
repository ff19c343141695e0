"""Bulk data between peers over plain TCP: pieces from caches, sectors from plot servers.

A frame is u32 LE header length ‖ u64 LE payload length ‖ JSON header ‖ payload (‖ a 32-byte MAC once
a connection is authenticated), so a sector of a GiB streams without touching NATS.

With a cluster secret (`--cluster-secret-file`, every process of the cluster the same), a connection
opens with a mutual challenge-response before anything else is read:
1. the server's hello `{"bulk": 2, "nonce": Ns}`;
2. the client's hello `{"nonce": Nc, "proof": HMAC(secret, "client" ‖ Ns ‖ Nc)}` (at most HELLO_MAX bytes,
   within HELLO_TIMEOUT_S);
3. the server's `{"proof": HMAC(secret, "server" ‖ Ns ‖ Nc)}`.
Each side proves the secret over both nonces, and every later frame (the request `{"op": ...}`, the
answers `{"answer": ...}`, `{"end": true}` or `{"error": ...}`) carries HMAC(session key, sequence ‖
header ‖ payload) with a session key drawn from both nonces. A relay that passes the hellos along
therefore gains nothing: it can neither put its own request in, nor change an answer. A client that
holds the secret talks only to a server that proved it (a sector comes only from a real plot server).

A server bounds what a connection may cost: the hello, small and fixed, is all it reads before the peer
has proved the secret; a request's payload is at most one piece (only `repair` carries one);
MAX_CONNECTIONS at once, MAX_CONNECTIONS_PER_ADDRESS from one address (refusals logged once per address).
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
_SEQUENCE = struct.Struct("<Q")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 1 << 32  # an answer: up to a whole sector
MAX_REQUEST_PAYLOAD = PIECE_SIZE  # a request: only `repair` carries one, exactly one piece
HELLO_MAX = 512  # the client's hello: all that is read before the peer has proved the secret
HELLO_TIMEOUT_S = 5.0  # a connection that has not proved the secret by then is closed
REQUEST_TIMEOUT_S = 30.0  # an authenticated connection that sends no request in time is closed
MAX_CONNECTIONS = 256
MAX_CONNECTIONS_PER_ADDRESS = 64
NONCE_SIZE = 32
MAC_SIZE = 32
PROTOCOL = 2


def _proof(secret: bytes, role: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(secret, b"autonomys-bulk-v2 " + role + server_nonce + client_nonce, hashlib.sha256).digest()


class Session:
    """One connection's frame MACs: HMAC(key, sequence ‖ header ‖ payload), a sequence per direction.
    Without a key (no cluster secret) frames carry no MAC."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key
        self.sent = 0
        self.received = 0

    @classmethod
    def between(cls, secret: bytes, server_nonce: bytes, client_nonce: bytes) -> Session:
        return cls(_proof(secret, b"session", server_nonce, client_nonce))

    def _mac(self, sequence: int, head: bytes, payload: bytes | memoryview) -> bytes:
        assert self.key is not None
        mac = hmac.new(self.key, _SEQUENCE.pack(sequence) + head, hashlib.sha256)
        mac.update(payload)
        return mac.digest()

    def seal(self, head: bytes, payload: bytes | memoryview) -> bytes:
        if self.key is None:
            return b""
        self.sent += 1
        return self._mac(self.sent, head, payload)

    def check(self, head: bytes, payload: bytes, mac: bytes) -> None:
        self.received += 1
        if not hmac.compare_digest(mac, self._mac(self.received, head, payload)):
            raise PermissionError("a frame failed its MAC (altered or relayed)")


PLAIN = Session()  # the hellos, and every frame of a cluster without a secret


Frame = tuple[dict[str, Any], bytes]
Answer = tuple[Any, bytes]  # an answer dataclass of cluster.bulk_ops and its payload
Handler = Callable[[BulkRequest, bytes], AsyncIterator[Answer]]


class BulkError(ConnectionError):
    pass


async def write_frame(
    writer: asyncio.StreamWriter,
    header: dict[str, Any],
    payload: bytes | memoryview = b"",
    session: Session = PLAIN,
) -> None:
    head = json.dumps(header, separators=(",", ":")).encode()
    mac = session.seal(head, payload)
    writer.write(_LENGTHS.pack(len(head), len(payload)) + head)
    if payload:
        writer.write(payload)
    if mac:
        writer.write(mac)
    await writer.drain()


async def read_frame(
    reader: asyncio.StreamReader,
    max_payload: int = MAX_PAYLOAD,
    session: Session = PLAIN,
    max_header: int = MAX_HEADER,
) -> Frame:
    try:
        head_len, payload_len = _LENGTHS.unpack(await reader.readexactly(_LENGTHS.size))
        if head_len > max_header or payload_len > max_payload:
            raise BulkError(f"frame too large: header {head_len}, payload {payload_len}")
        head = await reader.readexactly(head_len)
        payload = await reader.readexactly(payload_len) if payload_len else b""
        if session.key is not None:
            session.check(head, payload, await reader.readexactly(MAC_SIZE))
        header = json.loads(head)
    except asyncio.IncompleteReadError as e:
        raise BulkError("peer closed the connection mid-frame") from e
    except ValueError as e:  # not JSON (or not UTF-8)
        raise BulkError(f"frame header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise BulkError("frame header is not an object")
    return header, payload


def _nonce(hello: dict[str, Any]) -> bytes | None:
    value = hello.get("nonce")
    if value is None:
        return None
    try:
        nonce = bytes.fromhex(str(value))
    except ValueError:
        raise BulkError("malformed nonce") from None
    if len(nonce) != NONCE_SIZE:
        raise BulkError("malformed nonce")
    return nonce


class BulkServer:
    """Serves one handler; the handler yields answer frames for a request."""

    def __init__(self, handler: Handler, secret: bytes | None) -> None:
        """`secret`: the cluster secret peers must prove (None: anyone is served, and it is said)."""
        self._handler = handler
        self._secret = secret
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self.by_address: dict[str, int] = {}
        self.refused = 0
        self._refused_from: set[str] = set()

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> None:
        if self._secret is None:
            log.warning("bulk TCP on %s without a cluster secret: any peer that reaches it is served", host)
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    def address(self, advertise_host: str) -> str:
        return f"{advertise_host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _refuse(self, peer: str, why: str) -> None:
        self.refused += 1
        if peer not in self._refused_from:
            self._refused_from.add(peer)
            log.warning("bulk: refused %s: %s (later refusals of it are counted)", peer, why)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        if self.connections >= MAX_CONNECTIONS:
            self._refuse(peer, f"{MAX_CONNECTIONS} connections already open")
            writer.close()
            return
        if self.by_address.get(peer, 0) >= MAX_CONNECTIONS_PER_ADDRESS:
            self._refuse(peer, f"{MAX_CONNECTIONS_PER_ADDRESS} connections from it already open")
            writer.close()
            return
        self.connections += 1
        self.by_address[peer] = self.by_address.get(peer, 0) + 1
        operation: Any = None
        session = PLAIN
        try:
            session = await asyncio.wait_for(self._handshake(reader, writer), HELLO_TIMEOUT_S)
            header, payload = await asyncio.wait_for(
                read_frame(reader, MAX_REQUEST_PAYLOAD, session), REQUEST_TIMEOUT_S
            )
            operation = wire.from_obj(BulkRequest, header.get("op"), "bulk request")
            async for answer, data in self._handler(operation, payload):
                await write_frame(writer, {"answer": wire.to_obj(answer)}, data, session)
            await write_frame(writer, {"end": True}, b"", session)
        except PermissionError as e:
            self._refuse(peer, str(e))
        except (BulkError, ConnectionError, TimeoutError) as e:
            log.debug("bulk connection from %s dropped: %s", peer, e)
        except Exception as e:
            log.warning("bulk request %s failed: %s", type(operation).__name__ if operation else "?", e)
            try:
                await write_frame(writer, {"error": str(e)}, b"", session)
                await write_frame(writer, {"end": True}, b"", session)
            except ConnectionError:
                pass
        finally:
            self.connections -= 1
            self.by_address[peer] -= 1
            if not self.by_address[peer]:
                del self.by_address[peer]
            writer.close()

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Session:
        """Steps 1-3 of the module's handshake; the session that MACs the rest (PLAIN without a secret)."""
        secret = self._secret
        server_nonce = secrets.token_bytes(NONCE_SIZE) if secret is not None else None
        await write_frame(writer, {"bulk": PROTOCOL, "nonce": server_nonce.hex() if server_nonce else None})
        hello, _ = await read_frame(reader, 0, max_header=HELLO_MAX)
        if secret is None or server_nonce is None:
            return PLAIN
        client_nonce = _nonce(hello)
        proof = hello.get("proof")
        if client_nonce is None or not isinstance(proof, str):
            raise PermissionError("the peer sent no proof of the cluster secret")
        expected = _proof(secret, b"client", server_nonce, client_nonce)
        if not hmac.compare_digest(proof.encode(), expected.hex().encode()):
            raise PermissionError("the peer does not hold the cluster secret")
        await write_frame(writer, {"proof": _proof(secret, b"server", server_nonce, client_nonce).hex()})
        return Session.between(secret, server_nonce, client_nonce)


async def client_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str, key: bytes | None, timeout: float
) -> Session:
    greeting, _ = await asyncio.wait_for(read_frame(reader, 0, max_header=HELLO_MAX), timeout)
    if greeting.get("bulk") != PROTOCOL:
        raise BulkError(f"{address}: not a bulk server of this protocol ({str(greeting)[:80]})")
    server_nonce = _nonce(greeting)
    if server_nonce is None:
        if key is not None:  # it would be a server that does not hold the secret: never trusted with data
            raise BulkError(f"{address} does not ask for the cluster secret: not a member of this cluster")
        await write_frame(writer, {"nonce": None})
        return PLAIN
    if key is None:
        raise BulkError(f"{address} requires the cluster secret (--cluster-secret-file)")
    client_nonce = secrets.token_bytes(NONCE_SIZE)
    proof = _proof(key, b"client", server_nonce, client_nonce).hex()
    await write_frame(writer, {"nonce": client_nonce.hex(), "proof": proof})
    try:
        answer, _ = await asyncio.wait_for(read_frame(reader, 0, max_header=HELLO_MAX), timeout)
    except BulkError:  # a server closes on a proof it does not accept
        raise BulkError(f"{address} refused us: we do not hold its cluster secret") from None
    expected = _proof(key, b"server", server_nonce, client_nonce).hex()
    if not hmac.compare_digest(str(answer.get("proof")).encode(), expected.encode()):
        raise BulkError(f"{address} did not prove the cluster secret")
    return Session.between(key, server_nonce, client_nonce)


async def request(
    address: str,
    operation: BulkRequest,
    answer_type: type[A],
    payload: bytes = b"",
    timeout: float = 30.0,
    *,
    secret: bytes | None,
) -> AsyncIterator[tuple[A, bytes]]:
    """Send one operation to host:port and yield its answers (each must arrive within `timeout`).
    `secret`: the cluster secret (None: a cluster without one)."""
    key = secret or None
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port), limit=1 << 22), timeout)
    try:
        session = await client_handshake(reader, writer, address, key, timeout)
        await write_frame(writer, {"op": wire.to_obj(operation)}, payload, session)
        while True:
            try:
                frame, data = await asyncio.wait_for(read_frame(reader, MAX_PAYLOAD, session), timeout)
            except PermissionError as e:
                raise BulkError(f"{address}: {e}") from None
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
    *,
    secret: bytes | None,
) -> list[tuple[A, bytes]]:
    return [frame async for frame in request(address, operation, answer_type, payload, timeout, secret=secret)]


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
