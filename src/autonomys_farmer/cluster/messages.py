"""The messages of the cluster: frozen dataclasses whose fields are protocol types.

Which subject carries which message, and which reply answers which request, is `cluster.subjects`; the
JSON codec is `cluster.wire`. Bulk data (pieces, sectors) travels over TCP (`cluster.bulk_ops`) and never
rides NATS, except a proving request: one record, about 1 MiB, hence nats-server's 3 MiB max_payload.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import numpy as np

from autonomys_farmer.cluster import wire
from autonomys_farmer.protocol.archiving import SegmentHeader
from autonomys_farmer.protocol.constants import MAX_PIECES_IN_SECTOR, RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.proving import RecordWin
from autonomys_farmer.protocol.reading import RecordChunks
from autonomys_farmer.protocol.sector import FarmerProtocolInfo, RecordMetadata
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.protocol.types import HistorySize, PieceOffset, SBucket, SectorIndex, SegmentIndex, SlotNumber

HEARTBEAT_INTERVAL_S = 2.0
DROP_AFTER_S = 3 * HEARTBEAT_INTERVAL_S
MAX_REINITIALIZE_DELAY_S = 24 * 3600.0


class ComponentKind(StrEnum):
    """Component kinds as heartbeats, the members bucket and the status view name them."""

    CONTROLLER = "controller"
    SHARDED_CACHE = "sharded-cache"
    FULL_PIECE_CACHE = "full-piece-sharded-cache"
    PLOT_SERVER = "plot-server"
    PLOT_CLIENT = "plot-client"
    PROOF_SERVER = "proof-server"


class CacheItemType(StrEnum):
    PIECE = "piece"
    SPLIT_PARITY_PIECE = "split-parity-piece"


class PlotStage(StrEnum):
    QUEUED = "queued"  # the plot client's own stage until a server speaks
    DOWNLOADING = "downloading"
    ENCODING = "encoding"
    READY = "ready"
    WAITING = "waiting for pieces"  # not an error: the history is still being archived or cached
    ERROR = "error"
    DROPPED = "dropped"  # ready, but not collected in time: released (the plot client issues the job again)


class FarmEventKind(StrEnum):
    PLOTTED = "plotted"
    REPLOTTING = "replotting"
    SOLUTION = "solution"  # accepted by the node
    LATE = "late"  # the node no longer took its slot
    INVALID = "invalid"  # refused by the node for what it is


# --- component status, sent with every heartbeat (one dataclass per kind) -------------------------------


@dataclass(frozen=True)
class ControllerStatus:
    """`accepted`, `late` and `invalid` are the node's answers to the solutions this controller sent:
    the status view's solution counts (a plot client's own word is not taken for them)."""

    TAG: ClassVar[str] = "controller"
    slots: int = 0
    solutions: int = 0
    accepted: int = 0
    late: int = 0
    invalid: int = 0
    segments: int = 0
    signatures: int = 0
    members: int = 0


@dataclass(frozen=True)
class CacheStatus:
    TAG: ClassVar[str] = "cache"
    items: int = 0
    capacity: int | None = None
    synced: bool = False


@dataclass(frozen=True)
class PlotServerStatus:
    TAG: ClassVar[str] = "plot-server"
    plotted: int = 0
    failed: int = 0
    waiting: int = 0  # jobs put back because their pieces were not found yet (start-up, sync)
    dead_letters: int = 0  # jobs dropped after failing MAX_JOB_DELIVERIES times
    encoding: int = 0
    buffered: int = 0
    backend: str = ""
    device: str = ""
    records_per_s: float = 0.0
    last_s: float = 0.0


@dataclass(frozen=True)
class FarmStatus:
    farm_id: str
    path: str
    sectors: int
    plotted: int
    expiring: int = 0  # plotted sectors due for replotting
    audit_ms: float = 0.0  # the last slot's audit of every plotted sector


@dataclass(frozen=True)
class SectorProgress:
    farm_id: str
    sector_index: SectorIndex
    stage: PlotStage
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class PlotClientStatus:
    TAG: ClassVar[str] = "plot-client"
    slots: int = 0
    skipped_audit_running: int = 0  # slots not audited: the previous slot's audit had not finished
    skipped_implausible: int = 0  # slot numbers refused: far from where the recent slots put the clock
    audit_ms: float = 0.0  # the last slot's audit of every farm (farms audit side by side)
    audited: int = 0  # sectors in that audit
    proving: int = 0  # wins being proved now (several slots' at once, each to its own deadline)
    wins: int = 0
    accepted: int = 0
    late: int = 0  # ignored by the node: proved after the slot's deadline
    invalid: int = 0  # refused by the node
    local_proofs: int = 0
    dropped: int = 0
    proof_s: float = 0.0
    farms: tuple[FarmStatus, ...] = ()
    plotting: tuple[SectorProgress, ...] = ()


@dataclass(frozen=True)
class ProofServerStatus:
    TAG: ClassVar[str] = "proof-server"
    proved: int = 0
    failed: int = 0
    expired: int = 0  # requests dropped because their slot budget was spent before proving started
    batches: int = 0  # proving batches run (several wins of a slot share one)
    backend: str = ""
    device: str = ""
    last_ms: float = 0.0  # request to reply, queueing included
    p50_ms: float = 0.0  # over the last 512 proofs
    p99_ms: float = 0.0
    queued: int = 0


ComponentStatus = ControllerStatus | CacheStatus | PlotServerStatus | PlotClientStatus | ProofServerStatus


def status_figures(status: ComponentStatus | None) -> dict[str, int | float | str | bool | None]:
    """A status's scalar figures (numbers, flags, text), for a status table row or metrics."""
    if status is None:
        return {}
    values = {f.name: getattr(status, f.name) for f in dataclasses.fields(status)}
    return {k: v for k, v in values.items() if v is None or isinstance(v, int | float | str | bool)}


