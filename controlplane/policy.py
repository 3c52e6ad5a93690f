"""Policy resources: Kubernetes-style documents parsed once into frozen values.

Today: ``policy.meshdojo.dev/v1alpha1`` ``FaultInjection`` (Istio's field names). Every error
names the source file, the document's index and the field path, and a batch is applied only
if every document in it is valid.

    apiVersion: policy.meshdojo.dev/v1alpha1
    kind: FaultInjection
    metadata: {name: ratings-delay, namespace: bookinfo}
    spec:
      targetRef: {kind: Service, name: ratings}
      match: {path: {type: PathPrefix, value: /ratings}, headers: [{name: end-user, value: jason}]}
      delay: {fixedDelay: 7s, percentage: {value: 100}}
      abort: {httpStatus: 503, percentage: {value: 30}}
      duration: 2m          # optional: the resource removes itself after this long
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from controlplane.durations import InvalidDuration, parse_duration
from controlplane.spiffe import is_dns_label

POLICY_API = "policy.meshdojo.dev/v1alpha1"
KINDS = {"FaultInjection": POLICY_API}
KIND_ALIASES = {"faultinjection": "FaultInjection", "faultinjections": "FaultInjection", "fault": "FaultInjection",
                "faults": "FaultInjection"}
PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")


class PolicyError(ValueError):
    def __init__(self, source: str, index: int, field: str, message: str) -> None:
        super().__init__(f"{source}: document {index}: {field}: {message}")
        self.source, self.index, self.field, self.message = source, index, field, message

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "index": self.index, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class PathMatch:
    type: str
    value: str

    def matches(self, path: str) -> bool:
        path = path.partition("?")[0]
        if self.type == "Exact":
            return path == self.value
        if self.type == "PathPrefix":
            return path == self.value or path.startswith(self.value.rstrip("/") + "/") or self.value == "/"
        return re.fullmatch(self.value, path) is not None


@dataclass(frozen=True, slots=True)
class RequestMatch:
    path: PathMatch | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (lower-cased name, exact value)

    def matches(self, path: str, header: Any) -> bool:
        if self.path is not None and not self.path.matches(path):
            return False
        return all(header(name) == value for name, value in self.headers)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    service: str
    match: RequestMatch | None
    delay_seconds: float | None
    delay_percent: float
    abort_status: int | None
    abort_percent: float
    duration: float | None


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    namespace: str
    name: str
    spec: FaultSpec
    document: dict[str, Any]  # as applied, for `get -o yaml`

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


class _Reader:
    def __init__(self, source: str, index: int) -> None:
        self.source, self.index = source, index

    def fail(self, field: str, message: str) -> PolicyError:
        return PolicyError(self.source, self.index, field, message)

    def obj(self, value: Any, field: str, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail(f"{field}.{key}".lstrip("."), f"unknown field (expected one of: {', '.join(sorted(allowed))})")
        for key in sorted(required):
            if key not in value:
                raise self.fail(f"{field}.{key}".lstrip("."), "required field is missing")
        return value

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(field, f"expected a non-empty string, got {value!r}")
        return value

    def duration(self, value: Any, field: str) -> float:
        try:
            return parse_duration(value if isinstance(value, str) else "")
        except InvalidDuration:
            raise self.fail(field, f"{value!r} is not a duration (valid: 500ms, 2s, 1m)") from None

    def percentage(self, value: Any, field: str) -> float:
        pct = self.obj(value, field, {"value"}, {"value"})["value"]
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
            raise self.fail(f"{field}.value", f"expected a number from 0 to 100, got {pct!r}")
        return float(pct)


def parse(raw: Any, source: str, index: int, default_namespace: str = "default") -> Resource:
    r = _Reader(source, index)
    top = r.obj(raw, "", {"apiVersion", "kind", "metadata", "spec"}, {"apiVersion", "kind", "metadata", "spec"})
    kind = top["kind"]
    if kind not in KINDS:
        raise r.fail("kind", f"unknown kind {kind!r} (supported today: {', '.join(KINDS)})")
    if top["apiVersion"] != KINDS[kind]:
        raise r.fail("apiVersion", f"{kind} is {KINDS[kind]}, not {top['apiVersion']!r}")
    meta = r.obj(top["metadata"], "metadata", {"name", "namespace", "labels", "annotations"}, {"name"})
    name, namespace = r.string(meta["name"], "metadata.name"), r.string(meta.get("namespace", default_namespace), "metadata.namespace")
    for field, value in (("metadata.name", name), ("metadata.namespace", namespace)):
        if not is_dns_label(value):
            raise r.fail(field, f"{value!r} must be lowercase letters, digits and '-'")
    return Resource(kind, namespace, name, _fault(r, top["spec"]), top)


def _fault(r: _Reader, raw: Any) -> FaultSpec:
    spec = r.obj(raw, "spec", {"targetRef", "match", "delay", "abort", "duration"}, {"targetRef"})
    target = r.obj(spec["targetRef"], "spec.targetRef", {"kind", "name", "group"}, {"name"})
    if target.get("kind", "Service") != "Service":
        raise r.fail("spec.targetRef.kind", "only Service targets are supported")
    service = r.string(target["name"], "spec.targetRef.name")
    match = _match(r, spec["match"]) if "match" in spec else None
    delay_s, delay_pct, abort_status, abort_pct = None, 0.0, None, 0.0
    if "delay" in spec:
        delay = r.obj(spec["delay"], "spec.delay", {"fixedDelay", "percentage"}, {"fixedDelay"})
        delay_s = r.duration(delay["fixedDelay"], "spec.delay.fixedDelay")
        delay_pct = r.percentage(delay.get("percentage", {"value": 100}), "spec.delay.percentage")
    if "abort" in spec:
        abort = r.obj(spec["abort"], "spec.abort", {"httpStatus", "percentage"}, {"httpStatus"})
        abort_status = abort["httpStatus"]
        if isinstance(abort_status, bool) or not isinstance(abort_status, int) or not 200 <= abort_status <= 599:
            raise r.fail("spec.abort.httpStatus", f"expected an HTTP status from 200 to 599, got {abort_status!r}")
        abort_pct = r.percentage(abort.get("percentage", {"value": 100}), "spec.abort.percentage")
    if delay_s is None and abort_status is None:
        raise r.fail("spec", "a FaultInjection needs a delay, an abort, or both")
    duration = r.duration(spec["duration"], "spec.duration") if "duration" in spec else None
    return FaultSpec(service, match, delay_s, delay_pct, abort_status, abort_pct, duration)


def _match(r: _Reader, raw: Any) -> RequestMatch:
    m = r.obj(raw, "spec.match", {"path", "headers"})
    path = None
    if "path" in m:
        p = r.obj(m["path"], "spec.match.path", {"type", "value"}, {"value"})
        kind = p.get("type", "PathPrefix")
        if kind not in PATH_TYPES:
            raise r.fail("spec.match.path.type", f"expected one of {', '.join(PATH_TYPES)}, got {kind!r}")
        value = r.string(p["value"], "spec.match.path.value")
        if kind == "RegularExpression":
            try:
                re.compile(value)
            except re.error as exc:
                raise r.fail("spec.match.path.value", f"not a regular expression: {exc}") from None
        elif not value.startswith("/"):
            raise r.fail("spec.match.path.value", "must start with '/'")
        path = PathMatch(kind, value)
    headers = []
    raw_headers = m.get("headers", [])
    if not isinstance(raw_headers, list):
        raise r.fail("spec.match.headers", "expected a list of {name, value}")
    for i, h in enumerate(raw_headers):
        entry = r.obj(h, f"spec.match.headers[{i}]", {"name", "value", "type"}, {"name", "value"})
        headers.append((r.string(entry["name"], f"spec.match.headers[{i}].name").lower(),
                        r.string(entry["value"], f"spec.match.headers[{i}].value")))
    return RequestMatch(path, tuple(headers))


def canonical_kind(text: str) -> str | None:
    return text if text in KINDS else KIND_ALIASES.get(text.lower())
