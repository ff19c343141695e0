"""The RPC's values in JSON: bytes as lower-case hex without 0x, exact length (either case accepted);
unsigned integers of a given width, checked (JSON numbers may be anything)."""

from __future__ import annotations


class HexError(ValueError):
    """A JSON value that is not hex of the expected length, or not an unsigned integer of its width."""


def json_uint(obj: dict[str, object], name: str, bits: int = 64) -> int:
    """obj[name] as an unsigned integer below 2^bits (no bools, no floats, no strings)."""
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise HexError(f"{name} must be a u{bits} number, got {value!r}")
    return value


def hex_bytes(value: object, size: int, name: str) -> bytes:
    if not isinstance(value, str) or value.startswith(("0x", "0X")):
        raise HexError(f"{name} must be a hex string without 0x, got {value!r}")
    try:
        data = bytes.fromhex(value)
    except ValueError as e:
        raise HexError(f"{name} is not valid hex: {value!r}") from e
    if len(data) != size:
        raise HexError(f"{name} must be {size} bytes, got {len(data)}")
    return data
