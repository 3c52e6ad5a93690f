"""Kubernetes' Ingress as Istio serves it (controlplane/ingress.py): its class, the routes its
rules make and the order the gateway tries them in, TLS for its hosts, and every refusal
naming the field."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from controlplane import ingress
from controlplane.gatewayapi import attached, certificate_problems, listener_for, secret_keys, tls_listeners
from controlplane.policy import PolicyError, Resource, parse
from proxy.gatewayroutes import asked_for, choose, host_of
from sandbox.resourcetable import table
from tests.test_gatewayapi import request


def backend(name: str) -> dict[str, Any]:
    return {"service": {"name": name, "port": {"number": 80}}}


TASK = {  # Istio's task, as it writes it (httpbin), and a second rule for any host
    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ingress", "namespace": "shop"},
    "spec": {"ingressClassName": "istio", "rules": [
        {"host": "httpbin.example.com", "http": {"paths": [
            {"path": "/status", "pathType": "Prefix", "backend": backend("httpbin")},
            {"path": "/status/418", "pathType": "Exact", "backend": backend("teapot")},
            {"path": "/status/4", "pathType": "Prefix", "backend": backend("fours")},
            {"path": "/delay/*", "pathType": "ImplementationSpecific", "backend": backend("slow")},
            {"path": "/headers", "pathType": "ImplementationSpecific", "backend": backend("headers")}]}},
        {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend("web")}]}}]},
}


def read(doc: dict[str, Any]) -> Resource:
    return parse(doc, "ingress.yaml", 0)


def with_spec(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(TASK)
    doc["spec"].update(changes)
    return {**doc, "spec": {k: v for k, v in doc["spec"].items() if v is not None}}


def test_the_rules_become_routes_exact_paths_first_then_the_longest_prefix():
    resource = read(TASK)
    first, second = resource.spec.routes
    assert (first.name, first.spec.hostnames, second.name, second.spec.hostnames) == ("ingress.0", ("httpbin.example.com",), "ingress.1", ())
    assert [rule.describe() for rule in first.spec.rules] == [
        "/status/418 -> teapot", "/headers -> headers", "prefix /status/4 -> fours", "prefix /status -> httpbin", "prefix /delay -> slow"]
    assert [r.name for r in read(with_spec(rules=TASK["spec"]["rules"][:1])).spec.routes] == ["ingress"]  # one rule: its name
    defaulted = read(with_spec(rules=None, defaultBackend=backend("web")))
    assert [(r.name, [x.describe() for x in r.spec.rules]) for r in defaulted.spec.routes] == [("ingress.default", ["everything -> web"])]
    assert ingress.path_of("/*", "ImplementationSpecific") == ("/", "PathPrefix")  # Istio's reading of a trailing /*
    assert ingress.path_of("/a.*", "ImplementationSpecific") == ("/a", "PathPrefix")


def test_the_gateway_takes_the_most_specific_host_then_the_first_path_that_matches():
    routes = attached([read(with_spec(defaultBackend=backend("fallback")))], "shop")
    assert {(g.route.name, g.protocol, g.parent_kind, g.gateway) for g in routes} == {
        ("ingress.0", "HTTP", "Ingress", "shop/ingress"), ("ingress.1", "HTTP", "Ingress", "shop/ingress"),
        ("ingress.default", "HTTP", "Ingress", "shop/ingress")}  # no tls: the HTTP port only
    rng = random.Random(1)

    def taken(target: str, host: str = "httpbin.example.com") -> str | None:
        chosen = choose(routes, host_of(asked_for(request(target, host))), request(target, host), rng)
        return chosen[1].backend if chosen else None

    assert taken("/status/418") == "teapot"
    assert taken("/status/4/x") == "fours"  # the longer prefix first ...
    assert taken("/status/4") == "fours"
    assert taken("/status/404") == "httpbin"  # ... by whole segments
    assert taken("/statusx") == "web"  # not this host's: the rule for any host
    assert taken("/delay/3") == "slow" and taken("/headers?x=1") == "headers" and taken("/headers/x") == "web"
    assert taken("/", "other.example.com") == "web"
    only_host = attached([read(with_spec(rules=TASK["spec"]["rules"][:1]))], "shop")
    assert choose(only_host, "httpbin.example.com", request("/anything", "httpbin.example.com"), rng) is None  # 404
    assert choose(only_host, "other.example.com", request("/status", "other.example.com"), rng) is None
    assert attached([read(TASK)], "elsewhere") == ()  # another namespace's gateway does not serve it


def test_tls_serves_its_hosts_on_the_tls_port_with_the_secret():
    secured = read(with_spec(tls=[{"hosts": ["httpbin.example.com"], "secretName": "httpbin-credential"}]))
    routes = attached([secured], "shop")
    assert sorted((g.route.name, g.protocol, g.hostnames) for g in routes) == [
        ("ingress.0", "HTTP", ("httpbin.example.com",)), ("ingress.0", "HTTPS", ("httpbin.example.com",)),
        ("ingress.1", "HTTP", ()), ("ingress.1", "HTTPS", ("httpbin.example.com",))]  # any host: at the tls hosts
    listeners = tls_listeners([secured], "shop")
    assert [(x.hostname, x.secret, x.gateway, x.parent_kind) for x in listeners] == [
        ("httpbin.example.com", "httpbin-credential", "shop/ingress", "Ingress")]
    assert listener_for("httpbin.example.com", listeners) is listeners[0] and listener_for("other.example.com", listeners) is None
    assert secret_keys([secured]) == {("shop", "httpbin-credential")}
    assert certificate_problems([secured], lambda ns, name: None) == [
        "Ingress shop/ingress: spec.tls[0]: Secret shop/httpbin-credential is not there, or is not a valid TLS Secret: TLS "
        "handshakes for this listener fail (meshdojo create secret tls httpbin-credential --cert FILE --key FILE -n shop)"]
    assert certificate_problems([secured], lambda ns, name: object.__new__(type("S", (), {"ca_pem": ""}))) == []
    any_host = read(with_spec(tls=[{"secretName": "wildcard"}]))
    assert [x.hostname for x in tls_listeners([any_host], "shop")] == [None]
    assert {(g.route.name, g.protocol, g.hostnames) for g in attached([any_host], "shop") if g.protocol == "HTTPS"} == {
        ("ingress.0", "HTTPS", ("httpbin.example.com",)), ("ingress.1", "HTTPS", ())}


@pytest.mark.parametrize(("spec", "annotations", "field", "said"), [
    ({"ingressClassName": None}, {}, "spec.ingressClassName", "no class: which controller serves this Ingress is not said"),
    ({"ingressClassName": "nginx"}, {}, "spec.ingressClassName", "'nginx' is another controller's class"),
    ({"ingressClassName": None}, {"kubernetes.io/ingress.class": "nginx"}, "metadata.annotations.kubernetes.io/ingress.class",
     "'nginx' is another controller's class"),
    ({}, {"kubernetes.io/ingress.class": "nginx"}, "metadata.annotations.kubernetes.io/ingress.class", "contradicts"),
    ({"rules": [{"host": "a.example.com"}]}, {}, "spec.rules[0].http", "a rule without http.paths routes nothing"),
    ({"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket", "name": "b"}}}]}}]},
     {}, "spec.rules[0].http.paths[0].backend.resource", "unknown field (expected one of: service)"),
    ({"rules": [{"http": {"paths": [{"path": "x", "pathType": "Prefix", "backend": backend("web")}]}}]}, {},
     "spec.rules[0].http.paths[0].path", "expected a path that starts with /"),
    ({"rules": [{"http": {"paths": [{"path": "/", "pathType": "Regex", "backend": backend("web")}]}}]}, {},
     "spec.rules[0].http.paths[0].pathType", "Exact"),
    ({"rules": None}, {}, "spec", "neither rules nor defaultBackend"),
    ({"rules": None, "defaultBackend": {"resource": {"kind": "Bucket", "name": "b"}}}, {}, "spec.defaultBackend.resource",
     "a resource backend"),
])
def test_what_is_refused_is_named(spec, annotations, field, said):
    doc = with_spec(**spec)
    if annotations:
        doc["metadata"]["annotations"] = annotations
    with pytest.raises(PolicyError) as refused:
        read(doc)
    assert refused.value.field == field and said in refused.value.message, refused.value


def test_the_older_class_annotation_is_read_and_only_our_classes_are_ours():
    doc = with_spec(ingressClassName=None)
    doc["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "istio"}
    assert read(doc).spec.class_name == "istio"
    assert ingress.is_ours(doc) and ingress.is_ours(TASK) and not ingress.is_ours(with_spec(ingressClassName="nginx"))
    assert not ingress.is_ours(with_spec(ingressClassName=None))  # no class: the cluster's default controller's


def test_get_shows_an_ingress_as_kubectl_does_its_hosts_and_ports():
    items = [{"document": read(d).document, "expiresAt": None}
             for d in (TASK, with_spec(tls=[{"secretName": "c"}], rules=TASK["spec"]["rules"][:1]))]
    rows = table(items)
    assert rows[1][3:5] == ("httpbin.example.com,*", "class istio, ports 80, served by the namespace's ingress gateway"), rows
    assert rows[2][3:5] == ("httpbin.example.com", "class istio, ports 80, 443, served by the namespace's ingress gateway"), rows
