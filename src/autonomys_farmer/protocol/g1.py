"""BLS12-381 G1 points as the compute contract carries them (protocol.md §4), and their encodings.

Base field elements are "Fp rows": uint32 arrays of shape (..., 12), the little-endian 32-bit limbs of
a·2^384 mod p (Montgomery form). An affine point is two rows (x, y); the identity is (0, 0), which is
not on the curve (y² = x³ + 4 has no point with y = 0: the group order is odd). MSM results come back in
XYZZ coordinates (X, Y, ZZ, ZZZ) with x = X/ZZ, y = Y/ZZZ and ZZ = 0 for the identity, the form the
kernels add in without inversions. Scalars go in as canonical Fr limbs (protocol.field), not Montgomery.

Compressed encodings follow blst/zcash: 48 bytes big-endian x with flags 0x80 (compressed), 0x40
(identity), 0x20 (y is the larger of y and p - y).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autonomys_farmer.protocol.field import BLS_MODULUS

FP_MODULUS = int("1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab", 16)
FP_LIMBS = 12
FP_BYTES = 48
FP_R = (1 << (32 * FP_LIMBS)) % FP_MODULUS  # Montgomery R = 2^384 mod p
FP_R_INV = pow(1 << (32 * FP_LIMBS), -1, FP_MODULUS)
CURVE_B = 4
XY_BYTES = 2 * FP_BYTES  # uncompressed affine, little-endian x || y (arkworks' to_xy_bytes_le)
COMPRESSED_IDENTITY = b"\xc0" + bytes(FP_BYTES - 1)


class G1Error(ValueError):
    """An affine point off the curve, or an encoding of the wrong size."""


def _int_to_limbs(value: int) -> np.ndarray:
    return np.frombuffer(value.to_bytes(FP_BYTES, "little"), "<u4").astype(np.uint32)


def _limbs_to_int(limbs: np.ndarray) -> int:
    return int.from_bytes(np.ascontiguousarray(limbs, "<u4").tobytes(), "little")


def to_fp_row(value: int) -> np.ndarray:
    """One Fp element in Montgomery form."""
    return _int_to_limbs(value * FP_R % FP_MODULUS)


def from_fp_row(row: np.ndarray) -> int:
    return _limbs_to_int(row) * FP_R_INV % FP_MODULUS


def is_on_curve(x: int, y: int) -> bool:
    return (y * y - x * x * x - CURVE_B) % FP_MODULUS == 0


def affine_rows(points: Sequence[tuple[int, int] | None]) -> np.ndarray:
    """(n, 2, 12) Montgomery affine rows of points given as (x, y) integers, None for the identity."""
    zero = bytes(XY_BYTES)
    blob = b"".join(
        zero
        if point is None
        else (point[0] * FP_R % FP_MODULUS).to_bytes(FP_BYTES, "little")
        + (point[1] * FP_R % FP_MODULUS).to_bytes(FP_BYTES, "little")
        for point in points
    )
    return np.frombuffer(blob, "<u4").astype(np.uint32).reshape(len(points), 2, FP_LIMBS)


def xy_le_to_affine(data: bytes) -> tuple[int, int] | None:
    """A 96-byte little-endian x || y point (all zeros: the identity), checked to be on the curve."""
    if len(data) != XY_BYTES:
        raise G1Error(f"affine G1 point must be {XY_BYTES} bytes, got {len(data)}")
    x = int.from_bytes(data[:FP_BYTES], "little")
    y = int.from_bytes(data[FP_BYTES:], "little")
    if x == 0 and y == 0:
        return None
    if x >= FP_MODULUS or y >= FP_MODULUS or not is_on_curve(x, y):
        raise G1Error(f"affine G1 point {data.hex()} is not on the curve")
    return x, y


def affine_to_xy_le(point: tuple[int, int] | None) -> bytes:
    if point is None:
        return bytes(XY_BYTES)
    return point[0].to_bytes(FP_BYTES, "little") + point[1].to_bytes(FP_BYTES, "little")


def xyzz_to_affine(point: np.ndarray) -> tuple[int, int] | None:
    """The affine (x, y) of a (4, 12) XYZZ Montgomery point, None for the identity."""
    x, y, zz, zzz = (from_fp_row(point[j]) for j in range(4))
    if zz == 0:
        return None
    affine = x * pow(zz, -1, FP_MODULUS) % FP_MODULUS, y * pow(zzz, -1, FP_MODULUS) % FP_MODULUS
    if not is_on_curve(*affine):
        raise G1Error("MSM result is not on the curve (a backend fault)")
    return affine


def compress(point: tuple[int, int] | None) -> bytes:
    """The 48-byte compressed encoding (blst_p1_affine_compress)."""
    if point is None:
        return COMPRESSED_IDENTITY
    x, y = point
    flags = 0x80 | (0x20 if y > FP_MODULUS - 1 - y else 0)
    data = bytearray(x.to_bytes(FP_BYTES, "big"))
    data[0] |= flags
    return bytes(data)


def scalar_rows(scalars: Sequence[int]) -> np.ndarray:
    """(n, 8) canonical Fr limbs of integer scalars, reduced mod r."""
    blob = b"".join((s % BLS_MODULUS).to_bytes(32, "little") for s in scalars)
    return np.frombuffer(blob, "<u4").astype(np.uint32).reshape(len(scalars), 8)
