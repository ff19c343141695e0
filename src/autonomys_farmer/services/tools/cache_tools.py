"""Operator tools for the cache cluster (`autonomys-farmer util ...`): re-initialise every cache,
benchmark sector downloads the way a plotter does them, and verify (and repair) every cached item.
They join the cluster as short-lived NATS clients and talk to caches over the same TCP protocol."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from autonomys_farmer.cluster import sharding, subjects
from autonomys_farmer.cluster.bulk_ops import Contents, ListContents, Repaired, RepairItem
from autonomys_farmer.cluster.messages import AppInfoRequest, CacheItemType, ComponentKind, ReinitializeCaches, ShardMap
from autonomys_farmer.cluster.sharding import CACHE_GROUPS
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import PIECE_SIZE
from autonomys_farmer.protocol.farmer_rpc import FarmerAppInfo
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.sector import FarmerProtocolInfo, derive_sector_id, derive_sector_piece_indices
from autonomys_farmer.protocol.types import PieceIndex
from autonomys_farmer.services.storage.piece_getter import PieceGetter, PieceVerifier, ShardMaps, fetch_items
from autonomys_farmer.services.transport import bulk
from autonomys_farmer.services.transport.credentials import Credentials
from autonomys_farmer.services.transport.nats_bus import Bus

log = logging.getLogger(__name__)

VERIFY_BATCH = 64
TOOL_CONNECT_TIMEOUT_S = 15.0
OPEN = Credentials()  # a cluster without authentication


async def _connect(nats_servers: list[str], name: str, credentials: Credentials) -> Bus:
    """A tool is interactive: give up on an unreachable NATS quickly, with the reason."""
    return await Bus.connect(nats_servers, name, TOOL_CONNECT_TIMEOUT_S, credentials.nats)


async def _app_info(bus: Bus) -> FarmerAppInfo:
    return await bus.request(subjects.FARMER_APP_INFO, AppInfoRequest())


async def cache_members(bus: Bus) -> dict[str, ShardMap]:
    maps = ShardMaps(bus)
    return {group: await maps.get(group) for group in CACHE_GROUPS}


# --- util reinitialization-cache ---------------------------------------------------------------------


async def reinitialize_caches(nats_servers: list[str], delay_s: float, credentials: Credentials) -> int:
    """Ask every cache to re-scan its store and re-sync its shard after `delay_s`; returns how many
    cache instances the shard maps list (those are the ones that will act on it)."""
    if delay_s < 0:
        raise ValueError(f"--delay must be >= 0, got {delay_s}")
    bus = await _connect(nats_servers, "util-reinitialization-cache", credentials)
    try:
        members = sum(len(shard_map.members) for shard_map in (await cache_members(bus)).values())
        await bus.publish(subjects.REINITIALIZE_CACHES, ReinitializeCaches(delay_s))
        await bus.nc.flush()
        return members
    finally:
        await bus.close()


# --- util sharded-cache-benchmark --------------------------------------------------------------------


@dataclass
class BenchmarkEpoch:
    epoch: int
    sectors: int
    pieces: int
    missing: int
    invalid: int
    seconds: float
    sector_latencies_s: list[float] = field(repr=False)

    @property
    def pieces_per_s(self) -> float:
        return self.pieces / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.pieces * PIECE_SIZE / 1e6 / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.sector_latencies_s)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    def summary(self) -> str:
        return (
            f"epoch {self.epoch}: {self.sectors} sectors, {self.pieces} pieces in {self.seconds:.2f} s: "
            f"{self.pieces_per_s:.1f} pieces/s, {self.mb_per_s:.1f} MB/s; sector latency "
            f"p50 {self.percentile(50):.3f} s, p90 {self.percentile(90):.3f} s, p99 {self.percentile(99):.3f} s, "
            f"max {max(self.sector_latencies_s, default=0):.3f} s; missing {self.missing}, invalid {self.invalid}"
        )


async def sharded_cache_benchmark(
    nats_servers: list[str],
    compute: Compute,
    kzg: Kzg,
    sectors: int,
    epochs: int,
    item_type: CacheItemType,
    concurrency: int = 4,
    verify: bool = True,
    report: Callable[[BenchmarkEpoch], None] = lambda _: None,
    credentials: Credentials = OPEN,
) -> list[BenchmarkEpoch]:
    """Download the pieces of `sectors` random sectors from the sharded caches of `item_type` only,
    `concurrency` sectors at a time, as plot servers do (and verifying each piece as they do)."""
    if sectors < 1 or epochs < 1 or concurrency < 1:
        raise ValueError(f"--sectors, --epoch and --concurrency must be >= 1 (got {sectors}, {epochs}, {concurrency})")
    bus = await _connect(nats_servers, "util-sharded-cache-benchmark", credentials)
    try:
        info = (await _app_info(bus)).protocol_info
        group = sharding.group_name(ComponentKind.SHARDED_CACHE, item_type)
        if not (await ShardMaps(bus).get(group)).members:
            raise RuntimeError(f"no live {group} instances in the cluster")
        results = []
        for epoch in range(1, epochs + 1):
            verifier = PieceVerifier(bus, compute, kzg) if verify else None
            getter = PieceGetter(bus, verifier, sources=[group], secret=credentials.cluster_secret)
            result = await _benchmark_epoch(getter, info, epoch, sectors, concurrency)
            report(result)
            results.append(result)
        return results
    finally:
        await bus.close()


async def _benchmark_epoch(
    getter: PieceGetter, info: FarmerProtocolInfo, epoch: int, sectors: int, concurrency: int
) -> BenchmarkEpoch:
    todo = list(range(sectors))
    latencies: list[float] = []
    counts = {"pieces": 0, "missing": 0}

    async def worker() -> None:
        while todo:
            sid = derive_sector_id(os.urandom(32), todo.pop(), info.history_size)  # a fresh farmer's sector
            indexes = set(derive_sector_piece_indices(sid, info.max_pieces_in_sector, info))
            started = time.perf_counter()
            found = await getter.get_pieces(indexes)
            latencies.append(time.perf_counter() - started)
            counts["pieces"] += len(found)
            counts["missing"] += len(indexes) - len(found)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, sectors))))
    seconds = time.perf_counter() - started
    return BenchmarkEpoch(epoch, sectors, counts["pieces"], counts["missing"], getter.invalid, seconds, latencies)


# --- util verify-piece -------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    checked: int = 0
    bad: list[tuple[str, str, int]] = field(default_factory=list)  # (group, instance, key)
    repaired: int = 0
    unrepairable: int = 0
    unreachable: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"checked {self.checked} cached item(s): {len(self.bad)} bad, {self.repaired} repaired, "
            f"{self.unrepairable} could not be repaired"
        ]
        lines += [f"  bad: {group} instance {instance} key {key}" for group, instance, key in self.bad]
        lines += [f"  unreachable: {what}" for what in self.unreachable]
        return "\n".join(lines)


async def verify_pieces(
    nats_servers: list[str],
    compute: Compute,
    kzg: Kzg,
    repair: bool = True,
    progress: Callable[[int, int], None] = lambda done, total: None,
    groups: Sequence[str] = CACHE_GROUPS,
    credentials: Credentials = OPEN,
) -> VerifyReport:
    """Check every item every cache holds against its segment commitment; replace bad ones with a
    verified copy from elsewhere in the cluster (another cache, else the node via the controller).

    A whole piece is checked directly; a split-parity shard is checked against the matching shard of
    a verified copy of its piece (a lone shard cannot be checked on its own)."""
    if unknown := set(groups) - set(CACHE_GROUPS):
        raise ValueError(f"unknown cache group(s) {', '.join(sorted(unknown))}; expected {', '.join(CACHE_GROUPS)}")
    bus = await _connect(nats_servers, "util-verify-piece", credentials)
    secret = credentials.cluster_secret
    report = VerifyReport()
    try:
        # Verifies; the node (via the controller) comes last.
        getter = PieceGetter(bus, PieceVerifier(bus, compute, kzg), priority_cache=True, secret=secret)
        members = [
            (group, member)
            for group, shard_map in (await cache_members(bus)).items()
            if group in groups
            for member in shard_map.members
        ]
        contents: dict[tuple[str, str], list[int]] = {}
        for group, member in members:
            try:
                ((listing, _),) = await bulk.request_all(member.address, ListContents(), Contents, secret=secret)
                contents[(group, member.instance_id)] = list(listing.keys)
            except (OSError, bulk.BulkError, TimeoutError, ValueError) as e:
                report.unreachable.append(f"{group} instance {member.instance_id} at {member.address}: {e}")
        total = sum(len(keys) for keys in contents.values())
        done = 0
        for group, member in members:
            keys = sorted(contents.get((group, member.instance_id), []))
            for start in range(0, len(keys), VERIFY_BATCH):
                batch = keys[start : start + VERIFY_BATCH]
                items = await fetch_items(member.address, batch, secret)
                right, pieces = await _right_items(getter, group, member.instance_id, batch, items)
                report.checked += len(batch)
                for key in batch:
                    good = right.get(key)
                    if good is not None and items.get(key) == good:
                        continue
                    report.bad.append((group, member.instance_id, key))
                    if not repair:
                        continue
                    if good is None:
                        report.unrepairable += 1
                    else:
                        piece = pieces[key]  # the cache checks the whole piece itself before it stores the item
                        await bulk.request_all(member.address, RepairItem(key), Repaired, piece, secret=secret)
                        report.repaired += 1
                done += len(batch)
                progress(done, total)
        return report
    finally:
        await bus.close()


async def _right_items(
    getter: PieceGetter, group: str, instance: str, keys: list[int], items: dict[int, bytes]
) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """What each key should hold (the item itself where it verifies, else a verified copy from
    elsewhere; absent when none can be found) and the verified piece it comes from. A lone
    split-parity shard cannot be checked on its own, so shards are compared with the same shard of a
    verified copy of their piece."""
    if group != sharding.SHARDED_SPLIT_GROUP:
        assert getter.verifier is not None
        verdicts = await getter.verifier.valid_many(items)
        right = {key: items[key] for key, ok in verdicts.items() if ok}
        lacking = [key for key in keys if key not in right]
        if lacking:
            copies = await getter.get_pieces(lacking, skip=instance)
            right.update({key: piece.data for key, piece in copies.items()})
        return right, right
    located = {key: (PieceIndex(sharding.split_key(key)[0]), sharding.split_key(key)[1]) for key in keys}
    copies = await getter.get_pieces({piece_index for piece_index, _ in located.values()}, skip=instance)
    found = {key: located[key] for key in keys if located[key][0] in copies}
    shards = {key: sharding.split_piece(copies[piece_index].data)[shard] for key, (piece_index, shard) in found.items()}
    return shards, {key: copies[piece_index].data for key, (piece_index, _shard) in found.items()}
