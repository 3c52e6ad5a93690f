"""Istio's VirtualService and DestinationRule (networking.istio.io), as Istio's bookinfo tasks
write them (demo-apps/bookinfo/policies/istio/): read into the routes and breakers the proxies
follow, refused by field where meshdojo cannot do what they say, and enforced by real sidecars —
subsets by pod labels, the first matching rule in order, a fault injected by the caller's
sidecar, a subset nobody defined answered 503, and at most maxEjectionPercent of a Service's
pods ejected."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from controlplane.crds import subset_crd
from controlplane.istionetworking import subset_problems
from controlplane.policy import PolicyError, canonical_kind, parse, traffic_route
from proxy.breaker import Breaker
from proxy.traffic import choose_route
from sandbox.resourcetable import table
from tests.apps import start_echo_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_sandbox_ingress import code
from tests.test_traffic_e2e import apply, fetch, many

ISTIO = Path(__file__).parent.parent / "demo-apps/bookinfo/policies/istio"


def shipped(name: str) -> list[Any]:
    return [parse(d, name, i) for i, d in enumerate(yaml.safe_load_all((ISTIO / name).read_text()))]


def vs(http: list[dict], **spec: Any) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": "bookinfo"},
            "spec": {"hosts": ["reviews"], "http": http, **spec}}


def dr(**spec: Any) -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "bookinfo"}, "spec": {"host": "reviews", **spec}}


def chosen(route: Any, path: str = "/reviews/0", headers: dict[str, str] | None = None, seed: int = 0) -> tuple[int, str | None, str | None]:
    choice = choose_route([route], path, lambda name: (headers or {}).get(name), "GET", random.Random(seed))
    assert choice is not None
    return int(choice.route.rpartition("#")[2]), choice.backend, choice.subset


def test_every_shipped_file_reads_as_routes_and_subsets():
    rules = {r.name: r for r in shipped("destination-rule-all.yaml")}
    assert rules["reviews"].kind == "DestinationRule" and [s.name for s in rules["reviews"].spec.subsets] == ["v1", "v2", "v3"]
    assert rules["reviews"].spec.subset("v2").selects({"app": "reviews", "version": "v2"})
    assert not rules["reviews"].spec.subset("v2").selects({"app": "reviews", "version": "v3"})
    everything = [*rules.values()]
    for name in sorted(p.name for p in ISTIO.glob("virtual-service-*.yaml")):
        routes = shipped(name)
        assert routes and all(r.kind == "VirtualService" and traffic_route(r) for r in routes), name
        everything += routes
    assert subset_problems(everything) == []  # every subset they name, destination-rule-all.yaml defines

    (jason,) = shipped("virtual-service-reviews-test-v2.yaml")
    assert jason.target == "reviews"
    assert chosen(jason, headers={"end-user": "jason"}) == (0, "reviews", "v2")
    assert chosen(jason, headers={"end-user": "alice"}) == (1, "reviews", "v1")
    (delay,) = shipped("virtual-service-ratings-test-delay.yaml")
    assert delay.spec.rules[0].fault.delay == 7.0 and delay.spec.rules[0].fault.delay_percent == 100
    (abort,) = shipped("virtual-service-ratings-test-abort.yaml")
    assert abort.spec.rules[0].fault.abort_status == 500 and abort.spec.rules[1].fault is None
    (half,) = shipped("virtual-service-reviews-50-v3.yaml")
    subsets = [chosen(half, seed=seed)[2] for seed in range(200)]
    assert 70 < subsets.count("v3") < 130 and set(subsets) == {"v1", "v3"}


def test_istios_meanings_are_kept_where_gateway_api_differs():
    route = parse(vs([
        {"match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"match": [{"uri": {"exact": "/api/v1/x"}}], "route": [{"destination": {"host": "reviews", "subset": "v3"}}]},
        {"match": [{"headers": {"user-agent": {"regex": ".*Firefox.*"}}, "method": {"exact": "GET"}}],
         "route": [{"destination": {"host": "reviews", "subset": "v3"}}]},
        {"match": [{"queryParams": {"who": {"prefix": "ja"}}}], "redirect": {"uri": "/login"}},
        {"route": [{"destination": {"host": "reviews.bookinfo.svc.cluster.local", "subset": "v1"}}],
         "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "gateway-error,connect-failure"}, "timeout": "10s"},
    ]), "t", 0)
    assert chosen(route, "/apix") == (0, "reviews", "v2")  # a string prefix, as Istio's (Gateway API's: whole segments)
    assert chosen(route, "/api/v1/x")[0] == 0  # the first matching rule wins, in order (not the more precise match)
    assert chosen(route, "/", {"user-agent": "Mozilla Firefox/1"})[0] == 2
    assert chosen(route, "/?who=jason")[0] == 3 and route.spec.rules[3].filters.redirect.status == 301  # Istio's default
    last = route.spec.rules[4]
    assert chosen(route, "/")[1:] == ("reviews", "v1")
    assert (last.retry.attempts, last.retry.codes, last.backend_timeout, last.request_timeout) == (3, (502, 503, 504), 2.0, 10.0)
    assert "reviews/v1" in last.describe() and "retries on 502-504, up to 3" in last.describe()


def test_without_headers_and_ignore_uri_case():
    route = parse(vs([
        {"match": [{"uri": {"exact": "/Reviews/0"}, "ignoreUriCase": True, "withoutHeaders": {"end-user": {"exact": "jason"}}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"match": [{"uri": {"regex": "/r[a-z]+/1"}, "ignoreUriCase": True}], "route": [{"destination": {"host": "reviews", "subset": "v3"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
    ]), "t", 0)
    assert chosen(route, "/reviews/0")[0] == 0 and chosen(route, "/REVIEWS/0?x=1")[0] == 0  # any case
    assert chosen(route, "/reviews/0", {"end-user": "jason"})[0] == 2 and chosen(route, "/reviews/0", {"end-user": "jane"})[0] == 0
    assert chosen(route, "/RATINGS/1")[0] == 1 and chosen(route, "/reviews/2")[0] == 2
    assert route.spec.rules[0].matches[0].describe() == "/reviews/0 (any case) not end-user=jason"
    with pytest.raises(PolicyError) as refused:
        parse(vs([{"match": [{"ignoreUriCase": True}], "route": [{"destination": {"host": "reviews"}}]}]), "t", 0)
    assert "spec.http[0].match[0].ignoreUriCase: goes with uri" in str(refused.value)


def test_source_labels_and_namespace_are_the_calling_sidecars():
    from controlplane.selection import Workload

    route = parse(vs([
        {"match": [{"sourceLabels": {"app": "productpage", "version": "v2"}}], "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"match": [{"sourceNamespace": "canary"}], "route": [{"destination": {"host": "reviews", "subset": "v3"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
    ]), "t", 0)

    def subset(source: Any) -> str | None:
        return choose_route([route], "/", lambda name: None, "GET", random.Random(0), source).subset

    assert subset(Workload("bookinfo", "bookinfo-productpage", labels={"app": "productpage", "version": "v2"})) == "v2"
    assert subset(Workload("bookinfo", "bookinfo-productpage", labels={"app": "productpage", "version": "v1"})) == "v1"
    assert subset(Workload("canary", "tester", labels={})) == "v3"
    assert subset(None) == "v1"  # not a sidecar's request (a gateway's): such a match never takes it
    assert route.spec.rules[0].matches[0].describe() == "from pods app=productpage,version=v2"
    assert route.spec.rules[1].matches[0].describe() == "from pods of canary"
    with pytest.raises(PolicyError) as refused:  # at an Istio Gateway, Istio reads them only with gateways: [mesh] too
        parse(vs([{"match": [{"sourceLabels": {"app": "x"}}], "route": [{"destination": {"host": "reviews"}}]}],
                 gateways=["bookinfo-gateway"], hosts=["*"]), "t", 0)
    assert "spec.http[0].match[0].sourceLabels: is about the callers' sidecars" in str(refused.value), str(refused.value)


def breaker_of(doc: dict) -> Any:
    return parse(doc, "t", 0).spec.breaker


def test_a_destination_rules_traffic_policy_is_a_circuit_breaker_with_istios_defaults():
    circuit = breaker_of(dr(trafficPolicy={  # Istio's circuit breaking task
        "connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1}},
        "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "3m", "maxEjectionPercent": 100}}))
    assert (circuit.pool.max_connections, circuit.pool.max_pending, circuit.pool.max_requests_per_connection) == (1, 1, 1)
    assert (circuit.outlier, circuit.consecutive_failures, circuit.penalty, circuit.max_ejection_percent) == (True, 1, 180.0, 100)
    defaults = breaker_of(dr(trafficPolicy={"outlierDetection": {}}))
    assert (defaults.consecutive_failures, defaults.penalty, defaults.max_ejection_percent) == (5, 30.0, 10)
    assert not breaker_of(dr(trafficPolicy={"connectionPool": {"tcp": {"maxConnections": 5}}})).outlier  # limits only
    assert breaker_of(dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}])) is None
    assert breaker_of(dr(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})) is None  # the mesh's mTLS: always on here


def test_at_most_max_ejection_percent_of_the_endpoints_are_out_and_one_always_may_be():
    now = [0.0]
    for percent, out in ((10, 1), (50, 2), (100, 4)):
        breaker = Breaker(consecutive_failures=1, penalty=30, clock=lambda: now[0], max_ejection_percent=percent)
        endpoints = [f"10.0.0.{i}" for i in range(4)]
        for ep in endpoints:
            assert breaker.admit(ep)
        tripped = [ep for ep in endpoints if breaker.record(ep, True) == "tripped"]
        assert len(tripped) == out, (percent, tripped)
        assert sum(breaker.admit(ep) for ep in endpoints) == 4 - out


@pytest.mark.parametrize("doc, field, words", [
    (vs([{"route": [{"destination": {"host": "reviews"}}]}], gateways=["bookinfo-gateway", "mesh"]), "spec.gateways",
     "expected one entry: mesh (the default), or one Gateway"),  # a Gateway's: tests/test_istio_gateway.py
    (vs([{"route": [{"destination": {"host": "reviews"}}]}], hosts=["reviews", "ratings"]), "spec.hosts[1]",
     "write one VirtualService for each Service"),
    (vs([{"route": [{"destination": {"host": "reviews"}}]}], hosts=["reviews.default.svc.cluster.local"]), "spec.hosts[0]",
     "is a Service of namespace 'default'"),
    (vs([{"route": [{"destination": {"host": "www.example.com"}}]}]), "spec.http[0].route[0].destination.host",
     "a host outside the mesh is a ServiceEntry's"),
    (vs([{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
                    {"destination": {"host": "reviews", "subset": "v3"}, "weight": 40}]}]), "spec.http[0].route",
     "add up to 90: they must add up to 100"),
    (vs([{"match": [{"uri": {"prefix": "/"}}]}]), "spec.http[0].route", "required: where the rule's requests go"),
    (vs([{"route": [{"destination": {"host": "reviews"}}], "redirect": {"uri": "/x"}}]), "spec.http[0].redirect",
     "a rule does one of route, redirect and directResponse"),
    (vs([{"match": [{"uri": {"exact": "/a", "prefix": "/b"}}], "route": [{"destination": {"host": "reviews"}}]}]),
     "spec.http[0].match[0].uri", "exactly one of exact, prefix or regex"),
    (vs([{"match": [{"uri": {"prefix": "api"}}], "route": [{"destination": {"host": "reviews"}}]}]),
     "spec.http[0].match[0].uri.prefix", "must start with '/'"),
    (vs([{"match": [{"headers": {"end-user": {"regex": "(jason"}}}], "route": [{"destination": {"host": "reviews"}}]}]),
     "spec.http[0].match[0].headers.end-user.regex", "not a regular expression"),
    (vs([{"match": [{"method": {"prefix": "G"}}], "route": [{"destination": {"host": "reviews"}}]}]),
     "spec.http[0].match[0].method.prefix", "a method is matched exactly"),
    (vs([{"route": [{"destination": {"host": "reviews"}}], "retries": {"attempts": 2, "retryOn": "5xx,sometimes"}}]),
     "spec.http[0].retries.retryOn", "'sometimes': expected 5xx, gateway-error"),
    (vs([{"route": [{"destination": {"host": "reviews"}}], "mirrorPercentage": {"value": 10}}]),
     "spec.http[0].mirrorPercentage", "goes with mirror"),
    (vs([{"route": [{"destination": {"host": "reviews"}}], "fault": {}}]), "spec.http[0].fault", "a delay, an abort, or both"),
    (vs([{"route": [{"destination": {"host": "reviews"}}], "headers": {"request": {"set": {"bad header": "x"}}}}]),
     "spec.http[0].headers.request.set.bad header", "expected a header name"),
    (vs([{"route": [{"destination": {"host": "reviews"}, "weight": 101}]}]), "spec.http[0].route[0].weight", "expected a percentage"),
    (vs([], tcp=[{"route": []}]), "spec.tcp", "unknown field"),
    (dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v1", "labels": {"version": "v2"}}]),
     "spec.subsets[1].name", "'v1' is subsets[0]'s name already"),
    (dr(host="Api.Example.com"), "spec.host", "in lower case"),
    (dr(subsets=[{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"portLevelSettings": [{"port": {"number": 9080}}]}}]),
     "spec.subsets[0].trafficPolicy.portLevelSettings", "a Service of the mesh has one port here"),
    (dr(trafficPolicy={"tls": {"mode": "DISABLE"}}), "spec.trafficPolicy.tls.mode", "reached over the mesh's mutual TLS"),
    (dr(trafficPolicy={"tls": {"mode": "MUTUAL"}}), "spec.trafficPolicy.tls.mode", "expected one of ISTIO_MUTUAL, SIMPLE, DISABLE"),
    ({**dr(), "apiVersion": "networking.istio.io/v2"}, "apiVersion",
     "DestinationRule is networking.istio.io/v1alpha3 or networking.istio.io/v1beta1 or networking.istio.io/v1"),
])
def test_refusals_name_the_field(doc, field, words):
    with pytest.raises(PolicyError) as raised:
        parse(doc, "istio.yaml", 0)
    assert raised.value.field == field and words in raised.value.message, raised.value


def test_names_views_crds_and_problems():
    assert canonical_kind("vs") == "VirtualService" and canonical_kind("dr") == "DestinationRule"
    assert canonical_kind("virtualservices.networking.istio.io") == "VirtualService"
    crd = subset_crd("VirtualService")
    assert crd["metadata"]["name"] == "virtualservices.networking.istio.io" and crd["spec"]["names"]["shortNames"] == ["vs"]
    assert [(v["name"], v["served"], v["storage"]) for v in crd["spec"]["versions"]] == [
        ("v1alpha3", True, False), ("v1beta1", True, False), ("v1", True, True)]  # every version Istio's docs write
    docs = yaml.safe_load_all((ISTIO / "virtual-service-reviews-test-v2.yaml").read_text())
    rows = table([{"document": d, "expiresAt": None} for d in [*docs, *yaml.safe_load_all((ISTIO / "destination-rule-all.yaml").read_text())]])
    assert rows[1][1:5] == ("VirtualService", "reviews", "svc/reviews", "2 rules, subsets v2, v1"), rows
    assert ("DestinationRule", "reviews", "svc/reviews", "subsets v1, v2, v3") in [row[1:5] for row in rows]
    (problem,) = subset_problems([parse(vs([{"route": [{"destination": {"host": "reviews", "subset": "v9"}}]}]), "t", 0),
                                  *shipped("destination-rule-all.yaml")])
    assert "subset v9 of reviews is defined by no DestinationRule, so its requests get 503 (no_subset)" in problem["message"]


async def test_subsets_faults_and_a_missing_subset_through_real_sidecars(mesh: Mesh):
    """reviews has two pods, version v1 and v2, behind one Service; productpage's sidecar routes
    by the VirtualService: jason to v2, the rest to v1; a fault aborts what goes to /abort in the
    caller's sidecar (the pods never see it); a subset no DestinationRule defines is 503."""
    runners = []
    try:
        for version in ("v1", "v2"):
            runner, port = await start_echo_app(version)
            runners.append(runner)
            proxy = mesh.start_proxy("bookinfo", "reviews", port, name=f"reviews-{version}",
                                     labels={"app": "reviews", "version": version})
            mesh.register("bookinfo", "reviews", version, proxy.ports["inbound"], spiffe("bookinfo", "reviews"),
                          labels={"app": "reviews", "version": version})
        client = mesh.start_proxy("bookinfo", "productpage", port, name="productpage")
        route = vs([{"match": [{"uri": {"prefix": "/abort"}}], "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 100}}},
                     "route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
                    {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                    {"match": [{"uri": {"prefix": "/nine"}}], "route": [{"destination": {"host": "reviews", "subset": "v9"}}]},
                    {"match": [{"uri": {"prefix": "/mirror"}}], "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                     "mirror": {"host": "reviews", "subset": "v2"}, "mirrorPercentage": {"value": 100}},
                    {"match": [{"uri": {"prefix": "/from"}, "sourceLabels": {"app": "productpage", "version": "v2"}}],
                     "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                    {"match": [{"uri": {"prefix": "/loud"}, "ignoreUriCase": True, "withoutHeaders": {"end-user": {"prefix": "ja"}}}],
                     "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                    {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}])
        apply(mesh, dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]), route)
        async with aiohttp.ClientSession() as session:
            url = "http://reviews:9080/reviews/0"
            await until(lambda: fetch(session, client.outbound, url, headers={"x-meshdojo-debug": "1"}),
                        lambda r: "subset=v1" in r[1].get("x-meshdojo-fate", ""), "the VirtualService to reach productpage's sidecar")
            plain = {json.loads(body)["served_by"] for _, _, body in await many(session, client.outbound, url, 20)}
            jason = {json.loads(body)["served_by"] for _, _, body in
                     await many(session, client.outbound, url, 20, headers={"end-user": "jason"})}
            assert plain == {"v1"} and jason == {"v2"}, (plain, jason)

            status, headers, body = await fetch(session, client.outbound, "http://reviews:9080/abort", headers={"x-meshdojo-debug": "1"})
            assert status == 500 and "fault injected by VirtualService bookinfo/reviews#0 (in the caller's sidecar)" in body, body
            assert "fault=abort 500 by VirtualService bookinfo/reviews#0" in headers["x-meshdojo-fate"], headers
            assert 'outbound_fault_injected_total{kind="abort",route="bookinfo/reviews#0"} 1.0' in client.metrics()

            status, headers, body = await fetch(session, client.outbound, "http://reviews:9080/nine")
            assert status == 503 and headers["x-meshdojo-error"] == "no_subset", (status, headers)
            assert "subset v9 of reviews.bookinfo, and DestinationRule bookinfo/reviews does not define it" in body, body

            status, headers, body = await fetch(session, client.outbound, "http://reviews:9080/mirror", headers={"x-meshdojo-debug": "1"})
            assert json.loads(body)["served_by"] == "v1" and "mirrored to reviews (subset v2)" in headers["x-meshdojo-fate"], headers
            sent = 'outbound_http_route_mirror_total{backend="reviews.bookinfo.svc.cluster.local",outcome="sent",route="bookinfo/reviews#3"} 1.0'
            await until(lambda: asyncio.to_thread(client.metrics), lambda text: sent in text, "the copy to reach a pod of subset v2")

            # sourceLabels: the rule is taken from a sidecar of a pod with those labels only (productpage's has app=productpage alone)
            labelled = mesh.start_proxy("bookinfo", "productpage", port, name="productpage-v2", labels={"app": "productpage", "version": "v2"})
            from_url = "http://reviews:9080/from/0"
            assert {json.loads(body)["served_by"] for _, _, body in await many(session, client.outbound, from_url, 10)} == {"v1"}
            await until(lambda: fetch(session, labelled.outbound, from_url), lambda r: r[0] == 200 and json.loads(r[2])["served_by"] == "v2",
                        "the labelled sidecar's routes")
            assert {json.loads(body)["served_by"] for _, _, body in await many(session, labelled.outbound, from_url, 10)} == {"v2"}

            # ignoreUriCase and withoutHeaders: /LOUD is /loud, and a user whose name starts with "ja" is not taken
            loud = "http://reviews:9080/LOUD/0"
            assert {json.loads(body)["served_by"] for _, _, body in await many(session, client.outbound, loud, 10)} == {"v2"}
            assert {json.loads(body)["served_by"] for _, _, body in
                    await many(session, client.outbound, loud, 10, headers={"end-user": "jane"})} == {"v1"}

            # an ingress gateway is not `mesh`: the VirtualService leaves its requests alone (both pods serve jason there)
            gateway = mesh.start_gateway("bookinfo", "reviews.bookinfo:9080")
            front = f"http://127.0.0.1:{gateway.ports['outbound']}/abort"
            served = {json.loads(body)["served_by"] for _, _, body in await many(session, None, front, 30, headers={"end-user": "jason"})}
            assert served == {"v1", "v2"}, served
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.mark.timeout(180)
def test_the_shipped_istio_files_from_the_cli(cli):
    """apply warns about a subset nobody defined yet, get lists both kinds at once (kubectl's
    vs,dr), check names the problem until the DestinationRule is there, and a request routed to
    a subset whose rule was deleted gets 503 no_subset."""
    from sandbox.processes import wait_until

    cli.run("up", "--no-tui", "--demo", "bookinfo")
    applied = cli.run("apply", "-f", str(ISTIO / "virtual-service-all-v1.yaml"))
    assert "virtualservice/reviews created" in applied.stdout, applied.stdout
    assert "subset v1 of reviews is defined by no DestinationRule" in applied.stderr + applied.stdout, applied
    assert "subset v1 of reviews is defined by no DestinationRule" in cli.run("check", check=False).stdout
    cli.run("apply", "-f", str(ISTIO / "destination-rule-all.yaml"))
    listed = cli.run("get", "vs,dr", "-n", "bookinfo").stdout
    assert "VirtualService   reviews" in listed and "DestinationRule  reviews      svc/reviews      subsets v1, v2, v3" in listed, listed
    assert "subset v1 of reviews" not in cli.run("check", check=False).stdout

    def served_by_v1_only() -> list[str] | None:
        cli.run("load", "svc/reviews", "/reviews/0", "--from", "deploy/productpage-v1", "--namespace", "bookinfo", "-c", "1", "-n", "6")
        rows = json.loads(cli.run("edges", "-n", "bookinfo", "-o", "json", "-t", "10s").stdout)
        dsts = sorted(r["dst"] for r in rows if r["src"] == "productpage-v1" and r["dst"].startswith("reviews"))
        return dsts if dsts == ["reviews-v1"] else None

    wait_until(served_by_v1_only, 30, "productpage's calls to reviews to reach its v1 pods only")
    cli.run("delete", "dr", "reviews", "-n", "bookinfo")
    refused = cli.run("load", "svc/reviews", "/reviews/0", "--from", "deploy/productpage-v1", "--namespace", "bookinfo", "-n", "2",
                      check=False).stdout
    assert "Code 503 : 2" in refused and "no_subset 2" in refused, refused

    # Istio's mesh-wide PeerAuthentication goes to istio-system: applied, and told where meshdojo's root namespace is
    mesh_wide = cli.home / "mesh-wide.yaml"
    mesh_wide.write_text((ISTIO / "peer-authentication-permissive.yaml").read_text().replace("namespace: bookinfo", "namespace: istio-system"))
    told = cli.run("apply", "-f", str(mesh_wide))
    assert "istio-system is Istio's root namespace; meshdojo's is meshdojo-system" in told.stderr, told

    # Istio's classic ingress (tests/test_istio_gateway.py): its Gateway and the VirtualService bound to it, at bookinfo's gateway
    url = cli.status()["gateways"][0]["url"]
    assert code(url + "headers") == "200"  # no route yet: everything to productpage
    applied = cli.run("apply", "-f", str(ISTIO / "bookinfo-gateway.yaml")).stdout
    assert applied.splitlines() == ["gateway.networking.istio.io/bookinfo-gateway created (namespace bookinfo)",
                                    "virtualservice/bookinfo created (namespace bookinfo)"], applied
    wait_until(lambda: code(url + "headers") == "404", 10, "the VirtualService at the gateway")
    assert code(url + "productpage") == "200"
    assert "Gateway.networking.istio.io  bookinfo-gateway" in cli.run("get", "gateway", "-n", "bookinfo").stdout

    # ours and Istio's AuthorizationPolicy of one name (tests/test_istio_security.py): the bare name is ambiguous, a group is not
    both = cli.home / "both.yaml"
    istios = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "twin", "namespace": "bookinfo"},
              "spec": {"selector": {"matchLabels": {"app": "nobody"}}}}
    both.write_text(yaml.safe_dump_all([istios, {**istios, "apiVersion": "policy.meshdojo.dev/v1alpha1"}]))
    cli.run("apply", "-f", str(both))
    refused = cli.run("delete", "authz", "twin", "-n", "bookinfo", check=False)
    assert refused.returncode == 1 and "'twin' is ambiguous: AuthorizationPolicy bookinfo/twin, AuthorizationPolicy.security.istio.io " \
        "bookinfo/twin; add -n NAMESPACE, or name the kind with its group (e.g. authorizationpolicies.security.istio.io)" in refused.stderr, refused
    assert cli.run("delete", "authorizationpolicies.security.istio.io", "twin", "-n", "bookinfo").stdout.strip() == \
        "AuthorizationPolicy.security.istio.io bookinfo/twin deleted"
    assert cli.run("delete", "authz", "twin", "-n", "bookinfo").stdout.strip() == "AuthorizationPolicy bookinfo/twin deleted"

    # a DestinationRule's loadBalancer (tests/test_load_balancing.py): beside the subsets' rule, under its own name
    cli.run("apply", "-f", str(ISTIO / "destination-rule-all.yaml"))
    assert "destinationrule/reviews-sticky created" in cli.run("apply", "-f", str(ISTIO / "destination-rule-reviews-sticky.yaml")).stdout
    assert "DestinationRule  reviews-sticky  svc/reviews      sticky" in cli.run("get", "dr", "-n", "bookinfo").stdout
    wait_until(lambda: "Code 200 : 6" in cli.run("load", "svc/reviews", "/reviews/0", "--from", "deploy/productpage-v1", "--namespace",
                                                  "bookinfo", "-H", "end-user:jason", "-n", "6", check=False).stdout,
               10, "reviews' subsets back, and the sticky rule beside them")


def peer(name: str, mode: str | None, namespace: str = "bookinfo", **spec: Any) -> Any:
    return parse({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": name, "namespace": namespace},
                  "spec": {**({"mtls": {"mode": mode}} if mode else {}), **spec}}, "t", 0)


def test_a_peer_authentication_is_a_meshtls_in_istios_words():
    """The most specific wins (workload, namespace, mesh); UNSET leaves it to the level above; at one
    level with a MeshTLS it is a tie, as two MeshTLS are."""
    from controlplane.selection import Workload, applicable

    reviews = Workload("bookinfo", "reviews", "reviews-v1", "reviews-v1-0", {"app": "reviews", "version": "v1"})
    mesh_wide, namespace = peer("default", "STRICT", "meshdojo-system"), peer("default", "PERMISSIVE")
    unset = peer("reviews", "UNSET", selector={"matchLabels": {"app": "reviews"}})
    chosen = applicable([mesh_wide, namespace, unset], reviews, {})["MeshTLS"]
    assert chosen.chosen is namespace and chosen.levels == ("namespace",)
    assert applicable([mesh_wide, peer("quiet", None)], reviews, {})["MeshTLS"].chosen is mesh_wide  # no mtls: UNSET
    ours = parse({"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "MeshTLS", "metadata": {"name": "strict", "namespace": "bookinfo"},
                  "spec": {"mode": "STRICT"}}, "t", 0)
    assert applicable([ours, namespace], reviews, {})["MeshTLS"].conflict == ("bookinfo/default", "bookinfo/strict")
    (shipped_one,) = shipped("peer-authentication-permissive.yaml")
    assert shipped_one.kind == "PeerAuthentication" and shipped_one.spec.mode == "PERMISSIVE"
    assert canonical_kind("pa") == "PeerAuthentication" and subset_crd("PeerAuthentication")["spec"]["group"] == "security.istio.io"
    assert table([{"document": shipped_one.document, "expiresAt": None}])[1][1:5] == (
        "PeerAuthentication", "default", "(namespace)", "PERMISSIVE")
    for spec, field, words in (({"portLevelMtls": {"9080": {"mode": "STRICT"}}}, "spec.portLevelMtls", "needs a selector"),
                               ({"selector": {"matchLabels": {"app": "reviews"}}, "portLevelMtls": {"http": {"mode": "STRICT"}}},
                                "spec.portLevelMtls.http", "expected a port number"),
                               ({"mtls": {"mode": "OFF"}}, "spec.mtls.mode", "expected one of UNSET, PERMISSIVE, STRICT, DISABLE")):
        with pytest.raises(PolicyError) as raised:
            peer("bad", None, **spec)
        assert raised.value.field == field and words in raised.value.message, raised.value


def test_a_ports_own_mode_and_the_level_above_for_the_rest():
    """Istio's Authentication Policy task: STRICT but port 8080 DISABLE (plaintext taken); a
    policy with ports' modes only leaves the others to the level above."""
    from controlplane.selection import Workload, applicable

    httpbin = Workload("bookinfo", "httpbin", "httpbin", "httpbin-0", {"app": "httpbin"})
    namespace = peer("default", "STRICT")
    port_only = peer("httpbin", None, selector={"matchLabels": {"app": "httpbin"}}, portLevelMtls={"8080": {"mode": "DISABLE"}})
    chosen = applicable([namespace, port_only], httpbin, {})["MeshTLS"]
    assert chosen.resources == (port_only, namespace) and chosen.levels == ("workload", "namespace")
    assert [next(m for r in chosen.resources if (m := r.spec.mode_at(port)) != "UNSET") for port in (8080, 9090)] == ["DISABLE", "STRICT"]
    both = peer("httpbin", "STRICT", selector={"matchLabels": {"app": "httpbin"}}, portLevelMtls={"8080": {"mode": "DISABLE"}})
    assert (both.spec.mode_at(8080), both.spec.mode_at(80), both.spec.mode_at(None)) == ("DISABLE", "STRICT", "STRICT")
    assert table([{"document": both.document, "expiresAt": None}])[1][4] == "STRICT, port 8080 DISABLE"


async def test_a_peer_authentication_opens_and_closes_a_real_sidecar_to_plaintext(emoji_mesh):
    """Istio's mutual TLS migration task on one workload: PERMISSIVE lets a plaintext caller in,
    STRICT (meshdojo's start) refuses it again."""
    from tests.test_mesh import _plaintext_get

    mesh, server, _client = emoji_mesh
    assert await asyncio.to_thread(_plaintext_get, server.ports["inbound"]) == b""
    opened = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication", "metadata": {"name": "emoji", "namespace": "emojivoto"},
              "spec": {"selector": {"matchLabels": {"app": "emoji"}}, "mtls": {"mode": "PERMISSIVE"}}}
    apply(mesh, opened)
    await until(lambda: asyncio.to_thread(_plaintext_get, server.ports["inbound"]), lambda r: r.startswith(b"HTTP/1.1 200"), "PERMISSIVE")
    apply(mesh, {**opened, "spec": {**opened["spec"], "mtls": {"mode": "STRICT"}}})
    await until(lambda: asyncio.to_thread(_plaintext_get, server.ports["inbound"]), lambda r: r == b"", "STRICT again")
    # the Authentication Policy task: STRICT, but the port Services target DISABLE (here the sidecar's own: no pod port declared)
    port = str(server.ports["inbound"])
    apply(mesh, {**opened, "spec": {**opened["spec"], "mtls": {"mode": "STRICT"}, "portLevelMtls": {port: {"mode": "DISABLE"}}}})
    await until(lambda: asyncio.to_thread(_plaintext_get, server.ports["inbound"]), lambda r: r.startswith(b"HTTP/1.1 200"),
                "the port's DISABLE")
    assert (await asyncio.to_thread(server.config))["mode"] == "disable"


def test_direct_response_mirrors_and_authority_are_read():
    from controlplane.routefilters import DirectResponse, Mirror

    service = vs([{"match": [{"authority": {"prefix": "reviews"}}],
                   "directResponse": {"status": 503, "body": {"string": "reviews is resting"}}},
                  {"route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                   "mirrors": [{"destination": {"host": "reviews", "subset": "v2"}, "percentage": {"value": 50}},
                               {"destination": {"host": "ratings"}}]}])
    first, second = parse(service, "t", 0).spec.rules
    assert first.filters.direct == DirectResponse(503, b"reviews is resting") and first.backends == ()
    assert first.matches_request("/", lambda name: {"host": "reviews:9080"}.get(name), "GET")
    assert not first.matches_request("/", lambda name: {"host": "ratings:9080"}.get(name), "GET")
    assert second.filters.mirrors == (Mirror("reviews", 0.5, "v2"), Mirror("ratings", 1.0))
    encoded = parse(vs([{"directResponse": {"status": 200, "body": {"bytes": "aGk="}}}]), "t", 0).spec.rules[0]
    assert encoded.filters.direct == DirectResponse(200, b"hi")
    for rule, field, words in (
        ({"directResponse": {"status": 503}, "route": [{"destination": {"host": "reviews"}}]}, "spec.http[0].directResponse",
         "a rule does one of route, redirect and directResponse"),
        ({"directResponse": {"status": 503, "body": {"string": "a", "bytes": "YQ=="}}}, "spec.http[0].directResponse.body",
         "one of string and bytes"),
        ({"route": [{"destination": {"host": "reviews"}}], "mirror": {"host": "ratings"}, "mirrors": [{"destination": {"host": "ratings"}}]},
         "spec.http[0].mirrors", "mirror or mirrors, not both"),
    ):
        with pytest.raises(PolicyError) as raised:
            parse(vs([rule]), "t", 0)
        assert raised.value.field == field and words in raised.value.message, raised.value


