"""What a process proves itself with, handed down as a value (as `Compute` is): its NATS login and TLS,
and the cluster secret bulk TCP peers prove to each other. Nothing in the transports reads a global."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autonomys_farmer.services.transport.nats_bus import NatsAuth

MIN_SECRET_BYTES = 16


class CredentialsError(ValueError):
    """A credential file that cannot be used (the message names it)."""


@dataclass(frozen=True)
class Credentials:
    nats: NatsAuth = field(default_factory=NatsAuth)
    cluster_secret: bytes | None = None  # None: bulk TCP without authentication (warned where served)

    @staticmethod
    def read_secret(path: Path | None) -> bytes | None:
        """The cluster secret in a file (None without one); too short a secret is refused."""
        if path is None:
            return None
        secret = path.read_bytes().strip()  # an unreadable file is an OSError naming it
        if len(secret) < MIN_SECRET_BYTES:
            raise CredentialsError(f"{path}: a cluster secret must hold at least {MIN_SECRET_BYTES} bytes")
        return secret
