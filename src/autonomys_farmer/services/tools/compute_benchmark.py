"""`autonomys-farmer benchmark gpu`: what a machine with a GPU runs first, to answer "does it work, and
how fast" in one command.

It compiles the backend's kernels, then checks plotting, proving, a 2^15-point MSM and piece
verification against the CPU backend, byte for byte, on real seeds and a real (synthetic-history)
sector. Any difference ends it with exit status 1 before anything is measured. Then it measures each
path and prints every figure beside its target.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from autonomys_farmer.protocol import g1
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.constants import MAX_PIECES_IN_SECTOR
from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.protocol.pieces import Piece, are_pieces_valid
from autonomys_farmer.protocol.plotting import plot_sector, plot_sector_in_memory
from autonomys_farmer.protocol.proving import RecordWin, prove_wins, warm_up_proving
from autonomys_farmer.protocol.sector import FarmerProtocolInfo, derive_evaluation_seed, derive_sector_id
from autonomys_farmer.protocol.types import HistorySize, PieceIndex, SectorIndex
from autonomys_farmer.services.tools.synthetic_history import (
    plotted_two_piece_sector,
    slot_wins,
    source_like_record,
    synthetic_sector,
)

PUBLIC_KEY = bytes(range(32))
INFO = FarmerProtocolInfo(HistorySize(1), 2, 5, (1, 10), 4)
CHECK_RECORDS = 8  # encoded both ways at most (the reference is the CPU: a few records)
MSM_POINTS = 1 << 15  # a commitment, a chunk witness, a batch verification
MIB = 2**20
# Targets (README): a 1000-piece sector in about a second and proofs in tens of milliseconds on one H100;
# on the CPU, 0.5 s per record on 2 cores and a proof within 1.3 s.
GPU_TARGETS = {"sector_s": 1.0, "prove_ms": 50.0, "msm_ms": 10.0, "verify_per_s": 2000.0, "gpu_mib_per_record": 1049.0}
CPU_RECORD_S_PER_CORE = 1.0  # 0.5 s per record on 2 cores
CPU_PROVE_MS = 1300.0


@dataclass(frozen=True)
class Options:
    records: int | None = None  # encoded for records/s (None: 16 batches on a GPU, 2 on the CPU)
    proofs: int = 5  # proofs timed
    pieces: int = 64  # pieces in the verification batch
    full: bool = False  # plot a whole 1000-piece sector instead of estimating it from records/s


@dataclass(frozen=True)
class Check:
    what: str
    identical: bool


@dataclass(frozen=True)
class Figure:
    what: str
    value: float | None  # None: not measurable here
    unit: str
    target: float | None = None
    at_most: bool = True  # the target is a ceiling (times, memory), else a floor (rates)
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None or self.target is None:
            return None
        return self.value <= self.target if self.at_most else self.value >= self.target

    def line(self) -> str:
        value = "—" if self.value is None else f"{self.value:,.1f} {self.unit}"
        target = "" if self.target is None else f"{'≤' if self.at_most else '≥'} {self.target:,.1f} {self.unit}"
        verdict = {True: "met", False: "NOT met", None: ""}[self.met]
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.what:<34} {value:>18}   target {target or '—':<16} {verdict}{note}"


@dataclass(frozen=True)
class Report:
    backend: str
    device: str
    compile_s: float
    checks: tuple[Check, ...]
    figures: tuple[Figure, ...] = ()

    @property
    def identical(self) -> bool:
        return all(check.identical for check in self.checks)

    def lines(self) -> list[str]:
        lines = [
            f"{self.backend} backend on {self.device}; kernels compiled or loaded in {self.compile_s:.1f} s",
            "self-check against the CPU backend:" if self.checks else "self-check: this is the CPU backend itself",
            *(f"  {c.what:<34} {'identical' if c.identical else 'DIFFERS'}" for c in self.checks),
        ]
        if not self.identical:
            return [*lines, "the backend differs from the CPU backend: do not plot or prove with it"]
        return [*lines, "figures:", *(figure.line() for figure in self.figures)]

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "identical": self.identical, "met": {f.what: f.met for f in self.figures}}


@dataclass(frozen=True)
class Workload:
    """The inputs both backends are given: records with real seeds, a 2-piece sector of a synthetic
    history (plotted by the reference), its first win, MSM scalars and pieces to verify."""

    seeds: list[bytes]
    records: np.ndarray
    pieces: list[Piece]
    piece_checks: list[tuple[Piece, bytes, int]]  # two valid pieces, then one corrupted
    plotted: bytes
    win: RecordWin
    scalars: np.ndarray

    @classmethod
    def build(cls, reference: Compute, kzg: Kzg, records: int) -> Workload:
        rng = np.random.default_rng(0)
        sector_id = derive_sector_id(PUBLIC_KEY, 0, INFO.history_size)
        history, indices, plotted = plotted_two_piece_sector(reference, kzg, PUBLIC_KEY, INFO)
        (win, *_) = slot_wins(reference, PUBLIC_KEY, plotted, wanted=1, max_slots=1000)
        pieces = [history.pieces[i] for i in indices]
        piece_checks = [
            (history.pieces[i], history.segment_commitments[PieceIndex(i).segment_index()], PieceIndex(i).position())
            for i in indices
        ]
        bad = bytearray(pieces[0].data)
        bad[1] ^= 1  # a record byte: the piece no longer matches its commitment
        piece_checks.append((Piece(bytes(bad)), piece_checks[0][1], piece_checks[0][2]))
        scalars = rng.integers(0, 2**32, (1, MSM_POINTS, 8), dtype=np.uint64).astype(np.uint32) & np.uint32(0x3FFFFFFF)
        return cls(
            [derive_evaluation_seed(sector_id, i) for i in range(records)],
            np.stack([source_like_record(rng) for _ in range(records)]),
            pieces, piece_checks, plotted.data + plotted.metadata.to_bytes(), win, np.ascontiguousarray(scalars),
        )  # fmt: skip


def self_check(compute: Compute, reference: Compute, kzg: Kzg, work: Workload) -> tuple[Check, ...]:
    """Every path a plot or proof server runs, on `compute` and on `reference`, compared byte for byte
    (nothing to compare when `compute` is the reference itself)."""
    if compute is reference:
        return ()
    n = max(1, min(compute.batch_records, CHECK_RECORDS, len(work.seeds)))
    got = compute.encode_records(work.seeds[:n], work.records[:n])
    want = reference.encode_records(work.seeds[:n], work.records[:n])
    same_records = bool(np.array_equal(got.chunks, want.chunks)) and bool(np.array_equal(got.encoded, want.encoded))
    sector = plot_sector_in_memory(compute, PUBLIC_KEY, SectorIndex(0), INFO.history_size, work.pieces)
    (proof,) = prove_wins(compute, kzg, [work.win])
    (expected_proof,) = prove_wins(reference, kzg, [work.win])
    rows = kzg.g1_rows[:MSM_POINTS]
    msm, expected_msm = (
        [g1.compress(g1.xyzz_to_affine(p)) for p in c.g1_msm(rows, work.scalars)] for c in (compute, reference)
    )
    randomness = bytes(32)
    verdicts = are_pieces_valid(compute, kzg, work.piece_checks, randomness)
    expected_verdicts = are_pieces_valid(reference, kzg, work.piece_checks, randomness)
    return (
        Check(f"{n} encoded records", same_records),
        Check("a plotted 2-piece sector", sector.data + sector.metadata.to_bytes() == work.plotted),
        Check("a proof (solution)", not isinstance(proof, Exception) and proof == expected_proof),
        Check(f"MSM of {MSM_POINTS} points", msm == expected_msm),
        Check("piece verification verdicts", verdicts == expected_verdicts == [True, True, False]),
    )


def measure(compute: Compute, kzg: Kzg, work: Workload, options: Options, gpu_mib: float | None) -> tuple[Figure, ...]:
    """Each figure beside its target (the GPU's on an H100; the CPU's scaled to the cores here)."""
    from autonomys_farmer.backends.cpu.kernels import usable_cores

    cuda = compute.name == "cuda"
    record_floor = MAX_PIECES_IN_SECTOR / GPU_TARGETS["sector_s"] if cuda else usable_cores() / CPU_RECORD_S_PER_CORE

    started = time.perf_counter()
    for start in range(0, len(work.seeds), compute.batch_records):
        stop = start + compute.batch_records
        compute.encode_records(work.seeds[start:stop], work.records[start:stop])
    records_per_s = len(work.seeds) / (time.perf_counter() - started)

    if options.full:
        sector = synthetic_sector(MAX_PIECES_IN_SECTOR, np.random.default_rng(1))
        started = time.perf_counter()
        with open(os.devnull, "wb") as out:
            plot_sector(compute, PUBLIC_KEY, SectorIndex(0), INFO.history_size, sector, out)
        sector_s, sector_note = time.perf_counter() - started, "measured whole"
        del sector
    else:
        sector_s, sector_note = MAX_PIECES_IN_SECTOR / records_per_s, "from records/s; --full measures it whole"

    prove_ms = 1000 * _median_s(lambda: prove_wins(compute, kzg, [work.win]), options.proofs)
    rows = kzg.g1_rows[:MSM_POINTS]
    msm_ms = 1000 * _median_s(lambda: compute.g1_msm(rows, work.scalars), 3)
    batch = [work.piece_checks[i % 2] for i in range(options.pieces)]
    verify_s = _median_s(lambda: are_pieces_valid(compute, kzg, batch, os.urandom(32)), 1)
    return (
        Figure("records encoded", records_per_s, "records/s", record_floor, at_most=False,
               note=f"{len(work.seeds)} records, {compute.batch_records} per call"),
        Figure(f"a {MAX_PIECES_IN_SECTOR}-piece sector", sector_s, "s",
               MAX_PIECES_IN_SECTOR / record_floor, note=sector_note),
        Figure("proving one win", prove_ms, "ms", GPU_TARGETS["prove_ms"] if cuda else CPU_PROVE_MS,
               note=f"median of {options.proofs}"),
        Figure(f"MSM of {MSM_POINTS} points", msm_ms, "ms", GPU_TARGETS["msm_ms"] if cuda else None),
        Figure("piece verification", options.pieces / verify_s, "pieces/s",
               GPU_TARGETS["verify_per_s"] if cuda else None, at_most=False, note=f"a batch of {options.pieces}"),
        Figure("GPU memory per record in flight", gpu_mib, "MiB", GPU_TARGETS["gpu_mib_per_record"] if cuda else None,
               note="what the warm-up allocated ÷ records in flight" if cuda else "no GPU"),
    )  # fmt: skip


def benchmark(
    compute: Compute, reference: Compute, kzg: Kzg, options: Options, say: Callable[[str], None] = print
) -> Report:
    """Compile, self-check, and (only when identical) measure."""
    say(f"{compute.name} backend on {compute.device}: compiling (or loading) the kernels")
    free_before = _gpu_free(compute)
    started = time.perf_counter()
    warm_up_proving(compute, kzg)
    compile_s = time.perf_counter() - started
    gpu_mib = None if free_before is None else (free_before - (_gpu_free(compute) or 0)) / compute.batch_records / MIB
    default_records = compute.batch_records * (16 if compute.name == "cuda" else 2)
    say(f"compiled in {compile_s:.1f} s; checking against the CPU backend ({reference.device})")
    work = Workload.build(reference, kzg, options.records or default_records)
    checks = self_check(compute, reference, kzg, work)
    report = Report(compute.name, compute.device, round(compile_s, 2), checks)
    if not report.identical:
        return report
    say("identical; measuring")
    return replace(report, figures=measure(compute, kzg, work, options, gpu_mib))


def _median_s(run: Callable[[], object], times: int) -> float:
    seconds: list[float] = []
    for _ in range(max(1, times)):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _gpu_free(compute: Compute) -> int | None:
    if compute.name != "cuda":
        return None
    from autonomys_farmer.backends.cuda.device import free_memory

    return free_memory()
