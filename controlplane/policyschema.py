"""The fields of each policy kind's ``spec``: what the validator checks and what the CRDs say.

One definition per kind (see :mod:`controlplane.schema`): :func:`controlplane.policy.parse`
checks a document against it before reading values, and :mod:`controlplane.crds` turns it
into the kind's CustomResourceDefinition for Kubernetes.
"""

from __future__ import annotations

from dataclasses import replace

from controlplane import authzrules
from controlplane.gatewayapi import GATEWAY_GROUP
from controlplane.ingressschema import GATEWAY, INGRESS
from controlplane.istioschema import (
    CONNECTION_POOL,
    DESTINATION_RULE,
    GROUP_VERSIONS,
    ISTIO_AUTHORIZATION_POLICY,
    ISTIO_GATEWAY,
    ISTIO_GATEWAY_SPEC,
    ISTIO_NETWORKING_GROUP,
    ISTIO_REQUEST_AUTHENTICATION,
    ISTIO_SECURITY_GROUP,
    ISTIO_SERVICE_ENTRY,
    ISTIO_SIDECAR,
    ISTIO_TELEMETRY,
    NETWORKING_VERSIONS,
    PEER_AUTHENTICATION,
    SECURITY_VERSIONS,
    VIRTUAL_SERVICE,
)
from controlplane.linkerdschema import (
    AUTHENTICATION_VERSIONS,
    HTTP_LOCAL_RATE_LIMIT_POLICY,
    HTTP_ROUTE_VERSIONS,
    LINKERD_AUTHORIZATION_POLICY,
    LINKERD_GROUP,
    LINKERD_HTTP_ROUTE,
    MESH_TLS_AUTHENTICATION,
    NETWORK_AUTHENTICATION,
    RATE_LIMIT_VERSIONS,
    SERVER,
    SERVER_AUTHORIZATION,
    SERVER_AUTHORIZATION_VERSIONS,
    SERVER_VERSIONS,
)
from controlplane.linkerdschema import AUTHORIZATION_POLICY as LINKERD_AUTHORIZATION
from controlplane.linkerdschema import HTTP_ROUTE as LINKERD_ROUTE
from controlplane.names import HOST_PATTERN
from controlplane.routeschema import HEADER_NAME, HTTP_ROUTE, MANY, MATCH, METHODS, PARENT_GROUPS
from controlplane.schema import Bool, Duration, Field, Int, IntOrStr, Labels, ListOf, MapOf, Num, Obj, Str, obj

POLICY_GROUP = "policy.meshdojo.dev"
POLICY_VERSION = "v1alpha1"
POLICY_API = f"{POLICY_GROUP}/{POLICY_VERSION}"
GATEWAY_API = f"{GATEWAY_GROUP}/v1"
INGRESS_API = "networking.k8s.io/v1"
BUILT_IN_KINDS = ("Ingress",)  # the API server's own kinds: no CRD of ours, ever
TARGET_KINDS = ("Service", "Deployment", "Pod", "ServiceAccount")
SERVED_KINDS = ("Service", "Deployment", "Pod")


def kube_kind(kind: str) -> str:
    """The Kubernetes kind of one of meshdojo's kinds (a CRD's names, a watch, a write, a delete)."""
    return kind.partition(".")[0]


def kube_group(kind: str) -> str:
    """The group of a kind meshdojo names with it (Istio's ``Telemetry.telemetry.istio.io``), else ""."""
    return kind.partition(".")[2]


PERCENTAGE = obj({"value": Num(0, 100, doc="percent of matching requests, 0 to 100")}, ("value",),
                 doc="how many of the matching requests (all when left out)")
