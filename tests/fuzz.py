"""Samples of every cluster message and hostile variants of them: random bytes, truncations, flipped
bits and wrong JSON shapes. The decoder tests feed them to the codecs; the cluster test sends them to
the live components over NATS, bulk TCP and the nodes' RPC."""

from __future__ import annotations

import asyncio
import json
import random
import struct
from dataclasses import dataclass

import numpy as np
from nats.aio.msg import Msg

from autonomys_farmer.cluster import messages as m
from autonomys_farmer.cluster import subjects, wire
from autonomys_farmer.protocol.archiving import LastArchivedBlock, SegmentHeader
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.farmer_rpc import FarmerAppInfo, RewardSignatureResponse, RewardSigningInfo, SlotInfo
from autonomys_farmer.protocol.proving import RecordWin
from autonomys_farmer.protocol.reading import RecordChunks
from autonomys_farmer.protocol.sector import FarmerProtocolInfo, RecordMetadata
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.protocol.types import (
    HistorySize,
    PieceOffset,
    SBucket,
    SectorIndex,
    SegmentIndex,
    SlotNumber,
)
from autonomys_farmer.services.devnet.dev import DevLayout
from autonomys_farmer.services.transport import bulk
from autonomys_farmer.services.transport.nats_bus import Bus

INFO = FarmerProtocolInfo(HistorySize(3), 8, 5, (1, 10), 4)
HEADER = SegmentHeader(SegmentIndex(2), b"\x81" * 48, b"\x02" * 32, LastArchivedBlock(7, None))
SOLUTION = Solution(
    b"\x01" * 32, b"\x02" * 32, SectorIndex(3), HistorySize(4), PieceOffset(5), b"\x81" * 48, b"\x82" * 48,
    bytes(range(32)), b"\x83" * 48, b"\x04" * 160,
)  # fmt: skip


def record_win() -> RecordWin:
    rng = np.random.default_rng(2)
    s_buckets = np.sort(rng.choice(RECORD_NUM_S_BUCKETS, RECORD_NUM_CHUNKS, replace=False)).astype(np.int64)
    chunks = RecordChunks(PieceOffset(1), s_buckets, rng.random(RECORD_NUM_CHUNKS) < 0.5,
                          rng.integers(0, 256, (RECORD_NUM_CHUNKS, 32), np.uint8))  # fmt: skip
    metadata = RecordMetadata(b"\x84" * 48, b"\x85" * 48, b"\x06" * 32)
    return RecordWin(b"\x01" * 32, b"\x02" * 32, SectorIndex(3), HistorySize(4), SBucket(9), chunks, metadata)


