"""CLUSTER.toml -> ClusterLayout, parsed once: every key is read with the type it must have and every
error is one line naming the key and what was expected.

    [cluster]                                          # every key optional
    farmer = "/root/autonomys/autonomys-farmer"        # the command on every machine
    nats_server = "/usr/local/bin/nats-server"
    nats_port = 4222
    nats_cluster_port = 4248
    nats_store_dir = "/var/nats-data"
    log_dir = "/var/log"
    user = "root"

    [[machines]]
    name = "node-1"
    host = "192.168.1.1"
    nats_server = true
    controller = { node_rpc_url = "ws://192.168.1.1:9944" }
    proof_server = { gpu = 0 }

    [[machines]]
    name = "plotter-1"
    host = "192.168.1.4"
    gpu_topology = "plotter-1-topo.txt"   # saved `nvidia-smi topo -m` (or gpu_cpu_affinity = ["0-47", ...])
    sharded_cache = { path = "/var/autonomys-sharded-cache", size = "200GiB" }
    full_piece_cache = { path = "/var/autonomys-full-piece" }
    plot_server = { gpus = 4, base_path = "/var/plot-server", listen_port = 9966, cores = 32 }

    [[machines]]
    name = "storage-1"
    host = "192.168.1.6"
    plot_client = { reward_address = "st...", farms = ["path=/mnt/nvme0n1,sectors=8000"] }
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from autonomys_farmer.cluster.components import (
    CacheDisk,
    ControllerOptions,
    FarmDisk,
    FullPieceCacheOptions,
    PlotClientOptions,
    PlotServerOptions,
    ProofServerOptions,
    ShardedCacheOptions,
    UsageError,
)
from autonomys_farmer.cluster.layout import (
    ClusterLayout,
    Gpu,
    LayoutError,
    Machine,
    NatsServer,
    Program,
    Settings,
    gpu_affinity_from_topology,
    plot_server_cores,
)
from autonomys_farmer.cluster.messages import CacheItemType

T = TypeVar("T")
_MISSING: Any = object()
TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a table"}


class Table:
    """A TOML table read key by key: a missing required key, a value of the wrong type and a key nobody
    reads are each one line naming the key."""

    def __init__(self, where: str, data: object, keys: set[str]) -> None:
        if not isinstance(data, dict):
            raise LayoutError(f"{where}: expected a table, got {data!r}")
        if unknown := set(data) - keys:
            raise LayoutError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        self.where, self.data = where, data

    def get(self, key: str, kind: type[T], default: T = _MISSING) -> T:
        if key not in self.data:
            if default is _MISSING:
                raise LayoutError(f"{self.where}.{key}: required, expected {TYPE_NAMES[kind]}")
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise LayoutError(f"{self.where}.{key}: expected {TYPE_NAMES[kind]}, got {value!r}")
        return value

    def strings(self, key: str) -> list[str]:
        values = self.get(key, list, [])
        if not all(isinstance(v, str) for v in values):
            raise LayoutError(f"{self.where}.{key}: expected a list of strings, got {values!r}")
        return values

    def table(self, key: str, keys: set[str]) -> Table | None:
        return Table(f"{self.where}.{key}", self.data[key], keys) if key in self.data else None

    def options(self, make: Callable[[], T]) -> T:
        """A component's options from this table; a value they refuse is named with the table."""
        try:
            return make()
        except LayoutError:
            raise
        except (UsageError, ValueError) as e:
            raise LayoutError(f"{self.where}: {e}") from e


CLUSTER_KEYS = {"farmer", "nats_server", "nats_port", "nats_cluster_port", "nats_store_dir", "log_dir", "user"}
MACHINE_KEYS = {
    "name", "host", "nats_server", "controller", "proof_server", "sharded_cache", "full_piece_cache",
    "plot_server", "plot_client", "gpu_topology", "gpu_cpu_affinity",
}  # fmt: skip


def parse_cluster(config: dict[str, Any], base_dir: Path = Path(".")) -> ClusterLayout:
    """The layout CLUSTER.toml describes (`base_dir` resolves relative gpu_topology files), in the seed's
    program names: `autonomys-<component>`, one `autonomys-plot-server-N` per GPU."""
    top = Table("CLUSTER.toml", config, {"cluster", "machines"})
    cluster = Table("cluster", config.get("cluster", {}), CLUSTER_KEYS)
    settings = Settings(
        farmer=(cluster.get("farmer", str, Settings.farmer[0]),),
        nats_server=cluster.get("nats_server", str, Settings.nats_server),
        log_dir=Path(cluster.get("log_dir", str, str(Settings.log_dir))),
        user=cluster.get("user", str, "root"),
    )
    nats_port = cluster.get("nats_port", int, 4222)
    cluster_port = cluster.get("nats_cluster_port", int, 4248)
    store_dir = Path(cluster.get("nats_store_dir", str, "/var/nats-data"))
    entries = top.get("machines", list, [])
    if not entries:
        raise LayoutError("no [[machines]] described")
    tables = [Table(f"machines[{i}]", entry, MACHINE_KEYS) for i, entry in enumerate(entries)]
    for table in tables:
        if "name" not in table.data or "host" not in table.data:
            raise LayoutError(f"{table.where} needs a name and a host")
    routed = sum(bool(table.data.get("nats_server")) for table in tables) > 1

    def nats_server(name: str, host: str) -> NatsServer:
        return NatsServer(name, host, nats_port, store_dir, cluster_port if routed else None)

    return ClusterLayout(settings, tuple(_machine(table, nats_server, base_dir) for table in tables))


