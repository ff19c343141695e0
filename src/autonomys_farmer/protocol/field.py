"""BLS12-381 scalar field facts (protocol.md §0.3, §3.1): modulus, roots of unity, byte rules."""

from __future__ import annotations

from functools import cache

BLS_MODULUS = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
FIELD_ELEMENT_BYTES = 32  # ScalarBytes::FULL_BYTES
SAFE_BYTES = 31  # ScalarBytes::SAFE_BYTES
PRIMITIVE_ROOT = 7
MAX_DOMAIN_LOG2 = 16  # scale of every production FFTSettings (Record::NUM_S_BUCKETS)
MAX_DOMAIN = 1 << MAX_DOMAIN_LOG2


class FieldError(ValueError):
    """A 32-byte value that is not a canonical scalar (big-endian value >= r)."""


@cache
def root_of_unity(n: int) -> int:
    """ω_n = 7^((r-1)/n): natural-order domains, no bit reversal anywhere in Subspace."""
    if n < 1 or n & (n - 1) or n > 1 << 32:
        raise FieldError(f"domain size must be a power of two <= 2^32, got {n}")
    return pow(PRIMITIVE_ROOT, (BLS_MODULUS - 1) // n, BLS_MODULUS)


def scalar_from_bytes(data: bytes) -> int:
    """Strict decoding as blst: big-endian, must be < r (no reduction)."""
    if len(data) != FIELD_ELEMENT_BYTES:
        raise FieldError(f"scalar must be 32 bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= BLS_MODULUS:
        raise FieldError(f"scalar {data.hex()} is not below the field modulus")
    return value


def scalar_to_bytes(value: int) -> bytes:
    return (value % BLS_MODULUS).to_bytes(FIELD_ELEMENT_BYTES, "big")


def scalar_from_safe_bytes(data: bytes) -> bytes:
    """31 payload bytes -> a 32-byte scalar with a zero top byte (always below r)."""
    if len(data) != SAFE_BYTES:
        raise FieldError(f"safe scalar payload must be 31 bytes, got {len(data)}")
    return b"\x00" + data


def next_power_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def bit_reverse_indices(n: int) -> list[int]:
    """The radix-2 FFT input permutation for a power-of-two n."""
    bits = n.bit_length() - 1
    return [int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n)]
