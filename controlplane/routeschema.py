"""The fields of Gateway API's ``HTTPRoute`` as meshdojo implements it — its parents, matches,
filters, backends, timeouts and retries — defined once, as :mod:`controlplane.policyschema`
holds every kind's: the validator checks a route against them and a cluster's subset CRD is
made from them. Linkerd's ``HTTPRoute`` (``policy.linkerd.io``) on a Service is the same route
in Linkerd's group (:mod:`controlplane.linkerdschema`). What they mean: ``policy._route``,
:mod:`controlplane.matching`, :mod:`controlplane.routefilters`.
"""

from __future__ import annotations

from dataclasses import replace

from controlplane.gatewayapi import GATEWAY_GROUP
from controlplane.names import HOST_HINT, HOST_PATTERN
from controlplane.schema import CORE_GROUPS, Bool, Duration, Int, ListOf, Str, obj

PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
MANY = 1_000_000
# a route's parent, a CircuitBreaker's or RetryBudget's target: a Service (GAMMA), or a ServiceEntry's hosts
# (as Istio's Gateway API support has it, and as a DestinationRule may name a ServiceEntry's host)
PARENT_GROUPS = (*CORE_GROUPS, "policy.meshdojo.dev", "networking.istio.io")

PARENT_REF = obj({
    "kind": Str(enum=("Service", "ServiceEntry", "Gateway"),
                doc="Service (GAMMA: the mesh's requests to it), ServiceEntry (the entry's hosts, outside the mesh) or "
                    "Gateway (an ingress gateway's requests); left out: Gateway, or Service with group \"\""),
    "name": Str(doc="the Service's, ServiceEntry's or Gateway's name"),
    "group": Str(enum=(*PARENT_GROUPS, GATEWAY_GROUP), allow_empty=True,
                 doc='"" for a Service (or core, as Linkerd writes it); policy.meshdojo.dev (or Istio\'s networking.istio.io) '
                     'for a ServiceEntry; gateway.networking.k8s.io for a Gateway'),
    "namespace": Str(doc="a Gateway's, when it is in another namespace (its listeners must allow routes from All)"),
    "port": Int(1, 65535, "a port", doc="a Gateway's listeners on this port only (left out: any port)"),
    "sectionName": Str(doc="a Gateway's listener, by name (left out: every listener)"),
}, ("name",), doc="the Service, ServiceEntry or Gateway whose traffic this route shapes")


VALUE_TYPES = ("Exact", "RegularExpression")
MATCH = obj({
    "path": obj({"type": Str(enum=PATH_TYPES, doc="PathPrefix by default"),
                 "value": Str(doc="/exact/path, a /prefix (whole segments: /api matches /api/x, not /apix), or a regular expression")},
                ("value",), doc="the request's path"),
    "headers": ListOf(obj({"name": Str(doc="the header's name (any case)"), "value": Str(doc="the value, or a regular expression"),
                           "type": Str(enum=VALUE_TYPES, doc="Exact by default")}, ("name", "value")),
                      hint="expected a list of {name, value}", doc="headers the request must carry, every one"),
    "queryParams": ListOf(obj({"name": Str(doc="case-sensitive"), "value": Str(doc="the value, or a regular expression"),
                               "type": Str(enum=VALUE_TYPES, doc="Exact by default")}, ("name", "value")),
                          hint="expected a list of {name, value}", doc="query parameters the request must carry, every one"),
    "method": Str(enum=METHODS, doc="the request's method"),
}, doc="the requests this applies to (all of path, headers, query parameters and method)")


