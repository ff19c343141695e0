"""Cluster messages as frozen dataclasses with one JSON codec (bytes as lower-case hex, like the node RPC).

Every message type in `cluster.messages` goes through `encode`/`decode`, so a subject's payload is
always the JSON of exactly one dataclass and a malformed message fails with the field it broke on.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class WireError(ValueError):
    """A cluster message that does not decode into its dataclass."""


def _to_obj(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_obj(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_to_obj(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_obj(v) for k, v in value.items()}
    return value


def _from_obj(tp: Any, obj: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if obj is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _from_obj(inner, obj, where)
    if tp is bytes:
        if not isinstance(obj, str):
            raise WireError(f"{where}: expected hex string, got {type(obj).__name__}")
        try:
            return bytes.fromhex(obj)
        except ValueError as e:
            raise WireError(f"{where}: {e}") from e
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if not isinstance(obj, list):
            raise WireError(f"{where}: expected a list")
        return tuple(_from_obj(inner, v, f"{where}[{i}]") for i, v in enumerate(obj))
    if origin is dict:
        if not isinstance(obj, dict):
            raise WireError(f"{where}: expected an object")
        return dict(obj)
    if dataclasses.is_dataclass(tp):
        return from_obj(tp, obj, where)
    if tp is float and isinstance(obj, int | float) and not isinstance(obj, bool):
        return float(obj)
    if tp in (int, str, bool) and not (isinstance(obj, tp) and (tp is bool or not isinstance(obj, bool))):
        raise WireError(f"{where}: expected {tp.__name__}, got {obj!r}")
    return obj


def from_obj(cls: type[T], obj: Any, where: str = "") -> T:
    if not isinstance(obj, dict):
        raise WireError(f"{where or cls.__name__}: expected an object")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f"{where or cls.__name__}.{f.name}"
        if f.name not in obj:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise WireError(f"{name}: missing")
        kwargs[f.name] = _from_obj(hints[f.name], obj[f.name], name)
    return cls(**kwargs)


def encode(message: Any) -> bytes:
    return json.dumps(_to_obj(message), separators=(",", ":")).encode()


def decode(cls: type[T], data: bytes) -> T:
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise WireError(f"{cls.__name__}: not JSON: {e}") from e
    return from_obj(cls, obj)


def decode_json(data: bytes) -> Any:
    """A payload that carries a node RPC JSON shape as is."""
    try:
        return json.loads(data)
    except ValueError as e:
        raise WireError(f"not JSON: {e}") from e
