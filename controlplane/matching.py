"""Which requests a policy applies to: a path, headers, query parameters and a method, as
Gateway API's HTTPRoute ``matches`` and a FaultInjection's ``match`` write them (and the path
forms an AuthorizationPolicy's ``paths`` become). Read once; matched per request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from controlplane.fields import FieldReader


@dataclass(frozen=True, slots=True)
class PathMatch:
    type: str  # Exact, PathPrefix (whole segments) or RegularExpression; Prefix: Istio's string prefix
    value: str
    ignore_case: bool = False  # Istio's ignoreUriCase (the value is lower case then; a regex ignores case)

    def matches(self, path: str) -> bool:
        path = path.partition("?")[0]
        if self.ignore_case:
            if self.type == "RegularExpression":
                return re.fullmatch(self.value, path, re.IGNORECASE) is not None
            path = path.lower()
        if self.type == "Exact":
            return path == self.value
        if self.type == "PathPrefix":
            return path == self.value or path.startswith(self.value.rstrip("/") + "/") or self.value == "/"
        if self.type == "Prefix":  # Istio's uri.prefix: a string prefix (/api matches /apix too)
            return path.startswith(self.value)
        return re.fullmatch(self.value, path) is not None


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """A header's or a query parameter's value: exactly, or a regular expression over all of it."""

    name: str  # a header's lower-cased; a query parameter's as written (they are case-sensitive)
    value: str
    regex: bool = False

    def matches(self, actual: str | None) -> bool:
        if actual is None:
            return False
        return re.fullmatch(self.value, actual) is not None if self.regex else actual == self.value

    def describe(self) -> str:
        return f"{self.name}{'~' if self.regex else '='}{self.value}"


def cookie_value(cookies: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header (``a=1; session=TOKEN``)."""
    for pair in (cookies or "").split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


def query_param(path: str, name: str) -> str | None:
    """The first value of query parameter ``name`` in ``path`` (None if it has none)."""
    query = path.partition("?")[2]
    if not query:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None


@dataclass(frozen=True, slots=True)
class RequestMatch:
    path: PathMatch | None = None
    headers: tuple[ValueMatch, ...] = ()
    method: str | None = None
    query: tuple[ValueMatch, ...] = ()
    without: tuple[ValueMatch, ...] = ()  # Istio's withoutHeaders: a request with any of these matching is not taken
    # Istio's sourceLabels and sourceNamespace: only a caller whose pod has these labels (in that namespace);
    # ``source`` is the caller's sidecar's workload (None: not a sidecar's request, which such a match never takes)
    source_labels: tuple[tuple[str, str], ...] = ()
    source_namespace: str | None = None

    def matches(self, path: str, header: Any, method: str | None = None, source: Any = None) -> bool:
        if self.method is not None and method != self.method:
            return False
        if (self.source_labels or self.source_namespace is not None) and not self.from_source(source):
            return False
        if self.path is not None and not self.path.matches(path):
            return False
        return (all(h.matches(header(h.name)) for h in self.headers)
                and all(q.matches(query_param(path, q.name)) for q in self.query)
                and not any(w.matches(header(w.name)) for w in self.without))

    def from_source(self, source: Any) -> bool:
        return source is not None and all(source.labels.get(k) == v for k, v in self.source_labels) and \
            self.source_namespace in (None, source.namespace)

    def describe(self) -> str:
        parts = [f"from {'pods ' + ','.join(f'{k}={v}' for k, v in self.source_labels) if self.source_labels else 'pods'}"
                 f"{' of ' + self.source_namespace if self.source_namespace else ''}"] \
            if self.source_labels or self.source_namespace else []
        parts += [self.method] if self.method else []
        if self.path is not None:
            parts.append({"Exact": "", "PathPrefix": "prefix ", "Prefix": "prefix "}.get(self.path.type, "regex ") + self.path.value
                         + (" (any case)" if self.path.ignore_case else ""))
        parts += [h.describe() for h in self.headers]
        parts += [f"not {w.describe()}" for w in self.without]
        parts += [f"?{q.describe()}" for q in self.query]
        return " ".join(parts) or "everything"


def read_match(r: FieldReader, m: dict[str, Any], where: str = "spec.match") -> RequestMatch:
    path = None
    if "path" in m:
        kind, value = m["path"].get("type", "PathPrefix"), m["path"]["value"]
        if kind == "RegularExpression":
            try:
                re.compile(value)
            except re.error as exc:
                raise r.fail(f"{where}.path.value", f"not a regular expression: {exc}") from None
        elif not value.startswith("/"):
            raise r.fail(f"{where}.path.value", "must start with '/'")
        path = PathMatch(kind, value)
    headers = tuple(_value_match(r, h, f"{where}.headers[{i}]", h["name"].lower()) for i, h in enumerate(m.get("headers", [])))
    query = tuple(_value_match(r, q, f"{where}.queryParams[{i}]", q["name"]) for i, q in enumerate(m.get("queryParams", [])))
    return RequestMatch(path, headers, m.get("method"), query)


def _value_match(r: FieldReader, m: dict[str, Any], where: str, name: str) -> ValueMatch:
    regex = m.get("type", "Exact") == "RegularExpression"
    if regex:
        try:
            re.compile(m["value"])
        except re.error as exc:
            raise r.fail(f"{where}.value", f"not a regular expression: {exc}") from None
    return ValueMatch(name, m["value"], regex)


def string_match(r: FieldReader, m: Any, where: str, example: str = "{exact: jason}") -> tuple[str, str]:
    """(exact, prefix or regex; the value) of an Istio StringMatch, its regex checked."""
    given = [k for k in ("exact", "prefix", "regex") if k in m]
    if len(given) != 1:
        raise r.fail(where, f"expected exactly one of exact, prefix or regex, e.g. {example}")
    kind = given[0]
    if kind == "regex":
        try:
            re.compile(m[kind])
        except re.error as exc:
            raise r.fail(f"{where}.regex", f"not a regular expression: {exc}") from None
    return kind, m[kind]
