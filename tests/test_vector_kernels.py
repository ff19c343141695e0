"""The CPU's hot loops stay vectorised across lanes: numba/LLVM vectorising them is what makes fn, the
audit, row hashes, ChaCha8 and matching fast, and a change to a kernel body or launcher can lose it
silently (results stay right, only 3-4x slower). The compiled assembly must do BLAKE3's 32-bit adds
(and matching's candidate tests) in vector registers."""

from __future__ import annotations

import platform
import re

import llvmlite.binding as llvm
import numpy as np
import pytest
from numba import njit

from autonomys_farmer.backends.cpu import hashing, pos_table
from autonomys_farmer.protocol import pos

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 assembly")

# One BLAKE3 compression is 7 rounds of 8 G functions of 6 adds: 336 adds, each a vector add when the
# lanes are vectorised. Adds of the message words that are zero here (half the block) fold away, so
# at least half of them stay; a scalar loop has none.
VECTOR_ADDS_AT_LEAST = 7 * 8 * 6 // 2


def vector_adds(asm: str) -> int:
    """32-bit lane-wise adds on the widest vectors the host has (AT&T syntax)."""
    features = llvm.get_host_cpu_features().flatten().split(",")
    width = "[yz]mm" if "+avx2" in features else "xmm"
    return len(re.findall(rf"\bv?paddd\s+[^\n]*%{width}\d+\s*$", asm, re.MULTILINE))


def fresh(dispatcher):
    """The same function compiled anew in this process (numba shows no assembly of cached code)."""
    return njit(nogil=True)(dispatcher.py_func)


def assembly(dispatcher) -> str:
    return "\n".join(dispatcher.inspect_asm().values())


def test_fn_hashes_its_lanes_in_vector_registers() -> None:
    n = 40
    y = np.arange(n, dtype=np.int32)
    meta = np.arange(n, dtype=np.uint64)
    index = np.arange(n, dtype=np.int32)
    outputs = (np.empty(n, np.int32), np.empty(n, np.uint64), np.empty(n, np.uint64))
    fn_lanes = fresh(pos_table.fn_lanes)
    fn_lanes(2, pos.K, y, meta, meta, index, index, *outputs, 0, n)
    assert vector_adds(assembly(fn_lanes)) >= VECTOR_ADDS_AT_LEAST


def test_the_audit_hashes_its_lanes_in_vector_registers() -> None:
    words = np.zeros((40, 8), np.uint32)
    hits = (np.empty(1, np.int64), np.empty(1, np.int64), np.empty(1, np.uint64))
    keys = np.zeros((1, 8), np.uint32)
    audit = fresh(hashing.audit_chunks_launch)
    audit(words, np.array([0, 40]), keys, np.uint64(0), np.uint64(0), *hits)
    assert vector_adds(assembly(audit)) >= VECTOR_ADDS_AT_LEAST


def test_row_hashing_hashes_its_lanes_in_vector_registers() -> None:
    """Proof hashes when plotting and reading, keyed chunk hashes of the reference audit."""
    words = np.zeros((20, 40), np.uint32)
    hash_rows = fresh(hashing.hash_rows_lanes)
    hash_rows(words, 160, hashing.IV, 0, np.empty((20, 8), np.uint32), 0, 20)
    assert vector_adds(assembly(hash_rows)) >= VECTOR_ADDS_AT_LEAST


def test_the_chacha8_keystream_runs_its_blocks_in_vector_registers() -> None:
    """ChaCha8 (4 double rounds of 8 quarter rounds of 4 adds: 128 adds a block), block counters as lanes."""
    keystream = fresh(hashing.keystream_lanes)
    keystream(np.zeros(8, np.uint32), np.empty((20, 16), np.uint32), 0, 20)
    assert vector_adds(assembly(keystream)) >= 128


def test_matching_tests_a_left_entrys_64_candidates_in_vector_registers() -> None:
    """The right bucket's row bitmaps are read with contiguous loads and per-lane shifts (vpsrlvq), not
    gathers (slow on AMD) nor one candidate at a time (3x slower when it was)."""
    y = np.sort(np.random.default_rng(1).integers(0, 8 * pos.PARAM_BC, 2048)).astype(np.int32)
    starts = np.searchsorted(y, np.arange(9) * pos.PARAM_BC)
    left, right = np.empty(8192, np.int32), np.empty(8192, np.int32)
    match = fresh(pos_table.match_launch.serial)
    match(y, starts, pos_table.SQUARES, left, right, np.empty(1, np.int64))
    if "+avx2" not in llvm.get_host_cpu_features().flatten().split(","):
        pytest.skip("per-lane shifts need AVX2")
    asm = assembly(match)
    assert re.search(r"\bvpsrlvq\s+[^\n]*%[yz]mm\d+\s*$", asm, re.MULTILINE), "no vector shifts"
    assert "vpgather" not in asm