async def test_a_direct_response_for_one_authority_at_a_real_sidecar(emoji_mesh):
    """A rule matched by the host the request names answers at once (directResponse: nothing
    reaches emoji, the fate says so); a request naming emoji another way goes on to it."""
    mesh, _server, client = emoji_mesh
    apply(mesh, {**vs([{"match": [{"authority": {"exact": "emoji"}}],
                        "directResponse": {"status": 503, "body": {"string": "emoji is resting"}}},
                       {"route": [{"destination": {"host": "emoji"}}]}], hosts=["emoji"]),
                 "metadata": {"name": "emoji", "namespace": "emojivoto"}})
    async with aiohttp.ClientSession() as session:
        status, headers, body = await until(lambda: fetch(session, client.outbound, "http://emoji/list", headers={"x-meshdojo-debug": "1"}),
                                            lambda r: r[0] == 503, "the direct response")
        assert body == "emoji is resting" and headers.get("Content-Type") == "text/plain", (headers, body)
        assert "direct response 503" in headers["x-meshdojo-fate"] and "route=emojivoto/emoji#0" in headers["x-meshdojo-fate"]
        status, headers, body = await fetch(session, client.outbound, "http://emoji.emojivoto.svc.cluster.local/list",
                                            headers={"x-meshdojo-debug": "1"})
        assert status == 200 and "route=emojivoto/emoji#1" in headers["x-meshdojo-fate"], (status, headers, body)


def test_apply_warns_when_a_virtual_service_joins_an_httproute_on_one_service(mesh: Mesh):
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "reviews-split", "namespace": "bookinfo"},
             "spec": {"parentRefs": [{"kind": "Service", "group": "", "name": "reviews"}], "rules": [{}]}}
    status, body = mesh.call("POST", "/v1/policies", {"documents": [{"source": "r.yaml", "index": 0, "document": route}]})
    assert status == 200 and not any("kinds" in w for w in body.get("warnings", [])), body
    status, body = mesh.call("POST", "/v1/policies", {"documents": [{"source": "vs.yaml", "index": 0,
                                                                      "document": vs([{"route": [{"destination": {"host": "reviews"}}]}])}]})
    assert status == 200 and any(w.startswith("svc/reviews (bookinfo) is routed by routes of 2 kinds") for w in body["warnings"]), body
