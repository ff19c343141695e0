"""One description of every cluster component's command line: its options as a frozen dataclass whose
fields say how they are spelled, parsed and rendered. The CLI parses with it, `autonomys-farmer dev` and
`util supervisor-config` render command lines from it, so the three never disagree.

    autonomys-farmer cluster [CLUSTER OPTIONS] <component> [COMPONENT OPTIONS] [-- <component> ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from autonomys_farmer.cluster.messages import CacheItemType, ComponentKind

O = TypeVar("O", bound="Options")
BACKEND_CHOICES = ("auto", "cpu", "cuda")
GPU_CONCURRENCY_ENV = "GPU_CONCURRENCY"  # records per GPU stream, and jobs or proofs at once
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?)B?$", re.IGNORECASE)


class UsageError(ValueError):
    """A command-line value that does not make sense (reported as a usage error, exit status 2)."""


def arg(
    help: str,
    flag: str | tuple[str, ...] | None = None,
    *,
    default: Any = dataclasses.MISSING,
    parse: Callable[[str], Any] | None = None,
    render: Callable[[Any], str] = str,
    metavar: str | None = None,
    nargs: str | None = None,
    choices: Sequence[Any] | None = None,
    explicit: bool = False,
) -> Any:
    """A dataclass field that is a command-line option (`flag`, or its spellings, the first rendered) or
    positional argument (no flag). Rendered command lines leave out options at their default, unless
    `explicit`."""
    meta = {
        "help": help,
        "flag": (flag,) if isinstance(flag, str) else flag,
        "parse": parse,
        "render": render,
        "metavar": metavar,
        "nargs": nargs,
        "choices": choices,
        "explicit": explicit,
    }
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


# --- values inside arguments -------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """Bytes from `10GB`, `2TiB`, `4T` or plain bytes (decimal units, binary with `i`)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise UsageError(f"invalid size {text!r} (examples: 200GiB, 10GB, 1048712)")
    number, unit, binary = match.groups()
    power = "KMGTP".find(unit.upper()) + 1 if unit else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


def parse_key_values(text: str, allowed: tuple[str, ...], required: tuple[str, ...] = ("path",)) -> dict[str, str]:
    """`path=DIR,size=...`: comma-separated key=value pairs; a value may contain '='."""
    values: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not value:
            raise UsageError(f"invalid option {part!r} in {text!r}: expected key=value")
        if key not in allowed:
            raise UsageError(f"unknown option {key!r} in {text!r}; allowed: {', '.join(allowed)}")
        values[key] = value
    for key in required:
        if key not in values:
            raise UsageError(f"{text!r} lacks {key}=")
    return values


@dataclass(frozen=True)
class CacheDisk:
    """`path=DIR[,size=SIZE]` of a sharded cache (no size: the whole disk), as the operator spelled it."""

    path: str
    size: str | None = None

    def __post_init__(self) -> None:
        _ = self.size_bytes  # a bad size fails here, however the disk was described

    @property
    def size_bytes(self) -> int | None:
        return None if self.size is None else parse_size(self.size)

    @classmethod
    def parse(cls, text: str) -> CacheDisk:
        values = parse_key_values(text, ("path", "size"))
        return cls(values["path"], values.get("size"))

    def __str__(self) -> str:
        return f"path={self.path}" + (f",size={self.size}" if self.size is not None else "")


@dataclass(frozen=True)
class FarmDisk:
    """`path=DIR,sectors=N` of a plot client's farm, as the operator spelled it."""

    path: str
    sectors: int

    @classmethod
    def parse(cls, text: str) -> FarmDisk:
        values = parse_key_values(text, ("path", "sectors"), ("path", "sectors"))
        if not values["sectors"].isdigit() or int(values["sectors"]) < 1:
            raise UsageError(f"sectors must be a positive integer in {text!r}")
        return cls(values["path"], int(values["sectors"]))

    def __str__(self) -> str:
        return f"path={self.path},sectors={self.sectors}"


