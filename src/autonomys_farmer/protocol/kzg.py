"""KZG over BLS12-381 with the monomial 2^15 setup (protocol.md §4).

Polynomials are coefficient vectors (Montgomery rows, protocol.field); values/points are scalars.
Commitments and witnesses are multi-scalar multiplications, done by the compute backend (`g1_msm`, on
the GPU when there is one); py-arkworks-bls12381 decodes points and checks pairings. Encodings are
blst's compressed G1 (48 bytes); decoding follows blst exactly (no subgroup check, reject x = 0 and
non-canonical infinity), which arkworks' unchecked decoder needs help with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import blake3
import numpy as np
from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

from autonomys_farmer.protocol import field, g1
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.field import BLS_MODULUS, next_power_of_two, root_of_unity
from autonomys_farmer.protocol.g1 import FP_MODULUS as BLS_BASE_FIELD_MODULUS

NUM_G1_POWERS = 32768
NUM_G2_POWERS = 65
G1_SIZE = 48
G2_SIZE = 96
PARAMETERS_SIZE = NUM_G1_POWERS * G1_SIZE + NUM_G2_POWERS * G2_SIZE  # 1,579,104
PARAMETERS_SHA256 = "f3ead1a6249527aa503d6c56578325c01d19b3365cc59905be2bba64ae322925"
IDENTITY_G1 = g1.COMPRESSED_IDENTITY


class KzgError(ValueError):
    """Bad parameters, a polynomial too large for the setup, or an undecodable point."""


def decode_g1(data: bytes) -> G1Point:
    """blst_p1_uncompress semantics: compressed flag, canonical infinity, x < p, x != 0, on curve."""
    if len(data) != G1_SIZE:
        raise KzgError(f"G1 point must be {G1_SIZE} bytes, got {len(data)}")
    if not data[0] & 0x80:
        raise KzgError(f"G1 point {data.hex()} lacks the compression flag")
    if data[0] & 0x40:
        if data != IDENTITY_G1:
            raise KzgError(f"G1 point {data.hex()} is a non-canonical infinity encoding")
        return G1Point.identity()
    x = int.from_bytes(bytes([data[0] & 0x1F]) + data[1:], "big")
    if x >= BLS_BASE_FIELD_MODULUS:
        raise KzgError(f"G1 point {data.hex()} has x >= p")
    if x == 0:
        raise KzgError(f"G1 point {data.hex()} has x = 0 (not in the group)")
    try:
        return G1Point.from_compressed_bytes_unchecked(data)
    except Exception as e:  # arkworks raises plain exceptions for points off the curve
        raise KzgError(f"G1 point {data.hex()} is not on the curve") from e


def affine_rows(points: Sequence[G1Point]) -> np.ndarray:
    """The contract's (n, 2, 12) Montgomery affine rows of decoded points."""
    return g1.affine_rows([g1.xy_le_to_affine(bytes(p.to_xy_bytes_le())) for p in points])


def to_arkworks(point: tuple[int, int] | None) -> G1Point:
    return G1Point.from_xy_bytes_unchecked_le(g1.affine_to_xy_le(point))


def msm(compute: Compute, rows: np.ndarray, scalars: Sequence[int]) -> tuple[int, int] | None:
    """Σ s_i·P_i for affine rows and integer scalars (reduced mod r), as an affine point."""
    return g1.xyzz_to_affine(compute.g1_msm(rows, g1.scalar_rows(scalars)[None])[0])


Opening = tuple[bytes, int, int, bytes, bytes]  # (commitment, num_values, index, value, witness)


