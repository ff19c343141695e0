"""Every NATS subject of the cluster with the message it carries and, for requests, the reply (the
way chia's protocol message table maps each request to its replies). The bus (services/transport)
encodes and decodes through these, so handlers only ever see typed values.

Broadcasts go to every subscriber; requests are answered by one member of a queue group; plot jobs ride
a JetStream work queue; membership and cache shard maps live in JetStream KV buckets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from autonomys_farmer.cluster import wire
from autonomys_farmer.cluster.messages import (
    AppInfoRequest,
    DeadLetter,
    FarmEvent,
    Heartbeat,
    PlotJob,
    PlotProgress,
    ProveRequest,
    ProveResponse,
    ReinitializeCaches,
    SegmentHeadersRequest,
    SegmentHeadersResponse,
    ShardMap,
    SubmitResult,
    SubmitSolution,
    decode_prove_request,
    encode_prove_request,
)
from autonomys_farmer.protocol.archiving import SegmentHeader
from autonomys_farmer.protocol.farmer_rpc import FarmerAppInfo, RewardSignatureResponse, RewardSigningInfo, SlotInfo

T = TypeVar("T")
R = TypeVar("R")

CONTROLLER_QUEUE = "subspace.controller"
PROOF_SERVERS_QUEUE = "proof-servers"


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How one message type becomes payload bytes and back (WireError on a malformed payload)."""

    encode: Callable[[T], bytes]
    decode: Callable[[bytes], T]


def json_codec(cls: type[T]) -> Codec[T]:
    return Codec(wire.encode, lambda data: wire.decode(cls, data))


@dataclass(frozen=True)
class Broadcast(Generic[T]):
    """Published to every subscriber. `tokens` name the subject's trailing parts (a farm id, ...)."""

    name: str
    message: type[T]
    tokens: tuple[str, ...] = ()
    # The tokens a message must be published under, from its content: with per-role NATS permissions
    # on the tokens, a member cannot speak as another kind (a heartbeat's kind is its subject's).
    bound: Callable[[T], tuple[str, ...]] | None = None
    codec: Codec[T] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "codec", json_codec(self.message))

    def subject(self, *tokens: str) -> str:
        if len(tokens) != len(self.tokens):
            raise ValueError(f"{self.name} takes {len(self.tokens)} subject tokens {self.tokens}, got {tokens}")
        return ".".join([self.name, *tokens])

    @property
    def pattern(self) -> str:
        """What a subscriber to all of them subscribes to."""
        return f"{self.name}.>" if self.tokens else self.name


@dataclass(frozen=True)
class Request(Generic[T, R]):
    """Answered by one member of `queue` with a `reply`."""

    name: str
    request: type[T]
    reply: type[R]
    queue: str
    request_codec: Codec[T] | None = None

    @property
    def codec(self) -> Codec[T]:
        return self.request_codec or json_codec(self.request)

    @property
    def reply_codec(self) -> Codec[R]:
        return json_codec(self.reply)


@dataclass(frozen=True)
class WorkQueue(Generic[T]):
    """A durable JetStream work-queue stream: each message is delivered to one consumer until acked."""

    stream: str
    subject: str
    message: type[T]
    consumer: str

    @property
    def codec(self) -> Codec[T]:
        return json_codec(self.message)


@dataclass(frozen=True)
class Bucket(Generic[T]):
    """A JetStream key-value bucket whose values are one message type."""

    name: str
    value: type[T]

    @property
    def codec(self) -> Codec[T]:
        return json_codec(self.value)


# --- the controller: the node's RPC proxied to the cluster ----------------------------------------------
SLOT_INFO = Broadcast("subspace.controller.slot-info", SlotInfo)
REWARD_SIGNING_INFO = Broadcast("subspace.controller.reward-signing-info", RewardSigningInfo)
ARCHIVED_SEGMENT_HEADER = Broadcast("subspace.controller.archived-segment-header", SegmentHeader)
REWARD_SIGNATURE = Broadcast("subspace.controller.reward-signature", RewardSignatureResponse)
FARMER_APP_INFO = Request("subspace.controller.farmer-app-info", AppInfoRequest, FarmerAppInfo, CONTROLLER_QUEUE)
SEGMENT_HEADERS = Request(
    "subspace.controller.segment-headers", SegmentHeadersRequest, SegmentHeadersResponse, CONTROLLER_QUEUE
)
SUBMIT_SOLUTION = Request("subspace.controller.submit-solution", SubmitSolution, SubmitResult, CONTROLLER_QUEUE)

# --- membership and caches ------------------------------------------------------------------------------
HEARTBEAT = Broadcast(
    "autonomys.heartbeat", Heartbeat, tokens=("kind", "instance"), bound=lambda beat: (beat.kind, beat.instance_id)
)
REINITIALIZE_CACHES = Broadcast("autonomys.cache.reinitialize", ReinitializeCaches)
MEMBERS = Bucket("autonomys-members", Heartbeat)  # key "<kind>.<instance>"
SHARDS = Bucket("autonomys-cache-shards", ShardMap)  # key: the cache group

# --- plotting, proving, farming -------------------------------------------------------------------------
PLOT_JOBS = WorkQueue("AUTONOMYS_PLOT_JOBS", "autonomys.plot.jobs", PlotJob, "plot-servers")
PLOT_PROGRESS = Broadcast("autonomys.plot.progress", PlotProgress, tokens=("farm",))
PLOT_DEAD_LETTERS = Broadcast("autonomys.plot.dead-letter", DeadLetter)
PROVE = Request(
    "autonomys.proof-server.prove",
    ProveRequest,
    ProveResponse,
    PROOF_SERVERS_QUEUE,
    Codec(encode_prove_request, decode_prove_request),
)
FARM_EVENTS = Broadcast("autonomys.farm", FarmEvent, tokens=("farm",))

SUBJECTS: tuple[Broadcast[Any] | Request[Any, Any] | WorkQueue[Any] | Bucket[Any], ...] = (
    SLOT_INFO,
    REWARD_SIGNING_INFO,
    ARCHIVED_SEGMENT_HEADER,
    REWARD_SIGNATURE,
    FARMER_APP_INFO,
    SEGMENT_HEADERS,
    SUBMIT_SOLUTION,
    HEARTBEAT,
    REINITIALIZE_CACHES,
    MEMBERS,
    SHARDS,
    PLOT_JOBS,
    PLOT_DEAD_LETTERS,
    PLOT_PROGRESS,
    PROVE,
    FARM_EVENTS,
)
