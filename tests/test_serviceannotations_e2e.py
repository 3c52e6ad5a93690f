"""Linkerd's retries and circuit-breaking tasks, done as Linkerd's docs do them — annotations on
the Service — through real proxies."""

from __future__ import annotations

import aiohttp

from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc, fetch, linkerds_retries_and_timeout_act, many

ANNOTATIONS = "/v1/services/emojivoto/emoji/annotations"


def annotate(mesh: Mesh, annotations: dict) -> None:
    status, body = mesh.call("PUT", ANNOTATIONS, {"annotations": annotations})
    assert status == 200, body


async def test_retry_and_timeout_annotations_on_the_service(emoji_mesh):
    mesh, _server, client = emoji_mesh
    await linkerds_retries_and_timeout_act(mesh, client, lambda annotations: annotate(mesh, annotations), "emojivoto/emoji.annotations#0")
    async with aiohttp.ClientSession() as session:
        annotate(mesh, {})  # kubectl annotate svc/emoji retry.linkerd.io/http- ...: no route, no retries
        await until(lambda: fetch(session, client.outbound, "http://emoji/", headers={"x-meshdojo-debug": "1"}),
                    lambda r: "route=" not in r[1].get("x-meshdojo-fate", ""), "the route to go")
        without = [s for s, _, _ in await many(session, client.outbound, "http://emoji/", 200)]
        assert without.count(503) > 20, without.count(503)  # the fault's 30 % shows again


async def test_a_wrong_annotation_is_refused_and_nothing_changes(emoji_mesh):
    mesh, _server, _client = emoji_mesh
    annotate(mesh, {"retry.linkerd.io/http": "5xx"})
    status, body = mesh.call("PUT", ANNOTATIONS, {"annotations": {"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "lots"}})
    assert status == 400 and body["field"] == "metadata.annotations.retry.linkerd.io/limit"
    assert body["error"].startswith("Service emojivoto/emoji: metadata.annotations.retry.linkerd.io/limit: expected a number")
    status, body = mesh.call("PUT", ANNOTATIONS, {"annotations": {"example.com/owner": "me"}})
    assert status == 400 and "not example.com/owner" in body["error"]
    status, body = mesh.call("PUT", "/v1/services/emojivoto/nothing/annotations", {"annotations": {}})
    assert status == 404
    _status, services = mesh.call("GET", "/v1/services")
    [emoji] = [s for s in services["services"] if s["name"] == "emoji"]
    assert emoji["annotations"] == {"retry.linkerd.io/http": "5xx"}
    _status, routes = mesh.call("GET", "/v1/routes?service=emoji&namespace=emojivoto")  # `meshdojo routes svc/emoji`
    assert [(r["route"], r["match"]) for r in routes["rows"]] == [("emojivoto/emoji.annotations#0", "everything [retries on 500-599, up to 1]")]
    _status, policies = mesh.call("GET", "/v1/policies")
    assert policies["items"] == [] and policies["annotationProblems"] == []  # nothing applied: `get` lists what was


async def test_failure_accrual_annotation_leaves_the_bad_replica_out(emoji_mesh, echo_port):
    """Linkerd's circuit-breaking task: one replica always fails; with
    balancer.linkerd.io/failure-accrual=consecutive on the Service the client stops sending to it."""
    mesh, _server, client = emoji_mesh
    bad = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji-1")
    mesh.register("emojivoto", "emoji", "emoji-1", bad.ports["inbound"], spiffe("emojivoto", "emoji"))
    apply(mesh, doc("FaultInjection", "bad-replica", {"targetRef": {"kind": "Pod", "name": "emoji-1"},
                                                      "abort": {"httpStatus": 500, "percentage": {"value": 100}}}))
    async with aiohttp.ClientSession() as session:
        before = await until(lambda: many(session, client.outbound, "http://emoji/", 100),
                             lambda r: sum(s == 500 for s, _, _ in r) > 20, "the bad replica's 500s")
        assert sum(s == 200 for s, _, _ in before) < 80
        annotate(mesh, {"balancer.linkerd.io/failure-accrual": "consecutive",
                        "balancer.linkerd.io/failure-accrual-consecutive-max-failures": "3",
                        "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "30s"})
        await until(lambda: many(session, client.outbound, "http://emoji/", 20), lambda r: all(s == 200 for s, _, _ in r),
                    "the bad replica to be left out", 10)
        after = [s for s, _, _ in await many(session, client.outbound, "http://emoji/", 200)]
        assert after.count(200) == 200, after.count(500)
    assert 'state="open"' in client.metrics()
