"""`autonomys-farmer util supervisor-config CLUSTER.toml`: from one description of a cluster, the
supervisor program files and nats-server config of every machine, in the layout operators already
deploy (`/etc/supervisor/conf.d/autonomys-<component>.conf`, one plot server per GPU pinned with
`numactl -C <cores> -l` next to its GPU and given `CUDA_VISIBLE_DEVICES`).

CLUSTER.toml (every key but `name`/`host` and the component tables is optional):

    [cluster]
    farmer = "/root/autonomys/autonomys-farmer"      # the command on every machine
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

Files come out under OUT/<machine name>/etc/..., ready to be copied to each machine's root.
"""

from __future__ import annotations

import re
import secrets
import shlex
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autonomys_farmer.cluster.components import (
    CacheDisk,
    ClusterOptions,
    ComponentOptions,
    ControllerOptions,
    FarmDisk,
    FullPieceCacheOptions,
    PlotClientOptions,
    PlotServerOptions,
    ProofServerOptions,
    ShardedCacheOptions,
    UsageError,
    component_argv,
)
from autonomys_farmer.cluster.messages import CacheItemType
from autonomys_farmer.cluster.roles import OPERATOR, ROLES, nats_authorization
from autonomys_farmer.services.devnet.supervisor import nats_server_config
from autonomys_farmer.services.files import write_atomically, write_secret

CONF_DIR = Path("etc/supervisor/conf.d")
SECRETS_DIR = Path("etc/autonomys")  # per machine, 0700: the cluster secret, its roles' NATS passwords (0600)
NATS_CONF = SECRETS_DIR / "nats-server.conf"  # it holds every role's password
CLUSTER_SECRET = SECRETS_DIR / "cluster-secret"


@dataclass(frozen=True)
class ClusterCredentials:
    """The secrets a cluster's files carry: a NATS password per role and the bulk TCP cluster secret."""

    passwords: dict[str, str]
    secret: str

    @classmethod
    def generate(cls) -> ClusterCredentials:
        return cls({role: secrets.token_hex(32) for role in ROLES}, secrets.token_hex(32))


def password_path(role: str) -> Path:
    return SECRETS_DIR / f"nats-{role}.password"


def _with_role(shared: ClusterOptions, role: str) -> ClusterOptions:
    """The shared options as a program of this role runs them: its NATS user and the secrets' paths."""
    if shared.cluster_secret_file is None:
        return shared
    return replace(shared, nats_user=role, nats_password_file=Path("/") / password_path(role))


DEFAULTS: dict[str, Any] = {
    "farmer": "/root/autonomys/autonomys-farmer",
    "nats_server": "nats-server",
    "nats_port": 4222,
    "nats_cluster_port": 4248,
    "nats_store_dir": "/var/nats-data",
    "log_dir": "/var/log",
    "user": "root",
}
MACHINE_KEYS = {
    "name", "host", "nats_server", "controller", "proof_server", "sharded_cache", "full_piece_cache",
    "plot_server", "plot_client", "gpu_topology", "gpu_cpu_affinity",
}  # fmt: skip
_CPU_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


class ClusterConfigError(ValueError):
    pass


# --- CPU lists and GPU NUMA affinity -----------------------------------------------------------------


def parse_cpu_list(text: str) -> list[int]:
    """`0-47,96-143` -> the CPU numbers, as numactl and nvidia-smi write them."""
    if not _CPU_LIST.match(text):
        raise ClusterConfigError(f"invalid CPU list {text!r} (expected e.g. 0-47,96-143)")
    cpus: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def format_cpu_list(cpus: list[int]) -> str:
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
        raise ClusterConfigError("no GPU rows with a CPU affinity found in the nvidia-smi topo -m output")
    if sorted(affinity) != list(range(len(affinity))):
        raise ClusterConfigError(f"GPU rows are not GPU0..GPU{len(affinity) - 1}: {sorted(affinity)}")
    return [affinity[i] for i in range(len(affinity))]


