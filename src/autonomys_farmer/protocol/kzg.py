"""KZG over BLS12-381 with the monomial 2^15 setup (protocol.md §4), on py-arkworks-bls12381.

Polynomials are coefficient vectors (Montgomery rows, protocol.field); values/points are scalars.
Encodings are blst's compressed G1 (48 bytes); decoding follows blst exactly (no subgroup check,
reject x = 0 and non-canonical infinity), which arkworks' unchecked decoder needs help with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import blake3
import numpy as np
from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

from autonomys_farmer.protocol import field
from autonomys_farmer.protocol.compute import Compute
from autonomys_farmer.protocol.field import BLS_MODULUS, next_power_of_two, root_of_unity

NUM_G1_POWERS = 32768
NUM_G2_POWERS = 65
G1_SIZE = 48
G2_SIZE = 96
PARAMETERS_SIZE = NUM_G1_POWERS * G1_SIZE + NUM_G2_POWERS * G2_SIZE  # 1,579,104
PARAMETERS_SHA256 = "f3ead1a6249527aa503d6c56578325c01d19b3365cc59905be2bba64ae322925"
BLS_BASE_FIELD_MODULUS = int(
    "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab", 16
)
IDENTITY_G1 = b"\xc0" + bytes(47)


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


def _rows_to_arkworks(compute: Compute, rows: np.ndarray) -> list[Scalar]:
    raw = field.from_montgomery(compute, rows)  # little-endian u32 limbs == little-endian bytes
    blob = np.ascontiguousarray(raw.astype("<u4")).tobytes()
    return [Scalar.from_le_bytes(blob[32 * i : 32 * i + 32]) for i in range(raw.shape[0])]


Opening = tuple[bytes, int, int, bytes, bytes]  # (commitment, num_values, index, value, witness)


@dataclass(frozen=True)
class Kzg:
    """The setup: [τ^i]G1 for i < 32768, G2 and [τ]G2 (only those two G2 powers are ever used)."""

    g1_powers: tuple[G1Point, ...]
    g2: G2Point
    tau_g2: G2Point

    @classmethod
    def from_bytes(cls, data: bytes, expected_sha256: str | None = None) -> Kzg:
        """Parse a parameters file; with expected_sha256 (the pinned hash for the real setup) check it."""
        if expected_sha256 is not None and (digest := hashlib.sha256(data).hexdigest()) != expected_sha256:
            raise KzgError(f"KZG parameters have SHA-256 {digest}, expected {expected_sha256}")
        if len(data) != PARAMETERS_SIZE:
            raise KzgError(f"KZG parameters must be {PARAMETERS_SIZE} bytes, got {len(data)}")
        g1 = tuple(
            G1Point.from_compressed_bytes_unchecked(data[i * G1_SIZE : (i + 1) * G1_SIZE]) for i in range(NUM_G1_POWERS)
        )
        base = NUM_G1_POWERS * G1_SIZE
        g2 = G2Point.from_compressed_bytes_unchecked(data[base : base + G2_SIZE])
        tau_g2 = G2Point.from_compressed_bytes_unchecked(data[base + G2_SIZE : base + 2 * G2_SIZE])
        return cls(g1, g2, tau_g2)

    def commit(self, compute: Compute, coeffs: np.ndarray) -> bytes:
        """Σ c_j·[τ^j]G1, compressed."""
        n = coeffs.shape[0]
        if n > NUM_G1_POWERS:
            raise KzgError(f"polynomial of {n} coefficients exceeds the {NUM_G1_POWERS}-power setup")
        if n == 0:
            return IDENTITY_G1
        point = G1Point.multiexp_unchecked(list(self.g1_powers[:n]), _rows_to_arkworks(compute, coeffs))
        return bytes(point.to_compressed_bytes())

    def poly(self, compute: Compute, values: np.ndarray) -> np.ndarray:
        """Coefficients of the polynomial through values at ω_n^i (n must be a power of two)."""
        return field.ifft(compute, values)

    def create_witness(self, compute: Compute, coeffs: np.ndarray, num_values: int, index: int) -> bytes:
        """Opening proof at x = ω_M^index, M = next_power_of_two(num_values)."""
        if coeffs.shape[0] == 0:
            raise KzgError("cannot open an empty polynomial")
        if coeffs.shape[0] - 1 > NUM_G1_POWERS:
            raise KzgError(f"quotient of {coeffs.shape[0] - 1} coefficients exceeds the setup")
        x = root_of_unity(next_power_of_two(num_values))
        point = pow(x, index, BLS_MODULUS)
        quotient = compute.synthetic_division(np.ascontiguousarray(coeffs), field.ints_to_rows([point]))
        return self.commit(compute, quotient)

    def verify(self, commitment: bytes, num_values: int, index: int, value: bytes, witness: bytes) -> bool:
        """e(C − y·G1, G2) == e(π, [τ]G2 − x·G2); False on any undecodable input."""
        decoded = _decode_opening((commitment, num_values, index, value, witness))
        if decoded is None:
            return False
        c, pi, x, y = decoded
        lhs = c - G1Point() * Scalar(y)
        rhs_g2 = self.tau_g2 - self.g2 * Scalar(x)
        return bool(GT.pairing_check([lhs, pi], [-self.g2, rhs_g2]))

    def verify_batch(self, openings: Sequence[Opening], weights: Sequence[int]) -> bool:
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
        lhs = multiexp([*points, G1Point()], [*scalars, -y_sum])
        rhs = multiexp(witnesses, weights)
        return bool(GT.pairing_check([lhs, rhs], [-self.g2, self.tau_g2]))


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


def multiexp(points: Sequence[G1Point], scalars: Sequence[int]) -> G1Point:
    """Σ s_i·P_i for integer scalars (reduced mod r)."""
    return G1Point.multiexp_unchecked(list(points), [Scalar(s % BLS_MODULUS) for s in scalars])


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
