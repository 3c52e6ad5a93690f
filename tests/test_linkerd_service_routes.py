"""Linkerd's HTTPRoute (policy.linkerd.io) on a Service — Gateway API's route in Linkerd's group,
as Linkerd's Configuring Dynamic Request Routing task writes it — and the forms Linkerd's docs
write Gateway API's own in (``v1beta1``, ``group: core``): read as one route, refused by field
where the two forms of Linkerd's route would mix, and enforced by a real client sidecar (the
header sends the request to the other backend, Linkerd's retry annotations act on it)."""

from __future__ import annotations

import json
import random
from typing import Any

import aiohttp
import pytest

from controlplane.policy import PolicyError, Resource, parse, traffic_route
from controlplane.routeschema import METHODS
from proxy.traffic import choose_route
from sandbox.resourcetable import table
from tests.apps import start_echo_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, fetch, many

# Linkerd's Configuring Dynamic Request Routing task, its HTTPRoute as written there
BACKEND_ROUTER = {
    "apiVersion": "policy.linkerd.io/v1beta2", "kind": "HTTPRoute", "metadata": {"name": "backend-router", "namespace": "test"},
    "spec": {"parentRefs": [{"name": "backend-a-podinfo", "kind": "Service", "group": "core", "port": 9898}],
             "rules": [{"matches": [{"headers": [{"name": "x-request-id", "value": "alternative"}]}],
                        "backendRefs": [{"name": "backend-b-podinfo", "port": 9898}]},
                       {"backendRefs": [{"name": "backend-a-podinfo", "port": 9898}]}]}}


def routed(route: Resource, headers: dict[str, str]) -> str | None:
    choice = choose_route([route], "/echo", lambda name: headers.get(name), "POST", random.Random(0))
    return choice.backend if choice else None


def test_the_dynamic_request_routing_tasks_route_is_a_route_of_its_service():
    route = parse(BACKEND_ROUTER, "task.yaml", 0)
    assert route.kind == "HTTPRoute.policy.linkerd.io" and route.target == "backend-a-podinfo" and traffic_route(route)
    assert routed(route, {"x-request-id": "alternative"}) == "backend-b-podinfo"
    assert routed(route, {}) == "backend-a-podinfo"
    for version in ("v1beta1", "v1beta2", "v1beta3"):  # every version Linkerd's docs write it in
        assert traffic_route(parse({**BACKEND_ROUTER, "apiVersion": f"policy.linkerd.io/{version}"}, "t", 0))
    rows = table([{"document": BACKEND_ROUTER, "expiresAt": None}])
    assert rows[1][1:5] == ("HTTPRoute.policy.linkerd.io", "backend-router", "svc/backend-a-podinfo", "2 rules")