JOB = m.PlotJob("0123456789abcdef" * 2, "01JDV2K3M4N5P6Q7R8S9T0VWXY", b"\x01" * 32, SectorIndex(2), 8, INFO, 1)
SAMPLES: dict[str, list[object]] = {
    subjects.SLOT_INFO.name: [SlotInfo(SlotNumber(11), b"\x07" * 32, 100, 200)],
    subjects.REWARD_SIGNING_INFO.name: [RewardSigningInfo(b"\x08" * 32, b"\x01" * 32)],
    subjects.ARCHIVED_SEGMENT_HEADER.name: [HEADER],
    subjects.REWARD_SIGNATURE.name: [RewardSignatureResponse(b"\x08" * 32, b"\x09" * 64)],
    subjects.FARMER_APP_INFO.name: [m.AppInfoRequest(), FarmerAppInfo(b"\x0a" * 32, ("a",), False, 4.0, INFO)],
    subjects.SEGMENT_HEADERS.name: [
        m.SegmentHeadersRequest((SegmentIndex(1), SegmentIndex(2))),
        m.SegmentHeadersResponse((HEADER, None)),
    ],
    subjects.SUBMIT_SOLUTION.name: [m.SubmitSolution(SlotNumber(5), SOLUTION), m.SubmitResult(False, "late")],
    subjects.HEARTBEAT.name: [
        m.Heartbeat(m.ComponentKind.CONTROLLER, "c1", "h:1", m.CacheItemType.PIECE, 1.5, m.ControllerStatus(slots=3)),
        m.Heartbeat(m.ComponentKind.SHARDED_CACHE, "s1", status=m.CacheStatus(5, None, True)),
        m.Heartbeat(m.ComponentKind.PLOT_SERVER, "p1", status=m.PlotServerStatus(backend="cuda", device="H100")),
        m.Heartbeat(m.ComponentKind.PROOF_SERVER, "v1", status=m.ProofServerStatus(proved=2)),
        m.Heartbeat(
            m.ComponentKind.PLOT_CLIENT,
            "f1",
            status=m.PlotClientStatus(
                farms=(m.FarmStatus("farm", "/d", 4, 2, 1),),
                plotting=(m.SectorProgress("farm", SectorIndex(3), m.PlotStage.ENCODING, 1, 8),),
            ),
        ),
    ],
    subjects.REINITIALIZE_CACHES.name: [m.ReinitializeCaches(2.5)],
    subjects.MEMBERS.name: [m.Heartbeat(m.ComponentKind.CONTROLLER, "c1", "h:1")],
    subjects.SHARDS.name: [m.ShardMap("sharded-cache.piece", (m.ShardMember("a", "h:1"),))],
    subjects.PLOT_JOBS.subject: [JOB],
    subjects.PLOT_DEAD_LETTERS.name: [m.DeadLetter(JOB, 50, "protocol info refused")],
    subjects.PLOT_PROGRESS.name: [m.PlotProgress("j", "p1", m.PlotStage.READY, 8, 8, "h:2", 10)],
    subjects.PROVE.name: [
        m.ProveResponse(SOLUTION),
        m.ProveResponse(None, "no proof"),
    ],
    subjects.FARM_EVENTS.name: [
        m.FarmEvent("farm", m.FarmEventKind.SOLUTION, SectorIndex(1), SlotNumber(9)),
        m.FarmEvent("farm", m.FarmEventKind.REPLOTTING, SectorIndex(1)),
    ],
}


def codecs_of(subject: object) -> list[subjects.Codec[object]]:
    if isinstance(subject, subjects.Request):
        return [subject.codec, subject.reply_codec]
    return [subject.codec]  # type: ignore[attr-defined]


def subject_name(subject: object) -> str:
    return subject.subject if isinstance(subject, subjects.WorkQueue) else subject.name  # type: ignore[attr-defined]


def message_types(subject: object) -> list[type]:
    if isinstance(subject, subjects.Request):
        return [subject.request, subject.reply]
    if isinstance(subject, subjects.Broadcast):
        return [subject.message]
    if isinstance(subject, subjects.WorkQueue):
        return [subject.message]
    return [subject.value]  # type: ignore[attr-defined]


def _mutations(obj: object, rng: random.Random) -> list[object]:
    """Wrong shapes of a JSON value: every leaf and container swapped for hostile values in turn."""
    hostile: list[object] = ["x", -1, 2**70, 1e308, None, [], {}, True, "0" * 5000, [1] * 3]
    out: list[object] = []
    if isinstance(obj, dict):
        for key in obj:
            for value in rng.sample(hostile, 4):
                out.append({**obj, key: value})
            out += [{**obj, key: m} for m in _mutations(obj[key], rng)[:3]]
        out.append({k: v for k, v in obj.items() if k != next(iter(obj), None)})  # a field missing
    elif isinstance(obj, list) and obj:
        out += [[*obj[:-1], value] for value in rng.sample(hostile, 3)]
    return out


def hostile_payloads(data: bytes, rng: random.Random) -> list[bytes]:
    """Random bytes, truncations, flipped bits and (for JSON) wrong shapes of one valid payload."""
    candidates = [rng.randbytes(rng.randrange(0, 200)) for _ in range(30)]
    candidates += [data[: rng.randrange(0, len(data))] for _ in range(20)]
    candidates += [bytes(b ^ 0xFF if rng.random() < 0.01 else b for b in data[:4096]) for _ in range(5)]
    if data[:1] == b"{":
        candidates += [json.dumps(mutant).encode() for mutant in _mutations(json.loads(data), rng)]
    return candidates


# --- the live cluster -----------------------------------------------------------------------------------

