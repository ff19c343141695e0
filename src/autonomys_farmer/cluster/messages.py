"""Subjects and messages of the cluster (JSON via `cluster.wire`; node types keep their RPC JSON shapes).

Control runs over NATS: broadcasts from the controller, requests answered by queue groups, plot jobs on
a JetStream work queue, membership and shard maps in JetStream KV. Bulk data (pieces, sectors) never
rides NATS except a proving request (one record, ~1 MiB, hence the 3 MiB max_payload requirement).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autonomys_farmer.cluster import wire
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.proving import RecordWin
from autonomys_farmer.protocol.reading import RecordChunks
from autonomys_farmer.protocol.sector import RecordMetadata

# --- controller: node RPC proxied to the cluster ------------------------------------------------
SLOT_INFO = "subspace.controller.slot-info"  # SlotInfo JSON (node shape); de-duplicated by slot number
REWARD_SIGNING_INFO = "subspace.controller.reward-signing-info"  # RewardSigningInfo JSON
ARCHIVED_SEGMENT_HEADER = "subspace.controller.archived-segment-header"  # SegmentHeader JSON ({"v0": ...})
REWARD_SIGNATURE = "subspace.controller.reward-signature"  # RewardSignatureResponse JSON -> node
FARMER_APP_INFO = "subspace.controller.farmer-app-info"  # request -> FarmerAppInfo JSON
SEGMENT_HEADERS = "subspace.controller.segment-headers"  # SegmentHeadersRequest -> SegmentHeadersResponse
SUBMIT_SOLUTION = "subspace.controller.submit-solution"  # SubmitSolution -> SubmitResult
CONTROLLER_QUEUE = "subspace.controller"

# --- membership ----------------------------------------------------------------------------------
HEARTBEAT = "autonomys.heartbeat"  # + ".<kind>.<instance>": Heartbeat
REINITIALIZE_CACHES = "autonomys.cache.reinitialize"  # ReinitializeCaches
MEMBERS_BUCKET = "autonomys-members"
SHARDS_BUCKET = "autonomys-cache-shards"
HEARTBEAT_INTERVAL_S = 2.0
DROP_AFTER_S = 3 * HEARTBEAT_INTERVAL_S

# --- plotting ------------------------------------------------------------------------------------
PLOT_JOBS_STREAM = "AUTONOMYS_PLOT_JOBS"
PLOT_JOBS = "autonomys.plot.jobs"
PLOT_SERVERS_CONSUMER = "plot-servers"
PLOT_PROGRESS = "autonomys.plot.progress"  # + ".<farm id>": PlotProgress

# --- proving and farming events -----------------------------------------------------------------
PROVE = "autonomys.proof-server.prove"
PROOF_SERVERS_QUEUE = "proof-servers"
FARM_EVENTS = "autonomys.farm"  # + ".<farm id>": FarmEvent

# Component kinds as they appear in heartbeats and the members bucket.
CONTROLLER = "controller"
SHARDED_CACHE = "sharded-cache"
FULL_PIECE_CACHE = "full-piece-sharded-cache"
PLOT_SERVER = "plot-server"
PLOT_CLIENT = "plot-client"
PROOF_SERVER = "proof-server"

PIECE = "piece"
SPLIT_PARITY_PIECE = "split-parity-piece"
CACHE_ITEM_TYPES = (PIECE, SPLIT_PARITY_PIECE)


@dataclass(frozen=True)
class Heartbeat:
    kind: str
    instance_id: str
    address: str = ""  # host:port of its bulk TCP server, if any
    item_type: str = ""  # caches: what they store
    sent_at: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)  # free-form figures for the status view


@dataclass(frozen=True)
class ShardMember:
    instance_id: str
    address: str


@dataclass(frozen=True)
class ShardMap:
    """Live instances of one cache group; placement itself is `cluster.sharding` over this list."""

    group: str  # "<kind>.<item type>"
    members: tuple[ShardMember, ...]


@dataclass(frozen=True)
class ReinitializeCaches:
    delay_s: float


@dataclass(frozen=True)
class SegmentHeadersRequest:
    segment_indexes: tuple[int, ...]


@dataclass(frozen=True)
class SegmentHeadersResponse:
    headers: tuple[dict[str, Any] | None, ...]


@dataclass(frozen=True)
class SubmitSolution:
    slot_number: int
    solution: dict[str, Any]  # node JSON shape


@dataclass(frozen=True)
class SubmitResult:
    accepted: bool
    error: str = ""


@dataclass(frozen=True)
class PlotJob:
    job_id: str
    farm_id: str
    public_key: bytes
    sector_index: int
    pieces_in_sector: int
    protocol_info: dict[str, Any]  # FarmerProtocolInfo JSON fetched just before asking
    attempt: int = 0


@dataclass(frozen=True)
class PlotProgress:
    job_id: str
    server_id: str
    stage: str  # downloading | encoding | ready | error
    done: int = 0
    total: int = 0
    address: str = ""  # ready: where to fetch the sector over TCP
    size: int = 0
    checksum: bytes = b""  # ready: blake3(sector bytes || checksummed metadata)
    error: str = ""


@dataclass(frozen=True)
class ProveResponse:
    solution: dict[str, Any] | None
    error: str = ""


@dataclass(frozen=True)
class FarmEvent:
    farm_id: str
    kind: str  # plotted | replotting | solution | rejected | proving-fallback
    sector_index: int = -1
    slot_number: int = 0
    detail: str = ""


# --- proving request: one record's stored chunks, binary (too big for hex JSON) ----------------------
def encode_record_win(win: RecordWin) -> bytes:
    """u32 LE header length ‖ JSON header ‖ s-bucket bitmap (8 KiB) ‖ encoded bitmap (4 KiB) ‖ chunks."""
    header = wire.encode(
        RecordWinHeader(
            win.public_key,
            win.reward_address,
            win.sector_index,
            win.history_size,
            win.s_bucket,
            win.record.piece_offset,
            win.record_metadata.to_bytes(),
        )
    )
    present = np.zeros(RECORD_NUM_S_BUCKETS, bool)
    present[win.record.s_buckets] = True
    return b"".join(
        [
            struct.pack("<I", len(header)),
            header,
            np.packbits(present, bitorder="little").tobytes(),
            np.packbits(win.record.encoded, bitorder="little").tobytes(),
            np.ascontiguousarray(win.record.chunks, np.uint8).tobytes(),
        ]
    )


def decode_record_win(data: bytes) -> RecordWin:
    (length,) = struct.unpack_from("<I", data)
    h = wire.decode(RecordWinHeader, data[4 : 4 + length])
    rest = memoryview(data)[4 + length :]
    expected = RECORD_NUM_S_BUCKETS // 8 + RECORD_NUM_CHUNKS // 8 + 32 * RECORD_NUM_CHUNKS
    if len(rest) != expected:
        raise wire.WireError(f"proving request body is {len(rest)} bytes, expected {expected}")
    present = np.unpackbits(np.frombuffer(rest[: RECORD_NUM_S_BUCKETS // 8], np.uint8), bitorder="little")
    s_buckets = np.flatnonzero(present).astype(np.int64)
    if len(s_buckets) != RECORD_NUM_CHUNKS:
        raise wire.WireError(f"proving request names {len(s_buckets)} s-buckets, expected {RECORD_NUM_CHUNKS}")
    at = RECORD_NUM_S_BUCKETS // 8
    encoded = np.unpackbits(np.frombuffer(rest[at : at + RECORD_NUM_CHUNKS // 8], np.uint8), bitorder="little")
    chunks = np.frombuffer(rest[at + RECORD_NUM_CHUNKS // 8 :], np.uint8).reshape(RECORD_NUM_CHUNKS, 32).copy()
    return RecordWin(
        h.public_key,
        h.reward_address,
        h.sector_index,
        h.history_size,
        h.s_bucket,
        RecordChunks(h.piece_offset, s_buckets, encoded.astype(bool), chunks),
        RecordMetadata.from_bytes(h.record_metadata),
    )


@dataclass(frozen=True)
class RecordWinHeader:
    public_key: bytes
    reward_address: bytes
    sector_index: int
    history_size: int
    s_bucket: int
    piece_offset: int
    record_metadata: bytes
