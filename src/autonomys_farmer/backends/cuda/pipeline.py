"""Orchestration of the record-encoding kernels (backends/kernels/encode.py) on a device.

The same code drives the GPU (`CudaDevice`) and its CPU emulation (`backends.cpu.emulation`), so CI runs
exactly this sequence of launches at full size. Buffers for a batch of B records are allocated once and
reused; two buffer sets on two streams let one batch's copies overlap the other's kernels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

from autonomys_farmer.backends.cpu.pos_table import PosTable
from autonomys_farmer.backends.kernels import encode as kx
from autonomys_farmer.protocol import field as fr
from autonomys_farmer.protocol import pos
from autonomys_farmer.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS, S_BUCKET_BITFIELD_BYTES

LOG_RECORD_CHUNKS = RECORD_NUM_CHUNKS.bit_length() - 1


class Device(Protocol):
    """What the pipeline needs of a device (numba-cuda's GPU, or the CPU emulation)."""

    name: str

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any: ...

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray: ...

    def to_device(self, host: np.ndarray) -> Any: ...

    def upload(self, host: np.ndarray, device: Any, stream: Any = ...) -> None: ...

    def download(self, device: Any, host: np.ndarray, stream: Any = ...) -> None: ...

    def stream(self) -> Any: ...

    def synchronize(self, stream: Any) -> None: ...

    def grid(self, spec: kx.GridKernel, n: int, *args: Any, stream: Any = ...) -> None: ...

    def blocks(self, spec: kx.BlockKernel, nblocks: int, *args: Any, stream: Any = ...) -> None: ...


def left_targets() -> np.ndarray:
    """targets[parity, r, m]: the 64 right-entry r values a left entry matches (uint16, 3.9 MB), which
    the device's matching probe looks up (the CPU tests a left entry's candidates in row bitmaps)."""
    r = np.arange(pos.PARAM_BC, dtype=np.int64)[:, None]
    m = np.arange(pos.PARAM_M, dtype=np.int64)[None, :]
    return np.stack([pos.target(parity, r, m) for parity in (0, 1)]).astype(np.uint16)  # type: ignore[arg-type]


@dataclass
class Constants:
    """Read-only device data every batch uses."""

    targets: Any
    r2: Any
    one: Any
    scale: Any  # ω_{2n}^i / n for the coset shift of the extension
    forward: Any
    inverse: Any
    offsets: Any  # start of table t's (left, right) pairs in `lefts`/`rights`

    @classmethod
    def upload(cls, device: Device, capacity: int) -> Constants:
        n = RECORD_NUM_CHUNKS
        scale = fr.ints_to_rows([w * pow(n, -1, fr.BLS_MODULUS) for w in fr.rows_to_ints(fr.omega_powers(2 * n, n))])
        offsets = np.zeros(pos.NUM_TABLES + 1, np.int64)
        offsets[2:] = np.arange(pos.NUM_TABLES - 1, dtype=np.int64) * capacity
        return cls(
            targets=device.to_device(left_targets()),
            r2=device.to_device(fr.R2_LIMBS),
            one=device.to_device(fr.ONE_LIMBS),
            scale=device.to_device(scale),
            forward=device.to_device(np.ascontiguousarray(fr.twiddles(False))),
            inverse=device.to_device(np.ascontiguousarray(fr.twiddles(True))),
            offsets=device.to_device(offsets),
        )


@dataclass
class TableBuffers:
    """Device memory for the seven tables of `batch` seeds."""

    device: Device
    batch: int
    k: int
    stream: Any = None
    capacity: int = field(init=False)
    buckets: int = field(init=False)
    keystream_blocks: int = field(init=False)

    def __post_init__(self) -> None:
        d, b, k = self.device, self.batch, self.k
        self.capacity = c = kx.table_capacity(k)
        self.buckets = nb = pos.num_buckets(k)
        self.keystream_blocks = -(-(k << k) // 512)
        self.stream = d.stream()
        self.keys = d.empty((b, 8), np.uint32)
        self.ks = d.empty((b, self.keystream_blocks * 64 + 8), np.uint8)
        self.y_new = d.empty((b, c), np.uint32)
        self.tie_new = d.empty((b, c), np.uint64)
        self.hi_new = d.empty((b, c), np.uint64)
        self.lo_new = d.empty((b, c), np.uint64)
        self.y_sorted = d.empty((b, c), np.uint32)
        self.meta_hi = d.empty((b, c), np.uint64)
        self.meta_lo = d.empty((b, c), np.uint64)
        self.x_sorted = d.empty((b, 1 << k), np.int32)
        self.sizes = d.empty((b,), np.int32)
        self.counts = d.empty((b, nb), np.int32)
        self.starts = d.empty((b, nb), np.int32)
        self.fill = d.empty((b, nb), np.int32)
        self.bucket_totals = d.empty((b,), np.int32)
        self.order = d.empty((b, c), np.int32)
        self.perm = d.empty((b, c), np.int32)
        self.left = d.empty((b, c), np.int32)
        self.right = d.empty((b, c), np.int32)
        self.total = d.empty((b,), np.int32)
        self.lefts = d.empty((b, (pos.NUM_TABLES - 1) * c), np.int32)
        self.rights = d.empty((b, (pos.NUM_TABLES - 1) * c), np.int32)
        self.overflow = d.empty((b,), np.uint32)
        self.table_sizes = d.empty((b, pos.NUM_TABLES + 1), np.int32)
        self.first_sizes = np.full(b, 1 << k, np.int32)

    def clear(self, array: Any) -> None:
        self.device.grid(kx.CLEAR, array.size, array.reshape(-1), stream=self.stream)

    def sort(self, n: int) -> None:
        """perm = the first `sizes` entries of (y_new, tie_new) in (y, tie) order; starts/counts = buckets."""
        d, s = self.device, self.stream
        self.clear(self.counts)
        self.clear(self.fill)
        d.grid(kx.BUCKET_COUNT, n * self.capacity, self.y_new, self.sizes, self.counts, stream=s)
        d.blocks(kx.SCAN, n, self.counts, self.starts, self.bucket_totals, stream=s)
        d.grid(
            kx.BUCKET_SCATTER, n * self.capacity, self.y_new, self.sizes, self.starts, self.fill, self.order, stream=s
        )
        d.blocks(
            kx.RANK_SORT, n * self.buckets, self.y_new, self.tie_new, self.starts, self.counts, self.order,
            self.overflow, self.perm, stream=s,
        )  # fmt: skip

    def build(self, n: int, seeds: list[bytes], constants: Constants) -> None:
        """All seven tables of the first n seeds (asynchronous on this buffer set's stream)."""
        d, s, c, k = self.device, self.stream, self.capacity, self.k
        keys = np.array([pos.chacha8_key_words(seed) for seed in seeds], np.uint32).reshape(n, 8)
        d.upload(keys, self.keys[:n], stream=s)
        d.upload(self.first_sizes[:n], self.sizes[:n], stream=s)
        self.clear(self.overflow)
        d.grid(kx.KEYSTREAM, n * self.keystream_blocks, self.keys, self.ks, self.keystream_blocks, stream=s)
        d.grid(kx.F1, n << k, self.ks, k, self.y_new, self.tie_new, stream=s)
        self.sort(n)
        d.grid(
            kx.GATHER_FIRST, n * c, self.perm, self.sizes, self.y_new, self.y_sorted, self.x_sorted, self.meta_hi,
            self.meta_lo, stream=s,
        )  # fmt: skip
        for table in range(2, pos.NUM_TABLES + 1):
            self.clear(self.total)
            d.blocks(
                kx.MATCH, n * (self.buckets - 1), self.y_sorted, self.starts, self.counts, constants.targets,
                self.left, self.right, self.total, self.overflow, stream=s,
            )  # fmt: skip
            d.grid(
                kx.FN, n * c, table, k, self.total, self.left, self.right, self.y_sorted, self.meta_hi, self.meta_lo,
                self.y_new, self.tie_new, self.hi_new, self.lo_new, stream=s,
            )  # fmt: skip
            d.grid(kx.TABLE_SIZE, n, self.total, c, self.sizes, self.overflow, table, self.table_sizes, stream=s)
            self.sort(n)
            d.grid(
                kx.GATHER_TABLE, n * c, self.perm, self.sizes, self.y_new, self.tie_new, self.hi_new, self.lo_new,
                self.y_sorted, self.meta_hi, self.meta_lo, self.lefts, self.rights, (table - 2) * c, stream=s,
            )  # fmt: skip

    def host_tables(self, n: int, seeds: list[bytes]) -> list[PosTable | None]:
        """The built tables as CPU PosTables (None for a record that overflowed); waits for the stream."""
        d = self.device
        arrays = {}
        for name in ("table_sizes", "overflow", "x_sorted", "lefts", "rights", "y_sorted"):
            src = getattr(self, name)
            host = np.empty(src.shape, src.dtype)
            d.download(src, host, stream=self.stream)
            arrays[name] = host
        d.synchronize(self.stream)
        offsets = np.zeros(pos.NUM_TABLES + 1, np.int64)
        offsets[2:] = np.arange(pos.NUM_TABLES - 1, dtype=np.int64) * self.capacity
        tables: list[PosTable | None] = []
        for i in range(n):
            if arrays["overflow"][i]:
                tables.append(None)
                continue
            sizes = [1 << self.k, *(int(v) for v in arrays["table_sizes"][i][2:])]
            tables.append(
                PosTable.from_arrays(
                    seeds[i], self.k, sizes, arrays["x_sorted"][i], arrays["lefts"][i], arrays["rights"][i], offsets,
                    arrays["y_sorted"][i][: sizes[-1]].astype(np.int64),
                )
            )  # fmt: skip
        return tables


@dataclass
class EncodeBuffers(TableBuffers):
    """Device memory (and pinned host memory) for encoding a batch of records end to end."""

    def __post_init__(self) -> None:
        super().__post_init__()
        d, b = self.device, self.batch
        s_buckets, chunks = RECORD_NUM_S_BUCKETS, RECORD_NUM_CHUNKS
        proof_size = pos.PROOF_X_COUNT * self.k // 8
        self.records = d.empty((b, chunks * 32), np.uint8)
        self.limbs = d.empty((b, chunks, 8), np.uint32)
        self.bad = d.empty((b,), np.uint32)
        self.ext = d.empty((b, s_buckets * 32), np.uint8)
        self.positions = d.empty((b, s_buckets), np.int32)
        self.proven = d.empty((b, s_buckets), np.uint32)
        self.proven_rank = d.empty((b, s_buckets), np.int32)
        self.proven_total = d.empty((b,), np.int32)
        self.proofs = d.empty((b, chunks * proof_size), np.uint8)
        self.masked = d.empty((b, chunks * 32), np.uint8)
        self.usable = d.empty((b, s_buckets), np.uint32)
        self.encoded_rank = d.empty((b, s_buckets), np.int32)
        self.encoded_total = d.empty((b,), np.int32)
        self.kept = d.empty((b, s_buckets), np.uint32)
        self.kept_rank = d.empty((b, s_buckets), np.int32)
        self.kept_total = d.empty((b,), np.int32)
        self.chunks = d.empty((b, chunks * 32), np.uint8)
        self.bitmap = d.empty((b, S_BUCKET_BITFIELD_BYTES), np.uint8)
        # Pinned host side of the transfers (asynchronous copies need page-locked memory).
        self.records_host = d.pinned((b, chunks * 32), np.uint8)
        self.chunks_host = d.pinned((b, chunks * 32), np.uint8)
        self.bitmap_host = d.pinned((b, S_BUCKET_BITFIELD_BYTES), np.uint8)
        self.flags_host = {name: d.pinned((b,), dtype) for name, dtype in FLAG_ARRAYS}
        self.pending: tuple[int, int] | None = None  # (first record of the batch in the call, n)

    def extend(self, n: int, constants: Constants) -> None:
        """records -> the 65536 extended chunks of each (source even, parity odd)."""
        d, s = self.device, self.stream
        self.clear(self.bad)
        d.grid(kx.TO_MONTGOMERY, n * RECORD_NUM_CHUNKS, self.records, self.limbs, constants.r2, self.bad, stream=s)
        self._ntt(n, constants.inverse)
        d.grid(kx.SCALE, n * RECORD_NUM_CHUNKS, self.limbs, constants.scale, stream=s)
        self._ntt(n, constants.forward)
        d.grid(kx.EXTENDED, n * RECORD_NUM_S_BUCKETS, self.records, self.limbs, constants.one, self.ext, stream=s)

    def _ntt(self, n: int, twiddles: Any) -> None:
        d, s = self.device, self.stream
        d.grid(kx.BIT_REVERSE, n * RECORD_NUM_CHUNKS, self.limbs, LOG_RECORD_CHUNKS, stream=s)
        length = 2
        while length <= RECORD_NUM_CHUNKS:
            d.grid(kx.NTT_STAGE, n * RECORD_NUM_CHUNKS // 2, self.limbs, twiddles, length, fr.MAX_DOMAIN, stream=s)
            length <<= 1

    def select(self, n: int, constants: Constants) -> None:
        """Proofs for the first 32768 proven s-buckets, masking, the keep rule, the stored chunks."""
        d, s, k, m = self.device, self.stream, self.k, n * RECORD_NUM_S_BUCKETS
        d.grid(kx.PROOF_EXISTS, m, self.y_sorted, self.sizes, k, self.positions, self.proven, stream=s)
        d.blocks(kx.SCAN, n, self.proven, self.proven_rank, self.proven_total, stream=s)
        d.grid(
            kx.MASK, m, self.positions, self.proven_rank, self.x_sorted, self.lefts, self.rights, constants.offsets,
            k, self.proofs, self.ext, self.masked, self.usable, stream=s,
        )  # fmt: skip
        d.blocks(kx.SCAN, n, self.usable, self.encoded_rank, self.encoded_total, stream=s)
        d.grid(kx.KEPT, m, self.usable, self.encoded_rank, self.encoded_total, self.kept, stream=s)
        d.blocks(kx.SCAN, n, self.kept, self.kept_rank, self.kept_total, stream=s)
        d.grid(
            kx.SELECT, m, self.kept, self.kept_rank, self.usable, self.proven_rank, self.masked, self.ext, self.chunks,
            stream=s,
        )  # fmt: skip
        d.grid(kx.BITMAP, n * S_BUCKET_BITFIELD_BYTES, self.usable, self.bitmap, stream=s)

    def launch(
        self,
        start: int,
        seeds: list[bytes],
        records: np.ndarray,
        constants: Constants,
        stage_seconds: dict[str, float] | None = None,
    ) -> None:
        """Start encoding `records` (records[i] with seeds[i]); `collect` waits for the results.
        With `stage_seconds`, each stage is waited for and timed (benchmarks; no overlap then)."""
        n = len(seeds)
        d, s = self.device, self.stream
        clock = StageClock(d, s, stage_seconds)
        self.records_host[:n] = records.reshape(n, -1)
        d.upload(self.records_host[:n], self.records[:n], stream=s)
        clock.lap("upload")
        self.extend(n, constants)
        clock.lap("extension")
        self.build(n, seeds, constants)
        clock.lap("tables")
        self.select(n, constants)
        clock.lap("proofs and selection")
        d.download(self.chunks[:n], self.chunks_host[:n], stream=s)
        d.download(self.bitmap[:n], self.bitmap_host[:n], stream=s)
        for name, _dtype in FLAG_ARRAYS:
            d.download(getattr(self, name)[:n], self.flags_host[name][:n], stream=s)
        self.pending = (start, n)

    def collect(self, chunks_out: np.ndarray, bitmap_out: np.ndarray) -> list[int]:
        """Wait for the launched batch, copy its results out; the call's indices of records the CPU must
        redo (a table or bucket past the device's capacity, a non-canonical chunk, or a masked chunk of
        zeros before the 32768th proof: the keep rule then needs proofs the device did not trace)."""
        assert self.pending is not None
        start, n = self.pending
        self.pending = None
        self.device.synchronize(self.stream)
        chunks_out[start : start + n] = self.chunks_host[:n].reshape(n, RECORD_NUM_CHUNKS, 32)
        bitmap_out[start : start + n] = self.bitmap_host[:n]
        flags = {name: self.flags_host[name][:n] for name, _ in FLAG_ARRAYS}
        return [start + int(i) for i in np.flatnonzero(records_to_redo(**flags))]


class _Sizing:
    """Stands in for a device while EncodeBuffers is built, to count the device memory it would take
    (nothing is allocated: arrays are zero-strided views)."""

    name = "sizing"

    def __init__(self) -> None:
        self.device_bytes = 0

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        self.device_bytes += int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.broadcast_to(np.zeros((), dtype), shape)

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.broadcast_to(np.zeros((), dtype), shape)

    def stream(self) -> None:
        return None


def encode_bytes_per_record(k: int = pos.K) -> int:
    """Device memory one more record in flight takes (EncodeBuffers grows linearly with its batch)."""
    sizes = []
    for batch in (1, 2):
        sizing = _Sizing()
        EncodeBuffers(cast(Device, sizing), batch, k)
        sizes.append(sizing.device_bytes)
    return sizes[1] - sizes[0]


class StageClock:
    """Wall time per stage when asked for (synchronising the stream at each lap), else nothing."""

    def __init__(self, device: Device, stream: Any, seconds: dict[str, float] | None) -> None:
        self.device, self.stream, self.seconds = device, stream, seconds
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.seconds is None:
            return
        self.device.synchronize(self.stream)
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now


FLAG_ARRAYS = (("overflow", np.uint32), ("bad", np.uint32), ("proven_total", np.int32), ("encoded_total", np.int32))


def records_to_redo(
    overflow: np.ndarray, bad: np.ndarray, proven_total: np.ndarray, encoded_total: np.ndarray
) -> np.ndarray:
    """Which records of a batch the CPU must encode instead: a table or bucket past the device's
    capacity, a non-canonical chunk (the CPU raises the error), or a masked chunk of zeros among the
    first 32768 proofs while more proofs exist (the keep rule then needs proofs the device did not trace)."""
    zero_mask = (proven_total > RECORD_NUM_CHUNKS) & (encoded_total < np.minimum(proven_total, RECORD_NUM_CHUNKS))
    return (overflow != 0) | (bad != 0) | zero_mask
