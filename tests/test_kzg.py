"""KZG (protocol.md §4): the spec vectors with the real setup, decoding rules, parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KZG_PARAMETERS

from autonomys_farmer.protocol import field, g1
from autonomys_farmer.protocol.kzg import (
    IDENTITY_G1,
    PARAMETERS_SIZE,
    Kzg,
    KzgError,
    decode_g1,
    insecure_parameters,
)
from autonomys_farmer.services.files import load_kzg

COMMIT_1_TO_8 = "b6f09b29bfe478edc9da34216bc53c90782ecfef0d6f738ce3e2ebe25cc0fa80788c9e04400e8b83684a1dd6321c40b4"
WITNESS_8_3 = "b85bf7fd280c371d561b6c0f84918cfd7d4ce1b872f4f02447afeb18e73f94d178ecca3f6361c6a995bdc07dc10dedb5"
TAU_G2 = (
    "a78b94342f7d47a92f8618d0cf60cd3f8c77279ffafb2f0d71e4be074979f1b2f536007e9dcd236abaabcac3769930791224556839c0"
    "c3b5bf3f3bad9727dfc5c3326539883a6b798bef5302776ede7b939374a236e96658b269c3f4a2ea859e"
)


G1_ONE_ONE = np.stack([g1.to_fp_row(1), g1.to_fp_row(1)])  # ZZ = ZZZ = 1: an affine point in XYZZ


def test_parameters(kzg):
    assert bytes(kzg.tau_g2.to_compressed_bytes()).hex() == TAU_G2
    assert g1.compress(g1.xyzz_to_affine(np.vstack([kzg.g1_rows[0], G1_ONE_ONE]))).hex().startswith("97f1d3a7")


def test_commit_and_witness_vectors(compute, kzg):
    poly = kzg.poly(compute, field.ints_to_rows(list(range(1, 9))))
    commitment = kzg.commit(compute, poly)
    assert commitment.hex() == COMMIT_1_TO_8
    witness = kzg.create_witness(compute, poly, 8, 3)
    assert witness.hex() == WITNESS_8_3
    assert kzg.verify(commitment, 8, 3, (4).to_bytes(32, "big"), witness)


def test_verify_rejects(compute, kzg):
    poly = kzg.poly(compute, field.ints_to_rows(list(range(1, 9))))
    commitment = kzg.commit(compute, poly)
    witness = kzg.create_witness(compute, poly, 8, 3)
    assert not kzg.verify(commitment, 8, 3, (5).to_bytes(32, "big"), witness)
    assert not kzg.verify(commitment, 8, 2, (4).to_bytes(32, "big"), witness)
    assert not kzg.verify(commitment, 8, 3, (4).to_bytes(32, "big"), IDENTITY_G1)
    assert not kzg.verify(bytes(48), 8, 3, (4).to_bytes(32, "big"), witness)
    assert not kzg.verify(commitment, 8, 3, b"\xff" * 32, witness)


@pytest.mark.parametrize(
    ("encoding", "reason"),
    [
        (b"\xc0" + bytes(46) + b"\x01", "non-canonical infinity"),
        (b"\xe0" + bytes(47), "non-canonical infinity"),
        (b"\x80" + bytes(47), "x = 0"),
        (bytes(48), "compression flag"),
        (b"\x9f" + b"\xff" * 47, "x >= p"),
        (b"\x80" + bytes(46) + b"\x01", "not on the curve"),
        (b"\x80" * 47, "48 bytes"),
    ],
)
def test_decode_g1_follows_blst(encoding, reason):
    with pytest.raises(KzgError, match=reason):
        decode_g1(encoding)


def test_identity_decodes():
    assert bytes(decode_g1(IDENTITY_G1).to_compressed_bytes()) == IDENTITY_G1


def test_the_packaged_setup_is_the_shared_one_and_a_bad_path_is_one_line(tmp_path, kzg):
    packaged = load_kzg()
    assert np.array_equal(packaged.g1_rows, kzg.g1_rows)
    assert bytes(packaged.tau_g2.to_compressed_bytes()) == bytes(kzg.tau_g2.to_compressed_bytes())
    with pytest.raises(KzgError, match="No such file or directory") as missing:
        load_kzg(tmp_path / "absent.bin")
    assert "absent.bin" in str(missing.value) and "\n" not in str(missing.value)


def test_load_checks_size_and_hash(tmp_path):
    bad = tmp_path / "params.bin"
    data = bytearray(KZG_PARAMETERS.read_bytes())
    data[100] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(KzgError, match="SHA-256"):
        load_kzg(bad)
    with pytest.raises(KzgError, match=f"{PARAMETERS_SIZE} bytes"):
        Kzg.from_bytes(b"\x00" * 10)


def test_insecure_dev_setup_round_trip(compute):
    kzg = Kzg.from_bytes(insecure_parameters(b"test", num_g1=16))
    poly = kzg.poly(compute, field.ints_to_rows([9, 8, 7, 6, 5, 4, 3, 2]))
    commitment = kzg.commit(compute, poly)
    witness = kzg.create_witness(compute, poly, 8, 5)
    assert kzg.verify(commitment, 8, 5, (4).to_bytes(32, "big"), witness)
    assert not kzg.verify(commitment, 8, 5, (3).to_bytes(32, "big"), witness)
    assert insecure_parameters(b"test", num_g1=16) == insecure_parameters(b"test", num_g1=16)