def parse_path_option(text: str) -> Path:
    return Path(parse_key_values(text, ("path",))["path"])


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise UsageError(f"expected a positive integer, got {text!r}")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise UsageError(f"{text} is not a TCP port")
    return value


def positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < 1e6:
        raise UsageError(f"expected a positive number of seconds, got {text}")
    return value


def split_host_port(text: str) -> tuple[str, int]:
    """(host, port) from HOST:PORT (no host: 127.0.0.1)."""
    host, sep, number = text.rpartition(":")
    if not sep or not number.isdigit() or not 0 < int(number) < 65536:
        raise UsageError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(number)


def host_port(text: str) -> str:
    split_host_port(text)
    return text


def ws_url(text: str) -> str:
    if not text.startswith(("ws://", "wss://")) or not text.split("://", 1)[1]:
        raise UsageError(f"expected ws://HOST:PORT, got {text!r}")
    return text


# --- the descriptions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Options:
    """Base of a command-line description: argparse from the fields, and back to a command line."""

    NAME: ClassVar[str]
    DESCRIPTION: ClassVar[str]

    @classmethod
    def parser(cls, prog: str = "") -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=prog or cls.NAME, description=cls.DESCRIPTION)
        cls.add_arguments(parser)
        return parser

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            meta = f.metadata
            kwargs: dict[str, Any] = {"help": meta["help"], "dest": f.name}
            if hints[f.name] is bool:
                parser.add_argument(*meta["flag"], action="store_true", **kwargs)
                continue
            if meta["parse"] is not None:
                kwargs["type"] = _argparse_type(meta["parse"])
            for key in ("metavar", "nargs", "choices"):
                if meta[key] is not None:
                    kwargs[key] = meta[key]
            if meta["flag"] is None:
                del kwargs["dest"]
                if f.default is not dataclasses.MISSING and meta["nargs"] is None:
                    kwargs["nargs"] = "?"
                    kwargs["default"] = f.default
                parser.add_argument(f.name, **kwargs)
            else:
                if f.default is dataclasses.MISSING:
                    kwargs["required"] = True
                else:
                    kwargs["default"] = f.default
                if typing.get_origin(hints[f.name]) is tuple:  # repeatable (argparse adds to a fresh list)
                    kwargs["action"] = "extend" if meta["nargs"] == "+" else "append"
                    kwargs.pop("default", None)
                parser.add_argument(*meta["flag"], **kwargs)

    @classmethod
    def parse(cls: type[O], argv: Sequence[str], prog: str = "") -> O:
        """Options from a command line; a bad one exits with a one-line usage error (status 2)."""
        parser = cls.parser(prog)
        namespace = parser.parse_args(list(argv))
        try:
            return cls.from_namespace(namespace)
        except UsageError as e:
            parser.error(str(e))

    @classmethod
    def from_namespace(cls: type[O], namespace: argparse.Namespace) -> O:
        values = {}
        for f in dataclasses.fields(cls):
            value = getattr(namespace, f.name)
            if value is None and isinstance(f.default, tuple):  # a repeatable option given no time
                value = f.default
            values[f.name] = tuple(value) if isinstance(value, list) else value
        try:
            return cls(**values)
        except (TypeError, ValueError) as e:
            raise UsageError(str(e)) from e

    def to_argv(self) -> list[str]:
        """The command line that parses back into these options (defaults left out)."""
        flags: list[str] = []
        positionals: list[str] = []
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if meta["flag"] is None:
                values = value if isinstance(value, tuple) else () if value is None else (value,)
                positionals += [meta["render"](v) for v in values]
            elif hints[f.name] is bool:
                flags += [meta["flag"][0]] if value else []
            elif value is not None and (value != f.default or meta["explicit"]):
                for v in value if isinstance(value, tuple) else (value,):
                    flags += [meta["flag"][0], meta["render"](v)]
        return [*flags, *positionals]


NATS_SCHEMES = ("nats", "tls", "ws", "wss")