# a CircuitBreaker's or RetryBudget's target: a Service, or a ServiceEntry's hosts (as a DestinationRule may name
# a ServiceEntry's host); an HTTPRoute's parent is its like (controlplane/routeschema.py)
SERVICE_REF = obj({
    "kind": Str(enum=("Service", "ServiceEntry"), doc="Service (the default), or ServiceEntry: the entry's hosts, outside the mesh"),
    "name": Str(doc="the Service's (or ServiceEntry's) name"),
    "group": Str(enum=PARENT_GROUPS, allow_empty=True,
                 doc='"" for a Service (or core, as Linkerd writes it); policy.meshdojo.dev (or Istio\'s networking.istio.io) '
                     'for a ServiceEntry'),
    "namespace": Str(doc="must be left out: the Service of this resource's namespace"),
    "port": Int(1, 65535, "a port", doc="not read: every port of the Service"),
}, ("name",), doc="the Service (or ServiceEntry) whose traffic this shapes")
SELECTOR = obj({"matchLabels": Labels(doc="the pods with all of these labels")}, ("matchLabels",),
               doc="Istio's workload selector: the pods this applies to")


def workload_ref(kinds: tuple[str, ...]) -> Obj:
    return obj({
        "kind": Str(enum=kinds, doc=f"one of {', '.join(kinds)} (Service by default)"),
        "name": Str(doc="the Service's, Deployment's, Pod's or ServiceAccount's name, in this namespace"),
        "group": Str(allow_empty=True, doc='"" (the core group) or apps for a Deployment; not read'),
        "namespace": Str(doc="must be left out: a policy targets workloads of its own namespace"),
        "port": Int(1, 65535, "a port", doc="not read: every port of the workloads"),
    }, ("name",), doc="the workloads this applies to; left out (and no selector): the whole namespace")


FAULT_INJECTION = obj({
    "targetRef": workload_ref(SERVED_KINDS),
    "selector": SELECTOR,
    "match": MATCH,
    "delay": obj({"fixedDelay": Duration(doc="e.g. 7s"), "percentage": PERCENTAGE}, ("fixedDelay",),
                 doc="hold matching requests this long before they go on (Istio's fault.delay)"),
    "abort": obj({"httpStatus": Int(200, 599, "an HTTP status", doc="the status the sidecar answers with, e.g. 503"),
                  "percentage": PERCENTAGE}, ("httpStatus",),
                 doc="answer matching requests at once with httpStatus, the app never sees them (Istio's fault.abort)"),
    "duration": Duration(doc="the resource removes itself after this long"),
})

RETRY_BUDGET = obj({
    "targetRef": SERVICE_REF,
    "retryRatio": Num(0, 1000, doc="retries allowed per original request (0.2: 20 %)"),
    "minRetriesPerSecond": Num(0, 100000, doc="retries always allowed, whatever the ratio (10 by default)"),
    "ttl": Duration(doc="the window the ratio is computed over"),
}, ("targetRef",))

CIRCUIT_BREAKER = obj({
    "targetRef": SERVICE_REF,
    "consecutiveFailures": Int(1, 1000, "a whole number", doc="failures in a row that eject an endpoint"),
    "penalty": Duration(doc="how long the first ejection lasts"),
    "maxPenalty": Duration(doc="the longest an ejection lasts (each ejection in a row doubles the penalty)"),
    "jitter": Num(0, 1, doc="a random share added to each penalty (0.1: up to 10 %)"),
    "connectionPool": replace(CONNECTION_POOL, doc="Istio's DestinationRule connectionPool: requests over these limits get 503 at once"),
}, ("targetRef",))

RATE_LIMIT = obj({
    "targetRef": workload_ref(SERVED_KINDS),
    "selector": SELECTOR,
    # above 0, not "from 0.001": the API server compares an integer 0 with a fractional minimum as integers
    "requestsPerSecond": Num(0, MANY, above_low=True, doc="the steady rate allowed"),
    "burst": Int(1, MANY, "a whole number", doc="requests allowed at once above the steady rate"),
}, ("requestsPerSecond",))

# Istio's string forms: exact, prefix*, *suffix, or * for any value
VALUES = ListOf(Str(doc="exact, prefix*, *suffix, or * for any"))
PRINCIPALS = ListOf(Str(pattern=authzrules.PRINCIPAL_PATTERN, hint=authzrules.PRINCIPAL_HINT,
                        doc="cluster.local/ns/NS/sa/SA (Istio's form) or spiffe://meshdojo.local/ns/NS/sa/SA; * at the start or end"))