# Gateway API's HTTPRoute filters, each a field named after its type
HEADER_NAME = Str(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", hint="expected a header name (letters, digits and !#$%&'*+.^_`|~-)")
HEADER_VALUE = Str(allow_empty=True, pattern=r"^[\t\x20-\x7e]*$",
                   hint="expected a header value of printable ASCII (no line breaks or control characters)")
HEADER = obj({"name": replace(HEADER_NAME, doc="the header's name"), "value": replace(HEADER_VALUE, doc="its value")},
             ("name", "value"))
HEADER_MODIFIER = obj({
    "set": ListOf(HEADER, hint="expected a list of {name, value}", doc="replace the header (or add it)"),
    "add": ListOf(HEADER, hint="expected a list of {name, value}", doc="add a value, keeping the ones there"),
    "remove": ListOf(HEADER_NAME, doc="header names to drop"),
})
PATH_PATTERN = r"^/[!-~]*$"  # what a request line can carry: printable ASCII, no spaces
PATH_HINT = "expected a path starting with '/', of printable ASCII without spaces"
PATH_MODIFIER = obj({
    "type": Str(enum=("ReplaceFullPath", "ReplacePrefixMatch"), doc="which of the two fields below says the new path"),
    "replaceFullPath": Str(pattern=PATH_PATTERN, hint=PATH_HINT, doc="the whole new path"),
    "replacePrefixMatch": Str(pattern=PATH_PATTERN, hint=PATH_HINT, doc="what replaces the prefix the rule matched"),
}, ("type",), doc="the path: all of it, or the prefix the rule's PathPrefix match matched")
FILTER_TYPES = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "RequestRedirect", "URLRewrite", "CORS")
FILTER = obj({
    "type": Str(enum=FILTER_TYPES, doc="which filter: its field (the type in lowerCamelCase) says how"),
    "requestHeaderModifier": replace(HEADER_MODIFIER, doc="change the request's headers before forwarding"),
    "responseHeaderModifier": replace(HEADER_MODIFIER, doc="change the response's headers before the caller gets it"),
    "requestMirror": obj({
        "backendRef": obj({"name": Str(doc="the Service that gets a copy"), "port": Int(1, 65535, "a port", doc="not read"),
                           "kind": Str(enum=("Service",), doc="Service"), "group": Str(allow_empty=True, doc='""')}, ("name",),
                          doc="the Service that gets a copy of each request"),
        "percent": Int(0, 100, "a percentage", doc="of the matching requests (100 by default)"),
        "fraction": obj({"numerator": Int(0, MANY, "a whole number", doc="copies per denominator requests"),
                         "denominator": Int(1, MANY, "a whole number", doc="100 by default")},
                        ("numerator",), doc="of the matching requests: numerator / denominator (100 by default)"),
    }, ("backendRef",), doc="send a copy of each request to another Service; its response is thrown away"),
    "requestRedirect": obj({
        "scheme": Str(enum=("http", "https"), doc="the Location's scheme (the request's by default)"),
        "hostname": Str(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", hint="expected a lower-case host name",
                        doc="the Location's host (the one the client asked for by default)"),
        "path": PATH_MODIFIER,
        "port": Int(1, 65535, "a port", doc="the Location's port (the one the client asked for by default)"),
        "statusCode": Int(301, 308, "a redirect status", doc="301, 302 (the default), 303, 307 or 308"),
    }, doc="answer with a redirect instead of forwarding"),
    "urlRewrite": obj({
        "hostname": Str(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", hint="expected a lower-case host name",
                        doc="the Host header the backend gets"),
        "path": PATH_MODIFIER,
    }, doc="change the Host header or the path before forwarding"),
    "cors": obj({
        "allowOrigins": ListOf(Str(doc="* (any), or scheme://host[:port]; a * to the left of the host takes any labels "
                                       "(https://*.example.com)"), max_items=64,
                               doc="the origins whose pages may read the responses"),
        "allowCredentials": Bool(doc="the pages may send cookies and read the answers to them (Access-Control-Allow-Credentials)"),
        "allowMethods": ListOf(Str(enum=(*METHODS, "*"), doc="a method, or * for any"), max_items=10,
                               doc="the methods a preflight allows (GET, HEAD and POST always are)"),
        "allowHeaders": ListOf(replace(HEADER_NAME, doc="a header name, or * for any"), max_items=64,
                               doc="the request headers a preflight allows"),
        "exposeHeaders": ListOf(replace(HEADER_NAME, doc="a header name"), max_items=64,
                                doc="the response headers the pages may read besides the safe ones"),
        "maxAge": Int(1, MANY, "a number of seconds", doc="how long a browser may keep a preflight's answer (5 by default)"),
    }, doc="cross-origin requests: answer preflights from the allowed origins, and let their pages read the responses"),
}, ("type",), doc="what the rule does to a request besides sending it: headers, a copy, a redirect, a rewrite, CORS")


HTTP_ROUTE = obj({
    "parentRefs": ListOf(PARENT_REF, non_empty=True, max_items=1,
                         hint="expected exactly one parentRef: the Service, ServiceEntry or Gateway whose traffic this route shapes",
                         doc="the one Service, ServiceEntry or Gateway whose traffic this route shapes"),
    "hostnames": ListOf(Str(pattern=HOST_PATTERN, hint=HOST_HINT), max_items=16,
                        doc="a Gateway's route: the hosts it serves (*.example.com: any name under it); a Service's: not read"),
    "rules": ListOf(obj({
        "name": Str(doc="the rule's name (metrics and tap name a rule by its index: route#0)"),
        "matches": ListOf(MATCH, doc="the requests this rule takes: any one of these (left out: every request); the first "
                                     "rule with a match wins"),
        "backendRefs": ListOf(obj({
            "name": Str(doc="a Service of this namespace"),
            "port": Int(1, 65535, "a port", doc="not read: the Service's port"),
            "weight": Int(0, MANY, "a whole number", doc="its share of the requests, against the others' weights (1 by default)"),
            "kind": Str(enum=("Service",), doc="Service"), "group": Str(allow_empty=True, doc='""'),
            "namespace": Str(doc="must be left out: a Service of the route's namespace"),
            "filters": ListOf(FILTER, hint="expected a list of filters, each {type: ..., <its field>: ...}",
                              doc="RequestHeaderModifier and ResponseHeaderModifier for the requests sent to this backend "
                                  "(after the rule's)"),
        }, ("name",)), doc="where the rule sends its requests, split by weight (left out: the parent Service itself)"),
        "filters": ListOf(FILTER, hint="expected a list of filters, each {type: ..., <its field>: ...}",
                          doc="what the rule does to a request besides sending it, in order"),
        "timeouts": obj({"request": Duration(doc="the whole request, every retry included: then 504"),
                         "backendRequest": Duration(doc="each try on its own")}, doc="how long the caller waits"),
        "retry": obj({"codes": ListOf(Int(400, 599, "an HTTP status"), doc="the statuses that are retried (connection "
                                                                           "failures always are)"),
                      "attempts": Int(0, 10, "a number of retries", doc="retries after the first try (2 by default)"),
                      "backoff": Duration(doc="the wait before a retry")},
                     doc="Gateway API's retries (GEP-1731); a RetryBudget caps them"),
    }), non_empty=True, hint="expected a non-empty list", doc="what to do with each request, the first matching rule first"),
}, ("parentRefs",))