def nats_url(text: str) -> str:
    """A NATS server address as operators write it: nats://HOST:PORT (or tls://, ws://, wss://;
    user:password@ or token@ before the host). Anything else is a usage error, never a silent wait."""
    url = urlsplit(text)
    if url.scheme not in NATS_SCHEMES or not url.hostname:
        raise ValueError(f"{text!r}: expected nats://HOST:PORT")
    try:
        url.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535") from None
    return text


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse reports ValueError/TypeError raised by a type as `invalid <type> value`: keep the reason."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, TypeError) as e:
            raise argparse.ArgumentTypeError(str(e) or f"invalid value {text!r}") from e

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


@dataclass(frozen=True, kw_only=True)
class CredentialOptions(Options):
    """How a process proves itself to the cluster: its NATS login and TLS, and the cluster secret for
    bulk TCP. Written once: `cluster` and every util tool that talks to the cluster take these flags."""

    NAME: ClassVar[str] = "autonomys-farmer"
    DESCRIPTION: ClassVar[str] = "credentials"

    nats_user: str | None = arg("NATS user name (its role's user)", "--nats-user", default=None, metavar="USER")
    nats_password_file: Path | None = arg(
        "file holding the NATS user's password", "--nats-password-file", default=None, parse=Path, metavar="PATH"
    )
    nats_token_file: Path | None = arg(
        "file holding a NATS token", "--nats-token-file", default=None, parse=Path, metavar="PATH"
    )
    nats_creds: Path | None = arg("NATS .creds file (JWT and NKey)", "--nats-creds", default=None, parse=Path)
    nats_nkey_seed: Path | None = arg("NATS NKey seed file", "--nats-nkey-seed", default=None, parse=Path)
    nats_tls_ca: Path | None = arg("CA certificate for NATS over TLS", "--nats-tls-ca", default=None, parse=Path)
    nats_tls_cert: Path | None = arg("client certificate for NATS TLS", "--nats-tls-cert", default=None, parse=Path)
    nats_tls_key: Path | None = arg("client key for NATS TLS", "--nats-tls-key", default=None, parse=Path)
    cluster_secret_file: Path | None = arg(
        "file holding the cluster's shared secret: bulk TCP peers prove to each other that they hold it "
        "before anything else (default: none, and a warning)",
        "--cluster-secret-file",
        default=None,
        parse=Path,
        metavar="PATH",
    )


@dataclass(frozen=True, kw_only=True)
class KzgOptions(Options):
    """The KZG setup, for every command that commits, opens or verifies."""

    kzg_parameters: Path | None = arg(
        "eth-public-parameters.bin to use (checked by SHA-256); default: the copy in the package",
        "--kzg-parameters",
        default=None,
        parse=Path,
    )


@dataclass(frozen=True, kw_only=True)
class BackendOptions(Options):
    """The compute backend, for every command that computes."""

    backend: str = arg(
        "compute backend of what computes (plot and proof servers, plot clients, tools); auto: cuda if a GPU is usable",
        "--backend",
        default="auto",
        choices=BACKEND_CHOICES,
    )


@dataclass(frozen=True, kw_only=True)
class ComputeOptions(KzgOptions, BackendOptions):
    """The KZG setup and the compute backend, written once for every command that takes both."""


@dataclass(frozen=True, kw_only=True)
class ClusterOptions(CredentialOptions, ComputeOptions):
    """What every component of a `cluster` process shares."""

    NAME: ClassVar[str] = "autonomys-farmer cluster"
    DESCRIPTION: ClassVar[str] = "run cluster components (NATS for control, TCP for bulk data)"

    nats_servers: tuple[str, ...] = arg(
        "a NATS server of the cluster (repeat for each; one reachable is enough)",
        "--nats-server",
        metavar="nats://HOST:PORT",
        parse=nats_url,
    )
    prometheus_listen_on: str | None = arg(
        "serve Prometheus metrics on HOST:PORT", "--prometheus-listen-on", default=None, metavar="HOST:PORT",
        parse=host_port,
    )  # fmt: skip
    advertise_host: str | None = arg(
        "the address peers dial for this process's TCP data (default: this host's outbound address)",
        "--advertise-host",
        default=None,
        metavar="HOST",
    )


