"""Kinds from Istio's and Linkerd's docs, and which of meshdojo's kinds does each one's job.

A learner following their tasks applies these; the validator and ``meshdojo get`` answer with
a pointer instead of "unknown kind".
"""

from __future__ import annotations

# what a learner coming from Istio (or Linkerd) reaches for, and which of our kinds does that job
FOREIGN_KINDS = {
    "RequestAuthentication": "RequestAuthentication with apiVersion security.istio.io/v1 or v1beta1 (Istio's own) or "
                             "policy.meshdojo.dev/v1alpha1 (Istio's jwtRules: issuer, "
                             "audiences, jwks or jwksUri, fromHeaders, fromParams, forwardOriginalToken, outputClaimToHeaders; "
                             "meshdojo jwt issues demo tokens)",
    "Sidecar": "Sidecar with apiVersion networking.istio.io/v1, v1beta1 or v1alpha3 (Istio's own) or "
               "policy.meshdojo.dev/v1alpha1 (Istio's outboundTrafficPolicy.mode and "
               "workloadSelector; egress and ingress listeners are not configurable)",
    "Telemetry": "Telemetry with apiVersion telemetry.istio.io/v1 or v1alpha1 (Istio's own) or policy.meshdojo.dev/v1alpha1 "
                 "(Istio's tracing[].randomSamplingPercentage and providers, "
                 "accessLogging with the envoy provider, and selector or targetRef; metrics are always on: meshdojo stat)",
    "ServiceProfile": "HTTPRoute (per-route retries and timeouts, as fields or as Linkerd 2.16's retry.linkerd.io and "
                      "timeout.linkerd.io annotations) and RetryBudget",
    "TrafficSplit": "HTTPRoute with weighted backendRefs (as Linkerd 2.12 and later do it)",
    "GRPCRoute": "HTTPRoute: the proxy speaks HTTP/1.1 only, so there is no gRPC to route",
    "ServiceEntry": "ServiceEntry with apiVersion networking.istio.io/v1, v1beta1 or v1alpha3 (Istio's own) or "
                    "policy.meshdojo.dev/v1alpha1 (Istio's fields: hosts, ports, "
                    "resolution, endpoints; location MESH_EXTERNAL)",
    "EgressNetwork": "Sidecar (outboundTrafficPolicy.mode: REGISTRY_ONLY is Linkerd's trafficPolicy: Deny) and "
                     "ServiceEntry (the external hosts that stay allowed)",
    "Gateway": "Istio's Gateway with apiVersion networking.istio.io/v1 (servers, and VirtualServices whose gateways name it), or "
               "Gateway API's with apiVersion gateway.networking.k8s.io/v1 (gatewayClassName istio, HTTP listeners, and HTTPS ones "
               "with tls.certificateRefs — tls.options gateway.istio.io/tls-terminate-mode: MUTUAL for Istio's tls.mode MUTUAL; "
               "served by the ingress gateway of its namespace) and HTTPRoutes whose parentRefs name it, as Istio's Gateway API "
               "tasks write them (samples/bookinfo/gateway-api/bookinfo-gateway.yaml)",
    "AuthorizationPolicy": "AuthorizationPolicy with apiVersion security.istio.io/v1 or v1beta1 (Istio's own) or "
                           "policy.meshdojo.dev/v1alpha1 (Istio's fields: "
                           "selector or targetRef, action, rules[].from/to/when, the istio.io/dry-run annotation)",
}


def foreign_kind_message(kind: str, api_version: str | None = None) -> str:
    source = f"{kind} ({api_version})" if api_version else kind
    return (f"{source} is not a meshdojo kind; here that job is done by {FOREIGN_KINDS[kind]} — see docs/policy.md, "
            "'Coming from Istio or Linkerd'")


def foreign_kind(text: str) -> str | None:
    """The Istio/Linkerd kind ``text`` names (``serviceprofile``, ``sp`` ...), if any."""
    aliases = {k.lower(): k for k in FOREIGN_KINDS} | {k.lower() + "s": k for k in FOREIGN_KINDS} | {"sp": "ServiceProfile"}
    return aliases.get(text.lower())
