"""Istio's ``meshConfig.extensionProviders[]`` as a resource: an ``ExtensionProvider``, one per
provider, named as the provider, in the mesh's root namespace (mesh-wide, as meshConfig is).

Two kinds of provider: ``envoyExtAuthzHttp``, an external authorizer a CUSTOM
``AuthorizationPolicy`` asks (controlplane/extauthz.py), and ``zipkin``, a trace collector a
``Telemetry``'s ``tracing[].providers`` sends the sidecars' spans to (proxy/zipkin.py).

Pure: reading the resource, finding providers by name, and naming the policies that ask for a
provider nobody defined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.authzrules import Pattern
from controlplane.durations import parse_duration
from controlplane.fields import FieldReader
from controlplane.istioschema import read_as
from controlplane.names import resolve

MESH_NAMESPACE = "meshdojo-system"
DEFAULT_TIMEOUT = 600.0  # Istio's default: 10 minutes
DEFAULT_STATUS_ON_ERROR = 403


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


def providers(resources: Sequence[Any]) -> dict[str, Provider]:
    """Provider name -> provider, from the ``ExtensionProvider`` resources among ``resources``."""
    return {r.name: r.spec for r in resources if r.kind == "ExtensionProvider" and r.namespace == MESH_NAMESPACE}


def missing_providers(resources: Sequence[Any]) -> list[str]:
    """A sentence per CUSTOM AuthorizationPolicy that names a provider no ExtensionProvider
    defines: the requests its rules match are denied (Istio, too, fails closed)."""
    known = {name: p for name, p in providers(resources).items() if isinstance(p, HttpProvider)}
    out = []
    for r in resources:
        provider = getattr(r.spec, "provider", None) if read_as(r.kind) == "AuthorizationPolicy" else None
        if provider is not None and provider not in known:
            defined = ", ".join(sorted(known)) or "none yet"
            out.append(f"{r.kind} {r.namespace}/{r.name} asks provider {provider!r}, which no ExtensionProvider in "
                       f"{MESH_NAMESPACE} defines as envoyExtAuthzHttp (defined: {defined}): the requests its rules match are "
                       f"denied (403) until one does; apply one (e.g. demo-apps/extauthz/provider.yaml)")
        trace_to = getattr(r.spec, "trace_provider", None) if read_as(r.kind) == "Telemetry" else None
        if trace_to is not None and not isinstance(providers(resources).get(trace_to), ZipkinProvider):
            out.append(f"{r.kind} {r.namespace}/{r.name} sends spans to provider {trace_to!r}, which no ExtensionProvider in "
                       f"{MESH_NAMESPACE} defines as zipkin: the spans stay in the sidecars (meshdojo trace still reads them)")
    return out
