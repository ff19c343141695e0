"""`autonomys-farmer dev`: nats-server, the dev node and every cluster component on this machine,
under one supervisor, plotting a small farm and farming it, with a live status view."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from autonomys_farmer.cluster.components import (
    CacheDisk,
    ClusterOptions,
    ComponentOptions,
    ControllerOptions,
    DevNodeOptions,
    FarmDisk,
    FullPieceCacheOptions,
    PlotClientOptions,
    PlotServerOptions,
    ProofServerOptions,
    ShardedCacheOptions,
    component_argv,
)
from autonomys_farmer.cluster.roles import OPERATOR, ROLES, nats_authorization
from autonomys_farmer.protocol import farmer_rpc as rpc
from autonomys_farmer.protocol.reward_signing import keypair_from_entropy, ss58_encode
from autonomys_farmer.services.devnet.supervisor import (
    Program,
    Supervisor,
    free_port,
    nats_server_binary,
    nats_server_config,
)
from autonomys_farmer.services.files import load_kzg, write_secret
from autonomys_farmer.services.tools.cluster_status import ClusterStatus
from autonomys_farmer.services.transport.jsonrpc import JsonRpcClient, RpcError
from autonomys_farmer.services.transport.nats_bus import Bus, NatsAuth

log = logging.getLogger(__name__)

DEV_REWARD_ADDRESS = ss58_encode(keypair_from_entropy(bytes(32))[0])
DEV_SHARDED_CACHE_SIZE = "512MiB"  # the whole dev history fits
CLI = [sys.executable, "-m", "autonomys_farmer.cli"]


@dataclass
class DevLayout:
    """Ports and directories of a one-machine cluster (also what the cluster tests start)."""

    base: Path
    sectors: int = 4
    nats_servers: int = 1
    backend: str = "auto"
    kzg_parameters: Path | None = None
    job_ack_wait: float = 60.0
    nats_auth: bool = True  # one NATS user per role with least-privilege permissions (cluster.roles)
    nodes: int = 1  # node machines: each a dev node with its controller and proof server (the seed has 3)
    node_ports: list[int] = field(default_factory=list)
    plot_server_port: int = field(default_factory=free_port)
    nats_ports: list[int] = field(default_factory=list)
    route_ports: list[int] = field(default_factory=list)
    metrics_ports: dict[str, int] = field(default_factory=dict)  # component -> its Prometheus port

    def __post_init__(self) -> None:
        if self.nats_servers < 1 or self.nodes < 1:
            raise ValueError(f"nats_servers and nodes must be at least 1, got {self.nats_servers}, {self.nodes}")
        self.node_ports = self.node_ports or [free_port() for _ in range(self.nodes)]
        self.nats_ports = self.nats_ports or [free_port() for _ in range(self.nats_servers)]
        if self.nats_servers > 1:
            self.route_ports = self.route_ports or [free_port() for _ in range(self.nats_servers)]

    @property
    def nats_urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{port}" for port in self.nats_ports]

    @property
    def nats_url(self) -> str:
        return self.nats_urls[0]

    @property
    def secrets(self) -> Path:
        """Where the NATS configs, role passwords and cluster secret live: 0700, each file 0600."""
        return self.base / "secrets"

    def nats_programs(self) -> list[Program]:
        """One nats-server, or a routed cluster of them (JetStream then replicates 3 ways)."""
        if self.nats_servers == 1:
            conf = self.secrets / "nats.conf"
            write_secret(  # it holds every role's password
                conf,
                nats_server_config(
                    "dev", self.nats_ports[0], self.base / "nats", authorization=self.authorization()
                ).encode(),
            )
            return [Program("nats-server", [nats_server_binary(), "-c", str(conf)])]
        programs = []
        for i, (port, route_port) in enumerate(zip(self.nats_ports, self.route_ports, strict=True)):
            conf = self.secrets / f"nats-{i}.conf"
            store = self.base / f"nats-{i}"
            routes = [f"127.0.0.1:{other}" for other in self.route_ports if other != route_port]
            write_secret(
                conf,
                nats_server_config(
                    f"dev-{i}", port, store, cluster_port=route_port, routes=routes, authorization=self.authorization()
                ).encode(),
            )
            programs.append(Program(f"nats-server-{i}", [nats_server_binary(), "-c", str(conf)]))
        return programs

    @property
    def node_urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}" for port in self.node_ports]

    @property
    def node_url(self) -> str:
        return self.node_urls[0]

    def node_name(self, kind: str, node: int) -> str:
        """A node machine's program: `controller` with one node, `controller-1` with several."""
        return kind if self.nodes == 1 else f"{kind}-{node}"

    def node_dir(self, node: int) -> Path:
        return self.base / self.node_name("node", node)

    def cluster_options(self, name: str, role: str) -> ClusterOptions:
        port = self.metrics_ports.setdefault(name, free_port())
        return ClusterOptions(
            nats_servers=tuple(self.nats_urls),
            kzg_parameters=self.kzg_parameters,
            prometheus_listen_on=f"127.0.0.1:{port}",
            backend=self.backend,
            advertise_host="127.0.0.1",  # everything on loopback
            cluster_secret_file=self.secret_file,
            nats_user=role if self.nats_auth else None,
            nats_password_file=self.password_file(role) if self.nats_auth else None,
        )

    def password_file(self, role: str) -> Path:
        """The role's NATS password, made once (mode 0600) under the base directory."""
        return _secret_file(self.secrets / f"nats-{role}.password")

    def authorization(self) -> str:
        if not self.nats_auth:
            return ""
        return nats_authorization({role: self.password_file(role).read_text().strip() for role in ROLES})

    def nats_credentials(self, role: str = OPERATOR) -> NatsAuth:
        """What an in-process client (the status view, a test) connects with."""
        return NatsAuth(user=role, password_file=self.password_file(role)) if self.nats_auth else NatsAuth()

    @property
    def secret_file(self) -> Path:
        """The cluster secret for bulk TCP, made once (mode 0600) in the base directory."""
        return _secret_file(self.secrets / "cluster-secret")

    def component_program(self, name: str, options: ComponentOptions) -> Program:
        """The component's program, connecting as its kind's NATS role."""
        return Program(name, [*CLI, *component_argv(self.cluster_options(name, str(options.KIND)), options)])

    def node_programs(self, node: int) -> list[Program]:
        """One node machine of the seed: the dev node (following the other nodes, and on a first start
        taking its history from them unless it is the first), its controller and proof server."""
        options = DevNodeOptions(
            listen=f"127.0.0.1:{self.node_ports[node]}",
            base_path=self.node_dir(node),
            kzg_parameters=self.kzg_parameters,
            peers=tuple(url for peer, url in enumerate(self.node_urls) if peer != node),
            sync_from_peers=node > 0,
        )
        argv = [*CLI, "dev-node", *options.to_argv()]
        controller = ControllerOptions(
            node_rpc_url=self.node_urls[node],
            base_path=self.base / self.node_name("controller", node),
            job_ack_wait=self.job_ack_wait,
        )
        return [
            Program(self.node_name("dev-node", node), argv),
            self.component_program(self.node_name("controller", node), controller),
            self.component_program(self.node_name("proof-server", node), ProofServerOptions()),
        ]

    def programs(self) -> list[Program]:
        b = self.base
        return [
            *self.nats_programs(),
            *(program for node in range(self.nodes) for program in self.node_programs(node)),
            self.component_program(
                "sharded-cache", ShardedCacheOptions(disk=CacheDisk(str(b / "cache"), DEV_SHARDED_CACHE_SIZE))
            ),
            self.component_program("full-piece-sharded-cache", FullPieceCacheOptions(path=b / "full-cache")),
            self.component_program(
                "plot-server",
                PlotServerOptions(
                    priority_cache=True,
                    listen_port=self.plot_server_port,
                    base_path=b / "plot-server",
                ),
            ),
            self.component_program(
                "plot-client",
                PlotClientOptions(reward_address=DEV_REWARD_ADDRESS, farms=(FarmDisk(str(b / "farm"), self.sectors),)),
            ),
        ]


