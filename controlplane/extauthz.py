"""Istio's external authorization: an ``ExtensionProvider`` (Istio's
``meshConfig.extensionProviders[]``, one resource per provider, in the mesh's root namespace)
names an HTTP service that decides; an ``AuthorizationPolicy`` with ``action: CUSTOM`` and
``provider: {name}`` says which requests it is asked about.

For each request a CUSTOM policy's rules match, the sidecar sends the provider a *check
request*, as Envoy's ``ext_authz`` filter does for Istio's ``envoyExtAuthzHttp``:

- the same method, the path ``pathPrefix`` + the request's path, ``Host`` the provider's
  service, no body (``Content-Length: 0``);
- the request's headers that ``includeRequestHeadersInCheck`` names (exact, ``prefix*`` or
  ``*suffix``, case-insensitive), and ``includeAdditionalHeadersInCheck``'s fixed ones.

The provider's answer decides: **200 allows** the request (then DENY and ALLOW policies are
evaluated, Istio's order CUSTOM, DENY, ALLOW), with the answer's headers that
``headersToUpstreamOnAllow`` names added to what the app gets, and those
``headersToDownstreamOnAllow`` names to what the caller gets. **Any other status denies**, and
the caller gets the provider's status, body and headers (``headersToDownstreamOnDeny``'s, or
all of them when it names none). A provider that cannot be reached, or does not answer within
``timeout``, denies with ``statusOnError`` (403), unless ``failOpen``.

Pure: reading the resource, building the check request, reading the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.authzrules import Pattern
from controlplane.durations import parse_duration
from controlplane.fields import FieldReader
from controlplane.names import resolve

MESH_NAMESPACE = "meshdojo-system"
DEFAULT_TIMEOUT = 600.0  # Istio's default: 10 minutes
DEFAULT_STATUS_ON_ERROR = 403
# never taken from a provider's answer: they frame that answer, not the request or response they would join
FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"host", b":authority"})
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class HttpProvider:
    """One ``envoyExtAuthzHttp`` provider."""

    name: str
    service_name: str  # (not ``service``: a resource's ``service`` is the Service it shapes, and a provider shapes none)
    namespace: str
    port: int
    timeout: float
    path_prefix: str
    fail_open: bool
    status_on_error: int
    include: tuple[Pattern, ...]  # request headers sent in the check
    additional: tuple[tuple[str, str], ...]  # fixed headers added to the check
    upstream_on_allow: tuple[Pattern, ...]
    downstream_on_allow: tuple[Pattern, ...]
    downstream_on_deny: tuple[Pattern, ...] | None  # None: every header of the answer

    @property
    def authority(self) -> str:
        return f"{self.service_name}.{self.namespace}.svc.cluster.local:{self.port}"

    def describe(self) -> str:
        return f"{self.name} (http://{self.service_name}.{self.namespace}:{self.port})"


@dataclass(frozen=True, slots=True)
class ZipkinProvider:
    """One ``zipkin`` provider: where the sidecars a Telemetry names it for send their spans."""

    name: str
    host: str  # a Service's name (NAME.NAMESPACE.svc.cluster.local) or a ServiceEntry's host
    port: int
    path: str
    max_tag_length: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


Provider = HttpProvider | ZipkinProvider
ZIPKIN_PATH = "/api/v2/spans"
ZIPKIN_TAG_LENGTH = 256  # Istio's default maxTagLength


def read_provider(r: FieldReader, spec: dict[str, Any], name: str, namespace: str) -> Provider:
    """An ``ExtensionProvider``'s spec, already checked against the schema: one provider."""
    if namespace != MESH_NAMESPACE:
        raise r.fail("metadata.namespace", f"an ExtensionProvider is mesh-wide, as Istio's meshConfig.extensionProviders: "
                                           f"put it in {MESH_NAMESPACE}, not {namespace!r}")
    given = [key for key in ("envoyExtAuthzHttp", "zipkin") if key in spec]
    if len(given) != 1:
        raise r.fail("spec", "expected one provider: envoyExtAuthzHttp (external authorization) or zipkin (traces)"
                     + (f", not {' and '.join(given)}" if given else ""))
    if "zipkin" in spec:
        zipkin = spec["zipkin"]
        return ZipkinProvider(name, zipkin["service"].rstrip("."), int(zipkin["port"]), zipkin.get("path", ZIPKIN_PATH),
                              zipkin.get("maxTagLength", ZIPKIN_TAG_LENGTH))
    http = spec["envoyExtAuthzHttp"]
    where = "spec.envoyExtAuthzHttp"
    found = resolve(http["service"], "")
    if found is None or not found[0]:
        raise r.fail(f"{where}.service", f"expected a Service as NAME.NAMESPACE or NAME.NAMESPACE.svc.cluster.local "
                                         f"(e.g. ext-authz.emojivoto.svc.cluster.local), got {http['service']!r}")
    port = int(http["port"])
    if not 0 < port < 65536:
        raise r.fail(f"{where}.port", f"expected a port from 1 to 65535, got {http['port']!r}")
    prefix = http.get("pathPrefix", "")
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise r.fail(f"{where}.pathPrefix", f"expected a path that starts with / and does not end with one (e.g. /check), got {prefix!r}")
    patterns = lambda key: tuple(Pattern(text, fold=True) for text in http.get(key, []))  # noqa: E731
    return HttpProvider(
        name, found[1], found[0], port, parse_duration(http["timeout"]) if "timeout" in http else DEFAULT_TIMEOUT, prefix,
        http.get("failOpen", False), http.get("statusOnError", DEFAULT_STATUS_ON_ERROR), patterns("includeRequestHeadersInCheck"),
        tuple(sorted((k.lower(), v) for k, v in http.get("includeAdditionalHeadersInCheck", {}).items())),
        patterns("headersToUpstreamOnAllow"), patterns("headersToDownstreamOnAllow"),
        patterns("headersToDownstreamOnDeny") if "headersToDownstreamOnDeny" in http else None)


