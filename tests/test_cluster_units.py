"""Pure pieces of the cluster: message codec, shard placement, split-parity, proving request, piece store."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from autonomys_farmer.cluster import messages as m
from autonomys_farmer.cluster import sharding, wire
from autonomys_farmer.protocol.constants import PIECE_SIZE, RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.proving import RecordWin
from autonomys_farmer.protocol.reading import RecordChunks
from autonomys_farmer.protocol.sector import FarmerProtocolInfo, RecordMetadata
from autonomys_farmer.protocol.types import HistorySize, SectorIndex
from autonomys_farmer.services.components.sharded_cache import parse_path_options, parse_size
from autonomys_farmer.services.storage.farm import Farm, FarmError
from autonomys_farmer.services.storage.piece_store import PieceStore, StoreFullError


def test_wire_round_trip_and_clear_errors() -> None:
    info = FarmerProtocolInfo(HistorySize(1), 8, 5, (1, 10), 4)
    job = m.PlotJob("j1", "farm", b"\x01" * 32, SectorIndex(3), 8, info, attempt=2)
    assert wire.decode(m.PlotJob, wire.encode(job)) == job
    assert b'"publicKey"' not in wire.encode(job) and b"0101" in wire.encode(job)
    shard_map = m.ShardMap("g", (m.ShardMember("a", "h:1"), m.ShardMember("b", "h:2")))
    assert wire.decode(m.ShardMap, wire.encode(shard_map)) == shard_map
    with pytest.raises(wire.WireError, match=r"PlotJob.sector_index: expected an integer"):
        wire.decode(m.PlotJob, wire.encode(job).replace(b'"sector_index":3', b'"sector_index":"3"'))
    with pytest.raises(wire.WireError, match=r"PlotJob.public_key"):
        wire.decode(m.PlotJob, wire.encode(job).replace(b"0101", b"zz01", 1))
    with pytest.raises(wire.WireError, match="missing"):
        wire.decode(m.PlotJob, b'{"job_id": "x"}')


def test_rendezvous_placement_moves_only_what_it_must() -> None:
    ids = [f"cache-{i}" for i in range(4)]
    before = {k: sharding.owners(ids, k)[0] for k in range(2000)}
    load = Counter(before.values())
    assert min(load.values()) > 2000 / 4 * 0.8  # roughly even
    after = {k: sharding.owners(ids[:3], k)[0] for k in range(2000)}
    moved = [k for k in before if before[k] != after[k]]
    assert all(before[k] == "cache-3" for k in moved)  # only the leaver's items move
    with pytest.raises(sharding.ShardingError, match="3 cache instances needed, 2 live"):
        sharding.split_owners(ids[:2], 0)


def test_split_parity_any_two_of_three_shards_give_the_piece() -> None:
    piece = os.urandom(PIECE_SIZE)
    shards = sharding.split_piece(piece)
    assert [len(s) for s in shards] == [sharding.SHARD_SIZE] * 3
    for lost in range(3):
        assert sharding.join_piece({i: s for i, s in enumerate(shards) if i != lost}) == piece
    with pytest.raises(sharding.ShardingError):
        sharding.join_piece({2: shards[2]})
    assert sharding.split_key(sharding.item_key(12345, 2)) == (12345, 2)
    owners = sharding.split_owners([f"c{i}" for i in range(5)], 77)
    assert len(set(owners)) == 3


def test_proving_request_round_trip() -> None:
    rng = np.random.default_rng(1)
    s_buckets = np.sort(rng.choice(RECORD_NUM_S_BUCKETS, RECORD_NUM_CHUNKS, replace=False)).astype(np.int64)
    record = RecordChunks(
        5, s_buckets, rng.random(RECORD_NUM_CHUNKS) < 0.5, rng.integers(0, 256, (RECORD_NUM_CHUNKS, 32), np.uint8)
    )
    win = RecordWin(
        b"\x02" * 32,
        b"\x03" * 32,
        7,
        9,
        int(s_buckets[10]),
        record,
        RecordMetadata(b"\x04" * 48, b"\x05" * 48, b"\x06" * 32),
    )
    data = m.encode_record_win(win)
    assert len(data) < 3 * 1024 * 1024 * 0.9  # fits a NATS message with the required max_payload
    back = m.decode_record_win(data)
    assert (back.public_key, back.reward_address, back.sector_index, back.history_size, back.s_bucket) == (
        win.public_key,
        win.reward_address,
        7,
        9,
        win.s_bucket,
    )
    assert back.record_metadata == win.record_metadata and back.record.piece_offset == 5
    assert np.array_equal(back.record.s_buckets, s_buckets)
    assert np.array_equal(back.record.encoded, record.encoded)
    assert np.array_equal(back.record.chunks, record.chunks)
    with pytest.raises(wire.WireError, match="body is"):
        m.decode_record_win(data[:-1])


def test_piece_store_survives_torn_writes_and_reuses_slots(tmp_path: Path) -> None:
    store = PieceStore(tmp_path, 64, capacity=3)
    items = {k: os.urandom(64) for k in (10, 20, 30)}
    for k, v in items.items():
        store.put(k, v)
    with pytest.raises(StoreFullError, match="full"):
        store.put(40, os.urandom(64))
    store.delete(20)
    store.put(40, b"\x07" * 64)  # takes the freed slot
    store.close()
    # Tear the element of key 10 as a crash mid-write would.
    with open(tmp_path / "piece_cache.bin", "r+b") as f:
        f.seek(20)
        f.write(b"\xff" * 8)
    reopened = PieceStore(tmp_path, 64, capacity=3)
    assert sorted(reopened.keys()) == [30, 40]
    assert reopened.get(30) == items[30] and reopened.get(40) == b"\x07" * 64
    assert reopened.get(10) is None
    with pytest.raises(Exception, match="expected 64"):
        reopened.put(50, b"short")


def test_operator_option_parsing() -> None:
    assert parse_size("256MiB") == 256 * 2**20 and parse_size("10GB") == 10**10 and parse_size("4096") == 4096
    with pytest.raises(ValueError, match="invalid size 'lots'"):
        parse_size("lots")
    assert parse_path_options("path=/a=b,size=1G", ("path", "size")) == {"path": "/a=b", "size": "1G"}
    with pytest.raises(ValueError, match="unknown option 'color'"):
        parse_path_options("path=/a,color=red", ("path", "size"))
    with pytest.raises(ValueError, match="lacks sectors="):
        parse_path_options("path=/a", ("path", "sectors"), ("path", "sectors"))


def test_a_farm_is_locked_by_its_farmer(tmp_path: Path) -> None:
    genesis = bytes(range(32))
    farm = Farm(tmp_path / "farm", 2, 8, genesis)
    with pytest.raises(FarmError, match=r"in use by another farmer \(single_disk_farm.lock is locked\)"):
        Farm(tmp_path / "farm", 2, 8, genesis)
    identity = farm.public_key
    farm.close()
    again = Farm(tmp_path / "farm", 2, 8, genesis)  # the same identity, once the first let go
    assert again.public_key == identity and again.plotted() == {}
    again.close()


def test_an_unreachable_nats_is_reported_in_time() -> None:
    import asyncio
    import time

    from autonomys_farmer.services.devnet.supervisor import free_port
    from autonomys_farmer.services.transport.nats_bus import Bus, NatsConfigError

    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(NatsConfigError, match=f"no NATS server reachable at {url}"):
        asyncio.run(Bus.connect([url], "test", initial_timeout=2.0))
    assert time.monotonic() - started < 10
