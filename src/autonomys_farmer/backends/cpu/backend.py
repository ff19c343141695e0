"""The CPU backend: the shared kernel bodies compiled by numba, every core busy.

A batch of records is encoded one record per core (single-core kernels without the GIL, in a thread
pool); a single big job (one proof table, one large NTT) spreads over all cores instead.
"""

from __future__ import annotations

import functools
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from autonomys_farmer.backends.cpu import field as fr
from autonomys_farmer.backends.cpu import hashing, msm
from autonomys_farmer.backends.cpu.kernels import usable_cores
from autonomys_farmer.backends.cpu.pos_table import PosTable, TableBuffers
from autonomys_farmer.protocol import field, pos
from autonomys_farmer.protocol.compute import AuditedChunks, AuditHits, EncodedRecords
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS, S_BUCKET_BITFIELD_BYTES
from autonomys_farmer.protocol.field import FieldError
from autonomys_farmer.protocol.plotting import extend_record, needs_all_proofs, select_chunks
from autonomys_farmer.protocol.pos import chacha8_key_words

ALL_S_BUCKETS = np.arange(RECORD_NUM_S_BUCKETS, dtype=np.uint32)


class CpuBackend:
    name = "cpu"

    def __init__(self, parallel: bool = True) -> None:
        self.parallel = parallel
        self.cores = usable_cores() if parallel else 1
        self.device = f"{self.cores} CPU core{'s' if self.cores > 1 else ''}"
        self.batch_records = self.cores
        self._spare_buffers: queue.SimpleQueue[TableBuffers] = queue.SimpleQueue()

    # --- plotting and proof lookups -------------------------------------------------------------------

    def proof_table(self, seed: bytes) -> PosTable:
        return PosTable(seed, parallel=self.parallel)

    def encode_records(self, seeds: Sequence[bytes], records: np.ndarray) -> EncodedRecords:
        batch = len(seeds)
        if records.shape != (batch, RECORD_NUM_CHUNKS, 32):
            raise ValueError(f"{batch} seeds for records of shape {records.shape}")
        chunks = np.empty((batch, RECORD_NUM_CHUNKS, 32), np.uint8)
        encoded = np.empty((batch, S_BUCKET_BITFIELD_BYTES), np.uint8)
        if batch == 1 or self.cores == 1:
            for i in range(batch):
                self._encode_into(seeds[i], records[i], chunks[i], encoded[i])
        else:  # a record per core, each in table buffers of its own, kept for the next batch
            with ThreadPoolExecutor(min(self.cores, batch)) as pool:
                for done in [
                    pool.submit(self._one_core._encode_into, seeds[i], records[i], chunks[i], encoded[i])
                    for i in range(batch)
                ]:
                    done.result()
        return EncodedRecords(chunks, encoded)

    @functools.cached_property
    def _one_core(self) -> CpuBackend:
        return CpuBackend(parallel=False)

    def _encode_into(self, seed: bytes, record: np.ndarray, chunks_out: np.ndarray, encoded_out: np.ndarray) -> None:
        extended = extend_record(self, record)
        try:
            buffers = self._spare_buffers.get_nowait()
        except queue.Empty:
            buffers = TableBuffers(pos.K, self.parallel)
        try:
            table = PosTable(seed, parallel=self.parallel, buffers=buffers)
            positions = table.first_candidates(ALL_S_BUCKETS)
            has_proof = positions >= 0
            proven = np.flatnonzero(has_proof)
            hashes = np.zeros((RECORD_NUM_S_BUCKETS, 32), np.uint8)
            traced = proven[:RECORD_NUM_CHUNKS]
            hashes[traced] = self.hash_rows(table.proofs_at(positions[traced]))
            if needs_all_proofs(has_proof, hashes, extended):
                rest = proven[RECORD_NUM_CHUNKS:]
                hashes[rest] = self.hash_rows(table.proofs_at(positions[rest]))
        finally:
            self._spare_buffers.put(buffers)  # one set per core at most: as many as records encode at once
        chunks_out[:], encoded_out[:] = select_chunks(has_proof, hashes, extended)

    def warm_up(self) -> None:
        """Load (or compile, once per machine: numba caches on disk) every kernel a proof needs."""
        self.proof_table(bytes(32)).find_proof(0)
        self.ntt(np.zeros((1, 2, 8), np.uint32))

    # --- Fr vectors -----------------------------------------------------------------------------------

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a, np.uint32)
        out = np.empty_like(a)
        fr.mul_launch(self.parallel, a, np.ascontiguousarray(b, np.uint32), out)
        return out

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.array(a, np.uint32, copy=True)
        fr.add_launch(self.parallel, out, np.ascontiguousarray(b, np.uint32))
        return out

    def negate(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, np.uint32)
        out = np.empty_like(rows)
        fr.negate_launch(self.parallel, rows, out)
        return out

    def ntt(self, blocks: np.ndarray, inverse: bool = False) -> np.ndarray:
        out = np.array(blocks, np.uint32, copy=True)
        n = out.shape[1]
        field.check_domain_size(n)
        if n == 1:
            return out
        twiddles = field.twiddles(inverse)
        log_n = n.bit_length() - 1
        if self.parallel and out.shape[0] < self.cores:  # few large transforms: split each one
            for block in out:
                fr.ntt_stages_launch(True, block, twiddles, field.MAX_DOMAIN, log_n)
        else:
            fr.ntt_blocks_launch(self.parallel, out, twiddles, field.MAX_DOMAIN, log_n)
        return out

    def invert(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, np.uint32)
        prefix = np.empty_like(rows)
        fr.prefix_products_launch(False, rows, prefix)
        (total,) = field.rows_to_ints(prefix[-1:])
        if total == 0:
            raise FieldError("cannot invert zero")
        out = np.empty_like(rows)
        total_inverse = field.ints_to_rows([pow(total, -1, field.BLS_MODULUS)])
        fr.inverse_sweep_launch(False, rows, prefix, total_inverse, out)
        return out

    def synthetic_division(self, coeffs: np.ndarray, point: np.ndarray) -> np.ndarray:
        q = np.zeros((max(coeffs.shape[0] - 1, 0), 8), np.uint32)
        fr.synthetic_division_launch(False, np.ascontiguousarray(coeffs, np.uint32), point, q)
        return q

    def mul_monic_pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros((a.shape[0], 2 * a.shape[1], 8), np.uint32)
        fr.mul_monic_pairs_launch(self.parallel, np.ascontiguousarray(a), np.ascontiguousarray(b), out)
        return out

    # --- BLS12-381 G1 -------------------------------------------------------------------------------

    def g1_msm(self, bases: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        return msm.g1_msm(bases, scalars, self.parallel)

    # --- hashing and keystreams -----------------------------------------------------------------------

    def hash_rows(self, rows: np.ndarray) -> np.ndarray:
        return hashing.hash_rows(self.parallel, np.asarray(rows, np.uint8))

    def keyed_hash_rows(self, key: bytes, rows: np.ndarray) -> np.ndarray:
        return hashing.hash_rows(self.parallel, np.asarray(rows, np.uint8), np.frombuffer(key, np.uint8))

    def chacha8_keystream(self, seed: bytes, nblocks: int) -> np.ndarray:
        out = np.zeros(64 * nblocks, np.uint8)
        hashing.keystream_launch(self.parallel, np.array(chacha8_key_words(seed), np.uint32), out)
        return out

    # --- auditing -------------------------------------------------------------------------------------

    def audit_chunks(self, audited: AuditedChunks, global_challenge: bytes, solution_range: int) -> AuditHits:
        words = np.ascontiguousarray(audited.chunks, np.uint8).view("<u4")
        keys = np.ascontiguousarray(audited.sector_slot_challenges, np.uint8).view("<u4")
        starts = np.ascontiguousarray(audited.starts, np.int64)
        target = np.uint64(int.from_bytes(global_challenge[:8], "little"))
        half_range = np.uint64(solution_range // 2)
        # Room for twice the hits the range should give: the launch runs again only if more came.
        expected = len(words) * min(1.0, solution_range / 2**64)
        capacity = int(64 + 2 * expected)
        while True:
            sector, chunk = np.empty(capacity, np.int64), np.empty(capacity, np.int64)
            distance = np.empty(capacity, np.uint64)
            count = hashing.audit_chunks_launch(words, starts, keys, target, half_range, sector, chunk, distance)
            if count <= capacity:
                return AuditHits(sector[:count], chunk[:count], distance[:count])
            capacity = count
