"""Gateway API's ``Gateway``: which HTTPRoutes an ingress gateway serves, for which hosts.

A Gateway here is served by the ingress gateway of its namespace — ``meshdojo up`` starts one
per demo, so Istio's *Getting Started* Gateway in ``bookinfo`` is served by bookinfo's gateway
(as Istio's "manual deployment" binds a Gateway to a gateway that already runs). The listeners
say which routes may attach (``allowedRoutes``) and for which hosts (``hostname``); a route
whose ``parentRefs`` name the Gateway (and, with ``sectionName``, one listener) attaches to the
listeners that allow it, for the hosts both accept. While no route is attached, the gateway
sends everything to the demo's front service, as before.

Pure: the proxy (proxy/gatewayroutes.py) and ``meshdojo get`` read the same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from controlplane.fields import FieldReader
from controlplane.istioschema import ISTIO_GATEWAY

GATEWAY_GROUP = "gateway.networking.k8s.io"  # Gateway API's API group
# the gateways' kinds: Gateway API's, and Istio's (controlplane/istiogateway.py: its servers read as listeners),
# each with its own kind of route: an HTTPRoute whose parentRefs name it, a VirtualService whose gateways do
GATEWAY_ROUTE_KINDS = {"Gateway": "HTTPRoute", ISTIO_GATEWAY: "VirtualService"}
GATEWAY_CLASSES = ("istio", "meshdojo")  # the gatewayClassNames our gateways serve
GATEWAY_LABEL = "meshdojo.dev/gateway"  # on the demos' ingress gateways (their pods and Services), with the demo's name
GATEWAY_SERVICE_ACCOUNT = "ingress-gateway"  # the gateways' identity in both backends: only it is given the TLS keys
TERMINATE_MODE = "gateway.istio.io/tls-terminate-mode"  # Istio's listener option for mutual TLS, as its task writes it
# SIMPLE: the server's certificate only; MUTUAL: clients must present one the Secret's ca.crt signed; OPTIONAL_MUTUAL: checked if given
TERMINATE_MODES = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
SERVICE_TYPE = "networking.istio.io/service-type"  # Istio's annotation: the type of the Service made for a Gateway
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    port: int
    hostname: str | None  # None: any host
    routes_from: str  # "Same": routes of the Gateway's namespace; "All": of any
    protocol: str = "HTTP"  # or HTTPS: TLS terminated at the gateway with the certificate of a Secret
    certificates: tuple[str, ...] = ()  # HTTPS: the Secrets (kubernetes.io/tls, in the Gateway's namespace) it serves
    mode: str = "SIMPLE"  # HTTPS: one of TERMINATE_MODES
    https_redirect: bool = False  # HTTP: its requests are answered 301 to https:// (an Istio Gateway server's httpsRedirect)


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    class_name: str
    listeners: tuple[Listener, ...]
    service_type: str = "ClusterIP"  # on a cluster, the type of the Gateway's own Service (Istio's annotation)


def service_name(gateway: str, class_name: str) -> str:
    """The Service made for a Gateway on a cluster, named as Istio names its own: bookinfo-gateway-istio."""
    return f"{gateway}-{class_name}"


def read_gateway(r: FieldReader, spec: dict[str, Any], namespace: str, annotations: dict[str, Any] | None = None) -> GatewaySpec:
    """A Gateway's spec, the schema already checked: what a schema cannot say is refused here;
    and Istio's ``networking.istio.io/service-type`` annotation, checked."""
    service_type = (annotations or {}).get(SERVICE_TYPE, "ClusterIP")
    if service_type not in SERVICE_TYPES:
        raise r.fail(f"metadata.annotations.{SERVICE_TYPE}", f"{service_type!r}: expected one of {', '.join(SERVICE_TYPES)} "
                                                            "(the type of the Service made for this Gateway on a cluster)")
    listeners: list[Listener] = []
    for i, item in enumerate(spec["listeners"]):
        where = f"spec.listeners[{i}]"
        protocol = item["protocol"]
        if protocol not in ("HTTP", "HTTPS"):
            why = ("TLS passthrough needs a TLSRoute, which meshdojo does not serve" if protocol == "TLS"
                   else "the gateways forward HTTP requests only")
            raise r.fail(f"{where}.protocol", f"{protocol!r}: {why}; use protocol: HTTP, or HTTPS to terminate TLS here")
        if any(other.name == item["name"] for other in listeners):
            raise r.fail(f"{where}.name", f"{item['name']!r} names another listener too: each needs its own name")
        routes_from = item.get("allowedRoutes", {}).get("namespaces", {}).get("from", "Same")
        certificates = _certificates(r, where, item, protocol, namespace)
        mode = _terminate_mode(r, where, item["tls"].get("options") or {}) if certificates else "SIMPLE"
        listeners.append(Listener(item["name"], item["port"], item.get("hostname"), routes_from, protocol, certificates, mode))
    return GatewaySpec(spec["gatewayClassName"], tuple(listeners), service_type)


