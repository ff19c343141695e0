"""`autonomys-farmer` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autonomys_farmer import commands as c
from autonomys_farmer.cluster.components import (
    COMPONENTS,
    GPU_CONCURRENCY_ENV,
    ClusterOptions,
    ComponentOptions,
    CredentialOptions,
    DevNodeOptions,
    Options,
    UsageError,
)

STATUS = "status"  # `cluster … status`: not a component, the view of the others

if TYPE_CHECKING:
    from autonomys_farmer.protocol.compute import Compute
    from autonomys_farmer.protocol.kzg import Kzg
    from autonomys_farmer.services.components.component import Component
    from autonomys_farmer.services.transport.credentials import Credentials


def _gpu_concurrency() -> int | None:
    """GPU_CONCURRENCY: records per GPU stream in flight, and the jobs (plot server) or proofs (proof
    server) worked on at once; None when unset (the CUDA backend sizes itself from the free memory)."""
    value = os.environ.get(GPU_CONCURRENCY_ENV)
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise SystemExit(f"{GPU_CONCURRENCY_ENV} must be a positive integer, got {value!r}")
    return int(value)


def _compute(choice: str) -> Compute:
    """The compute backend `--backend` names (one-line error when it cannot run here)."""
    from autonomys_farmer.backends import BackendUnavailableError, select_backend

    try:
        return select_backend(choice, _gpu_concurrency())
    except BackendUnavailableError as e:
        raise SystemExit(str(e)) from e


def _dev_node(options: DevNodeOptions) -> int:
    from autonomys_farmer.protocol.chain import CHAINS
    from autonomys_farmer.services.devnet import dev_node
    from autonomys_farmer.services.files import load_kzg

    base_path = Path(tempfile.mkdtemp(prefix="autonomys-dev-node-")) if options.tmp else options.base_path
    host, port = options.address
    kzg = load_kzg(options.kzg_parameters)
    try:
        asyncio.run(
            dev_node.serve(
                base_path, CHAINS[options.chain], _compute("cpu"), kzg, host, port,
                peers=list(options.peers), sync_from_peers=options.sync_from_peers,
            )
        )  # fmt: skip
    except KeyboardInterrupt:
        pass
    return 0


@dataclass(frozen=True)
class Built:
    """What every component builder gets: the cluster options, the NATS servers, and for those that
    compute (COMPUTES) the backend and the KZG setup."""

    cluster: ClusterOptions
    servers: list[str]
    compute: Compute | None
    kzg: Kzg | None

    def computing(self) -> tuple[Compute, Kzg]:
        assert self.compute is not None and self.kzg is not None, "a computing component without a backend"
        return self.compute, self.kzg


def _controller(options: Any, b: Built) -> Component:
    from autonomys_farmer.services.components.controller import Controller

    base = Path(tempfile.mkdtemp(prefix="autonomys-controller-")) if options.tmp else options.base_path
    return Controller(b.servers, options.node_rpc_url, base, options.job_ack_wait)


def _sharded_cache(options: Any, b: Built) -> Component:
    from autonomys_farmer.services.components.sharded_cache import ShardedCache

    disk = options.disk
    return ShardedCache(b.servers, Path(disk.path), disk.size_bytes, options.item_type, b.cluster.kzg_parameters)


def _full_piece_cache(options: Any, b: Built) -> Component:
    from autonomys_farmer.services.components.full_piece_sharded_cache import FullPieceShardedCache

    # The seed's deployments run `--tmp path=DIR` and point DIR at export-piece output: a named directory
    # is always the storage and is never deleted; only a bare --tmp gets a throw-away one.
    temporary = options.path is None
    directory = Path(tempfile.mkdtemp(prefix="autonomys-full-cache-")) if options.path is None else options.path
    return FullPieceShardedCache(b.servers, directory, temporary=temporary, kzg_parameters=b.cluster.kzg_parameters)


def _proof_server(options: Any, b: Built) -> Component:
    from autonomys_farmer.services.components.proof_server import ProofServer

    return ProofServer(b.servers, *b.computing(), _gpu_concurrency() or 1)


def _plot_server(options: Any, b: Built) -> Component:
    from autonomys_farmer.services.components.plot_server import PlotServer

    compute, kzg = b.computing()
    return PlotServer(
        b.servers, options.base_path, options.listen_port, compute, kzg, options.priority_cache,
        options.max_buffered_sectors, _gpu_concurrency() or 1,
    )  # fmt: skip


def _plot_client(options: Any, b: Built) -> Component:
    from autonomys_farmer.protocol.reward_signing import SigningError, ss58_decode
    from autonomys_farmer.services.components.plot_client import PlotClient

    try:
        reward_address = ss58_decode(options.reward_address)
    except (SigningError, ValueError) as e:
        raise SystemExit(f"plot-client: invalid --reward-address {options.reward_address!r}: {e}") from e
    farms = [(Path(farm.path), farm.sectors) for farm in options.farms]
    compute, kzg = b.computing()
    return PlotClient(
        b.servers, reward_address, farms, compute, kzg, options.max_plotting_sectors_per_farm, options.proof_timeout
    )


BUILDERS: dict[str, Callable[[Any, Built], Component]] = {
    "controller": _controller,
    "sharded-cache": _sharded_cache,
    "full-piece-sharded-cache": _full_piece_cache,
    "proof-server": _proof_server,
    "plot-server": _plot_server,
    "plot-client": _plot_client,
}  # component name (cluster.components.COMPONENTS) -> its builder


def _build_component(
    options: ComponentOptions, cluster: ClusterOptions, compute: Compute | None, credentials: Credentials
) -> Component:
    """One cluster component from its parsed options (`compute` for those that compute), holding the
    process's credentials."""
    from autonomys_farmer.services.files import load_kzg

    kzg = load_kzg(cluster.kzg_parameters) if options.COMPUTES else None
    component = BUILDERS[options.NAME](options, Built(cluster, list(cluster.nats_servers), compute, kzg))
    component.advertise_host = cluster.advertise_host
    component.credentials = credentials
    return component


