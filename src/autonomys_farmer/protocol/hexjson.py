"""The RPC's byte encoding in JSON: lower-case hex without 0x, exact length (either case accepted)."""

from __future__ import annotations


class HexError(ValueError):
    """A JSON value that is not hex of the expected length."""


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
