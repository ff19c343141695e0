"""Least privilege on NATS: what each kind of cluster member may publish and subscribe to.

One NATS user per role (each component kind, plus `operator` for the status view and the util tools),
with permissions derived from the subjects registry: only controllers publish slots, reward-signing
requests and segment headers and write the derived KV state (members, shard maps); only plot servers
publish plot progress; only plot clients submit solutions, queue plot jobs and sign rewards; only proof
servers answer proving requests.

JetStream's API is a set of request subjects too, so it is granted the same way. Only the controller
holds all of it: it creates the cluster's streams, buckets and the plot servers' consumer. Every other
role gets exactly the API subjects of its work (stream info and reads of the buckets it reads, the next
job and acks on the plot servers' consumer, ...), so no other role can create, change, delete, purge or
pause a stream or consumer, capture subjects into a stream, or republish. `nats_authorization` renders
the nats-server block: the users inside one account with JetStream limits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autonomys_farmer.cluster import subjects as s
from autonomys_farmer.cluster.messages import ComponentKind

OPERATOR = "operator"
ROLES = (*(str(kind) for kind in ComponentKind), OPERATOR)
INBOX = "_INBOX.>"
JS_API = "$JS.API.>"
ACCOUNT = "AUTONOMYS"
# JetStream limits of the cluster's account: three small streams (two buckets, the jobs queue) and one
# watching consumer per member, with room; nothing is kept in memory.
JETSTREAM_LIMITS = {"max_mem": "256M", "max_file": "4G", "max_streams": 16, "max_consumers": 4096}


def _api(*tokens: str) -> str:
    return ".".join(("$JS.API", *tokens))


def kv_stream(bucket: s.Bucket[Any]) -> str:
    return f"KV_{bucket.name}"


def kv_reader(bucket: s.Bucket[Any]) -> tuple[str, ...]:
    """Open, get and watch a bucket: stream info, direct and stream gets, an ephemeral watching
    consumer (created, then looked up) and its flow-control replies."""
    stream = kv_stream(bucket)
    return (
        _api("STREAM.INFO", stream), _api("DIRECT.GET", stream), _api("DIRECT.GET", stream, ">"),
        _api("STREAM.MSG.GET", stream), _api("CONSUMER.CREATE", stream), _api("CONSUMER.INFO", stream, "*"),
        f"$JS.FC.{stream}.>",
    )  # fmt: skip


JOBS = s.PLOT_JOBS
JOBS_PRODUCER = (JOBS.subject, _api("STREAM.INFO", JOBS.stream), _api("STREAM.MSG.GET", JOBS.stream))
JOBS_CONSUMER = (
    _api("STREAM.INFO", JOBS.stream),
    _api("CONSUMER.INFO", JOBS.stream, JOBS.consumer),
    _api("CONSUMER.MSG.NEXT", JOBS.stream, JOBS.consumer),
    f"$JS.ACK.{JOBS.stream}.{JOBS.consumer}.>",
)
KV_DERIVED = (f"$KV.{s.MEMBERS.name}.>", f"$KV.{s.SHARDS.name}.>")
NODE_REQUESTS = (s.FARMER_APP_INFO.name, s.SEGMENT_HEADERS.name)


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responds: bool = False  # may answer the requests it receives (nats-server allow_responses)


def _heartbeat(kind: ComponentKind) -> str:
    return f"{s.HEARTBEAT.name}.{kind}.>"


PERMISSIONS: dict[str, Permissions] = {
    ComponentKind.CONTROLLER: Permissions(
        publish=(
            s.SLOT_INFO.name, s.REWARD_SIGNING_INFO.name, s.ARCHIVED_SEGMENT_HEADER.name,
            _heartbeat(ComponentKind.CONTROLLER), JS_API, "$JS.FC.>", *KV_DERIVED,
        ),
        subscribe=(
            s.REWARD_SIGNATURE.name, s.FARMER_APP_INFO.name, s.SEGMENT_HEADERS.name, s.SUBMIT_SOLUTION.name,
            f"{s.HEARTBEAT.name}.>", INBOX,
        ),
        responds=True,
    ),
    ComponentKind.SHARDED_CACHE: Permissions(
        publish=(_heartbeat(ComponentKind.SHARDED_CACHE), *NODE_REQUESTS, *kv_reader(s.SHARDS)),
        subscribe=(s.ARCHIVED_SEGMENT_HEADER.name, s.REINITIALIZE_CACHES.name, INBOX),
    ),
    ComponentKind.FULL_PIECE_CACHE: Permissions(
        publish=(_heartbeat(ComponentKind.FULL_PIECE_CACHE), *NODE_REQUESTS, *kv_reader(s.SHARDS)),
        subscribe=(s.ARCHIVED_SEGMENT_HEADER.name, s.REINITIALIZE_CACHES.name, INBOX),
    ),
    ComponentKind.PLOT_SERVER: Permissions(
        publish=(
            _heartbeat(ComponentKind.PLOT_SERVER), f"{s.PLOT_PROGRESS.name}.>", s.PLOT_DEAD_LETTERS.name,
            *NODE_REQUESTS, *kv_reader(s.SHARDS), *JOBS_CONSUMER,
        ),
        subscribe=(INBOX,),
    ),
    ComponentKind.PLOT_CLIENT: Permissions(
        publish=(
            _heartbeat(ComponentKind.PLOT_CLIENT), f"{s.FARM_EVENTS.name}.>", s.SUBMIT_SOLUTION.name, s.PROVE.name,
            s.REWARD_SIGNATURE.name, *NODE_REQUESTS, *kv_reader(s.MEMBERS), *JOBS_PRODUCER,
        ),
        subscribe=(
            s.SLOT_INFO.name, s.REWARD_SIGNING_INFO.name, s.ARCHIVED_SEGMENT_HEADER.name,
            f"{s.PLOT_PROGRESS.name}.>", INBOX,
        ),
    ),
    ComponentKind.PROOF_SERVER: Permissions(
        publish=(_heartbeat(ComponentKind.PROOF_SERVER),),
        subscribe=(s.PROVE.name, INBOX),
        responds=True,
    ),
    OPERATOR: Permissions(
        publish=(
            s.REINITIALIZE_CACHES.name, *NODE_REQUESTS, *kv_reader(s.SHARDS), *kv_reader(s.MEMBERS),
            _api("STREAM.INFO", JOBS.stream),
        ),
        subscribe=(
            f"{s.HEARTBEAT.name}.>", f"{s.FARM_EVENTS.name}.>", s.SLOT_INFO.name, f"{s.PLOT_PROGRESS.name}.>",
            s.PLOT_DEAD_LETTERS.name, s.ARCHIVED_SEGMENT_HEADER.name, INBOX,
        ),
    ),
}  # fmt: skip


def role_of(kind: ComponentKind | str) -> str:
    return str(kind)


def nats_authorization(passwords: Mapping[str, str]) -> str:
    """The nats-server `accounts` block: one account with JetStream limits, holding one user per role,
    named as the role, with its password and permissions."""
    users = []
    for role in ROLES:
        p = PERMISSIONS[role]
        permissions: dict[str, object] = {
            "publish": {"allow": list(p.publish)},
            "subscribe": {"allow": list(p.subscribe)},
        }
        if p.responds:
            permissions["allow_responses"] = True
        user = {"user": role, "password": passwords[role], "permissions": permissions}
        users.append("      " + json.dumps(user))
    limits = ", ".join(f"{key}: {value}" for key, value in JETSTREAM_LIMITS.items())
    return (
        f"accounts {{\n  {ACCOUNT} {{\n    jetstream {{ {limits} }}\n    users = [\n"
        + ",\n".join(users)
        + "\n    ]\n  }\n}\n"
    )
