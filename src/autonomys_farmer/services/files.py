"""File helpers for services: crash-safe writes and the KZG parameters file (local or downloaded)."""

from __future__ import annotations

import os
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import blake3

from autonomys_farmer.protocol.kzg import PARAMETERS_SHA256, Kzg

PARAMETERS_URL = (
    "https://raw.githubusercontent.com/autonomys/subspace/main/shared/subspace-kzg/src/eth-public-parameters.bin"
)
DEFAULT_PARAMETERS_PATH = Path.home() / ".cache" / "autonomys-farmer" / "eth-public-parameters.bin"


def write_atomically(target: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename: readers never see a partial file."""
    with atomic_writer(target) as f:
        f.write(data)


@contextmanager
def atomic_writer(target: Path) -> Iterator[BinaryIO]:
    """A file written under a temporary name, fsync'ed and renamed to `target` when the block succeeds
    (removed if it fails): for files too large to hold in memory, written in parts."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class HashingWriter:
    """Passes writes on to a file while hashing (BLAKE3) and counting them."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hasher = blake3.blake3()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.out.write(data)

    def digest(self) -> bytes:
        return self.hasher.digest()


def download_parameters(target: Path, url: str = PARAMETERS_URL) -> None:
    """Download the setup and keep it only if its SHA-256 is the pinned one."""
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    Kzg.from_bytes(data, PARAMETERS_SHA256)  # raises KzgError naming both hashes on a mismatch
    write_atomically(target, data)


def load_kzg(path: str | os.PathLike[str] | None = None) -> Kzg:
    """The real setup: `path`, else the cached copy, downloaded on first use. The pinned SHA-256 is
    checked every time."""
    chosen = path
    if chosen is None:
        chosen = DEFAULT_PARAMETERS_PATH
        if not chosen.exists():
            download_parameters(chosen)
    return Kzg.from_bytes(Path(chosen).read_bytes(), PARAMETERS_SHA256)
