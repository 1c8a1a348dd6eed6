"""Building a component's attrs params from plain values (a plan table, ``--set``).

Values are checked against the field types before the class's own validators
run, so that the error names the key, the expected type and the found value.
A field typed as an attrs class takes a table of that class's keys (built the
same way, errors named ``key.inner``); an optional one (``X | None``) is unset
by an empty table, as TOML has no null.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs


def as_tuple(value: Any) -> Any:
    """An attrs converter for list params: a list (from TOML) becomes a tuple. Only lists and
    tuples do: tuple("Car") would silently be three names C, a, r, and tuple(192) a
    TypeError; anything else is left for the field's validator to name."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


class ParamsError(ValueError):
    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


def build_params(params_class: type, values: Mapping[str, Any]) -> Any:
    """``params_class(**values)`` with unknown keys and wrong types reported by key."""
    fields = attrs.fields_dict(params_class)
    hints = typing.get_type_hints(params_class)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            valid = ", ".join(fields) or "none (this component takes no params)"
            raise ParamsError(f"unknown key; {hint}valid keys: {valid}", key)
        kwargs[fields[key].alias or key] = coerce(value, hints.get(key, Any), key)
    missing = [name for name, spec in fields.items()
               if spec.init and spec.default is attrs.NOTHING and name not in values]
    if missing:
        raise ParamsError(f"missing; give {' and '.join(missing)}", missing[0])
    try:
        return params_class(**kwargs)
    except (TypeError, ValueError) as error:
        # attrs validators say "'width' must be > 0: -1.0" or pass the attribute: name the key.
        message = str(error.args[0]) if error.args else str(error)
        attribute = error.args[1] if len(error.args) > 1 else None
        quoted = re.match(r"'(\w+)'", message)
        failed: str | None
        if isinstance(attribute, attrs.Attribute):
            failed = attribute.name
        else:
            failed = quoted.group(1) if quoted and quoted.group(1) in fields else None
        raise ParamsError(message, failed) from None


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against ``annotation`` (int, float, bool, str, tuple/list of them,
    unions with None); an int is accepted where a float is expected."""
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is None:
        return value
    if attrs.has(annotation) and isinstance(value, Mapping):
        try:
            return build_params(annotation, value)
        except ParamsError as error:
            raise ParamsError(error.message, f"{key}.{error.key}" if error.key else key) from None
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if type(None) in options and isinstance(value, Mapping) and not value:
            return None
        errors = []
        for option in options:
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(value, option, key)
            except ParamsError as error:
                if attrs.has(option) and isinstance(value, Mapping):
                    raise  # the table was meant for this class: its own error says what is wrong
                errors.append(error)
        raise ParamsError(f"expected {_describe(annotation)}, found {value!r}", key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"expected a list ({_describe(annotation)}), found {value!r}", key)
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ParamsError(f"expected {len(args)} values ({_describe(annotation)}), found {list(value)!r}", key)
            items = [coerce(v, a, key) for v, a in zip(value, args)]
        else:
            item_type = args[0] if args else Any
            items = [coerce(v, item_type, key) for v in value]
        return tuple(items) if origin is tuple else items
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ParamsError(f"must be a finite number, found {value!r}", key)
            return float(value)
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
    else:
        return value
    raise ParamsError(f"expected {_describe(annotation)}, found {value!r}", key)


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if attrs.has(annotation):
        return f"a table of {', '.join(attrs.fields_dict(annotation))}"
    if origin is None:
        return getattr(annotation, "__name__", str(annotation))
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        # TOML has no null: a None option means the key may be left out, not written as None.
        described = " or ".join(_describe(a) for a in args if a is not type(None))
        return f"{described} (or leave the key out)" if type(None) in args else described
    inner = ", ".join("..." if a is Ellipsis else _describe(a) for a in args)
    return f"{origin.__name__}[{inner}]"
