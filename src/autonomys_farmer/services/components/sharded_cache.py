"""Sharded piece cache: each instance stores the items that rendezvous hashing over the live instances
of its group assigns to it, keeps them in a crash-safe `piece_cache.bin`, and serves them over TCP.

It syncs itself: whenever the shard map changes, a segment is archived, a re-initialisation is
requested, or every SYNC_INTERVAL_S, it works out its share of the history, fetches what it lacks
(other caches, then the node via the controller) and frees what it no longer owns once space is needed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

from autonomys_farmer.cluster import sharding, subjects
from autonomys_farmer.cluster.bulk_ops import BulkRequest, Contents, GetItems, Item, ListContents, Repaired, RepairItem
from autonomys_farmer.cluster.messages import (
    AppInfoRequest,
    CacheItemType,
    CacheStatus,
    ComponentKind,
    ReinitializeCaches,
)
from autonomys_farmer.protocol.archiving import SegmentHeader
from autonomys_farmer.protocol.constants import NUM_PIECES, PIECE_SIZE
from autonomys_farmer.protocol.types import PieceIndex
from autonomys_farmer.services import metrics
from autonomys_farmer.services.components.component import Component
from autonomys_farmer.services.storage.piece_getter import PieceGetter, PieceVerifier
from autonomys_farmer.services.storage.piece_store import PieceStore, StoreFullError
from autonomys_farmer.services.transport.bulk import Answer

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 30.0
START_UP_WAIT_S = 300.0  # a never-synced cache waits this long for the history before it warns
FETCH_BATCH = 16
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?)B?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from `10GB`, `2TiB`, `4T` or plain bytes (decimal units, binary with `i`)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"invalid size {text!r} (examples: 200GiB, 10GB, 1048712)")
    number, unit, binary = match.groups()
    power = "KMGTP".find(unit.upper()) + 1 if unit else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


def parse_path_options(text: str, allowed: tuple[str, ...], required: tuple[str, ...] = ("path",)) -> dict[str, str]:
    """`path=DIR,size=...`: comma-separated key=value pairs; a value may contain '='."""
    options: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not value:
            raise ValueError(f"invalid option {part!r} in {text!r}: expected key=value")
        if key not in allowed:
            raise ValueError(f"unknown option {key!r} in {text!r}; allowed: {', '.join(allowed)}")
        options[key] = value
    for key in required:
        if key not in options:
            raise ValueError(f"{text!r} lacks {key}=")
    return options


class ShardedCache(Component):
    kind = ComponentKind.SHARDED_CACHE

    def __init__(
        self,
        nats_servers: list[str],
        directory: Path,
        size: int | None,
        item_type: CacheItemType = CacheItemType.PIECE,
        kzg_parameters: Path | None = None,
    ) -> None:
        super().__init__(nats_servers)
        self.item_type = item_type
        item_size = PIECE_SIZE if item_type == CacheItemType.PIECE else sharding.SHARD_SIZE
        capacity = None if size is None else size // (item_size + 40)
        if capacity is not None and capacity < 1:
            raise ValueError(f"cache size {size} holds no {item_type} of {item_size + 40} bytes")
        self.store = PieceStore(directory, item_size, capacity)
        self.group = sharding.group_name(self.kind, item_type)
        self._wake = asyncio.Event()
        self.synced = False
        self.sync_rounds = 0
        self.ever_synced = False
        self.getter: PieceGetter | None = None
        self.kzg_parameters = kzg_parameters
        self._verifier: PieceVerifier | None = None

    def _repair_verifier(self) -> PieceVerifier:
        """Checks repaired pieces; made on the first repair (caches otherwise need no compute)."""
        if self._verifier is None:
            from autonomys_farmer.backends import select_backend
            from autonomys_farmer.services.files import load_kzg

            self._verifier = PieceVerifier(self.nats, select_backend("cpu"), load_kzg(self.kzg_parameters))
        return self._verifier

    def status(self) -> CacheStatus:
        return CacheStatus(len(self.store), self.store.capacity, self.synced)

    async def start(self) -> None:
        await super().start()
        await self.start_bulk(self._serve)
        # Caches trust their sources as the official cache does (node, other caches); every piece is
        # verified by the plot server before it is encoded, so a bad one never reaches a sector.
        self.getter = PieceGetter(self.nats, None, priority_cache=True, secret=self.credentials.cluster_secret)
        await self.nats.subscribe(subjects.ARCHIVED_SEGMENT_HEADER, self._on_segment)
        await self.nats.subscribe(subjects.REINITIALIZE_CACHES, self._on_reinitialize)
        self.spawn(self.getter.maps.watch_forever())
        self.spawn(self._sync_forever())
        self.spawn(self._watch_map())

    async def _on_segment(self, _header: SegmentHeader) -> None:
        self._wake.set()

    async def _on_reinitialize(self, request: ReinitializeCaches) -> None:
        log.info("re-initialisation requested in %.1fs", request.delay_s)

        async def later() -> None:
            await asyncio.sleep(request.delay_s)
            await asyncio.to_thread(self.store.rescan)
            self._wake.set()

        self.spawn(later())

    async def _watch_map(self) -> None:
        """Sync when this group's shard map changes (the shard maps are watched in KV)."""
        assert self.getter is not None
        maps = self.getter.maps
        last = await maps.get(self.group)
        while True:
            await maps.changed.wait()
            maps.changed.clear()
            current = await maps.get(self.group)
            if current != last:
                last = current
                self._wake.set()

    async def _sync_forever(self) -> None:
        """Sync on every wake-up. A cache that has never synced is waiting for the history (a new
        chain archives its first segment, other caches fill up): said at INFO, retried with backoff;
        a sync that keeps failing after that, or for more than START_UP_WAIT_S, is a WARNING."""
        failing_since: float | None = None
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), SYNC_INTERVAL_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sync()
                failing_since, failures = None, 0
            except Exception as e:
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                failures += 1
                waiting = not self.ever_synced and now - failing_since < START_UP_WAIT_S
                if failures == 1 or failures % 10 == 0:
                    log.log(logging.INFO if waiting else logging.WARNING,
                            "cache sync incomplete (%s); retrying%s", e,
                            " (waiting for the history to be archived and cached)" if waiting else "")  # fmt: skip
                await asyncio.sleep(min(2.0 * 1.5 ** min(failures - 1, 6), 20.0))
                self._wake.set()

    def wanted_keys(self, ids: list[str], history_size: int) -> list[int]:
        """This instance's share of the history, newest pieces first (they are plotted most)."""
        keys = []
        for piece_index in range(history_size * NUM_PIECES - 1, -1, -1):
            if self.item_type == CacheItemType.PIECE:
                if sharding.owners(ids, piece_index)[0] == self.instance_id:
                    keys.append(sharding.item_key(piece_index))
            elif len(ids) >= sharding.SPLIT_SHARDS:
                for shard, owner in enumerate(sharding.split_owners(ids, piece_index)):
                    if owner == self.instance_id:
                        keys.append(sharding.item_key(piece_index, shard))
        return keys if self.store.capacity is None else keys[: self.store.capacity]

    async def sync(self) -> None:
        assert self.getter is not None
        shard_map = await self.getter.maps.get(self.group)
        ids = [member.instance_id for member in shard_map.members]
        if self.instance_id not in ids:
            return  # not a member yet: the controller has not seen our heartbeat
        info = await self.nats.request(subjects.FARMER_APP_INFO, AppInfoRequest())
        wanted = self.wanted_keys(ids, info.protocol_info.history_size)
        wanted_set = set(wanted)
        missing = [k for k in wanted if k not in self.store]
        unwanted = [k for k in self.store.keys() if k not in wanted_set]
        if missing or unwanted:
            log.info(
                "%s sync: %d wanted, %d missing, %d no longer owned",
                self.group,
                len(wanted),
                len(missing),
                len(unwanted),
            )
        self.synced = not missing
        for start in range(0, len(missing), FETCH_BATCH):
            batch = missing[start : start + FETCH_BATCH]
            piece_indexes = [
                PieceIndex(k if self.item_type == CacheItemType.PIECE else sharding.split_key(k)[0]) for k in batch
            ]
            pieces = await self.getter.get_pieces(piece_indexes, skip=self.instance_id)
            for key, piece_index in zip(batch, piece_indexes, strict=True):
                piece = pieces.get(piece_index)
                if piece is None:
                    continue
                item = (
                    piece.data if self.item_type == CacheItemType.PIECE else sharding.split_piece(piece.data)[key & 3]
                )
                while True:
                    try:
                        await asyncio.to_thread(self.store.put, key, item)
                        metrics.CACHE_WRITE_PIECE.labels(self.instance_id).inc()
                        break
                    except StoreFullError:
                        if not unwanted:
                            raise
                        await asyncio.to_thread(self.store.delete, unwanted.pop())
        was_synced, self.synced = self.synced, all(k in self.store for k in wanted)
        self.ever_synced = self.ever_synced or self.synced
        self.sync_rounds += 1
        if self.synced and missing and not was_synced:
            log.info("%s synced: %d items held", self.group, len(self.store))
        if not self.synced:
            raise RuntimeError(f"{sum(k not in self.store for k in wanted)} items could not be fetched")

    async def _serve(self, operation: BulkRequest, payload: bytes) -> AsyncIterator[Answer]:
        if isinstance(operation, GetItems):
            for key in operation.keys:
                item = await asyncio.to_thread(self.store.get, key)
                metrics.CACHE_READ_PIECE.labels(self.instance_id).inc()
                yield Item(key, item is not None), item or b""
        elif isinstance(operation, ListContents):
            yield Contents(tuple(self.store.keys())), b""
        elif isinstance(operation, RepairItem):  # `util verify-piece` replaces an item that failed verification
            key = operation.key
            split = self.item_type == CacheItemType.SPLIT_PARITY_PIECE
            piece_index, shard = sharding.split_key(key) if split else (key, 0)
            if len(payload) != PIECE_SIZE:
                raise ValueError(f"repair of key {key}: {len(payload)} bytes, expected the whole piece ({PIECE_SIZE})")
            verdicts = await self._repair_verifier().valid_many({piece_index: payload})
            if not verdicts[piece_index]:  # nothing received is stored unchecked, keys outside the history included
                raise ValueError(f"repair of key {key}: the piece does not verify against its segment commitment")
            item = sharding.split_piece(payload)[shard] if split else payload
            await asyncio.to_thread(self.store.delete, key)
            await asyncio.to_thread(self.store.put, key, item)
            log.info("%s: item %d repaired", self.group, key)
            yield Repaired(key), b""
        else:
            raise ValueError(f"a cache does not serve {type(operation).__name__}")