IP_BLOCKS = ListOf(Str(doc="an IP address or a CIDR block"))
PORTS = ListOf(Str(pattern=r"^[0-9]+$", hint='expected a port number as a string, e.g. "8080"'))
AUTHZ_PATHS = ListOf(Str(doc="/exact, /prefix*, */suffix, *, or a template /api/{*}/vote, /static/{**}"))
AUTHZ_SOURCE = obj({
    "principals": replace(PRINCIPALS, doc="the caller's mTLS identity is one of these"),
    "notPrincipals": replace(PRINCIPALS, doc="the caller's mTLS identity is none of these"),
    "namespaces": replace(VALUES, doc="the caller's identity is of one of these namespaces"),
    "notNamespaces": replace(VALUES, doc="the caller's identity is of none of these namespaces"),
    "serviceAccounts": ListOf(Str(doc='"sa" (this namespace) or "ns/sa"'), doc="the caller's ServiceAccount is one of these"),
    "notServiceAccounts": ListOf(Str(doc='"sa" (this namespace) or "ns/sa"'), doc="the caller's ServiceAccount is none of these"),
    "requestPrincipals": replace(VALUES, doc="the end user's verified JWT (iss/sub) is one of these (RequestAuthentication)"),
    "notRequestPrincipals": replace(VALUES, doc="the end user's verified JWT (iss/sub) is none of these"),
    "ipBlocks": replace(IP_BLOCKS, doc="the connection's peer address is in one of these"),
    "notIpBlocks": replace(IP_BLOCKS, doc="the connection's peer address is in none of these"),
    "remoteIpBlocks": replace(IP_BLOCKS, doc="the original client (X-Forwarded-For) is in one of these"),
    "notRemoteIpBlocks": replace(IP_BLOCKS, doc="the original client (X-Forwarded-For) is in none of these"),
    "unauthenticated": Bool(doc="plaintext callers, with no identity"),
}, doc="who: every field set must match (a field: one of its values; its not- twin: none of them)")
AUTHZ_OPERATION = obj({
    "hosts": replace(VALUES, doc="the request's Host is one of these"),
    "notHosts": replace(VALUES, doc="the request's Host is none of these"),
    "ports": replace(PORTS, doc="the port the request came to is one of these"),
    "notPorts": replace(PORTS, doc="the port the request came to is none of these"),
    "methods": ListOf(Str(enum=METHODS), doc="the request's method is one of these"),
    "notMethods": ListOf(Str(enum=METHODS), doc="the request's method is none of these"),
    "paths": replace(AUTHZ_PATHS, doc="the request's path is one of these"),
    "notPaths": replace(AUTHZ_PATHS, doc="the request's path is none of these"),
}, doc="what: every field set must match")
AUTHZ_CONDITION = obj({
    "key": Str(pattern=authzrules.CONDITION_KEY_PATTERN, hint=authzrules.CONDITION_KEY_HINT, doc="what the condition reads"),
    "values": replace(VALUES, doc="the key's value is one of these"),
    "notValues": replace(VALUES, doc="the key's value is none of these"),
}, ("key",), doc="when: the key must have one of values, and none of notValues")


def _authorization_policy(source: Obj) -> Obj:
    """Our AuthorizationPolicy's fields (Istio's, and ``source``'s own set)."""
    return obj({
        "targetRef": workload_ref(TARGET_KINDS),
        "selector": SELECTOR,
        "action": Str(enum=("ALLOW", "DENY", "AUDIT", "CUSTOM"),
                      doc="ALLOW by default; CUSTOM: the requests the rules match are decided by provider (an ExtensionProvider)"),
        "provider": obj({"name": Str(doc="an ExtensionProvider in meshdojo-system")}, ("name",),
                        doc="with action CUSTOM: the external authorizer asked"),
        "rules": ListOf(obj({
            "from": ListOf(obj({"source": source}, ("source",)), doc="who may call: any one of these (left out: anyone)"),
            "to": ListOf(obj({"operation": AUTHZ_OPERATION}, ("operation",)), doc="what they may do: any one of these (left out: "
                                                                                   "anything)"),
            "when": ListOf(AUTHZ_CONDITION, doc="conditions on the request, every one"),
        }, doc="matches when one of from, one of to and every when match"),
            doc="the requests the action is for; ALLOW with no rules allows nothing, and left out an ALLOW allows everything"),
    })


