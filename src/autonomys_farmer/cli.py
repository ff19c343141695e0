"""`autonomys-farmer` command line."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path


def _kzg_fetch(args: argparse.Namespace) -> int:
    from autonomys_farmer.protocol.kzg import Kzg

    target = Path(args.to).expanduser()
    Kzg.load(None, download_to=target)
    print(f"KZG parameters verified at {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autonomys-farmer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('autonomys-farmer')}")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("kzg-fetch", help="download the KZG setup and check its pinned SHA-256")
    fetch.add_argument("--to", default="~/.cache/autonomys-farmer/eth-public-parameters.bin")
    fetch.set_defaults(func=_kzg_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