# Messages that still decode are sent only where acting on them is cheap and harmless to the run: a
# decodable plot job would be plotted, a proving request proved, a re-initialisation obeyed (the last is
# an operator's right, the first two cost a core for seconds each; the decoder tests cover their shapes).
ACT_ON_DECODABLE = {
    subjects.SLOT_INFO.name, subjects.REWARD_SIGNING_INFO.name, subjects.ARCHIVED_SEGMENT_HEADER.name,
    subjects.REWARD_SIGNATURE.name, subjects.FARMER_APP_INFO.name, subjects.SEGMENT_HEADERS.name,
    subjects.SUBMIT_SOLUTION.name, subjects.HEARTBEAT.name, subjects.PLOT_PROGRESS.name,
    subjects.PLOT_DEAD_LETTERS.name, subjects.FARM_EVENTS.name,
}  # fmt: skip
PER_SUBJECT = 24  # hostile payloads per subject and role


@dataclass
class FuzzReport:
    published: int = 0
    requests: int = 0
    answered: int = 0  # requests that got a reply (an error for a malformed one), none left waiting
    kv_writes: int = 0
    bulk_connections: int = 0
    bulk_errors_answered: int = 0
    rpc_calls: int = 0
    rpc_errors_answered: int = 0


def _decodes(codec: subjects.Codec[object], data: bytes) -> bool:
    try:
        codec.decode(data)
    except wire.WireError:
        return False
    return True


def _payloads(subject: object, rng: random.Random) -> list[bytes]:
    name = subject_name(subject)
    out: list[bytes] = []
    codec, message_type = codecs_of(subject)[0], message_types(subject)[0]  # what is sent, not a reply
    for sample in SAMPLES[name]:
        if isinstance(sample, message_type):
            candidates = hostile_payloads(codec.encode(sample), rng)
            out += [c for c in candidates if name in ACT_ON_DECODABLE or not _decodes(codec, c)]
    if subject is subjects.PROVE:
        candidates = hostile_payloads(subject.codec.encode(m.ProveRequest(record_win(), 3.5)), rng)
        out += [c for c in candidates if not _decodes(subject.codec, c)]  # type: ignore[arg-type]
    return rng.sample(out, min(PER_SUBJECT, len(out)))


def _concrete(subject: object, role: str) -> str:
    if isinstance(subject, subjects.Broadcast):
        return subject.subject(*((role, "fuzz") if subject is subjects.HEARTBEAT else ("fuzz",) * len(subject.tokens)))
    if isinstance(subject, subjects.WorkQueue):
        return subject.subject
    return subject.name  # type: ignore[attr-defined]


async def fuzz_nats(layout: DevLayout, report: FuzzReport, rng: random.Random) -> None:
    """Every subject through every role's connection (the server drops what a role may not publish),
    requests with a reply inbox (each must be answered, with an error when malformed), KV values raw."""
    from autonomys_farmer.cluster.roles import ROLES

    buses = [await Bus.connect(layout.nats_urls, f"fuzz-{role}", auth=layout.nats_credentials(role)) for role in ROLES]
    try:
        for role, bus in zip(ROLES, buses, strict=True):
            inbox = bus.nc.new_inbox()
            replies: list[bytes] = []

            async def on_reply(msg: Msg, replies: list[bytes] = replies) -> None:
                replies.append(msg.data)

            await bus.nc.subscribe(f"{inbox}.*", cb=on_reply)  # one reply subject per request, as a request has
            asked = 0
            for subject in subjects.SUBJECTS:
                payloads = _payloads(subject, rng)
                if isinstance(subject, subjects.Bucket):
                    if role == "controller":  # the only writer of derived KV state
                        store = await bus.js.key_value(subject.name)
                        for data in payloads:
                            await store.put(f"fuzz.{report.kv_writes}", data)
                            report.kv_writes += 1
                    continue
                for data in payloads:
                    if isinstance(subject, subjects.Request) and role in _requesters(subject):
                        await bus.nc.publish(subject.name, data, reply=f"{inbox}.{asked}")
                        asked += 1
                    else:
                        await bus.nc.publish(_concrete(subject, role), data)
                        report.published += 1
            await bus.nc.flush()
            deadline = asyncio.get_running_loop().time() + 30
            while len(replies) < asked and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)
            report.requests += asked
            report.answered += len(replies)
    finally:
        for bus in buses:
            await bus.close()