def _cluster(args: argparse.Namespace) -> int:
    """Several components may share a process: `controller ... -- plot-server ...`."""
    cluster = ClusterOptions.from_namespace(args)
    if args.component == STATUS:
        return _cluster_status(list(cluster.nats_servers), args.rest, _credentials(cluster))
    groups: list[list[str]] = [[]]
    for word in [args.component, *args.rest]:
        if word == "--":
            groups.append([])
        else:
            groups[-1].append(word)
    parsed = []
    for group in groups:
        if not group or group[0] not in COMPONENTS:
            raise SystemExit(f"unknown cluster component {group[:1]}; expected one of {', '.join(COMPONENTS)}")
        parsed.append(COMPONENTS[group[0]].parse(group[1:], prog=f"autonomys-farmer cluster {group[0]}"))
    credentials = _credentials(cluster)
    compute = _compute(cluster.backend) if any(options.COMPUTES for options in parsed) else None
    components = [_build_component(options, cluster, compute, credentials) for options in parsed]
    if cluster.prometheus_listen_on:
        from autonomys_farmer.cluster.components import split_host_port
        from autonomys_farmer.services.metrics import serve_metrics

        serve_metrics(split_host_port(cluster.prometheus_listen_on), components)

    async def run_all() -> None:
        await asyncio.gather(*(c.run() for c in components))

    try:
        asyncio.run(run_all())
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:  # a component failed; it logged why, and its supervisor restarts it
        raise SystemExit(str(e)) from None
    return 0


def _credentials(options: CredentialOptions) -> Credentials:
    """The NATS login and TLS, and the cluster secret, from `cluster`'s or a util tool's options: one
    value, handed to what connects."""
    from autonomys_farmer.services.transport.credentials import Credentials, CredentialsError
    from autonomys_farmer.services.transport.nats_bus import NatsAuth

    nats = NatsAuth(
        user=options.nats_user,
        password_file=options.nats_password_file,
        token_file=options.nats_token_file,
        creds_file=options.nats_creds,
        nkey_seed_file=options.nats_nkey_seed,
        tls_ca=options.nats_tls_ca,
        tls_cert=options.nats_tls_cert,
        tls_key=options.nats_tls_key,
    )
    try:
        return Credentials(nats, Credentials.read_secret(options.cluster_secret_file))
    except CredentialsError as e:
        raise SystemExit(f"autonomys-farmer: {e}") from None


def _cluster_status(servers: list[str], argv: list[str], credentials: Credentials) -> int:
    from autonomys_farmer.services.tools.cluster_status import watch
    from autonomys_farmer.services.transport.nats_bus import NatsConfigError

    parser = argparse.ArgumentParser(prog=f"autonomys-farmer cluster {STATUS}", description="the live cluster view")
    parser.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")
    options = parser.parse_args(argv)
    try:
        return asyncio.run(watch(servers, options.json, credentials.nats))
    except KeyboardInterrupt:
        return 0
    except NatsConfigError as e:
        raise SystemExit(f"cluster status: {e}") from None


def _reinitialization_cache(args: c.ReinitializationCacheOptions) -> int:
    from autonomys_farmer.services.tools.cache_tools import reinitialize_caches

    try:
        members = asyncio.run(reinitialize_caches(list(args.nats_servers), args.delay, _credentials(args)))
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"reinitialization-cache: {e}") from e
    print(f"re-initialisation in {args.delay:g}s requested; {members} cache instance(s) in the shard maps")
    return 0


