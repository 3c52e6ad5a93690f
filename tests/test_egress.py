"""ServiceEntry and Sidecar as documents (every refusal names the field), and the egress
decision as a pure function of the host, the port and what applies."""

from __future__ import annotations

import pytest

from controlplane.egress import NamedEntry, decide
from controlplane.policy import POLICY_API, PolicyError, parse
from controlplane.selection import Workload, applicable

ENTRY = {"hosts": ["httpbin.example"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}], "resolution": "DNS"}


def resource(kind: str, spec: dict, ns: str = "shop", name: str = "x"):
    return parse({"apiVersion": POLICY_API, "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}, "egress.yaml", 0)


def entry(spec: dict, ns: str = "shop", name: str = "x") -> NamedEntry:
    return NamedEntry(ns, name, resource("ServiceEntry", spec, ns, name).spec)


@pytest.mark.parametrize("change, field, words", [
    ({"hosts": []}, "spec.hosts", "expected a non-empty list of host names"),
    ({"hosts": ["HTTPBIN.example"]}, "spec.hosts[0]", "expected a lower-case host name"),
    ({"hosts": ["httpbin.example", "legacy"]}, "spec.hosts[1]", "'legacy' is a cluster-local name"),
    ({"hosts": ["legacy.shop.svc.cluster.local"]}, "spec.hosts[0]", "is a cluster-local name"),
    ({"ports": [{"number": 443, "name": "https", "protocol": "GRPC"}]}, "spec.ports[0].protocol", "expected one of HTTP, HTTPS, TLS"),
    ({"ports": [{"number": 80, "name": "a"}, {"number": 80, "name": "b"}]}, "spec.ports", "two ports with the number 80"),
    ({"resolution": "STATIC"}, "spec.endpoints", "resolution STATIC needs endpoints"),
    ({"resolution": "STATIC", "endpoints": [{"address": "db.internal"}]}, "spec.endpoints[0].address", "is not an IP address"),
    ({"resolution": "NONE", "endpoints": [{"address": "10.0.0.1"}]}, "spec.endpoints", "resolution NONE connects to the host asked for"),
    ({"endpoints": [{"address": "a.example", "ports": {"web": 8080}}]}, "spec.endpoints[0].ports.web", "no port named 'web'"),
    ({"endpoints": [{"address": "a.example", "ports": {"http": 0}}]}, "spec.endpoints[0].ports.http", "expected a port"),
    ({"hosts": ["*.example.com"]}, "spec.resolution", "a wildcard host ('*.example.com') has no one name to look up"),
    ({"location": "MESH_INTERNAL"}, "spec.location", "expected one of MESH_EXTERNAL"),
])
def test_a_service_entry_is_refused_with_its_field(change, field, words):
    with pytest.raises(PolicyError) as refused:
        resource("ServiceEntry", {**ENTRY, **change})
    assert refused.value.field == field and words in refused.value.message, refused.value


def test_istios_own_kinds_are_read_as_ours_and_linkerds_point_to_them():
    for kind, required in (("ServiceEntry", "spec.hosts"), ("Sidecar", "spec.outboundTrafficPolicy")):  # tests/test_istio_security.py
        with pytest.raises(PolicyError) as refused:
            parse({"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": {"name": "x"}, "spec": {}}, "f.yaml", 0)
        assert (refused.value.field, refused.value.message) == (required, "required field is missing")
    with pytest.raises(PolicyError, match="Sidecar .*outboundTrafficPolicy.mode: REGISTRY_ONLY is Linkerd's trafficPolicy: Deny"):
        parse({"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "EgressNetwork", "metadata": {"name": "x"}, "spec": {}}, "f.yaml", 0)
    with pytest.raises(PolicyError) as refused:
        resource("Sidecar", {"outboundTrafficPolicy": {"mode": "DENY"}})
    assert refused.value.field == "spec.outboundTrafficPolicy.mode"


def test_the_decision():
    dns = entry(ENTRY, name="httpbin")
    static = entry({"hosts": ["db.example"], "ports": [{"number": 80, "name": "http", "targetPort": 8080}], "resolution": "STATIC",
                    "endpoints": [{"address": "10.0.0.1"}, {"address": "10.0.0.2", "ports": {"http": 9090}}]}, "data", "db")
    wild = entry({"hosts": ["*.wiki.example"], "ports": [{"number": 80, "name": "http"}]}, name="wiki")
    entries = [wild, static, dns]
    found = decide("httpbin.example", None, entries, "REGISTRY_ONLY", "Sidecar shop/x")
    assert (found.verdict, found.label, found.namespace, found.targets) == ("entry", "httpbin.example", "shop", (("httpbin.example", 80),))
    found = decide("db.example", 80, entries, "REGISTRY_ONLY", "")
    assert found.targets == (("10.0.0.1", 8080), ("10.0.0.2", 9090)) and found.why == "ServiceEntry data/db"
    found = decide("en.wiki.example", 80, entries, "REGISTRY_ONLY", "")
    assert (found.label, found.targets) == ("*.wiki.example", (("en.wiki.example", 80),))  # the label: the entry's host, bounded
    assert decide("wiki.example", 80, entries, "REGISTRY_ONLY", "").verdict == "blocked"  # *.x is not x itself
    blocked = decide("httpbin.example", 8080, entries, "REGISTRY_ONLY", "Sidecar shop/x")
    assert (blocked.verdict, blocked.label, blocked.targets) == ("blocked", "BlackHoleCluster", ())
    assert "ServiceEntry shop/httpbin names httpbin.example but not port 8080: add it to spec.ports" in blocked.why
    # Istio's tasks list an HTTPS port too: accepted, never a plain request's (the app calls https:// directly)
    secure = entry({"hosts": ["edition.cnn.com"], "ports": [{"number": 80, "name": "http-port", "protocol": "HTTP", "targetPort": 443},
                                                            {"number": 443, "name": "https-port", "protocol": "HTTPS"}]}, name="cnn")
    assert decide("edition.cnn.com", 80, [secure], "REGISTRY_ONLY", "").targets == (("edition.cnn.com", 443),)
    blocked = decide("edition.cnn.com", 443, [secure], "REGISTRY_ONLY", "")
    assert blocked.verdict == "blocked" and "ServiceEntry shop/cnn's port 443 is not HTTP: an app calls https:// hosts directly" in blocked.why
    passed = decide("other.example", 8080, entries, "ALLOW_ANY", "the default")
    assert (passed.verdict, passed.label, passed.namespace, passed.targets) == ("passthrough", "PassthroughCluster", "", (("other.example", 8080),))


def test_the_most_specific_sidecar_wins_and_two_at_one_level_conflict():
    web = Workload("shop", "web", "web", "web-0", {"app": "web"})
    mesh = resource("Sidecar", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}, "meshdojo-system", "mesh")
    ns = resource("Sidecar", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}, "shop", "ns")
    mine = resource("Sidecar", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}, "workloadSelector": {"labels": {"app": "web"}}},
                    "shop", "web")
    other = resource("Sidecar", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}, "workloadSelector": {"labels": {"app": "api"}}},
                     "shop", "api")
    assert applicable([mesh], web, {})["Sidecar"].chosen is mesh
    assert applicable([mesh, ns, other], web, {})["Sidecar"].chosen is ns
    assert applicable([mesh, ns, mine, other], web, {})["Sidecar"].chosen is mine
    tied = applicable([ns, resource("Sidecar", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}, "shop", "also")], web, {})
    assert tied["Sidecar"].conflict == ("shop/also", "shop/ns")


