"""The fields of Linkerd's policy kinds (``policy.linkerd.io``): ``Server``, ``ServerAuthorization``,
``AuthorizationPolicy``, ``MeshTLSAuthentication``, ``NetworkAuthentication``, ``HTTPRoute`` and
``HTTPLocalRateLimitPolicy``, as
:mod:`controlplane.policyschema` holds every kind's: the validator checks a document against
them, and on a cluster without Linkerd the CRDs (this subset) are made from them. What they
mean is :mod:`controlplane.linkerdserver`'s, :mod:`controlplane.linkerdauthn`'s,
:mod:`controlplane.linkerdroutes`' and :mod:`controlplane.linkerdratelimit`'s.

Linkerd's ``AuthorizationPolicy`` shares its kind with ours (Istio's fields, ``policy.meshdojo.dev``):
inside meshdojo it is the kind :data:`LINKERD_AUTHORIZATION_POLICY`, kubectl's name for it, and
only where a kind meets Kubernetes (a CRD, a watch, a write) is it ``AuthorizationPolicy`` again
(:func:`controlplane.policyschema.kube_kind`).
"""

from __future__ import annotations

from dataclasses import replace

from controlplane import inboundpolicy
from controlplane.routeschema import HTTP_ROUTE as GATEWAY_ROUTE
from controlplane.schema import CORE_GROUPS, Bool, Int, Labels, ListOf, PortOrName, Str, obj

LINKERD_GROUP = "policy.linkerd.io"
# the versions Linkerd's docs write them in, oldest first; the last is the one a CRD of ours stores
SERVER_VERSIONS = ("v1alpha1", "v1beta1", "v1beta2", "v1beta3")
SERVER_AUTHORIZATION_VERSIONS = ("v1alpha1", "v1beta1")
AUTHENTICATION_VERSIONS = ("v1alpha1",)  # AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication
LINKERD_AUTHORIZATION_POLICY = f"AuthorizationPolicy.{LINKERD_GROUP}"  # Linkerd's, as kubectl names it beside ours
HTTP_ROUTE_VERSIONS = ("v1alpha1", "v1beta1", "v1beta2", "v1beta3")
LINKERD_HTTP_ROUTE = f"HTTPRoute.{LINKERD_GROUP}"  # Linkerd's, a Server's routes, beside Gateway API's
RATE_LIMIT_VERSIONS = ("v1alpha1",)  # HTTPLocalRateLimitPolicy
# every Linkerd kind meshdojo implements (a subset of): what a Server, and who may call it, are read from
LINKERD_KINDS = ("Server", "ServerAuthorization", LINKERD_AUTHORIZATION_POLICY, LINKERD_HTTP_ROUTE, "MeshTLSAuthentication",
                 "NetworkAuthentication", "HTTPLocalRateLimitPolicy")
ROUTE_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
PROTOCOLS = ("unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS")

LABEL_SELECTOR = obj({
    "matchLabels": Labels(doc="the pods (or Servers) with all of these labels"),
    "matchExpressions": ListOf(obj({
        "key": Str(doc="a label's name"),
        "operator": Str(enum=("In", "NotIn", "Exists", "DoesNotExist"), doc="how the label's value is compared with values"),
        "values": ListOf(Str(allow_empty=True, doc="a value"), doc="In and NotIn: the values; Exists and DoesNotExist: none"),
    }, ("key", "operator")), doc="requirements on labels, every one"),
}, doc="Kubernetes' label selector: matchLabels and matchExpressions, every one must hold")

SERVER = obj({
    "podSelector": LABEL_SELECTOR,
    "port": PortOrName(doc="a port of the pods, by number or by the name in their containerPorts (as Linkerd's task: grpc)"),
    "proxyProtocol": Str(enum=PROTOCOLS, doc="kept as written: meshdojo's sidecars speak HTTP/1.1 on every port, so there "
                                             "is nothing to detect or skip"),
    "accessPolicy": Str(enum=inboundpolicy.POLICIES,
                        doc="who may call when no ServerAuthorization lets a caller in: deny (the default), audit (let in, "
                            "but logged and counted as deny would refuse), or one of Linkerd's default policies"),
}, ("podSelector", "port"))

NETWORK = obj({
    "cidr": Str(doc="an IP address or a CIDR block the caller's address is in"),
    "except": ListOf(Str(doc="a CIDR block"), doc="blocks inside cidr that do not count"),
}, ("cidr",))

NETWORKS_DOC = "and only from these addresses (left out: from anywhere)"