def _machine(machine: Table, nats_server: Callable[[str, str], NatsServer], base_dir: Path) -> Machine:
    name, host = machine.get("name", str), machine.get("host", str)
    machine.where = f"machine {name}"
    programs: list[Program] = []
    if machine.get("nats_server", bool, False):
        programs.append(Program("nats-server", nats_server(name, host)))
    if controller := machine.table("controller", {"node_rpc_url", "base_path"}):
        base_path = controller.get("base_path", str, "")
        controlling = controller.options(lambda: ControllerOptions(
            node_rpc_url=controller.get("node_rpc_url", str, f"ws://{host}:9944"),
            base_path=Path(base_path) if base_path else None,
            tmp=not base_path,
        ))  # fmt: skip
        programs.append(Program("autonomys-controller", controlling))
    if proof := machine.table("proof_server", {"gpu"}):
        programs.append(Program("autonomys-proof-server", ProofServerOptions(), Gpu(proof.get("gpu", int, 0))))
    if cache := machine.table("sharded_cache", {"path", "size", "item_type"}):
        size = cache.get("size", str, "")
        caching = cache.options(lambda: ShardedCacheOptions(
            item_type=CacheItemType(cache.get("item_type", str, str(CacheItemType.PIECE))),
            disk=CacheDisk(cache.get("path", str), size or None),
        ))  # fmt: skip
        programs.append(Program("autonomys-sharded-cache", caching))
    if full := machine.table("full_piece_cache", {"path"}):
        programs.append(Program("autonomys-full-piece", FullPieceCacheOptions(path=Path(full.get("path", str)))))
    if plot := machine.table("plot_server", {
        "gpus", "base_path", "listen_port", "cores", "priority_cache", "gpu_concurrency",
    }):  # fmt: skip
        programs += _plot_servers(machine, plot, base_dir)
    if client := machine.table("plot_client", {"reward_address", "farms"}):
        farms = client.strings("farms")
        if not farms:
            raise LayoutError(f'{client.where}.farms: required, expected ["path=DIR,sectors=N", ...]')
        farming = client.options(lambda: PlotClientOptions(
            reward_address=client.get("reward_address", str), farms=tuple(FarmDisk.parse(farm) for farm in farms)
        ))  # fmt: skip
        programs.append(Program("autonomys-plot-client", farming))
    return Machine(name, host, tuple(programs))


def _plot_servers(machine: Table, plot: Table, base_dir: Path) -> list[Program]:
    """One plot server per GPU, pinned to a share of the CPUs near it when the affinity is known."""
    gpus = plot.get("gpus", int, 1)
    if gpus < 1:
        raise LayoutError(f"{plot.where}.gpus: expected at least 1, got {gpus}")
    affinity: list[str] | None = None
    if "gpu_cpu_affinity" in machine.data:
        affinity = machine.strings("gpu_cpu_affinity")
    elif "gpu_topology" in machine.data:
        topology = base_dir / machine.get("gpu_topology", str)
        try:
            affinity = gpu_affinity_from_topology(topology.read_text())
        except OSError as e:
            raise LayoutError(f"{machine.where}.gpu_topology: cannot read {topology}: {e.strerror}") from None
    cores = plot.get("cores", int, 0) or None
    shares = plot_server_cores(affinity, gpus, cores) if affinity else [[] for _ in range(gpus)]
    base_path = plot.get("base_path", str, "/var/plot-server")
    port = plot.get("listen_port", int, 9966)
    concurrency = plot.get("gpu_concurrency", int, 0) or None
    priority_cache = plot.get("priority_cache", bool, True)

    def plot_server(gpu: int) -> PlotServerOptions:
        return PlotServerOptions(
            priority_cache=priority_cache, listen_port=port + gpu, base_path=Path(f"{base_path}/base-path-{gpu}")
        )

    programs = []
    for gpu in range(gpus):
        options = plot.options(functools.partial(plot_server, gpu))
        programs.append(Program(
            f"autonomys-plot-server-{gpu}", options, Gpu(gpu, tuple(shares[gpu])), concurrency,
            log_name=f"autonomys-plotter-{gpu}", file="autonomys-plot-server", group="autonomys-plot-server",
        ))  # fmt: skip
    return programs
