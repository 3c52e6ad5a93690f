"""Gateway API's HTTPRoute filters, read once into frozen values (see :mod:`proxy.filters` for
what the proxy does with them).

    rules:
    - matches: [{path: {type: PathPrefix, value: /api}}]
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: x-canary, value: "1"}], remove: [x-debug]}
      - type: RequestMirror
        requestMirror: {backendRef: {name: reviews-v2}, percent: 50}
      - type: URLRewrite
        urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2/api}}

The field definitions (types, ranges, patterns) are :data:`controlplane.routeschema.FILTER`;
here is what a schema cannot say, from Gateway API's CEL rules and the proxy's own limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.cors import CorsPolicy, read_gateway_cors
from controlplane.fields import FieldReader

# headers a filter may not touch: the proxy frames each message and names its destination itself
UNEDITABLE_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                                "proxy-connection", "te", "trailer", "upgrade", "l5d-dst-canonical"})


@dataclass(frozen=True, slots=True)
class HeaderEdits:
    """RequestHeaderModifier / ResponseHeaderModifier: names lower-cased, as the proxy keeps them."""

    set: tuple[tuple[bytes, bytes], ...] = ()
    add: tuple[tuple[bytes, bytes], ...] = ()
    remove: frozenset[bytes] = frozenset()

    def apply(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The headers with these edits made: removed and set names dropped, then set and added."""
        dropped = self.remove | {name for name, _ in self.set}
        return [(n, v) for n, v in headers if n not in dropped] + list(self.set) + list(self.add)

    def describe(self) -> str:
        parts = [f"set {n.decode()}: {v.decode()}" for n, v in self.set]
        parts += [f"add {n.decode()}: {v.decode()}" for n, v in self.add]
        parts += [f"remove {n.decode()}" for n in sorted(self.remove)]
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class PathEdit:
    type: str  # ReplaceFullPath or ReplacePrefixMatch (of the rule's PathPrefix match)
    value: str


@dataclass(frozen=True, slots=True)
class Mirror:
    service: str
    share: float  # of the matching requests, 0 to 1
    subset: str | None = None  # Istio's mirror.subset: the pods of a DestinationRule's subset of the Service


@dataclass(frozen=True, slots=True)
class Redirect:
    status: int
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    path: PathEdit | None = None


@dataclass(frozen=True, slots=True)
class DirectResponse:
    """Istio's directResponse: the rule's requests answered at once."""

    status: int
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Rewrite:
    hostname: str | None = None
    path: PathEdit | None = None


@dataclass(frozen=True, slots=True)
class RouteFilters:
    """A rule's Gateway API filters, read once."""

    request_headers: HeaderEdits | None = None
    response_headers: HeaderEdits | None = None
    mirrors: tuple[Mirror, ...] = ()
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    cors: CorsPolicy | None = None  # Gateway API's CORS filter, Istio's corsPolicy
    direct: DirectResponse | None = None  # Istio's directResponse

    def describe(self) -> str:
        parts = [self.cors.describe()] if self.cors is not None else []
        if self.direct is not None:
            parts.append(f"answer {self.direct.status} ({len(self.direct.body)} bytes)")
        if self.redirect is not None:
            parts.append(f"redirect {self.redirect.status}")
        if self.request_headers is not None:
            parts.append(f"request headers: {self.request_headers.describe()}")
        if self.rewrite is not None:
            parts.append("rewrite " + ", ".join(
                ([f"host {self.rewrite.hostname}"] if self.rewrite.hostname else [])
                + ([f"path ({self.rewrite.path.type}) {self.rewrite.path.value}"] if self.rewrite.path else [])))
        parts += [f"mirror {m.share * 100:g}% to {m.service}{'/' + m.subset if m.subset else ''}" for m in self.mirrors]
        if self.response_headers is not None:
            parts.append(f"response headers: {self.response_headers.describe()}")
        return "; ".join(parts)


FILTER_FIELDS = {"RequestHeaderModifier": "requestHeaderModifier", "ResponseHeaderModifier": "responseHeaderModifier",
                 "RequestMirror": "requestMirror", "RequestRedirect": "requestRedirect", "URLRewrite": "urlRewrite",
                 "CORS": "cors"}


