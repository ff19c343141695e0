"""The compute contract: every heavy step of the protocol behind one interface.

Protocol modules say *what* is computed (which chunks a record keeps, how a polynomial is recovered); a
backend says *how* (numba on the CPU cores, numba-cuda on a GPU), from one shared kernel source, so every
backend gives byte-identical results. Services construct a backend and pass it in; nothing under
`protocol/` imports one or reads the environment.

Field vectors are "rows": uint32 arrays of shape (..., 8), little-endian limbs of an Fr element in
Montgomery form (protocol.field has the byte and integer conversions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, S_BUCKET_BITFIELD_BYTES


class ProofTable(Protocol):
    """The seven PoS tables of one seed, for proof lookups (reading a record, proving a win)."""

    def find_proof(self, challenge_index: int) -> bytes | None: ...

    def find_proofs(self, challenge_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(has_proof bool[n], proofs uint8[n, 160]) for many challenge indices."""
        ...


@dataclass(frozen=True)
class EncodedRecords:
    """What a batch of records keeps after encoding (protocol.md §5.2): per record the 32768 stored
    chunks in ascending s-bucket order and the 65536-bit map of which of them are masked, in the contents
    map's on-disk form (Lsb0). Which s-buckets hold the chunks follows from the map
    (`SectorContentsMap.record_has_row`)."""

    chunks: np.ndarray  # uint8[B, 32768, 32]
    encoded: np.ndarray  # uint8[B, 8192]

    def __post_init__(self) -> None:
        batch = self.chunks.shape[0]
        if self.chunks.shape != (batch, RECORD_NUM_CHUNKS, 32) or self.encoded.shape != (
            batch,
            S_BUCKET_BITFIELD_BYTES,
        ):
            raise ValueError(f"encoded records of shapes {self.chunks.shape} and {self.encoded.shape}")

    def __len__(self) -> int:
        return int(self.chunks.shape[0])


@dataclass(frozen=True)
class AuditedChunks:
    """The audited s-bucket of many sectors, read back to back: what one audit launch hashes. Sector i's
    chunks are chunks[starts[i]:starts[i + 1]], keyed by its sector slot challenge (protocol.md §7)."""

    chunks: np.ndarray  # uint8[n, 32]
    starts: np.ndarray  # int64[sectors + 1], ascending from 0 to n
    sector_slot_challenges: np.ndarray  # uint8[sectors, 32]

    def __post_init__(self) -> None:
        sectors = self.sector_slot_challenges.shape[0]
        if (
            self.chunks.ndim != 2
            or self.chunks.shape[1] != 32
            or self.starts.shape != (sectors + 1,)
            or self.sector_slot_challenges.shape != (sectors, 32)
            or (sectors and (self.starts[0] != 0 or self.starts[-1] != self.chunks.shape[0]))
        ):
            shapes = (self.chunks.shape, self.starts.shape, self.sector_slot_challenges.shape)
            raise ValueError(f"audited chunks of shapes {shapes}")

    def __len__(self) -> int:
        return int(self.sector_slot_challenges.shape[0])


@dataclass(frozen=True)
class AuditHits:
    """The audited chunks within the solution range: per hit, its sector (position in the batch), its
    chunk (position in the sector's audited s-bucket) and its distance from the challenge."""

    sector: np.ndarray  # int64[hits]
    chunk: np.ndarray  # int64[hits]
    distance: np.ndarray  # uint64[hits]

    def __len__(self) -> int:
        return int(self.sector.shape[0])


class Compute(Protocol):
    """A compute backend. `name` is what metrics and status show (`cpu`, `cuda`); `device` says on what
    it runs (core count, GPU name); `batch_records` is how many records one `encode_records` call should
    carry to keep it busy."""

    name: str
    device: str
    batch_records: int

    # --- plotting and proof lookups -------------------------------------------------------------------

    def encode_records(self, seeds: Sequence[bytes], records: np.ndarray) -> EncodedRecords:
        """Encode records (B, 32768, 32) with their PoS seeds: extension, PoS tables, proofs for the
        first 32768 proven s-buckets, masking and selection; only what is stored comes back."""
        ...

    def proof_table(self, seed: bytes) -> ProofTable:
        """All seven tables of one seed."""
        ...

    def warm_up(self) -> None:
        """Compile (or load) the kernels now, so that no job pays for it."""
        ...

    # --- Fr vectors (Montgomery rows) -----------------------------------------------------------------

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Elementwise a·b of (n, 8) rows; b may be one row (broadcast)."""
        ...

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Elementwise a + b of (n, 8) rows."""
        ...

    def negate(self, rows: np.ndarray) -> np.ndarray: ...

    def ntt(self, blocks: np.ndarray, inverse: bool = False) -> np.ndarray:
        """The NTT of every block of a (batch, n, 8) array over the size-n domain, natural order in and
        out; the inverse is unscaled (the caller multiplies by 1/n)."""
        ...

    def invert(self, rows: np.ndarray) -> np.ndarray:
        """The inverse of every (non-zero) row."""
        ...

    def synthetic_division(self, coeffs: np.ndarray, point: np.ndarray) -> np.ndarray:
        """Quotient of (p(X) − p(x)) / (X − x) for coefficient rows and one point row."""
        ...

    def mul_monic_pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(X^d + a)(X^d + b) for batches (count, d, 8) of monic polynomials' low coefficients: the low
        2d coefficients of each product (the leading 1 implicit)."""
        ...

    # --- BLS12-381 G1 -------------------------------------------------------------------------------

    def g1_msm(self, bases: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        """Σ_j s_kj·P_j for every set k of scalars, in one batch: bases (n, 2, 12) affine Montgomery rows
        (protocol.g1; (0, 0) is the identity), scalars (K, n, 8) canonical Fr limbs; returns (K, 4, 12)
        XYZZ Montgomery points. Commitments, witnesses and batched verification all come down to this."""
        ...

    # --- hashing and keystreams -----------------------------------------------------------------------

    def hash_rows(self, rows: np.ndarray) -> np.ndarray:
        """BLAKE3 of every row of a (n, length <= 1024) uint8 array: (n, 32)."""
        ...

    def keyed_hash_rows(self, key: bytes, rows: np.ndarray) -> np.ndarray:
        """Keyed BLAKE3 (32-byte key) of every row: (n, 32)."""
        ...

    def chacha8_keystream(self, seed: bytes, nblocks: int) -> np.ndarray:
        """ChaCha8 keystream blocks 0..nblocks-1 of a 32-byte seed (IETF layout, zero nonce)."""
        ...

    # --- auditing -------------------------------------------------------------------------------------

    def audit_chunks(self, audited: AuditedChunks, global_challenge: bytes, solution_range: int) -> AuditHits:
        """Every audited chunk whose keyed hash is within solution_range / 2 of the challenge, selected
        inside the launch (hits in sector, then chunk order). Farming threads call this concurrently, a
        batch of sectors each: every call runs on its caller's core, without the GIL."""
        ...
