"""Istio's *Egress TLS Origination* task as Istio writes it: a DestinationRule for the
ServiceEntry's host whose ``portLevelSettings`` (or ``trafficPolicy``) ``tls: {mode: SIMPLE}`` has
the sidecar speak TLS to the host while the app speaks plain HTTP. Parsing, the refusals, the
lookup and ``check``'s finding (pure), then through a real proxy to a real HTTPS server whose CA
the proxy's "system" trusts ($SSL_CERT_FILE). (Gateway API's way: tests/test_backendtls.py.)"""

from __future__ import annotations

import asyncio
import copy
import json

import aiohttp
import pytest

from controlplane.istioegress import ClientTls, Origination, outside_the_mesh, tls_origination, unused_rules
from controlplane.policy import PolicyError, parse
from tests.meshkit import Mesh
from tests.test_backendtls import _https_files, https_server
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, fetch

NS = "emojivoto"
NETWORKING = "networking.istio.io/v1"


def rule(host: str = "edition.cnn.com", name: str = "edition-cnn-com", **spec) -> dict:
    """The task's DestinationRule: port 80 of the host over TLS the sidecar originates."""
    body = {"host": host, "trafficPolicy": {"portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "SIMPLE"}}]}}
    body.update(spec)
    return {"apiVersion": NETWORKING, "kind": "DestinationRule", "metadata": {"name": name, "namespace": NS}, "spec": body}


def entry(host: str = "edition.cnn.com", target: int = 443, **more) -> dict:
    return {"apiVersion": NETWORKING, "kind": "ServiceEntry", "metadata": {"name": host.replace(".", "-").strip("*-"), "namespace": NS},
            "spec": {"hosts": [host], "ports": [{"number": 80, "name": "http-port", "protocol": "HTTP", "targetPort": target},
                                                {"number": 443, "name": "https-port", "protocol": "HTTPS"}],
                     "resolution": "DNS", **more}}


def test_the_tasks_rule_is_a_host_outside_the_mesh_with_tls_on_port_80():
    spec = parse(rule(), "egress.yaml", 0).spec
    assert (spec.service, spec.outside, spec.subsets, spec.breaker) == ("edition.cnn.com", True, (), None)
    assert spec.origination == Origination(None, ((80, ClientTls("SIMPLE")),))
    assert spec.origination.at(80) == ClientTls("SIMPLE") and spec.origination.at(443) is None
    assert spec.describe() == "port 80: TLS originated"
    whole = parse(rule(trafficPolicy={"tls": {"mode": "SIMPLE", "sni": "edition.cnn.com"},
                                      "connectionPool": {"tcp": {"maxConnections": 1}}}), "t", 0).spec
    assert whole.origination.at(8080) == ClientTls("SIMPLE", "edition.cnn.com") and whole.breaker.pool.max_connections == 1
    # a Service's rule is what it was: the mesh's mutual TLS
    reviews = parse({**rule(host="reviews"), "spec": {"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}, "t", 0).spec
    assert (reviews.service, reviews.outside, reviews.origination) == ("reviews", False, None)


@pytest.mark.parametrize(("host", "outside"), [
    ("reviews", False), ("reviews.emojivoto", False), ("reviews.default.svc", False), ("reviews.default.svc.cluster.local", False),
    ("edition.cnn.com", True), ("httpbin.org", True), ("*.cnn.com", True), ("reviews.default", True),
])
def test_which_hosts_are_outside_the_mesh(host, outside):
    assert outside_the_mesh(host, NS) is outside


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda s: s.update(subsets=[{"name": "v1", "labels": {"version": "v1"}}]), "spec.subsets", "has no pods to group"),
    (lambda s: s["trafficPolicy"].update(loadBalancer={"simple": "RANDOM"}), "spec.trafficPolicy.loadBalancer", "not here for a host"),
    (lambda s: s["trafficPolicy"].update(tls={"mode": "ISTIO_MUTUAL"}), "spec.trafficPolicy.tls.mode", "has no mesh identity"),
    (lambda s: s["trafficPolicy"]["portLevelSettings"][0].update(tls={"mode": "DISABLE", "sni": "a.example"}),
     "spec.trafficPolicy.portLevelSettings[0].tls.sni", "set mode: SIMPLE"),
    (lambda s: s["trafficPolicy"]["portLevelSettings"].append({"port": {"number": 80}}),
     "spec.trafficPolicy.portLevelSettings[1].port.number", "port 80 has settings above already"),
    (lambda s: s["trafficPolicy"]["portLevelSettings"][0].update(connectionPool={}),
     "spec.trafficPolicy.portLevelSettings[0].connectionPool", "unknown field (expected one of: port, tls)"),
    (lambda s: s.update(host="Edition.CNN.com"), "spec.host", "in lower case"),
    (lambda s: s.update(host="reviews"), "spec.trafficPolicy.portLevelSettings", "a Service of the mesh has one port here"),
    (lambda s: s.update(host="reviews", trafficPolicy={"tls": {"mode": "SIMPLE"}}), "spec.trafficPolicy.tls.mode",
     "reached over the mesh's mutual TLS"),
    (lambda s: s.update(host="reviews", trafficPolicy={}, subsets=[{"name": "v1", "labels": {"v": "1"},
                                                                      "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]),
     "spec.subsets[0].trafficPolicy.tls.mode", "reached over the mesh's mutual TLS"),
])
def test_what_cannot_be_done_is_refused_naming_the_field(change, field, words):
    bad = copy.deepcopy(rule())
    change(bad["spec"])
    with pytest.raises(PolicyError) as refused:
        parse(bad, "egress.yaml", 0)
    assert refused.value.field == field and words in refused.value.message, refused.value


def test_a_ports_own_tls_then_the_hosts_an_exact_host_before_a_wildcard_and_disable_keeps_it_plain():
    exact = parse(rule(), "t", 0)
    wildcard = parse(rule(host="*.cnn.com", name="a-all-cnn", trafficPolicy={"tls": {"mode": "SIMPLE", "sni": "cnn.example"}}), "t", 1)
    assert tls_origination([wildcard, exact], "edition.cnn.com", 80) == (exact, "edition.cnn.com")
    assert tls_origination([wildcard, exact], "edition.cnn.com", 8080) == (wildcard, "cnn.example")  # exact says nothing for 8080
    assert tls_origination([wildcard, exact], "money.cnn.com", 80) == (wildcard, "cnn.example")
    assert tls_origination([wildcard, exact], "cnn.com", 80) is None
    plain = parse(rule(trafficPolicy={"tls": {"mode": "SIMPLE"}, "portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}]}), "t", 2)
    assert tls_origination([plain], "edition.cnn.com", 80) is None and tls_origination([plain], "edition.cnn.com", 81) == (plain, "edition.cnn.com")


def test_check_says_when_no_service_entry_names_the_host():
    resources = [parse(d, "t", i) for i, d in enumerate([rule(), rule(host="reviews.default", name="mistaken"), entry()])]
    [finding] = unused_rules(resources)
    assert finding["name"] == "mistaken" and finding["kind"] == "destinationrule"
    assert "host reviews.default is no ServiceEntry's host in emojivoto, so it does nothing" in finding["message"]
    assert "set metadata.namespace" in finding["message"]


async def test_the_tasks_rule_has_the_sidecar_originate_tls_to_the_host(mesh: Mesh, echo_port: int, tmp_path, monkeypatch):
    """The task's ServiceEntry (port 80 to targetPort 443, here the test server's port) and its
    DestinationRule as written: the app's plain http:// reaches the server over TLS with the
    host's name as SNI, its certificate checked; the fate names the rule. An sni the certificate
    does not carry is refused; the rule deleted, the app's plain HTTP goes as it is again."""
    system_ca, cert, key = _https_files(tmp_path, "edition.cnn.com")
    monkeypatch.setenv("SSL_CERT_FILE", str(system_ca))  # the proxy's "system" CAs (as a sidecar image's would be)
    client = mesh.start_proxy(NS, "web", echo_port, name="web")
    async with https_server(cert, key) as (https_port, seen), aiohttp.ClientSession() as session:
        task_entry = entry(target=https_port, endpoints=[{"address": "127.0.0.1"}])
        task_entry["spec"]["resolution"] = "STATIC"
        try:
            # the rule alone: taken, and apply says it does nothing until an entry names its host
            status, body = mesh.call("POST", "/v1/policies", {"documents": [{"source": "t", "index": 0, "document": rule()}]})
            assert status == 200 and any("host edition.cnn.com is no ServiceEntry's host in emojivoto" in w
                                         for w in body.get("warnings", [])), body
            apply(mesh, task_entry, rule())
            status, headers, body = await until(
                lambda: fetch(session, client.outbound, "http://edition.cnn.com/politics", headers={"x-meshdojo-debug": "1"}),
                lambda r: r[0] == 200, "TLS originated by the sidecar, as the DestinationRule says")
            assert json.loads(body) == {"served_by": "secure", "tls": True}
            assert seen[-1] == {"sni": "edition.cnn.com", "host": "edition.cnn.com", "path": "/politics"}
            assert ("egress=ServiceEntry emojivoto/edition-cnn-com, TLS originated to edition.cnn.com "
                    "(DestinationRule emojivoto/edition-cnn-com)") in headers["x-meshdojo-fate"], headers

            apply(mesh, task_entry, rule(trafficPolicy={"portLevelSettings": [{"port": {"number": 80},
                                                                                "tls": {"mode": "SIMPLE", "sni": "other.example"}}]}))
            status, headers, body = await until(lambda: fetch(session, client.outbound, "http://edition.cnn.com/wrong"),
                                                lambda r: r[0] != 200, "the other name to be checked")
            assert status == 502 and "CERTIFICATE_VERIFY_FAILED" in body, (status, body)

            mesh.call("DELETE", f"/v1/policies/DestinationRule/{NS}/edition-cnn-com")
            count = len(seen)
            status, headers, _ = await until(lambda: fetch(session, client.outbound, "http://edition.cnn.com/plain",
                                                           headers={"x-meshdojo-debug": "1"}),
                                             lambda r: "TLS originated" not in r[1].get("x-meshdojo-fate", ""), "the rule gone")
            assert status >= 400 and len(seen) == count  # plain HTTP to a TLS port: the server cannot read it
        finally:
            client.proc.terminate()  # its pooled TLS connections end from its side first
            await asyncio.to_thread(client.proc.wait, 10)


def test_get_says_the_rule_originates_tls():
    from sandbox.resourcetable import table

    assert table([{"document": rule(), "expiresAt": None}])[1][1:5] == ("DestinationRule", "edition-cnn-com", "edition.cnn.com",
                                                                        "TLS originated")


def test_a_virtual_service_for_a_host_outside_the_mesh():
    """Istio's "manage traffic to external services": a VirtualService for the entry's host, its
    rules sending to that host; anything else it cannot do there is refused by field."""
    def service(http: list[dict], host: str = "httpbin.org") -> dict:
        return {"apiVersion": NETWORKING, "kind": "VirtualService", "metadata": {"name": "httpbin-ext", "namespace": NS},
                "spec": {"hosts": [host], "http": http}}

    task = parse(service([{"timeout": "3s", "route": [{"destination": {"host": "httpbin.org"}, "weight": 100}]}]), "t", 0)
    assert (task.spec.service, task.spec.outside_host, task.target) == (None, "httpbin.org", None)
    assert task.spec.rules[0].backends == () and task.spec.rules[0].request_timeout == 3.0
    for http, field, words in (
        ([{"route": [{"destination": {"host": "reviews"}}]}], "spec.http[0].route[0].destination.host", "sends its requests to httpbin.org"),
        ([{"route": [{"destination": {"host": "httpbin.org", "subset": "v1"}}]}], "spec.http[0].route[0].destination.subset",
         "not for a host outside the mesh"),
        ([{"route": [{"destination": {"host": "httpbin.org"}, "weight": 50}, {"destination": {"host": "httpbin.org"}, "weight": 50}]}],
         "spec.http[0].route[0].weight", "takes every request"),
        ([{"route": [{"destination": {"host": "httpbin.org"}}], "mirror": {"host": "reviews"}}], "spec.http[0].mirror",
         "not for a host outside the mesh"),
        ([{"route": [{"destination": {"host": "httpbin.org"}}], "mirrors": [{"destination": {"host": "reviews"}}]}],
         "spec.http[0].mirrors", "not for a host outside the mesh"),
    ):
        with pytest.raises(PolicyError) as refused:
            parse(service(http), "t", 0)
        assert refused.value.field == field and words in refused.value.message, refused.value
    [finding] = unused_rules([task])
    assert finding["kind"] == "virtualservice" and "VirtualService emojivoto/httpbin-ext: host httpbin.org is no ServiceEntry's" in finding["message"]
    assert unused_rules([task, parse(entry("httpbin.org"), "t", 1)]) == []
    from sandbox.resourcetable import table

    assert table([{"document": service([{"route": [{"destination": {"host": "httpbin.org"}}]}]), "expiresAt": None}])[1][3] == "httpbin.org"
