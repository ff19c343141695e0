"""Where a cluster member gets pieces: the cache groups (over TCP, placement from the shard maps in
JetStream KV), then the controller (the node). Every piece is checked against its segment commitment
before it is used, so a bad cache or disk can never end up in a sector."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Sequence

from autonomys_farmer.cluster import sharding, subjects
from autonomys_farmer.cluster.bulk_ops import GetItems, Item
from autonomys_farmer.cluster.messages import SegmentHeadersRequest, ShardMap
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import PIECE_SIZE
from autonomys_farmer.protocol.farmer_rpc import MAX_SEGMENT_HEADERS_PER_REQUEST
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.pieces import Piece, are_pieces_valid
from autonomys_farmer.protocol.types import PieceIndex, SegmentIndex
from autonomys_farmer.services.transport import bulk
from autonomys_farmer.services.transport.nats_bus import Bus

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 30.0


class ShardMaps:
    """The cache shard maps: kept current by watching their KV bucket (components run `watch_forever`),
    or read when asked (short-lived tools)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.maps: dict[str, ShardMap] = {}
        self.watching = False
        self.changed = asyncio.Event()  # set on every change; whoever waits clears it

    async def watch_forever(self) -> None:
        self.watching = True
        async for group, shard_map in self.bus.kv_watch(subjects.SHARDS):
            if shard_map is None:
                self.maps.pop(group, None)
            else:
                self.maps[group] = shard_map
            self.changed.set()

    async def get(self, group: str) -> ShardMap:
        if self.watching:
            return self.maps.get(group, ShardMap(group, ()))
        return await self.bus.kv_get(subjects.SHARDS, group) or ShardMap(group, ())


