"""The few SCALE codec pieces the protocol needs (compact integers, options); fixed-width ints are
plain little-endian `struct` packing at the call sites."""

from __future__ import annotations


class ScaleError(ValueError):
    """Truncated or malformed SCALE input."""


def encode_compact(value: int) -> bytes:
    if value < 0:
        raise ScaleError(f"compact integers are unsigned, got {value}")
    if value < 1 << 6:
        return bytes([value << 2])
    if value < 1 << 14:
        return ((value << 2) | 1).to_bytes(2, "little")
    if value < 1 << 30:
        return ((value << 2) | 2).to_bytes(4, "little")
    length = (value.bit_length() + 7) // 8
    return bytes([((length - 4) << 2) | 3]) + value.to_bytes(length, "little")


def compact_size(value: int) -> int:
    return len(encode_compact(value))


def decode_compact(data: bytes, offset: int = 0) -> tuple[int, int]:
    """(value, new offset)."""
    if offset >= len(data):
        raise ScaleError("truncated compact integer")
    mode = data[offset] & 3
    if mode == 0:
        return data[offset] >> 2, offset + 1
    if mode in (1, 2):
        width = 2 if mode == 1 else 4
        if offset + width > len(data):
            raise ScaleError("truncated compact integer")
        return int.from_bytes(data[offset : offset + width], "little") >> 2, offset + width
    length = (data[offset] >> 2) + 4
    if offset + 1 + length > len(data):
        raise ScaleError("truncated compact integer")
    return int.from_bytes(data[offset + 1 : offset + 1 + length], "little"), offset + 1 + length
