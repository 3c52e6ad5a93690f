"""Each policy kind in a sentence: what ``meshdojo explain KIND`` says first, and the
description of the kind's CRD (what ``kubectl explain`` shows). Data only.
"""

from __future__ import annotations

from controlplane.istioschema import (
    ISTIO_AUTHORIZATION_POLICY,
    ISTIO_GATEWAY,
    ISTIO_REQUEST_AUTHENTICATION,
    ISTIO_SERVICE_ENTRY,
    ISTIO_SIDECAR,
    ISTIO_TELEMETRY,
)
from controlplane.linkerdschema import LINKERD_AUTHORIZATION_POLICY, LINKERD_HTTP_ROUTE

# kind -> what it is, in a sentence (`meshdojo explain KIND`, and the CRD's description: kubectl explain)
KIND_DOCS: dict[str, str] = {
    "HTTPRoute": "Gateway API's route: on a Service (GAMMA) it shapes the mesh's requests to it — matches, weighted "
                 "backendRefs, timeouts, retries, filters; on a Gateway it says which requests the ingress gateway lets in",
    "FaultInjection": "Delays or aborts a share of the requests that reach the workloads it targets (Istio's fault injection)",
    "RetryBudget": "How many retries the callers of a Service may add on top of their requests (Linkerd's retry budget)",
    "CircuitBreaker": "Stops sending to an endpoint that keeps failing, and limits pending requests (Istio's outlier detection "
                      "and connection pool)",
    "AuthorizationPolicy": "Which callers may reach which workloads, paths and methods: ALLOW, DENY, AUDIT or CUSTOM "
                           "(Istio's fields)",
    "MeshTLS": "Whether the workloads it targets accept plaintext: STRICT or PERMISSIVE (Istio's PeerAuthentication)",
    "RateLimit": "At most so many requests per interval to the workloads it targets (Envoy's local rate limit)",
    "ServiceEntry": "A host outside the mesh that the sidecars may call, and how (Istio's ServiceEntry)",
    "Sidecar": "Where a namespace's sidecars may send traffic: ALLOW_ANY or REGISTRY_ONLY (Istio's outboundTrafficPolicy)",
    "Telemetry": "Trace sampling, the tracing provider and access logs for the workloads it targets (Istio's Telemetry)",
    "RequestAuthentication": "Which JWTs the workloads it targets accept from end users, and from which issuers",
    "ExtensionProvider": "An external authorizer or a tracing backend, named by AuthorizationPolicy and Telemetry "
                         "(Istio's meshConfig extensionProviders)",
    "BackendTLSPolicy": "Gateway API's TLS origination: the sidecar reaches a ServiceEntry's host over TLS and checks its "
                        "certificate",
    "Gateway": "Gateway API's Gateway: the listeners on which the namespace's ingress gateway takes the HTTPRoutes attached to it",
    "Ingress": "Kubernetes' Ingress, as Istio serves it: the hosts and paths the ingress gateway of its namespace lets in, "
               "and the Services they go to",
    "Server": "Linkerd's Server: one port of some pods; once it exists, only the callers a ServerAuthorization names may "
              "reach that port (its accessPolicy: deny by default, or audit)",
    "ServerAuthorization": "Linkerd's ServerAuthorization: which callers (meshed ServiceAccounts or identities, or anyone; "
                           "optionally from some networks) may reach the Servers it names",
    LINKERD_AUTHORIZATION_POLICY: "Linkerd's AuthorizationPolicy: the callers that every one of its required "
                                  "authentications lets in (MeshTLSAuthentication, NetworkAuthentication, ServiceAccount) "
                                  "may reach its target, a Server, a Server's HTTPRoute, or every Server of the namespace",
    "MeshTLSAuthentication": "Linkerd's MeshTLSAuthentication: a set of mesh identities (Linkerd's form, SPIFFE IDs, "
                             "ServiceAccounts or namespaces), for AuthorizationPolicies to require",
    "NetworkAuthentication": "Linkerd's NetworkAuthentication: a set of networks (CIDR blocks, with exceptions), for "
                             "AuthorizationPolicies to require",
    LINKERD_HTTP_ROUTE: "Linkerd's HTTPRoute on a Server: a part of the Server's traffic (paths, methods, headers) that "
                        "AuthorizationPolicies may authorize on its own; once a Server has routes, a request none matches "
                        "gets 404",
    "HTTPLocalRateLimitPolicy": "Linkerd's local rate limit on a Server: so many requests a second in all, per caller "
                                "identity, or for some ServiceAccounts' callers; 429 past it, counted at each pod",
    "VirtualService": "Istio's routes for a Service's requests, in the callers' sidecars: rules in order (the first match "
                      "wins), weighted destinations (a Service, or a DestinationRule's subset of it), timeout, retries, "
                      "fault, mirror, headers, rewrite, redirect",
    "DestinationRule": "Istio's policy for a Service: its subsets (pods by their labels, e.g. version: v1) that a "
                       "VirtualService routes to, and its trafficPolicy — loadBalancer (round robin, least request, random, "
                       "sticky by a hash of a header, cookie, IP or query parameter), connectionPool limits and outlierDetection; or, for a "
                       "host outside the mesh a ServiceEntry names, tls mode SIMPLE: the sidecar originates TLS to it",
    "PeerAuthentication": "Istio's mutual TLS mode for the sidecars of a workload, a namespace or the mesh (in "
                          "meshdojo-system): STRICT refuses plaintext, PERMISSIVE takes both; the most specific wins, as a MeshTLS's",
    ISTIO_AUTHORIZATION_POLICY: "Istio's AuthorizationPolicy, as its docs write it: which callers may reach which workloads, "
                                "paths and methods (ALLOW, DENY, AUDIT or CUSTOM); read and enforced as meshdojo's "
                                "AuthorizationPolicy, whose fields are Istio's",
    ISTIO_REQUEST_AUTHENTICATION: "Istio's RequestAuthentication, as its docs write it: which JWTs the workloads it selects "
                                  "accept from end users, and from which issuers; read and enforced as meshdojo's",
    ISTIO_GATEWAY: "Istio's Gateway: the servers (ports, hosts, TLS) of an ingress gateway, served here by the ingress "
                   "gateway of its namespace; a VirtualService whose gateways name it routes what comes in",
    ISTIO_SERVICE_ENTRY: "Istio's ServiceEntry, as its docs write it: a host outside the mesh that the sidecars may call, "
                         "and how; read and enforced as meshdojo's ServiceEntry, whose fields are Istio's",
    ISTIO_SIDECAR: "Istio's Sidecar, as its docs write it: where a namespace's sidecars may send traffic (its "
                   "outboundTrafficPolicy.mode ALLOW_ANY or REGISTRY_ONLY); read and enforced as meshdojo's",
    ISTIO_TELEMETRY: "Istio's Telemetry, as its docs write it: trace sampling, the tracing provider and access logs for "
                     "the workloads it selects; read and enforced as meshdojo's, field by field with ours",
}