def _certificates(r: FieldReader, where: str, item: dict[str, Any], protocol: str, namespace: str) -> tuple[str, ...]:
    """An HTTPS listener's Secrets: Gateway API's ``tls.mode: Terminate`` (the default) with
    ``certificateRefs`` to Secrets of the Gateway's own namespace, as Istio's Secure Gateways
    task writes them."""
    tls = item.get("tls")
    if protocol == "HTTP":
        if tls is not None:
            raise r.fail(f"{where}.tls", "an HTTP listener has no TLS: use protocol: HTTPS to terminate TLS here")
        return ()
    if tls is None or not tls.get("certificateRefs"):
        raise r.fail(f"{where}.tls.certificateRefs", "an HTTPS listener needs the Secret holding its certificate and key, e.g. "
                                                     "tls: {mode: Terminate, certificateRefs: [{kind: Secret, name: bookinfo-credential}]}")
    if tls.get("mode", "Terminate") != "Terminate":
        raise r.fail(f"{where}.tls.mode", f"{tls['mode']!r}: passing TLS through needs protocol: TLS and a TLSRoute, which "
                                          "meshdojo does not serve; use mode: Terminate")
    names = []
    for j, ref in enumerate(tls["certificateRefs"]):
        if ref.get("namespace", namespace) != namespace:
            raise r.fail(f"{where}.tls.certificateRefs[{j}].namespace",
                         f"{ref['namespace']!r}: a Secret of another namespace needs a ReferenceGrant, which meshdojo does not "
                         f"read; create the Secret in the Gateway's namespace ({namespace})")
        names.append(ref["name"])
    return tuple(dict.fromkeys(names))


def _terminate_mode(r: FieldReader, where: str, options: dict[str, str]) -> str:
    """Istio's ``gateway.istio.io/tls-terminate-mode`` option: how the listener treats client
    certificates (Gateway API's Gateway has no field for it; Istio's Secure Gateways task sets it)."""
    for key in options:
        if key != TERMINATE_MODE:
            raise r.fail(f"{where}.tls.options.{key}", f"not an option meshdojo reads; it reads {TERMINATE_MODE} "
                                                       f"({', '.join(TERMINATE_MODES)})")
    mode = options.get(TERMINATE_MODE, "SIMPLE")
    if mode == "ISTIO_MUTUAL":
        raise r.fail(f"{where}.tls.options.{TERMINATE_MODE}", "ISTIO_MUTUAL asks for the mesh's own certificates, which "
                                                              "clients from outside the mesh do not have; use MUTUAL with a "
                                                              "ca.crt in the Secret for clients with certificates of their own")
    if mode not in TERMINATE_MODES:
        raise r.fail(f"{where}.tls.options.{TERMINATE_MODE}", f"{mode!r}: expected one of {', '.join(TERMINATE_MODES)}")
    return mode


def covers(pattern: str, host: str) -> bool:
    """Gateway API's host matching: ``*.example.com`` covers any name (or narrower wildcard)
    under example.com, not example.com itself; any other pattern only itself."""
    return pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:]))


def _hosts_at(route_hosts: tuple[str, ...], listener_host: str | None) -> tuple[str, ...] | None:
    """The hosts a route serves at a listener (the narrower of each pair); () any host; None: none."""
    if listener_host is None:
        return route_hosts
    if not route_hosts:
        return (listener_host,)
    shared = tuple(dict.fromkeys(h if covers(listener_host, h) else listener_host
                                 for h in route_hosts if covers(listener_host, h) or covers(h, listener_host)))
    return shared or None


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    route: Any  # the HTTPRoute Resource
    gateway: str  # namespace/name of the Gateway it is attached to
    hostnames: tuple[str, ...]  # the hosts it serves there; (): any
    protocol: str = "HTTP"  # the listeners it is attached to: HTTP (the plain port) or HTTPS (the TLS port)
    parent_kind: str = "Gateway"  # or Istio's Gateway (the route a VirtualService); or Ingress: a rule of one (controlplane/ingress.py)
    https_redirect: bool = False  # taken by HTTP listeners that send every request to https:// (Istio's httpsRedirect)

    def rank(self, host: str) -> tuple[int, int] | None:
        """How specifically this route's hosts match ``host`` (higher first), or None: not at all.
        Gateway API's order: an exact host, then the longest wildcard, then a route for any host."""
        if not self.hostnames:
            return (0, 0)
        ranks = [(2, len(h)) if h == host else (1, len(h)) for h in self.hostnames if covers(h, host)]
        return max(ranks) if ranks else None


