"""Cache groups, placement of cache items on live cache instances, and the split-parity item form.

A cache group is a component kind with the item type it stores ("sharded-cache.piece"); a plotter asks
the groups in `source_order`, the controller (the node) last.

Placement is rendezvous (highest-random-weight) hashing, a consistent hash: each item goes to the
instances with the highest blake3(instance id ‖ key) weights, so when an instance joins or leaves
only the items it wins or held move. A split-parity piece is two halves plus their XOR: three
items on three different instances, any two of which give back the piece.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import TypeVar

from autonomys_farmer.cluster.messages import CacheItemType, ComponentKind
from autonomys_farmer.protocol.constants import PIECE_SIZE
from autonomys_farmer.protocol.hashes import blake3_hash

SPLIT_SHARDS = 3  # data half 0, data half 1, parity
SHARD_SIZE = PIECE_SIZE // 2


class ShardingError(ValueError):
    pass


CACHE_KINDS = (ComponentKind.SHARDED_CACHE, ComponentKind.FULL_PIECE_CACHE)


def group_name(kind: ComponentKind, item_type: CacheItemType) -> str:
    return f"{kind}.{item_type}"


CONTROLLER_GROUP = group_name(ComponentKind.CONTROLLER, CacheItemType.PIECE)  # the node's pieces
SHARDED_PIECE_GROUP = group_name(ComponentKind.SHARDED_CACHE, CacheItemType.PIECE)
SHARDED_SPLIT_GROUP = group_name(ComponentKind.SHARDED_CACHE, CacheItemType.SPLIT_PARITY_PIECE)
FULL_PIECE_GROUP = group_name(ComponentKind.FULL_PIECE_CACHE, CacheItemType.PIECE)
CACHE_GROUPS = (SHARDED_PIECE_GROUP, SHARDED_SPLIT_GROUP, FULL_PIECE_GROUP)


def source_order(priority_cache: bool) -> list[str]:
    """Groups in the order a plotter asks them (`--priority-cache`: sharded caches before the full one);
    the controller, which asks the node, always comes last."""
    sharded = [SHARDED_PIECE_GROUP, SHARDED_SPLIT_GROUP]
    return (
        [*sharded, FULL_PIECE_GROUP, CONTROLLER_GROUP]
        if priority_cache
        else [FULL_PIECE_GROUP, *sharded, CONTROLLER_GROUP]
    )


def item_key(piece_index: int, shard: int | None = None) -> int:
    """u64 key of a stored item: the piece index, or (piece index, shard) for split-parity items."""
    return piece_index if shard is None else (piece_index << 2) | shard


def split_key(key: int) -> tuple[int, int]:
    return key >> 2, key & 3


def weight(instance_id: str, key: int) -> bytes:
    return blake3_hash(instance_id.encode(), struct.pack("<Q", key))


def owners(instance_ids: Sequence[str], key: int, count: int = 1) -> list[str]:
    """The `count` instances an item belongs to, best first."""
    if len(instance_ids) < count:
        raise ShardingError(f"{count} cache instances needed, {len(instance_ids)} live")
    return sorted(instance_ids, key=lambda i: weight(i, key), reverse=True)[:count]


def split_owners(instance_ids: Sequence[str], piece_index: int) -> list[str]:
    """Instance for shard 0, 1 and parity: three distinct instances chosen by the piece index."""
    return owners(instance_ids, item_key(piece_index), SPLIT_SHARDS)


def split_piece(piece: bytes) -> list[bytes]:
    if len(piece) != PIECE_SIZE:
        raise ShardingError(f"piece is {len(piece)} bytes, expected {PIECE_SIZE}")
    a, b = piece[:SHARD_SIZE], piece[SHARD_SIZE:]
    parity = (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(SHARD_SIZE, "little")
    return [a, b, parity]


def join_piece(shards: dict[int, bytes]) -> bytes:
    """Piece from any two of its three shards."""
    if 0 in shards and 1 in shards:
        return shards[0] + shards[1]
    if 2 not in shards or len(shards) < 2:
        raise ShardingError(f"need two of three shards, have {sorted(shards)}")
    (known,) = [s for s in shards if s != 2]
    other = (int.from_bytes(shards[known], "little") ^ int.from_bytes(shards[2], "little")).to_bytes(
        SHARD_SIZE, "little"
    )
    return shards[0] + other if known == 0 else other + shards[1]


K = TypeVar("K")


def silent_members(last_seen: Mapping[K, float], now: float, observed_since: float, drop_after: float) -> list[K]:
    """Members to drop for silence. Silence counts only from when the observer could hear: since its
    start or its own last outage (`observed_since`), so a NATS stall on the observer's side drops
    nobody, and a heartbeat newer than `now` (seen while deciding) is never negative silence."""
    return [key for key, seen in last_seen.items() if now - max(seen, observed_since) > drop_after]


def own_outage_ended(own_last_heard: float | None, now: float, interval: float) -> bool:
    """The observer hears its own heartbeat again after missing more than two: it was cut off."""
    return own_last_heard is not None and now - own_last_heard > 2 * interval
