"""Pure pieces of the cluster: message codec, shard placement, split-parity, proving request, piece store."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
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
    job = m.PlotJob("ab" * 16, "01JDV2K3M4N5P6Q7R8S9T0VWXY", b"\x01" * 32, SectorIndex(3), 8, info, attempt=2)
    assert wire.decode(m.PlotJob, wire.encode(job)) == job
    assert b'"publicKey"' not in wire.encode(job) and b"0101" in wire.encode(job)
    shard_map = m.ShardMap("g", (m.ShardMember("a", "h:1"), m.ShardMember("b", "h:2")))
    assert wire.decode(m.ShardMap, wire.encode(shard_map)) == shard_map
    with pytest.raises(wire.WireError, match=r"PlotJob.sector_index: expected an integer"):
        wire.decode(m.PlotJob, wire.encode(job).replace(b'"sector_index":3', b'"sector_index":"3"'))
    with pytest.raises(wire.WireError, match=r"PlotJob.public_key"):
        wire.decode(m.PlotJob, wire.encode(job).replace(b"0101", b"zz01", 1))
    for field, forged in (("job_id", "../../../../x/TRAVERSAL"), ("farm_id", "../evil")):  # names files: strict
        encoded = wire.encode(job if field == "job_id" else dataclasses.replace(job, job_id="cd" * 16))
        placeholder = b"ab" * 16 if field == "job_id" else job.farm_id.encode()
        with pytest.raises(wire.WireError, match=f"{field} must be"):
            wire.decode(m.PlotJob, encoded.replace(b'"' + placeholder + b'"', b'"' + forged.encode() + b'"', 1))
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
    data = m.encode_prove_request(m.ProveRequest(win, 2.5))
    assert len(data) < 3 * 1024 * 1024 * 0.9  # fits a NATS message with the required max_payload
    request = m.decode_prove_request(data)
    back = request.win
    assert request.budget_s == 2.5
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
        m.decode_prove_request(data[:-1])


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
    with pytest.raises(FarmError, match=r"in use by another farmer \(single_disk_farm.json is locked\)"):
        Farm(tmp_path / "farm", 2, 8, genesis)
    identity = farm.public_key
    farm.close()
    again = Farm(tmp_path / "farm", 2, 8, genesis)  # the same identity, once the first let go
    assert again.public_key == identity and again.plotted_count() == 0
    again.close()


def test_official_farm_directories_open_both_ways(tmp_path: Path) -> None:
    """A farm laid out as the official farmer writes it (node-and-cluster.md §6.1: ULID id, identity,
    metadata header and sector metadata at 1 MiB, plot.bin) is farmed as is; ours is written the same
    way, with the exclusive lock (flock, as fs4 takes it) on single_disk_farm.json itself."""
    import fcntl
    import json
    import struct

    import blake3
    from ulid import ULID

    from autonomys_farmer.protocol import reward_signing
    from autonomys_farmer.protocol.constants import SECTOR_METADATA_CHECKSUMMED_SIZE
    from autonomys_farmer.protocol.sector import SectorMetadata, sector_size
    from autonomys_farmer.services.storage.farm import allocated_space, official_target_sectors

    genesis, pieces, sectors = bytes(range(32)), 8, 3
    official = tmp_path / "official"
    official.mkdir()
    identity = reward_signing.identity_file_bytes(os.urandom(32))
    (official / "identity.bin").write_bytes(identity)
    public_key, _ = reward_signing.keypair_from_entropy(reward_signing.entropy_from_identity_file(identity))
    farm_id = str(ULID())
    size = sector_size(pieces)
    allocated = 2 * 1024 * 1024 + 33 + 4096 + sectors * (size + SECTOR_METADATA_CHECKSUMMED_SIZE) + 5000
    info = {"id": farm_id, "genesisHash": genesis.hex(), "publicKey": public_key.hex(), "piecesInSector": pieces}
    (official / "single_disk_farm.json").write_text(json.dumps({"v0": {**info, "allocatedSpace": allocated}}))
    sector = bytearray(os.urandom(size))
    sector[-32:] = blake3.blake3(bytes(sector[:-32])).digest()
    sizes = np.full(RECORD_NUM_S_BUCKETS, pieces // 2, np.uint16)
    metadata = SectorMetadata(SectorIndex(0), pieces, sizes, HistorySize(1)).to_bytes()
    (official / "plot.bin").write_bytes(bytes(sector) + bytes(2 * size))
    meta = bytearray(1024 * 1024 + sectors * SECTOR_METADATA_CHECKSUMMED_SIZE)
    meta[:3] = struct.pack("<BH", 0, 1)
    meta[1024 * 1024 : 1024 * 1024 + len(metadata)] = metadata
    (official / "metadata.bin").write_bytes(bytes(meta))

    with open(official / "single_disk_farm.json") as held:  # the official farmer is running on it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FarmError, match="in use by another farmer"):
            Farm(official, sectors, pieces, genesis)
    farm = Farm(official, sectors, pieces, genesis)
    assert farm.id == farm_id and farm.public_key == public_key
    assert list(farm.plotted_indices()) == [0] and farm.read_sector(0) == bytes(sector)
    with open(official / "single_disk_farm.json") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and the official farmer is kept out
    farm.close()

    ours = Farm(tmp_path / "ours", sectors, pieces, genesis)
    written = json.loads((tmp_path / "ours" / "single_disk_farm.json").read_text())["v0"]
    assert str(ULID.from_str(written["id"])) == written["id"] == ours.id
    assert written["allocatedSpace"] == allocated_space(sectors, pieces)
    assert official_target_sectors(written["allocatedSpace"], pieces) == sectors
    assert not (tmp_path / "ours" / "single_disk_farm.lock").exists()
    ours.close()


def test_nats_trouble_is_a_warning_with_its_cause_within_2s(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import logging
    import time

    from autonomys_farmer.services.deploy.supervisord import free_port
    from autonomys_farmer.services.transport.nats_bus import Bus, NatsConfigError, diagnose

    url = f"nats://127.0.0.1:{free_port()}"

    async def first_warning() -> float:
        started = time.monotonic()
        connecting = asyncio.create_task(Bus.connect([url], "test", initial_timeout=30.0))
        while not any("connection refused" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING):
            assert time.monotonic() - started < 5, "no warning"
            await asyncio.sleep(0.05)
        connecting.cancel()
        return time.monotonic() - started

    with caplog.at_level(logging.WARNING):
        took = asyncio.run(first_warning())
    assert took < 2 + 1.5, took  # the first attempt, then one probe
    # (the once-per-process warning about connecting without credentials may come first)
    assert any(f"{url}: connection refused" in r.getMessage() for r in caplog.records)
    with pytest.raises(NatsConfigError, match=f"no NATS server reachable at {url}: {url}: connection refused"):
        asyncio.run(Bus.connect([url], "test", initial_timeout=2.0))
    unknown = asyncio.run(diagnose(["nats://no-such-host.invalid:4222"], TimeoutError()))
    assert "unknown host 'no-such-host.invalid'" in unknown or "no answer" in unknown


@pytest.mark.parametrize("bad", ["127.0.0.1:4222", "http://h:4222", "nats://:4222", "nats://h:99999", "nats://h:x"])
def test_a_malformed_nats_url_is_a_usage_error(bad: str) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "autonomys_farmer.cli", "cluster", "--nats-server", bad, "proof-server"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("autonomys-farmer cluster: error: argument --nats-server")
    assert "Traceback" not in done.stderr


def test_every_option_of_every_command_has_help() -> None:
    """`--help` explains every option and argument: the top-level command, each subcommand and each
    cluster component (their parsers are built from the component option dataclasses)."""
    import argparse

    from autonomys_farmer.cli import build_parser
    from autonomys_farmer.cluster.components import ClusterOptions, ComponentOptions

    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in parser._actions:  # argparse has no public accessor for its actions
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    missing += walk(sub, f"{path} {name}")
                continue
            if not action.help:
                missing.append(f"{path}: {'/'.join(action.option_strings) or action.dest}")
        return missing

    parsers = [(build_parser(), "autonomys-farmer"), (ClusterOptions.parser(), "cluster")]
    parsers += [(c.parser(), c.NAME) for c in ComponentOptions.__subclasses__()]
    assert [m for parser, path in parsers for m in walk(parser, path)] == []


def test_every_grafana_expression_names_an_exported_metric() -> None:
    """deploy/grafana/autonomys-farmer.json only queries metrics the code exports: the official
    instruments (with their histogram and counter suffixes) and every component's status figures."""
    import json
    import re

    from prometheus_client.core import REGISTRY

    from autonomys_farmer.services import metrics

    statuses = {
        m.ComponentKind.CONTROLLER: m.ControllerStatus(),
        m.ComponentKind.SHARDED_CACHE: m.CacheStatus(capacity=1),
        m.ComponentKind.FULL_PIECE_CACHE: m.CacheStatus(capacity=1),
        m.ComponentKind.PLOT_SERVER: m.PlotServerStatus(backend="cpu"),
        m.ComponentKind.PLOT_CLIENT: m.PlotClientStatus(farms=(m.FarmStatus("f", "/f", 1, 1),)),
        m.ComponentKind.PROOF_SERVER: m.ProofServerStatus(backend="cpu"),
    }

    class Member:
        def __init__(self, kind: m.ComponentKind, status: m.ComponentStatus) -> None:
            self.kind, self.instance_id, self._status = kind, "i", status

        def status(self) -> m.ComponentStatus:
            return self._status

    exported = set()
    members = [Member(kind, status) for kind, status in statuses.items()]
    for family in metrics.ComponentCollector(members).collect():  # type: ignore[arg-type]
        exported.add(family.name)
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}
    for collector in list(REGISTRY._collector_to_names):  # every instrument metrics.py registered
        for family in collector.describe() if hasattr(collector, "describe") else []:
            if family.name.startswith("subspace_farmer"):
                exported.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    dashboard = json.loads((Path(__file__).parents[1] / "deploy" / "grafana" / "autonomys-farmer.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"subspace_farmer_[a-z0-9_]+", expr)}
    assert len(expressions) >= 10 and used
    assert sorted(used - exported) == []


def test_the_status_view_splits_solutions_and_explains_waits() -> None:
    import asyncio
    import io

    from rich.console import Console

    from autonomys_farmer.services.tools.cluster_status import ClusterStatus

    view = ClusterStatus()

    async def feed() -> None:
        await view._heartbeat(m.Heartbeat(m.ComponentKind.CONTROLLER, "c1", status=m.ControllerStatus(), host="h"))
        await view._heartbeat(m.Heartbeat(m.ComponentKind.PLOT_SERVER, "p1", status=m.PlotServerStatus(waiting=3)))
        farms = (m.FarmStatus("farm1", "/f", 4, 1),)
        plot_client = m.PlotClientStatus(slots=10, skipped_audit_running=4, audit_ms=12.5, audited=16, farms=farms)
        await view._heartbeat(m.Heartbeat(m.ComponentKind.PLOT_CLIENT, "pc", status=plot_client, started_at=1.0))
        for kind, detail in ((m.FarmEventKind.SOLUTION, ""), (m.FarmEventKind.LATE, "Solution was ignored"),
                             (m.FarmEventKind.INVALID, "bad proof"), (m.FarmEventKind.SOLUTION, "")):  # fmt: skip
            await view._farm_event(m.FarmEvent("farm1", kind, SectorIndex(2), m.SlotNumber(7), detail))
        # The counts are the node's answers as the controllers saw them: c1 counted 1 accepted, then 2 and a
        # late one; c2 an invalid one. A controller restarting (a new instance) does not take back its count.
        for instance, status in (("c1", m.ControllerStatus(accepted=1)), ("c1", m.ControllerStatus(accepted=2, late=1)),
                                 ("c2", m.ControllerStatus(invalid=1))):  # fmt: skip
            await view._heartbeat(m.Heartbeat(m.ComponentKind.CONTROLLER, instance, status=status, host="h"))
        # A forged plot client (heartbeat and farm events under new ids) moves no count.
        forged = m.PlotClientStatus(accepted=500)
        await view._heartbeat(m.Heartbeat(m.ComponentKind.PLOT_CLIENT, "forged", status=forged))
        await view._farm_event(m.FarmEvent("farm9", m.FarmEventKind.SOLUTION, SectorIndex(1), m.SlotNumber(8), ""))

    asyncio.run(feed())
    console = Console(file=io.StringIO(), width=200)
    console.print(view.render("test"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "solutions accepted 2, late 1, invalid 1" in text
    assert "no archived segment yet" in text and "3 job(s) put back until their pieces are cached" in text
    assert "last slot's audit 12.5 ms over 16 sectors; slots skipped: 4 of 10 (previous audit still running)" in text
    assert "farm farm1 solution (sector 2, slot 7)\n" in text  # no dangling colon
    assert "farm farm1 late (sector 2, slot 7): Solution was ignored" in text
    assert view.summary() == (
        "2 solution(s) accepted, 1 late (ignored by the node), 1 invalid; 4 of 10 slots skipped (previous audit "
        "still running)"
    )
    view.archiving = (48, 128, 30.0)  # what a dev node archiving its genesis segment reports
    console = Console(file=io.StringIO(), width=200)
    console.print(view.render("test"))
    rendered = console.file.getvalue()  # type: ignore[attr-defined]
    assert "archiving a segment, 48 of 128 records committed, ETA 0m50s" in rendered
    assert "no archived segment yet" not in rendered
    snapshot = view.snapshot()
    assert snapshot["solutions"] == {"solution": 2, "late": 1, "invalid": 1}
    assert {member["kind"] for member in snapshot["members"]} == {"controller", "plot-server", "plot-client"}
    assert view.solutions_per_hour() > 0


def test_bulk_peers_prove_the_cluster_secret_both_ways_and_requests_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from autonomys_farmer.cluster.bulk_ops import Contents, ListContents, Repaired, RepairItem
    from autonomys_farmer.services.transport import bulk

    monkeypatch.setattr(bulk, "HELLO_TIMEOUT_S", 0.5)
    secret = b"s" * 32

    async def run() -> None:
        server = bulk.BulkServer(contents_handler, secret)
        await server.start("127.0.0.1")
        address = server.address("127.0.0.1")
        try:
            ((listing, _),) = await bulk.request_all(address, ListContents(), Contents, secret=secret)  # the same
            assert listing.keys == (1, 2)
            with pytest.raises(bulk.BulkError, match="requires the cluster secret"):
                await bulk.request_all(address, ListContents(), Contents, secret=b"")
            with pytest.raises(bulk.BulkError, match="refused us"):
                await bulk.request_all(address, ListContents(), Contents, secret=b"x" * 32)
            with pytest.raises((bulk.BulkError, ConnectionError)):  # a payload past one piece is refused
                await bulk.request_all(address, RepairItem(1), Repaired, bytes(PIECE_SIZE + 1), secret=secret)
            # Before the proof, only the small hello is read: a huge header is refused, not buffered...
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await bulk.read_frame(reader, 0)
            writer.write(struct.pack("<IQ", 1 << 20, 1 << 20) + bytes(4096))
            assert await asyncio.wait_for(reader.read(), 5) == b""
            # ...and a peer that says nothing is closed within HELLO_TIMEOUT_S.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await bulk.read_frame(reader, 0)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert server.connections == 0
        finally:
            await server.close()
        # A client holding the secret trusts no server that has not proved it.
        open_server = bulk.BulkServer(contents_handler, None)
        await open_server.start("127.0.0.1")
        try:
            with pytest.raises(bulk.BulkError, match="does not ask for the cluster secret"):
                await bulk.request_all(open_server.address("127.0.0.1"), ListContents(), Contents, secret=secret)
        finally:
            await open_server.close()

    asyncio.run(run())
    assert bulk.listen_host("127.0.0.1") == "127.0.0.1" and bulk.listen_host("10.0.0.5") == "0.0.0.0"
    assert bulk.listen_host(None) == "0.0.0.0"


async def contents_handler(operation: object, payload: bytes):  # type: ignore[no-untyped-def]
    from autonomys_farmer.cluster.bulk_ops import Contents, Repaired, RepairItem

    if isinstance(operation, RepairItem):
        yield Repaired(operation.key), b""
    else:
        yield Contents((1, 2)), b""


def test_a_relayed_bulk_handshake_is_useless(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """The issue's relay: a peer without the secret makes a plot client dial it and passes a cache's
    hello through. Both proofs cover both nonces and every later frame is MACed with their session key:
    the relay cannot put its own request in (the cache refuses it, logged once) nor alter an answer."""
    import asyncio

    from autonomys_farmer.cluster.bulk_ops import Contents, FetchSector, ListContents, SectorPart
    from autonomys_farmer.services.transport import bulk

    secret = b"s" * 32

    async def relay(cache_port: int, mode: str) -> tuple[asyncio.Server, list[bytes]]:
        """Pass the three hellos through, then swap the request ("swap") or flip an answer byte ("alter")."""
        got: list[bytes] = []

        async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            cache_reader, cache_writer = await asyncio.open_connection("127.0.0.1", cache_port)

            async def frame(reader: asyncio.StreamReader) -> bytes:
                head = await reader.readexactly(12)
                head_len, payload_len = struct.unpack("<IQ", head)
                return head + await reader.readexactly(head_len + payload_len)

            try:
                client_writer.write(await frame(cache_reader))  # the cache's nonce, as ours
                cache_writer.write(await frame(client_reader))  # the client's proof over it
                client_writer.write(await frame(cache_reader))  # the cache's proof
                request = await frame(client_reader) + await client_reader.readexactly(bulk.MAC_SIZE)
                if mode == "swap":  # our own request, with the client's MAC or none: refused
                    head = json.dumps({"op": {"type": "list-contents"}}).encode()
                    cache_writer.write(struct.pack("<IQ", len(head), 0) + head + request[-bulk.MAC_SIZE :])
                    got.append(await cache_reader.read())
                else:
                    cache_writer.write(request)
                    answer = bytearray(await cache_reader.read())
                    answer[20] ^= 1
                    client_writer.write(bytes(answer))
            finally:
                cache_writer.close()
                client_writer.close()

        return await asyncio.start_server(serve, "127.0.0.1", 0), got

    async def run() -> None:
        cache = bulk.BulkServer(contents_handler, secret)
        await cache.start("127.0.0.1")
        try:
            swapper, got = await relay(cache.port, "swap")
            relay_address = f"127.0.0.1:{swapper.sockets[0].getsockname()[1]}"
            with pytest.raises((bulk.BulkError, ConnectionError)):
                await bulk.request_all(relay_address, FetchSector("0" * 32), SectorPart, timeout=5, secret=secret)
            assert got == [b""] and cache.refused == 1  # the cache closed on the swapped request, no keys out
            swapper.close()
            alterer, _ = await relay(cache.port, "alter")
            relay_address = f"127.0.0.1:{alterer.sockets[0].getsockname()[1]}"
            with pytest.raises(bulk.BulkError, match="failed its MAC"):
                await bulk.request_all(relay_address, ListContents(), Contents, timeout=5, secret=secret)
            alterer.close()
        finally:
            await cache.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(run())
    assert sum("refused 127.0.0.1" in r.getMessage() for r in caplog.records) == 1


def test_an_idle_flood_from_one_address_leaves_the_bulk_port_to_others(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """An outsider opening idle connections from one address takes at most MAX_CONNECTIONS_PER_ADDRESS
    slots, each for at most HELLO_TIMEOUT_S: a peer with the secret is served meanwhile; the refusals are
    logged once."""
    import asyncio

    from autonomys_farmer.cluster.bulk_ops import Contents, ListContents
    from autonomys_farmer.services.transport import bulk

    secret = b"s" * 32
    monkeypatch.setattr(bulk, "HELLO_TIMEOUT_S", 2.0)

    async def run() -> None:
        server = bulk.BulkServer(contents_handler, secret)
        await server.start("127.0.0.1")
        idle = []
        try:
            for _ in range(bulk.MAX_CONNECTIONS_PER_ADDRESS + 20):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.2", 0))
                idle.append((reader, writer))
            await asyncio.sleep(0.2)
            assert server.by_address["127.0.0.2"] == bulk.MAX_CONNECTIONS_PER_ADDRESS and server.refused == 20
            address = server.address("127.0.0.1")
            ((listing, _),) = await bulk.request_all(address, ListContents(), Contents, timeout=5, secret=secret)
            assert listing.keys == (1, 2)  # served at once, while the flood's slots are still taken
            await asyncio.sleep(bulk.HELLO_TIMEOUT_S + 0.5)
            assert server.connections == 0  # every idle one was closed
        finally:
            for _, writer in idle:
                writer.close()
            await server.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(run())
    assert sum("refused 127.0.0.2" in r.getMessage() for r in caplog.records) == 1


def test_a_controller_whose_node_is_down_hands_solutions_back_unsent() -> None:
    """With one controller per node, a solution reaching a controller that cannot reach its node goes back
    to the plot client marked unsent (it asks another controller); one that may have reached a node is
    never marked so (it is not sent twice)."""
    import asyncio

    from fuzz import SOLUTION

    from autonomys_farmer.protocol.types import SlotNumber
    from autonomys_farmer.services.components.controller import Controller
    from autonomys_farmer.services.deploy.supervisord import free_port

    controller = Controller(["nats://127.0.0.1:1"], f"ws://127.0.0.1:{free_port()}", None)
    result = asyncio.run(controller._submit_solution(m.SubmitSolution(SlotNumber(5), SOLUTION)))
    assert (result.accepted, result.submitted) == (False, False) and "unreachable" in result.error
    assert controller.counts["solutions"] == 0
    assert wire.decode(m.SubmitResult, wire.encode(result)) == result
    assert wire.decode(m.SubmitResult, b'{"accepted": true}').submitted  # older controllers: sent


def test_a_controller_takes_solutions_only_while_its_node_is_reachable(tmp_path: Path) -> None:
    """A controller is in the solutions' queue group only while its node answers: with its node down a
    solution finds no responder at once (the plot client asks again, reaching a controller that can
    forward it) instead of a round trip to be handed back; with its node back, it forwards again."""
    import asyncio

    import nats.errors
    from fuzz import SOLUTION

    from autonomys_farmer.cluster import subjects
    from autonomys_farmer.protocol import farmer_rpc as rpc
    from autonomys_farmer.protocol.types import SlotNumber
    from autonomys_farmer.services.components.controller import Controller
    from autonomys_farmer.services.deploy.supervisord import free_port
    from autonomys_farmer.services.devnet.dev import DevLayout
    from autonomys_farmer.services.transport.jsonrpc import JsonRpcServer
    from autonomys_farmer.services.transport.nats_bus import Bus

    layout = DevLayout(tmp_path, nats_auth=False)
    port = free_port()
    forwarded: list[int] = []

    async def submit(params: list[object]) -> None:
        forwarded.append(int(params[0]["slotNumber"]))  # type: ignore[index]

    async def nothing(_params: list[object]):  # a node with no slots, signing requests or segments yet
        await asyncio.Event().wait()
        yield

    node = JsonRpcServer()
    node.method(rpc.SUBMIT_SOLUTION_RESPONSE, submit)
    for subscription in (rpc.SLOT_INFO, rpc.REWARD_SIGNING, rpc.ARCHIVED_SEGMENT_HEADER):
        node.subscription(subscription.subscribe, subscription.notification, subscription.unsubscribe, nothing)

    async def run() -> None:
        async with layout.supervisord(layout.nats_programs()):
            controller = Controller(layout.nats_urls, f"ws://127.0.0.1:{port}", None)
            running = asyncio.create_task(controller.run())
            bus = await Bus.connect(layout.nats_urls, "test")

            beats: list[m.Heartbeat] = []

            async def on_heartbeat(beat: m.Heartbeat) -> None:
                beats.append(beat)

            await bus.subscribe(subjects.HEARTBEAT, on_heartbeat)

            async def answer(slot: int) -> str:
                try:
                    request = m.SubmitSolution(SlotNumber(slot), SOLUTION)
                    result = await bus.request(subjects.SUBMIT_SOLUTION, request, deadline=0, once=True)
                except nats.errors.NoRespondersError:
                    return "no responder"
                return "forwarded" if result.submitted else "handed back"

            async def until(wanted: str, slot: int) -> None:
                for _ in range(200):
                    if await answer(slot) == wanted:
                        return
                    await asyncio.sleep(0.1)
                raise AssertionError(f"never {wanted}")

            try:
                for _ in range(200):  # started: it heartbeats once its start is done
                    if any(beat.instance_id == controller.instance_id for beat in beats):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the controller never heartbeat: not started")
                assert await answer(1) == "no responder"  # its node was never up
                server = await node.serve("127.0.0.1", port)
                await until("forwarded", 2)
                server.close()
                await server.wait_closed()
                await until("no responder", 3)
                server = await node.serve("127.0.0.1", port)
                await until("forwarded", 4)
                server.close()
                assert forwarded == [2, 4]
            finally:
                running.cancel()
                await bus.close()

    asyncio.run(run())


def test_a_node_closing_mid_handshake_is_a_connection_error() -> None:
    """A node that accepts TCP and dies before its WebSocket handshake (found by the chaos soak: it took a
    controller down with a traceback) is a connection error, retried like a refused connection."""
    import asyncio

    from autonomys_farmer.services.transport.jsonrpc import JsonRpcClient

    async def run() -> None:
        async def close_at_once(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionError, match="no WebSocket handshake"):
            await JsonRpcClient.connect(f"ws://127.0.0.1:{port}", timeout=5)
        server.close()

    asyncio.run(run())


def test_a_ready_sector_nobody_collects_is_released(tmp_path: Path, caplog) -> None:
    """Fake or orphaned work does not hold a plot server's bounded buffer: a ready sector whose fetch has
    not started within UNCOLLECTED_S is released (logged, and 'dropped' said for its job), one still
    waiting is announced again, and one being collected stays."""
    import asyncio
    from types import SimpleNamespace

    from fuzz import JOB

    from autonomys_farmer.cluster.bulk_ops import FetchSector
    from autonomys_farmer.services.components import plot_server
    from autonomys_farmer.services.files import write_atomically

    said: list[tuple[str, m.PlotStage]] = []

    class Bus:
        async def publish(self, subject: object, progress: m.PlotProgress, *tokens: str) -> None:
            said.append((progress.job_id, progress.stage))

    compute = SimpleNamespace(name="cpu", device="test", batch_records=1)
    server = plot_server.PlotServer(["nats://127.0.0.1:1"], tmp_path, 0, compute, None)  # type: ignore[arg-type]
    server.bus = Bus()  # type: ignore[assignment]
    jobs = [dataclasses.replace(JOB, job_id=f"{i:032x}") for i in (1, 2)]
    for job in jobs:
        path = server.buffer / f"{job.job_id}.sector"
        path.write_bytes(b"sector")
        write_atomically(path.with_suffix(".job"), wire.encode(plot_server.BufferedSector(job, 6)))

    async def run() -> None:
        for path in server._buffered():
            await server._announce(path)
        start = min(server._uncollected.values())
        async for _ in server._serve(FetchSector(jobs[1].job_id), b""):  # job 2's plot client collects it
            pass
        await server.sweep_buffer(start + plot_server.UNCOLLECTED_S / 2)
        assert said == [(jobs[0].job_id, m.PlotStage.READY), (jobs[1].job_id, m.PlotStage.READY),
                        (jobs[0].job_id, m.PlotStage.READY)]  # fmt: skip
        await server.sweep_buffer(start + plot_server.UNCOLLECTED_S + 1)
        assert said[-1] == (jobs[0].job_id, m.PlotStage.DROPPED)
        assert [path.stem for path in server._buffered()] == [jobs[1].job_id]  # the one being collected stays

    with caplog.at_level(logging.WARNING):
        asyncio.run(run())
    assert any("was not collected within 120s" in r.getMessage() for r in caplog.records)


def test_proofs_are_served_earliest_deadline_first_within_the_farming_timeout(monkeypatch) -> None:
    """A request asking for minutes is held to the farming timeout, and the wins whose slots close first
    are proved first: one farm's long budgets cannot take a proof server."""
    import asyncio
    from types import SimpleNamespace

    from fuzz import record_win

    from autonomys_farmer.cluster.farming import FARMING_TIMEOUT_S
    from autonomys_farmer.services.components import proof_server

    proved: list[list[int]] = []

    def prove_wins(compute: object, kzg: object, wins: list) -> list:  # type: ignore[type-arg]
        proved.append([win.sector_index for win in wins])
        return [ValueError("not a real win")] * len(wins)

    monkeypatch.setattr(proof_server, "prove_wins", prove_wins)
    monkeypatch.setattr(proof_server, "MAX_BATCH", 1)
    server = proof_server.ProofServer([], SimpleNamespace(name="cpu", device="test"), None)  # type: ignore[arg-type]

    async def run() -> None:
        budgets = {1: 600.0, 2: 3.0, 3: 1.0, 4: 2.0}  # sector index -> budget asked for
        requests = [
            asyncio.create_task(server._prove(m.ProveRequest(dataclasses.replace(record_win(), sector_index=i), b)))
            for i, b in budgets.items()
        ]
        await asyncio.sleep(0.05)
        deadlines = sorted(deadline - arrived for _, _, (_, arrived, deadline, _) in server._queue._queue)  # type: ignore[attr-defined]
        assert max(deadlines) <= FARMING_TIMEOUT_S + 0.01  # 600 s asked, the farming timeout given
        worker = asyncio.create_task(server._prove_batches())
        await asyncio.gather(*requests)
        worker.cancel()

    asyncio.run(run())
    assert proved == [[3], [4], [2], [1]]