@dataclass(frozen=True, kw_only=True)
class ComponentOptions(Options):
    KIND: ClassVar[ComponentKind]
    COMPUTES: ClassVar[bool] = False  # needs the compute backend and the KZG setup


@dataclass(frozen=True, kw_only=True)
class ControllerOptions(ComponentOptions):
    KIND: ClassVar[ComponentKind] = ComponentKind.CONTROLLER
    NAME: ClassVar[str] = "controller"
    DESCRIPTION: ClassVar[str] = "the cluster's link to the node (slots, solutions, segment headers, membership)"

    base_path: Path | None = arg("directory for the controller's state", "--base-path", default=None, parse=Path)
    tmp: bool = arg("use a temporary directory instead of --base-path", "--tmp", default=False)

    node_rpc_url: str = arg(
        "the node's RPC (WebSocket)",
        "--node-rpc-url",
        default="ws://127.0.0.1:9944",
        metavar="ws://HOST:PORT",
        explicit=True,
    )
    job_ack_wait: float = arg(
        "seconds before a plot server's an unacknowledged job is handed to another plot server",
        "--job-ack-wait",
        default=60.0,
        parse=positive_seconds,
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        if (self.base_path is None) == (not self.tmp):
            raise UsageError("controller: give --base-path DIR or --tmp (one of them)")
        if not self.node_rpc_url.startswith(("ws://", "wss://")):
            raise UsageError(f"--node-rpc-url must be ws://HOST:PORT or wss://..., got {self.node_rpc_url!r}")


@dataclass(frozen=True, kw_only=True)
class ShardedCacheOptions(ComponentOptions):
    KIND: ClassVar[ComponentKind] = ComponentKind.SHARDED_CACHE
    NAME: ClassVar[str] = "sharded-cache"
    DESCRIPTION: ClassVar[str] = "a cache instance holding its share of the history"

    item_type: CacheItemType = arg(
        "what the cache stores",
        "--item-type",
        default=CacheItemType.PIECE,
        parse=CacheItemType,
        choices=list(CacheItemType),
    )
    disk: CacheDisk = arg(
        "where, and how much (no size: the whole disk)", parse=CacheDisk.parse, metavar="path=DIR[,size=SIZE]"
    )


@dataclass(frozen=True, kw_only=True)
class FullPieceCacheOptions(ComponentOptions):
    KIND: ClassVar[ComponentKind] = ComponentKind.FULL_PIECE_CACHE
    NAME: ClassVar[str] = "full-piece-sharded-cache"
    DESCRIPTION: ClassVar[str] = (
        "a cache instance of the full-piece group (no size limit); path= may be export-piece output"
    )

    tmp: bool = arg("without path=DIR: a temporary directory, removed at exit", "--tmp", default=False)
    path: Path | None = arg(
        "the cache directory (never deleted)",
        default=None,
        parse=parse_path_option,
        render=lambda p: f"path={p}",
        metavar="path=DIR",
    )

    def __post_init__(self) -> None:
        if self.path is None and not self.tmp:
            raise UsageError("full-piece-sharded-cache: give path=DIR, or --tmp")


@dataclass(frozen=True, kw_only=True)
class ProofServerOptions(ComponentOptions):
    KIND: ClassVar[ComponentKind] = ComponentKind.PROOF_SERVER
    NAME: ClassVar[str] = "proof-server"
    DESCRIPTION: ClassVar[str] = "proves farms' wins (on the GPU when there is one); GPU_CONCURRENCY proofs at once"
    COMPUTES: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class PlotServerOptions(ComponentOptions):
    KIND: ClassVar[ComponentKind] = ComponentKind.PLOT_SERVER
    NAME: ClassVar[str] = "plot-server"
    DESCRIPTION: ClassVar[str] = "encodes sectors (on the GPU CUDA_VISIBLE_DEVICES leaves visible, if any)"
    COMPUTES: ClassVar[bool] = True

    priority_cache: bool = arg("ask the sharded caches before the full-piece cache", "--priority-cache", default=False)
    listen_port: int = arg("TCP port plot clients fetch sectors from", "--listen-port", parse=port)
    max_buffered_sectors: int = arg(
        "sectors held for collection before taking more jobs", "--max-buffered-sectors", default=4, parse=positive_int
    )
    base_path: Path = arg("directory for sectors waiting to be collected", parse=Path, metavar="BASE_PATH")


@dataclass(frozen=True, kw_only=True)
class PlotClientOptions(ComponentOptions):
    KIND: ClassVar[ComponentKind] = ComponentKind.PLOT_CLIENT
    NAME: ClassVar[str] = "plot-client"
    DESCRIPTION: ClassVar[str] = "owns farms: has sectors plotted, audits every slot, submits solutions"
    COMPUTES: ClassVar[bool] = True

    reward_address: str = arg("SS58 address that receives rewards", "--reward-address", metavar="SS58")
    max_plotting_sectors_per_farm: int = arg(
        "sectors of one farm being plotted at once", "--max-plotting-sectors-per-farm", default=2, parse=positive_int
    )
    proof_timeout: float = arg(
        "least seconds to wait for a proof server (else the slot's budget)",
        "--proof-timeout",
        default=1.0,
        parse=positive_seconds,
    )
    farms: tuple[FarmDisk, ...] = arg(
        "a farm directory and its size in sectors", parse=FarmDisk.parse, metavar="path=DIR,sectors=N", nargs="+"
    )


COMPONENTS: dict[str, type[ComponentOptions]] = {
    options.NAME: options
    for options in (
        ControllerOptions,
        ShardedCacheOptions,
        FullPieceCacheOptions,
        ProofServerOptions,
        PlotServerOptions,
        PlotClientOptions,
    )
}


def component_argv(cluster: ClusterOptions, *components: ComponentOptions) -> list[str]:
    """`cluster [cluster options] name [options] -- name [options] ...` after the program name."""
    argv = ["cluster", *cluster.to_argv()]
    for i, component in enumerate(components):
        argv += (["--"] if i else []) + [component.NAME, *component.to_argv()]
    return argv


# --- commands that are not cluster components ------------------------------------------------------------


DEV_NODE_BASE_PATH = Path("dev-node-data")


@dataclass(frozen=True, kw_only=True)
class DevNodeOptions(KzgOptions):
    """`autonomys-farmer dev-node`: the CLI parses it, `dev` renders each node machine's from it."""

    NAME: ClassVar[str] = "autonomys-farmer dev-node"
    DESCRIPTION: ClassVar[str] = "local development node speaking the farmer RPC"

    listen: str = arg(
        "RPC address (WebSocket)", "--listen", default="127.0.0.1:9944", parse=host_port, metavar="HOST:PORT"
    )
    base_path: Path = arg(
        "chain data directory (kept across restarts)", "--base-path", default=DEV_NODE_BASE_PATH, parse=Path
    )
    tmp: bool = arg("use a fresh temporary directory", "--tmp", default=False)
    chain: str = arg(
        "dev: small sectors, fast slots; mainnet: real sizes", "--chain", default="dev", choices=("dev", "mainnet")
    )
    peers: tuple[str, ...] = arg(
        "another dev node on the same chain: its blocks are verified and followed (repeat for each)",
        "--peer",
        default=(),
        parse=ws_url,
        metavar="ws://HOST:PORT",
    )
    sync_from_peers: bool = arg(
        "on a first start, take the history from a peer (every piece verified) instead of archiving genesis",
        "--sync-from-peers",
        default=False,
    )

    def __post_init__(self) -> None:
        if self.sync_from_peers and not self.peers:  # else it would quietly archive genesis itself
            raise UsageError("--sync-from-peers needs a --peer ws://HOST:PORT to take the history from")
        if self.tmp and self.base_path != DEV_NODE_BASE_PATH:
            raise UsageError("give --base-path DIR or --tmp, not both")

    @property
    def address(self) -> tuple[str, int]:
        return split_host_port(self.listen)
