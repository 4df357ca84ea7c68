"""Typed, strict configuration on pydantic v2.

Every config is a ``Config`` (a pydantic model that forbids unknown keys, converts nothing
implicitly and refuses non-finite numbers); its ``check()`` adds the value rules. Values from a
JSON file or the Python API are taken strictly (``"epochs": "1"`` is refused); values typed on
the command line are text and are converted by their field's type first (``from_text``). Every
failure is a one-line ``ConfigError`` naming the key, what it must be and what it got, with the
closest valid name for an unknown key.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

from .errors import ConfigError

T = TypeVar("T", bound="Config")


def suggest(name: str, valid: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or ''."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def require(cond: bool, message: str) -> None:
    """Raise a ConfigError with ``message`` unless ``cond``."""
    if not cond:
        raise ConfigError(message)


class Config(BaseModel):
    """Base of every config: strict types, no unknown keys, finite numbers; ``check()`` for rules."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=False)

    def check(self) -> None:
        """Rules that involve several values or a registry (raise ConfigError through ``require``); ranges
        of single values are pydantic constraints on the field (``Field(ge=1)``)."""

    @model_validator(mode="after")
    def _check(self):
        self.check()
        return self


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is list:
        inner = typing.get_args(annotation)
        return "a list" + (f" of {_type_name(inner[0]).removeprefix('a ').removeprefix('an ')}s" if inner else "")
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}


def _one_line(error: ValidationError, cls: type[Config], where: str) -> str:
    e = error.errors()[0]
    key = str(e["loc"][0]) if e["loc"] else "?"
    value = e.get("input")
    kind = e["type"]
    field = cls.model_fields.get(key)
    if kind == "extra_forbidden":
        return f"unknown key {key!r} in {where}{suggest(key, cls.model_fields)}; valid keys: {', '.join(cls.model_fields)}"
    if kind == "finite_number":
        return f"'{key}' must be a finite number, got {value!r}"
    bound = _BOUNDS.get(kind)
    if bound is not None:  # Field(ge=..., gt=..., ...) constraints
        op, name = bound
        limit = e.get("ctx", {}).get(name)
        return (
            f"{key} must be {op} {limit:g}, got {value}" if isinstance(limit, (int, float)) else f"{key} must be {op} {limit}, got {value}"
        )
    # a value of the wrong type comes from a file or the Python API (command-line text is converted
    # first, by from_text): say where, e.g. "'dataset' in config file F section 'train' must be a string"
    if len(e["loc"]) > 1 and field is not None:  # an item of a list: name the list and the item
        return f"'{key}' in {where} must be {_type_name(field.annotation).removesuffix(' or null')}, got {value!r} as item {e['loc'][1]}"
    if kind == "literal_error" and field is not None:
        choices = [a for a in typing.get_args(field.annotation) if a is not None]
        flat = [c for a in choices for c in (typing.get_args(a) or (a,))]
        return f"'{key}' in {where} must be {_type_name(field.annotation)}, got {value!r}{suggest(value, map(str, flat))}"
    what = _type_name(field.annotation) if field is not None else e["msg"]
    if what.endswith(" or null"):
        what = what[: -len(" or null")]
    return f"'{key}' in {where} must be {what}, got {value!r}"


def parse_config(cls: type[T], values: Mapping[str, Any], where: str = "config") -> T:
    """Build config ``cls`` strictly from ``values``: raises a one-line ConfigError for an unknown
    key (with the closest valid one), a value of the wrong type, or a value its rules refuse."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(values).__name__}")
    for key in values:
        if not isinstance(key, str) or key not in cls.model_fields:
            raise ConfigError(f"unknown key {key!r} in {where}{suggest(key, cls.model_fields)}; valid keys: {', '.join(cls.model_fields)}")
    try:
        return cls.model_validate(dict(values))
    except ValidationError as e:
        raise ConfigError(_one_line(e, cls, where)) from None


def from_text(cls: type[Config], key: str, text: str) -> Any:
    """A command-line value (text) converted to field ``key``'s type: numbers and booleans
    (true/false, yes/no, on/off, 1/0) are parsed, 'none' or 'null' give None where allowed.
    Raises the same one-line ConfigError as ``parse_config``."""
    field = cls.model_fields[key]
    if not isinstance(text, str):
        return text
    allows_none = type(None) in typing.get_args(field.annotation)
    if allows_none and text.strip().lower() in ("none", "null"):
        return None
    if typing.get_origin(field.annotation) is list:  # a comma-separated list: --skip generation,style
        text = [part.strip() for part in text.split(",") if part.strip()]
    literals = [
        a
        for u in (typing.get_args(field.annotation) or (field.annotation,))
        if typing.get_origin(u) is typing.Literal
        for a in typing.get_args(u)
    ]
    if (
        literals
        and isinstance(text, str)
        and all(isinstance(a, int) and not isinstance(a, bool) for a in literals)
        and text.strip().lstrip("-").isdigit()
    ):
        text = int(text)  # --image-size 32: an integer choice
    try:
        return TypeAdapter(field.annotation).validate_python(text, strict=False)
    except ValidationError as e:
        e0 = e.errors()[0]
        what = _type_name(field.annotation)
        if what.endswith(" or null"):
            what = what[: -len(" or null")]
        if e0["type"] == "finite_number":
            return_msg = f"'{key}' must be a finite number, got {text!r}"
        else:
            return_msg = f"'{key}' must be {what}, got {text!r}"
        raise ConfigError(return_msg) from None


def field_help(cls: type[Config]) -> dict[str, str]:
    """The description of each field (used to document CLI options)."""
    return {name: f.description or "" for name, f in cls.model_fields.items()}


def field_default(cls: type[Config], key: str) -> Any:
    return cls.model_fields[key].default


def to_dict(obj: Config) -> dict[str, Any]:
    return obj.model_dump()


def replace(obj: T, **changes: Any) -> T:
    """A copy of ``obj`` with ``changes``, checked again."""
    return type(obj).model_validate({**obj.model_dump(), **changes})
