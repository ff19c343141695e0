"""Controller: the cluster's only link to the node. It re-broadcasts slots, reward-signing requests and
archived segment headers, answers app-info/segment-header requests, forwards solutions and signatures,
serves node pieces over TCP as the last piece source, and turns heartbeats into membership and cache
shard maps in JetStream KV."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import nats.errors

from autonomys_farmer.cluster import sharding, subjects
from autonomys_farmer.cluster.bulk_ops import BulkRequest, GetItems, Item
from autonomys_farmer.cluster.messages import (
    DROP_AFTER_S,
    HEARTBEAT_INTERVAL_S,
    AppInfoRequest,
    CacheItemType,
    ComponentKind,
    ControllerStatus,
    Heartbeat,
    SegmentHeadersRequest,
    SegmentHeadersResponse,
    ShardMap,
    ShardMember,
    SubmitResult,
    SubmitSolution,
)
from autonomys_farmer.protocol.farmer_rpc import SOLUTION_IGNORED, FarmerAppInfo, RewardSignatureResponse
from autonomys_farmer.protocol.types import PieceIndex
from autonomys_farmer.services.components.component import Component
from autonomys_farmer.services.transport.bulk import Answer
from autonomys_farmer.services.transport.jsonrpc import ConnectionLostError, RpcError
from autonomys_farmer.services.transport.nats_bus import retry_forever
from autonomys_farmer.services.transport.node_client import NodeClient

log = logging.getLogger(__name__)

PIECE_LRU = 64
SEEN_SIGNATURES = 1024


class Controller(Component):
    kind = ComponentKind.CONTROLLER

    def __init__(
        self, nats_servers: list[str], node_rpc_url: str, base_path: Path | None, job_ack_wait: float = 60.0
    ) -> None:
        super().__init__(nats_servers)
        self.job_ack_wait = job_ack_wait  # the plot servers' consumer, which the controller owns
        self.node = NodeClient(node_rpc_url)
        self.base_path = base_path
        self.item_type = CacheItemType.PIECE
        self.members: dict[tuple[str, str], Heartbeat] = {}
        self.last_seen: dict[tuple[str, str], float] = {}
        self._published_maps: dict[str, ShardMap] = {}
        self._published_members: dict[tuple[str, str], tuple[str, CacheItemType | None]] = {}
        self._pieces: OrderedDict[int, bytes] = OrderedDict()
        self._signed: OrderedDict[bytes, None] = OrderedDict()
        self.observed_since = time.monotonic()  # start, or the end of our own last NATS outage
        self._own_last_heard: float | None = None
        self.counts = dict.fromkeys(("slots", "solutions", "accepted", "late", "invalid", "segments", "signatures"), 0)

    def status(self) -> ControllerStatus:
        return ControllerStatus(**self.counts, members=len(self.members))

    async def start(self) -> None:
        await super().start()
        if self.base_path is not None:
            self.base_path.mkdir(parents=True, exist_ok=True)
        await self.start_bulk(self._serve_pieces)
        bus = self.nats
        # Every controller forwards every signature to its node (its own queue group).
        await bus.subscribe(subjects.REWARD_SIGNATURE, self._reward_signature, queue=self.instance_id)
        await bus.subscribe(subjects.HEARTBEAT, self._heartbeat)
        await bus.create_state((subjects.MEMBERS, subjects.SHARDS), subjects.PLOT_JOBS, self.job_ack_wait)
        self.spawn(self._serve_while_node_connected())
        self.spawn(self._relay_slots())
        self.spawn(self._relay_reward_signing())
        self.spawn(self._relay_segment_headers())
        self.spawn(self._maintain_membership())
        self.spawn(self._guard_shard_maps())
        self.spawn(self._guard_members())

    async def _serve_while_node_connected(self) -> None:
        """Join the queue groups of requests only the node can answer while our node is reachable, so a
        solution goes straight to a controller that can forward it (with one controller per node, one whose
        node is down would only hand it back)."""
        while True:
            await self.node.until_connected()
            serving = [
                await self.nats.serve(subjects.FARMER_APP_INFO, self._farmer_app_info),
                await self.nats.serve(subjects.SEGMENT_HEADERS, self._segment_headers),
                await self.nats.serve(subjects.SUBMIT_SOLUTION, self._submit_solution),
            ]
            await self.node.until_lost()
            log.warning("node %s lost: its requests are left to the other controllers until it is back", self.node.url)
            for subscription in serving:
                try:
                    await subscription.drain()  # what already reached us is answered (a solution handed back)
                except (nats.errors.Error, TimeoutError):  # NATS down too: leave the group without the round trip
                    with contextlib.suppress(nats.errors.Error):
                        await subscription.unsubscribe()

    # --- node -> cluster -------------------------------------------------------------------------

    async def _relay_slots(self) -> None:
        last = -1
        async for slot in self.node.slot_info():
            if slot.slot_number <= last:  # the node may repeat after a reconnect
                continue
            last = slot.slot_number
            self.counts["slots"] += 1
            await self.nats.publish(subjects.SLOT_INFO, slot)

    async def _relay_reward_signing(self) -> None:
        async for info in self.node.reward_signing():
            await self.nats.publish(subjects.REWARD_SIGNING_INFO, info)

    async def _relay_segment_headers(self) -> None:
        async for header in self.node.archived_segment_headers():
            self.counts["segments"] += 1
            await self.nats.publish(subjects.ARCHIVED_SEGMENT_HEADER, header)
            await self.node.acknowledge_archived_segment_header(header.segment_index)

    # --- cluster -> node -------------------------------------------------------------------------

    async def _farmer_app_info(self, _request: AppInfoRequest) -> FarmerAppInfo:
        return await self.node.farmer_app_info()

    async def _segment_headers(self, request: SegmentHeadersRequest) -> SegmentHeadersResponse:
        return SegmentHeadersResponse(tuple(await self.node.segment_headers(list(request.segment_indexes))))

    async def _submit_solution(self, request: SubmitSolution) -> SubmitResult:
        """Forward to our node, once: with several controllers (one per node) a solution whose node is
        down goes back to the plot client unsent, for another controller."""
        if not self.node.connected:
            log.info("solution for slot %d handed back: node %s unreachable", request.slot_number, self.node.url)
            return SubmitResult(False, f"node {self.node.url} unreachable", submitted=False)
        self.counts["solutions"] += 1
        try:
            await self.node.submit_solution_response(request.slot_number, request.solution)
        except ConnectionLostError:
            log.warning("node connection lost while submitting a solution for slot %d", request.slot_number)
            return SubmitResult(False, "node connection lost during submission")
        except RpcError as e:
            log.info("solution for slot %d not accepted: %s", request.slot_number, e.message)
            late = e.message == SOLUTION_IGNORED
            self.counts["late" if late else "invalid"] += 1
            return SubmitResult(False, e.message, late=late)
        self.counts["accepted"] += 1
        return SubmitResult(True)

    async def _reward_signature(self, response: RewardSignatureResponse) -> None:
        if response.hash in self._signed:
            return
        self._signed[response.hash] = None
        while len(self._signed) > SEEN_SIGNATURES:
            self._signed.popitem(last=False)
        self.counts["signatures"] += 1
        await self.node.submit_reward_signature(response)

    async def _serve_pieces(self, operation: BulkRequest, _payload: bytes) -> AsyncIterator[Answer]:
        if not isinstance(operation, GetItems):
            raise ValueError(f"the controller serves pieces only, not {type(operation).__name__}")
        for key in operation.keys:
            data = self._pieces.get(key)
            if data is None:
                piece = await self.node.piece(PieceIndex(key))
                data = None if piece is None else piece.data
                if data is not None:
                    self._pieces[key] = data
                    while len(self._pieces) > PIECE_LRU:
                        self._pieces.popitem(last=False)
            yield Item(key, data is not None), data or b""

    # --- membership and shard maps ---------------------------------------------------------------

    async def _heartbeat(self, beat: Heartbeat) -> None:
        key = (beat.kind, beat.instance_id)
        if key == (self.kind, self.instance_id):
            now = time.monotonic()
            if sharding.own_outage_ended(self._own_last_heard, now, HEARTBEAT_INTERVAL_S):
                log.warning(
                    "heard nothing for %.0fs (a NATS stall on our side): membership decisions restart",
                    now - (self._own_last_heard or now),
                )
                self.observed_since = now
            self._own_last_heard = now
        if key not in self.members:
            log.info("%s %s joined%s", beat.kind, beat.instance_id, f" at {beat.address}" if beat.address else "")
        self.members[key] = beat
        self.last_seen[key] = time.monotonic()

    async def _maintain_membership(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S / 2)
            now = time.monotonic()
            for key in sharding.silent_members(self.last_seen, now, self.observed_since, DROP_AFTER_S):
                if not sharding.silent_members(
                    {key: self.last_seen.get(key, now)}, time.monotonic(), self.observed_since, DROP_AFTER_S
                ):
                    continue  # heard from (or our own outage noticed) while earlier drops were written
                log.warning("%s %s silent for %.0fs: dropped", key[0], key[1], now - self.last_seen[key])
                del self.members[key], self.last_seen[key]
                self._published_members.pop(key, None)  # before the delete: our own drop is no intrusion
                name = ".".join(key)
                await retry_forever("membership delete", partial(self.nats.kv_delete, subjects.MEMBERS, name))
            for (kind, instance), beat in list(self.members.items()):
                entry = Heartbeat(beat.kind, instance, beat.address, beat.item_type, beat.sent_at)
                if (entry.address, entry.item_type) == self._published_members.get((kind, instance)):
                    continue  # members are written on join and on change, not on every heartbeat
                name = f"{kind}.{instance}"
                await retry_forever("membership update", partial(self.nats.kv_put, subjects.MEMBERS, name, entry))
                self._published_members[(kind, instance)] = (entry.address, entry.item_type)
            if time.monotonic() - self.observed_since < DROP_AFTER_S:
                continue  # after a start or our own outage, hear everyone before rewriting the maps
            for group, shard_map in self.shard_maps().items():
                if self._published_maps.get(group) != shard_map:
                    await retry_forever(
                        "shard map update", partial(self.nats.kv_put, subjects.SHARDS, group, shard_map)
                    )
                    self._published_maps[group] = shard_map
                    log.info("shard map %s: %d live instance(s)", group, len(shard_map.members))

    async def _guard_shard_maps(self) -> None:
        """Shard maps are derived state: a value in KV other than the one we wrote (an overwrite by
        anyone else, or another controller's view during a change) makes the next round recompute
        and rewrite ours."""
        async for group, value in self.nats.kv_watch(subjects.SHARDS):
            ours = self._published_maps.get(group)
            if ours is not None and value != ours:
                log.warning("shard map %s in KV is not the one this controller derived: rewriting it", group)
                self._published_maps.pop(group, None)

    async def _guard_members(self) -> None:
        """Membership entries are derived from heartbeats: a changed or deleted entry of a live member
        is written again."""
        async for name, value in self.nats.kv_watch(subjects.MEMBERS):
            kind, _, instance = name.partition(".")
            key = (kind, instance)
            ours = self._published_members.get(key)
            if ours is None or (value is not None and (value.address, value.item_type) == ours):
                continue
            self._published_members.pop(key, None)
            if value is None and sharding.silent_members(
                {key: self.last_seen.get(key, 0.0)}, time.monotonic(), self.observed_since, DROP_AFTER_S
            ):
                continue  # another controller dropped a member that is silent for us too
            log.warning("membership entry %s in KV was changed by someone else: rewriting it", name)

    def shard_maps(self) -> dict[str, ShardMap]:
        groups: dict[str, list[ShardMember]] = {
            group: [] for group in (*sharding.CACHE_GROUPS, sharding.CONTROLLER_GROUP)
        }
        for beat in self.members.values():
            if (
                beat.address
                and beat.item_type is not None
                and beat.kind in (*sharding.CACHE_KINDS, ComponentKind.CONTROLLER)
            ):
                groups.setdefault(sharding.group_name(beat.kind, beat.item_type), []).append(
                    ShardMember(beat.instance_id, beat.address)
                )
        return {g: ShardMap(g, tuple(sorted(ms, key=lambda x: x.instance_id))) for g, ms in groups.items()}
