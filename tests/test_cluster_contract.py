"""The typed cluster contract: every subject's messages through the codec, the farming rules, and a bus
that drops malformed messages (logged once) and answers malformed requests with an error."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fuzz import SAMPLES, SOLUTION, codecs_of, hostile_payloads, message_types, record_win, subject_name

from autonomys_farmer.cluster import farming, subjects, wire
from autonomys_farmer.cluster import messages as m
from autonomys_farmer.cluster.bulk_ops import BulkRequest, FetchSector, GetItems, ListContents, RepairItem
from autonomys_farmer.protocol.farmer_rpc import RewardSigningInfo, SlotInfo
from autonomys_farmer.protocol.sector import (
    derive_expiration_history_size,
    derive_sector_id,
)
from autonomys_farmer.protocol.types import (
    HistorySize,
    PieceOffset,
    SBucket,
    SegmentIndex,
    SlotNumber,
)


@pytest.mark.parametrize("subject", subjects.SUBJECTS, ids=subject_name)
def test_every_subject_carries_its_typed_messages(subject):
    samples = SAMPLES[subject_name(subject)]
    codecs = codecs_of(subject)
    for sample in samples:
        codec = next(c for c, t in zip(codecs, message_types(subject), strict=True) if isinstance(sample, t))
        assert codec.decode(codec.encode(sample)) == sample
    for codec, message_type in zip(codecs, message_types(subject), strict=True):
        unknown_fields_only = [] if message_type is m.AppInfoRequest else [b'{"x": 1}']  # it has no fields
        for garbage in (b"", b"not json", b"[]", b"\xff" * 10, *unknown_fields_only):
            with pytest.raises(wire.WireError):
                codec.decode(garbage)


def test_proving_requests_round_trip_natively():
    win = record_win()
    request = subjects.PROVE.codec.decode(subjects.PROVE.codec.encode(m.ProveRequest(win, 3.5)))
    back = request.win
    assert request.budget_s == 3.5
    assert (back.sector_index, back.history_size, back.s_bucket) == (3, 4, 9)
    assert isinstance(back.s_bucket, SBucket) and back.record.piece_offset == 1
    assert (back.record.chunks == win.record.chunks).all()
    for budget in (0.0, -1.0, float("nan"), float("inf")):  # a request without a sane deadline is refused
        with pytest.raises(ValueError, match="budget_s"):
            m.ProveRequest(win, budget)
    data = subjects.PROVE.codec.encode(m.ProveRequest(win, 3.5))
    forged = data.replace(b'"budget_s":3.5', b'"budget_s":0.0')  # same length: the header prefix still fits
    with pytest.raises(wire.WireError, match="budget_s"):
        subjects.PROVE.codec.decode(forged)


def test_subjects_are_unique_and_messages_fail_on_the_field_they_break():
    names = [subject_name(s) for s in subjects.SUBJECTS]
    assert len(names) == len(set(names))
    beat = wire.encode(SAMPLES[subjects.HEARTBEAT.name][0])
    with pytest.raises(wire.WireError, match=r"Heartbeat.status: expected one of the types"):
        wire.decode(m.Heartbeat, beat.replace(b'"type":"controller"', b'"type":"evil"'))
    with pytest.raises(wire.WireError, match=r"Heartbeat.kind: 'boss' is not one of"):
        wire.decode(m.Heartbeat, beat.replace(b'"kind":"controller"', b'"kind":"boss"'))
    for delay in ('"soon"', "null", "[]", "-1", "1e9"):
        with pytest.raises(wire.WireError, match="delay_s"):
            wire.decode(m.ReinitializeCaches, f'{{"delay_s": {delay}}}'.encode())
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.decode(m.ReinitializeCaches, b'{"delay_s": NaN')
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(wire.WireError):
        wire.decode(m.ShardMap, deep)


def test_bulk_operations_are_tagged_dataclasses():
    for op in (GetItems((1, 2)), ListContents(), RepairItem(7), FetchSector("ab" * 16)):
        assert wire.from_obj(BulkRequest, wire.to_obj(op)) == op
    with pytest.raises(wire.WireError, match="expected one of the types"):
        wire.from_obj(BulkRequest, {"type": "rm -rf", "keys": []})
    for traversal in ("../../../etc/passwd", "j", "AB" * 16):  # job ids name the plot server's files
        with pytest.raises(wire.WireError, match="job_id must be"):
            wire.from_obj(BulkRequest, {"type": "release", "job_id": traversal})


def test_slots_are_farmed_once_and_a_forged_one_costs_only_itself():
    slots = farming.SlotSequence()
    # Every controller sends each slot: each number is farmed once, a late one too.
    assert [slots.accept(SlotNumber(s), float(s)) for s in (5, 5, 6, 8, 7, 8)] == [True, False, True, True, True, False]
    # The issue's attack: real slot + 119, three times, 50 s apart, while real slots go on every second.
    farmed, refused = [], []
    for second in range(9, 200):
        real = SlotNumber(second)
        if second % 50 == 0:
            forged = SlotNumber(real + 119)
            (farmed if slots.accept(forged, float(second)) else refused).append(forged)
        (farmed if slots.accept(real, second + 0.3) else refused).append(real)
    assert refused == [169, 219, 269] and farmed == list(range(9, 200))  # every real slot, before and after
    assert slots.implausible == 3
    # The real slot that bears a forged slot's number is farmed when its time comes.
    assert slots.accept(SlotNumber(269), 269.0)
    # A forged first slot is outvoted as real ones arrive; a slow drift of the chain's pace is followed.
    fresh = farming.SlotSequence()
    assert fresh.accept(SlotNumber(10**12), 0.0)  # nothing to judge it by yet: one slot's cost
    assert [fresh.accept(SlotNumber(100 + i), float(i)) for i in range(3)] == [False, True, True]
    drifting = farming.SlotSequence()
    assert all(drifting.accept(SlotNumber(i), i * 1.05) for i in range(1, 2000))  # 5% slower slots: no refusal
    assert drifting.implausible == 0 and abs(drifting.expected(2000 * 1.05) - 2000) < 5


def test_win_budget():
    assert farming.wins_to_prove(3.9, 4.0, 2.0, available=3) == 1  # the first win is always tried in time
    assert farming.wins_to_prove(4.1, 4.0, 0.0, available=3) == 0
    assert farming.wins_to_prove(0.5, 4.0, 0.0, available=3) == 1  # no estimate yet: one
    assert farming.wins_to_prove(0.5, 4.0, 1.0, available=5) == 2  # 3.5 s left, 1.25 s each with the margin
    assert farming.wins_to_prove(0.5, 4.0, 0.01, available=100) == farming.MAX_WINS_PER_SLOT
    assert farming.wins_to_prove(0.5, 4.0, 1.0, available=0) == 0
    # Earlier slots' wins still being proved come first: only what lands after them is sent.
    assert farming.wins_to_prove(0.5, 4.0, 1.0, available=5, in_flight=1) == 1
    assert farming.wins_to_prove(0.5, 4.0, 2.0, available=5, in_flight=1) == 0
    assert farming.wins_to_prove(0.5, 4.0, 0.05, available=5, in_flight=3) == 5
    estimate = farming.ProofTime()
    estimate.observe(2.0)
    estimate.observe(1.0)
    assert estimate.seconds == pytest.approx(1.7)


def test_proof_server_breaker():
    breaker = farming.ProofServerBreaker(strikes_to_bypass=3, bypass_s=60.0)
    assert breaker.use_proof_servers(0.0)
    assert [breaker.missed(1.0), breaker.missed(2.0)] == [farming.Miss.DROP, farming.Miss.DROP]
    breaker.answered()  # an answer resets the count
    assert [breaker.missed(3.0), breaker.missed(4.0), breaker.missed(5.0)] == [farming.Miss.DROP] * 2 + [
        farming.Miss.BYPASS
    ]
    assert not breaker.use_proof_servers(64.9) and breaker.use_proof_servers(65.0)
    # While bypassed, a win a proof here cannot land in time still goes to the proof servers, and an
    # answer in time ends the bypass.
    breaker.missed(70.0), breaker.missed(71.0), breaker.missed(72.0)
    assert not breaker.use_proof_servers(73.0) and breaker.use_proof_servers(73.0, local_proof_lands=False)
    breaker.answered()
    assert breaker.use_proof_servers(74.0)


def test_expiry_schedule():
    min_lifetime = 4
    sectors = {
        index: farming.PlottedSector(derive_sector_id(b"\x05" * 32, index, 2), HistorySize(2)) for index in range(40)
    }
    check_segment = SegmentIndex(2 + min_lifetime - 1)
    assert farming.expiry_check_segments(sectors.values(), min_lifetime) == {check_segment}
    commitment = b"\x99" * 48
    expiries = {
        i: derive_expiration_history_size(s.sector_id, s.history_size, commitment, min_lifetime)
        for i, s in sectors.items()
    }
    for current in (SegmentIndex(6), SegmentIndex(8), SegmentIndex(11)):
        due = farming.sectors_to_replot(sectors, {check_segment: commitment}, current, min_lifetime)
        assert due == [i for i, e in expiries.items() if e is not None and e - 1 <= current + 1]
    assert 0 < len(farming.sectors_to_replot(sectors, {check_segment: commitment}, SegmentIndex(8), min_lifetime)) < 40
    assert farming.sectors_to_replot(sectors, {}, SegmentIndex(100), min_lifetime) == []  # not archived yet


async def arrived(
    received: list[Any], send: Callable[[], Awaitable[object]] | None = None, timeout: float = 60.0
) -> None:
    """Wait for the first message (a fixed sleep is too short on a loaded 2-core CI machine); `send` sends
    the allowed message again every 2 s meanwhile (a CI run once waited a minute for one in vain; the
    cause was not found)."""
    deadline = time.monotonic() + timeout
    resend = time.monotonic() + 2.0
    while not received:
        assert time.monotonic() < deadline, "the allowed message never arrived"
        await asyncio.sleep(0.05)
        if send is not None and time.monotonic() > resend:
            await send()
            resend = time.monotonic() + 2.0
    await asyncio.sleep(0.2)  # anything wrongly let through after it would show now


def test_bus_drops_malformed_messages_once_logged_and_answers_bad_requests(tmp_path: Path, caplog):
    from autonomys_farmer.services.devnet.dev import DevLayout
    from autonomys_farmer.services.transport.nats_bus import Bus, RemoteError

    layout = DevLayout(tmp_path, nats_auth=False)  # one client in every role's place

    async def run() -> None:
        async with layout.supervisord(layout.nats_programs()):
            bus = await Bus.connect(layout.nats_urls, "test")
            try:
                # A lone JetStream server: unreplicated state, decided without waiting for peers.
                assert not bus.clustered_server and await bus.replicas_for_new_state(wait_s=30) == 1
                seen: list[m.ReinitializeCaches] = []

                async def on_reinitialize(request: m.ReinitializeCaches) -> None:
                    seen.append(request)

                async def answer(_request: m.SegmentHeadersRequest) -> m.SegmentHeadersResponse:
                    return m.SegmentHeadersResponse(())

                await bus.subscribe(subjects.REINITIALIZE_CACHES, on_reinitialize)
                await bus.serve(subjects.SEGMENT_HEADERS, answer)
                for garbage in (b'{"delay_s": "soon"}', b"[]", b"\x00" * 64, b'{"delay_s": 1e99}'):
                    await bus.nc.publish(subjects.REINITIALIZE_CACHES.name, garbage)
                await bus.publish(subjects.REINITIALIZE_CACHES, m.ReinitializeCaches(0.5))
                await bus.nc.flush()
                reply = await bus.nc.request(subjects.SEGMENT_HEADERS.name, b'{"segment_indexes": "all"}', timeout=10)
                assert reply.headers and "malformed request" in reply.headers["Autonomys-Error"]
                assert await bus.request(
                    subjects.SEGMENT_HEADERS, m.SegmentHeadersRequest(())
                ) == m.SegmentHeadersResponse(())
                await arrived(seen)
                assert seen == [m.ReinitializeCaches(0.5)]
                assert bus.bad_messages.counts[subjects.REINITIALIZE_CACHES.name] == 4
                with pytest.raises(RemoteError, match="malformed request"):

                    async def failing(_request: m.SubmitSolution) -> m.SubmitResult:
                        raise AssertionError("never called")

                    await bus.serve(subjects.SUBMIT_SOLUTION, failing)
                    await bus.nc.publish("unused", b"")
                    broken = subjects.Request(subjects.SUBMIT_SOLUTION.name, m.AppInfoRequest, m.SubmitResult, "x")
                    await bus.request(broken, m.AppInfoRequest(), timeout=10, deadline=10)
            finally:
                await bus.close()

    with caplog.at_level(logging.WARNING, logger="autonomys_farmer.services.transport.nats_bus"):
        asyncio.run(run())
    assert caplog.text.count("dropped a malformed message on autonomys.cache.reinitialize") == 1


def test_dev_chain_rules():
    from autonomys_farmer.services.devnet.chain import (
        SlotBook,
        block_candidates,
        must_force_block,
        slot_at,
        slot_challenge,
    )

    assert slot_at(100.0, 100.0, 1.0) == 1 and slot_at(103.5, 100.0, 1.0) == 4
    assert slot_challenge(SlotNumber(5)) != slot_challenge(SlotNumber(6))
    book = SlotBook(history=3, max_solutions=2)
    for slot in range(1, 8):
        book.open(SlotNumber(slot))
    assert sorted(book.slots) == [4, 5, 6, 7]  # older slots forgotten
    assert book.accepting(9) is None and book.accepting(2) is None
    state = book.accepting(5)
    assert state is not None
    state.solutions += [(10, SOLUTION), (5, SOLUTION)]
    assert book.accepting(5) is None  # full
    assert book.close_due(SlotNumber(7), authoring_delay=2) == [4, 5]
    assert book.close_due(SlotNumber(7), authoring_delay=2) == []  # closed once
    assert book.accepting(6) is not None and book.accepting(4) is None
    other = dataclasses.replace(SOLUTION, piece_offset=PieceOffset(6))
    assert block_candidates([(30, SOLUTION), (5, other), (60, SOLUTION)], solution_range=100) == [other, SOLUTION]
    assert must_force_block(SlotNumber(10), 4, 6) and not must_force_block(SlotNumber(9), 4, 6)
    assert not must_force_block(SlotNumber(100), 0, 0)


def test_one_description_per_component_parses_and_renders_back():
    from autonomys_farmer.cli import BUILDERS
    from autonomys_farmer.cluster import components as c

    assert set(BUILDERS) == set(c.COMPONENTS)  # every component kind has its one builder

    samples = [
        c.ControllerOptions(node_rpc_url="ws://10.0.0.1:9944", base_path=Path("/var/controller"), job_ack_wait=8.0),
        c.ControllerOptions(tmp=True),
        c.ShardedCacheOptions(disk=c.CacheDisk("/var/cache/", "200GiB"), item_type=m.CacheItemType.SPLIT_PARITY_PIECE),
        c.FullPieceCacheOptions(tmp=True, path=Path("/var/full")),
        c.FullPieceCacheOptions(tmp=True),
        c.ProofServerOptions(),
        c.PlotServerOptions(priority_cache=True, listen_port=9966, base_path=Path("/b")),
        c.PlotClientOptions(
            reward_address="st1", proof_timeout=2.0, farms=(c.FarmDisk("/mnt/a/", 8000), c.FarmDisk("/mnt/b", 2))
        ),
    ]
    for options in samples:
        assert type(options).parse(options.to_argv()) == options
    assert set(c.COMPONENTS) == {type(o).NAME for o in samples}
    cluster = c.ClusterOptions(nats_servers=("nats://a:4222", "nats://b:4222"), backend="cpu", advertise_host="a")
    assert c.ClusterOptions.parse(cluster.to_argv()) == cluster
    assert c.component_argv(cluster, samples[1], samples[5]) == [
        "cluster", "--backend", "cpu", "--nats-server", "nats://a:4222", "--nats-server", "nats://b:4222",
        "--advertise-host", "a", "controller", "--tmp", "--node-rpc-url", "ws://127.0.0.1:9944", "--", "proof-server",
    ]  # fmt: skip
    assert c.CacheDisk.parse("path=/x,size=1.5TiB").size_bytes == int(1.5 * 1024**4)
    for options, argv in [
        (c.ControllerOptions, []),
        (c.ControllerOptions, ["--tmp", "--base-path", "/x"]),
        (c.ControllerOptions, ["--tmp", "--node-rpc-url", "http://x"]),
        (c.ShardedCacheOptions, ["path=/x,size=lots"]),
        (c.ShardedCacheOptions, ["path=/x", "--item-type", "pebble"]),
        (c.PlotServerOptions, ["--listen-port", "0", "/b"]),
        (c.PlotServerOptions, ["/b"]),
        (c.PlotClientOptions, ["--reward-address", "st1", "path=/f,sectors=0"]),
        (c.PlotClientOptions, ["--reward-address", "st1", "path=/f"]),
        (c.FullPieceCacheOptions, []),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            options.parse(argv)
        assert exit_info.value.code == 2, (options, argv)


def test_membership_tolerates_the_observers_own_stall():
    from autonomys_farmer.cluster import sharding

    seen = {"a": 100.0, "b": 125.0}
    assert sharding.silent_members(seen, 131.0, observed_since=0.0, drop_after=30.0) == ["a"]
    # The controller itself heard nothing from 100 to 140 (a NATS stall on its side): nobody is dropped
    # until it has listened for drop_after again, and a heartbeat newer than `now` is not silence.
    assert sharding.silent_members(seen, 141.0, observed_since=140.0, drop_after=30.0) == []
    assert sharding.silent_members({"c": 150.0}, 141.0, observed_since=0.0, drop_after=30.0) == []
    assert sharding.silent_members(seen, 171.0, observed_since=140.0, drop_after=30.0) == ["a", "b"]
    assert sharding.own_outage_ended(100.0, 111.0, interval=5.0) and not sharding.own_outage_ended(100.0, 105.0, 5.0)
    assert not sharding.own_outage_ended(None, 105.0, 5.0)


def test_nats_roles_are_least_privilege(tmp_path: Path):
    """With the authorization dev generates: a plot client cannot publish a slot or write the shard
    map; the controller can; a wrong password is reported as an authentication failure."""
    from autonomys_farmer.cluster import roles
    from autonomys_farmer.services.devnet.dev import DevLayout
    from autonomys_farmer.services.transport.nats_bus import Bus, NatsAuth, NatsConfigError

    assert set(roles.PERMISSIONS) == set(roles.ROLES)
    layout = DevLayout(tmp_path)
    slot = SlotInfo(SlotNumber(7), b"\x01" * 32, 1, 2)

    async def run() -> None:
        async with layout.supervisord(layout.nats_programs()):
            operator = await Bus.connect(layout.nats_urls, "operator", auth=layout.nats_credentials())
            client = await Bus.connect(layout.nats_urls, "plot-client", auth=layout.nats_credentials("plot-client"))
            controller = await Bus.connect(layout.nats_urls, "controller", auth=layout.nats_credentials("controller"))
            try:
                seen: list[SlotInfo] = []

                async def on_slot(info: SlotInfo) -> None:
                    seen.append(info)

                await operator.subscribe(subjects.SLOT_INFO, on_slot)
                await operator.nc.flush()
                # Each refused message goes first and is flushed (the server has dealt with it) before an allowed
                # one: once the allowed one has arrived, the refused one would have arrived before it.
                await client.publish(subjects.SLOT_INFO, dataclasses.replace(slot, slot_number=SlotNumber(666)))
                await client.nc.flush()
                await controller.publish(subjects.SLOT_INFO, slot)
                await controller.nc.flush()
                await arrived(seen, lambda: controller.publish(subjects.SLOT_INFO, slot))
                assert {s.slot_number for s in seen} == {7}  # the plot client's slot never went out
                # Nobody but a controller asks farms to sign (no signing oracle), nobody but a plot client
                # queues proofs.
                asked: list[RewardSigningInfo] = []

                async def on_signing(info: RewardSigningInfo) -> None:
                    asked.append(info)

                signer = await Bus.connect(layout.nats_urls, "signer", auth=layout.nats_credentials("plot-client"))
                await signer.subscribe(subjects.REWARD_SIGNING_INFO, on_signing)
                await signer.nc.flush()
                await operator.publish(subjects.REWARD_SIGNING_INFO, RewardSigningInfo(b"\x09" * 32, b"\x01" * 32))
                await operator.nc.flush()
                allowed = RewardSigningInfo(b"\x0a" * 32, b"\x01" * 32)
                await controller.publish(subjects.REWARD_SIGNING_INFO, allowed)
                await controller.nc.flush()
                await arrived(asked, lambda: controller.publish(subjects.REWARD_SIGNING_INFO, allowed))
                assert set(asked) == {allowed}
                await signer.close()
                with pytest.raises(Exception):  # noqa: B017  (no responder may even see it: a timeout or a denial)
                    await operator.request(subjects.PROVE, m.ProveRequest(record_win(), 1.0), timeout=1.0, deadline=0)
                beats: list[m.Heartbeat] = []

                async def on_beat(beat: m.Heartbeat) -> None:
                    beats.append(beat)

                await operator.subscribe(subjects.HEARTBEAT, on_beat)
                await operator.nc.flush()
                fake = wire.encode(m.Heartbeat(m.ComponentKind.SHARDED_CACHE, "x", "10.6.6.6:1"))
                await client.nc.publish("autonomys.heartbeat.plot-client.x", fake)  # its own subject, another kind
                await client.nc.publish("autonomys.heartbeat.sharded-cache.x", fake)  # another kind's subject
                real = m.Heartbeat(m.ComponentKind.PLOT_CLIENT, "pc")
                await client.publish(subjects.HEARTBEAT, real, real.kind, real.instance_id)
                await client.nc.flush()
                await arrived(beats, lambda: client.publish(subjects.HEARTBEAT, real, real.kind, real.instance_id))
                assert {beat.kind for beat in beats} == {m.ComponentKind.PLOT_CLIENT}  # the fakes would have come first
                await controller.create_state((subjects.MEMBERS, subjects.SHARDS), subjects.PLOT_JOBS, 8.0)
                with pytest.raises(Exception):  # noqa: B017  (a permissions violation, however nats-py words it)
                    await asyncio.wait_for(client.kv_put(subjects.SHARDS, "g", m.ShardMap("g", ())), 1.5)
                await asyncio.wait_for(controller.kv_put(subjects.SHARDS, "g", m.ShardMap("g", ())), 10)
                wrong = tmp_path / "wrong.password"
                wrong.write_text("not-it")
                began = time.monotonic()
                with pytest.raises(NatsConfigError, match="authentication failed"):
                    await Bus.connect(layout.nats_urls, "x", 60.0, NatsAuth(user="controller", password_file=wrong))
                assert time.monotonic() - began < 30  # said at once, not retried until the deadline
            finally:
                for bus in (operator, client, controller):
                    await bus.close()

    asyncio.run(run())


@pytest.mark.parametrize("subject", subjects.SUBJECTS, ids=subject_name)
def test_decoders_survive_fuzzing(subject):
    """Random bytes, truncations and wrong shapes of every message of every subject: a decoder
    either returns its message type or raises WireError, nothing else."""
    rng = random.Random(subject_name(subject))
    binary = [m.ProveRequest(record_win(), 3.5)] if subject is subjects.PROVE else []  # arrays: no == in SAMPLES
    for sample in [*SAMPLES[subject_name(subject)], *binary]:
        codec, message_type = next(
            (c, t) for c, t in zip(codecs_of(subject), message_types(subject), strict=True) if isinstance(sample, t)
        )
        for candidate in hostile_payloads(codec.encode(sample), rng):
            try:
                decoded = codec.decode(candidate)
            except wire.WireError:
                continue
            assert isinstance(decoded, message_type), (candidate[:80], decoded)


def test_nats_over_tls_with_client_certificates(tmp_path: Path):
    """A nats-server that requires TLS and client certificates: a member with the CA, its certificate
    and key connects and talks; one without a certificate is refused with a TLS cause."""
    import trustme
    from processes import nats_server

    from autonomys_farmer.services.deploy.supervisord import free_port
    from autonomys_farmer.services.transport.nats_bus import Bus, NatsAuth, NatsConfigError

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("plot-client")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    client_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client_cert.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'tls {{ cert_file: "{tmp_path / "server.pem"}", key_file: "{tmp_path / "server.pem"}", '
        f'ca_file: "{tmp_path / "ca.pem"}", verify: true }}\n'
        "max_payload: 4MB\n"
    )
    url = f"tls://127.0.0.1:{port}"
    good = NatsAuth(tls_ca=tmp_path / "ca.pem", tls_cert=tmp_path / "client.pem", tls_key=tmp_path / "client.key")

    async def run() -> None:
        async with nats_server(conf):
            bus = await Bus.connect([url], "tls-member", 10.0, good)
            received: list[bytes] = []
            subscription = await bus.nc.subscribe("tls.echo")
            await bus.nc.publish("tls.echo", b"over tls")
            received.append((await subscription.next_msg(timeout=5)).data)
            assert received == [b"over tls"]
            await bus.close()
            began = time.monotonic()
            with pytest.raises(NatsConfigError, match="TLS failed"):  # the server wants a client certificate
                await Bus.connect([url], "no-cert", 60.0, NatsAuth(tls_ca=tmp_path / "ca.pem"))
            assert time.monotonic() - began < 30  # said at once, not retried until the deadline

    asyncio.run(run())


def test_every_command_is_one_description_the_cli_parses_and_renders_back(capsys):
    """dev, dev-node, the util tools, export-piece and the benchmarks: each an `Options` description the
    CLI builds its parser from (its typed options are what the command runs with), rendering back to the
    command line it parsed."""
    from autonomys_farmer import cli
    from autonomys_farmer import commands as o
    from autonomys_farmer.cluster import components as c

    samples = [
        c.DevNodeOptions(listen="0.0.0.0:9944", peers=("ws://a:1", "ws://b:2"), sync_from_peers=True),
        o.DevOptions(base_path=Path("/d"), sectors=8, nodes=3, nats_cluster_size=3, duration=60.0, backend="cpu"),
        o.ExportPieceOptions(node_url="http://n:9944", output=Path("/x"), no_verify=True),
        o.ReinitializationCacheOptions(
            nats_servers=("nats://a:4222", "nats://b:4222"), delay=5.0, nats_user="operator"
        ),
        o.ShardedCacheBenchmarkOptions(
            nats_servers=("nats://a:4222",),
            sectors=2,
            cache_item_type=m.CacheItemType.PIECE,
            no_verify=True,
            kzg_parameters=Path("/k.bin"),
        ),
        o.VerifyPieceOptions(nats_servers=("nats://a:4222",), no_repair=True, cache_groups=("sharded-cache.piece",)),
        o.SupervisorConfigOptions(description=Path("CLUSTER.toml"), out=Path("/out")),
        o.AuditBenchmarkOptions(farms=(Path("/f1"), Path("/f2")), slots=3, json=True),
        o.ProveBenchmarkOptions(farm=Path("/f"), count=2),
        o.GpuBenchmarkOptions(records=64, full=True),
    ]
    tables = {**cli.COMMANDS, **cli.UTIL, **cli.BENCHMARKS}
    assert {description for description, _ in tables.values()} == {type(s) for s in samples}
    for options in samples:
        assert type(options).parse(options.to_argv()) == options
    # The util tools take the NATS servers as one list or flag by flag, under either spelling.
    parsed = cli.build_parser().parse_args(
        ["util", "reinitialization-cache", "--nats-servers", "nats://a:1", "nats://b:2", "--nats-server", "nats://c:3"]
    )
    assert parsed.options.from_namespace(parsed).nats_servers == ("nats://a:1", "nats://b:2", "nats://c:3")
    with pytest.raises(SystemExit):
        cli.main(["dev", "--status-interval", "0"])
    assert "--status-interval must be between 0 and 3600 seconds" in capsys.readouterr().err
