"""Protocol-core benchmarks on the CPU backend; prints figures for the README (not a test).

python bench/bench_protocol.py [--kzg PATH]     (whole-sector plotting: bench/bench_plotting.py)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from autonomys_farmer.backends.cpu.backend import CpuBackend
from autonomys_farmer.protocol import erasure, field
from autonomys_farmer.protocol import sector as sec
from autonomys_farmer.protocol.auditing import audit_sector
from autonomys_farmer.protocol.constants import MAX_PIECES_IN_SECTOR, RECORD_NUM_S_BUCKETS
from autonomys_farmer.protocol.pieces import are_pieces_valid, is_piece_valid
from autonomys_farmer.protocol.plotting import plot_sector_in_memory
from autonomys_farmer.protocol.proving import prove_record
from autonomys_farmer.protocol.reading import PlottedSectorView
from autonomys_farmer.services.files import load_kzg
from autonomys_farmer.services.tools.synthetic_history import SyntheticHistory, source_like_record

DEFAULT_KZG = Path(__file__).resolve().parents[2] / "shared" / "kzg" / "eth-public-parameters.bin"


def timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up (numba compilation, caches)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kzg", type=Path, default=DEFAULT_KZG)
    args = parser.parse_args()
    compute = CpuBackend()
    rng = np.random.default_rng(0)
    print(f"backend: {compute.name} on {compute.device}")

    seed = bytes(range(32))
    table_s = timed(lambda: compute.proof_table(seed))
    print(f"PoS table (K=20, 7 tables):        {table_s * 1e3:8.1f} ms/record")
    tab = compute.proof_table(seed)
    find_s = timed(lambda: tab.find_proofs(np.arange(RECORD_NUM_S_BUCKETS, dtype=np.uint32)))
    print(f"proof search, all 65536 s-buckets: {find_s * 1e3:8.1f} ms/record")

    record = source_like_record(rng)
    rows = field.scalars_to_rows(compute, record)
    ext_s = timed(lambda: erasure.extend(compute, rows))
    print(f"erasure extension (2^15 -> 2^16):  {ext_s * 1e3:8.1f} ms/record")

    records = np.stack([source_like_record(rng) for _ in range(compute.cores)])
    seeds = [bytes([i]) * 32 for i in range(compute.cores)]
    enc_s = timed(lambda: compute.encode_records(seeds, records), repeat=1)
    print(f"record encoding, one per core:      {enc_s / compute.cores * 1e3:8.1f} ms/record")

    # Audit of a mainnet-sized sector: one s-bucket of ~500 chunks is read and hashed.
    pieces = MAX_PIECES_IN_SECTOR
    sizes = np.full(RECORD_NUM_S_BUCKETS, pieces // 2, np.uint16)
    meta = sec.SectorMetadata(0, pieces, sizes, 1)
    data = np.zeros(sec.sector_size(pieces), np.uint8)
    challenge = bytes(range(32, 64))
    audit_s = timed(lambda: audit_sector(compute, seed, challenge, 2**60, data, meta), repeat=20)
    print(f"audit, {pieces}-piece sector:          {audit_s * 1e3:8.2f} ms/sector")

    kzg = load_kzg(args.kzg)
    pk = bytes(range(32))
    info = sec.FarmerProtocolInfo(1, 1, 5, (1, 10), 4)
    indices = sec.derive_sector_piece_indices(sec.derive_sector_id(pk, 0, 1), 1, info)
    history = SyntheticHistory(compute, kzg, indices)
    plotted = plot_sector_in_memory(compute, pk, 0, 1, [history.pieces[indices[0]]])
    view = PlottedSectorView.open(plotted.data, plotted.metadata)
    s_bucket = int(np.flatnonzero(view.contents.encoded[0])[0])
    prove_s = timed(lambda: prove_record(compute, kzg, pk, pk, view, 0, s_bucket), repeat=2)
    print(f"proving (table + recover + witness): {prove_s * 1e3:8.1f} ms")

    # What a plot server pays per piece to check it against its segment commitment.
    batch = 32
    pieces_history = SyntheticHistory(compute, kzg, list(range(batch)))
    triples = [(pieces_history.pieces[i], pieces_history.segment_commitments[0], i) for i in range(batch)]
    single_s = timed(lambda: is_piece_valid(compute, kzg, *triples[0]), repeat=2)
    print(f"piece verification, one at a time: {single_s * 1e3:8.1f} ms/piece")
    batch_s = timed(lambda: are_pieces_valid(compute, kzg, triples, os.urandom(16)), repeat=2)
    print(f"piece verification, batch of {batch}:  {batch_s / batch * 1e3:8.1f} ms/piece")


if __name__ == "__main__":
    main()
