"""Farmer-side client of the node's farmer RPC: typed calls and subscriptions that survive the node
going away (reconnect with exponential backoff; subscriptions are re-established transparently)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from autonomys_farmer.protocol import farmer_rpc as rpc
from autonomys_farmer.protocol.archiving import SegmentHeader
from autonomys_farmer.protocol.constants import PIECE_SIZE
from autonomys_farmer.protocol.farmer_rpc import (
    FarmerAppInfo,
    RewardSignatureResponse,
    RewardSigningInfo,
    RpcShapeError,
    SlotInfo,
)
from autonomys_farmer.protocol.pieces import Piece
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.services.transport.jsonrpc import ConnectionLostError, JsonRpcClient, RpcError

log = logging.getLogger(__name__)
T = TypeVar("T")


class NodeClient:
    def __init__(self, url: str, backoff_initial: float = 0.2, backoff_max: float = 10.0) -> None:
        self.url = url
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._client: JsonRpcClient | None = None
        self._lock = asyncio.Lock()
        self.reconnects = 0

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _connection(self) -> JsonRpcClient:
        async with self._lock:
            if self._client is not None and not self._client.closed.is_set():
                return self._client
            delay = self._backoff_initial
            while True:
                try:
                    self._client = await JsonRpcClient.connect(self.url)
                    if self.reconnects:
                        log.info("reconnected to node %s", self.url)
                    self.reconnects += 1
                    return self._client
                except (OSError, TimeoutError) as e:
                    log.warning("node %s unreachable (%s); retrying in %.1fs", self.url, e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._backoff_max)

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._client.closed.is_set()

    async def until_connected(self) -> None:
        """Connect now (with backoff while the node is unreachable) instead of at the first call."""
        await self._connection()

    async def until_lost(self) -> None:
        """Return once the current connection closes (at once when there is none)."""
        client = self._client
        if client is not None:
            await client.closed.wait()

    async def _call(self, method: str, params: list[Any] | None = None, once: bool = False) -> Any:
        """The call's result, reconnecting as needed; `once`: never sent twice (a lost connection
        raises ConnectionLostError, as the call may have reached the node)."""
        while True:
            client = await self._connection()
            try:
                return await client.call(method, params)
            except ConnectionLostError:
                if once:
                    raise
                log.warning("connection to %s lost during %s; reconnecting", self.url, method)

    async def _subscribe(self, method: str, parse: Callable[[Any], T]) -> AsyncIterator[T]:
        while True:
            client = await self._connection()
            try:
                async for item in await client.subscribe(method):
                    try:
                        yield parse(item)
                    except (RpcShapeError, KeyError, TypeError, ValueError) as e:
                        log.warning("dropping undecodable %s item: %s", method, e)  # as the official client
            except ConnectionLostError:
                log.warning("subscription %s lost; re-subscribing", method)

    # --- typed API -------------------------------------------------------------------------------

    async def farmer_app_info(self) -> FarmerAppInfo:
        return FarmerAppInfo.from_json(await self._call(rpc.GET_FARMER_APP_INFO))

    def slot_info(self) -> AsyncIterator[SlotInfo]:
        return self._subscribe(rpc.SLOT_INFO.subscribe, SlotInfo.from_json)

    def reward_signing(self) -> AsyncIterator[RewardSigningInfo]:
        return self._subscribe(rpc.REWARD_SIGNING.subscribe, RewardSigningInfo.from_json)

    def archived_segment_headers(self) -> AsyncIterator[SegmentHeader]:
        return self._subscribe(rpc.ARCHIVED_SEGMENT_HEADER.subscribe, SegmentHeader.from_json)

    async def submit_solution_response(self, slot_number: int, solution: Solution) -> None:
        """Raises RpcError (code 9001) when the node ignores or rejects the solution."""
        params = [{"slotNumber": slot_number, "solution": solution.to_json()}]
        await self._call(rpc.SUBMIT_SOLUTION_RESPONSE, params, once=True)

    async def submit_reward_signature(self, response: RewardSignatureResponse) -> None:
        await self._call(rpc.SUBMIT_REWARD_SIGNATURE, [response.to_json()])

    async def acknowledge_archived_segment_header(self, segment_index: int) -> None:
        await self._call(rpc.ACKNOWLEDGE_ARCHIVED_SEGMENT_HEADER, [segment_index])

    async def segment_headers(self, segment_indexes: list[int]) -> list[SegmentHeader | None]:
        out: list[SegmentHeader | None] = []
        for start in range(0, len(segment_indexes), rpc.MAX_SEGMENT_HEADERS_PER_REQUEST):
            batch = segment_indexes[start : start + rpc.MAX_SEGMENT_HEADERS_PER_REQUEST]
            result = await self._call(rpc.SEGMENT_HEADERS, [batch])
            out.extend(None if h is None else SegmentHeader.from_json(h) for h in result)
        return out

    async def all_segment_headers(self) -> list[SegmentHeader]:
        """Sync every header the way the official farmer does: batches of 1000 until the first null."""
        headers: list[SegmentHeader] = []
        while True:
            batch = await self.segment_headers(list(range(len(headers), len(headers) + 1000)))
            for h in batch:
                if h is None:
                    return headers
                headers.append(h)

    async def last_segment_headers(self, limit: int) -> list[SegmentHeader]:
        return [SegmentHeader.from_json(h) for h in await self._call(rpc.LAST_SEGMENT_HEADERS, [limit])]

    async def piece(self, piece_index: int) -> Piece | None:
        result = await self._call(rpc.PIECE, [piece_index])
        if result is None:
            return None
        data = rpc.hex_bytes(result, PIECE_SIZE, "piece")
        return Piece(data)


__all__ = ["NodeClient", "RpcError"]
