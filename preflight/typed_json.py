"""Dataclasses to and from JSON, strictly typed, and the JSON Schema that describes them.

One description (the dataclass and its type hints) drives three things: decoding untrusted JSON
with an error that names the exact path (``gpu.devices[2].uuid: expected string, got 7``),
encoding back to JSON, and the JSON Schema shipped for other tools. Supported hints: ``str``,
``int``, ``float``, ``bool``, ``X | None``, ``list[X]``, ``dict[str, X]`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")

_JSON_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


class DecodeError(ValueError):
    """The JSON does not match the dataclass; ``path`` is where (``a.b[3].c``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '<root>'}: {message}")
        self.path = path
        self.message = message


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _decode(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if len(args) != 1:
            raise TypeError(f"unsupported union {hint}")
        return _decode(args[0], value, path)
    if dataclasses.is_dataclass(hint):
        return decode(hint, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise DecodeError(path, f"expected a list, got {_describe(value)}")
        (item,) = get_args(hint)
        return [_decode(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise DecodeError(path, f"expected an object, got {_describe(value)}")
        _, item = get_args(hint)
        return {k: _decode(item, v, f"{path}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise DecodeError(path, f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError(path, f"expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(path, f"expected a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise DecodeError(path, f"expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported type hint {hint!r} at {path}")


@functools.cache
def _layout(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """Type hints and fields of a dataclass, worked out once per class (decoding is hot)."""
    return get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def decode(cls: type[T], data: Any, path: str = "") -> T:
    """Build ``cls`` from decoded JSON, rejecting missing, unknown and mistyped keys."""
    if not isinstance(data, dict):
        raise DecodeError(path, f"expected an object, got {_describe(data)}")
    hints, known = _layout(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = f"{path}." if path else ""
        raise DecodeError(f"{where}{unknown[0]}", "unknown key")
    kwargs = {}
    for name, fld in known.items():
        sub = f"{path}.{name}" if path else name
        if name not in data:
            has_default = (
                fld.default is not dataclasses.MISSING
                or fld.default_factory is not dataclasses.MISSING
            )
            if has_default:
                continue
            raise DecodeError(sub, "missing")
        kwargs[name] = _decode(hints[name], data[name], sub)
    return cls(**kwargs)


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {name: _plain(getattr(value, name)) for name in _names(type(value))}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def encode(instance: Any) -> dict[str, Any]:
    """The JSON-ready dict of a dataclass instance (``dataclasses.asdict`` without its deep
    copies, which cost milliseconds per node in a large sweep)."""
    return _plain(instance)


def _schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema(a, defs) for a in get_args(hint)]}
    if dataclasses.is_dataclass(hint):
        name = hint.__name__
        if name not in defs:
            defs[name] = {}  # reserve the name before recursing
            defs[name] = _object_schema(hint, defs)
        return {"$ref": f"#/$defs/{name}"}
    if origin is list:
        return {"type": "array", "items": _schema(get_args(hint)[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(get_args(hint)[1], defs)}
    if hint in _JSON_NAMES:
        return {"type": _JSON_NAMES[hint]}
    raise TypeError(f"unsupported type hint {hint!r}")


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for fld in dataclasses.fields(cls):
        props[fld.name] = _schema(hints[fld.name], defs)
        no_default = (
            fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING
        )
        if no_default:
            required.append(fld.name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        out["description"] = " ".join(cls.__doc__.split())
    if required:
        out["required"] = required
    return out


def json_schema(cls: type, *, title: str, schema_id: str) -> dict[str, Any]:
    """A draft 2020-12 JSON Schema for ``cls`` and every dataclass it contains."""
    defs: dict[str, Any] = {}
    root = _object_schema(cls, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "title": title,
        **root,
        "$defs": dict(sorted(defs.items())),
    }


