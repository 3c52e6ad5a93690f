"""Gateway API's Gateway, pure: what is refused, which routes attach to which listeners for
which hosts, which route a request takes, and what ``apply`` and ``get`` say."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from controlplane.crds import plural, subset_crd_name
from controlplane.gatewayapi import GatewayRoute, attached, covers, route_problems, warnings
from controlplane.policy import PolicyError, parse
from proxy.exchange import Peer, Request
from proxy.gatewayroutes import asked_for, choose, host_of
from proxy.http1 import RequestHead
from sandbox.resourcetable import table

GW = "gateway.networking.k8s.io/v1"


def gateway(name: str = "web-gateway", namespace: str = "shop", **spec):
    listeners = spec.pop("listeners", [{"name": "http", "port": 80, "protocol": "HTTP"}])
    return parse({"apiVersion": GW, "kind": "Gateway", "metadata": {"name": name, "namespace": namespace},
                  "spec": {"gatewayClassName": "istio", "listeners": listeners, **spec}}, "gw.yaml", 0)


def route(name: str, parent: dict | None = None, namespace: str = "shop", hostnames: tuple[str, ...] = (), rules=None):
    spec = {"parentRefs": [parent or {"name": "web-gateway"}],
            "rules": rules if rules is not None else [{"backendRefs": [{"name": name}]}]}
    if hostnames:
        spec["hostnames"] = list(hostnames)
    return parse({"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": namespace}, "spec": spec},
                 "route.yaml", 0)


@pytest.mark.parametrize(("doc", "field", "words"), [
    ({"listeners": [{"name": "https", "port": 443, "protocol": "HTTPS"}]}, "spec.listeners[0].tls.certificateRefs",
     "an HTTPS listener needs the Secret holding its certificate and key"),
    ({"listeners": [{"name": "https", "port": 443, "protocol": "HTTPS",
                     "tls": {"mode": "Passthrough", "certificateRefs": [{"name": "c"}]}}]}, "spec.listeners[0].tls.mode",
     "'Passthrough': passing TLS through needs protocol: TLS and a TLSRoute"),
    ({"listeners": [{"name": "https", "port": 443, "protocol": "HTTPS",
                     "tls": {"certificateRefs": [{"name": "c", "namespace": "istio-system"}]}}]},
     "spec.listeners[0].tls.certificateRefs[0].namespace", "a Secret of another namespace needs a ReferenceGrant"),
    ({"listeners": [{"name": "https", "port": 443, "protocol": "HTTPS",
                     "tls": {"certificateRefs": [{"name": "c", "kind": "ConfigMap"}]}}]},
     "spec.listeners[0].tls.certificateRefs[0].kind", "expected one of Secret"),
    ({"listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "tls": {"certificateRefs": [{"name": "c"}]}}]},
     "spec.listeners[0].tls", "an HTTP listener has no TLS"),
    ({"listeners": [{"name": "tls", "port": 443, "protocol": "TLS"}]}, "spec.listeners[0].protocol", "needs a TLSRoute"),
    ({"listeners": [{"name": "tcp", "port": 9000, "protocol": "TCP"}]}, "spec.listeners[0].protocol", "HTTP requests only"),
    ({"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}, {"name": "http", "port": 8080, "protocol": "HTTP"}]},
     "spec.listeners[1].name", "'http' names another listener too"),
    ({"gatewayClassName": "nginx"}, "spec.gatewayClassName", "expected one of istio, meshdojo, got 'nginx'"),
    ({"addresses": [{"type": "Hostname", "value": "istio-ingressgateway.istio-system.svc.cluster.local"}]}, "spec.addresses",
     "served by the ingress gateway of its namespace"),
    ({"listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                     "allowedRoutes": {"namespaces": {"from": "Selector"}}}]}, "spec.listeners[0].allowedRoutes.namespaces.from",
     "expected one of Same, All"),
    ({"listeners": []}, "spec.listeners", "expected a non-empty list of listeners"),
])
def test_what_a_gateway_cannot_say_here_is_refused_by_field(doc, field, words):
    spec = {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}], **doc}
    with pytest.raises(PolicyError) as refused:
        parse({"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "g"}, "spec": spec}, "gw.yaml", 0)
    assert refused.value.field == field and words in refused.value.message, refused.value


def test_istios_own_gateway_is_its_own_kind_and_another_group_gets_the_pointer():  # tests/test_istio_gateway.py
    with pytest.raises(PolicyError) as refused:
        parse({"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g"}, "spec": {}}, "gw.yaml", 0)
    assert (refused.value.field, refused.value.message) == ("spec.servers", "required field is missing")  # Istio's, read as such
    with pytest.raises(PolicyError) as refused:
        parse({"apiVersion": "gateway.example.io/v1", "kind": "Gateway", "metadata": {"name": "g"}, "spec": {}}, "gw.yaml", 0)
    assert "Gateway API's with apiVersion gateway.networking.k8s.io/v1" in refused.value.message


def test_a_parent_ref_without_a_kind_is_a_gateway_as_gateway_api_defaults():
    assert route("r").spec.gateway.name == "web-gateway" and route("r").target is None
    assert route("r", {"name": "reviews", "group": ""}).spec.service == "reviews"  # the core group: a Service
    assert route("r", {"kind": "Service", "name": "reviews"}).spec.gateway is None
    other = route("r", {"name": "shared", "namespace": "infra", "sectionName": "http", "port": 80}).spec.gateway
    assert (other.namespace, other.name, other.section, other.port) == ("infra", "shared", "http", 80)  # another namespace's
    for parent, rules, field, words in (
            ({"kind": "Service", "name": "reviews", "sectionName": "http"}, None, "spec.parentRefs[0].sectionName", "a Service"),
            ({"name": "g", "group": "policy.meshdojo.dev", "kind": "Gateway"}, None, "spec.parentRefs[0].group",
             "gateway.networking.k8s.io"),
            ({"name": "g"}, [{"matches": [{"path": {"value": "/x"}}]}], "spec.rules[0].backendRefs", "name it in backendRefs")):
        with pytest.raises(PolicyError) as refused:
            route("r", parent, rules=rules)
        assert refused.value.field == field and words in refused.value.message, refused.value


def test_hosts_cover_as_gateway_api_says():
    assert covers("*.example.com", "a.example.com") and covers("*.example.com", "a.b.example.com")
    assert covers("*.example.com", "*.b.example.com") and not covers("*.example.com", "example.com")
    assert covers("a.example.com", "a.example.com") and not covers("a.example.com", "b.example.com")


def test_which_routes_attach_to_which_listeners_for_which_hosts():
    gw = gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"},
                            {"name": "open", "port": 8080, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}])
    routes = [route("any"), route("one", hostnames=("www.example.com", "www.example.org")),
              route("http-only", {"name": "web-gateway", "sectionName": "http"}),
              route("wide", {"name": "web-gateway", "sectionName": "http"}, hostnames=("*.shop.example.com",)),
              route("elsewhere", {"name": "web-gateway", "namespace": "shop"}, namespace="blog"),
              route("elsewhere-http", {"name": "web-gateway", "namespace": "shop", "sectionName": "http"}, namespace="blog"),
              route("no-listener", {"name": "web-gateway", "sectionName": "https"}),
              route("wrong-port", {"name": "web-gateway", "port": 443}),
              route("no-host", {"name": "web-gateway", "sectionName": "http"}, hostnames=("www.example.org",)),
              route("other-gateway", {"name": "nope"})]
    found = {g.route.name: g.hostnames for g in attached([gw, *routes], "shop")}
    assert found == {"any": (), "one": ("www.example.com", "www.example.org"), "http-only": ("*.example.com",), "wide": ("*.shop.example.com",), "elsewhere": ()}
    assert attached([gw, *routes], "blog") == ()  # served by the gateway of the Gateway's namespace only
    assert warnings([gw, *routes], routes[6], lambda ns, name: False) == [
        "HTTPRoute shop/no-listener: no listener of Gateway shop/web-gateway takes it (check sectionName, port, the listeners' "
        "hostname against the route's hostnames, and allowedRoutes.namespaces.from for a route of another namespace)"]
    assert [w.split(":")[0] for w in warnings([gw, *routes], gw, lambda ns, name: False)] == [
        "HTTPRoute blog/elsewhere-http", "HTTPRoute shop/no-host", "HTTPRoute shop/no-listener", "HTTPRoute shop/wrong-port"]
    assert [p.split(":")[0] for p in route_problems([gw, *routes], lambda ns, name: False)] == [  # meshdojo check's
        "HTTPRoute blog/elsewhere-http", "HTTPRoute shop/no-host", "HTTPRoute shop/no-listener", "HTTPRoute shop/other-gateway",
        "HTTPRoute shop/wrong-port"]
    reviews = route("reviews", {"name": "reviews"})  # meant the Service: Gateway API's default kind is Gateway
    assert warnings([gw, reviews], reviews, lambda ns, name: (ns, name) == ("shop", "reviews")) == [
        "HTTPRoute shop/reviews: Gateway shop/reviews does not exist (yet): the route serves nothing until it does; a parentRef "
        "without a kind names a Gateway (Gateway API's default): for the Service reviews's traffic inside the mesh, write "
        '{kind: Service, group: "", name: reviews}']


def request(target: str, host: str = "", method: str = "GET") -> Request:
    headers = [(b"host", host.encode())] if host else []
    req = Request(RequestHead(method, target, "HTTP/1.1", headers, True, False, 0), None,  # type: ignore[arg-type]
                  Peer("127.0.0.1:1", False, None))
    req.path = target if target.startswith("/") else "/" + target.partition("://")[2].partition("/")[2]
    return req


def test_the_most_specific_host_decides_then_the_rules_in_order():
    rules = [{"matches": [{"path": {"type": "PathPrefix", "value": "/status"}}], "backendRefs": [{"name": "httpbin"}]}]
    routes = (GatewayRoute(route("catch-all"), "shop/web-gateway", ()),
              GatewayRoute(route("wild", hostnames=("*.example.com",)), "shop/web-gateway", ("*.example.com",)),
              GatewayRoute(route("exact", hostnames=("httpbin.example.com",), rules=rules), "shop/web-gateway", ("httpbin.example.com",)))
    rng = random.Random(1)

    def taken(target: str, host: str) -> str | None:
        chosen = choose(routes, host_of(asked_for(request(target, host))), request(target, host), rng)
        return chosen[0].route.name if chosen else None

    assert taken("/status/200", "HTTPBIN.example.com:8080") == "exact"  # the port and case do not count
    assert taken("/headers", "httpbin.example.com") == "wild"  # the exact host's rules do not match: the next route's
    assert taken("/headers", "www.example.com") == "wild"
    assert taken("/headers", "example.com") == "catch-all"
    assert taken("http://httpbin.example.com/status/1", "ignored") == "exact"  # an absolute target's host counts
    assert choose(routes[2:], "www.example.com", request("/status", "www.example.com"), rng) is None  # nothing matches: 404


def test_get_shows_a_gateways_listeners_and_a_routes_gateway():
    items = [{"document": d.document, "expiresAt": None}
             for d in (gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"}]),
                       route("httpbin", {"name": "web-gateway", "sectionName": "http"}, hostnames=("httpbin.example.com",)))]
    rows = table(items)
    assert rows[1][3:5] == ("http:80 *.example.com", "class istio, served by the namespace's ingress gateway"), rows
    assert rows[2][3:5] == ("gateway/web-gateway:http", "1 rule for httpbin.example.com"), rows


def test_the_gateway_crd_is_named_as_gateway_apis():
    assert plural("Gateway") == "gateways" and plural("Telemetry") == "telemetries" and plural("BackendTLSPolicy") == "backendtlspolicies"
    assert subset_crd_name("Gateway") == "gateways.gateway.networking.k8s.io"


def test_get_gateway_reads_as_kubectl_get_gateway():
    from sandbox.gatewaystatus import rows, served

    gw = gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}])
    secure = gateway(name="secure", listeners=[{"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "shop.example.com",
                                                "tls": {"certificateRefs": [{"name": "shop-credential"}]}}])
    lonely = gateway(name="lonely", namespace="blog")
    theirs = gateway(name="bookinfo-gateway", namespace="other", listeners=[
        {"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "c"}]}}])  # on a cluster of your own
    status = {"gateways": [{"demo": "shop", "namespace": "shop", "url": "http://127.0.0.1:8080/", "https": "https://127.0.0.1:8443/"},
                           {"demo": "other", "namespace": "other", "url": None,
                            "reach": "kubectl -n other port-forward svc/other-ingress 8081:80",
                            "httpsReach": "kubectl -n other port-forward svc/other-ingress 8444:443"}]}
    assert served(status) == {"shop": ("http://127.0.0.1:8080/", "https://127.0.0.1:8443/"),
                              "other": ("kubectl -n other port-forward svc/other-ingress 8081:80",
                                        "kubectl -n other port-forward svc/other-ingress 8444:443")}
    items = [{"document": r.document} for r in (route("one"), route("two"), route("elsewhere", {"name": "nope"}),
                                                 route("tls", {"name": "secure"}))]
    assert rows([{"document": gw.document}, {"document": secure.document}, {"document": lonely.document},
                 {"document": theirs.document}], items, served(status)) == [
        ("NAMESPACE", "NAME", "CLASS", "ADDRESS", "PROGRAMMED", "ROUTES", "LISTENERS"),
        ("shop", "web-gateway", "istio", "http://127.0.0.1:8080/", "True", "2", "http:80"),
        ("shop", "secure", "istio", "https://127.0.0.1:8443/", "True", "1", "https:443/HTTPS shop.example.com"),
        ("blog", "lonely", "istio", "-", "False (no ingress gateway runs in blog)", "0", "http:80"),
        # reached as Istio's tasks reach it: a port-forward to the Service made for this Gateway, to its listeners' ports
        ("other", "bookinfo-gateway", "istio", "kubectl -n other port-forward svc/bookinfo-gateway-istio 8080:80,"
         "kubectl -n other port-forward svc/bookinfo-gateway-istio 8443:443", "True", "0", "http:80,https:443/HTTPS")]


def test_a_gateways_status_on_a_cluster_as_gateway_api_controllers_write_it():
    from controlplane.kube.gatewaystatus import desired, ingress_gateways

    gw = gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP"},
                            {"name": "shop", "port": 80, "protocol": "HTTP", "hostname": "shop.example.com"}])
    routes = [route("all"), route("http-only", {"name": "web-gateway", "sectionName": "http"}),
              route("blog", hostnames=("blog.example.org",))]
    services = {("shop", "shop-ingress"): {"metadata": {"labels": {"meshdojo.dev/gateway": "shop"}}},
                ("shop", "web"): {"metadata": {"labels": {"app": "web"}}}}
    served = ingress_gateways(services, lambda ns, name: True)
    assert served == {"shop": ("shop-ingress.shop.svc.cluster.local", True)}
    status = desired([gw, *routes], {("shop", "web-gateway"): 3}, served, "2026-11-28T18:00:00Z")[("shop", "web-gateway")]
    assert status["addresses"] == [{"type": "Hostname", "value": "shop-ingress.shop.svc.cluster.local"}]
    programmed = status["conditions"][1]
    assert (programmed["type"], programmed["status"], programmed["reason"], programmed["observedGeneration"]) == (
        "Programmed", "True", "Programmed", 3)
    assert [(item["name"], item["attachedRoutes"]) for item in status["listeners"]] == [("http", 3), ("shop", 1)]
    pending = desired([gw], {}, ingress_gateways(services, lambda ns, name: False), "t")[("shop", "web-gateway")]
    assert pending["conditions"][1]["status"] == "False" and pending["conditions"][1]["reason"] == "Pending"
    alone = desired([gateway(namespace="blog")], {}, served, "t")[("blog", "web-gateway")]
    assert alone["addresses"] == [] and alone["conditions"][1]["reason"] == "NoResources"
    assert "no ingress gateway runs in namespace blog" in alone["conditions"][1]["message"]


def test_a_condition_keeps_its_time_until_its_status_changes():
    from controlplane.kube.gatewaystatus import desired
    from controlplane.statusbook import keep_times

    gw = gateway()
    served = {"shop": ("shop-ingress.shop.svc.cluster.local", True)}
    first = desired([gw], {}, served, "t1")[("shop", "web-gateway")]
    more = desired([gw, route("all")], {}, served, "t2")[("shop", "web-gateway")]  # a route attached: nothing transitioned
    kept = keep_times(more, first)
    assert kept["listeners"][0]["attachedRoutes"] == 1
    assert {c["lastTransitionTime"] for c in kept["conditions"] + kept["listeners"][0]["conditions"]} == {"t1"}
    down = keep_times(desired([gw], {}, {"shop": (served["shop"][0], False)}, "t3")[("shop", "web-gateway")], kept)
    assert [(c["type"], c["status"], c["lastTransitionTime"]) for c in down["conditions"]] == [
        ("Accepted", "True", "t1"), ("Programmed", "False", "t3")]


def test_an_https_listeners_status_says_whether_its_secret_is_there():
    from controlplane.kube.gatewaystatus import desired

    gw = gateway(listeners=[{"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "cred"}]}},
                            {"name": "http", "port": 80, "protocol": "HTTP"}])
    served = {"shop": ("shop-ingress.shop.svc.cluster.local", True)}

    def listeners(has_secret) -> dict:
        status = desired([gw], {}, served, "2026-11-29T02:00:00Z", has_secret)[("shop", "web-gateway")]
        return {item["name"]: {c["type"]: (c["status"], c["reason"]) for c in item["conditions"]} for item in status["listeners"]}

    missing = listeners(lambda ns, name: None)
    assert missing["https"]["ResolvedRefs"] == ("False", "InvalidCertificateRef") and missing["https"]["Programmed"] == ("False", "Invalid")
    assert missing["http"]["ResolvedRefs"] == ("True", "ResolvedRefs")  # no Secret to resolve
    plain, with_ca = SimpleNamespace(ca_pem=None), SimpleNamespace(ca_pem="-----BEGIN CERTIFICATE-----")
    there = listeners(lambda ns, name: plain if (ns, name) == ("shop", "cred") else None)
    assert there["https"]["ResolvedRefs"] == ("True", "ResolvedRefs") and there["https"]["Programmed"] == ("True", "Programmed")
    # Istio's tls-terminate-mode MUTUAL: the Secret must hold the clients' CA too
    gw = gateway(listeners=[{"name": "https", "port": 443, "protocol": "HTTPS", "tls": {
        "certificateRefs": [{"name": "cred"}], "options": {"gateway.istio.io/tls-terminate-mode": "MUTUAL"}}}])
    assert listeners(lambda ns, name: plain)["https"]["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert listeners(lambda ns, name: with_ca)["https"]["ResolvedRefs"] == ("True", "ResolvedRefs")


def test_a_listeners_terminate_mode_is_istios_option_or_refused_naming_it():
    def listener(options: dict) -> dict:
        return {"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "cred"}], "options": options}}

    for mode in ("MUTUAL", "OPTIONAL_MUTUAL", "SIMPLE"):
        assert gateway(listeners=[listener({"gateway.istio.io/tls-terminate-mode": mode})]).spec.listeners[0].mode == mode
    without = listener({})
    del without["tls"]["options"]
    assert gateway(listeners=[without]).spec.listeners[0].mode == "SIMPLE"
    for options, words in (({"gateway.istio.io/tls-terminate-mode": "ISTIO_MUTUAL"}, "clients from outside the mesh do not have"),
                           ({"gateway.istio.io/tls-terminate-mode": "STRICT"}, "'STRICT': expected one of SIMPLE, MUTUAL"),
                           ({"gateway.istio.io/tls-terminate-mod": "MUTUAL"}, "not an option meshdojo reads")):
        with pytest.raises(PolicyError) as refused:
            gateway(listeners=[listener(options)])
        assert "spec.listeners[0].tls.options." in str(refused.value) and words in str(refused.value), refused.value


def test_each_gateway_gets_a_service_named_as_istio_names_it_selecting_the_namespaces_gateway():
    from controlplane.injector import GATEWAY_HTTPS_PORT, OUTBOUND_PORT
    from controlplane.kube.gatewayservices import desired, gateway_selectors

    gw = gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP"},
                            {"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "cred"}]}},
                            {"name": "other", "port": 80, "protocol": "HTTP", "hostname": "b.example.com"}])
    services = {("shop", "shop-ingress"): {"metadata": {"labels": {"meshdojo.dev/gateway": "shop"}}, "spec": {"selector": {"app": "shop-ingress"}}},
                ("shop", "web"): {"metadata": {}, "spec": {"selector": {"app": "web"}}}}
    selectors = gateway_selectors(services)
    assert selectors == {"shop": {"app": "shop-ingress"}}
    made = desired([gw], lambda ns, name: "uid-1", selectors)
    service = made[("shop", "web-gateway-istio")]
    assert service["spec"]["selector"] == {"app": "shop-ingress"} and service["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http-80", 80, OUTBOUND_PORT), ("https-443", 443, GATEWAY_HTTPS_PORT)]  # one port per listener port
    assert service["metadata"]["ownerReferences"] == [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                                                      "name": "web-gateway", "uid": "uid-1", "controller": True}]
    assert desired([gw], lambda ns, name: None, selectors) == {}  # the cluster's object not known yet: no owner to name
    # Istio's annotation picks the Service's type (its Getting Started annotates ClusterIP; NodePort on a kind cluster)
    typed = parse({**gw.document, "metadata": {**gw.document["metadata"], "annotations": {"networking.istio.io/service-type": "NodePort"}}},
                  "gw.yaml", 0)
    assert desired([typed], lambda ns, name: "uid-1", selectors)[("shop", "web-gateway-istio")]["spec"]["type"] == "NodePort"
    with pytest.raises(PolicyError) as refused:
        parse({**gw.document, "metadata": {**gw.document["metadata"], "annotations": {"networking.istio.io/service-type": "External"}}},
              "gw.yaml", 0)
    assert refused.value.field == "metadata.annotations.networking.istio.io/service-type" and "'External': expected one of ClusterIP, " \
        "NodePort, LoadBalancer" in refused.value.message
    assert desired([gw], lambda ns, name: "uid-1", {}) == {}  # no ingress gateway in the namespace