AUTHORIZATION_POLICY = _authorization_policy(AUTHZ_SOURCE)
# Istio's own (security.istio.io): the same fields, but for unauthenticated, which is ours
ISTIO_AUTHORIZATION = _authorization_policy(replace(AUTHZ_SOURCE, fields={
    name: field for name, field in AUTHZ_SOURCE.fields.items() if name != "unauthenticated"}))

MESH_TLS = obj({
    "targetRef": workload_ref(TARGET_KINDS),
    "selector": SELECTOR,
    "mode": Str(enum=("STRICT", "PERMISSIVE"), doc="STRICT: mutual TLS only, plaintext refused; PERMISSIVE: both"),
}, ("mode",))

# Istio's ServiceEntry: external hosts the mesh knows by name (plain HTTP from the sidecar)
PORT_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SERVICE_ENTRY = obj({
    "hosts": ListOf(Str(pattern=HOST_PATTERN, hint="expected a lower-case host name, e.g. httpbin.org or *.example.com"),
                    non_empty=True, hint="expected a non-empty list of host names",
                    doc="the names the apps call (httpbin.org, *.example.com)"),
    "ports": ListOf(obj({
        "number": Int(1, 65535, "a port", doc="the port the application calls"),
        "name": Str(pattern=PORT_NAME, hint="expected a port name of lower-case letters, digits and '-'",
                    doc="the port's name (a BackendTLSPolicy's sectionName, an endpoint's ports name it)"),
        "protocol": Str(enum=("HTTP", "HTTPS", "TLS"),
                        doc="HTTP: the sidecar forwards plain HTTP/1.1; HTTPS or TLS: listed, not served by the sidecar "
                            "(an app calls https:// hosts directly: HTTP_PROXY carries http:// only)"),
        "targetPort": Int(1, 65535, "a port", doc="the endpoints' port (the number by default)"),
    }, ("number", "name")), non_empty=True, hint="expected a non-empty list of {number, name, protocol}",
        doc="the ports the apps call the hosts on"),
    "resolution": Str(enum=("DNS", "STATIC", "NONE"),
                      doc="DNS (the host's or the endpoints' names), STATIC (the endpoints' addresses) or NONE (the host asked for)"),
    "location": Str(enum=("MESH_EXTERNAL",), doc="MESH_EXTERNAL (the default): outside the mesh, no mutual TLS"),
    "endpoints": ListOf(obj({
        "address": Str(pattern=r"^[A-Za-z0-9.:-]+$", hint="expected an IP address or a host name",
                       doc="an IP address (STATIC) or a host name (DNS)"),
        "ports": MapOf(Int(1, 65535, "a port"), hint="expected a mapping of port names to numbers, e.g. {http: 8080}",
                       doc="port name (from spec.ports) -> the port to connect to at this address"),
    }, ("address",)), doc="where to connect: required with resolution STATIC"),
}, ("hosts", "ports"))

# Gateway API's BackendTLSPolicy, for a ServiceEntry's host: the sidecar originates TLS (controlplane/backendtls.py)
BACKEND_TLS_POLICY = obj({
    "targetRefs": ListOf(obj({
        "group": Str(enum=("policy.meshdojo.dev", "networking.istio.io", ""), allow_empty=True,
                     doc="networking.istio.io (Istio's) or policy.meshdojo.dev: a ServiceEntry's group"),
        "kind": Str(enum=("ServiceEntry", "Service"), doc="ServiceEntry: a host outside the mesh"),
        "name": Str(doc="the ServiceEntry's name, in this namespace"),
        "sectionName": Str(pattern=PORT_NAME, hint="expected a port name of the ServiceEntry",
                           doc="one of the entry's ports by name (left out: every port)"),
    }, ("kind", "name")), non_empty=True, max_items=16, hint="expected a non-empty list of {group, kind, name, sectionName}",
        doc="the ServiceEntries (and ports) whose hosts the sidecars reach over TLS"),
    "validation": obj({
        "hostname": Str(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                        hint="expected a host name, e.g. edition.cnn.com", doc="sent as SNI; the server's certificate must carry it"),
        "wellKnownCACertificates": Str(enum=("System",), doc="System: the server's certificate is checked with the system's CAs"),
    }, ("hostname",), doc="how the server is checked"),
}, ("targetRefs", "validation"))

