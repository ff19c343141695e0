"""Least privilege on NATS: what each kind of cluster member may publish and subscribe to.

One NATS user per role (each component kind, plus `operator` for the status view and the util tools),
with permissions derived from the subjects registry: only controllers publish slots, reward-signing
requests and segment headers and write the derived KV state (members, shard maps); only plot servers
publish plot progress; only plot clients submit solutions, queue plot jobs and sign rewards; only proof
servers answer proving requests. JetStream's API is open to the roles that use it, without its
destructive operations. `nats_authorization` renders the nats-server `authorization` block.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from autonomys_farmer.cluster import subjects as s
from autonomys_farmer.cluster.messages import ComponentKind

OPERATOR = "operator"
ROLES = (*(str(kind) for kind in ComponentKind), OPERATOR)
INBOX = "_INBOX.>"
JS_API = "$JS.API.>"
CLUSTER_STREAMS = (f"KV_{s.MEMBERS.name}", f"KV_{s.SHARDS.name}", s.PLOT_JOBS.stream)
JS_DESTRUCTIVE = (
    *(
        f"$JS.API.STREAM.{operation}.{stream}"
        for operation in ("DELETE", "PURGE", "MSG.DELETE", "UPDATE")
        for stream in CLUSTER_STREAMS
    ),
    f"$JS.API.CONSUMER.DELETE.{s.PLOT_JOBS.stream}.>",
)
KV_DERIVED = (f"$KV.{s.MEMBERS.name}.>", f"$KV.{s.SHARDS.name}.>")
NODE_REQUESTS = (s.FARMER_APP_INFO.name, s.SEGMENT_HEADERS.name)


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responds: bool = False  # may answer the requests it receives (nats-server allow_responses)
    deny_publish: tuple[str, ...] = JS_DESTRUCTIVE + KV_DERIVED


def _heartbeat(kind: ComponentKind) -> str:
    return f"{s.HEARTBEAT.name}.{kind}.>"


PERMISSIONS: dict[str, Permissions] = {
    ComponentKind.CONTROLLER: Permissions(
        publish=(
            s.SLOT_INFO.name, s.REWARD_SIGNING_INFO.name, s.ARCHIVED_SEGMENT_HEADER.name,
            _heartbeat(ComponentKind.CONTROLLER), JS_API, *KV_DERIVED,
        ),
        subscribe=(
            s.REWARD_SIGNATURE.name, s.FARMER_APP_INFO.name, s.SEGMENT_HEADERS.name, s.SUBMIT_SOLUTION.name,
            f"{s.HEARTBEAT.name}.>", INBOX,
        ),
        responds=True,
        deny_publish=(),
    ),
    ComponentKind.SHARDED_CACHE: Permissions(
        publish=(_heartbeat(ComponentKind.SHARDED_CACHE), *NODE_REQUESTS, JS_API),
        subscribe=(s.ARCHIVED_SEGMENT_HEADER.name, s.REINITIALIZE_CACHES.name, INBOX),
    ),
    ComponentKind.FULL_PIECE_CACHE: Permissions(
        publish=(_heartbeat(ComponentKind.FULL_PIECE_CACHE), *NODE_REQUESTS, JS_API),
        subscribe=(s.ARCHIVED_SEGMENT_HEADER.name, s.REINITIALIZE_CACHES.name, INBOX),
    ),
    ComponentKind.PLOT_SERVER: Permissions(
        publish=(
            _heartbeat(ComponentKind.PLOT_SERVER), f"{s.PLOT_PROGRESS.name}.>", s.PLOT_DEAD_LETTERS.name,
            *NODE_REQUESTS, JS_API, f"$JS.ACK.{s.PLOT_JOBS.stream}.>",
        ),
        subscribe=(INBOX,),
    ),
    ComponentKind.PLOT_CLIENT: Permissions(
        publish=(
            _heartbeat(ComponentKind.PLOT_CLIENT), s.PLOT_JOBS.subject, f"{s.FARM_EVENTS.name}.>",
            s.SUBMIT_SOLUTION.name, s.PROVE.name, s.REWARD_SIGNATURE.name, *NODE_REQUESTS, JS_API,
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
        publish=(s.REINITIALIZE_CACHES.name, *NODE_REQUESTS, JS_API),
        subscribe=(
            f"{s.HEARTBEAT.name}.>", f"{s.FARM_EVENTS.name}.>", s.SLOT_INFO.name, f"{s.PLOT_PROGRESS.name}.>",
            s.PLOT_DEAD_LETTERS.name, s.ARCHIVED_SEGMENT_HEADER.name, INBOX,
        ),
    ),
}  # fmt: skip


def role_of(kind: ComponentKind | str) -> str:
    return str(kind)


def nats_authorization(passwords: Mapping[str, str]) -> str:
    """The nats-server `authorization` block: one user per role, named as the role, with its password."""
    users = []
    for role in ROLES:
        p = PERMISSIONS[role]
        publish: dict[str, list[str]] = {"allow": list(p.publish)}
        if p.deny_publish:
            publish["deny"] = list(p.deny_publish)
        permissions: dict[str, object] = {"publish": publish, "subscribe": {"allow": list(p.subscribe)}}
        if p.responds:
            permissions["allow_responses"] = True
        user = {"user": role, "password": passwords[role], "permissions": permissions}
        users.append("    " + json.dumps(user))
    return "authorization {\n  users = [\n" + ",\n".join(users) + "\n  ]\n}\n"
