"""Type checks for config dataclasses: a value of the wrong type is refused naming its key,
before any work starts, instead of being converted (`int(4.5)`) or failing deep inside torch."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from typing import Any

from models.errors import ConfigError


def checked_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each checked against the type hint of `cls`'s field of that name.

    Whole numbers given as floats (`4.0`) become ints; numbers YAML left as strings (`1e-3`)
    become floats; lists become tuples. Anything else of the wrong type raises ConfigError.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    return {k: _check(k, v, hints[k]) if k in names else v for k, v in values.items()}


def _check(key: str, value: Any, hint: Any) -> Any:
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None and type(None) in options:
        return None
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return _as(key, value, option)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {' or '.join(errors)}")


def _as(key: str, value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = typing.get_args(kind)
        item = args[0]
        if args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {list(value)!r}")
        return tuple(_as(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if kind is int:
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole:
            raise ConfigError(f"{key} must be a whole number, got {value!r}")
        return int(value)
    if kind is float:
        number = _number(value)
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return number
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
