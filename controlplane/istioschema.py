"""The fields of Istio's kinds meshdojo serves as written: ``VirtualService`` and
``DestinationRule`` (``networking.istio.io``), the subset meshdojo implements for a sidecar's
traffic (Istio's request routing, traffic shifting, fault injection, request timeouts, retries
and circuit breaking tasks write nothing else), and ``PeerAuthentication``
(``security.istio.io``, its mutual TLS migration task), as :mod:`controlplane.policyschema` holds
every kind's: the validator checks a document against them, and on a cluster without Istio the
CRDs (this subset) are made from them. What they mean is :mod:`controlplane.istionetworking`'s
and ``policy._peer_authentication``'s.
"""

from __future__ import annotations

from dataclasses import replace

from controlplane.schema import Bool, Duration, Int, Labels, ListOf, MapOf, Num, Str, obj

ISTIO_NETWORKING_GROUP = "networking.istio.io"
# the versions Istio's docs and samples write them in, oldest first; the last is the one a CRD of ours stores
NETWORKING_VERSIONS = ("v1alpha3", "v1beta1", "v1")
ISTIO_SECURITY_GROUP = "security.istio.io"
SECURITY_VERSIONS = ("v1beta1", "v1")
ISTIO_TELEMETRY_GROUP = "telemetry.istio.io"
TELEMETRY_VERSIONS = ("v1alpha1", "v1")
# Istio's kinds that meshdojo has a kind of the same name for, with Istio's fields: Istio's documents are
# read and enforced as ours (controlplane.selection.enforced_kind); inside meshdojo they are named as kubectl
# names them beside ours, as Linkerd's AuthorizationPolicy is
ISTIO_AUTHORIZATION_POLICY = f"AuthorizationPolicy.{ISTIO_SECURITY_GROUP}"
ISTIO_REQUEST_AUTHENTICATION = f"RequestAuthentication.{ISTIO_SECURITY_GROUP}"
ISTIO_SERVICE_ENTRY = f"ServiceEntry.{ISTIO_NETWORKING_GROUP}"
ISTIO_SIDECAR = f"Sidecar.{ISTIO_NETWORKING_GROUP}"
ISTIO_TELEMETRY = f"Telemetry.{ISTIO_TELEMETRY_GROUP}"
# Istio's Gateway: another kind than Gateway API's of that name (its servers are listeners, read as such)
ISTIO_GATEWAY = f"Gateway.{ISTIO_NETWORKING_GROUP}"
ISTIO_TWINS = {ISTIO_AUTHORIZATION_POLICY: "AuthorizationPolicy", ISTIO_REQUEST_AUTHENTICATION: "RequestAuthentication",
               ISTIO_SERVICE_ENTRY: "ServiceEntry", ISTIO_SIDECAR: "Sidecar", ISTIO_TELEMETRY: "Telemetry"}


def read_as(kind: str) -> str:
    """The kind of ours a kind is read and enforced as: Istio's AuthorizationPolicy (ServiceEntry ...)
    is ours; every other kind is itself (controlplane.selection.enforced_kind adds PeerAuthentication)."""
    return ISTIO_TWINS.get(kind, kind)


def with_twins(kind: str) -> tuple[str, ...]:
    """One of our kinds and Istio's of the same name: the kinds whose resources do its work."""
    return (kind, *(twin for twin, ours in ISTIO_TWINS.items() if ours == kind))


# the versions each group's kinds are written in, oldest first
GROUP_VERSIONS = {ISTIO_NETWORKING_GROUP: NETWORKING_VERSIONS, ISTIO_SECURITY_GROUP: SECURITY_VERSIONS,
                  ISTIO_TELEMETRY_GROUP: TELEMETRY_VERSIONS}
MANY = 1_000_000

HOST = Str(doc="a Service of this namespace: its name (reviews) or reviews.NAMESPACE.svc.cluster.local")
STRING_MATCH = obj({
    "exact": Str(allow_empty=True, doc="the whole value"),
    "prefix": Str(doc="its start (a string prefix: /api matches /apix too, as in Istio)"),
    "regex": Str(doc="a regular expression over the whole value (RE2's syntax, read as Python's)"),
}, doc="one of exact, prefix or regex")
PERCENT = obj({"value": Num(0, 100, doc="percent of the rule's requests, 0 to 100")}, ("value",),
              doc="how many of the rule's requests (all when left out)")
