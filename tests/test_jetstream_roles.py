"""JetStream least privilege, with authorization on as `dev` and `util supervisor-config` render it: with
any one role's password but the controller's, every way the JetStream API could undo the roles (streams
that capture, republish or answer requests, pausing, deleting or purging the cluster's state) is refused,
while each role's own JetStream work goes through."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from pathlib import Path

import pytest
from fuzz import JOB
from processes import nats_server
from test_supervisor_config import CLUSTER, TOPOLOGY

from autonomys_farmer.cluster import messages as m
from autonomys_farmer.cluster import roles, subjects
from autonomys_farmer.cluster.layout_toml import parse_cluster
from autonomys_farmer.services.deploy.render import ClusterCredentials, render_machine
from autonomys_farmer.services.deploy.supervisord import free_port
from autonomys_farmer.services.devnet.dev import DevLayout
from autonomys_farmer.services.tools.supervisor_config import render_cluster
from autonomys_farmer.services.transport.nats_bus import Bus, NatsAuth

JOBS, CONSUMER = subjects.PLOT_JOBS.stream, subjects.PLOT_JOBS.consumer
KV_STREAMS = [roles.kv_stream(bucket) for bucket in (subjects.MEMBERS, subjects.SHARDS)]


def stream(name: str, *captured: str, **extra: object) -> bytes:
    return json.dumps({"name": name, "subjects": list(captured), "storage": "memory", **extra}).encode()


def attacks() -> dict[str, tuple[str, bytes]]:
    """What a stolen password was seen to do through the JetStream API (issue 21), and the rest of
    the destructive operations on the cluster's streams and consumer."""
    api = "$JS.API"
    found = {
        "signing oracle: republish onto reward-signing-info": (
            f"{api}.STREAM.CREATE.EVIL",
            stream(
                "EVIL",
                f"{subjects.FARM_EVENTS.name}.evil",
                republish={"src": ">", "dest": subjects.REWARD_SIGNING_INFO.name},
            ),
        ),
        "capture heartbeats": (f"{api}.STREAM.CREATE.BEATS", stream("BEATS", f"{subjects.HEARTBEAT.name}.>")),
        "capture reward signatures": (f"{api}.STREAM.CREATE.SIGS", stream("SIGS", subjects.REWARD_SIGNATURE.name)),
        "capture slot info": (f"{api}.STREAM.CREATE.SLOTS", stream("SLOTS", subjects.SLOT_INFO.name)),
        "answer farmer-app-info requests": (
            f"{api}.STREAM.CREATE.APPINFO",
            stream("APPINFO", subjects.FARMER_APP_INFO.name),
        ),
        "answer submit-solution requests": (
            f"{api}.STREAM.CREATE.SUBMIT",
            stream("SUBMIT", subjects.SUBMIT_SOLUTION.name),
        ),
        "pause the plot servers' consumer": (
            f"{api}.CONSUMER.PAUSE.{JOBS}.{CONSUMER}",
            json.dumps({"pause_until": "2030-01-01T00:00:00Z"}).encode(),
        ),
        "delete the plot servers' consumer": (f"{api}.CONSUMER.DELETE.{JOBS}.{CONSUMER}", b""),
        "a consumer of its own on the jobs": (
            f"{api}.CONSUMER.CREATE.{JOBS}.THIEF",
            json.dumps({"stream_name": JOBS, "config": {"name": "THIEF", "ack_policy": "explicit"}}).encode(),
        ),
        "update the jobs stream": (
            f"{api}.STREAM.UPDATE.{JOBS}",
            stream(JOBS, subjects.PLOT_JOBS.subject, subjects.SLOT_INFO.name),
        ),
    }
    for name in (JOBS, *KV_STREAMS):
        found[f"purge {name}"] = (f"{api}.STREAM.PURGE.{name}", b"")
        found[f"delete {name}"] = (f"{api}.STREAM.DELETE.{name}", b"")
        found[f"delete a message of {name}"] = (f"{api}.STREAM.MSG.DELETE.{name}", b'{"seq": 1}')
    return found


def dev_config(tmp_path: Path) -> tuple[str, dict[str, str]]:
    layout = DevLayout(tmp_path / "dev")
    described = layout.describe()
    assert layout.credentials is not None
    files = render_machine(described, described.machines[0], layout.credentials)
    return files[layout.secrets / "nats-server.conf"].text, layout.credentials.passwords


