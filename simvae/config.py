"""Typed configuration with strict parsing.

Every config is a dataclass. ``parse_config`` builds one from a plain mapping
(a JSON file, CLI options) and refuses unknown keys (suggesting the closest
valid name), wrong types and impossible values, so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, get_args, get_origin

from .errors import ConfigError

T = TypeVar("T")


def suggest(name: str, valid: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or ''."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Check (and, for strings from the command line, convert) one value."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(key, value, arg)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:  # Optional[X]: X's own message says more
            raise errors[0]
        raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {value!r}{suggest(value, map(str, choices))}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"'{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"'{key}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            try:
                out = float(value)
            except OverflowError:
                raise ConfigError(f"'{key}' must be a finite number, got an integer too large for a float") from None
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                raise ConfigError(f"'{key}' must be a number, got {value!r}") from None
        else:
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        if not math.isfinite(out):
            raise ConfigError(f"'{key}' must be a finite number, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"'{key}' must be a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def parse_config(cls: type[T], values: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``values``: strict keys, checked types, then ``validate()``."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in fields:
            raise ConfigError(f"unknown key {key!r} in {where}{suggest(key, fields)}; valid keys: {', '.join(fields)}")
        kwargs[key] = coerce(key, value, hints[key])
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def require(cond: bool, message: str) -> None:
    """Raise a ConfigError with ``message`` unless ``cond``."""
    if not cond:
        raise ConfigError(message)


def field_help(cls: type) -> dict[str, str]:
    """The ``help`` metadata of each field (used to document CLI options)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