SERVER_AUTHORIZATION = obj({
    "server": obj({
        "name": Str(doc="a Server of this namespace"),
        "selector": LABEL_SELECTOR,
    }, doc="which Servers this authorizes callers of: by name, or the Servers with some labels"),
    "client": obj({
        "meshTLS": obj({
            "serviceAccounts": ListOf(obj({
                "name": Str(doc="a ServiceAccount"),
                "namespace": Str(doc="its namespace (left out: the ServerAuthorization's)"),
            }, ("name",)), doc="callers with these ServiceAccounts' mesh identities"),
            "identities": ListOf(Str(doc="Linkerd's form, SA.NS.serviceaccount.identity.linkerd.cluster.local (a * for "
                                         "SA: any in NS), a SPIFFE ID, or * for any meshed caller"),
                                 doc="callers with these mesh identities"),
            "unauthenticatedTLS": Bool(doc="any caller over TLS: here every meshed caller (mutual TLS always names one)"),
        }, doc="meshed callers, over mutual TLS: exactly one of serviceAccounts, identities, unauthenticatedTLS"),
        "unauthenticated": Bool(doc="any caller, meshed or not"),
        "networks": ListOf(NETWORK, doc=NETWORKS_DOC),
    }, doc="who may call: exactly one of meshTLS and unauthenticated, and optionally networks"),
}, ("server", "client"))

AUTHENTICATION_KINDS = ("MeshTLSAuthentication", "NetworkAuthentication", "ServiceAccount")

AUTHORIZATION_POLICY = obj({
    "targetRef": obj({
        "group": Str(allow_empty=True, doc="policy.linkerd.io for a Server or an HTTPRoute; left out for a Namespace"),
        "kind": Str(doc="Server (the callers of that Server's port), HTTPRoute (of the requests a Server's route matches) "
                        "or Namespace (of every Server in this namespace)"),
        "name": Str(doc="the Server's or HTTPRoute's name, or this namespace's"),
    }, ("kind", "name"), doc="what it authorizes callers of"),
    "requiredAuthenticationRefs": ListOf(obj({
        "group": Str(allow_empty=True, doc="policy.linkerd.io, or left out for a ServiceAccount"),
        "kind": Str(enum=AUTHENTICATION_KINDS, doc="a MeshTLSAuthentication, a NetworkAuthentication, or a ServiceAccount "
                                                    "(callers with its mesh identity)"),
        "name": Str(doc="its name"),
        "namespace": Str(doc="its namespace (left out: the AuthorizationPolicy's)"),
    }, ("kind", "name")), doc="who may call: every one of these must let the caller in (none: anyone)"),
}, ("targetRef", "requiredAuthenticationRefs"))

MESH_TLS_AUTHENTICATION = obj({
    "identities": ListOf(Str(doc="Linkerd's form, SA.NS.serviceaccount.identity.linkerd.cluster.local (a * for SA: any in "
                                 "NS), a SPIFFE ID, or * for any meshed caller"), doc="callers with these mesh identities"),
    "identityRefs": ListOf(obj({
        "group": Str(allow_empty=True, doc="left out (the core group)"),
        "kind": Str(enum=("ServiceAccount", "Namespace"), doc="a ServiceAccount (its callers), or a Namespace (any of its "
                                                             "ServiceAccounts)"),
        "name": Str(doc="its name (* for a ServiceAccount: any meshed caller)"),
        "namespace": Str(doc="a ServiceAccount's namespace (left out: the MeshTLSAuthentication's)"),
    }, ("kind", "name")), doc="callers with these ServiceAccounts' mesh identities, or of these namespaces"),
}, doc="meshed callers, over mutual TLS: exactly one of identities and identityRefs")

NETWORK_AUTHENTICATION = obj({
    "networks": ListOf(NETWORK, non_empty=True, hint="expected a non-empty list of networks ({cidr: 10.0.0.0/8})",
                       doc="callers from these addresses"),
}, ("networks",))

ROUTE_MATCH = obj({
    "path": obj({
        "type": Str(enum=("Exact", "PathPrefix"), doc="Exact, or PathPrefix (whole segments: /api matches /api and /api/x, "
                                                      "not /apix); the default"),
        "value": Str(doc="the path, starting with /"),
    }, ("value",), doc="the request's path"),
    "method": Str(enum=ROUTE_METHODS, doc="the request's method"),
    "headers": ListOf(obj({
        "type": Str(enum=("Exact",), doc="Exact, the default"),
        "name": Str(doc="a header's name"),
        "value": Str(doc="its value, exactly"),
    }, ("name", "value")), doc="headers the request has, every one"),
}, doc="a request it matches: every field given must match (none: every request)")