def supervisor_config(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A node machine's nats-server.conf from `util supervisor-config`, listening here, alone."""
    (tmp_path / "topo.txt").write_text(TOPOLOGY)
    credentials = ClusterCredentials.generate()
    files = render_cluster(parse_cluster(tomllib.loads(CLUSTER), tmp_path), credentials)
    conf = files[Path("node-1/etc/autonomys/nats-server.conf")].text
    conf = re.sub(r"(?m)^listen: .*$", f"listen: 127.0.0.1:{free_port()}", conf)
    conf = re.sub(r"(?m)^cluster \{.*\}$", "", conf)
    conf = re.sub(r'store_dir: "[^"]*"', f'store_dir: "{tmp_path / "js"}"', conf)
    return conf, credentials.passwords


@pytest.mark.parametrize("render", [dev_config, supervisor_config], ids=["dev", "supervisor-config"])
def test_jetstream_is_least_privilege_per_role(tmp_path: Path, render) -> None:
    conf_text, passwords = render(tmp_path)
    assert "max_streams: 16" in conf_text and "max_consumers: 4096" in conf_text  # account limits
    conf = tmp_path / "nats-test.conf"
    conf.write_text(conf_text)
    url = f"nats://{re.search(r'(?m)^listen: (.*)$', conf_text).group(1)}"

    def auth(role: str) -> NatsAuth:
        path = tmp_path / f"{role}.password"
        path.write_text(passwords[role])
        return NatsAuth(user=role, password_file=path)

    async def run() -> None:
        async with nats_server(conf):
            await check_roles()

    async def check_roles() -> None:
        buses = {role: await Bus.connect([url], role, 20.0, auth(role)) for role in roles.ROLES}
        try:
            controller = buses[m.ComponentKind.CONTROLLER]
            await controller.create_state((subjects.MEMBERS, subjects.SHARDS), subjects.PLOT_JOBS, 8.0)

            # Every role but the controller: each attack goes unanswered (the server drops the request).
            tried = [
                (role, what, buses[role].nc.request(subject, payload, timeout=3.0))
                for role in roles.ROLES
                if role != m.ComponentKind.CONTROLLER
                for what, (subject, payload) in attacks().items()
            ]
            results = await asyncio.gather(*(request for _, _, request in tried), return_exceptions=True)
            answered = [(role, what, r.data[:120]) for (role, what, _), r in zip(tried, results, strict=True)
                        if not isinstance(r, Exception)]  # fmt: skip
            assert answered == []

            # The same requests are well formed: the controller, which owns the state, may make them.
            for what in ("capture heartbeats", "pause the plot servers' consumer"):
                subject, payload = attacks()[what]
                reply = json.loads((await controller.nc.request(subject, payload, timeout=5.0)).data)
                assert "error" not in reply, (what, reply)
            await controller.js.delete_stream("BEATS")
            await controller.create_state((subjects.MEMBERS, subjects.SHARDS), subjects.PLOT_JOBS, 8.0)  # unpauses
            info = await controller.js.consumer_info(JOBS, CONSUMER)
            assert not getattr(info, "paused", False) and info.config.ack_wait == 8.0
            names = {s.config.name for s in await controller.js.streams_info()}
            assert names == {JOBS, *KV_STREAMS}  # nothing was created, nothing deleted

            # Each role's own JetStream work goes through.
            client, server = buses[m.ComponentKind.PLOT_CLIENT], buses[m.ComponentKind.PLOT_SERVER]
            await asyncio.wait_for(client.await_work_queue(subjects.PLOT_JOBS), 10)
            sequence = await client.enqueue(subjects.PLOT_JOBS, JOB, "job-1")
            assert await client.queued(subjects.PLOT_JOBS, sequence)
            assert await asyncio.wait_for(client.kv_get(subjects.MEMBERS, "plot-client.x"), 10) is None
            consumer = await asyncio.wait_for(server.work_queue_consumer(subjects.PLOT_JOBS), 10)
            (msg,) = await consumer.fetch(1, timeout=10)
            assert subjects.PLOT_JOBS.codec.decode(msg.data) == JOB
            await msg.ack()
            await controller.kv_put(subjects.SHARDS, "g", m.ShardMap("g", ()))
            for role in (m.ComponentKind.SHARDED_CACHE, m.ComponentKind.FULL_PIECE_CACHE, m.ComponentKind.PLOT_SERVER,
                         roles.OPERATOR):  # fmt: skip
                bus = buses[role]
                assert await asyncio.wait_for(bus.kv_get(subjects.SHARDS, "g"), 10) == m.ShardMap("g", ())
                watched = await asyncio.wait_for(anext(bus.kv_watch(subjects.SHARDS)), 10)
                assert watched == ("g", m.ShardMap("g", ()))
            assert (await buses[roles.OPERATOR].js.stream_info(JOBS)).config.name == JOBS
            with pytest.raises(Exception):  # noqa: B017  (the proof server has no JetStream at all)
                await buses[m.ComponentKind.PROOF_SERVER].js.stream_info(JOBS, timeout=2.0)
        finally:
            for bus in buses.values():
                await bus.close()

    asyncio.run(run())


def test_dev_secrets_stay_secret(tmp_path: Path) -> None:
    """Every file `dev` writes that holds a password or the cluster secret: 0600, in a 0700 directory."""
    layout = DevLayout(tmp_path / "dev", nats_servers=3)
    layout.supervisord().write()
    held = sorted(layout.secrets.iterdir())
    assert {path.name for path in held} >= {
        "nats-server-0.conf",
        "cluster-secret",
        *(f"nats-{r}.password" for r in roles.ROLES),
    }
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in held)
    assert layout.secrets.stat().st_mode & 0o777 == 0o700
    password = layout.password_file(m.ComponentKind.PLOT_CLIENT).read_text().strip()
    assert all(
        password not in path.read_text() for path in layout.base.rglob("*") if path.is_file() and path not in held
    )
    # A restarted `dev` on the same base path keeps its cluster's passwords and secret.
    assert DevLayout(tmp_path / "dev", nats_servers=3).credentials == layout.credentials