def takes(listener: Listener, route: Any, gateway_namespace: str) -> tuple[str, ...] | None:
    """The hosts ``listener`` serves ``route`` for (() any), or None: it does not take the route
    (another sectionName or port, a namespace its allowedRoutes leave out, no host in common)."""
    parent = route.spec.gateway
    if (parent.section not in (None, listener.name) or parent.port not in (None, listener.port)
            or (listener.routes_from == "Same" and route.namespace != gateway_namespace)):
        return None
    return _hosts_at(route.spec.hostnames, listener.hostname)


def routes_on(resources: Iterable[Any], gateway: Any) -> list[Any]:
    """The routes whose parent is ``gateway`` (attached or not), in name order: the HTTPRoutes
    whose parentRefs name a Gateway API Gateway, the VirtualServices whose gateways name Istio's."""
    kind = GATEWAY_ROUTE_KINDS[gateway.kind]
    return sorted((r for r in resources if r.kind == kind and (parent := getattr(r.spec, "gateway", None)) is not None
                   and (parent.namespace, parent.name) == (gateway.namespace, gateway.name)), key=lambda r: r.key)


def _gateways(resources: Iterable[Any], namespace: str | None = None) -> list[Any]:
    """The Gateways (Gateway API's and Istio's) of ``namespace`` (None: of every one), in name order."""
    return sorted((r for r in resources if r.kind in GATEWAY_ROUTE_KINDS and namespace in (None, r.namespace)), key=lambda r: r.key)


def parent_of(resources: Iterable[Any], route: Any) -> Any | None:
    """The Gateway a route on one names, of the kind its kind attaches to, or None: none yet."""
    parent, kind = route.spec.gateway, "Gateway" if route.kind != "VirtualService" else ISTIO_GATEWAY
    return next((r for r in resources if r.kind == kind and (r.namespace, r.name) == (parent.namespace, parent.name)), None)


def attached(resources: Iterable[Any], namespace: str) -> tuple[GatewayRoute, ...]:
    """The routes the ingress gateway of ``namespace`` serves: for each Gateway there, the
    HTTPRoutes whose parent is that Gateway and that one of its listeners takes (by name,
    port, the route's namespace and a host both accept) — once for its HTTP listeners and once
    for its HTTPS ones, which the gateway serves on ports of their own (and once for the HTTP
    listeners that send everything to HTTPS, an Istio Gateway's httpsRedirect). Routes in name
    order, a redirecting one before another of the same route."""
    resources = list(resources)
    found = []
    for gateway in _gateways(resources, namespace):
        for route in routes_on(resources, gateway):
            for protocol, redirect in (("HTTP", True), ("HTTP", False), ("HTTPS", False)):
                shared = [h for listener in gateway.spec.listeners if listener.protocol == protocol
                          and listener.https_redirect == redirect and (h := takes(listener, route, namespace)) is not None]
                if shared:
                    any_host = any(not h for h in shared)
                    found.append(GatewayRoute(route, f"{namespace}/{gateway.name}",
                                              () if any_host else tuple(dict.fromkeys(x for h in shared for x in h)), protocol,
                                              gateway.kind, redirect))
    found += ingress_routes(resources, namespace)
    return tuple(sorted(found, key=lambda g: (g.route.namespace, g.route.name, g.protocol, not g.https_redirect)))


def _ingresses(resources: Iterable[Any], namespace: str) -> list[Any]:
    return sorted((r for r in resources if r.kind == "Ingress" and r.namespace == namespace), key=lambda r: r.key)


def _tls_hosts(route_hosts: tuple[str, ...], tls_hosts: tuple[str, ...]) -> tuple[str, ...] | None:
    """The hosts a route serves over TLS with an Ingress's ``tls`` entry (() any), or None: none."""
    if not tls_hosts:
        return route_hosts
    shared = [h for host in tls_hosts if (h := _hosts_at(route_hosts, host)) is not None]
    return tuple(dict.fromkeys(x for h in shared for x in h)) if shared else None


