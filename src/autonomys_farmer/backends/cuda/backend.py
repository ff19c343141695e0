"""The CUDA backend: record encoding, proof tables, G1 MSMs and large NTTs on one GPU; the rest on the
CPU backend.

Encoding runs the pipeline of backends/cuda/pipeline.py on two streams with `concurrency` records each
(GPU_CONCURRENCY: more records in flight, more GPU memory, about 180 MB each; unset, as many as fit in
half the GPU's free memory, at most AUTO_MAX_PER_STREAM). A record the GPU flags
(a table or bucket past its capacity, or the 2^-256 zero-mask case) is redone by the CPU backend, so the
result is always exactly the CPU backend's. A proof regenerates its table, runs recovery's NTTs and its
witness MSM here; piece verification's MSM too. Elementwise field products, inversion, hashing,
keystreams and audits stay on the CPU backend (all cores): they are memory-bound and cheaper than the
copies (an audit reads ~20 KiB per sector from disk).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from autonomys_farmer.backends.cpu.backend import CpuBackend
from autonomys_farmer.backends.cpu.pos_table import PosTable
from autonomys_farmer.backends.cuda.field import MIN_DEVICE_ROWS, DeviceNtt
from autonomys_farmer.backends.cuda.msm import DeviceMsm
from autonomys_farmer.backends.cuda.pipeline import (
    Constants,
    Device,
    EncodeBuffers,
    TableBuffers,
    encode_bytes_per_record,
)
from autonomys_farmer.backends.kernels.encode import table_capacity
from autonomys_farmer.protocol import pos
from autonomys_farmer.protocol.compute import AuditedChunks, AuditHits, EncodedRecords
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, S_BUCKET_BITFIELD_BYTES

log = logging.getLogger(__name__)

STREAMS = 2  # one batch's copies overlap the other's kernels
AUTO_MEMORY_SHARE = 0.5  # of the free GPU memory, for encoding: proof tables, MSMs and neighbours keep the rest
AUTO_MAX_PER_STREAM = 8  # 16 records in flight keep both streams busy; more only holds memory


def auto_concurrency(free_bytes: int, per_record_bytes: int) -> int:
    """Records per stream when GPU_CONCURRENCY is unset: as many as fit in AUTO_MEMORY_SHARE of the
    free memory, 1 to AUTO_MAX_PER_STREAM."""
    fits = int(free_bytes * AUTO_MEMORY_SHARE) // (STREAMS * per_record_bytes)
    return max(1, min(AUTO_MAX_PER_STREAM, fits))


class CudaBackend:
    name = "cuda"

    def __init__(self, concurrency: int | None = None, device: Device | None = None, k: int = pos.K) -> None:
        """`concurrency`: records per stream (GPU_CONCURRENCY); None chooses it from the free memory."""
        if device is None:
            from autonomys_farmer.backends.cuda.device import device_name, free_memory
            from autonomys_farmer.backends.cuda.launch import CudaDevice

            device = CudaDevice()
            self.device = device_name()
            if concurrency is None:
                free, per_record = free_memory(), encode_bytes_per_record(k)
                concurrency = auto_concurrency(free, per_record)
                log.info(
                    "GPU_CONCURRENCY unset: %d records per stream, %d in flight (%.0f MiB each; %.1f GiB free)",
                    concurrency, STREAMS * concurrency, per_record / 2**20, free / 2**30,
                )  # fmt: skip
        else:
            self.device = device.name
        self.gpu = device
        self.k = k
        self.per_stream = max(1, concurrency or 1)
        self.batch_records = STREAMS * self.per_stream
        self.cpu = CpuBackend()
        self._lock = threading.Lock()
        self._constants: Constants | None = None
        self._encode_sets: list[EncodeBuffers] = []
        self._table_set: TableBuffers | None = None
        self.msm = DeviceMsm(device)
        self.device_ntt = DeviceNtt(device)

    def _ready(self) -> Constants:
        if self._constants is None:
            self._constants = Constants.upload(self.gpu, table_capacity(self.k))
        return self._constants

    # --- plotting and proof lookups -------------------------------------------------------------------

    def encode_records(
        self, seeds: Sequence[bytes], records: np.ndarray, stage_seconds: dict[str, float] | None = None
    ) -> EncodedRecords:
        """See Compute.encode_records; `stage_seconds` times each stage (benchmarks only: it serialises)."""
        batch = len(seeds)
        if records.shape != (batch, RECORD_NUM_CHUNKS, 32):
            raise ValueError(f"{batch} seeds for records of shape {records.shape}")
        chunks = np.empty((batch, RECORD_NUM_CHUNKS, 32), np.uint8)
        encoded = np.empty((batch, S_BUCKET_BITFIELD_BYTES), np.uint8)
        redo: list[int] = []
        with self._lock:
            constants = self._ready()
            if not self._encode_sets:
                self._encode_sets = [EncodeBuffers(self.gpu, self.per_stream, self.k) for _ in range(STREAMS)]
            for index, start in enumerate(range(0, batch, self.per_stream)):
                buffers = self._encode_sets[index % STREAMS]
                if buffers.pending is not None:
                    redo += buffers.collect(chunks, encoded)
                stop = min(start + self.per_stream, batch)
                buffers.launch(start, list(seeds[start:stop]), records[start:stop], constants, stage_seconds)
            for buffers in self._encode_sets:
                if buffers.pending is not None:
                    redo += buffers.collect(chunks, encoded)
        for i in redo:
            self.cpu._encode_into(seeds[i], records[i], chunks[i], encoded[i])
        return EncodedRecords(chunks, encoded)

    def proof_table(self, seed: bytes) -> PosTable:
        with self._lock:
            constants = self._ready()
            if self._table_set is None:
                self._table_set = TableBuffers(self.gpu, 1, self.k)
            self._table_set.build(1, [seed], constants)
            (table,) = self._table_set.host_tables(1, [seed])
        return table if table is not None else self.cpu.proof_table(seed)

    def warm_up(self) -> None:
        """Compile every kernel (one record of zeros, one device NTT) so the first real job pays nothing."""
        self.encode_records([bytes(32)], np.zeros((1, RECORD_NUM_CHUNKS, 32), np.uint8))
        self.device_ntt(np.zeros((1, 2, 8), np.uint32), inverse=False)
        self.cpu.warm_up()

    # --- the rest runs on the CPU backend -------------------------------------------------------------

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.cpu.mul(a, b)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.cpu.add(a, b)

    def negate(self, rows: np.ndarray) -> np.ndarray:
        return self.cpu.negate(rows)

    def ntt(self, blocks: np.ndarray, inverse: bool = False) -> np.ndarray:
        if blocks.shape[0] * blocks.shape[1] < MIN_DEVICE_ROWS:
            return self.cpu.ntt(blocks, inverse)
        return self.device_ntt(blocks, inverse)

    def invert(self, rows: np.ndarray) -> np.ndarray:
        return self.cpu.invert(rows)

    def synthetic_division(self, coeffs: np.ndarray, point: np.ndarray) -> np.ndarray:
        return self.cpu.synthetic_division(coeffs, point)

    def mul_monic_pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.cpu.mul_monic_pairs(a, b)

    def g1_msm(self, bases: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        return self.msm(bases, scalars)

    def hash_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.cpu.hash_rows(rows)

    def keyed_hash_rows(self, key: bytes, rows: np.ndarray) -> np.ndarray:
        return self.cpu.keyed_hash_rows(key, rows)

    def chacha8_keystream(self, seed: bytes, nblocks: int) -> np.ndarray:
        return self.cpu.chacha8_keystream(seed, nblocks)

    def audit_chunks(self, audited: AuditedChunks, global_challenge: bytes, solution_range: int) -> AuditHits:
        return self.cpu.audit_chunks(audited, global_challenge, solution_range)
