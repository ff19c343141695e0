"""The cluster's JSON codec: frozen dataclasses whose fields are protocol types, one codec for all.

Bytes travel as lower-case hex (like the node RPC), tuples as lists, enums as their values, the protocol's
custom ints (PieceIndex, SlotNumber, ...) as numbers, and the protocol's node types (Solution, SlotInfo,
SegmentHeader, FarmerAppInfo, ...) in their node JSON shapes through their own to_json/from_json. A field
typed as a union of dataclasses carries its member's `TAG` as "type". Decoding checks every field against
its type, so a malformed message fails with the path of the field it broke on (WireError) and no
half-decoded value reaches a handler.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")
JSON_OBJECT_TYPES = (dict, list)


class WireError(ValueError):
    """A cluster message that does not decode into its dataclass."""


def to_obj(value: Any) -> Any:
    """A message (or any field value) as plain JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_json") and not hasattr(type(value), "__wire__"):
            return value.to_json()
        obj = {f.name: to_obj(getattr(value, f.name)) for f in dataclasses.fields(value)}
        tag = getattr(type(value), "TAG", None)
        return {"type": tag, **obj} if tag is not None else obj
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, tuple | list):
        return [to_obj(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_obj(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_node_type(tp: Any) -> bool:
    """A protocol type with its own node JSON shape (decoded by its from_json)."""
    return isinstance(tp, type) and hasattr(tp, "from_json") and not hasattr(tp, "__wire__")


def from_obj(tp: Any, obj: Any, where: str = "") -> Any:
    """Plain JSON data as a value of type tp (a dataclass, a protocol type, or a field type)."""
    where = where or getattr(tp, "__name__", str(tp))
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _from_union(typing.get_args(tp), obj, where)
    if tp is typing.Any:
        return obj
    if _is_node_type(tp):
        try:
            return tp.from_json(obj)
        except WireError:
            raise
        except Exception as e:  # node JSON decoders raise assorted ValueError/KeyError/TypeError
            raise WireError(f"{where}: {e!r}" if not str(e) else f"{where}: {e}") from e
    if dataclasses.is_dataclass(tp):
        return _from_dataclass(tp, obj, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(obj)
        except ValueError as e:
            raise WireError(f"{where}: {obj!r} is not one of {[m.value for m in tp]}") from e
    if tp is bytes:
        if not isinstance(obj, str):
            raise WireError(f"{where}: expected a hex string, got {type(obj).__name__}")
        try:
            return bytes.fromhex(obj)
        except ValueError as e:
            raise WireError(f"{where}: {e}") from e
    if origin is tuple:
        return _from_tuple(typing.get_args(tp), obj, where)
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(obj, dict):
            raise WireError(f"{where}: expected an object")
        return {
            from_obj(key_type, k, f"{where}.key"): from_obj(value_type, v, f"{where}[{k!r}]") for k, v in obj.items()
        }
    if tp is float:
        if isinstance(obj, bool) or not isinstance(obj, int | float) or not math.isfinite(obj):
            raise WireError(f"{where}: expected a finite number, got {obj!r}")
        return float(obj)
    if tp is bool:
        if not isinstance(obj, bool):
            raise WireError(f"{where}: expected true or false, got {obj!r}")
        return obj
    if isinstance(tp, type) and issubclass(tp, int):
        if isinstance(obj, bool) or not isinstance(obj, int):
            raise WireError(f"{where}: expected an integer, got {obj!r}")
        return obj if tp is int else tp(obj)
    if tp is str:
        if not isinstance(obj, str):
            raise WireError(f"{where}: expected a string, got {obj!r}")
        return obj
    if tp is type(None):
        if obj is not None:
            raise WireError(f"{where}: expected null, got {obj!r}")
        return None
    raise TypeError(f"{where}: the codec does not know type {tp!r}")


def _from_union(args: tuple[Any, ...], obj: Any, where: str) -> Any:
    if obj is None and type(None) in args:
        return None
    members = [a for a in args if a is not type(None)]
    if len(members) == 1:
        return from_obj(members[0], obj, where)
    tagged = {getattr(m, "TAG", None): m for m in members if dataclasses.is_dataclass(m)}
    if None not in tagged and len(tagged) == len(members):
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str) or obj["type"] not in tagged:
            raise WireError(f"{where}: expected one of the types {sorted(str(tag) for tag in tagged)}")
        return from_obj(tagged[obj["type"]], obj, where)
    raise TypeError(f"{where}: union {args!r} is neither optional nor tagged")


def _from_tuple(args: tuple[Any, ...], obj: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(obj, list):
        raise WireError(f"{where}: expected a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(from_obj(args[0], v, f"{where}[{i}]") for i, v in enumerate(obj))
    if len(obj) != len(args):
        raise WireError(f"{where}: expected {len(args)} items, got {len(obj)}")
    return tuple(from_obj(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, obj, strict=True)))


def _from_dataclass(cls: Any, obj: Any, where: str) -> Any:
    if not isinstance(obj, dict):
        raise WireError(f"{where}: expected an object")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = f"{where}.{f.name}"
        if f.name not in obj:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise WireError(f"{name}: missing")
        kwargs[f.name] = from_obj(hints[f.name], obj[f.name], name)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # the dataclass's own checks (__post_init__)
        raise WireError(f"{where}: {e}") from e


def encode(message: Any) -> bytes:
    return json.dumps(to_obj(message), separators=(",", ":")).encode()


def decode(cls: type[T], data: bytes) -> T:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise WireError(f"{getattr(cls, '__name__', cls)}: not JSON: {e}") from e
    return typing.cast(T, from_obj(cls, obj))