def ingress_routes(resources: Iterable[Any], namespace: str) -> list[GatewayRoute]:
    """The routes the Ingresses of ``namespace`` make: each on the HTTP port, and on the TLS port
    for the hosts its ``tls`` entries name (a route for any host: at those hosts)."""
    found = []
    for item in _ingresses(resources, namespace):
        for route in item.spec.routes:
            found.append(GatewayRoute(route, f"{namespace}/{item.name}", route.spec.hostnames, "HTTP", "Ingress"))
            secured = [h for tls in item.spec.tls if (h := _tls_hosts(route.spec.hostnames, tls.hosts)) is not None]
            if secured:
                hosts = () if any(not h for h in secured) else tuple(dict.fromkeys(x for h in secured for x in h))
                found.append(GatewayRoute(route, f"{namespace}/{item.name}", hosts, "HTTPS", "Ingress"))
    return found


@dataclass(frozen=True, slots=True)
class TlsListener:
    """An HTTPS listener as the gateway's TLS port sees it: for which server name (SNI), which
    Secret's certificate."""

    hostname: str | None  # None: any name (and a client that sends none)
    secret: str  # the Secret's name, in the gateway's namespace
    gateway: str  # namespace/name, for what the learner is told
    mode: str = "SIMPLE"  # one of TERMINATE_MODES: MUTUAL needs the Secret's ca.crt
    parent_kind: str = "Gateway"  # or Ingress: one of its tls entries' hosts


def tls_listeners(resources: Iterable[Any], namespace: str) -> tuple[TlsListener, ...]:
    """The HTTPS listeners of the Gateways of ``namespace``, in name order (a listener with
    several certificateRefs serves the first; the others are for other key types elsewhere),
    then one per host of each ``tls`` entry of its Ingresses (for any host when it names none)."""
    resources = list(resources)
    return tuple([TlsListener(listener.hostname, listener.certificates[0], f"{namespace}/{gateway.name}", listener.mode)
                  for gateway in _gateways(resources, namespace) for listener in gateway.spec.listeners if listener.protocol == "HTTPS"]
                 + [TlsListener(host, tls.secret, f"{namespace}/{item.name}", "SIMPLE", "Ingress")
                    for item in _ingresses(resources, namespace) for tls in item.spec.tls for host in (tls.hosts or (None,))])


def secrets_named(resources: Iterable[Any], namespace: str) -> set[str]:
    """The Secrets the Gateways and Ingresses of ``namespace`` name: the only ones its gateway is given."""
    return {name for ns, name in secret_keys(resources) if ns == namespace}


def secret_keys(resources: Iterable[Any]) -> set[tuple[str, str]]:
    """(namespace, name) of every Secret a Gateway's HTTPS listener, or an Ingress's tls, names."""
    resources = list(resources)
    return ({(r.namespace, name) for r in _gateways(resources) for listener in r.spec.listeners for name in listener.certificates}
            | {(r.namespace, tls.secret) for r in resources if r.kind == "Ingress" for tls in r.spec.tls})


SECRET_KINDS = ("Gateway", ISTIO_GATEWAY, "Ingress")  # the kinds that name the Secrets a gateway serves


def listener_for(server_name: str | None, listeners: tuple[TlsListener, ...]) -> TlsListener | None:
    """The HTTPS listener a TLS client's server name (SNI) reaches, as Gateway API matches hosts:
    an exact hostname, then the longest wildcard, then a listener for any host; None: none —
    the handshake fails, as at Istio's gateway."""
    name = (server_name or "").lower().rstrip(".")
    ranked = [((2 if item.hostname == name else 1, len(item.hostname)) if item.hostname else (0, 0), -i, item)
              for i, item in enumerate(listeners) if item.hostname is None or (name and covers(item.hostname, name))]
    return max(ranked, key=lambda x: (x[0], x[1]))[2] if ranked else None


def refusal(resources: Iterable[Any], route: Any) -> tuple[str, str] | None:
    """Why an HTTPRoute whose parent is a Gateway (a VirtualService bound to an Istio Gateway)
    serves nothing — Gateway API's reason for ``Accepted: False`` and a message — or None: it is attached."""
    parent = route.spec.gateway
    gateway = parent_of(resources, route)
    if gateway is None:
        named = "Istio Gateway" if route.kind == "VirtualService" else "Gateway"
        return "NoMatchingParent", f"{named} {parent.namespace}/{parent.name} does not exist (yet): the route serves nothing until it does"
    listeners = gateway.spec.listeners
    if any(takes(listener, route, gateway.namespace) is not None for listener in listeners):
        return None
    picked = [item for item in listeners if parent.section in (None, item.name) and parent.port in (None, item.port)]
    if not picked:
        reason = "NoMatchingParent"  # its sectionName or port names no listener
    elif all(item.routes_from == "Same" and route.namespace != gateway.namespace for item in picked):
        reason = "NotAllowedByListeners"
    else:
        reason = "NoMatchingListenerHostname"
    if gateway.kind == ISTIO_GATEWAY:
        return reason, (f"no server of Istio Gateway {parent.namespace}/{parent.name} takes it (check its servers' hosts against "
                        "the VirtualService's host, and a NAMESPACE/ before them for a VirtualService of another namespace)")
    return reason, (f"no listener of Gateway {parent.namespace}/{parent.name} takes it (check sectionName, port, the listeners' "
                    "hostname against the route's hostnames, and allowedRoutes.namespaces.from for a route of another namespace)")