# --- membership and caches -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    kind: ComponentKind
    instance_id: str
    address: str = ""  # host:port of its bulk TCP server, if any
    item_type: CacheItemType | None = None  # caches (and the controller, which serves node pieces)
    sent_at: float = 0.0
    status: ComponentStatus | None = None  # for the status view and metrics; members entries omit it
    host: str = ""  # the machine's name
    started_at: float = 0.0  # Unix time the component started (uptime in the status view)


@dataclass(frozen=True)
class ShardMember:
    instance_id: str
    address: str


@dataclass(frozen=True)
class ShardMap:
    """Live instances of one cache group; placement itself is `cluster.sharding` over this list."""

    group: str
    members: tuple[ShardMember, ...]


@dataclass(frozen=True)
class ReinitializeCaches:
    delay_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay_s) and 0 <= self.delay_s <= MAX_REINITIALIZE_DELAY_S):
            raise ValueError(f"delay_s must be within 0..{MAX_REINITIALIZE_DELAY_S:g} seconds, got {self.delay_s}")


# --- requests to the controller --------------------------------------------------------------------------


@dataclass(frozen=True)
class AppInfoRequest:
    """Ask for the node's FarmerAppInfo (no fields)."""


@dataclass(frozen=True)
class SegmentHeadersRequest:
    segment_indexes: tuple[SegmentIndex, ...]


@dataclass(frozen=True)
class SegmentHeadersResponse:
    headers: tuple[SegmentHeader | None, ...]


@dataclass(frozen=True)
class SubmitSolution:
    slot_number: SlotNumber
    solution: Solution


@dataclass(frozen=True)
class SubmitResult:
    accepted: bool
    error: str = ""
    late: bool = False  # not accepted because its slot had passed (not because it is invalid)
    submitted: bool = True  # False: the controller's node was unreachable, the solution went nowhere