class NodeProgress:
    """The dev node's archiving progress (its dev-only RPC method), for the view: a first start archives
    the genesis segment for about a minute on 2 cores, and the view says so with an ETA."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client: JsonRpcClient | None = None

    async def archiving(self) -> tuple[int, int, float] | None:
        try:
            if self.client is None:
                self.client = await asyncio.wait_for(JsonRpcClient.connect(self.url), 1.0)
            progress = await asyncio.wait_for(self.client.call(rpc.DEV_ARCHIVING_PROGRESS), 1.0)
        except (OSError, TimeoutError, RpcError, ConnectionError):
            await self.close()  # the node is starting or restarting: ask again next time
            return None
        if not isinstance(progress, dict):
            return None
        return int(progress["done"]), int(progress["total"]), float(progress["elapsedSecs"])

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client = None


def _secret_file(path: Path) -> Path:
    """A random secret in a file only its owner reads (0600, in a 0700 directory), made on first use
    and kept."""
    if not path.exists():
        write_secret(path, (secrets.token_hex(32) + "\n").encode())
    return path


async def _run(layout: DevLayout, status_interval: float, duration: float) -> None:
    import signal

    from rich.live import Live

    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # always take the children down with us
        asyncio.get_running_loop().add_signal_handler(sig, main.cancel)
    env = {"PYTHONUNBUFFERED": "1"}
    supervisor = Supervisor(layout.base / "logs", env)
    for program in layout.programs():
        await supervisor.add(program)
    bus = await Bus.connect(layout.nats_urls, "dev-status", auth=layout.nats_credentials())
    status = ClusterStatus()
    await status.attach(bus)
    print(f"logs in {layout.base / 'logs'}; node RPC {layout.node_url}; NATS {', '.join(layout.nats_urls)}")
    print(
        "metrics: "
        + ", ".join(f"{name} http://127.0.0.1:{port}/metrics" for name, port in layout.metrics_ports.items())
    )
    started = time.monotonic()
    node = NodeProgress(layout.node_url)
    try:
        with Live(status.render("autonomys-farmer dev"), refresh_per_second=4) as live:
            while not duration or time.monotonic() - started < duration:
                await asyncio.sleep(status_interval)
                await status.refresh(bus)
                status.archiving = await node.archiving()
                live.update(status.render("autonomys-farmer dev"))
    finally:
        await node.close()
        await bus.close()
        await supervisor.stop_all()
        minutes = (time.monotonic() - started) / 60
        print(f"\nstopped after {minutes:.1f} min: {status.summary()}; logs in {layout.base / 'logs'}")


def run_dev(
    base_path: Path,
    kzg_parameters: str | None,
    sectors: int,
    status_interval: float,
    duration: float,
    nats_servers: int = 1,
    backend: str = "auto",
    nodes: int = 1,
) -> int:
    load_kzg(kzg_parameters)  # fail early (a bad --kzg-parameters file) before starting anything
    kzg_path = Path(kzg_parameters).resolve() if kzg_parameters else None
    layout = DevLayout(base_path.resolve(), sectors, nats_servers, backend, kzg_path, nodes=nodes)
    try:
        asyncio.run(_run(layout, status_interval, duration))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    return 0
