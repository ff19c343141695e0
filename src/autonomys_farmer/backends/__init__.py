"""Compute backends: the heavy kernels of plotting and proving behind one interface.

A backend turns PoS seeds into proof tables/proof hashes and records into their erasure-coded
extension; the protocol layer (`protocol.plotting`, `protocol.proving`) does the rest with numpy.
`get_backend()` resolves a name to a backend; every backend must produce byte-identical output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np


class PosTableLike(Protocol):
    def find_proof(self, challenge_index: int) -> bytes | None: ...

    def find_proofs(self, challenge_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class ComputeBackend(Protocol):
    name: str

    def pos_table(self, seed: bytes) -> PosTableLike:
        """All seven tables of one seed, for proof lookups (reading, proving)."""
        ...

    def proof_hashes(self, seeds: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """For each seed: has_proof bool[65536] and H(first proof) uint8[65536, 32] per s-bucket."""
        ...

    def extend_records(self, records: np.ndarray) -> np.ndarray:
        """(n, 32768, 32) records -> (n, 65536, 32) s-bucket chunks (source even, parity odd)."""
        ...


BACKENDS = ("auto", "cpu")


def get_backend(name: str | None = None) -> ComputeBackend:
    """`cpu` or `auto` (default, or $AUTONOMYS_FARMER_BACKEND). Only the CPU backend exists so far,
    so `auto` resolves to it; asking for anything else is an error naming the value."""
    choice = (name or os.environ.get("AUTONOMYS_FARMER_BACKEND") or "auto").lower()
    if choice not in BACKENDS:
        raise ValueError(f"unknown compute backend {choice!r}: available are {', '.join(BACKENDS)}")
    from autonomys_farmer.backends.cpu.backend import CpuBackend

    return CpuBackend()