def plot_server_cores(affinity: list[str], gpus: int, cores: int | None) -> list[list[int]]:
    """Disjoint CPU sets, one per GPU: GPUs near the same NUMA node split its CPUs in order (first GPU,
    first share), and each takes the first `cores` of its share when given."""
    if len(affinity) < gpus:
        raise ClusterConfigError(f"{gpus} GPU(s) wanted but the affinity lists only {len(affinity)}")
    groups: dict[str, list[int]] = {}
    for gpu in range(gpus):
        groups.setdefault(affinity[gpu], []).append(gpu)
    out: list[list[int]] = [[] for _ in range(gpus)]
    for cpu_list, members in groups.items():
        cpus = parse_cpu_list(cpu_list)
        share = len(cpus) // len(members)
        if share == 0 or (cores is not None and cores > share):
            raise ClusterConfigError(
                f"GPUs {members} share CPUs {cpu_list}: {share} each, fewer than the {cores or 1} wanted"
            )
        for n, gpu in enumerate(members):
            mine = cpus[n * share : (n + 1) * share]
            out[gpu] = mine[:cores] if cores is not None else mine
    return out


# --- rendering ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    name: str
    command: str
    environment: tuple[tuple[str, str], ...] = ()
    log_name: str = ""

    def render(self, cluster: dict[str, Any]) -> str:
        lines = [f"[program:{self.name}]", f"command={self.command}", "autorestart=true", f"user={cluster['user']}"]
        if self.environment:
            lines.append("environment=" + ",".join(f'{k}="{v}"' for k, v in self.environment))
        lines += [
            "redirect_stderr=true",
            "stdout_logfile_maxbytes=100MB",
            "stdout_logfile_backups=2",
            f"stdout_logfile={cluster['log_dir']}/{self.log_name or self.name}.log",
        ]
        return "\n".join(lines) + "\n"


def _conf(path: str, programs: list[Program], cluster: dict[str, Any], group: str = "") -> str:
    header = f"# {path}\n# written by autonomys-farmer util supervisor-config\n\n"
    group_text = f"[group:{group}]\nprograms={','.join(p.name for p in programs)}\n\n" if group else ""
    return header + group_text + "\n".join(p.render(cluster) for p in programs)


def render_cluster(
    config: dict[str, Any], base_dir: Path = Path("."), credentials: ClusterCredentials | None = None
) -> dict[Path, str]:
    """Every file of every machine, keyed by its path under the output directory (pure; `base_dir`
    resolves relative gpu_topology files). With `credentials`, nats-server gets one least-privilege
    user per role (cluster.roles), every program its role's user and password file, and every
    machine the cluster secret for bulk TCP and the passwords of the roles it runs."""
    cluster = {**DEFAULTS, **config.get("cluster", {})}
    unknown = set(config.get("cluster", {})) - set(DEFAULTS)
    if unknown:
        raise ClusterConfigError(f"[cluster]: unknown key(s) {', '.join(sorted(unknown))}")
    machines = config.get("machines", [])
    if not machines:
        raise ClusterConfigError("no [[machines]] described")
    names = [str(machine.get("name", "")) for machine in machines]
    for i, (name, machine) in enumerate(zip(names, machines, strict=True)):
        if not name or "host" not in machine:
            raise ClusterConfigError(f"machines[{i}] needs a name and a host")
        if unknown := set(machine) - MACHINE_KEYS:
            raise ClusterConfigError(f"machine {name}: unknown key(s) {', '.join(sorted(unknown))}")
    if len(set(names)) != len(names):
        raise ClusterConfigError(f"machine names must be unique: {names}")
    nats_hosts = [str(machine["host"]) for machine in machines if machine.get("nats_server")]
    if not nats_hosts:
        raise ClusterConfigError("no machine runs a nats-server (set nats_server = true on one or three)")
    shared = ClusterOptions(
        nats_servers=tuple(f"nats://{host}:{cluster['nats_port']}" for host in nats_hosts),
        cluster_secret_file=Path("/") / CLUSTER_SECRET if credentials else None,
    )
    files: dict[Path, str] = {}
    for machine in machines:
        files.update(_render_machine(machine, cluster, shared, nats_hosts, base_dir, credentials))
    return files