SIDECAR = obj({
    "workloadSelector": obj({"labels": Labels(doc="the pods with all of these labels")}, ("labels",),
                            doc="the pods this applies to; left out: the whole namespace (the mesh in meshdojo-system)"),
    "outboundTrafficPolicy": obj({
        "mode": Str(enum=("ALLOW_ANY", "REGISTRY_ONLY"),
                    doc="ALLOW_ANY (the default): any host outside the mesh is passed through; "
                        "REGISTRY_ONLY: only Services and ServiceEntry hosts"),
    }, ("mode",), doc="what the sidecars do with a host outside the mesh"),
}, ("outboundTrafficPolicy",))

# Istio's Telemetry: how many of the requests that start a trace here are sampled, and access logs
TELEMETRY = obj({
    "targetRef": workload_ref(TARGET_KINDS),
    "selector": SELECTOR,
    "tracing": ListOf(obj({
        "randomSamplingPercentage": Num(0, 100, doc="percent of the requests that start a trace at these sidecars (1 by default)"),
        "providers": ListOf(obj({"name": Str(doc="a zipkin ExtensionProvider in meshdojo-system")}, ("name",)), max_items=1,
                            hint="expected a list of one provider", doc="where these sidecars send their spans"),
    }), non_empty=True, max_items=1,
        hint="expected a list of one tracing entry", doc="one entry: how these sidecars sample traces, and where they send them"),
    "accessLogging": ListOf(obj({
        "providers": ListOf(obj({"name": Str(enum=("envoy",), doc="envoy: Envoy's default text format, in the sidecar's log")},
                                ("name",)), max_items=1, doc="envoy: the access log provider"),
        "disabled": Bool(doc="true: no access log at these sidecars (false by default)"),
        "filter": obj({"expression": Str(doc="a CEL expression over Envoy's attributes, e.g. response.code >= 400")}, ("expression",),
                      doc="only the requests it is true for are logged"),
    }), non_empty=True, max_items=1, hint="expected a list of one accessLogging entry",
        doc="one entry: a line per request in these sidecars' logs (meshdojo logs DEPLOYMENT --proxy)"),
})