def _sharded_cache_benchmark(args: c.ShardedCacheBenchmarkOptions) -> int:
    from autonomys_farmer.services.files import load_kzg
    from autonomys_farmer.services.tools.cache_tools import sharded_cache_benchmark

    credentials = _credentials(args)
    kzg = load_kzg(args.kzg_parameters)
    try:
        epochs = asyncio.run(
            sharded_cache_benchmark(
                list(args.nats_servers),
                _compute(args.backend),
                kzg,
                args.sectors,
                args.epoch,
                args.cache_item_type,
                args.concurrency,
                not args.no_verify,
                report=lambda epoch: print(epoch.summary(), flush=True),
                credentials=credentials,
            )
        )
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"sharded-cache-benchmark: {e}") from e
    return 1 if any(e.missing or e.invalid for e in epochs) else 0


def _verify_piece(args: c.VerifyPieceOptions) -> int:
    from rich.progress import Progress

    from autonomys_farmer.services.files import load_kzg
    from autonomys_farmer.services.tools.cache_tools import CACHE_GROUPS, verify_pieces

    credentials = _credentials(args)
    kzg = load_kzg(args.kzg_parameters)
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("verifying cached items", total=None)
            report = asyncio.run(
                verify_pieces(
                    list(args.nats_servers),
                    _compute(args.backend),
                    kzg,
                    repair=not args.no_repair,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                    groups=list(args.cache_groups) or CACHE_GROUPS,
                    credentials=credentials,
                )
            )
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"verify-piece: {e}") from e
    print(report.summary())
    return 1 if report.unrepairable or report.unreachable or (report.bad and args.no_repair) else 0


def _supervisor_config(args: c.SupervisorConfigOptions) -> int:
    from autonomys_farmer.cluster.layout import LayoutError
    from autonomys_farmer.services.tools.supervisor_config import write_cluster_config

    try:
        written = write_cluster_config(args.description, args.out)
    except (LayoutError, OSError) as e:
        raise SystemExit(f"supervisor-config: {e}") from e
    for path in written:
        print(path)
    return 0


def _export_piece(args: c.ExportPieceOptions) -> int:
    from rich.progress import Progress

    from autonomys_farmer.protocol.pieces import Piece, are_pieces_valid
    from autonomys_farmer.services.files import load_kzg
    from autonomys_farmer.services.tools.export_piece import NODE_URL_ENV, export_pieces

    node_url = args.node_url or os.environ.get(NODE_URL_ENV)
    if not node_url:
        raise SystemExit(f"export-piece: set {NODE_URL_ENV}=http://HOST:9944 (or --node-url)")
    verifier = None
    if not args.no_verify:
        kzg, compute = load_kzg(args.kzg_parameters), _compute(args.backend)

        def verifier(triples: Sequence[tuple[Piece, bytes, int]]) -> list[bool]:
            return are_pieces_valid(compute, kzg, triples, os.urandom(32))

    output = args.output
    try:
        with Progress() as bar:
            task = bar.add_task(f"exporting pieces to {output}", total=None)
            result = asyncio.run(
                export_pieces(
                    node_url, output, lambda done, total: bar.update(task, completed=done, total=total), verifier
                )
            )
    except (ValueError, ConnectionError) as e:
        raise SystemExit(f"export-piece: {e}") from e
    print(result.summary(output))
    return 1 if result.unavailable or result.invalid else 0


def export_piece_main() -> int:
    """`autonomys-export-piece`: the operators' own command for `autonomys-farmer export-piece`."""
    return main(["export-piece", *sys.argv[1:]])


def _benchmark_audit(args: c.AuditBenchmarkOptions) -> int:
    from autonomys_farmer.services.tools import farm_benchmark

    compute = _compute(args.backend)
    return _print_figures(
        "audit", args.json, lambda: farm_benchmark.benchmark_audit(compute, list(args.farms), args.slots)
    )


def _benchmark_prove(args: c.ProveBenchmarkOptions) -> int:
    from autonomys_farmer.services.files import load_kzg
    from autonomys_farmer.services.tools import farm_benchmark

    compute, kzg = _compute(args.backend), load_kzg(args.kzg_parameters)
    return _print_figures(
        "prove", args.json, lambda: farm_benchmark.benchmark_prove(compute, kzg, args.farm, args.count)
    )


def _print_figures(what: str, as_json: bool, measure: Callable[[], Any]) -> int:
    import json

    from autonomys_farmer.services.storage.farm import FarmError
    from autonomys_farmer.services.tools import farm_benchmark

    try:
        figures = measure()
    except FarmError as e:
        raise SystemExit(f"benchmark {what}: {e}") from None
    print(json.dumps(farm_benchmark.as_json(figures)) if as_json else "\n".join(figures.lines()))
    return 0


