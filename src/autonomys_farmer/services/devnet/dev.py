"""`autonomys-farmer dev`: nats-server, the dev node and every cluster component on this machine, under
real supervisord (its files rendered from the cluster layout into the base path), plotting a small farm
and farming it, with a live status view."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from autonomys_farmer.cluster.components import (
    CacheDisk,
    ComponentOptions,
    ControllerOptions,
    DevNodeOptions,
    FarmDisk,
    FullPieceCacheOptions,
    PlotClientOptions,
    PlotServerOptions,
    ProofServerOptions,
    ShardedCacheOptions,
)
from autonomys_farmer.cluster.layout import ClusterLayout, Machine, NatsServer, Program, Settings
from autonomys_farmer.cluster.roles import OPERATOR
from autonomys_farmer.commands import DevOptions
from autonomys_farmer.protocol import farmer_rpc as rpc
from autonomys_farmer.protocol.reward_signing import keypair_from_entropy, ss58_encode
from autonomys_farmer.services.deploy.render import ClusterCredentials, password_path, secret_path, this_interpreter
from autonomys_farmer.services.deploy.supervisord import (
    Supervisord,
    SupervisordError,
    free_port,
    nats_server_binary,
    supervisorctl_command,
)
from autonomys_farmer.services.files import load_kzg, write_secret
from autonomys_farmer.services.tools.cluster_status import ClusterStatus
from autonomys_farmer.services.transport.jsonrpc import JsonRpcClient, RpcError
from autonomys_farmer.services.transport.nats_bus import Bus, NatsAuth

log = logging.getLogger(__name__)

DEV_REWARD_ADDRESS = ss58_encode(keypair_from_entropy(bytes(32))[0])
DEV_SHARDED_CACHE_SIZE = "512MiB"  # the whole dev history fits
LOOPBACK = "127.0.0.1"


@dataclass
class DevLayout:
    """`dev`'s choices for a cluster on this machine (also what the cluster tests start): its ports and
    directories, described as one machine of the cluster layout and run under supervisord."""

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

    @cached_property
    def settings(self) -> Settings:
        """Everything under the base path, run by this interpreter, as supervisord's own user."""
        return Settings(
            farmer=this_interpreter(),
            nats_server=nats_server_binary(),
            log_dir=self.base / "logs",
            conf_dir=self.base / "supervisor" / "conf.d",
            secrets_dir=self.base / "secrets",
            user=None,
            kzg_parameters=self.kzg_parameters,
            backend=self.backend,
            environment=(("PYTHONUNBUFFERED", "1"),),
        )

    @cached_property
    def credentials(self) -> ClusterCredentials | None:
        """The role passwords and cluster secret: those of an earlier run of this base path, kept."""
        return ClusterCredentials.kept_in(self.settings) if self.nats_auth else None

    @property
    def nats_urls(self) -> list[str]:
        return [f"nats://{LOOPBACK}:{port}" for port in self.nats_ports]

    @property
    def nats_url(self) -> str:
        return self.nats_urls[0]

    @property
    def secrets(self) -> Path:
        """Where the NATS configs, role passwords and cluster secret live: 0700, each file 0600."""
        return self.settings.secrets_dir

    def nats_programs(self) -> list[Program]:
        """One nats-server, or a routed cluster of them (JetStream then replicates 3 ways)."""
        if self.nats_servers == 1:
            server = NatsServer("dev", LOOPBACK, self.nats_ports[0], self.base / "nats", listen_host=LOOPBACK)
            return [Program("nats-server", server)]
        servers = [
            NatsServer(f"dev-{i}", LOOPBACK, port, self.base / f"nats-{i}", route, LOOPBACK)
            for i, (port, route) in enumerate(zip(self.nats_ports, self.route_ports, strict=True))
        ]
        return [Program(f"nats-server-{i}", server) for i, server in enumerate(servers)]

    @property
    def node_urls(self) -> list[str]:
        return [f"ws://{LOOPBACK}:{port}" for port in self.node_ports]

    @property
    def node_url(self) -> str:
        return self.node_urls[0]

    def node_name(self, kind: str, node: int) -> str:
        """A node machine's program: `controller` with one node, `controller-1` with several."""
        return kind if self.nodes == 1 else f"{kind}-{node}"

    def node_dir(self, node: int) -> Path:
        return self.base / self.node_name("node", node)

    def password_file(self, role: str) -> Path:
        return password_path(self.settings, role)

    def nats_credentials(self, role: str = OPERATOR) -> NatsAuth:
        """What an in-process client (the status view, a test) connects with: the role's password file,
        written if no program of the role runs here."""
        if self.credentials is None:
            return NatsAuth()
        path = self.password_file(role)
        if not path.exists():
            write_secret(path, (self.credentials.passwords[role] + "\n").encode())
        return NatsAuth(user=role, password_file=path)

    @property
    def secret_file(self) -> Path:
        """The cluster secret for bulk TCP (mode 0600)."""
        return secret_path(self.settings)

    def component(self, name: str, options: ComponentOptions) -> Program:
        """A component's program, with its own Prometheus port."""
        port = self.metrics_ports.setdefault(name, free_port())
        return Program(name, options, metrics=f"{LOOPBACK}:{port}")

    def node_programs(self, node: int) -> list[Program]:
        """One node machine of the seed: the dev node (following the other nodes, and on a first start
        taking its history from them unless it is the first), its controller and proof server."""
        dev_node = DevNodeOptions(
            listen=f"{LOOPBACK}:{self.node_ports[node]}",
            base_path=self.node_dir(node),
            kzg_parameters=self.kzg_parameters,
            peers=tuple(url for peer, url in enumerate(self.node_urls) if peer != node),
            sync_from_peers=node > 0,
        )
        controller = ControllerOptions(
            node_rpc_url=self.node_urls[node],
            base_path=self.base / self.node_name("controller", node),
            job_ack_wait=self.job_ack_wait,
        )
        return [
            Program(self.node_name("dev-node", node), dev_node),
            self.component(self.node_name("controller", node), controller),
            self.component(self.node_name("proof-server", node), ProofServerOptions()),
        ]

    def programs(self) -> list[Program]:
        b = self.base
        cache = ShardedCacheOptions(disk=CacheDisk(str(b / "cache"), DEV_SHARDED_CACHE_SIZE))
        plot_server = PlotServerOptions(
            priority_cache=True, listen_port=self.plot_server_port, base_path=b / "plot-server"
        )
        farm = FarmDisk(str(b / "farm"), self.sectors)
        return [
            *self.nats_programs(),
            *(program for node in range(self.nodes) for program in self.node_programs(node)),
            self.component("sharded-cache", cache),
            self.component("full-piece-sharded-cache", FullPieceCacheOptions(path=b / "full-cache")),
            self.component("plot-server", plot_server),
            self.component("plot-client", PlotClientOptions(reward_address=DEV_REWARD_ADDRESS, farms=(farm,))),
        ]

    def describe(self, programs: list[Program] | None = None) -> ClusterLayout:
        """The cluster layout: this machine, running every program (or those given)."""
        machine = Machine("dev", LOOPBACK, tuple(self.programs() if programs is None else programs), LOOPBACK)
        return ClusterLayout(self.settings, (machine,))

    def supervisord(self, programs: list[Program] | None = None) -> Supervisord:
        return Supervisord(self.describe(programs), self.base, self.credentials)


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