def not_attached(resources: Iterable[Any], route: Any) -> str | None:
    """Why an HTTPRoute whose parent is a Gateway serves nothing, or None: it is attached."""
    refused = refusal(resources, route)
    return None if refused is None else refused[1]


def warnings(resources: Iterable[Any], applied: Any, is_service: Callable[[str, str], bool]) -> list[str]:
    """``apply``'s warnings for a Gateway or a route on one: each route that serves nothing, and
    why. A route whose parentRef has no kind names a Gateway (Gateway API's default); when none
    of that name exists but a Service does, the warning shows the kind: Service it likely meant."""
    resources = list(resources)
    routes = routes_on(resources, applied) if applied.kind in GATEWAY_ROUTE_KINDS else [applied]
    said = []
    for route in routes:
        why = not_attached(resources, route)
        if why is None:
            continue
        parent = route.spec.gateway
        if (route is applied and route.kind == "HTTPRoute" and parent_of(resources, route) is None
                and is_service(parent.namespace, parent.name)):
            why += (f"; a parentRef without a kind names a Gateway (Gateway API's default): for the Service "
                    f"{parent.name}'s traffic inside the mesh, write {{kind: Service, group: \"\", name: {parent.name}}}")
        said.append(f"{route.kind} {route.namespace}/{route.name}: {why}")
    return said


def route_problems(resources: Iterable[Any], is_service: Callable[[str, str], bool]) -> list[str]:
    """Every route on a Gateway that serves nothing, and why (``meshdojo check``)."""
    resources = list(resources)
    return [said for route in sorted((r for r in resources if r.kind in GATEWAY_ROUTE_KINDS.values() and getattr(r.spec, "gateway", None)),
                                     key=lambda r: r.key)
            for said in warnings(resources, route, is_service)]


def unresolved(listener: Listener, namespace: str, secret_of: Callable[[str, str], Any | None]) -> str | None:
    """Why an HTTPS listener cannot serve (its Secret missing, or without the ca.crt a mutual TLS
    listener checks clients against) — Gateway API's ``ResolvedRefs: False`` — or None: it can.
    ``secret_of``: (namespace, name) -> the valid Secret there (with ``ca_pem``), or None."""
    if not listener.certificates:
        return None
    name = listener.certificates[0]
    secret = secret_of(namespace, name)
    if secret is None:
        return (f"Secret {namespace}/{name} is not there, or is not a valid TLS Secret: TLS handshakes for this "
                f"listener fail (meshdojo create secret tls {name} --cert FILE --key FILE -n {namespace})")
    if listener.mode != "SIMPLE" and not secret.ca_pem:
        return (f"Secret {namespace}/{name} has no ca.crt, which {TERMINATE_MODE}: {listener.mode} checks client "
                f"certificates against: TLS handshakes for this listener fail (meshdojo create secret generic {name} "
                f"--from-file=tls.crt=FILE --from-file=tls.key=FILE --from-file=ca.crt=FILE -n {namespace})")
    return None


def certificate_problems(resources: Iterable[Any], secret_of: Callable[[str, str], Any | None]) -> list[str]:
    """Every HTTPS listener (or an Ingress's tls entry) that cannot serve, and why: its handshakes
    fail until it can."""
    resources = sorted(resources, key=lambda r: r.key)
    return ([f"Gateway {gateway.namespace}/{gateway.name}: listener {listener.name}: {why}"
             for gateway in resources if gateway.kind in GATEWAY_ROUTE_KINDS
             for listener in gateway.spec.listeners if (why := unresolved(listener, gateway.namespace, secret_of)) is not None]
            + [f"Ingress {item.namespace}/{item.name}: spec.tls[{i}]: {why}"  # each tls entry judged as the listener it amounts to
               for item in resources if item.kind == "Ingress" for i, tls in enumerate(item.spec.tls)
               if (why := unresolved(Listener(f"tls-{i}", 443, None, "Same", "HTTPS", (tls.secret,)), item.namespace, secret_of))
               is not None])