def _benchmark_gpu(args: c.GpuBenchmarkOptions) -> int:
    """Self-check against the CPU backend, then figures; status 1 when the backend differs."""
    import json

    from autonomys_farmer.backends.cpu.backend import CpuBackend
    from autonomys_farmer.services.files import load_kzg
    from autonomys_farmer.services.tools import compute_benchmark

    compute = _compute(args.backend)
    kzg = load_kzg(args.kzg_parameters)
    reference = compute if compute.name == "cpu" else CpuBackend()
    options = compute_benchmark.Options(args.records, args.proofs, args.pieces, args.full)

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    report = compute_benchmark.benchmark(compute, reference, kzg, options, say)
    print(json.dumps(report.as_json()) if args.json else "\n".join(report.lines()))
    return 0 if report.identical else 1


def _dev(options: c.DevOptions) -> int:
    from autonomys_farmer.services.devnet.dev import run_dev

    return run_dev(options)


Command = tuple[type[Options], Callable[[Any], int]]
COMMANDS: dict[str, Command] = {
    "dev-node": (DevNodeOptions, _dev_node),
    "export-piece": (c.ExportPieceOptions, _export_piece),
    "dev": (c.DevOptions, _dev),
}
UTIL: dict[str, Command] = {
    "reinitialization-cache": (c.ReinitializationCacheOptions, _reinitialization_cache),
    "sharded-cache-benchmark": (c.ShardedCacheBenchmarkOptions, _sharded_cache_benchmark),
    "verify-piece": (c.VerifyPieceOptions, _verify_piece),
    "supervisor-config": (c.SupervisorConfigOptions, _supervisor_config),
}
BENCHMARKS: dict[str, Command] = {
    "audit": (c.AuditBenchmarkOptions, _benchmark_audit),
    "prove": (c.ProveBenchmarkOptions, _benchmark_prove),
    "gpu": (c.GpuBenchmarkOptions, _benchmark_gpu),
}  # command name -> its one description and what runs it


def _add_commands(sub: Any, commands: dict[str, Command]) -> None:
    for name, (options, run) in commands.items():
        parser = sub.add_parser(name, help=options.DESCRIPTION, description=options.DESCRIPTION)
        options.add_arguments(parser)
        parser.set_defaults(run=run, options=options, parser=parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autonomys-farmer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('autonomys-farmer')}")
    parser.add_argument(
        "--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO", help="least severity logged"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cluster = sub.add_parser(
        "cluster",
        help="run cluster components (NATS for control, TCP for bulk data)",
        description="Run one or more cluster components in this process; chain them with `--`, e.g. "
        "`cluster --nats-server nats://10.0.0.1:4222 controller --tmp -- proof-server`. "
        "`cluster COMPONENT --help` describes a component's own options. "
        "`cluster --nats-server … status [--json]` shows any running cluster live.",
    )
    ClusterOptions.add_arguments(cluster)
    cluster.add_argument(
        "component",
        choices=[*COMPONENTS, STATUS],
        help="; ".join(f"{name}: {options.DESCRIPTION}" for name, options in COMPONENTS.items())
        + f"; {STATUS}: the live view of the cluster (members, farms, plot and proof servers, caches, "
        "solutions) from what its members publish; `status --json` prints one snapshot",
    )
    cluster.add_argument(
        "rest", nargs=argparse.REMAINDER, help="the component's options, then `--` and the next component"
    )
    cluster.set_defaults(run=_cluster, options=None)
    _add_commands(sub, COMMANDS)
    util = sub.add_parser("util", help="operator tools for a running cluster")
    _add_commands(util.add_subparsers(dest="tool", required=True), UTIL)
    benchmark = sub.add_parser(
        "benchmark",
        help="the plot client's audit and proving on existing farms (read-only, beside a farmer); a backend's "
        "self-check and figures (gpu)",
    )
    _add_commands(benchmark.add_subparsers(dest="what", required=True), BENCHMARKS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from autonomys_farmer.protocol.kzg import KzgError

    options: Options | argparse.Namespace = args
    if args.options is not None:  # a described command: its typed options (a bad value: one usage line)
        try:
            options = args.options.from_namespace(args)
        except UsageError as e:
            args.parser.error(str(e))
    try:
        return int(args.run(options))
    except KzgError as e:  # a bad --kzg-parameters file, for every command
        raise SystemExit(f"autonomys-farmer: {e}") from None
    except OSError as e:  # a path that cannot be created or opened, for every command
        where = f"{e.filename}: " if e.filename else ""
        raise SystemExit(f"autonomys-farmer: {where}{e.strerror or e}") from None


if __name__ == "__main__":
    sys.exit(main())