def _named(patterns: Sequence[Pattern], name: bytes) -> bool:
    text = name.decode("latin-1")
    return any(p.matches(text) for p in patterns)


def check_headers(provider: HttpProvider, headers: Headers) -> Headers:
    """The headers of the check request: the provider's Host, the request's headers it asks for,
    its fixed ones; never a body."""
    sent = [(b"host", provider.authority.encode())]
    sent += [(n, v) for n, v in headers if n not in FRAMING and _named(provider.include, n)]
    sent += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in provider.additional]
    return [*sent, (b"content-length", b"0")]


def check_target(provider: HttpProvider, path: str) -> str:
    """The check request's absolute-form target: the provider's service, its prefix, the request's path."""
    return f"http://{provider.authority}{provider.path_prefix}{path}"


@dataclass(frozen=True, slots=True)
class Allowed:
    upstream: Headers  # added to the request the app gets (replacing any of the same name)
    downstream: Headers  # added to the response the caller gets
    result: str = "allowed"  # or failure_mode_allowed: not asked, let through (failOpen) — Envoy's stat names
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Denied:
    status: int
    headers: Headers
    body: bytes
    reason: str  # for the fate and the log: the provider's status, or why it could not be asked
    result: str = "denied"  # or error: the provider could not be asked (statusOnError)


Verdict = Allowed | Denied


def _picked(headers: Headers, patterns: Sequence[Pattern] | None) -> Headers:
    return [(n, v) for n, v in headers if n not in FRAMING and (patterns is None or _named(patterns, n))]


def verdict(provider: HttpProvider, status: int, headers: Headers, body: bytes) -> Verdict:
    """What the provider's answer means for the request (Envoy's: only 200 allows)."""
    headers = [(n.lower(), v) for n, v in headers]
    if status == 200:
        return Allowed(_picked(headers, provider.upstream_on_allow), _picked(headers, provider.downstream_on_allow))
    return Denied(status, _picked(headers, provider.downstream_on_deny), body, f"answered {status}")


def unreachable(provider: HttpProvider, why: str) -> Verdict:
    """The provider could not be asked (or did not answer in time): ``statusOnError``, or let
    through with ``failOpen``."""
    if provider.fail_open:
        return Allowed([], [], "failure_mode_allowed", f"not asked ({why}), let through: failOpen")
    body = f"meshdojo: the external authorizer {provider.describe()} could not be asked ({why})\n".encode()
    return Denied(provider.status_on_error, [(b"content-type", b"text/plain")], body, f"not asked: {why}", "error")


def no_provider(policy: str, provider: str) -> Verdict:
    """A CUSTOM policy whose provider is not defined: denied, as Istio fails closed."""
    body = (f"meshdojo: denied: AuthorizationPolicy {policy} asks provider {provider!r}, which no ExtensionProvider "
            f"in {MESH_NAMESPACE} defines\n").encode()
    return Denied(403, [(b"content-type", b"text/plain")], body, f"no ExtensionProvider {provider!r}", "error")


def with_headers(headers: Headers, added: Headers) -> Headers:
    """``headers`` with ``added``, which replace any of the same names."""
    names = {n for n, _ in added}
    return [(n, v) for n, v in headers if n not in names] + list(added)


def providers(resources: Sequence[Any]) -> dict[str, Provider]:
    """Provider name -> provider, from the ``ExtensionProvider`` resources among ``resources``."""
    return {r.name: r.spec for r in resources if r.kind == "ExtensionProvider" and r.namespace == MESH_NAMESPACE}


def missing_providers(resources: Sequence[Any]) -> list[str]:
    """A sentence per CUSTOM AuthorizationPolicy that names a provider no ExtensionProvider
    defines: the requests its rules match are denied (Istio, too, fails closed)."""
    known = {name: p for name, p in providers(resources).items() if isinstance(p, HttpProvider)}
    out = []
    for r in resources:
        provider = getattr(r.spec, "provider", None) if r.kind == "AuthorizationPolicy" else None
        if provider is not None and provider not in known:
            defined = ", ".join(sorted(known)) or "none yet"
            out.append(f"AuthorizationPolicy {r.namespace}/{r.name} asks provider {provider!r}, which no ExtensionProvider in "
                       f"{MESH_NAMESPACE} defines as envoyExtAuthzHttp (defined: {defined}): the requests its rules match are "
                       f"denied (403) until one does; apply one (e.g. demo-apps/extauthz/provider.yaml)")
        trace_to = getattr(r.spec, "trace_provider", None) if r.kind == "Telemetry" else None
        if trace_to is not None and not isinstance(providers(resources).get(trace_to), ZipkinProvider):
            out.append(f"Telemetry {r.namespace}/{r.name} sends spans to provider {trace_to!r}, which no ExtensionProvider in "
                       f"{MESH_NAMESPACE} defines as zipkin: the spans stay in the sidecars (meshdojo trace still reads them)")
    return out
