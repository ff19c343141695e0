"""One description of every command line that is not a cluster component's (those are in
cluster/components.py, on the same `Options` base): `dev`, the util tools, export-piece and the
benchmarks. The CLI builds its parsers from these and hands each command its typed options; the flags
they share (NATS servers and credentials, the KZG setup and the compute backend) are written once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from autonomys_farmer.cluster.components import (
    BackendOptions,
    ComputeOptions,
    CredentialOptions,
    Options,
    arg,
    nats_url,
    positive_int,
)
from autonomys_farmer.cluster.messages import CacheItemType
from autonomys_farmer.cluster.sharding import CACHE_GROUPS

DEV_BASE_PATH = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "autonomys-farmer" / "dev"


def non_negative_seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1e9:
        raise ValueError(f"expected a number of seconds >= 0, got {text}")
    return value


@dataclass(frozen=True, kw_only=True)
class NatsToolOptions(CredentialOptions):
    """A util tool's way into a running cluster: any of its NATS servers, and the credential flags."""

    nats_servers: tuple[str, ...] = arg(
        "NATS servers of the cluster (one reachable is enough; repeatable)",
        ("--nats-servers", "--nats-server"),
        parse=nats_url,
        nargs="+",
        metavar="nats://HOST:PORT",
    )


@dataclass(frozen=True, kw_only=True)
class ReinitializationCacheOptions(NatsToolOptions):
    NAME: ClassVar[str] = "reinitialization-cache"
    DESCRIPTION: ClassVar[str] = "make every cache re-scan and re-sync after a delay"

    delay: float = arg("seconds before the caches act", "--delay", default=0.0, parse=non_negative_seconds)


@dataclass(frozen=True, kw_only=True)
class ShardedCacheBenchmarkOptions(NatsToolOptions, ComputeOptions):
    NAME: ClassVar[str] = "sharded-cache-benchmark"
    DESCRIPTION: ClassVar[str] = "download N sectors' pieces from the sharded caches"

    sectors: int = arg("random sectors whose pieces are fetched per round", "--sectors", default=16,
                       parse=positive_int)  # fmt: skip
    epoch: int = arg("rounds of N sectors", "--epoch", default=1, parse=positive_int)
    cache_item_type: CacheItemType = arg(
        "the cache group asked: whole pieces or split-parity shards",
        "--cache-item-type",
        default=CacheItemType.PIECE,
        parse=CacheItemType,
        choices=list(CacheItemType),
    )
    concurrency: int = arg("sectors downloaded at once", "--concurrency", default=4, parse=positive_int)
    no_verify: bool = arg("skip the KZG check plot servers do", "--no-verify", default=False)


@dataclass(frozen=True, kw_only=True)
class VerifyPieceOptions(NatsToolOptions, ComputeOptions):
    NAME: ClassVar[str] = "verify-piece"
    DESCRIPTION: ClassVar[str] = "check every cached item against its segment commitment"

    no_repair: bool = arg("only report bad items", "--no-repair", default=False)
    cache_groups: tuple[str, ...] = arg(
        "only these cache groups (repeatable; default: all)", "--cache-group", default=(), choices=CACHE_GROUPS
    )


@dataclass(frozen=True, kw_only=True)
class SupervisorConfigOptions(Options):
    NAME: ClassVar[str] = "supervisor-config"
    DESCRIPTION: ClassVar[str] = "supervisor + nats-server files for every machine"

    description: Path = arg("the cluster's machines, GPUs and farms", parse=Path, metavar="CLUSTER.toml")
    out: Path = arg("output directory (one folder per machine)", "--out", default=Path("supervisor-config"),
                    parse=Path)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ExportPieceOptions(ComputeOptions):
    NAME: ClassVar[str] = "export-piece"
    DESCRIPTION: ClassVar[str] = "node pieces -> a full-piece-sharded-cache directory (NODE_URL)"

    node_url: str | None = arg("overrides the NODE_URL environment variable", "--node-url", default=None)
    output: Path = arg("directory to write (resumable)", "--output", default=Path("full-cache-tmp"), parse=Path)
    no_verify: bool = arg("write pieces without the KZG check", "--no-verify", default=False)


@dataclass(frozen=True, kw_only=True)
class DevOptions(ComputeOptions):
    NAME: ClassVar[str] = "dev"
    DESCRIPTION: ClassVar[str] = "nats-server, dev node and every component on this machine under supervisord, farming"

    base_path: Path = arg(
        "where everything keeps its data, supervisord's files included (default: "
        "~/.local/share/autonomys-farmer/dev, outside the checkout)",
        "--base-path",
        default=DEV_BASE_PATH,
        parse=Path,
    )
    sectors: int = arg("sectors in the farm", "--sectors", default=4, parse=positive_int)
    nats_cluster_size: int | None = arg(
        "nats-servers to run (3: a routed JetStream cluster; default: one per node machine)",
        "--nats-cluster-size",
        default=None,
        parse=positive_int,
    )
    nodes: int = arg(
        "node machines, each a dev node with its controller and proof server (and a nats-server), on one chain "
        "(the seed: 3)",
        "--nodes",
        default=1,
        parse=positive_int,
    )
    status_interval: float = arg("seconds between status view updates", "--status-interval", default=1.0,
                                 parse=float)  # fmt: skip
    duration: float = arg("stop after this many seconds (0: run until ^C)", "--duration", default=0.0,
                          parse=non_negative_seconds)  # fmt: skip

    def __post_init__(self) -> None:
        if not 0 < self.status_interval < 3600:
            raise ValueError(f"--status-interval must be between 0 and 3600 seconds, got {self.status_interval}")


@dataclass(frozen=True, kw_only=True)
class AuditBenchmarkOptions(BackendOptions):
    NAME: ClassVar[str] = "audit"
    DESCRIPTION: ClassVar[str] = "audit every plotted sector of the farms, slot after slot"

    farms: tuple[Path, ...] = arg("farm directories (as plot-client path=)", parse=Path, nargs="+",
                                  metavar="FARM_DIR")  # fmt: skip
    slots: int = arg("slots to audit", "--slots", default=10, parse=positive_int)
    json: bool = arg("print the figures as JSON", "--json", default=False)


@dataclass(frozen=True, kw_only=True)
class ProveBenchmarkOptions(ComputeOptions):
    NAME: ClassVar[str] = "prove"
    DESCRIPTION: ClassVar[str] = "read and prove winning records of a farm"

    farm: Path = arg("a farm directory (as plot-client path=)", parse=Path, metavar="FARM_DIR")
    count: int = arg("wins to prove", "--count", default=10, parse=positive_int)
    json: bool = arg("print the figures as JSON", "--json", default=False)


@dataclass(frozen=True, kw_only=True)
class GpuBenchmarkOptions(ComputeOptions):
    NAME: ClassVar[str] = "gpu"
    DESCRIPTION: ClassVar[str] = (
        "a GPU machine's first command: plotting, proving, MSM and piece verification checked byte for byte "
        "against the CPU backend (status 1 on any difference), then measured beside their targets"
    )

    records: int | None = arg("records encoded for records/s (default: 16 GPU batches)", "--records", default=None,
                              parse=positive_int)  # fmt: skip
    proofs: int = arg("proofs timed", "--proofs", default=5, parse=positive_int)
    pieces: int = arg("pieces in the verification batch", "--pieces", default=64, parse=positive_int)
    full: bool = arg("plot a whole 1000-piece sector (else estimated)", "--full", default=False)
    json: bool = arg("print the report as JSON (progress goes to stderr)", "--json", default=False)