DESTINATION = obj({
    "host": HOST,
    "subset": Str(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", hint="expected a subset's name (lower-case letters, digits and '-')",
                  doc="a subset a DestinationRule for the host defines (its pods by their labels)"),
    "port": obj({"number": Int(1, 65535, "a port", doc="not read: the Service's port")}, doc="not read: the Service's port"),
}, ("host",), doc="where the requests go")
HEADER_OPERATIONS = obj({
    "set": MapOf(Str(allow_empty=True, pattern=r"^[\t\x20-\x7e]*$", hint="expected a header value of printable ASCII"),
                 hint="expected a mapping of header names to values", doc="replace the header (or add it)"),
    "add": MapOf(Str(allow_empty=True, pattern=r"^[\t\x20-\x7e]*$", hint="expected a header value of printable ASCII"),
                 hint="expected a mapping of header names to values", doc="add a value, keeping the ones there"),
    "remove": ListOf(Str(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", hint="expected a header name"), doc="header names to drop"),
})
HTTP_ROUTE = obj({
    "name": Str(doc="the rule's name (not read: metrics and tap name a rule by its index, route#0)"),
    "match": ListOf(obj({
        "name": Str(doc="not read"),
        "uri": STRING_MATCH,
        "method": STRING_MATCH,
        "headers": MapOf(STRING_MATCH, hint="expected a mapping of header names to {exact|prefix|regex: value}",
                         doc="headers the request must carry, every one"),
        "queryParams": MapOf(STRING_MATCH, hint="expected a mapping of parameter names to {exact|prefix|regex: value}",
                             doc="query parameters the request must carry, every one"),
        "withoutHeaders": MapOf(STRING_MATCH, hint="expected a mapping of header names to {exact|prefix|regex: value}",
                                doc="headers the request must not match, any one (the opposite of headers)"),
        "ignoreUriCase": Bool(doc="uri is matched in any case (/Reviews matches exact /reviews)"),
        "authority": replace(STRING_MATCH, doc="the host the request names (its Host header, as sent: reviews:9080)"),
        "sourceLabels": Labels(doc="only requests from pods with all of these labels (their sidecars'; not at a gateway)"),
        "sourceNamespace": Str(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", hint="expected a namespace's name",
                               doc="only requests from pods of this namespace (their sidecars'; not at a gateway)"),
    }), doc="the requests this rule takes: any one of these (left out: every request); the first matching rule wins"),
    "route": ListOf(obj({
        "destination": DESTINATION,
        "weight": Int(0, 100, "a percentage", doc="its share of the rule's requests (the weights add up to 100)"),
        "headers": obj({"request": replace(HEADER_OPERATIONS, doc="the request's, when it goes to this destination"),
                        "response": replace(HEADER_OPERATIONS, doc="this destination's response's, before the caller gets it")},
                       doc="change the headers of the requests this destination gets, or of its responses (after the rule's)"),
    }, ("destination",)), non_empty=True, hint="expected a non-empty list of {destination, weight}",
        doc="where the rule sends its requests, split by weight"),
    "redirect": obj({
        "uri": Str(pattern=r"^/[!-~]*$", hint="expected a path starting with '/'", doc="the Location's path"),
        "authority": Str(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", hint="expected a lower-case host name",
                         doc="the Location's host"),
        "scheme": Str(enum=("http", "https"), doc="the Location's scheme"),
        "port": Int(1, 65535, "a port", doc="the Location's port"),
        "redirectCode": Int(301, 308, "a redirect status", doc="301 by default, as in Istio"),
    }, doc="answer with a redirect instead of routing"),
    "rewrite": obj({
        "uri": Str(pattern=r"^/[!-~]*$", hint="expected a path starting with '/'",
                   doc="the path the destination gets: it replaces the matched prefix (a uri prefix match), else the whole path"),
        "authority": Str(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", hint="expected a lower-case host name",
                         doc="the Host header the destination gets"),
    }, doc="change the path or the Host header before forwarding"),
    "timeout": Duration(doc="the whole request, retries included: then 504 (0s: none)"),
    "retries": obj({
        "attempts": Int(0, 10, "a number of retries", doc="retries after the first try"),
        "perTryTimeout": Duration(doc="each try on its own"),
        "retryOn": Str(pattern=r"^[a-z0-9-]+(,[a-z0-9-]+)*$", hint="expected a comma-separated list, e.g. 5xx,connect-failure",
                       doc="what is retried: 5xx, gateway-error, connect-failure, refused-stream, reset, "
                           "retriable-status-codes, or a status such as 503 (failed connections always are)"),
    }, doc="retry failed requests"),
    "fault": obj({
        "delay": obj({"fixedDelay": Duration(doc="e.g. 7s"), "percentage": PERCENT}, ("fixedDelay",),
                     doc="hold the rule's requests this long before they go on"),
        "abort": obj({"httpStatus": Int(200, 599, "an HTTP status", doc="what the caller's sidecar answers, e.g. 500"),
                      "percentage": PERCENT}, ("httpStatus",),
                     doc="answer the rule's requests at once with httpStatus (the destination never sees them)"),
    }, doc="delay or abort the rule's requests in the caller's sidecar, as Istio's fault injection does"),
    "mirror": DESTINATION,
    "mirrorPercentage": PERCENT,
    "mirrors": ListOf(obj({"destination": DESTINATION, "percentage": PERCENT}, ("destination",)),
                      doc="several mirrors, each with its own share (Istio 1.18's; mirror is one)"),
    "directResponse": obj({
        "status": Int(200, 599, "an HTTP status", doc="the status answered"),
        "body": obj({"string": Str(allow_empty=True, doc="the body, as text"),
                     "bytes": Str(pattern=r"^[A-Za-z0-9+/]*={0,2}$", hint="expected base64", doc="the body, base64-encoded")},
                    doc="the body answered (one of string and bytes; none: empty)"),
    }, ("status",), doc="answer the rule's requests at once, with this status and body: nothing is forwarded"),
    "corsPolicy": obj({
        "allowOrigins": ListOf(STRING_MATCH, doc="the origins whose pages may read the responses ({exact: https://app.example}, "
                                                "{prefix: ...}, {regex: ...}; exact * for any)"),
        "allowMethods": ListOf(Str(doc="a method"), doc="the methods a preflight allows (Access-Control-Allow-Methods)"),
        "allowHeaders": ListOf(Str(doc="a header name"), doc="the request headers a preflight allows"),
        "exposeHeaders": ListOf(Str(doc="a header name"), doc="the response headers the pages may read besides the safe ones"),
        "maxAge": Duration(doc="how long a browser may keep a preflight's answer"),
        "allowCredentials": Bool(doc="the pages may send cookies and read the answers to them"),
        "unmatchedPreflights": Str(enum=("FORWARD", "IGNORE"), doc="a preflight from another origin: FORWARD (the default) "
                                                                   "sends it on; IGNORE answers 200 without CORS headers"),
    }, doc="cross-origin requests: answer preflights from the allowed origins, and let their pages read the responses"),
    "headers": obj({"request": replace(HEADER_OPERATIONS, doc="the request's, before it is forwarded"),
                    "response": replace(HEADER_OPERATIONS, doc="the response's, before the caller gets it")},
                   doc="change the request's headers before forwarding, or the response's"),
}, doc="a rule: the requests it takes and where they go")

VIRTUAL_SERVICE = obj({
    "hosts": ListOf(HOST, non_empty=True,
                    hint="expected a list of hosts: the one Service whose traffic these rules route (one VirtualService per "
                         "Service), or on a gateway the hosts its clients ask for",
                    doc="the one Service whose traffic these rules route; on a gateway, the hosts its clients ask for (* for any)"),
    "gateways": ListOf(Str(pattern=r"^(mesh|([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?)$",
                           hint="expected mesh, or an Istio Gateway by name (bookinfo-gateway) or NAMESPACE/NAME",
                           doc="mesh, or one Istio Gateway (NAME or NAMESPACE/NAME)"), max_items=1,
                       hint="expected one entry: mesh (the default), or one Gateway; write one VirtualService for each",
                       doc="mesh (the sidecars: the default), or the Istio Gateway whose ingress gateway serves these rules"),
    "http": ListOf(HTTP_ROUTE, non_empty=True, hint="expected a non-empty list of rules",
                   doc="the rules, the first matching one wins"),
    "exportTo": ListOf(Str(doc='"*" or "."'), doc="not read: every namespace's sidecars see it"),
}, ("hosts", "http"))

# Istio's connectionPool, as a DestinationRule's trafficPolicy and our CircuitBreaker both write it
CONNECTION_POOL = obj({
    "tcp": obj({"maxConnections": Int(1, MANY, "a whole number", doc="connections to the Service at once")},
               doc="connection limits"),
    "http": obj({"http1MaxPendingRequests": Int(0, MANY, "a whole number", doc="requests waiting for a connection"),
                 "maxRequestsPerConnection": Int(0, MANY, "a whole number (0: no limit)",
                                                 doc="a connection is closed after this many (0: no limit)")},
                doc="request limits"),
})
# Istio's loadBalancer: one of simple and consistentHash; a consistentHash hashes one of four keys
RING_SIZE = Int(1, 8_388_608, "a whole number of points, 1 to 8388608",
                doc="points on the hash ring (1024 by default): more spread the keys more evenly")
LOAD_BALANCER = obj({
    "simple": Str(enum=("UNSPECIFIED", "LEAST_REQUEST", "LEAST_CONN", "ROUND_ROBIN", "RANDOM", "PASSTHROUGH"),
                  doc="LEAST_REQUEST (the default, and LEAST_CONN's new name): the fewer requests in flight of two "
                      "pods drawn at random; ROUND_ROBIN: each pod in turn; RANDOM: any pod; UNSPECIFIED: meshdojo's "
                      "own, peak-EWMA latency of two drawn at random (Linkerd's)"),
    "consistentHash": obj({
        "httpHeaderName": Str(doc="requests with the same value of this header go to the same pod"),
        "httpCookie": obj({
            "name": Str(doc="the cookie whose value is hashed"),
            "path": Str(doc="the Path of the cookie the sidecar sets when a request has none"),
            "ttl": Duration(doc="a request without the cookie gets one, for this long (0s: for the browser's "
                                "session); left out: no cookie is set, and such a request goes to any pod"),
        }, ("name",), doc="sticky sessions: requests with the same value of this cookie go to the same pod"),
        "useSourceIp": Bool(doc="the caller's IP address: all of one pod's requests go to the same pod"),
        "httpQueryParameterName": Str(doc="requests with the same value of this query parameter go to the same pod"),
        "ringHash": obj({"minimumRingSize": RING_SIZE}, doc="a hash ring (the default)"),
        "maglev": obj({"tableSize": RING_SIZE}, doc="served by the same hash ring, of tableSize points"),
        "minimumRingSize": RING_SIZE,
    }, doc="one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName: requests with the same key "
           "go to the same pod while the pods stay the same, and few keys move when one comes or goes"),
}, doc="how the caller's sidecar picks one of the host's pods for each request: one of simple and consistentHash")
# how the callers' sidecars speak TLS to the host: the mesh's own for a Service, or TLS they originate to a host outside
CLIENT_TLS = obj({
    "mode": Str(enum=("ISTIO_MUTUAL", "SIMPLE", "DISABLE"),
                doc="ISTIO_MUTUAL: the mesh's mutual TLS (a Service of the mesh: always on here); SIMPLE: the sidecar originates "
                    "TLS to a host outside the mesh (a ServiceEntry's), checking its certificate with the system's CAs; "
                    "DISABLE: plain, as the app sent it"),
    "sni": Str(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", hint="expected a lower-case host name",
               doc="SIMPLE: the name sent in the handshake and checked in the server's certificate (the host asked for by default)"),
}, doc="TLS to the host")
TRAFFIC_POLICY = obj({
    "loadBalancer": LOAD_BALANCER,
    "connectionPool": replace(CONNECTION_POOL, doc="requests over these limits get 503 at once (Istio's circuit breaking task)"),
    "outlierDetection": obj({
        "consecutive5xxErrors": Int(0, 1000, "a whole number", doc="5xx answers in a row that eject a pod (5 by default; 0: never)"),
        "consecutiveGatewayErrors": Int(0, 1000, "a whole number",
                                        doc="502, 503 and 504 answers and failed connections in a row that eject a pod (0, the default: never)"),
        "interval": Duration(doc="not read: a pod is ejected on the failure that makes the count"),
        "baseEjectionTime": Duration(doc="how long the first ejection lasts (30s by default; each one in a row doubles it)"),
        "maxEjectionPercent": Int(0, 100, "a percentage", doc="the most pods ejected at once (10 by default; one always may be)"),
    }, doc="eject a pod that keeps failing"),
    "tls": CLIENT_TLS,
    "portLevelSettings": ListOf(obj({
        "port": obj({"number": Int(1, 65535, "a port", doc="the ServiceEntry's port (80)")}, ("number",),
                    doc="the port these settings are for"),
        "tls": CLIENT_TLS,
    }, ("port",)), doc="a host outside the mesh: the TLS its sidecars originate on one port of the ServiceEntry "
                       "(Istio's Egress TLS Origination task); a Service of the mesh has one port here: write trafficPolicy"),
})
DESTINATION_RULE = obj({
    "host": Str(doc="a Service of this namespace: its name (reviews) or reviews.NAMESPACE.svc.cluster.local; or a host "
                    "outside the mesh a ServiceEntry of this namespace names (edition.cnn.com)"),
    "subsets": ListOf(obj({
        "name": Str(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", hint="expected lower-case letters, digits and '-'",
                    doc="what a VirtualService's destination.subset names"),
        "labels": Labels(doc="the host's pods with all of these labels (e.g. version: v1)"),
        "trafficPolicy": replace(TRAFFIC_POLICY, doc="the subset's own, for the requests routed to it: each field it has "
                                                     "replaces the host's (its own pool of connections, its own ejections)"),
    }, ("name", "labels")), doc="named groups of the host's pods, by their labels"),
    "trafficPolicy": replace(TRAFFIC_POLICY, doc="how the callers' sidecars send to the host: which pod, limits, ejection"),
    "exportTo": ListOf(Str(doc='"*" or "."'), doc="not read: every namespace's sidecars see it"),
}, ("host",))

PEER_MTLS = obj({"mode": Str(enum=("UNSET", "PERMISSIVE", "STRICT", "DISABLE"),
                              doc="STRICT: mutual TLS only, plaintext refused; PERMISSIVE: both; DISABLE: plaintext taken (as "
                                  "PERMISSIVE here: a meshdojo caller's sidecar still speaks mutual TLS, where Istio's would "
                                  "send plaintext); UNSET: as the level above (the namespace's, or the mesh's)")},
                doc="the mutual TLS its pods' sidecars accept")
PEER_AUTHENTICATION = obj({
    "selector": obj({"matchLabels": Labels(doc="the pods with all of these labels")}, ("matchLabels",),
                    doc="the pods it applies to; left out: the whole namespace (the mesh, in meshdojo-system, Istio's istio-system)"),
    "mtls": PEER_MTLS,
    "portLevelMtls": MapOf(PEER_MTLS, hint="expected a mapping of port numbers to {mode: ...}, e.g. {'8080': {mode: DISABLE}}",
                           doc="a mode for one of the pods' ports (the port the pod declares, which Services target), "
                               "over mtls.mode; needs a selector"),
})

# Istio's Gateway: the servers (ports, hosts, TLS) of the ingress gateway it selects; here the ingress
# gateway of its namespace serves it, as it serves Gateway API's (controlplane/istiogateway.py)
SERVER_HOST = Str(pattern=r"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?|\.|\*)/)?(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$",
                  hint="expected a host (bookinfo.example.com, *.example.com or *), optionally after NAMESPACE/, ./ or */",
                  doc="a host the server takes (* for any); NAMESPACE/ (./ this one, */ any) limits whose VirtualServices bind")
ISTIO_GATEWAY_SPEC = obj({
    "selector": MapOf(Str(allow_empty=True), hint="expected a mapping of label names to values, e.g. {istio: ingressgateway}",
                      doc="not read: the ingress gateway of the Gateway's namespace serves it (istio: ingressgateway in Istio's docs)"),
    "servers": ListOf(obj({
        "port": obj({
            "number": Int(1, 65535, "a port", doc="the port clients call (80, 443); here the gateway's HTTP or HTTPS port"),
            "name": Str(doc="the port's name"),
            "protocol": Str(enum=("HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TCP", "TLS", "MONGO"),
                            doc="HTTP, or HTTPS (TLS ended here with tls.credentialName); the gateways forward HTTP/1.1 only"),
            "targetPort": Int(1, 65535, "a port", doc="not read"),
        }, ("number", "protocol"), doc="the port and protocol"),
        "hosts": ListOf(SERVER_HOST, non_empty=True, hint="expected a non-empty list of hosts, e.g. ['*']",
                        doc="the hosts it takes: a VirtualService bound to the Gateway serves those its hosts share"),
        "name": Str(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", hint="expected a name of lower-case letters, digits and '-'",
                    doc="the server's name"),
        "tls": obj({
            "mode": Str(enum=("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "PASSTHROUGH", "ISTIO_MUTUAL", "AUTO_PASSTHROUGH"),
                        doc="SIMPLE: the server's certificate; MUTUAL: clients must present one the Secret's ca.crt signed"),
            "credentialName": Str(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", hint="expected a Secret's name",
                                  doc="the kubernetes.io/tls Secret (in the Gateway's namespace) with its certificate"),
            "httpsRedirect": Bool(doc="an HTTP server's: its requests are answered 301 to https:// (the same host and path)"),
        }, doc="an HTTPS server's TLS"),
    }, ("port", "hosts")), non_empty=True, hint="expected a non-empty list of servers", doc="the ports, hosts and TLS it serves"),
}, ("servers",))