def test_a_cluster_local_name_never_leaves_the_mesh():
    """A mistyped Service name stays an unknown service: it is not looked up in anyone's DNS."""
    from proxy.egress import leaves_the_mesh

    assert [h for h in ("emoj", "emoji.emojivoto.svc", "emoji.emojivoto.svc.cluster.local") if leaves_the_mesh(h)] == []
    assert all(leaves_the_mesh(h) for h in ("httpbin.org", "api.example.com", "127.0.0.1", "::1", "localhost"))


def test_a_route_on_a_service_entry():
    def route(parent: dict):
        return parse({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "shop"},
                      "spec": {"parentRefs": [parent], "rules": [{"timeouts": {"request": "3s"}}]}}, "route.yaml", 0)

    parsed = route({"kind": "ServiceEntry", "group": "networking.istio.io", "name": "httpbin"})
    assert (parsed.spec.entry, parsed.spec.service, parsed.target) == ("httpbin", None, None)
    assert route({"kind": "Service", "name": "web"}).spec.entry is None
    for parent, words in (({"kind": "ServiceEntry", "name": "httpbin"}, "a ServiceEntry parent's group is policy.meshdojo.dev"),
                          ({"kind": "Service", "group": "policy.meshdojo.dev", "name": "web"}, "a Service parent's group is \"\""),
                          ({"kind": "ServiceEntry", "group": "example.com", "name": "x"}, "expected one of")):
        with pytest.raises(PolicyError) as refused:
            route(parent)
        assert refused.value.field.startswith("spec.parentRefs[0].group") and words in refused.value.message, refused.value


def test_the_addresses_of_every_entry_are_kept_by_the_balancer_and_the_breakers():
    from proxy.egress import entry_targets

    http = [{"number": 80, "name": "http", "protocol": "HTTP"}]
    static = entry({"hosts": ["twice.example"], "ports": http, "resolution": "STATIC",
                    "endpoints": [{"address": "127.0.0.1", "ports": {"http": 9001}}, {"address": "127.0.0.2"}]})
    by_name = entry({"hosts": ["a.example", "*.b.example"], "ports": http}, name="byname")
    assert entry_targets([static, by_name]) == {("127.0.0.1", 9001), ("127.0.0.2", 80), ("a.example", 80)}
