"""``meshdojo explain KIND[.FIELD...]``: a kind's fields, as ``kubectl explain`` prints a CRD's.

Read from the same OpenAPI schema the CRDs carry (controlplane/crds.py, made from the
validator's field definitions), so this page and ``kubectl explain`` on a cluster say the same,
and it needs no sandbox running. Pure: text in, text out.
"""

from __future__ import annotations

import textwrap
from typing import Any

from controlplane.foreignkinds import foreign_kind, foreign_kind_message
from controlplane.kinddocs import KIND_DOCS
from controlplane.policy import canonical_kind
from controlplane.policyschema import KINDS
from controlplane.schema import openapi


class ExplainError(ValueError):
    pass


def _top(kind: str) -> dict[str, Any]:
    """The whole object's schema, as the kind's CRD has it."""
    return {"type": "object", "description": KIND_DOCS[kind], "required": ["spec"], "properties": {
        "apiVersion": {"type": "string", "description": KINDS[kind][0]},
        "kind": {"type": "string", "description": kind},
        "metadata": {"type": "object", "description": "name and namespace (the namespace defaults to apply's -n, else "
                                                       "default); labels and annotations"},
        "spec": {**openapi(KINDS[kind][1]), "description": f"what this {kind} asks for; its fields below"}}}


def type_name(schema: dict[str, Any]) -> str:
    """kubectl's words for a field's type: <string>, <[]Object>, <map[string]string> ..."""
    if schema.get("x-kubernetes-int-or-string"):
        return "IntOrString"
    kind = schema.get("type")
    if kind == "array":
        inner = type_name(schema["items"])
        return f"[]{inner}"
    if kind == "object":
        if "additionalProperties" in schema:
            return f"map[string]{type_name(schema['additionalProperties'])}"
        return "Object"
    return str(kind)


def _limits(schema: dict[str, Any]) -> list[str]:
    said = []
    if "enum" in schema:
        said.append("one of: " + ", ".join(value or '""' for value in schema["enum"]))  # the core group, "", shown as ""
    if "minimum" in schema and "maximum" in schema:
        low, high = schema["minimum"], schema["maximum"]  # an integer's bounds as written (2147483647, not 2.14748e+09)
        said.append(f"from {low if isinstance(low, int) else format(low, 'g')} to {high if isinstance(high, int) else format(high, 'g')}")
    if "pattern" in schema:
        said.append(f"matches {schema['pattern']}")
    if "minItems" in schema:
        said.append(f"at least {schema['minItems']} item(s)")
    if "maxItems" in schema:
        said.append(f"at most {schema['maxItems']} item(s)")
    return said


def _said(schema: dict[str, Any]) -> str:
    """A field's description, with what its items are and the values it takes."""
    parts = [schema.get("description", ""), *_limits(schema)]
    if schema.get("type") == "array":
        item = schema["items"]
        parts += [f"each: {item['description']}" if item.get("description") and item.get("type") != "object" else "", *_limits(item)]
    return "; ".join(p for p in parts if p)


def _fields(schema: dict[str, Any]) -> dict[str, Any]:
    """The fields under a node (a list's items', a map's values'); {} for a plain value."""
    while schema.get("type") == "array":
        schema = schema["items"]
    if "additionalProperties" in schema:
        return _fields(schema["additionalProperties"])
    return schema.get("properties") or {}


def _required(schema: dict[str, Any]) -> set[str]:
    while schema.get("type") == "array":
        schema = schema["items"]
    return set(schema.get("required") or [])


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=indent) if text else indent + "<empty>"


def _tree(schema: dict[str, Any], depth: int) -> list[str]:
    lines = []
    required = _required(schema)
    for name, sub in _fields(schema).items():
        mark = " -required-" if name in required else ""
        lines.append(f"{'  ' * depth}{name}\t<{type_name(sub)}>{mark}")
        lines += _tree(sub, depth + 1)
    return lines


def explain(target: str, recursive: bool = False) -> str:
    """``target``: KIND or KIND.FIELD.FIELD (any spelling ``get`` takes: httproute, routes, fault)."""
    parts = target.split(".")
    # the longest start that names a kind: Linkerd's is authorizationpolicies.policy.linkerd.io, as kubectl names it
    taken = next((n for n in range(len(parts), 0, -1) if canonical_kind(".".join(parts[:n]))), 1)
    kind_text, path = ".".join(parts[:taken]), parts[taken:]
    kind = canonical_kind(kind_text)
    if kind is None and (foreign := foreign_kind(kind_text)):
        raise ExplainError(foreign_kind_message(foreign))
    if kind is None:
        raise ExplainError(f"unknown kind {kind_text!r}; the kinds are {', '.join(KINDS)} (e.g. 'meshdojo explain httproute.spec.rules')")
    node, walked = _top(kind), [kind]
    for name in path:
        fields = _fields(node)
        if name not in fields:
            raise ExplainError(f"{'.'.join(walked)} has no field {name!r}; its fields: {', '.join(fields) or 'none (a plain value)'}")
        node = fields[name]
        walked.append(name)
    lines = [f"KIND:     {kind}", f"VERSION:  {KINDS[kind][0]}", ""]
    if path:
        lines += [f"FIELD: {path[-1]} <{type_name(node)}>", ""]
    lines += ["DESCRIPTION:", _wrap(_said(node), "    ")]
    fields = _fields(node)
    if fields:
        lines += ["", "FIELDS:"]
        if recursive:
            lines += ["  " + line for line in _tree(node, 0)]
        else:
            required = _required(node)
            for name, sub in fields.items():
                lines.append(f"  {name}\t<{type_name(sub)}>{' -required-' if name in required else ''}")
                lines.append(_wrap(_said(sub), "    "))
                lines.append("")
            lines.pop()
    return "\n".join(lines) + "\n"
