"""Proving and piece-verification benchmarks, every backend this machine has side by side; prints
figures for the README (not a test).

python bench/bench_proving.py [--kzg PATH] [--pieces N]

- MSM of 2^15 points (a commitment, a chunk witness, a batch verification): the CPU backend (numba,
  all cores), py-arkworks (the oracle, one core) and the CUDA backend when a GPU is usable.
- Proving latency: one win, and four wins proved as one batch (what a proof server does with the
  wins of one slot), per backend.
- Piece verification: a batch of N pieces checked against their segment commitment, pieces/s.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_protocol import DEFAULT_KZG, timed
from py_arkworks_bls12381 import G1Point, Scalar

from autonomys_farmer.backends.cpu.backend import CpuBackend
from autonomys_farmer.backends.cuda.device import unavailable_reason
from autonomys_farmer.protocol import g1
from autonomys_farmer.protocol import sector as sec
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.field import BLS_MODULUS
from autonomys_farmer.protocol.kzg import Kzg, to_arkworks
from autonomys_farmer.protocol.pieces import are_pieces_valid
from autonomys_farmer.protocol.proving import prove_wins, warm_up_proving
from autonomys_farmer.services.files import load_kzg
from autonomys_farmer.services.tools.synthetic_history import SyntheticHistory, plotted_two_piece_sector, slot_wins

PUBLIC_KEY = bytes(range(32))


def backends() -> list[Compute]:
    found: list[Compute] = [CpuBackend()]
    reason = unavailable_reason()
    if reason is None:
        from autonomys_farmer.backends.cuda.backend import CudaBackend

        found.append(CudaBackend())
    else:
        print(f"cuda: not measured ({reason})")
    return found


def bench_msm(kzg: Kzg, computes: list[Compute]) -> None:
    n = 1 << 15
    rng = random.Random(0)
    scalar_ints = [rng.randrange(BLS_MODULUS) for _ in range(n)]
    scalars = g1.scalar_rows(scalar_ints)[None]
    rows = kzg.g1_rows[:n]
    results = set()
    for compute in computes:
        seconds = timed(lambda c=compute: c.g1_msm(rows, scalars))
        results.add(g1.compress(g1.xyzz_to_affine(compute.g1_msm(rows, scalars)[0])))
        print(f"MSM 2^15, {compute.name} on {compute.device}: {seconds * 1e3:9.1f} ms")
    points = [to_arkworks((g1.from_fp_row(row[0]), g1.from_fp_row(row[1]))) for row in rows]
    ark_scalars = [Scalar(s) for s in scalar_ints]
    ark_s = timed(lambda: G1Point.multiexp_unchecked(points, ark_scalars))
    conversion_s = timed(lambda: [Scalar(s) for s in scalar_ints], repeat=1)
    results.add(bytes(G1Point.multiexp_unchecked(points, ark_scalars).to_compressed_bytes()))
    print(f"MSM 2^15, py-arkworks (one core): {ark_s * 1e3:9.1f} ms (+{conversion_s * 1e3:.0f} ms scalar conversion)")
    assert len(results) == 1, "backends disagree"


def bench_proving(kzg: Kzg, computes: list[Compute]) -> None:
    info = sec.FarmerProtocolInfo(1, 2, 5, (1, 10), 4)
    _history, _indices, plotted = plotted_two_piece_sector(computes[0], kzg, PUBLIC_KEY, info)
    wins = slot_wins(computes[0], PUBLIC_KEY, plotted, wanted=4, max_slots=1000)
    for compute in computes:
        warm_up_proving(compute, kzg)
        one = timed(lambda c=compute: prove_wins(c, kzg, wins[:1]))
        four = timed(lambda c=compute: prove_wins(c, kzg, wins[:4]), repeat=2)
        print(
            f"proving, {compute.name} on {compute.device}: one win {one * 1e3:.0f} ms, "
            f"four wins as one batch {four * 1e3:.0f} ms ({four / 4 * 1e3:.0f} ms/win)"
        )


def bench_verification(kzg: Kzg, computes: list[Compute], count: int) -> None:
    history = SyntheticHistory(computes[0], kzg, list(range(count)))
    triples = [(history.pieces[i], history.segment_commitments[0], i) for i in range(count)]
    for compute in computes:
        seconds = timed(lambda c=compute: are_pieces_valid(c, kzg, triples, os.urandom(16)), repeat=2)
        print(
            f"piece verification, batch of {count}, {compute.name} on {compute.device}: "
            f"{count / seconds:.0f} pieces/s ({seconds / count * 1e3:.1f} ms/piece)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kzg", type=Path, default=DEFAULT_KZG)
    parser.add_argument("--pieces", type=int, default=64, help="pieces in the verification batch")
    args = parser.parse_args()
    kzg = load_kzg(args.kzg)
    computes = backends()
    print(f"{os.cpu_count()} CPU cores")
    bench_msm(kzg, computes)
    bench_proving(kzg, computes)
    bench_verification(kzg, computes, args.pieces)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
