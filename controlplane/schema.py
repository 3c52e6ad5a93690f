"""Field definitions: one description of a document's shape, read two ways.

The policy validator checks a document against them (every error names the field's path, in
the words of :class:`~controlplane.fields.FieldReader`), and :func:`openapi` turns the same
definitions into the OpenAPI v3 schema of a CustomResourceDefinition, so the API server
refuses what the validator refuses, naming the same field. What a schema cannot say (two
fields that exclude each other, a regular expression that must compile, a minimum that
depends on another field) stays in the validator's code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.durations import InvalidDuration, parse_duration
from controlplane.fields import FieldReader

CORE_GROUPS = ("", "core")  # Kubernetes' core API group: "", or "core" as Linkerd's docs write it (Linkerd takes both)
# what parse_duration accepts, as a pattern the API server can check
DURATION_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+\s*$"


@dataclass(frozen=True)
class Str:
    enum: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression the whole value must match
    hint: str = ""  # what to say when the pattern does not match
    allow_empty: bool = False  # "" is a value (a Gateway API group: "" is the core group)
    doc: str = ""


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    what: str = "an integer"
    doc: str = ""


@dataclass(frozen=True)
class IntOrStr:
    """A whole number from ``low`` to ``high``, as a number or as a string of digits (Istio's
    meshConfig ports are written both ways; Kubernetes' int-or-string)."""

    low: int
    high: int
    what: str = "an integer"
    doc: str = ""


@dataclass(frozen=True)
class PortOrName:
    """A container port, by number (1-65535) or by its name (Kubernetes' IANA_SVC_NAME: lower-case
    letters, digits and '-', up to 15, with a letter): a Linkerd Server's ``port``."""

    doc: str = ""


# RE2 (the API server's patterns) has no lookahead: "has a letter" is a pattern of its own
PORT_NAME_PATTERNS = (r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "[a-z]")


@dataclass(frozen=True)
class Num:
    low: float
    high: float
    above_low: bool = False  # the low end itself is not allowed (exclusiveMinimum)
    doc: str = ""


@dataclass(frozen=True)
class Bool:
    doc: str = ""


@dataclass(frozen=True)
class Duration:
    doc: str = ""


@dataclass(frozen=True)
class ListOf:
    item: Field
    non_empty: bool = False
    max_items: int | None = None
    hint: str = "expected a list"
    doc: str = ""


@dataclass(frozen=True)
class Labels:
    """A non-empty mapping of label names to values (Istio's ``selector.matchLabels``)."""

    doc: str = ""


@dataclass(frozen=True)
class MapOf:
    """A non-empty mapping of names to values of one field type (Istio's endpoint ``ports``)."""

    value: Field
    hint: str = "expected a non-empty mapping of names to values"
    doc: str = ""


@dataclass(frozen=True)
class Obj:
    fields: Mapping[str, Field]
    required: frozenset[str] = field(default_factory=frozenset)
    doc: str = ""


Field = Str | Int | IntOrStr | PortOrName | Num | Bool | Duration | ListOf | Labels | MapOf | Obj


def obj(fields: Mapping[str, Field], required: tuple[str, ...] = (), doc: str = "") -> Obj:
    return Obj(dict(fields), frozenset(required), doc)


# -- checking a document ---------------------------------------------------------------------

def check(schema: Field, value: Any, path: str, reader: FieldReader) -> None:
    """Raise ``reader.fail(path, ...)`` for the first place where ``value`` does not fit."""
    if isinstance(schema, Obj):
        reader.obj(value, path, set(schema.fields), set(schema.required))
        for key, sub in schema.fields.items():
            if key in value:
                check(sub, value[key], f"{path}.{key}".lstrip("."), reader)
    elif isinstance(schema, Str):
        if not (schema.allow_empty and isinstance(value, str)):
            reader.string(value, path)
        if schema.enum and value not in schema.enum:
            said = ", ".join(value_ or '""' for value_ in schema.enum)  # the core group, "", shown as ""
            raise reader.fail(path, f"expected one of {said}, got {value!r}")
        if schema.pattern is not None and not re.search(schema.pattern, value):
            raise reader.fail(path, schema.hint or f"{value!r} does not match {schema.pattern}")
    elif isinstance(schema, Int):
        reader.integer(value, path, schema.low, schema.high, schema.what)
    elif isinstance(schema, IntOrStr):
        digits = isinstance(value, str) and value.isascii() and value.isdigit()
        reader.integer(int(value) if digits else value, path, schema.low, schema.high, schema.what)
    elif isinstance(schema, PortOrName):
        if isinstance(value, str):
            if len(value) > 15 or not all(re.search(p, value) for p in PORT_NAME_PATTERNS):
                raise reader.fail(path, f"expected a port number or a container port's name (lower-case letters, digits "
                                        f"and '-', up to 15), got {value!r}")
        else:
            reader.integer(value, path, 1, 65535, "a port number or name")
    elif isinstance(schema, Num):
        number = reader.number(value, path, schema.low, schema.high)
        if schema.above_low and number <= schema.low:
            raise reader.fail(path, f"expected a number above {schema.low:g} (up to {schema.high:g}), got {value!r}")
    elif isinstance(schema, Bool):
        if not isinstance(value, bool):
            raise reader.fail(path, f"expected true or false, got {value!r}")
    elif isinstance(schema, Duration):
        try:
            parse_duration(value if isinstance(value, str) else "")
        except InvalidDuration:
            raise reader.fail(path, f"{value!r} is not a duration (valid: 500ms, 2s, 1m)") from None
    elif isinstance(schema, ListOf):
        if (not isinstance(value, list) or (schema.non_empty and not value)
                or (schema.max_items is not None and len(value) > schema.max_items)):
            raise reader.fail(path, schema.hint)
        for i, item in enumerate(value):
            check(schema.item, item, f"{path}[{i}]", reader)
    elif isinstance(schema, Labels):
        if not isinstance(value, dict) or not value or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise reader.fail(path, "expected a non-empty mapping of label names to values, e.g. {app: reviews}")
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict) or not value or not all(isinstance(k, str) and k for k in value):
            raise reader.fail(path, schema.hint)
        for key, item in value.items():
            check(schema.value, item, f"{path}.{key}", reader)
    else:  # pragma: no cover - the union is closed
        raise TypeError(schema)


