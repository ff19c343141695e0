"""The whole cluster as real processes on loopback, in the seed's shape: a 3-server NATS cluster
(JetStream replicated 3 ways), three node machines (dev node following one chain, controller, proof
server), sharded cache, full-piece cache, plot server and plot client. It must plot a farm, get solutions
accepted, lose nothing when any component or one NATS server is killed with SIGKILL mid-work, and keep
farming when a whole node machine goes down."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import struct
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import KZG_PARAMETERS
from fuzz import FuzzReport, fuzz_bulk, fuzz_nats, fuzz_rpc
from nats.aio.msg import Msg

from autonomys_farmer.cluster import messages as m
from autonomys_farmer.cluster import subjects
from autonomys_farmer.cluster.bulk_ops import Contents, ListContents, Repaired, RepairItem
from autonomys_farmer.protocol.constants import PIECE_SIZE
from autonomys_farmer.protocol.farmer_rpc import SlotInfo
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.services.deploy.supervisord import Supervisord
from autonomys_farmer.services.devnet.dev import DevLayout
from autonomys_farmer.services.storage.farm import Farm
from autonomys_farmer.services.tools.cluster_status import ClusterStatus
from autonomys_farmer.services.transport import bulk
from autonomys_farmer.services.transport.nats_bus import Bus

pytestmark = pytest.mark.xdist_group("archived-chain")  # one worker archives the genesis segment
TIMEOUT_S = 420.0
PIECE_ELEMENT_SIZE = 8 + PIECE_SIZE + 32


async def wait_for(
    what: str, condition: Callable[[], bool], supervisor: Supervisord, timeout: float = TIMEOUT_S
) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            logs = "\n".join(f"--- {name}\n{supervisor.log_tail(name, 15)}" for name in supervisor.program_names())
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.25)


def node_blocks(log: str) -> dict[int, int]:
    """Block number -> slot, from a dev node's log (made there, won there, or followed from a peer)."""
    return {int(number): int(slot) for number, slot in re.findall(r"block #(\d+) at slot (\d+)", log)}


def farm_plotted(status: ClusterStatus) -> int:
    for beat in status.live():
        if isinstance(beat.status, m.PlotClientStatus):
            return sum(farm.plotted for farm in beat.status.farms)
    return -1


def proof_servers(status: ClusterStatus) -> dict[str, int]:
    """Proofs made so far by each live proof server (by instance id)."""
    return {
        beat.instance_id: beat.status.proved for beat in status.live() if isinstance(beat.status, m.ProofServerStatus)
    }


def controllers_accepted(status: ClusterStatus) -> int:
    return sum(beat.status.accepted for beat in status.live() if isinstance(beat.status, m.ControllerStatus))


def live_instance(status: ClusterStatus, kind: m.ComponentKind) -> str | None:
    ids = [beat.instance_id for beat in status.live() if beat.kind == kind]
    return ids[0] if ids else None


