"""Cross-origin resource sharing at the proxy: Gateway API's ``CORS`` filter (standard since
v1.5) and Istio's VirtualService ``corsPolicy``, read into one :class:`CorsPolicy` that decides
what a browser's cross-origin requests get (the proxy's side: proxy/filters.py).

    filters:                                      corsPolicy:
    - type: CORS                                    allowOrigins: [{exact: https://app.example}]
      cors:                                         allowMethods: [GET, POST]
        allowOrigins: [https://app.example]         allowHeaders: [x-custom]
        allowMethods: [GET, POST]                   maxAge: 24h
        allowHeaders: [x-custom]                    allowCredentials: true
        maxAge: 86400
        allowCredentials: true

A request without an ``Origin`` header is none of CORS's business. A preflight (``OPTIONS``
with ``Access-Control-Request-Method``) from an allowed origin is answered at once, ``200`` with
the ``Access-Control-Allow-*`` headers, and goes no further; from another origin it goes on to
the backend (Istio's ``unmatchedPreflights: FORWARD``, its default) or is answered ``200``
without them (``IGNORE``, and Gateway API's way). Any other request from an allowed origin goes
on, and its response gets ``Access-Control-Allow-Origin`` (and ``-Credentials``,
``-Expose-Headers``). Where a list is ``*``, the answer is ``*`` unless credentials are allowed:
then it names what the request asked for, as Gateway API says. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from controlplane.durations import parse_duration
from controlplane.fields import FieldReader
from controlplane.matching import string_match

FORWARD, IGNORE = "FORWARD", "IGNORE"
ANY = "*"
GATEWAY_ORIGIN = re.compile(r"^(\*|https?://(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)(:[0-9]{1,5})?)$")
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class OriginMatch:
    kind: str  # exact, prefix or regex (Istio's StringMatch); host (Gateway API's, a * to the left of the host); any
    value: str = ""

    def matches(self, origin: str) -> bool:
        if self.kind == "any":
            return True
        if self.kind == "exact":
            return origin == self.value
        if self.kind == "prefix":
            return origin.startswith(self.value)
        if self.kind == "regex":
            return re.fullmatch(self.value, origin) is not None
        scheme, _, rest = self.value.partition("://")  # host: scheme://*.example.com[:port], the * taking any labels
        pattern = re.escape(f"{scheme}://") + re.escape(rest).replace(r"\*", ".+")
        return re.fullmatch(pattern, _without_default_port(origin, scheme)) is not None or re.fullmatch(pattern, origin) is not None

    def describe(self) -> str:
        return ANY if self.kind == "any" else self.value if self.kind in ("exact", "host") else f"{self.kind} {self.value}"


def _without_default_port(origin: str, scheme: str) -> str:
    """An origin without its port, when the port is its scheme's default (https://a.example:443)."""
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return origin[: -len(default)] if default and origin.endswith(default) else origin


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    origins: tuple[OriginMatch, ...]
    methods: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    max_age: int | None = None  # seconds
    credentials: bool = False
    unmatched_preflights: str = FORWARD

    def allows(self, origin: str) -> bool:
        return any(o.matches(origin) for o in self.origins)

    def preflight(self, origin: str, method: str, asked_headers: str) -> Headers:
        """The answer's headers to an allowed origin's preflight."""
        out = self._origin_headers(origin)
        methods = self._listed(self.methods, method)
        if methods:
            out.append((b"access-control-allow-methods", methods.encode("latin-1")))
        allowed_headers = self._listed(self.headers, asked_headers)
        if allowed_headers:
            out.append((b"access-control-allow-headers", allowed_headers.encode("latin-1")))
        if self.max_age is not None:
            out.append((b"access-control-max-age", str(self.max_age).encode()))
        return out

    def response_headers(self, origin: str) -> Headers:
        """What an allowed origin's (non-preflight) request's response gets."""
        out = self._origin_headers(origin)
        if self.expose:
            out.append((b"access-control-expose-headers", ",".join(self.expose).encode("latin-1")))
        return out

    def _origin_headers(self, origin: str) -> Headers:
        anyone = any(o.kind == "any" for o in self.origins) and not self.credentials
        out = [(b"access-control-allow-origin", b"*" if anyone else origin.encode("latin-1"))]
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    def _listed(self, listed: tuple[str, ...], asked: str) -> str:
        """A list's header value: the list, or for ``*`` either ``*`` or (credentials allowed) what was asked."""
        if listed == (ANY,):
            return asked if self.credentials else ANY
        return ",".join(listed)

    def describe(self) -> str:
        parts = [f"CORS for {', '.join(o.describe() for o in self.origins)}"]
        if self.methods:
            parts.append(f"methods {','.join(self.methods)}")
        if self.credentials:
            parts.append("credentials")
        return " ".join(parts)


def read_gateway_cors(r: FieldReader, spec: dict[str, Any], where: str) -> CorsPolicy:
    """Gateway API's ``cors`` (routeschema's fields): what its CEL rules and the origin's form say."""
    for field in ("allowOrigins", "allowMethods"):
        values = spec.get(field, [])
        if ANY in values and len(values) > 1:
            raise r.fail(f"{where}.{field}", "* allows every one already: write it alone, or leave it out and list them")
    origins = []
    for i, origin in enumerate(spec.get("allowOrigins", [])):
        if not GATEWAY_ORIGIN.match(origin):
            raise r.fail(f"{where}.allowOrigins[{i}]", f"{origin!r}: expected * or scheme://host[:port] (https://app.example, "
                                                       "https://*.example.com)")
        origins.append(OriginMatch("any") if origin == ANY else OriginMatch("host" if "*" in origin else "exact", origin))
    if not origins:
        raise r.fail(f"{where}.allowOrigins", "required here: the origins whose pages may read the responses (or *)")
    return CorsPolicy(tuple(origins), tuple(spec.get("allowMethods", [])), tuple(spec.get("allowHeaders", [])),
                      tuple(spec.get("exposeHeaders", [])), spec.get("maxAge", 5), bool(spec.get("allowCredentials")), IGNORE)


def read_istio_cors(r: FieldReader, spec: dict[str, Any], where: str) -> CorsPolicy:
    """Istio's ``corsPolicy`` (istioschema's fields)."""
    origins = []
    for i, match in enumerate(spec.get("allowOrigins", [])):
        kind, value = string_match(r, match, f"{where}.allowOrigins[{i}]", "{exact: https://app.example}")
        origins.append(OriginMatch("any") if kind == "exact" and value == ANY else OriginMatch(kind, value))
    if not origins:
        raise r.fail(f"{where}.allowOrigins", "required here: the origins whose pages may read the responses")
    max_age = int(parse_duration(spec["maxAge"])) if "maxAge" in spec else None
    return CorsPolicy(tuple(origins), tuple(spec.get("allowMethods", [])), tuple(spec.get("allowHeaders", [])),
                      tuple(spec.get("exposeHeaders", [])), max_age, bool(spec.get("allowCredentials")),
                      spec.get("unmatchedPreflights", FORWARD))