def _requesters(subject: subjects.Request[object, object]) -> set[str]:
    """Roles allowed to make the request (and therefore to get its answer)."""
    from autonomys_farmer.cluster.roles import PERMISSIONS

    return {role for role, permissions in PERMISSIONS.items() if subject.name in permissions.publish}


HOSTILE_OPS: list[object] = [
    None, [], "x", {"op": "get"}, {"type": "get", "keys": "x"}, {"type": "get", "keys": [-1, 2**70]},
    {"type": "sector", "job_id": "../../etc/passwd"}, {"type": "release", "job_id": "0" * 5000},
    {"type": "repair", "key": 2**64}, {"type": "contents", "extra": 1}, {"type": "?" * 300},
]  # fmt: skip


async def fuzz_bulk(addresses: list[str], secret: bytes, report: FuzzReport, rng: random.Random) -> None:
    """Each bulk server: random bytes, oversized frame lengths, a bad proof of the secret, and
    (authenticated) hostile operations, each of which must be answered with an error frame."""
    for address in addresses:
        host, port = address.rsplit(":", 1)
        for attempt in range(len(HOSTILE_OPS) + 3):
            reader, writer = await asyncio.open_connection(host, int(port))
            report.bulk_connections += 1
            try:
                if attempt == 0:
                    writer.write(rng.randbytes(200))
                elif attempt == 1:
                    writer.write(struct.pack("<IQ", 2**31, 2**62))
                elif attempt == 2:
                    await bulk.read_frame(reader, 0, max_header=bulk.HELLO_MAX)
                    await bulk.write_frame(writer, {"nonce": "00" * 32, "proof": "00" * 32})
                else:
                    op = HOSTILE_OPS[attempt - 3]
                    session = await bulk.client_handshake(reader, writer, address, secret, 10)
                    await bulk.write_frame(writer, {"op": op}, b"", session)
                    header, _ = await asyncio.wait_for(bulk.read_frame(reader, bulk.MAX_PAYLOAD, session), 10)
                    while "answer" in header:  # a well-formed operation with odd values (a key -1: not found)
                        header, _ = await asyncio.wait_for(bulk.read_frame(reader, bulk.MAX_PAYLOAD, session), 10)
                    assert "error" in header or "end" in header, (address, op, header)
                    report.bulk_errors_answered += "error" in header
                await writer.drain()
            finally:
                writer.close()


async def fuzz_rpc(urls: list[str], report: FuzzReport, rng: random.Random) -> None:
    """Each node's RPC: every method and subscription with wrong shapes and extreme values, then raw
    garbage frames; every call must be answered (an error where the input is bad)."""
    from autonomys_farmer.protocol import farmer_rpc as rpc
    from autonomys_farmer.services.devnet.dev_node import RPC_METHODS
    from autonomys_farmer.services.transport.jsonrpc import JsonRpcClient, RpcError

    subscribe = [s.subscribe for s in (rpc.SLOT_INFO, rpc.REWARD_SIGNING, rpc.ARCHIVED_SEGMENT_HEADER, rpc.DEV_BLOCKS)]
    hostile: list[list[object]] = [[], [None], [-1], [2**70], ["x" * 3000], [[]], [{}], [1e308], [True], [[0] * 2000]]
    hostile += [[_deep(60)], [{"slotNumber": 2**64, "solution": {}}], [{"hash": "zz", "signature": None}]]
    for url in urls:
        client = await JsonRpcClient.connect(url)
        try:
            for method in [*RPC_METHODS, *subscribe, "no_such_method"]:
                for params in rng.sample(hostile, 6):
                    report.rpc_calls += 1
                    try:
                        await client.call(method, params, timeout=20)
                    except RpcError:
                        report.rpc_errors_answered += 1
            for frame in ("", "{", "[]", "null", json.dumps({"jsonrpc": "2.0", "id": [1], "method": 5})):
                await client._ws.send(frame)
            assert await client.call(rpc.GET_FARMER_APP_INFO, timeout=20)  # the connection lives on
        finally:
            await client.close()


def _deep(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value