class SegmentCommitments:
    """Commitments of archived segments, asked from the controller in batches and kept (they never
    change once a segment is archived)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._known: dict[SegmentIndex, bytes] = {}

    async def get_many(self, segment_indexes: Iterable[SegmentIndex]) -> dict[SegmentIndex, bytes]:
        """Those of `segment_indexes` that are archived (the node caps a request's length)."""
        wanted = set(segment_indexes)
        unknown = sorted(wanted - self._known.keys())
        for start in range(0, len(unknown), MAX_SEGMENT_HEADERS_PER_REQUEST):
            batch = tuple(unknown[start : start + MAX_SEGMENT_HEADERS_PER_REQUEST])
            response = await self.bus.request(subjects.SEGMENT_HEADERS, SegmentHeadersRequest(batch))
            for segment_index, header in zip(batch, response.headers, strict=True):
                if header is not None:
                    self._known[segment_index] = header.segment_commitment
        return {i: self._known[i] for i in wanted if i in self._known}


async def fetch_items(address: str, keys: list[int], secret: bytes | None) -> dict[int, bytes]:
    """Items a bulk server holds out of `keys` (absent ones are simply missing)."""
    found: dict[int, bytes] = {}
    async for item, data in bulk.request(address, GetItems(tuple(keys)), Item, timeout=FETCH_TIMEOUT_S, secret=secret):
        if item.found:
            found[item.key] = data
    return found


async def _fetch_by_owner(
    by_owner: dict[str, list[int]], address: dict[str, str], secret: bytes | None
) -> dict[int, bytes]:
    """Fetch each owner's keys concurrently; an unreachable owner just contributes nothing."""
    results = await asyncio.gather(
        *(fetch_items(address[o], keys, secret) for o, keys in by_owner.items()), return_exceptions=True
    )
    out: dict[int, bytes] = {}
    for owner, result in zip(by_owner, results, strict=True):
        if isinstance(result, BaseException):
            log.info("cache %s at %s unavailable: %s", owner, address[owner], result)
        else:
            out.update(result)
    return out


class PieceVerifier:
    """Checks pieces against their segment commitments (protocol.md §3.6) in batches (one MSM and
    one pairing check per batch, `are_pieces_valid`); counts what failed."""

    def __init__(self, bus: Bus, compute: Compute, kzg: Kzg) -> None:
        self.compute = compute
        self.kzg = kzg
        self.commitments = SegmentCommitments(bus)
        self.invalid = 0

    async def valid_many(self, items: dict[int, bytes]) -> dict[int, bool]:
        result = dict.fromkeys(items, False)
        commitments = await self.commitments.get_many(PieceIndex(index).segment_index() for index in items)
        keys, triples = [], []
        for index, data in items.items():
            commitment = commitments.get(PieceIndex(index).segment_index())
            if commitment is not None and len(data) == PIECE_SIZE:
                keys.append(index)
                triples.append((Piece(data), commitment, PieceIndex(index).position()))
        if triples:
            verdicts = await asyncio.to_thread(are_pieces_valid, self.compute, self.kzg, triples, os.urandom(32))
            result.update(zip(keys, verdicts, strict=True))
        for index, ok in result.items():
            if not ok:
                self.invalid += 1
                log.warning("piece %d failed verification against its segment commitment", index)
        return result


class PieceGetter:
    def __init__(
        self,
        bus: Bus,
        verifier: PieceVerifier | None,
        priority_cache: bool = False,
        sources: list[str] | None = None,
        *,
        secret: bytes | None,
    ) -> None:
        """`verifier` None: pieces are taken as they come (caches trust their sources); `secret`: the
        cluster secret the caches ask for."""
        self.maps = ShardMaps(bus)
        self.secret = secret
        self.verifier = verifier
        self.order = sources if sources is not None else sharding.source_order(priority_cache)

    async def get_pieces(self, piece_indexes: Iterable[int], skip: str = "") -> dict[PieceIndex, Piece]:
        """Valid pieces found for `piece_indexes` (a missing one is absent from the result)."""
        wanted = [PieceIndex(index) for index in dict.fromkeys(piece_indexes)]
        found: dict[PieceIndex, Piece] = {}
        for group in self.order:
            missing = [i for i in wanted if i not in found]
            if not missing:
                break
            try:
                raw = await self._from_group(group, missing, skip)
            except Exception as e:
                log.warning("pieces from %s failed: %s", group, e)
                continue
            for index, ok in (await self._valid_many(raw)).items():
                if ok:
                    found[PieceIndex(index)] = Piece(raw[index])
        return found

    @property
    def invalid(self) -> int:
        return 0 if self.verifier is None else self.verifier.invalid

    async def _valid_many(self, raw: dict[int, bytes]) -> dict[int, bool]:
        if self.verifier is None:
            return {index: len(data) == PIECE_SIZE for index, data in raw.items()}
        return await self.verifier.valid_many(raw)

    async def _from_group(self, group: str, indexes: Sequence[int], skip: str) -> dict[int, bytes]:
        members = [member for member in (await self.maps.get(group)).members if member.instance_id != skip]
        if not members:
            return {}
        address = {member.instance_id: member.address for member in members}
        ids = list(address)
        if group == sharding.SHARDED_SPLIT_GROUP:
            return await self._split_parity(ids, address, indexes)
        by_owner: dict[str, list[int]] = {}
        for index in indexes:
            owner = ids[0] if group == sharding.CONTROLLER_GROUP else sharding.owners(ids, index)[0]
            by_owner.setdefault(owner, []).append(index)
        return await _fetch_by_owner(by_owner, address, self.secret)

    async def _split_parity(self, ids: list[str], address: dict[str, str], indexes: Sequence[int]) -> dict[int, bytes]:
        if len(ids) < sharding.SPLIT_SHARDS:
            return {}
        by_owner: dict[str, list[int]] = {}
        for index in indexes:
            for shard, owner in enumerate(sharding.split_owners(ids, index)):
                by_owner.setdefault(owner, []).append(sharding.item_key(index, shard))
        shards: dict[int, dict[int, bytes]] = {}
        for key, data in (await _fetch_by_owner(by_owner, address, self.secret)).items():
            piece_index, shard = sharding.split_key(key)
            shards.setdefault(piece_index, {})[shard] = data
        return {i: sharding.join_piece(s) for i, s in shards.items() if len(s) >= 2}
