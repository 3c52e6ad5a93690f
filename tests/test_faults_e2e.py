"""FaultInjection end to end: applied through the operator API, pushed to the destination's
inbound proxy, and seen by a client through the mesh."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.meshkit import Mesh, eventually, spiffe
from tests.test_policy import with_change

EMOJI = spiffe("emojivoto", "emoji")


def fault(name: str = "emoji-fault", **spec) -> dict:
    doc = with_change("metadata", {"name": name, "namespace": "emojivoto"})
    doc["spec"] = {"targetRef": {"kind": "Service", "name": "emoji"}, **spec}
    return doc


def apply(mesh: Mesh, *docs: dict) -> tuple[int, dict]:
    return mesh.call("POST", "/v1/policies", {"documents": [{"source": "test.yaml", "index": i, "document": d}
                                                             for i, d in enumerate(docs)]})


async def statuses(session: aiohttp.ClientSession, proxy: str, n: int, path: str = "/") -> list[int]:
    async def one() -> int:
        async with session.get(f"http://emoji{path}", proxy=proxy) as rsp:
            await rsp.read()
            return rsp.status

    results = []
    for _ in range(n // 10):
        results += await asyncio.gather(*(one() for _ in range(10)))
    return results


async def until(probe, accept, what: str, timeout: float = 3.0):
    return await eventually(probe, accept, what, timeout)


async def test_abort_percentage_delete_and_expiry(mesh: Mesh, echo_port: int):
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji")
    client = mesh.start_proxy("emojivoto", "web", echo_port, name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], EMOJI)
    async with aiohttp.ClientSession() as session:
        assert set(await statuses(session, client.outbound, 20)) == {200}

        status, body = apply(mesh, fault(abort={"httpStatus": 503, "percentage": {"value": 30}}))
        assert status == 200 and body["applied"][0]["action"] == "created" and body["warnings"] == []
        await until(lambda: statuses(session, client.outbound, 10), lambda s: 503 in s, "the fault to reach the proxy")
        results = await statuses(session, client.outbound, 400)
        success = results.count(200) / len(results)
        assert 0.62 < success < 0.78, success  # 70 % ± 3.5 standard deviations
        assert set(results) == {200, 503}
        assert 'inbound_fault_injected_total{kind="abort",policy="emojivoto/emoji-fault"}' in server.metrics()

        status, _ = mesh.call("DELETE", "/v1/policies/FaultInjection/emojivoto/emoji-fault")
        assert status == 200
        await until(lambda: statuses(session, client.outbound, 20), lambda s: set(s) == {200}, "the fault to be removed")

        # time-boxed: it removes itself
        apply(mesh, fault(abort={"httpStatus": 500}, duration="1s"))
        await until(lambda: statuses(session, client.outbound, 10), lambda s: set(s) == {500}, "the timed fault")
        await until(lambda: statuses(session, client.outbound, 10), lambda s: set(s) == {200}, "the timed fault to expire")
        await until(lambda: asyncio.to_thread(mesh.call, "GET", "/v1/policies"), lambda r: r[1]["items"] == [],
                    "the control plane to drop the expired resource")


async def test_delay_with_a_header_match_and_invalid_batches_change_nothing(mesh: Mesh, echo_port: int):
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji")
    client = mesh.start_proxy("emojivoto", "web", echo_port, name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], EMOJI)
    status, body = apply(mesh, fault("good", abort={"httpStatus": 500}), fault("bad", delay={"fixedDelay": "soon"}))
    assert status == 400 and "nothing was applied" in body["error"]
    assert body["errors"] == [{"source": "test.yaml", "index": 1, "field": "spec.delay.fixedDelay",
                               "message": "'soon' is not a duration (valid: 500ms, 2s, 1m)"}]
    assert mesh.call("GET", "/v1/policies")[1]["items"] == []
    ghost = fault("ghost", abort={"httpStatus": 500})
    ghost["spec"]["targetRef"]["name"] = "ghost"
    status, body = apply(mesh, ghost)
    assert status == 200 and "service ghost.emojivoto does not exist (yet)" in body["warnings"][0]
    mesh.call("DELETE", "/v1/policies/FaultInjection/emojivoto/ghost")

    apply(mesh, fault("slow-for-jason", delay={"fixedDelay": "400ms"}, match={"headers": [{"name": "end-user", "value": "jason"}]}))
    async with aiohttp.ClientSession() as session:
        async def timed(headers: dict) -> tuple[float, str | None]:
            started = time.monotonic()
            async with session.get("http://emoji/", proxy=client.outbound, headers=headers) as rsp:
                await rsp.read()
                return time.monotonic() - started, rsp.headers.get("x-meshdojo-fault")

        elapsed, marker = await until(lambda: timed({"end-user": "jason"}), lambda r: r[1] is not None, "the delay")
        assert elapsed >= 0.4 and marker == "delay 0.4s emojivoto/slow-for-jason"
        elapsed, marker = await timed({"end-user": "someone-else"})
        assert marker is None and elapsed < 0.4


async def test_one_bad_instance_then_failure_accrual_takes_it_out(mesh: Mesh, echo_port: int):
    """Linkerd's failure-accrual lesson: one failing replica behind a healthy one. A Pod-targeted
    fault fails emoji-1 only; a CircuitBreaker ejects it and callers see success again. A
    network fault on one instance (--instance) resets connections to that one only."""
    healthy = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji-0")
    bad = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji-1")
    client = mesh.start_proxy("emojivoto", "web", echo_port, name="web")
    for proxy, instance in ((healthy, "emoji-0"), (bad, "emoji-1")):
        status, body = mesh.call("PUT", "/v1/services/emojivoto/emoji", {"ports": [8080], "selector": {"app": "emoji"}})
        assert status == 200, body
        status, body = mesh.call("PUT", f"/v1/services/emojivoto/emoji/endpoints/{instance}", {
            "address": "127.0.0.1", "port": proxy.ports["inbound"], "identity": EMOJI, "labels": {"app": "emoji"}, "instance": instance})
        assert status == 200, body
    status, body = apply(mesh, {**fault("emoji-1-fault"), "spec": {"targetRef": {"kind": "Pod", "name": "emoji-1"},
                                                                   "abort": {"httpStatus": 503}}})
    assert status == 200, body
    async with aiohttp.ClientSession() as session:
        seen = await until(lambda: statuses(session, client.outbound, 40), lambda r: 503 in r and 200 in r, "one bad instance")
        assert 0.2 < seen.count(503) / 40 < 0.95  # the balancer still sends to both (fast failures even attract it)
        assert "emoji-1-fault" in str(bad.config()["policies"]["inbound"]) and healthy.config()["policies"]["inbound"] == {}
        status, body = apply(mesh, {**fault("emoji-breaker"), "kind": "CircuitBreaker",
                                    "spec": {"targetRef": {"kind": "Service", "name": "emoji"}, "consecutiveFailures": 2,
                                             "penalty": "30s", "maxPenalty": "30s"}})
        assert status == 200, body
        after = await until(lambda: statuses(session, client.outbound, 40), lambda r: r.count(200) == 40, "emoji-1 to be ejected", 5)
        assert set(after) == {200}
        mesh.call("DELETE", "/v1/policies/FaultInjection/emojivoto/emoji-1-fault")
        mesh.call("DELETE", "/v1/policies/CircuitBreaker/emojivoto/emoji-breaker")
        status, body = mesh.call("POST", "/v1/netfaults", {"kind": "reset", "to": {"namespace": "emojivoto", "service": "emoji",
                                                                                      "instance": "emoji-1"}, "duration": "1m"})
        assert status == 200 and "instance emoji-1 only" in body["applied"]["description"], body
        reset = await until(lambda: statuses(session, client.outbound, 40), lambda r: any(s >= 500 for s in r) and 200 in r,
                            "connections to emoji-1 only to be reset", 5)
        assert reset.count(200) >= 20  # emoji-0 keeps serving; an endpoint it cannot reach the balancer avoids