def parse_filters(r: FieldReader, raw: list[dict[str, Any]], matches: tuple[Any, ...], has_backends: bool,
                  where: str) -> RouteFilters:
    """What Gateway API's CEL rules say about filters: each type's own field and only it, each
    type once (mirrors excepted), a redirect neither with a rewrite nor with backendRefs."""
    seen: dict[str, int] = {}
    found: dict[str, Any] = {}
    mirrors = []
    for j, f in enumerate(raw):
        at = f"{where}.filters[{j}]"
        kind, field = f["type"], FILTER_FIELDS[f["type"]]
        if field not in f:
            raise r.fail(f"{at}.{field}", f"required: a {kind} filter keeps its settings in {field}")
        for other in FILTER_FIELDS.values():
            if other != field and other in f:
                raise r.fail(f"{at}.{other}", f"only {field} goes with type {kind} (one filter per list item)")
        if kind != "RequestMirror" and kind in seen:
            raise r.fail(f"{at}.type", f"a rule takes one {kind} filter; filters[{seen[kind]}] is one already")
        seen.setdefault(kind, j)
        if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            found[kind] = header_edits(r, f[field], f"{at}.{field}")
        elif kind == "RequestMirror":
            mirrors.append(_mirror(r, f[field], f"{at}.{field}"))
        elif kind == "CORS":
            found[kind] = read_gateway_cors(r, f[field], f"{at}.{field}")
        elif kind == "RequestRedirect":
            spec = f[field]
            path = _path_edit(r, spec["path"], f"{at}.{field}.path", matches) if "path" in spec else None
            if spec.get("statusCode", 302) not in (301, 302, 303, 307, 308):
                raise r.fail(f"{at}.{field}.statusCode", f"expected 301, 302, 303, 307 or 308, got {spec['statusCode']}")
            found[kind] = Redirect(spec.get("statusCode", 302), spec.get("scheme"), spec.get("hostname"), spec.get("port"), path)
        else:
            spec = f[field]
            path = _path_edit(r, spec["path"], f"{at}.{field}.path", matches) if "path" in spec else None
            found[kind] = Rewrite(spec.get("hostname"), path)
    if "RequestRedirect" in found:
        if "URLRewrite" in found:
            raise r.fail(f"{where}.filters[{seen['URLRewrite']}].type", "a rule cannot both redirect and rewrite (Gateway API)")
        if has_backends:
            raise r.fail(f"{where}.backendRefs", "a rule with a RequestRedirect answers the request itself: leave out backendRefs")
    return RouteFilters(found.get("RequestHeaderModifier"), found.get("ResponseHeaderModifier"), tuple(mirrors),
                        found.get("RequestRedirect"), found.get("URLRewrite"), found.get("CORS"))


def backend_filters(r: FieldReader, raw: list[dict[str, Any]], where: str) -> tuple[HeaderEdits | None, HeaderEdits | None]:
    """A backendRef's ``filters``: (its RequestHeaderModifier, its ResponseHeaderModifier). The
    other types act on the whole rule: they belong in the rule's filters."""
    for j, f in enumerate(raw):
        if f["type"] not in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            raise r.fail(f"{where}.filters[{j}].type", f"{f['type']}: a backendRef's filters here edit headers only "
                                                      "(RequestHeaderModifier, ResponseHeaderModifier); put it in the rule's filters")
    filters = parse_filters(r, raw, (), True, where)
    return filters.request_headers, filters.response_headers


def header_edits(r: FieldReader, spec: dict[str, Any], where: str) -> HeaderEdits:
    named: dict[str, str] = {}
    lists: dict[str, list[tuple[bytes, bytes]]] = {"set": [], "add": []}
    for op in ("set", "add", "remove"):
        for k, item in enumerate(spec.get(op, [])):
            name = (item if op == "remove" else item["name"]).lower()
            at = f"{where}.{op}[{k}]" + ("" if op == "remove" else ".name")
            if name in UNEDITABLE_HEADERS:
                raise r.fail(at, f"{name} is the proxy's to write (it frames each message and names its destination); "
                                 "edit other headers" + (", or use a URLRewrite filter's hostname" if name == "host" else ""))
            if name in named:
                raise r.fail(at, f"{name} is already in {named[name]}: name each header once per filter")
            named[name] = f"{where}.{op}"
            if op != "remove":
                lists[op].append((name.encode(), item["value"].encode()))
    remove = frozenset(n.lower().encode() for n in spec.get("remove", []))
    return HeaderEdits(tuple(lists["set"]), tuple(lists["add"]), remove)


def _mirror(r: FieldReader, spec: dict[str, Any], where: str) -> Mirror:
    if "percent" in spec and "fraction" in spec:
        raise r.fail(f"{where}.fraction", "give percent or fraction, not both")
    share = spec.get("percent", 100) / 100
    if "fraction" in spec:
        numerator, denominator = spec["fraction"]["numerator"], spec["fraction"].get("denominator", 100)
        if numerator > denominator:
            raise r.fail(f"{where}.fraction.numerator", f"expected at most the denominator ({denominator}), got {numerator}")
        share = numerator / denominator
    return Mirror(spec["backendRef"]["name"], share)


def _path_edit(r: FieldReader, spec: dict[str, Any], where: str, matches: tuple[Any, ...]) -> PathEdit:
    kind = spec["type"]
    field, other = ("replaceFullPath", "replacePrefixMatch") if kind == "ReplaceFullPath" else ("replacePrefixMatch", "replaceFullPath")
    if field not in spec:
        raise r.fail(f"{where}.{field}", f"required with type {kind}")
    if other in spec:
        raise r.fail(f"{where}.{other}", f"only {field} goes with type {kind}")
    if "?" in spec[field] or "#" in spec[field]:
        raise r.fail(f"{where}.{field}", "expected a path alone, without '?' or '#' (the request's query is kept)")
    if kind == "ReplacePrefixMatch" and (not matches or any(m.path is None or m.path.type != "PathPrefix" for m in matches)):
        raise r.fail(f"{where}.type", "ReplacePrefixMatch replaces what a PathPrefix match matched: "
                                      "give every match of this rule a path of type PathPrefix")
    return PathEdit(kind, spec[field])
