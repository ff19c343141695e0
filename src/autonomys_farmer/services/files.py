"""File helpers for services: crash-safe writes and the KZG parameters (shipped in the package)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from autonomys_farmer.protocol.kzg import PARAMETERS_SHA256, Kzg, KzgError

# The real 2^15 setup (1.6 MB, upstream's shared/subspace-kzg/src/eth-public-parameters.bin) ships as
# package data: no download, no flag; `--kzg-parameters PATH` overrides it.
EMBEDDED_PARAMETERS = "data/eth-public-parameters.bin"


def write_atomically(target: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename: readers never see a partial file."""
    with atomic_writer(target) as f:
        f.write(data)


def private_dir(path: Path) -> Path:
    """A directory only its owner may enter (0700), made if missing: where secrets are kept."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_secret(target: Path, data: bytes) -> None:
    """A file holding a password or secret: 0600 (mkstemp's mode, kept by the rename), atomically, in a
    0700 directory."""
    private_dir(target.parent)
    write_atomically(target, data)
    target.chmod(0o600)


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


def load_kzg(path: str | os.PathLike[str] | None = None) -> Kzg:
    """The real setup: `path`, else the copy in the package. The pinned SHA-256 is checked every time;
    a file that cannot be read is a KzgError naming it."""
    if path is None:
        data = resources.files("autonomys_farmer").joinpath(EMBEDDED_PARAMETERS).read_bytes()
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise KzgError(f"KZG parameters {str(path)!r}: {e.strerror or e}") from None
    return Kzg.from_bytes(data, PARAMETERS_SHA256)
