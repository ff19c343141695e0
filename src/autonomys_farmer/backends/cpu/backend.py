"""The CPU backend: numba PoS tables, numba BLAKE3 for proof hashes, numba NTTs for extension."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autonomys_farmer.backends.cpu import fr_kernel as fr
from autonomys_farmer.backends.cpu.blake3_kernel import hash_rows
from autonomys_farmer.backends.cpu.pos_table import PosTable
from autonomys_farmer.protocol import erasure
from autonomys_farmer.protocol.constants import RECORD_NUM_S_BUCKETS

ALL_S_BUCKETS = np.arange(RECORD_NUM_S_BUCKETS, dtype=np.uint32)


class CpuBackend:
    name = "cpu"

    def pos_table(self, seed: bytes) -> PosTable:
        return PosTable(seed)

    def proof_hashes(self, seeds: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        has = np.zeros((len(seeds), RECORD_NUM_S_BUCKETS), bool)
        hashes = np.zeros((len(seeds), RECORD_NUM_S_BUCKETS, 32), np.uint8)
        for i, seed in enumerate(seeds):
            has[i], proofs = PosTable(seed).find_proofs(ALL_S_BUCKETS)
            hashes[i, has[i]] = hash_rows(proofs[has[i]])
        return has, hashes

    def extend_records(self, records: np.ndarray) -> np.ndarray:
        out = np.empty((records.shape[0], 2 * records.shape[1], 32), np.uint8)
        for i, record in enumerate(records):
            parity = erasure.extend(fr.scalars_to_mont(record))
            out[i, 0::2] = record
            out[i, 1::2] = fr.mont_to_scalars(parity)
        return out