# --- plotting --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlotJob:
    job_id: str  # 32 lower-case hex digits: it names files on the plot server, so nothing else passes
    farm_id: str
    public_key: bytes
    sector_index: SectorIndex
    pieces_in_sector: int
    protocol_info: FarmerProtocolInfo  # fetched just before asking
    attempt: int = 0

    def __post_init__(self) -> None:
        check_job_id(self.job_id)
        if not FARM_ID.fullmatch(self.farm_id):
            raise ValueError(f"farm_id must be a ULID or UUID, got {self.farm_id[:80]!r}")
        if len(self.public_key) != 32:
            raise ValueError(f"public_key must be 32 bytes, got {len(self.public_key)}")
        if not 1 <= self.pieces_in_sector <= MAX_PIECES_IN_SECTOR:
            raise ValueError(f"pieces_in_sector must be 1..{MAX_PIECES_IN_SECTOR}, got {self.pieces_in_sector}")


JOB_ID = re.compile(r"[0-9a-f]{32}")


def check_job_id(job_id: str) -> None:
    """Job ids name files on plot servers: exactly 32 lower-case hex digits, nothing else passes."""
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"job_id must be 32 lower-case hex digits, got {job_id[:80]!r}")


FARM_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class DeadLetter:
    """A plot job taken off the work queue after failing too often (not a start-up wait): logged by
    the plot server and published for operators; a poison job must not be retried forever."""

    job: PlotJob
    deliveries: int
    error: str


@dataclass(frozen=True)
class PlotProgress:
    job_id: str
    server_id: str
    stage: PlotStage
    done: int = 0
    total: int = 0
    address: str = ""  # ready: where to fetch the sector over TCP
    size: int = 0  # ready: bytes of the sector and its checksummed metadata
    error: str = ""


# --- proving and farming events --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProveResponse:
    solution: Solution | None
    error: str = ""


@dataclass(frozen=True)
class FarmEvent:
    farm_id: str
    kind: FarmEventKind
    sector_index: SectorIndex | None = None
    slot_number: SlotNumber | None = None
    detail: str = ""


# --- the proving request: one record's stored chunks, binary (too big for hex JSON) -----------------------


@dataclass(frozen=True)
class ProveRequest:
    """A win to prove within `budget_s` of its arrival (the slot's time left when it was sent; clocks
    of different machines are never compared). A proof server drops a request it could not start in
    time: a late proof is ignored by the node and delays the next slot's."""

    win: RecordWin
    budget_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.budget_s) and 0 < self.budget_s <= MAX_PROVE_BUDGET_S):
            raise ValueError(f"budget_s must be within 0..{MAX_PROVE_BUDGET_S:g} seconds, got {self.budget_s}")


MAX_PROVE_BUDGET_S = 600.0


@dataclass(frozen=True)
class RecordWinHeader:
    budget_s: float
    public_key: bytes
    reward_address: bytes
    sector_index: SectorIndex
    history_size: HistorySize
    s_bucket: SBucket
    piece_offset: PieceOffset
    record_metadata: bytes


def encode_prove_request(request: ProveRequest) -> bytes:
    """u32 LE header length ‖ JSON header ‖ s-bucket bitmap (8 KiB) ‖ encoded bitmap (4 KiB) ‖ chunks."""
    win = request.win
    header = wire.encode(
        RecordWinHeader(
            request.budget_s,
            win.public_key,
            win.reward_address,
            SectorIndex(win.sector_index),
            HistorySize(win.history_size),
            SBucket(win.s_bucket),
            PieceOffset(win.record.piece_offset),
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


def decode_prove_request(data: bytes) -> ProveRequest:
    if len(data) < 4:
        raise wire.WireError("proving request shorter than its length prefix")
    (length,) = struct.unpack_from("<I", data)
    if len(data) < 4 + length:
        raise wire.WireError(f"proving request header of {length} bytes is cut short")
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
    try:
        metadata = RecordMetadata.from_bytes(h.record_metadata)
        chunks_of_record = RecordChunks(h.piece_offset, s_buckets, encoded.astype(bool), chunks)
        win = RecordWin(
            h.public_key, h.reward_address, h.sector_index, h.history_size, h.s_bucket, chunks_of_record, metadata
        )
        return ProveRequest(win, h.budget_s)
    except ValueError as e:
        raise wire.WireError(f"proving request: {e}") from e
