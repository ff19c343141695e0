"""Controller: the cluster's only link to the node. It re-broadcasts slots, reward-signing requests and
archived segment headers, answers app-info/segment-header requests, forwards solutions and signatures,
serves node pieces over TCP as the last piece source, and turns heartbeats into membership and cache
shard maps in JetStream KV."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from autonomys_farmer.cluster import messages as m
from autonomys_farmer.cluster import wire
from autonomys_farmer.protocol.farmer_rpc import RewardSignatureResponse
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.services.bulk import Frame
from autonomys_farmer.services.component import Component
from autonomys_farmer.services.jsonrpc import RpcError
from autonomys_farmer.services.nats_bus import retry_forever
from autonomys_farmer.services.node_client import NodeClient
from autonomys_farmer.services.piece_getter import CONTROLLER_GROUP, group_name

log = logging.getLogger(__name__)

PIECE_LRU = 64
SEEN_SIGNATURES = 1024


class Controller(Component):
    kind = m.CONTROLLER

    def __init__(self, nats_servers: list[str], node_rpc_url: str, base_path: Path | None) -> None:
        super().__init__(nats_servers)
        self.node = NodeClient(node_rpc_url)
        self.base_path = base_path
        self.item_type = m.PIECE
        self.members: dict[tuple[str, str], m.Heartbeat] = {}
        self.last_seen: dict[tuple[str, str], float] = {}
        self._published_maps: dict[str, bytes] = {}
        self._published_members: dict[tuple[str, str], tuple[str, str]] = {}
        self._pieces: OrderedDict[int, bytes] = OrderedDict()
        self._signed: OrderedDict[bytes, None] = OrderedDict()
        self.started_at = time.monotonic()
        self.counts = {"slots": 0, "solutions": 0, "accepted": 0, "segments": 0, "signatures": 0}

    def status(self) -> dict[str, Any]:
        return dict(self.counts, members=len(self.members))

    async def start(self) -> None:
        await super().start()
        if self.base_path is not None:
            self.base_path.mkdir(parents=True, exist_ok=True)
        await self.start_bulk(self._serve_pieces)
        bus = self.nats
        await bus.serve(m.FARMER_APP_INFO, self._farmer_app_info, queue=m.CONTROLLER_QUEUE)
        await bus.serve(m.SEGMENT_HEADERS, self._segment_headers, queue=m.CONTROLLER_QUEUE)
        await bus.serve(m.SUBMIT_SOLUTION, self._submit_solution, queue=m.CONTROLLER_QUEUE)
        # Every controller forwards every signature to its node (its own queue group).
        await bus.subscribe(m.REWARD_SIGNATURE, self._reward_signature, queue=self.instance_id)
        await bus.subscribe(f"{m.HEARTBEAT}.>", self._heartbeat)
        await bus.ensure_work_queue(m.PLOT_JOBS_STREAM, m.PLOT_JOBS)
        await bus.kv(m.MEMBERS_BUCKET)
        await bus.kv(m.SHARDS_BUCKET)
        self.spawn(self._relay_slots())
        self.spawn(self._relay_reward_signing())
        self.spawn(self._relay_segment_headers())
        self.spawn(self._maintain_membership())

    # --- node -> cluster -------------------------------------------------------------------------

    async def _relay_slots(self) -> None:
        last = -1
        async for slot in self.node.slot_info():
            if slot.slot_number <= last:  # the node may repeat after a reconnect
                continue
            last = slot.slot_number
            self.counts["slots"] += 1
            await self.nats.publish(m.SLOT_INFO, wire.encode(slot.to_json()))

    async def _relay_reward_signing(self) -> None:
        async for info in self.node.reward_signing():
            await self.nats.publish(m.REWARD_SIGNING_INFO, wire.encode(info.to_json()))

    async def _relay_segment_headers(self) -> None:
        async for header in self.node.archived_segment_headers():
            self.counts["segments"] += 1
            await self.nats.publish(m.ARCHIVED_SEGMENT_HEADER, wire.encode(header.to_json()))
            await self.node.acknowledge_archived_segment_header(header.segment_index)

    # --- cluster -> node -------------------------------------------------------------------------

    async def _farmer_app_info(self, _data: bytes) -> bytes:
        return wire.encode((await self.node.farmer_app_info()).to_json())

    async def _segment_headers(self, data: bytes) -> m.SegmentHeadersResponse:
        request = wire.decode(m.SegmentHeadersRequest, data)
        headers = await self.node.segment_headers(list(request.segment_indexes))
        return m.SegmentHeadersResponse(tuple(None if h is None else h.to_json() for h in headers))

    async def _submit_solution(self, data: bytes) -> m.SubmitResult:
        request = wire.decode(m.SubmitSolution, data)
        solution = Solution.from_json(request.solution)
        self.counts["solutions"] += 1
        try:
            await self.node.submit_solution_response(request.slot_number, solution)
        except RpcError as e:
            log.info("solution for slot %d not accepted: %s", request.slot_number, e.message)
            return m.SubmitResult(False, e.message)
        self.counts["accepted"] += 1
        return m.SubmitResult(True)

    async def _reward_signature(self, msg: Msg) -> None:
        response = RewardSignatureResponse.from_json(wire.decode_json(msg.data))
        if response.hash in self._signed:
            return
        self._signed[response.hash] = None
        while len(self._signed) > SEEN_SIGNATURES:
            self._signed.popitem(last=False)
        self.counts["signatures"] += 1
        await self.node.submit_reward_signature(response)

    async def _serve_pieces(self, header: dict[str, Any], _payload: bytes) -> AsyncIterator[Frame]:
        if header.get("op") != "get":
            raise ValueError(f"unknown op {header.get('op')!r}")
        for key in header["keys"]:
            data = self._pieces.get(key)
            if data is None:
                piece = await self.node.piece(int(key))
                data = None if piece is None else piece.data
                if data is not None:
                    self._pieces[key] = data
                    while len(self._pieces) > PIECE_LRU:
                        self._pieces.popitem(last=False)
            yield {"key": key, "found": data is not None}, data or b""

    # --- membership and shard maps ---------------------------------------------------------------

    async def _heartbeat(self, msg: Msg) -> None:
        beat = wire.decode(m.Heartbeat, msg.data)
        key = (beat.kind, beat.instance_id)
        if key not in self.members:
            log.info("%s %s joined%s", beat.kind, beat.instance_id, f" at {beat.address}" if beat.address else "")
        self.members[key] = beat
        self.last_seen[key] = time.monotonic()

    async def _maintain_membership(self) -> None:
        while True:
            await asyncio.sleep(m.HEARTBEAT_INTERVAL_S / 2)
            now = time.monotonic()
            for key in [k for k, seen in self.last_seen.items() if now - seen > m.DROP_AFTER_S]:
                log.warning("%s %s silent for %.0fs: dropped", key[0], key[1], now - self.last_seen[key])
                del self.members[key], self.last_seen[key]
                await retry_forever("membership delete", lambda k=key: self._kv_delete(m.MEMBERS_BUCKET, ".".join(k)))
                self._published_members.pop(key, None)
            for (kind, instance), beat in list(self.members.items()):
                entry = m.Heartbeat(kind, instance, beat.address, beat.item_type, beat.sent_at)
                if (entry.address, entry.item_type) == self._published_members.get((kind, instance)):
                    continue  # members are written on join and on change, not on every heartbeat
                await retry_forever(
                    "membership update", lambda k=f"{kind}.{instance}", e=entry: self._kv_put(m.MEMBERS_BUCKET, k, e)
                )
                self._published_members[(kind, instance)] = (entry.address, entry.item_type)
            if now - self.started_at < m.DROP_AFTER_S:
                continue  # a restarted controller first hears everyone before it rewrites the maps
            for group, shard_map in self.shard_maps().items():
                encoded = wire.encode(shard_map)
                if self._published_maps.get(group) != encoded:
                    await retry_forever(
                        "shard map update", lambda g=group, s=shard_map: self._kv_put(m.SHARDS_BUCKET, g, s)
                    )
                    self._published_maps[group] = encoded
                    log.info("shard map %s: %d live instance(s)", group, len(shard_map.members))

    def shard_maps(self) -> dict[str, m.ShardMap]:
        groups: dict[str, list[m.ShardMember]] = {
            group_name(kind, item): [] for kind in (m.SHARDED_CACHE, m.FULL_PIECE_CACHE) for item in m.CACHE_ITEM_TYPES
        }
        groups[CONTROLLER_GROUP] = []
        for beat in self.members.values():
            if beat.address and beat.kind in (m.SHARDED_CACHE, m.FULL_PIECE_CACHE, m.CONTROLLER):
                groups.setdefault(group_name(beat.kind, beat.item_type), []).append(
                    m.ShardMember(beat.instance_id, beat.address)
                )
        return {g: m.ShardMap(g, tuple(sorted(ms, key=lambda x: x.instance_id))) for g, ms in groups.items()}

    async def _kv_put(self, bucket: str, key: str, value: Any) -> None:
        await (await self.nats.kv(bucket)).put(key, wire.encode(value))

    async def _kv_delete(self, bucket: str, key: str) -> None:
        await (await self.nats.kv(bucket)).delete(key)
