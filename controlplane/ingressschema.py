"""The fields of the kinds an ingress gateway serves — Gateway API's ``Gateway`` and
Kubernetes' ``Ingress`` — as :mod:`controlplane.policyschema` holds every kind's: the validator
checks a document against them, and the CRDs (the Gateway's subset) are made from them.
"""

from __future__ import annotations

from controlplane.gatewayapi import GATEWAY_CLASSES, GATEWAY_GROUP
from controlplane.names import HOST_HINT, HOST_PATTERN
from controlplane.schema import Int, ListOf, MapOf, Str, obj

# Gateway API's Gateway: an ingress gateway's listeners, which HTTPRoutes attach to (controlplane/gatewayapi.py)
GATEWAY = obj({
    "gatewayClassName": Str(enum=GATEWAY_CLASSES,
                            doc="istio (as Istio's tasks write it) or meshdojo: served by the ingress gateway of the "
                                "Gateway's namespace"),
    "listeners": ListOf(obj({
        "name": Str(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", hint="expected a lower-case name, e.g. http",
                    doc="what a route's parentRefs[].sectionName names"),
        "port": Int(1, 65535, "a port", doc="kept as written: the namespace's gateway serves every listener on its own port"),
        "protocol": Str(doc="HTTP: plain HTTP/1.1 on the gateway's port; HTTPS: TLS terminated at the gateway's TLS port "
                            "with the certificate of tls.certificateRefs"),
        "tls": obj({
            "mode": Str(enum=("Terminate", "Passthrough"), doc="Terminate (the default): the gateway ends TLS and routes "
                                                               "the HTTP requests inside; Passthrough is not served here"),
            "certificateRefs": ListOf(obj({
                "name": Str(doc="a Secret of type kubernetes.io/tls (kubectl or meshdojo create secret tls NAME --cert --key)"),
                "kind": Str(enum=("Secret",), doc="Secret (the default)"),
                "group": Str(enum=("",), allow_empty=True, doc='"" (the default): the core group'),
                "namespace": Str(doc="the Gateway's own (the default): Secrets of other namespaces need a ReferenceGrant, "
                                     "which meshdojo does not read"),
            }, ("name",)), max_items=64, doc="the Secret holding the listener's certificate and key (the first is served)"),
            "options": MapOf(Str(doc="the option's value"), hint="expected a mapping of option names to strings, e.g. "
                             "{gateway.istio.io/tls-terminate-mode: MUTUAL}",
                             doc="gateway.istio.io/tls-terminate-mode: SIMPLE (the default), MUTUAL (clients must present a "
                                 "certificate the Secret's ca.crt signed) or OPTIONAL_MUTUAL (checked when presented)"),
        }, doc="HTTPS: how TLS ends at the gateway, with which certificate"),
        "hostname": Str(pattern=HOST_PATTERN, hint=HOST_HINT,
                        doc="only requests for this host (*.example.com: any name under example.com); left out: any"),
        "allowedRoutes": obj({
            "namespaces": obj({"from": Str(enum=("Same", "All"),
                                           doc="Same (the default): routes of the Gateway's namespace; All: of any")},
                              doc="the namespaces whose routes may attach"),
            "kinds": ListOf(obj({"kind": Str(enum=("HTTPRoute",), doc="HTTPRoute"), "group": Str(enum=(GATEWAY_GROUP,), doc=GATEWAY_GROUP)},
                                ("kind",)), doc="the route kinds that may attach: HTTPRoute"),
        }, doc="which routes may attach"),
    }, ("name", "port", "protocol")), non_empty=True, max_items=64, hint="expected a non-empty list of listeners",
        doc="what the gateway accepts: each a name, port, protocol and (optionally) a hostname"),
}, ("gatewayClassName", "listeners"))

# Kubernetes' Ingress (networking.k8s.io/v1), as Istio serves it: the ingress gateway of its namespace (controlplane/ingress.py)
INGRESS_BACKEND = obj({
    "service": obj({
        "name": Str(doc="the Service's name, in the Ingress's namespace"),
        "port": obj({"number": Int(1, 65535, "a port", doc="the Service's port"),
                     "name": Str(doc="the Service's port, by name")},
                    doc="not read: a meshed Service is reached through its sidecars, whatever port it names"),
    }, ("name",), doc="the Service the requests go to"),
}, ("service",), doc="where the matching requests go")
INGRESS = obj({
    "ingressClassName": Str(doc="istio (as Istio's task writes it) or meshdojo; another class is another controller's, "
                                "and an Ingress with none is left to the cluster's default controller"),
    "defaultBackend": obj(INGRESS_BACKEND.fields, ("service",),
                          doc="where a request that no rule matches goes (left out: such a request gets 404)"),
    "rules": ListOf(obj({
        "host": Str(pattern=HOST_PATTERN, hint=HOST_HINT,
                    doc="only requests for this host (*.example.com: any name under example.com); left out: any host"),
        "http": obj({
            "paths": ListOf(obj({
                "path": Str(pattern=r"^/", hint="expected a path that starts with /",
                            doc="the request's path: Exact, Prefix (whole segments: /status takes /status/200, "
                                "not /statusx) or ImplementationSpecific (Istio's: exact, or a prefix when it ends in /*)"),
                "pathType": Str(enum=("Exact", "Prefix", "ImplementationSpecific"),
                                doc="Exact, Prefix or ImplementationSpecific"),
                "backend": INGRESS_BACKEND,
            }, ("path", "pathType", "backend")), non_empty=True, max_items=64,
                hint="expected a non-empty list of paths", doc="the paths, each with its backend"),
        }, ("paths",), doc="the HTTP paths of this host"),
    }), max_items=64, doc="the hosts and paths the gateway lets in"),
    "tls": ListOf(obj({
        "hosts": ListOf(Str(pattern=HOST_PATTERN, hint=HOST_HINT, doc="a host"), max_items=64,
                        doc="the hosts this certificate is for (left out: any)"),
        "secretName": Str(doc="a kubernetes.io/tls Secret of the Ingress's namespace (meshdojo create secret tls)"),
    }, ("secretName",)), max_items=64, doc="HTTPS: TLS terminated at the gateway's TLS port with these Secrets' certificates"),
})