def test_cluster_plots_farms_and_survives_kills(tmp_path: Path, archived_chain: Path) -> None:
    layout = DevLayout(tmp_path, sectors=2, nats_servers=3, nodes=3, kzg_parameters=KZG_PARAMETERS, job_ack_wait=8.0)
    for node in range(layout.nodes):  # the chain as a first node archives it and the others take it
        shutil.copytree(archived_chain, layout.node_dir(node))

    async def run() -> None:
        # The plot server starts once the first proof server runs, the second and third proof servers once
        # it is proving: on a cold numba cache they then load its compiled kernels (the plot server warms up
        # the same PoS and field kernels) instead of compiling them over again on 2 cores.
        later = ("proof-server-1", "proof-server-2")
        programs = [replace(p, autostart=False) if p.name in (*later, "plot-server") else p for p in layout.programs()]
        async with layout.supervisord(programs) as supervisor:  # real supervisord, on the files `dev` renders
            bus = await Bus.connect(layout.nats_urls, "test", auth=layout.nats_credentials())
            status = ClusterStatus()
            await status.attach(bus)
            encoding: list[m.PlotProgress] = []

            async def on_progress(progress: m.PlotProgress) -> None:
                encoding.append(progress)

            await bus.subscribe(subjects.PLOT_PROGRESS, on_progress)
            slots: list[int] = []

            async def on_slot(slot: SlotInfo) -> None:
                slots.append(slot.slot_number)

            await bus.subscribe(subjects.SLOT_INFO, on_slot)
            # Every solution request on its way to a controller, seen by a plain subscriber beside their queue group.
            observer = await Bus.connect(layout.nats_urls, "observer", auth=layout.nats_credentials("controller"))
            submitted: list[bytes] = []

            async def on_submission(msg: Msg) -> None:
                request = subjects.SUBMIT_SOLUTION.codec.decode(msg.data)
                submitted.append(struct.pack("<Q", request.slot_number) + request.solution.to_scale())

            await observer.nc.subscribe(subjects.SUBMIT_SOLUTION.name, cb=on_submission)
            try:
                # Mid-sector, kill the plot server, the full-piece cache and a NATS server: the job goes back
                # to the (replicated) queue and is plotted again with pieces from whichever source is up.
                await wait_for("a proof server", lambda: len(proof_servers(status)) == 1, supervisor)
                await supervisor.up("plot-server")
                encoding_now = lambda: any(p.stage == m.PlotStage.ENCODING for p in encoding)  # noqa: E731
                await wait_for("a sector being encoded", encoding_now, supervisor)
                killed_server = live_instance(status, m.ComponentKind.PLOT_SERVER)
                killed = {name: await supervisor.kill(name) for name in ("plot-server", "full-piece-sharded-cache",
                                                                          "nats-server-1")}  # fmt: skip
                await wait_for("both sectors plotted", lambda: farm_plotted(status) == 2, supervisor)
                for name, pid in killed.items():  # autorestart brought each back as a new process
                    assert supervisor.restarts(name) >= 1 and await supervisor.pid(name) not in (0, pid), name
                assert live_instance(status, m.ComponentKind.PLOT_SERVER) != killed_server

                # Farming: the dev nodes accept solutions proved by the proof servers.
                await wait_for("a solution accepted", lambda: status.accepted >= 1, supervisor, 240)
                await supervisor.up(*later)

                # A node machine goes down (its dev node, controller and proof server killed, kept down) while
                # the plot client and a cache are killed with -9 and restarted: slots keep coming from the other
                # nodes, solutions are accepted, proofs spread over the two proof servers left, the farm and the
                # cache come back with their data. Back up, the lost node catches up with the chain from its peers.
                lost = ("dev-node-2", "controller-2", "proof-server-2")
                await wait_for("three proof servers", lambda: len(proof_servers(status)) == 3, supervisor, 120)
                proved_before = proof_servers(status)
                await supervisor.down(*lost)  # at once: no controller outlives its node to hand solutions back
                for name in ("plot-client", "sharded-cache"):
                    await supervisor.kill(name)
                seen, before = len(slots), status.accepted
                await wait_for("slots after the node machine's loss", lambda: len(slots) >= seen + 5, supervisor, 60)
                await wait_for("the lost proof server gone", lambda: len(proof_servers(status)) == 2, supervisor, 60)
                await wait_for("solutions after the loss", lambda: status.accepted >= before + 2, supervisor, 240)
                await wait_for("the plot client back", lambda: farm_plotted(status) == 2, supervisor, 120)
                await wait_for(
                    "the cache back with its pieces",
                    lambda: any(isinstance(b.status, m.CacheStatus) and b.status.synced for b in status.live()),
                    supervisor,
                    120,
                )
                await wait_for(
                    "proofs by both proof servers left",
                    lambda: all(proved > proved_before.get(i, 0) for i, proved in proof_servers(status).items()),
                    supervisor,
                    240,
                )
                following = lambda: supervisor.log_tail("dev-node-2", 1_000_000).count("following peer")  # noqa: E731
                followed_before = following()
                await supervisor.up(*lost)
                await wait_for("the node back on the chain", lambda: following() > followed_before, supervisor, 60)
                for name in ("plot-client", "sharded-cache", "full-piece-sharded-cache", "nats-server-1"):
                    assert supervisor.restarts(name) >= 1, name

                # Operator tools against the live cluster (each NATS server works as the entry point).
                urls = layout.nats_urls
                operator = ("--nats-user", "operator", "--nats-password-file", str(layout.password_file("operator")))
                kzg = (
                    "--kzg-parameters",
                    str(KZG_PARAMETERS),
                    "--cluster-secret-file",
                    str(layout.secret_file),
                    *operator,
                )
                benchmark = ("--sectors", "2", "--epoch", "2", "--cache-item-type", "piece")
                code, out = await tool("util", "sharded-cache-benchmark", "--nats-servers", *urls, *benchmark, *kzg)
                assert code == 0 and out.count("missing 0, invalid 0") == 2, out
                corrupted = corrupt_one_item(tmp_path / "cache" / "piece_cache.bin")
                code, out = await tool("util", "verify-piece", "--nats-server", urls[0], *kzg)
                assert code == 0 and "1 bad, 1 repaired" in out and f"key {corrupted}" in out, out
                code, out = await tool("util", "verify-piece", "--nats-server", urls[1], "--no-repair",
                                       "--cache-group", "sharded-cache.piece", *kzg)  # fmt: skip
                assert code == 0 and ": 0 bad" in out, out
                # The re-initialisation request and `cluster status --json` (every member, farms, plot and proof
                # servers, from what they publish) side by side.
                (code, out), (status_code, status_out) = await asyncio.gather(
                    tool("util", "reinitialization-cache", "--nats-servers", urls[2], "--delay", "0",
                         *operator),
                    tool("cluster", "--nats-server", urls[1], *operator, "status", "--json"),
                )  # fmt: skip
                assert code == 0 and "2 cache instance(s)" in out, out
                await wait_for(
                    "the caches re-initialised",
                    lambda: all("re-initialisation requested" in supervisor.log_tail(name, 400)
                                for name in ("sharded-cache", "full-piece-sharded-cache")),
                    supervisor,
                    30,
                )  # fmt: skip
                assert status_code == 0, status_out
                snapshot = json.loads(status_out[status_out.index("{") :])
                kinds = {member["kind"] for member in snapshot["members"]}
                assert kinds >= {str(kind) for kind in m.ComponentKind}, kinds
                client_status = next(x["status"] for x in snapshot["members"] if x["kind"] == "plot-client")
                assert [farm["plotted"] for farm in client_status["farms"]] == [2]
                proof_status = next(x["status"] for x in snapshot["members"] if x["kind"] == "proof-server")
                assert proof_status["backend"] == "cpu" and "p99_ms" in proof_status
                assert all(member["uptime_s"] is not None and member["host"] for member in snapshot["members"])
                assert snapshot["plot_jobs_queued"] is not None and client_status["farms"][0]["audit_ms"] > 0

                # Bulk TCP serves only peers holding the cluster secret.
                cache_address = next(b.address for b in status.live() if b.kind == m.ComponentKind.SHARDED_CACHE)
                for secret, refusal in ((b"", "requires the cluster secret"), (b"x" * 32, "refused us")):
                    try:
                        await bulk.request_all(cache_address, ListContents(), Contents, secret=secret)
                        raise AssertionError("a cache served a peer without the cluster secret")
                    except bulk.BulkError as e:
                        assert refusal in str(e), e

                # A repair of random bytes (by a peer holding the cluster secret) is refused, not stored.
                secret = layout.secret_file.read_bytes().strip()
                try:
                    await bulk.request_all(
                        cache_address, RepairItem(3), Repaired, os.urandom(PIECE_SIZE), secret=secret
                    )
                    raise AssertionError("a cache stored a repair that does not verify")
                except bulk.BulkError as e:
                    assert "does not verify against its segment commitment" in str(e), e

                # The shard map in KV is derived state: an overwrite (here by a rogue holder of the controller's
                # credentials, the only role allowed to write it) is undone.
                group = "sharded-cache.piece"
                genuine = await bus.kv_get(subjects.SHARDS, group)
                assert genuine is not None and genuine.members
                rogue = await Bus.connect(layout.nats_urls, "rogue", auth=layout.nats_credentials("controller"))
                await rogue.kv_put(subjects.SHARDS, group, m.ShardMap(group, ()))
                await rogue.close()
                deadline = time.monotonic() + 30
                while await bus.kv_get(subjects.SHARDS, group) != genuine:
                    assert time.monotonic() < deadline, "the overwritten shard map was not restored"
                    await asyncio.sleep(0.5)
                after_attacks = status.accepted
                await wait_for("farming after the attacks", lambda: status.accepted > after_attacks, supervisor, 120)

                # One chain: wherever two nodes both logged a block number, it is at the same slot (a block won on
                # one node was followed by the others, not made again later), and no announcement was refused.
                # Whether a win falls outside the forced blocks' slots is chance, so "from a peer" is not required.
                node_logs = [supervisor.log_tail(layout.node_name("dev-node", node), 1_000_000) for node in range(3)]
                chains = [node_blocks(text) for text in node_logs]
                for a, b in ((0, 1), (0, 2), (1, 2)):
                    common = chains[a].keys() & chains[b].keys()
                    assert len(common) >= 10, (a, b, common)
                    assert {n: chains[a][n] for n in common} == {n: chains[b][n] for n in common}, (a, b)
                assert not any("announcement dropped" in text for text in node_logs)
                # Members dropped by a controller (the killed programs) are no intrusion: nobody else wrote them.
                controller_logs = [supervisor.log_tail(layout.node_name("controller", n), 1_000_000) for n in range(3)]
                assert not any("changed by someone else" in text for text in controller_logs)

                # No win went to two nodes: a solution is submitted again only after a controller whose node was
                # down (a window while a node machine goes down or comes back) handed it back unsent.
                twice = {struct.unpack_from("<Q", s)[0] for s in set(submitted) if submitted.count(s) > 1}
                handbacks = re.findall(r"solution for slot (\d+) handed back", "".join(controller_logs))
                handed_back = {int(n) for n in handbacks}
                assert submitted and twice <= handed_back, f"solutions submitted twice, at slots {twice - handed_back}"

                # Hostile input on every network surface: each subject through each role's connection, each bulk
                # server, each node's RPC. What has a reply is answered, the rest dropped; nothing restarts and
                # farming goes on (counted by the controllers: fuzzed farm events could inflate the view's count).
                restarts = {name: supervisor.restarts(name) for name in supervisor.program_names()}
                addresses = sorted({beat.address for beat in status.live() if beat.address})
                report, rng = FuzzReport(), random.Random(14)
                await fuzz_nats(layout, report, rng)
                await fuzz_bulk(addresses, secret, report, rng)
                await fuzz_rpc(layout.node_urls, report, rng)
                assert report.requests > 0 and report.answered == report.requests, report
                assert report.bulk_errors_answered > 0 and report.rpc_errors_answered > 0 and report.kv_writes > 0, (
                    report
                )
                accepted_by_nodes = controllers_accepted(status)
                await wait_for(
                    "farming after the fuzzing",
                    lambda: controllers_accepted(status) > accepted_by_nodes,
                    supervisor,
                    120,
                )
                assert {name: supervisor.restarts(name) for name in supervisor.program_names()} == restarts

                # The cluster's JetStream state was created replicated across the three NATS servers.
                for stream in (subjects.PLOT_JOBS.stream, f"KV_{subjects.SHARDS.name}", f"KV_{subjects.MEMBERS.name}"):
                    assert (await bus.js.stream_info(stream)).config.num_replicas == 3, stream

                # Prometheus metrics under the official farmer's names.
                client = await scrape(layout.metrics_ports["plot-client"])
                farm_id = json.loads((tmp_path / "farm" / "single_disk_farm.json").read_text())["v0"]["id"]
                assert f'subspace_farmer_farm_sectors_total{{farm_id="{farm_id}",state="Plotted"}} 2.0' in client
                assert f'subspace_farmer_farm_auditing_time_seconds_count{{farm_id="{farm_id}"}}' in client
                assert (
                    f'subspace_farmer_farm_proving_time_seconds_count{{farm_id="{farm_id}",result="Success"}}' in client
                )
                assert 'subspace_farmer_plotter_sector_plotted_counter_total{kind="cpu"}' in await scrape(
                    layout.metrics_ports["plot-server"]
                )
                assert "subspace_farmer_disk_piece_cache_capacity_used{cache_id=" in await scrape(
                    layout.metrics_ports["sharded-cache"]
                )

                # An operator's supervisorctl, from another terminal, on the supervisord `dev` runs.
                supervisorctl = (str(Path(sys.executable).parent / "supervisorctl"), "-c", str(supervisor.conf))
                code, out = await tool("status", command=supervisorctl)
                assert all(re.search(rf"(?m)^{name}\s+RUNNING", out) for name in supervisor.program_names()), out
                pid = await supervisor.pid("full-piece-sharded-cache")
                code, out = await tool("restart", "full-piece-sharded-cache", command=supervisorctl)
                assert code == 0 and "full-piece-sharded-cache: started" in out, out
                assert await supervisor.pid("full-piece-sharded-cache") not in (0, pid)
            finally:
                await observer.close()
                await bus.close()

    asyncio.run(run())
    # The farm on disk is whole: both sectors' metadata verify after all the kills.
    farm = Farm(tmp_path / "farm", 2, 8, _genesis())
    assert list(farm.plotted_indices()) == [0, 1]
    farm.close()


async def scrape(port: int) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.read().decode()

    return await asyncio.to_thread(get)


async def tool(
    *argv: str, command: tuple[str, ...] = (sys.executable, "-m", "autonomys_farmer.cli")
) -> tuple[int, str]:
    """Run `autonomys-farmer ARGV` as an operator would, without blocking the test's event loop."""
    process = await asyncio.create_subprocess_exec(
        *command, *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 180)
    return process.returncode or 0, out.decode(errors="replace")


def corrupt_one_item(path: Path) -> int:
    """Change a cached piece behind its cache's back, with a valid element checksum (as a buggy
    source would have delivered it): only verification against the segment commitment can tell."""
    with path.open("r+b") as f:
        element = bytearray(f.read(PIECE_ELEMENT_SIZE))
        key = int.from_bytes(element[:8], "little")
        element[8 + 1000] ^= 0x01
        element[-32:] = blake3_hash(bytes(element[:-32]))
        f.seek(0)
        f.write(element)
    return key


def _genesis() -> bytes:
    from autonomys_farmer.services.devnet.dev_node import genesis_hash

    return genesis_hash()