def _command(cluster: dict[str, Any], shared: ClusterOptions, options: ComponentOptions) -> str:
    """The program's command line, from the component's one description (cluster/components.py)."""
    return shlex.join([str(cluster["farmer"]), *component_argv(_with_role(shared, str(options.KIND)), options)])


def _options(machine: str, component: str, make: Any) -> Any:
    try:
        return make()
    except (UsageError, ValueError, TypeError) as e:  # every bad value is named before it reaches a machine
        raise ClusterConfigError(f"machine {machine}: {component}: {e}") from e


def _render_machine(
    machine: dict[str, Any],
    cluster: dict[str, Any],
    shared: ClusterOptions,
    nats_hosts: list[str],
    base_dir: Path,
    credentials: ClusterCredentials | None,
) -> dict[Path, str]:
    name, host = str(machine["name"]), str(machine["host"])
    root = Path(name)
    files: dict[Path, str] = {}

    def add(program_file: str, programs: list[Program], group: str = "") -> None:
        path = CONF_DIR / f"{program_file}.conf"
        files[root / path] = _conf(f"/{path}", programs, cluster, group)
        if credentials is not None:
            files[root / CLUSTER_SECRET] = credentials.secret + "\n"
            for role in ROLES:
                if f"--nats-user {role} " in " ".join(p.command for p in programs):
                    files[root / password_path(role)] = credentials.passwords[role] + "\n"

    def table(key: str) -> dict[str, Any]:
        value = machine.get(key, {})
        if not isinstance(value, dict):
            raise ClusterConfigError(f"machine {name}: {key} must be a table, got {value!r}")
        return value

    if machine.get("nats_server"):
        routes = [f"{other}:{cluster['nats_cluster_port']}" for other in nats_hosts if other != host]
        files[root / NATS_CONF] = nats_server_config(
            name,
            int(cluster["nats_port"]),
            cluster["nats_store_dir"],
            host="0.0.0.0",
            cluster_port=int(cluster["nats_cluster_port"]) if len(nats_hosts) > 1 else None,
            routes=routes,
            authorization=nats_authorization(credentials.passwords) if credentials else "",
        )
        add("nats-server", [Program("nats-server", f"{cluster['nats_server']} -c /{NATS_CONF}")])
        if credentials is not None:  # the operator's login for util tools and `cluster … status`, run here
            files[root / password_path(OPERATOR)] = credentials.passwords[OPERATOR] + "\n"
    if "controller" in machine:
        controller = table("controller")
        options = _options(name, "controller", lambda: ControllerOptions(
            node_rpc_url=str(controller.get("node_rpc_url", f"ws://{host}:9944")),
            base_path=Path(controller["base_path"]) if "base_path" in controller else None,
            tmp="base_path" not in controller,
        ))  # fmt: skip
        add("autonomys-controller", [Program("autonomys-controller", _command(cluster, shared, options))])
    if "proof_server" in machine:
        gpu = str(table("proof_server").get("gpu", 0))
        command = _command(cluster, shared, ProofServerOptions())
        add("autonomys-proof-server", [Program("autonomys-proof-server", command, (("CUDA_VISIBLE_DEVICES", gpu),))])
    if "sharded_cache" in machine:
        cache = table("sharded_cache")
        path = _required(cache, "path", name, "sharded_cache")
        options = _options(name, "sharded_cache", lambda: ShardedCacheOptions(
            item_type=CacheItemType(cache.get("item_type", CacheItemType.PIECE)),
            disk=CacheDisk.parse(str(CacheDisk(path, str(cache["size"]) if "size" in cache else None))),
        ))  # fmt: skip
        add("autonomys-sharded-cache", [Program("autonomys-sharded-cache", _command(cluster, shared, options))])
    if "full_piece_cache" in machine:
        path = _required(table("full_piece_cache"), "path", name, "full_piece_cache")
        options = FullPieceCacheOptions(path=Path(path))
        add("autonomys-full-piece", [Program("autonomys-full-piece", _command(cluster, shared, options))])
    if "plot_server" in machine:
        add("autonomys-plot-server", _plot_servers(machine, table("plot_server"), cluster, shared, base_dir),
            group="autonomys-plot-server")  # fmt: skip
    if "plot_client" in machine:
        client = table("plot_client")
        farms = client.get("farms", [])
        if not farms:
            raise ClusterConfigError(f'machine {name}: plot_client needs farms = ["path=DIR,sectors=N", ...]')
        reward = _required(client, "reward_address", name, "plot_client")
        options = _options(name, "plot_client", lambda: PlotClientOptions(
            reward_address=reward, farms=tuple(FarmDisk.parse(str(farm)) for farm in farms)
        ))  # fmt: skip
        add("autonomys-plot-client", [Program("autonomys-plot-client", _command(cluster, shared, options))])
    return files