# Istio's RequestAuthentication: the end users' JWTs these workloads accept
REQUEST_AUTHENTICATION = obj({
    "targetRef": workload_ref(TARGET_KINDS),
    "selector": SELECTOR,
    "jwtRules": ListOf(obj({
        "issuer": Str(doc="the token's iss claim; with neither jwks nor jwksUri, a URL its keys are discovered from"),
        "audiences": ListOf(Str(), doc="the token's aud must name one (left out: any)"),
        "jwks": Str(doc='the issuer\'s keys, a JWKS as JSON text: {"keys": [...]}'),
        "jwksUri": Str(pattern=r"^https?://[^\s]+$", hint="expected an http:// or https:// URL",
                       doc="where the control plane fetches the issuer's JWKS"),
        "fromHeaders": ListOf(obj({"name": replace(HEADER_NAME, doc="the header's name"), "prefix": Str(allow_empty=True, doc='e.g. "Bearer "')}, ("name",)),
                              doc="headers the token is in (default: Authorization with Bearer, and ?access_token)"),
        "fromParams": ListOf(Str(), doc="query parameters the token is in"),
        "fromCookies": ListOf(Str(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", hint="expected a cookie's name"),
                              doc="cookies the token is in (e.g. session)"),
        "timeout": Duration(doc="how long the control plane waits for the keys at jwksUri (5s by default)"),
        "forwardOriginalToken": Bool(doc="keep the token in the request the app gets (false: it is removed, as in Istio)"),
        "outputPayloadToHeader": replace(HEADER_NAME, doc="a header the app gets the token's payload in (base64url JSON)"),
        "outputClaimToHeaders": ListOf(obj({"header": replace(HEADER_NAME, doc="the header the app gets"),
                                            "claim": Str(doc="the claim whose value it carries")}, ("header", "claim")),
                                       doc="claims the app gets as headers"),
    }, ("issuer",)), non_empty=True, hint="expected a non-empty list of {issuer, jwks or jwksUri}",
        doc="the issuers whose tokens are verified; a token that fails is refused (401), no token passes"),
}, ("jwtRules",))

# Istio's meshConfig.extensionProviders[]: one resource per provider, named as the provider, in meshdojo-system
HEADER_PATTERNS = ListOf(Str(pattern=r"^(\*|\*?[A-Za-z0-9!#$%&'+.^_`|~-]+\*?)$",
                             hint="expected a header name, or one with a * at one end (x-ext-authz, x-*, *-id)"))
EXTENSION_PROVIDER = obj({
    "envoyExtAuthzHttp": obj({
        "service": Str(pattern=r"^[a-z0-9.-]+$", hint="expected a Service as NAME.NAMESPACE.svc.cluster.local",
                       doc="the authorizer's Service: NAME.NAMESPACE.svc.cluster.local (or NAME.NAMESPACE)"),
        "port": IntOrStr(1, 65535, "a port", doc="the Service's port"),
        "timeout": Duration(doc="how long to wait for its answer (10m by default, as Istio's)"),
        "pathPrefix": Str(doc="put before the request's path in the check request (e.g. /check)"),
        "failOpen": Bool(doc="true: a provider that cannot be asked lets requests through (false: statusOnError)"),
        "statusOnError": Int(100, 599, "an HTTP status", doc="the status when the provider cannot be asked (403)"),
        "includeRequestHeadersInCheck": replace(HEADER_PATTERNS, doc="the request's headers the check request carries"),
        "includeAdditionalHeadersInCheck": MapOf(Str(allow_empty=True), hint="expected a mapping of header names to values",
                                                 doc="fixed headers added to every check request"),
        "headersToUpstreamOnAllow": replace(HEADER_PATTERNS, doc="the authorizer's headers the app gets, when allowed"),
        "headersToDownstreamOnAllow": replace(HEADER_PATTERNS, doc="the authorizer's headers the caller gets, when allowed"),
        "headersToDownstreamOnDeny": replace(HEADER_PATTERNS, doc="the authorizer's headers the caller gets with a denial"),
    }, ("service", "port"), doc="an external authorizer over HTTP, as Envoy's ext_authz http_service"),
    "zipkin": obj({
        "service": Str(pattern=r"^[a-z0-9.-]+$", hint="expected a host, e.g. zipkin.istio-system.svc.cluster.local",
                       doc="the collector: a Service (NAME.NAMESPACE.svc.cluster.local) or a ServiceEntry's host"),
        "port": IntOrStr(1, 65535, "a port", doc="its port (9411: Zipkin's, and Jaeger's Zipkin receiver)"),
        "path": Str(pattern=r"^/[^\s]*$", hint="expected a path starting with /", doc="/api/v2/spans by default"),
        "maxTagLength": Int(1, 65535, "a length", doc="tag values are cut to this (256 by default)"),
    }, ("service", "port"), doc="a trace collector speaking Zipkin's v2 JSON (Zipkin, Jaeger): the sidecars send their spans"),
}, doc="one provider: envoyExtAuthzHttp or zipkin")
# fields a kind refuses by name, with why (checked before the schema, whose message would only say "unknown")
TARGET_REFS_REFUSED = ("Istio reads targetRefs at waypoints and gateways only; a sidecar's policy is chosen by "
                       "spec.selector.matchLabels here, as in Istio's sidecar mode (or by meshdojo's spec.targetRef)")
REFUSED: dict[str, dict[str, str]] = {
    ISTIO_AUTHORIZATION_POLICY: {"targetRefs": TARGET_REFS_REFUSED},
    ISTIO_REQUEST_AUTHENTICATION: {"targetRefs": TARGET_REFS_REFUSED},
    ISTIO_TELEMETRY: {"targetRefs": TARGET_REFS_REFUSED},
    "Ingress": {
        "defaultBackend.resource": "a resource backend (an object of another kind) is not served here: name a Service",
    },
    "Gateway": {
        "addresses": "a Gateway here is served by the ingress gateway of its namespace (meshdojo up starts one per demo): "
                     "leave addresses out",
        "infrastructure": "a Gateway here is served by the ingress gateway of its namespace: nothing is deployed for it",
    },
    "BackendTLSPolicy": {
        "validation.caCertificateRefs": "not here yet: the server's certificate is checked with the system's CAs "
                                        "(validation.wellKnownCACertificates: System)",
        "validation.subjectAltNames": "not here yet: the server's certificate is checked against validation.hostname",
        "options": "no TLS options here: TLS 1.2 or newer, with the system's defaults",
    },
    "ExtensionProvider": {
        "envoyExtAuthzGrpc": "the sidecars speak HTTP/1.1 only: use envoyExtAuthzHttp (Istio's sample serves it on port 8000)",
        "envoyExtAuthzHttp.includeRequestBodyInCheck": "the check request carries no body here (the headers and path only)",
        "envoyExtAuthzHttp.includeHeadersInCheck": "deprecated in Istio: use includeRequestHeadersInCheck",
        "opentelemetry": "the sidecars send spans in Zipkin's v2 JSON: use zipkin (Jaeger and the OpenTelemetry "
                         "collector both take it, on port 9411)",
        **{f: "not a provider meshdojo's sidecars have (envoyExtAuthzHttp: external authorization; zipkin: traces)"
           for f in ("datadog", "stackdriver", "skywalking", "envoyFileAccessLog",
                     "envoyHttpAls", "envoyTcpAls", "envoyOtelAls", "prometheus", "sds", "lightstep", "opencensus")},
    },
}

# kind -> (apiVersion, the spec's fields)
KINDS: dict[str, tuple[str, Field]] = {
    "HTTPRoute": (GATEWAY_API, HTTP_ROUTE),
    "FaultInjection": (POLICY_API, FAULT_INJECTION),
    "RetryBudget": (POLICY_API, RETRY_BUDGET),
    "CircuitBreaker": (POLICY_API, CIRCUIT_BREAKER),
    "AuthorizationPolicy": (POLICY_API, AUTHORIZATION_POLICY),
    "MeshTLS": (POLICY_API, MESH_TLS),
    "RateLimit": (POLICY_API, RATE_LIMIT),
    "ServiceEntry": (POLICY_API, SERVICE_ENTRY),
    "Sidecar": (POLICY_API, SIDECAR),
    "Telemetry": (POLICY_API, TELEMETRY),
    "RequestAuthentication": (POLICY_API, REQUEST_AUTHENTICATION),
    "ExtensionProvider": (POLICY_API, EXTENSION_PROVIDER),
    "BackendTLSPolicy": (GATEWAY_API, BACKEND_TLS_POLICY),
    "Gateway": (GATEWAY_API, GATEWAY),
    "Ingress": (INGRESS_API, INGRESS),
    "Server": (f"{LINKERD_GROUP}/{SERVER_VERSIONS[-1]}", SERVER),
    "ServerAuthorization": (f"{LINKERD_GROUP}/{SERVER_AUTHORIZATION_VERSIONS[-1]}", SERVER_AUTHORIZATION),
    LINKERD_AUTHORIZATION_POLICY: (f"{LINKERD_GROUP}/{AUTHENTICATION_VERSIONS[-1]}", LINKERD_AUTHORIZATION),
    "MeshTLSAuthentication": (f"{LINKERD_GROUP}/{AUTHENTICATION_VERSIONS[-1]}", MESH_TLS_AUTHENTICATION),
    "NetworkAuthentication": (f"{LINKERD_GROUP}/{AUTHENTICATION_VERSIONS[-1]}", NETWORK_AUTHENTICATION),
    LINKERD_HTTP_ROUTE: (f"{LINKERD_GROUP}/{HTTP_ROUTE_VERSIONS[-1]}", LINKERD_ROUTE),
    "HTTPLocalRateLimitPolicy": (f"{LINKERD_GROUP}/{RATE_LIMIT_VERSIONS[-1]}", HTTP_LOCAL_RATE_LIMIT_POLICY),
    "VirtualService": (f"{ISTIO_NETWORKING_GROUP}/{NETWORKING_VERSIONS[-1]}", VIRTUAL_SERVICE),
    "DestinationRule": (f"{ISTIO_NETWORKING_GROUP}/{NETWORKING_VERSIONS[-1]}", DESTINATION_RULE),
    "PeerAuthentication": (f"{ISTIO_SECURITY_GROUP}/{SECURITY_VERSIONS[-1]}", PEER_AUTHENTICATION),
    ISTIO_GATEWAY: (f"{ISTIO_NETWORKING_GROUP}/{NETWORKING_VERSIONS[-1]}", ISTIO_GATEWAY_SPEC),
}
# Istio's kinds that are ours in its groups (istioschema.ISTIO_TWINS): our fields, but for ours alone
TWIN_SPECS: dict[str, Field] = {ISTIO_AUTHORIZATION_POLICY: ISTIO_AUTHORIZATION, ISTIO_REQUEST_AUTHENTICATION: REQUEST_AUTHENTICATION,
                                ISTIO_SERVICE_ENTRY: SERVICE_ENTRY, ISTIO_SIDECAR: SIDECAR, ISTIO_TELEMETRY: TELEMETRY}
KINDS.update({twin: (f"{kube_group(twin)}/{GROUP_VERSIONS[kube_group(twin)][-1]}", spec) for twin, spec in TWIN_SPECS.items()})
# kind -> every apiVersion it is read in (the kinds not here: only KINDS' own)
API_VERSIONS: dict[str, tuple[str, ...]] = {
    # Gateway API's v1beta1, which its CRDs still serve and Linkerd's docs write (one schema for both here)
    "HTTPRoute": (f"{GATEWAY_GROUP}/v1beta1", GATEWAY_API),
    "Gateway": (f"{GATEWAY_GROUP}/v1beta1", GATEWAY_API),
    "Server": tuple(f"{LINKERD_GROUP}/{v}" for v in SERVER_VERSIONS),
    "ServerAuthorization": tuple(f"{LINKERD_GROUP}/{v}" for v in SERVER_AUTHORIZATION_VERSIONS),
    LINKERD_HTTP_ROUTE: tuple(f"{LINKERD_GROUP}/{v}" for v in HTTP_ROUTE_VERSIONS),
    "VirtualService": tuple(f"{ISTIO_NETWORKING_GROUP}/{v}" for v in NETWORKING_VERSIONS),
    "DestinationRule": tuple(f"{ISTIO_NETWORKING_GROUP}/{v}" for v in NETWORKING_VERSIONS),
    "PeerAuthentication": tuple(f"{ISTIO_SECURITY_GROUP}/{v}" for v in SECURITY_VERSIONS),
    ISTIO_GATEWAY: tuple(f"{ISTIO_NETWORKING_GROUP}/{v}" for v in NETWORKING_VERSIONS),
    **{twin: tuple(f"{kube_group(twin)}/{v}" for v in GROUP_VERSIONS[kube_group(twin)]) for twin in TWIN_SPECS},
}


def api_versions(kind: str) -> tuple[str, ...]:
    return API_VERSIONS.get(kind, (KINDS[kind][0],))


# (Kubernetes' kind, its group) -> meshdojo's name for it, where two groups have a kind of one name
QUALIFIED_KINDS = {("AuthorizationPolicy", LINKERD_GROUP): LINKERD_AUTHORIZATION_POLICY, ("HTTPRoute", LINKERD_GROUP): LINKERD_HTTP_ROUTE,
                   ("Gateway", ISTIO_NETWORKING_GROUP): ISTIO_GATEWAY, **{(kube_kind(twin), kube_group(twin)): twin for twin in TWIN_SPECS}}


def internal_kind(kind: str, api_version: str) -> str:
    """The kind meshdojo keys a document of ``kind`` in ``api_version`` by: Linkerd's
    AuthorizationPolicy is ``AuthorizationPolicy.policy.linkerd.io`` (Istio's
    ``AuthorizationPolicy.security.istio.io``), every other kind its own name."""
    return QUALIFIED_KINDS.get((kind, api_version.partition("/")[0]), kind)
