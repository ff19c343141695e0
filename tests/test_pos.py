"""Proof of space: upstream vectors (pos.md §10), the reference/kernel agreement, and chiapos."""

from __future__ import annotations

import subprocess
import sys

import blake3
import numpy as np
import pytest
from vectors import (
    CHIA_TEST_KEY,
    F1_K22,
    F1_K25,
    ONES_TABLE_SIZES_K20,
    S35,
    S35_DIGEST1,
    S35_DIGEST2,
    S35_FIRST_PROOF_HASHES,
    S35_NO_PROOF_CHALLENGE,
    S35_PROOF_HASHES,
    S35_PROOFS,
    S35_S_BUCKETS_WITH_PROOF,
    S35_TABLE_SIZES,
    S35_TOTAL_CANDIDATES,
    VERIFY_FN_K16,
    to_chia_seed,
)

from autonomys_farmer.backends.cpu import pos_table
from autonomys_farmer.backends.cpu.hashing import keystream_launch
from autonomys_farmer.backends.cpu.pos_table import PosTable
from autonomys_farmer.protocol import pos

# One worker: the compiled fn entry point and the S35 table are built once, not on both workers at once.
pytestmark = pytest.mark.xdist_group("pos-kernels")


def keystream(seed: bytes, k: int) -> np.ndarray:
    out = np.zeros(-(-(k << k) // 512) * 64 + 8, np.uint8)
    keystream_launch(True, np.array(pos.chacha8_key_words(seed), np.uint32), out)
    return out


def f1_all(ks: np.ndarray, k: int) -> np.ndarray:
    y = np.empty(1 << k, np.int32)
    pos_table.f1_launch(True, ks, k, y)
    return y


def fn_batch(table: int, k: int, y_left, meta_left: list[int], meta_right: list[int]) -> tuple[list[int], list[int]]:
    """The compiled fn (the tables' own launcher) over explicit (y, meta_left, meta_right) triples: entry
    2i is the left one, 2i+1 the right one."""
    n = len(meta_left)
    ys = np.zeros(2 * n, np.int32)
    ys[0::2] = np.asarray(y_left, np.int32)
    metas = [m for pair in zip(meta_left, meta_right, strict=True) for m in pair]
    hi = np.array([m >> 64 for m in metas], np.uint64)
    lo = np.array([m & (2**64 - 1) for m in metas], np.uint64)
    left, right = np.arange(0, 2 * n, 2, dtype=np.int32), np.arange(1, 2 * n, 2, dtype=np.int32)
    y_out, hi_out, lo_out = np.empty(n, np.int32), np.zeros(n, np.uint64), np.empty(n, np.uint64)
    pos_table.fn_table(False, table, k, ys, hi, lo, left, right, y_out, hi_out, lo_out)
    return [int(y) for y in y_out], [(int(h) << 64) | int(lo) for h, lo in zip(hi_out, lo_out, strict=True)]


@pytest.mark.parametrize(("k", "cases"), [(25, F1_K25), (22, F1_K22)])
def test_f1_vectors_reference_and_kernel(k, cases):
    seed = to_chia_seed(CHIA_TEST_KEY)
    ys = f1_all(keystream(seed, k), k)
    for x, y in cases:
        assert pos.f1(seed, x, k) == y
        assert ys[x] == y


@pytest.mark.parametrize("case", VERIFY_FN_K16, ids=lambda c: f"t{c[0]}-{c[3]:x}")
def test_verify_fn_vectors(case):
    table, m_l, m_r, y_in, y_out, meta_out = case
    y, meta = pos.fn(table, y_in, m_l, m_r, k=16)
    ys, metas = fn_batch(table, 16, np.array([y_in]), [m_l], [m_r])
    assert y == y_out == ys[0]
    if meta_out:
        assert meta == meta_out == metas[0]


def test_fn_kernel_matches_reference_on_random_inputs():
    rng = np.random.default_rng(5)
    for table in range(2, 8):
        pb = pos.metadata_bits(table - 1)
        ys = rng.integers(0, 1 << 26, 50)
        ml = [int(rng.integers(0, 2**63)) << 17 ^ int(rng.integers(0, 2**17)) for _ in range(50)]
        mr = [int(rng.integers(0, 2**63)) << 17 ^ int(rng.integers(0, 2**17)) for _ in range(50)]
        ml = [m & ((1 << pb) - 1) for m in ml]
        mr = [m & ((1 << pb) - 1) for m in mr]
        ky, km = fn_batch(table, pos.K, ys, ml, mr)
        for i in range(50):
            assert (int(ky[i]), km[i]) == pos.fn(table, int(ys[i]), ml[i], mr[i])


def test_fn_lanes_equal_the_reference_in_full_and_partial_blocks():
    """The CPU's lane-major fn launcher (blocks of FN_BLOCK matches, the last one partial) on random
    entries of every table, against the reference fn."""
    rng = np.random.default_rng(6)
    n = pos_table.FN_BLOCK + 5
    for table in range(2, 8):
        pb = pos.metadata_bits(table - 1)
        ys = rng.integers(0, 1 << 26, n).astype(np.int32)
        metas = [int(rng.integers(0, 2**63)) << 65 ^ int(rng.integers(0, 2**63)) for _ in range(n)]
        metas = [m & ((1 << pb) - 1) for m in metas]
        hi = np.array([m >> 64 for m in metas], np.uint64)
        lo = np.array([m & (2**64 - 1) for m in metas], np.uint64)
        left = rng.integers(0, n, n).astype(np.int32)
        right = rng.integers(0, n, n).astype(np.int32)
        y_out, hi_out, lo_out = np.empty(n, np.int32), np.zeros(n, np.uint64), np.empty(n, np.uint64)
        pos_table.fn_table(False, table, pos.K, ys, hi, lo, left, right, y_out, hi_out, lo_out)
        for i in range(n):
            want = pos.fn(table, int(ys[left[i]]), metas[left[i]], metas[right[i]])
            assert (int(y_out[i]), (int(hi_out[i]) << 64) | int(lo_out[i])) == want, (table, i)


def test_s35_tables_and_first_proofs(s35_table):
    assert tuple(s35_table.sizes) == S35_TABLE_SIZES
    for challenge, proof_hex in S35_PROOFS.items():
        proof = s35_table.find_proof(challenge)
        assert proof is not None and proof.hex() == proof_hex
        assert pos.proof_hash(proof).hex() == S35_PROOF_HASHES[challenge]
    assert s35_table.find_proof(S35_NO_PROOF_CHALLENGE) is None


def test_s35_all_s_buckets_digest(s35_table):
    has, proofs = s35_table.find_proofs(np.arange(65536, dtype=np.uint32))
    assert int(has.sum()) == S35_S_BUCKETS_WITH_PROOF
    d1, d2 = blake3.blake3(), blake3.blake3()
    for s in np.flatnonzero(has):
        prefix = int(s).to_bytes(2, "little")
        d1.update(prefix + proofs[s].tobytes())
        d2.update(prefix + blake3.blake3(proofs[s].tobytes()).digest())
    assert d1.hexdigest() == S35_DIGEST1
    assert d2.hexdigest() == S35_DIGEST2
    for s, digest in S35_FIRST_PROOF_HASHES.items():
        assert blake3.blake3(proofs[s].tobytes()).hexdigest() == digest
    assert not has[:3].any()
    # Total candidates: table-7 entries whose top 20 bits are an s-bucket's fk.
    fk = np.arange(65536, dtype=np.uint32).byteswap().astype(np.int64) >> 12
    assert int(np.isin(s35_table.y7 >> 6, fk).sum()) == S35_TOTAL_CANDIDATES


def test_reference_verifier_accepts_kernel_proofs_and_rejects_tampering(s35_table):
    proof = bytes.fromhex(S35_PROOFS[1011])
    assert pos.is_proof_valid(S35, 1011, proof)
    assert not pos.is_proof_valid(S35, 1012, proof)
    flipped = bytearray(proof)
    flipped[40] ^= 0x10
    assert not pos.is_proof_valid(S35, 1011, bytes(flipped))
    xs = pos.unpack_proof(proof)
    xs[0], xs[1] = xs[1], xs[0]
    assert not pos.is_proof_valid(S35, 1011, pos.pack_proof(xs))
    assert not pos.is_proof_valid(S35, 1011, proof[:-1])
    assert not pos.is_proof_valid(S35[:31], 1011, proof)
    has, proofs = s35_table.find_proofs(np.arange(3000, 3400, dtype=np.uint32))
    for ci in np.flatnonzero(has)[:40]:
        assert pos.is_proof_valid(S35, 3000 + int(ci), proofs[ci].tobytes())


def test_verifier_has_no_bucket_adjacency_check():
    """A right y in a non-adjacent bucket still matches if its r is a target (Subspace, not Chia)."""
    y_left = 5 * pos.PARAM_BC + 1000
    r_target = pos.target(5 % 2, 1000, 7)
    adjacent = 6 * pos.PARAM_BC + r_target
    far = 40 * pos.PARAM_BC + r_target
    assert pos.has_match(y_left, adjacent)
    assert pos.has_match(y_left, far)
    assert not pos.has_match(y_left, 6 * pos.PARAM_BC + (r_target + 1) % pos.PARAM_BC)


def test_matches_satisfy_chia_check_at_k12():
    seed = to_chia_seed(
        bytes(
            [
                20,
                2,
                5,
                4,
                51,
                52,
                23,
                84,
                91,
                10,
                111,
                12,
                13,
                24,
                151,
                16,
                228,
                211,
                254,
                45,
                92,
                198,
                204,
                10,
                9,
                10,
                11,
                129,
                139,
                171,
                15,
                18,
            ]
        )
    )
    k = 12
    y = np.sort(f1_all(keystream(seed, k), k))
    nb = pos.num_buckets(k)
    starts = np.searchsorted(y, np.arange(nb + 1) * pos.PARAM_BC)
    left, right = pos_table.find_matches(y, starts, parallel=True)
    n = len(left)
    assert 2**11 < n < 2**13
    for i in range(n):
        yl, yr = int(y[left[i]]), int(y[right[i]])
        assert yr // pos.PARAM_BC - yl // pos.PARAM_BC == 1
        assert pos.has_match(yl, yr)
    assert list(zip(left, right, strict=True)) == sorted(zip(left, right, strict=True))


def test_chiapos_validates_our_proofs_and_its_proofs_are_ours(tmp_path):
    """Independent oracle (pos.md §12): seed [1;32] is expressible in chiapos as plot_id 01…01."""
    chiapos = pytest.importorskip("chiapos")
    seed = bytes([1] * 32)
    table = PosTable(seed)
    assert tuple(table.sizes) == ONES_TABLE_SIZES_K20
    verifier = chiapos.Verifier()
    plot_id = seed[1:] + b"\x00"
    challenges = np.arange(0, 65536, 97, dtype=np.uint32)
    has, proofs = table.find_proofs(challenges)
    assert has.sum() > len(challenges) // 2
    for ci, ok, proof in zip(challenges, has, proofs, strict=True):
        if ok:
            challenge = int(ci).to_bytes(4, "little") + bytes(28)
            assert verifier.validate_proof(plot_id, 20, challenge, proof.tobytes()) is not None

    # chiapos's plotter sets RLIMIT_NOFILE to 600 (soft and hard) in its process: in a child, so that this
    # worker's later tests (supervisord wants 1024) keep the limit they started with.
    plot = (
        "import chiapos, sys; chiapos.DiskPlotter().create_plot_disk("
        f"*[sys.argv[1]] * 3, 'k20.plot', 20, b'', bytes.fromhex('{plot_id.hex()}'), 300, 32, 8192, 2, False)"
    )
    subprocess.run([sys.executable, "-c", plot, str(tmp_path)], check=True, capture_output=True, timeout=300)
    prover = chiapos.DiskProver(str(tmp_path / "k20.plot"))
    checked = 0
    for ci in challenges[:150]:
        challenge = int(ci).to_bytes(4, "little") + bytes(28)
        ours = _all_proofs(table, int(ci))
        for index in range(len(prover.get_qualities_for_challenge(challenge))):
            theirs = bytes(prover.get_full_proof(challenge, index))
            assert theirs in ours  # chiapos ⊆ ours (it may miss a few near C1 checkpoints)
            checked += 1
    assert checked > 50


def _all_proofs(table: PosTable, challenge_index: int) -> set[bytes]:
    fk = pos.challenge_fk(challenge_index)
    lo = np.searchsorted(table.y7, fk << 6)
    hi = np.searchsorted(table.y7, (fk + 1) << 6)
    return {p.tobytes() for p in table.proofs_at(np.arange(lo, hi))} if hi > lo else set()


def test_a_table_grown_past_a_sixteenth_over_2k_still_fits() -> None:
    """Later tables grow: this mainnet-size seed's table 7 holds more than 2^k + 1/16 entries (CPU buffers
    sized by that once overflowed a 1000-piece sector), and reused buffers build it like fresh ones."""
    from autonomys_farmer.protocol.sector import derive_evaluation_seed, derive_sector_id

    seed = derive_evaluation_seed(derive_sector_id(bytes(range(32)), 0, 1), 42)
    buffers = pos_table.TableBuffers(pos.K, parallel=False)
    PosTable(bytes(32), parallel=False, buffers=buffers)  # the buffers hold another seed's tables first
    table = PosTable(seed, parallel=False, buffers=buffers)
    assert table.sizes[-1] > (1 << pos.K) + (1 << pos.K) // 16
    fresh = PosTable(seed)
    assert table.sizes == fresh.sizes and (table.y7 == fresh.y7).all()
    assert (table.lefts == fresh.lefts).all() and (table.rights == fresh.rights).all()
