"""JSON-RPC 2.0 over WebSocket, both ends, with Substrate-style subscriptions.

Server: methods are async callables of positional params; subscriptions are async iterators
started per subscriber and stopped by unsubscribe or disconnect. Client: request/response with
ids, notifications routed to per-subscription queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.server import Server

log = logging.getLogger(__name__)
MAX_MESSAGE_SIZE = 20 * 1024 * 1024  # jsonrpsee's farmer client limit; a piece is ~2 MiB of hex

Handler = Callable[[list[Any]], Awaitable[Any]]
SubscriptionSource = Callable[[list[Any]], AsyncIterator[Any]]


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"RPC error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class ConnectionLostError(ConnectionError):
    """The WebSocket closed while a call or subscription was outstanding."""


@dataclass
class _Subscription:
    notification: str
    unsubscribe: str
    source: SubscriptionSource


@dataclass
class JsonRpcServer:
    methods: dict[str, Handler] = field(default_factory=dict)
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)

    def method(self, name: str, handler: Handler) -> None:
        self.methods[name] = handler

    def subscription(self, subscribe: str, notification: str, unsubscribe: str, source: SubscriptionSource) -> None:
        self.subscriptions[subscribe] = _Subscription(notification, unsubscribe, source)

    async def serve(self, host: str, port: int) -> Server:
        return await websockets.serve(self._connection, host, port, max_size=MAX_MESSAGE_SIZE, compression=None)

    async def _connection(self, ws: websockets.ServerConnection) -> None:
        active: dict[str, asyncio.Task[None]] = {}
        in_flight: set[asyncio.Task[None]] = set()
        unsubscribe_names = {s.unsubscribe: name for name, s in self.subscriptions.items()}
        try:
            async for raw in ws:
                try:
                    request = json.loads(raw)
                except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
                    await ws.send(json.dumps(_error(None, -32700, "Parse error")))
                    continue
                if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                    request_id = request.get("id") if isinstance(request, dict) else None
                    await ws.send(json.dumps(_error(_scalar_id(request_id), -32600, "Invalid Request")))
                    continue
                task = asyncio.create_task(self._dispatch(ws, request, active, unsubscribe_names))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        except websockets.ConnectionClosed:
            pass
        finally:
            for task in active.values():
                task.cancel()

    async def _dispatch(
        self, ws, request: dict[str, Any], active: dict[str, asyncio.Task[None]], unsubscribe_names: dict[str, str]
    ) -> None:
        req_id = _scalar_id(request.get("id"))
        method = request["method"]
        params = request.get("params") or []
        try:
            if not isinstance(params, list):
                raise RpcError(-32602, "only positional params are supported")
            if method in self.methods:
                result = await self.methods[method](params)
            elif method in self.subscriptions:
                sub = self.subscriptions[method]
                sub_id = secrets.token_hex(8)
                active[sub_id] = asyncio.create_task(self._pump(ws, sub, sub_id, params))
                result = sub_id
            elif method in unsubscribe_names:
                task = active.pop(str(params[0]) if params else "", None)
                if task is not None:
                    task.cancel()
                result = task is not None
            else:
                raise RpcError(-32601, f"Method not found: {method}")
            response = {"jsonrpc": "2.0", "id": req_id, "result": result}
        except RpcError as e:
            response = {"jsonrpc": "2.0", "id": req_id, "error": {"code": e.code, "message": e.message}}
        except Exception as e:  # a handler bug must not kill the connection; one line (traceback at DEBUG)
            log.warning("RPC method %s failed: %s", method[:80], e, exc_info=log.isEnabledFor(logging.DEBUG))
            response = _error(req_id, 9001, "Internal error")
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(json.dumps(response))

    async def _pump(self, ws, sub: _Subscription, sub_id: str, params: list[Any]) -> None:
        await asyncio.sleep(0)  # let the subscribe response (the id) go out first
        try:
            async for item in sub.source(params):
                await ws.send(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "method": sub.notification,
                            "params": {"subscription": sub_id, "result": item},
                        }
                    )
                )
        except websockets.ConnectionClosed:
            pass


def _error(req_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}


def _scalar_id(value: Any) -> Any:
    """A request id echoed back only when it is what JSON-RPC allows (a string or number, or null)."""
    return value if isinstance(value, str | int | float) and not isinstance(value, bool) else None


class JsonRpcClient:
    """One WebSocket connection; `NodeClient` adds reconnection on top."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subscriptions: dict[str, asyncio.Queue[Any]] = {}
        self._early: dict[str, list[Any]] = {}
        self._reader = asyncio.create_task(self._read())
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, url: str, timeout: float = 10.0) -> JsonRpcClient:
        """A connection, or ConnectionError (an OSError, as for a refused one) when the peer accepted TCP
        but no WebSocket handshake came of it (a node starting or dying mid-handshake)."""
        try:
            connecting = websockets.connect(url, max_size=MAX_MESSAGE_SIZE, compression=None)
            ws = await asyncio.wait_for(connecting, timeout)
        except websockets.InvalidHandshake as e:
            raise ConnectionError(f"no WebSocket handshake with {url}: {e}") from e
        return cls(ws)

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                if "id" in msg and msg.get("id") in self._pending:
                    fut = self._pending.pop(msg["id"])
                    if "error" in msg:
                        err = msg["error"]
                        fut.set_exception(RpcError(err.get("code", 0), err.get("message", ""), err.get("data")))
                    else:
                        fut.set_result(msg.get("result"))
                elif "method" in msg and isinstance(msg.get("params"), dict):
                    sub_id = str(msg["params"].get("subscription"))
                    queue = self._subscriptions.get(sub_id)
                    if queue is not None:
                        queue.put_nowait(msg["params"].get("result"))
                    else:  # notification raced ahead of the subscribe response
                        self._early.setdefault(sub_id, []).append(msg["params"].get("result"))
        except (websockets.ConnectionClosed, json.JSONDecodeError):
            pass
        finally:
            self.closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionLostError("connection to the node closed"))
            for queue in self._subscriptions.values():
                queue.put_nowait(_CLOSED)

    async def call(self, method: str, params: list[Any] | None = None, timeout: float = 60.0) -> Any:
        if self.closed.is_set():
            raise ConnectionLostError("connection to the node closed")
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            await self._ws.send(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or []}))
        except websockets.ConnectionClosed as e:
            self._pending.pop(req_id, None)
            raise ConnectionLostError(str(e)) from e
        return await asyncio.wait_for(fut, timeout)

    async def subscribe(self, method: str, params: list[Any] | None = None) -> AsyncIterator[Any]:
        sub_id = str(await self.call(method, params))
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for item in self._early.pop(sub_id, []):
            queue.put_nowait(item)
        self._subscriptions[sub_id] = queue
        if self.closed.is_set():
            queue.put_nowait(_CLOSED)
        return _drain(queue)


_CLOSED = object()


async def _drain(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while True:
        item = await queue.get()
        if item is _CLOSED:
            raise ConnectionLostError("subscription ended: connection to the node closed")
        yield item