def test_linkerds_retry_annotations_and_timeouts_on_its_service_route():
    annotated = {**BACKEND_ROUTER, "metadata": {**BACKEND_ROUTER["metadata"], "annotations": {
        "retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "2", "timeout.linkerd.io/request": "2s"}}}
    rule = parse(annotated, "t", 0).spec.rules[1]  # type: ignore[union-attr]
    assert rule.retry is not None and rule.retry.attempts == 2 and rule.request_timeout == 2.0


def test_gateway_apis_route_as_linkerds_docs_write_it_v1beta1_and_group_core():
    """Linkerd's retries reference: gateway.networking.k8s.io/v1beta1, a parentRef of group core."""
    doc = {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "HTTPRoute",
           "metadata": {"name": "schlep-default", "namespace": "schlep", "annotations": {"retry.linkerd.io/http": "5xx"}},
           "spec": {"parentRefs": [{"name": "schlep", "kind": "Service", "group": "core", "port": 80}],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]}}
    route = parse(doc, "t", 0)
    assert route.kind == "HTTPRoute" and route.target == "schlep" and route.spec.rules[0].retry is not None  # type: ignore[union-attr]
    no_kind = {**doc, "spec": {**doc["spec"], "parentRefs": [{"name": "schlep", "group": "core"}]}}
    assert parse(no_kind, "t", 0).target == "schlep"  # the core group and no kind: a Service, as with ""
    with pytest.raises(PolicyError, match=r"apiVersion: HTTPRoute is gateway.networking.k8s.io/v1beta1 or gateway.networking.k8s.io/v1"):
        parse({**doc, "apiVersion": "gateway.networking.k8s.io/v1alpha2"}, "t", 0)


def spec_with(**changes: Any) -> dict:
    return {**BACKEND_ROUTER, "spec": {**BACKEND_ROUTER["spec"], **changes}}


@pytest.mark.parametrize("spec, field, words", [
    ({"parentRefs": [{"name": "a", "kind": "Service"}, {"name": "emoji-http", "kind": "Server"}]}, "spec.parentRefs[1].kind",
     "a route is on Servers (a part of their traffic, for per-route authorization) or on one Service"),
    ({"parentRefs": [{"name": "a", "kind": "Service"}, {"name": "b", "kind": "Service"}]}, "spec.parentRefs",
     "expected exactly one parentRef"),
    ({"parentRefs": [{"name": "g", "kind": "Gateway"}]}, "spec.parentRefs[0].kind", "expected one of Server, Service"),
    ({"parentRefs": [{"name": "a", "kind": "Service", "namespace": "other"}]}, "spec.parentRefs[0].namespace", "another namespace"),
    ({"parentRefs": [{"name": "a", "kind": "Service", "group": "apps"}]}, "spec.parentRefs[0].group", "expected one of"),
    ({"parentRefs": [{"name": "emoji-http", "kind": "Server"}], "rules": [{"backendRefs": [{"name": "x"}]}]},
     "spec.rules[0].backendRefs", "a Server's route is a part of its traffic"),
    ({"parentRefs": [{"name": "emoji-http", "kind": "Server"}], "rules": [{"matches": [{"queryParams": [{"name": "a", "value": "b"}]}]}]},
     "spec.rules[0].matches[0].queryParams", "unknown field"),
    ({"rules": [{"backendRefs": [{"name": "b", "weight": 0}]}]}, "spec.rules[0].backendRefs", "a weight above 0"),
])
def test_refusals_name_the_field(spec, field, words):
    with pytest.raises(PolicyError) as raised:
        parse(spec_with(**spec), "route.yaml", 0)
    assert raised.value.field == field and words in raised.value.message, raised.value


def test_the_server_form_is_unchanged_and_not_a_traffic_route():
    server_route = spec_with(parentRefs=[{"name": "emoji-http", "kind": "Server", "group": "policy.linkerd.io"}],
                             rules=[{"matches": [{"path": {"value": "/api/list"}, "method": "GET"}]}])
    route = parse(server_route, "t", 0)
    assert not traffic_route(route) and route.spec.servers == ("emoji-http",)  # type: ignore[union-attr]
    assert "GET" in METHODS


async def test_a_linkerd_route_on_a_service_sends_by_header_through_a_real_sidecar(mesh: Mesh):
    """The task: frontend's sidecar sends to backend-a, and to backend-b when x-request-id says so."""
    runners = []
    try:
        for version in ("a", "b"):
            runner, port = await start_echo_app(version)
            runners.append(runner)
            proxy = mesh.start_proxy("test", f"backend-{version}", port, name=f"backend-{version}")
            mesh.register("test", f"backend-{version}-podinfo", "0", proxy.ports["inbound"], spiffe("test", f"backend-{version}"))
        client = mesh.start_proxy("test", "frontend", port, name="frontend")
        apply(mesh, BACKEND_ROUTER)
        async with aiohttp.ClientSession() as session:
            url = "http://backend-a-podinfo:9898/echo"
            await until(lambda: fetch(session, client.outbound, url, headers={"x-meshdojo-debug": "1"}),
                        lambda r: "backend-router" in r[1].get("x-meshdojo-fate", ""), "the route to reach frontend's sidecar")
            plain = {json.loads(body)["served_by"] for _, _, body in await many(session, client.outbound, url, 10)}
            alternative = {json.loads(body)["served_by"] for _, _, body in
                           await many(session, client.outbound, url, 10, headers={"x-request-id": "alternative"})}
            assert plain == {"a"} and alternative == {"b"}, (plain, alternative)
            status, headers, _ = await fetch(session, client.outbound, url, headers={"x-meshdojo-debug": "1"})
            assert status == 200 and "route=test/backend-router" in headers["x-meshdojo-fate"], headers
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.mark.timeout(180)
def test_the_shipped_linkerd_route_on_reviews_from_the_cli(cli):
    """bookinfo's reviews, routed by Linkerd's HTTPRoute: jason's requests from productpage take
    the first rule (reviews-v2), the others the second; get and routes show the route."""
    from sandbox.processes import wait_until
    from tests.test_sandbox import DEMO_POLICIES

    cli.run("up", "--no-tui", "--demo", "bookinfo")
    applied = cli.run("apply", "-f", str(DEMO_POLICIES.parent.parent / "bookinfo/policies/reviews-jason-v2-linkerd.yaml")).stdout
    assert "httproute.policy.linkerd.io/reviews-router created" in applied, applied
    listed = cli.run("get", "httproutes.policy.linkerd.io", "-n", "bookinfo").stdout
    assert "svc/reviews" in listed and "2 rules" in listed, listed

    def taken() -> dict[str, float] | None:
        for who in ("jason", "someone"):
            cli.run("load", "svc/reviews", "/reviews/0", "--from", "deploy/productpage-v1", "--namespace", "bookinfo",
                    "-H", f"end-user:{who}", "-n", "3", "-c", "1")
        rows = json.loads(cli.run("routes", "svc/reviews", "-n", "bookinfo", "--from", "deploy/productpage-v1", "-o", "json",
                                  "-t", "30s").stdout)
        rps = {r["route"]: r["effective_rps"] for r in rows}
        return rps if all(rps.get(f"bookinfo/reviews-router#{i}") for i in (0, 1)) else None

    rps = wait_until(taken, 30, "productpage's requests counted under both rules of the Linkerd route")
    assert set(rps) >= {"bookinfo/reviews-router#0", "bookinfo/reviews-router#1"}, rps
    described = cli.run("describe", "deploy/reviews-v1", "-n", "bookinfo").stdout
    assert "HTTPRoute.policy.linkerd.io bookinfo/reviews-router" in described, described  # by its own kind
