"""One typed description of a cluster's layout: which machine runs which programs, with which options,
on which GPU and CPUs, and where its NATS servers listen and route. `util supervisor-config` parses it
from CLUSTER.toml (cluster/layout_toml.py) and `dev` builds one for this machine; both hand it to the
one renderer of supervisor and nats-server files (services/deploy/render.py), so an operator's rack
runs exactly what `dev` and the tests run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from autonomys_farmer.cluster.components import ComponentOptions, DevNodeOptions

_CPU_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


class LayoutError(ValueError):
    """A description that cannot be deployed; the message is one line naming the key at fault."""


@dataclass(frozen=True)
class NatsServer:
    """A nats-server with JetStream; with `cluster_port`, one of a routed cluster (JetStream state then
    replicated over the servers)."""

    name: str  # server_name, unique in the cluster
    host: str  # where the cluster's members reach it
    port: int
    store_dir: Path
    cluster_port: int | None = None
    listen_host: str = "0.0.0.0"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def route(self) -> str:
        return f"{self.host}:{self.cluster_port}"


@dataclass(frozen=True)
class Gpu:
    """A GPU a program is given (CUDA_VISIBLE_DEVICES), and the CPUs near it it is pinned to (numactl)."""

    index: int
    cpus: tuple[int, ...] = ()  # () : not pinned


@dataclass(frozen=True)
class Program:
    """One supervisor program: what it runs (a cluster component, a dev node or a nats-server) and how."""

    name: str
    runs: ComponentOptions | DevNodeOptions | NatsServer
    gpu: Gpu | None = None
    gpu_concurrency: int | None = None  # GPU_CONCURRENCY
    metrics: str | None = None  # --prometheus-listen-on HOST:PORT
    log_name: str = ""  # the log file's name when not the program's
    file: str = ""  # the conf.d file holding it when not its own (`<name>.conf`)
    group: str = ""  # the supervisor group of that file's programs
    autostart: bool = True

    @property
    def role(self) -> str | None:
        """The NATS user it connects as: its component kind (a dev node and nats-server connect to none)."""
        return str(self.runs.KIND) if isinstance(self.runs, ComponentOptions) else None

    @property
    def conf_name(self) -> str:
        return self.file or self.name


@dataclass(frozen=True)
class Machine:
    name: str
    host: str
    programs: tuple[Program, ...]
    advertise_host: str | None = None  # what bulk TCP peers dial (default: the outbound address)


@dataclass(frozen=True)
class Settings:
    """What every machine shares: the commands, and where files and logs go on each machine."""

    farmer: tuple[str, ...] = ("/root/autonomys/autonomys-farmer",)
    nats_server: str = "nats-server"
    log_dir: Path = Path("/var/log")
    conf_dir: Path = Path("/etc/supervisor/conf.d")
    secrets_dir: Path = Path("/etc/autonomys")  # 0700: role passwords, the cluster secret, NATS configs
    user: str | None = "root"  # None: supervisord's own user (it cannot switch user unless root)
    kzg_parameters: Path | None = None
    backend: str = "auto"
    environment: tuple[tuple[str, str], ...] = ()  # given to every program


@dataclass(frozen=True)
class ClusterLayout:
    settings: Settings
    machines: tuple[Machine, ...]
    nats_servers: tuple[NatsServer, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = [machine.name for machine in self.machines]
        if len(set(names)) != len(names):
            raise LayoutError(f"machine names must be unique: {names}")
        for machine in self.machines:
            programs = [program.name for program in machine.programs]
            if len(set(programs)) != len(programs):
                raise LayoutError(f"machine {machine.name}: program names must be unique: {programs}")
        servers = tuple(p.runs for m in self.machines for p in m.programs if isinstance(p.runs, NatsServer))
        if not servers:
            raise LayoutError("no machine runs a nats-server (set nats_server = true on one or three)")
        if len(servers) > 1 and any(server.cluster_port is None for server in servers):
            raise LayoutError("several nats-servers need a cluster port each to route to each other")
        object.__setattr__(self, "nats_servers", servers)

    @property
    def nats_urls(self) -> tuple[str, ...]:
        return tuple(server.url for server in self.nats_servers)

    def routes(self, server: NatsServer) -> tuple[str, ...]:
        """The other servers' route addresses (none for a lone server)."""
        return tuple(other.route for other in self.nats_servers if other != server)


# --- CPU lists and GPU NUMA affinity -----------------------------------------------------------------


def parse_cpu_list(text: str) -> list[int]:
    """`0-47,96-143` -> the CPU numbers, as numactl and nvidia-smi write them."""
    if not _CPU_LIST.match(text):
        raise LayoutError(f"invalid CPU list {text!r} (expected e.g. 0-47,96-143)")
    cpus: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def format_cpu_list(cpus: list[int] | tuple[int, ...]) -> str:
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


def gpu_affinity_from_topology(text: str) -> list[str]:
    """The CPU Affinity of GPU0, GPU1, ... from `nvidia-smi topo -m` output."""
    affinity: dict[int, str] = {}
    for line in text.splitlines():
        tokens = line.split()
        if not tokens or not re.fullmatch(r"GPU\d+", tokens[0]):
            continue
        cpu_lists = [t for t in tokens[1:] if _CPU_LIST.match(t)]
        if cpu_lists:  # the first CPU list on the row is "CPU Affinity" (NUMA Affinity follows)
            affinity[int(tokens[0][3:])] = cpu_lists[0]
    if not affinity:
        raise LayoutError("no GPU rows with a CPU affinity found in the nvidia-smi topo -m output")
    if sorted(affinity) != list(range(len(affinity))):
        raise LayoutError(f"GPU rows are not GPU0..GPU{len(affinity) - 1}: {sorted(affinity)}")
    return [affinity[i] for i in range(len(affinity))]


def plot_server_cores(affinity: list[str], gpus: int, cores: int | None) -> list[list[int]]:
    """Disjoint CPU sets, one per GPU: GPUs near the same NUMA node split its CPUs in order (first GPU,
    first share), and each takes the first `cores` of its share when given."""
    if len(affinity) < gpus:
        raise LayoutError(f"{gpus} GPU(s) wanted but the affinity lists only {len(affinity)}")
    groups: dict[str, list[int]] = {}
    for gpu in range(gpus):
        groups.setdefault(affinity[gpu], []).append(gpu)
    out: list[list[int]] = [[] for _ in range(gpus)]
    for cpu_list, members in groups.items():
        cpus = parse_cpu_list(cpu_list)
        share = len(cpus) // len(members)
        if share == 0 or (cores is not None and cores > share):
            raise LayoutError(f"GPUs {members} share CPUs {cpu_list}: {share} each, fewer than the {cores or 1} wanted")
        for n, gpu in enumerate(members):
            mine = cpus[n * share : (n + 1) * share]
            out[gpu] = mine[:cores] if cores is not None else mine
    return out