SERVER_ROUTE = obj({  # a route on Servers: a part of their traffic, for per-route authorization
    "parentRefs": ListOf(obj({
        "group": Str(doc="policy.linkerd.io (or left out)"),
        "kind": Str(doc="Server: the route is one part of that Server's traffic"),
        "name": Str(doc="a Server of this namespace"),
    }, ("kind", "name")), non_empty=True, hint="expected a non-empty list of parentRefs ({kind: Server, name: ...})",
        doc="the Servers whose traffic this route is a part of"),
    "rules": ListOf(obj({
        "matches": ListOf(ROUTE_MATCH, doc="the requests this rule matches, any one (none: every request)"),
    }), doc="the route's rules: a request matches the route when it matches one (none: every request)"),
}, ("parentRefs",))
# Linkerd's HTTPRoute, either form: on Servers (above), or on a Service — Gateway API's HTTPRoute in Linkerd's group,
# as Linkerd's Dynamic Request Routing task writes it (routeschema.HTTP_ROUTE). The CRD's schema, and the first check
HTTP_ROUTE = obj({
    "parentRefs": ListOf(obj({
        "group": Str(enum=(LINKERD_GROUP, *CORE_GROUPS), allow_empty=True, doc="policy.linkerd.io for a Server; core (or \"\") "
                                                                              "for a Service"),
        "kind": Str(enum=("Server", "Service"), doc="Server: the route is one part of that Server's traffic (per-route "
                                                    "authorization); Service: the route shapes the mesh's requests to it"),
        "name": Str(doc="a Server or Service of this namespace"),
        "namespace": Str(doc="a Service's: must be left out (the route's namespace)"),
        "port": Int(1, 65535, "a port", doc="a Service's port: not read (every port)"),
    }, ("kind", "name")), non_empty=True, hint="expected a non-empty list of parentRefs ({kind: Server or Service, name: ...})",
        doc="the Servers whose traffic this route is a part of, or the one Service whose traffic it shapes"),
    "hostnames": GATEWAY_ROUTE.fields["hostnames"],  # a Service's: not read
    "rules": ListOf(replace(GATEWAY_ROUTE.fields["rules"].item,  # type: ignore[attr-defined]
                            doc="a Server's: matches only; a Service's: Gateway API's rule"),
                    doc="the route's rules (a Server's route without rules: every request)"),
}, ("parentRefs",))

RPS_MAX = 2**31 - 1  # the CRD's int64, kept to what a sidecar's bucket can hold


def _rate(doc: str) -> Int:
    return Int(1, RPS_MAX, "a whole number of requests a second", doc=doc)


HTTP_LOCAL_RATE_LIMIT_POLICY = obj({
    "targetRef": obj({
        "group": Str(allow_empty=True, doc="policy.linkerd.io"),
        "kind": Str(enum=("Server",), doc="Server: the limit is counted at the port it covers, on each of its pods"),
        "name": Str(doc="a Server of this namespace"),
    }, ("kind", "name"), doc="the Server whose traffic is limited (a Server takes one HTTPLocalRateLimitPolicy)"),
    "total": obj({"requestsPerSecond": _rate("every caller's requests together, a second (a burst of as many)")},
                 ("requestsPerSecond",), doc="a limit on all traffic to the Server, at each pod (left out: none)"),
    "identity": obj({"requestsPerSecond": _rate("each identity's requests, a second (a burst of as many)")},
                    ("requestsPerSecond",), doc="a limit for each caller, by mesh identity; callers without one "
                                                "(unmeshed) share one (left out: none)"),
    "overrides": ListOf(obj({
        "requestsPerSecond": _rate("these callers' requests together, a second, instead of identity's"),
        "clientRefs": ListOf(obj({
            "group": Str(allow_empty=True, doc="left out (the core group)"),
            "kind": Str(enum=("ServiceAccount",), doc="ServiceAccount: callers with its mesh identity"),
            "namespace": Str(doc="its namespace (left out: the policy's)"),
            "name": Str(doc="its name"),
        }, ("kind", "name")), non_empty=True, hint="expected a non-empty list of clientRefs ({kind: ServiceAccount, name: ...})",
            doc="the callers this limit is for"),
    }, ("requestsPerSecond", "clientRefs")), doc="limits for some callers instead of identity's"),
}, ("targetRef",))