def _plot_servers(
    machine: dict[str, Any], plot: dict[str, Any], cluster: dict[str, Any], shared: ClusterOptions, base_dir: Path
) -> list[Program]:
    name = machine["name"]
    gpus = int(plot.get("gpus", 1))
    if gpus < 1:
        raise ClusterConfigError(f"machine {name}: plot_server gpus must be >= 1, got {gpus}")
    affinity: list[str] | None = None
    if "gpu_cpu_affinity" in machine:
        affinity = [str(a) for a in machine["gpu_cpu_affinity"]]
    elif "gpu_topology" in machine:
        affinity = gpu_affinity_from_topology((base_dir / str(machine["gpu_topology"])).read_text())
    cores = plot_server_cores(affinity, gpus, plot.get("cores")) if affinity else None
    base_path = str(plot.get("base_path", "/var/plot-server"))
    port = int(plot.get("listen_port", 9966))
    programs = []
    for gpu in range(gpus):
        pin = f"numactl -C {format_cpu_list(cores[gpu])} -l " if cores else ""
        options = _options(name, "plot_server", lambda gpu=gpu: PlotServerOptions(
            priority_cache=bool(plot.get("priority_cache", True)),
            listen_port=port + gpu,
            base_path=Path(f"{base_path}/base-path-{gpu}"),
        ))  # fmt: skip
        command = pin + _command(cluster, shared, options)
        environment = [("CUDA_VISIBLE_DEVICES", str(gpu))]
        if "gpu_concurrency" in plot:
            environment.append(("GPU_CONCURRENCY", str(int(plot["gpu_concurrency"]))))
        programs.append(
            Program(f"autonomys-plot-server-{gpu}", command, tuple(environment), f"autonomys-plotter-{gpu}")
        )
    return programs


def _required(table: dict[str, Any], key: str, machine: str, component: str) -> str:
    if key not in table:
        raise ClusterConfigError(f"machine {machine}: {component} needs {key} = ...")
    return str(table[key])


def write_cluster_config(description: Path, out_dir: Path) -> list[Path]:
    """Read CLUSTER.toml, render every machine's files and write them (atomically) under out_dir."""
    try:
        config = tomllib.loads(description.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ClusterConfigError(f"{description}: {e}") from e
    written = []
    credentials = ClusterCredentials.generate()
    for relative, text in sorted(render_cluster(config, description.parent, credentials).items()):
        path = out_dir / relative
        if relative.parts[1:3] == SECRETS_DIR.parts:
            write_secret(path, text.encode())  # readable by their owner only
        else:
            write_atomically(path, text.encode())
        written.append(path)
    return written