async def _run(layout: DevLayout, status_interval: float, duration: float) -> None:
    import signal

    main = asyncio.current_task()
    assert main is not None
    stopping = False

    def stop() -> None:  # the first signal stops everything; more cannot interrupt the stopping
        nonlocal stopping
        if not stopping:
            stopping = True
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # always take the children down with us
        asyncio.get_running_loop().add_signal_handler(sig, stop)
    async with layout.supervisord():
        await _watch(layout, status_interval, duration)


async def _watch(layout: DevLayout, status_interval: float, duration: float) -> None:
    """The live view until `duration` passes (or the user stops it), then the summary."""
    from rich.live import Live

    bus = await Bus.connect(layout.nats_urls, "dev-status", auth=layout.nats_credentials())
    status = ClusterStatus()
    await status.attach(bus)
    print(f"logs in {layout.base / 'logs'}; node RPC {layout.node_url}; NATS {', '.join(layout.nats_urls)}")
    print(f"programs under supervisord: {supervisorctl_command(layout.base)} status | restart NAME")
    print(
        "metrics: "
        + ", ".join(f"{name} http://{LOOPBACK}:{port}/metrics" for name, port in layout.metrics_ports.items())
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
        minutes = (time.monotonic() - started) / 60
        print(f"\nstopped after {minutes:.1f} min: {status.summary()}; logs in {layout.base / 'logs'}")


def run_dev(options: DevOptions) -> int:
    load_kzg(options.kzg_parameters)  # fail early (a bad --kzg-parameters file) before starting anything
    layout = DevLayout(
        options.base_path.resolve(),
        options.sectors,
        options.nats_cluster_size or options.nodes,
        options.backend,
        options.kzg_parameters.resolve() if options.kzg_parameters else None,
        nodes=options.nodes,
    )
    try:
        asyncio.run(_run(layout, options.status_interval, options.duration))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except SupervisordError as e:
        raise SystemExit(f"dev: {e}") from None
    return 0