@dataclass(frozen=True, eq=False)
class Kzg:
    """The setup: [τ^i]G1 for i < 32768 (as the contract's affine rows), G2 and [τ]G2 (only those two G2
    powers are ever used)."""

    g1_rows: np.ndarray  # (32768, 2, 12) uint32, Montgomery affine
    g2: G2Point
    tau_g2: G2Point

    @classmethod
    def from_bytes(cls, data: bytes, expected_sha256: str | None = None) -> Kzg:
        """Parse a parameters file; with expected_sha256 (the pinned hash for the real setup) check it."""
        if expected_sha256 is not None and (digest := hashlib.sha256(data).hexdigest()) != expected_sha256:
            raise KzgError(f"KZG parameters have SHA-256 {digest}, expected {expected_sha256}")
        if len(data) != PARAMETERS_SIZE:
            raise KzgError(f"KZG parameters must be {PARAMETERS_SIZE} bytes, got {len(data)}")
        g1_points = [
            G1Point.from_compressed_bytes_unchecked(data[i * G1_SIZE : (i + 1) * G1_SIZE]) for i in range(NUM_G1_POWERS)
        ]
        base = NUM_G1_POWERS * G1_SIZE
        g2 = G2Point.from_compressed_bytes_unchecked(data[base : base + G2_SIZE])
        tau_g2 = G2Point.from_compressed_bytes_unchecked(data[base + G2_SIZE : base + 2 * G2_SIZE])
        return cls(affine_rows(g1_points), g2, tau_g2)

    def commit(self, compute: Compute, coeffs: np.ndarray) -> bytes:
        """Σ c_j·[τ^j]G1, compressed."""
        return self.commit_many(compute, coeffs[None])[0]

    def commit_many(self, compute: Compute, coeffs: np.ndarray) -> list[bytes]:
        """commit() of every (n, 8) block of a (count, n, 8) array, in one batched MSM."""
        n = coeffs.shape[1]
        if n > NUM_G1_POWERS:
            raise KzgError(f"polynomial of {n} coefficients exceeds the {NUM_G1_POWERS}-power setup")
        if n == 0:
            return [IDENTITY_G1] * coeffs.shape[0]
        scalars = field.from_montgomery(compute, coeffs.reshape(-1, 8)).reshape(coeffs.shape)
        points = compute.g1_msm(self.g1_rows[:n], scalars)
        return [g1.compress(g1.xyzz_to_affine(point)) for point in points]

    def poly(self, compute: Compute, values: np.ndarray) -> np.ndarray:
        """Coefficients of the polynomial through values at ω_n^i (n must be a power of two)."""
        return field.ifft(compute, values)

    def create_witness(self, compute: Compute, coeffs: np.ndarray, num_values: int, index: int) -> bytes:
        """Opening proof at x = ω_M^index, M = next_power_of_two(num_values)."""
        return self.create_witnesses(compute, coeffs, num_values, [index])[0]

    def create_witnesses(
        self, compute: Compute, coeffs: np.ndarray, num_values: int, indices: Sequence[int]
    ) -> list[bytes]:
        """create_witness() at several indices of one polynomial, in one batched MSM."""
        return self.open_many(compute, [(coeffs, index) for index in indices], num_values)

    def open_many(self, compute: Compute, openings: Sequence[tuple[np.ndarray, int]], num_values: int) -> list[bytes]:
        """Witnesses of several (polynomial, index) openings of equal degree over one domain, in one
        batched MSM (a proof server opens several winning records of a slot at once)."""
        x = root_of_unity(next_power_of_two(num_values))
        quotients = []
        for coeffs, index in openings:
            if coeffs.shape[0] == 0:
                raise KzgError("cannot open an empty polynomial")
            if coeffs.shape[0] - 1 > NUM_G1_POWERS:
                raise KzgError(f"quotient of {coeffs.shape[0] - 1} coefficients exceeds the setup")
            point = field.ints_to_rows([pow(x, index, BLS_MODULUS)])
            quotients.append(compute.synthetic_division(np.ascontiguousarray(coeffs), point))
        if len({q.shape for q in quotients}) > 1:
            raise KzgError("batched openings need polynomials of one length")
        return self.commit_many(compute, np.stack(quotients)) if quotients else []

    def verify(self, commitment: bytes, num_values: int, index: int, value: bytes, witness: bytes) -> bool:
        """e(C − y·G1, G2) == e(π, [τ]G2 − x·G2); False on any undecodable input."""
        decoded = _decode_opening((commitment, num_values, index, value, witness))
        if decoded is None:
            return False
        c, pi, x, y = decoded
        lhs = c - G1Point() * Scalar(y)
        rhs_g2 = self.tau_g2 - self.g2 * Scalar(x)
        return bool(GT.pairing_check([lhs, pi], [-self.g2, rhs_g2]))

    def verify_batch(self, compute: Compute, openings: Sequence[Opening], weights: Sequence[int]) -> bool:
        """Every opening at once, with one pairing check:
        e(Σ w_k·(C_k − y_k·G1 + x_k·π_k), G2) == e(Σ w_k·π_k, [τ]G2).
        Each opening alone is e(C − y·G1 + x·π, G2) == e(π, [τ]G2); with random weights of b bits a
        false one passes with probability at most 2^-b. False on any undecodable input."""
        points: list[G1Point] = []
        scalars: list[int] = []
        witnesses: list[G1Point] = []
        y_sum = 0
        for opening, weight in zip(openings, weights, strict=True):
            decoded = _decode_opening(opening)
            if decoded is None:
                return False
            c, pi, x, y = decoded
            points += [c, pi]
            scalars += [weight, weight * x]
            witnesses.append(pi)
            y_sum += weight * y
        if not witnesses:
            return True
        lhs = msm(compute, affine_rows([*points, G1Point()]), [*scalars, -y_sum])
        rhs = msm(compute, affine_rows(witnesses), weights)
        return bool(GT.pairing_check([to_arkworks(lhs), to_arkworks(rhs)], [-self.g2, self.tau_g2]))


def _decode_opening(opening: Opening) -> tuple[G1Point, G1Point, int, int] | None:
    """(C, π, x, y) of an opening claim, or None if any part does not decode."""
    commitment, num_values, index, value, witness = opening
    try:
        c, pi = decode_g1(commitment), decode_g1(witness)
    except KzgError:
        return None
    y = int.from_bytes(value, "big")
    if len(value) != 32 or y >= BLS_MODULUS:
        return None
    return c, pi, pow(root_of_unity(next_power_of_two(num_values)), index, BLS_MODULUS), y


def insecure_parameters(seed: bytes, num_g1: int = NUM_G1_POWERS) -> bytes:
    """A deterministic setup with publicly known τ = H(seed) mod r, for local dev chains only.

    Same file format as the real setup (unused trailing G1 powers beyond num_g1 are the identity),
    so every consumer loads it the same way. Anyone can forge proofs under it: never use on a real
    network.
    """
    tau = int.from_bytes(blake3.blake3(b"autonomys-farmer insecure dev kzg" + seed).digest(), "big") % BLS_MODULUS
    tau_scalar = Scalar(tau)
    out = bytearray()
    point = G1Point()
    for _ in range(num_g1):
        out += point.to_compressed_bytes()
        point = point * tau_scalar
    out += IDENTITY_G1 * (NUM_G1_POWERS - num_g1)
    g2 = G2Point()
    for _ in range(NUM_G2_POWERS):
        out += g2.to_compressed_bytes()
        g2 = g2 * tau_scalar
    return bytes(out)
