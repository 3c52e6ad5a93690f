"""A backend's own header edits: Gateway API's ``backendRefs[].filters`` (RequestHeaderModifier,
ResponseHeaderModifier) and Istio's ``route[].headers`` on a VirtualService destination — read,
refused by field for what acts on the whole rule, shown by ``routes``, and applied by a real
sidecar to the requests that go to that backend and to its answers only."""

from __future__ import annotations

import json

import aiohttp
import pytest

from controlplane.policy import PolicyError, parse
from tests.meshkit import Mesh
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc, fetch, many, reviews_versions


def split(v1_filters: list | None = None) -> dict:
    return doc("HTTPRoute", "reviews-split", {"parentRefs": [{"kind": "Service", "name": "reviews"}], "rules": [{"backendRefs": [
        {"name": "reviews-v1", "weight": 50, "filters": v1_filters or [
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-version", "value": "v1"}]}},
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x-secret"]}}]},
        {"name": "reviews-v3", "weight": 50, "filters": [
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-version", "value": "v3"}]}}]}]}]},
               ns="bookinfo")


def test_backend_filters_are_read_shown_and_refused_by_field():
    rule = parse(split(), "t.yaml", 0).spec.rules[0]
    assert rule.describe() == ("everything -> reviews-v1 50, reviews-v3 50 [reviews-v1: request headers: remove x-secret; "
                               "response headers: set x-version: v1] [reviews-v3: response headers: set x-version: v3]")
    with pytest.raises(PolicyError) as refused:
        parse(split([{"type": "URLRewrite", "urlRewrite": {"hostname": "elsewhere"}}]), "t.yaml", 0)
    assert "spec.rules[0].backendRefs[0].filters[0].type: URLRewrite: a backendRef's filters here edit headers only" in str(refused.value)
    istio = parse({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": "bookinfo"},
                   "spec": {"hosts": ["reviews"], "http": [{"route": [
                       {"destination": {"host": "reviews", "subset": "v1"}, "weight": 90, "headers": {"response": {"add": {"x-v": "1"}}}},
                       {"destination": {"host": "reviews", "subset": "v3"}, "weight": 10}]}]}}, "t.yaml", 0)
    assert "[reviews/v1: response headers: add x-v: 1]" in istio.spec.rules[0].describe()
    with pytest.raises(PolicyError) as refused:
        parse({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": "bookinfo"},
               "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"},
                                                                    "headers": {"request": {"set": {"bad name": "x"}}}}]}]}}, "t.yaml", 0)
    assert "spec.http[0].route[0].headers.request.set.bad name: expected a header name" in str(refused.value)


async def test_each_backend_edits_its_own_requests_and_answers_through_a_real_sidecar(mesh: Mesh):
    async with reviews_versions(mesh, "v1", "v3") as client:
        apply(mesh, split())
        url = "http://reviews:9080/reviews/0"
        async with aiohttp.ClientSession() as session:
            await until(lambda: fetch(session, client.outbound, url, headers={"x-meshdojo-debug": "1"}),
                        lambda r: "reviews-split" in r[1].get("x-meshdojo-fate", ""), "the route")
            answers = await many(session, client.outbound, url, 40)
            versions = {(json.loads(body)["served_by"], headers.get("x-version")) for _, headers, body in answers}
            assert versions == {("v1", "v1"), ("v3", "v3")}, versions  # each answer edited by its own backend's filter
            _, headers, _ = await until(lambda: fetch(session, client.outbound, url, headers={"x-meshdojo-debug": "1"}),
                                        lambda r: r[1].get("x-version") == "v1", "an answer from v1")
            assert "request headers for reviews-v1: remove x-secret; response headers from reviews-v1: set x-version: v1" \
                in headers["x-meshdojo-fate"], headers