# -- the same definitions as OpenAPI v3 (a CRD's structural schema) ---------------------------

def openapi(schema: Field) -> dict[str, Any]:
    out: dict[str, Any]
    if isinstance(schema, Obj):
        out = {"type": "object", "properties": {k: openapi(v) for k, v in schema.fields.items()}}
        if schema.required:
            out["required"] = sorted(schema.required)
    elif isinstance(schema, Str):
        out = {"type": "string"} if schema.allow_empty else {"type": "string", "minLength": 1}
        if schema.enum:
            out["enum"] = list(schema.enum)
        if schema.pattern is not None:
            out["pattern"] = schema.pattern
    elif isinstance(schema, Int):
        out = {"type": "integer", "minimum": schema.low, "maximum": schema.high}
    elif isinstance(schema, IntOrStr):
        # structural: no types under it; minimum applies to a number only, pattern to a string only
        out = {"x-kubernetes-int-or-string": True, "allOf": [{"minimum": schema.low, "maximum": schema.high},
                                                             {"pattern": r"^[1-9][0-9]*$"}]}
    elif isinstance(schema, PortOrName):  # a number's bounds and a name's pattern, each read by its own type
        out = {"x-kubernetes-int-or-string": True, "allOf": [{"minimum": 1, "maximum": 65535}, {"maxLength": 15},
                                                             *({"pattern": p} for p in PORT_NAME_PATTERNS)]}
    elif isinstance(schema, Num):
        out = {"type": "number", "minimum": schema.low, "maximum": schema.high}
        if schema.above_low:
            out["exclusiveMinimum"] = True
    elif isinstance(schema, Bool):
        out = {"type": "boolean"}
    elif isinstance(schema, Duration):
        out = {"type": "string", "pattern": DURATION_PATTERN}
    elif isinstance(schema, ListOf):
        out = {"type": "array", "items": openapi(schema.item)}
        if schema.non_empty:
            out["minItems"] = 1
        if schema.max_items is not None:
            out["maxItems"] = schema.max_items
    elif isinstance(schema, Labels):
        out = {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1}
    elif isinstance(schema, MapOf):
        out = {"type": "object", "additionalProperties": openapi(schema.value), "minProperties": 1}
    else:  # pragma: no cover
        raise TypeError(schema)
    if schema.doc:
        out["description"] = schema.doc
    return out
