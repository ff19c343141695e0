"""`autonomys-farmer` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path


def _kzg_fetch(args: argparse.Namespace) -> int:
    from autonomys_farmer.services.files import download_parameters, load_kzg

    target = Path(args.to).expanduser()
    if not target.exists():
        download_parameters(target)
    load_kzg(target)
    print(f"KZG parameters verified at {target}")
    return 0


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def _dev_node(args: argparse.Namespace) -> int:
    from autonomys_farmer.protocol.chain import CHAINS
    from autonomys_farmer.services import dev_node

    base_path = Path(tempfile.mkdtemp(prefix="autonomys-dev-node-")) if args.tmp else Path(args.base_path)
    host, port = args.listen
    from autonomys_farmer.services.files import load_kzg

    kzg = load_kzg(args.kzg_parameters)
    try:
        asyncio.run(dev_node.serve(base_path, CHAINS[args.chain], kzg, host, port))
    except KeyboardInterrupt:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autonomys-farmer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('autonomys-farmer')}")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("kzg-fetch", help="download the KZG setup and check its pinned SHA-256")
    fetch.add_argument("--to", default="~/.cache/autonomys-farmer/eth-public-parameters.bin")
    fetch.set_defaults(func=_kzg_fetch)

    node = sub.add_parser("dev-node", help="local development node speaking the farmer RPC")
    node.add_argument("--listen", type=_host_port, default=("127.0.0.1", 9944), metavar="HOST:PORT")
    where = node.add_mutually_exclusive_group()
    where.add_argument("--base-path", default="dev-node-data", help="chain data directory (kept across restarts)")
    where.add_argument("--tmp", action="store_true", help="use a fresh temporary directory")
    node.add_argument("--chain", choices=["dev", "mainnet"], default="dev")
    node.add_argument("--kzg-parameters", help="path of eth-public-parameters.bin (checked by SHA-256)")
    node.set_defaults(func=_dev_node)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
