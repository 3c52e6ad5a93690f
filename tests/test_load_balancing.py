"""A DestinationRule's loadBalancer (Istio's trafficPolicy.loadBalancer, the host's or a
subset's own): read with Istio's one-of rules and refused by field; picked by the caller's
sidecar — each pod in turn, the fewer in flight, any, or a hash of the request's key on a ring
(the same key, the same pod; few keys move when a pod comes); and through real sidecars: round
robin over three reviews pods, sticky by header and by a cookie the sidecar sets, a subset's own
policy over the host's, and each request's fate naming the rule."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import aiohttp
import pytest

from controlplane.loadbalancing import HashKey, LoadBalancerSpec
from controlplane.policy import PolicyError, parse
from proxy.balancer import P2cBalancer
from proxy.balancing import Picker, RequestKeys, caller_address, hash_input, set_cookie
from tests.apps import start_echo_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, fetch

ENDPOINTS = [(f"10.0.0.{i}", 9080) for i in range(3)]


def dr(policy: dict | None = None, subsets: list | None = None) -> dict:
    spec: dict[str, Any] = {"host": "reviews"}
    if policy is not None:
        spec["trafficPolicy"] = {"loadBalancer": policy}
    if subsets is not None:
        spec["subsets"] = subsets
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "reviews", "namespace": "bookinfo"},
            "spec": spec}


def balancer(policy: dict) -> LoadBalancerSpec:
    return parse(dr(policy), "t.yaml", 0).spec.balancer


def test_istios_load_balancer_fields_read_as_what_the_sidecar_does():
    assert balancer({"simple": "ROUND_ROBIN"}) == LoadBalancerSpec("ROUND_ROBIN")
    assert balancer({"simple": "LEAST_CONN"}) == LoadBalancerSpec("LEAST_REQUEST")  # its old name
    assert balancer({"simple": "UNSPECIFIED"}).describe() == "peak-EWMA (meshdojo's default)"
    sticky = balancer({"consistentHash": {"httpHeaderName": "End-User", "ringHash": {"minimumRingSize": 64}}})
    assert sticky == LoadBalancerSpec("HASH", HashKey(header="end-user"), 64) and sticky.describe() == "sticky by header end-user"
    cookie = balancer({"consistentHash": {"httpCookie": {"name": "user", "ttl": "1h", "path": "/"}}})
    assert cookie.describe() == "sticky by cookie user, set when missing (for 60m)"
    assert balancer({"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 65537}}}).ring_size == 65537
    assert balancer({"consistentHash": {"httpQueryParameterName": "u"}}).describe() == "sticky by query parameter u"
    rule = parse(dr({"simple": "RANDOM"}, [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}},
                                           {"name": "v2", "labels": {"version": "v2"}}]), "t.yaml", 0).spec
    assert rule.balancer_for("v1").algorithm == "ROUND_ROBIN" and rule.balancer_for("v2").algorithm == "RANDOM"
    assert rule.balancer_for(None).algorithm == "RANDOM"
    assert rule.describe() == "subsets v1 (version=v1; ROUND_ROBIN), v2 (version=v2); balance RANDOM"


@pytest.mark.parametrize("policy, field, words", [
    ({}, "spec.trafficPolicy.loadBalancer", "expected one of simple (e.g. ROUND_ROBIN) and consistentHash"),
    ({"simple": "ROUND_ROBIN", "consistentHash": {"useSourceIp": True}}, "spec.trafficPolicy.loadBalancer", "not both"),
    ({"simple": "PASSTHROUGH"}, "spec.trafficPolicy.loadBalancer.simple", "expected LEAST_REQUEST, ROUND_ROBIN or RANDOM"),
    ({"simple": "FASTEST"}, "spec.trafficPolicy.loadBalancer.simple", "ROUND_ROBIN"),
    ({"consistentHash": {}}, "spec.trafficPolicy.loadBalancer.consistentHash", "expected one of httpHeaderName, httpCookie"),
    ({"consistentHash": {"httpHeaderName": "a", "useSourceIp": True}}, "spec.trafficPolicy.loadBalancer.consistentHash", "not 2"),
    ({"consistentHash": {"useSourceIp": False}}, "spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp", "expected true"),
    ({"consistentHash": {"httpHeaderName": "a", "ringHash": {}, "maglev": {}}}, "spec.trafficPolicy.loadBalancer.consistentHash",
     "expected one of ringHash, maglev, minimumRingSize"),
    ({"consistentHash": {"httpCookie": {"ttl": "1h"}}}, "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie", "name"),
    ({"localityLbSetting": {"enabled": True}}, "spec.trafficPolicy.loadBalancer.localityLbSetting", "unknown field"),
])
def test_refusals_name_the_field(policy, field, words):
    with pytest.raises(PolicyError) as refused:
        parse(dr(policy), "t.yaml", 0)
    assert f"t.yaml: document 0: {field}" in str(refused.value) and words in str(refused.value), str(refused.value)


def test_each_algorithm_picks_as_it_says():
    picker: Picker = Picker(P2cBalancer(random.Random(1)), random.Random(1))
    turns = [picker.pick(LoadBalancerSpec("ROUND_ROBIN"), ENDPOINTS, lambda e: e, turn="reviews") for _ in range(9)]
    assert [turns[i:i + 3] for i in (0, 3, 6)] == [turns[:3]] * 3 and sorted(turns[:3]) == ENDPOINTS
    # another Service keeps its own turn
    assert picker.pick(LoadBalancerSpec("ROUND_ROBIN"), ENDPOINTS[:2], lambda e: e, turn="ratings") in ENDPOINTS[:2]
    assert picker.pick(LoadBalancerSpec("ROUND_ROBIN"), ENDPOINTS, lambda e: e, turn="reviews") == turns[0]

    picker.p2c.load(ENDPOINTS[0]).pending = 5  # busy: of any two drawn, the other is taken
    least = Counter(picker.pick(LoadBalancerSpec("LEAST_REQUEST"), ENDPOINTS, lambda e: e) for _ in range(300))
    assert least[ENDPOINTS[0]] == 0 and least[ENDPOINTS[1]] > 100 and least[ENDPOINTS[2]] > 100, least

    spread = Counter(picker.pick(LoadBalancerSpec("RANDOM"), ENDPOINTS, lambda e: e) for _ in range(3000))
    assert all(900 < n < 1100 for n in spread.values()), spread

    sticky = LoadBalancerSpec("HASH", HashKey(header="end-user"))
    assert len({picker.pick(sticky, ENDPOINTS, lambda e: e, hashed="jason") for _ in range(20)}) == 1
    assert len({picker.pick(sticky, list(reversed(ENDPOINTS)), lambda e: e, hashed="jason") for _ in range(5)} |
               {picker.pick(sticky, ENDPOINTS, lambda e: e, hashed="jason")}) == 1  # the order of the endpoints does not matter
    users = {f"user{i}": picker.pick(sticky, ENDPOINTS, lambda e: e, hashed=f"user{i}") for i in range(3000)}
    assert all(800 < n < 1200 for n in Counter(users.values()).values()), Counter(users.values())
    grown = {u: picker.pick(sticky, [*ENDPOINTS, ("10.0.0.9", 9080)], lambda e: e, hashed=u) for u in users}
    moved = [u for u in users if grown[u] != users[u]]
    to_new = [u for u in moved if grown[u] == ("10.0.0.9", 9080)]
    assert len(moved) < 0.4 * len(users) and 0.2 * len(users) < len(to_new), (len(moved), len(to_new))  # not a reshuffle
    without = Counter(picker.pick(sticky, ENDPOINTS, lambda e: e, hashed=None) for _ in range(300))
    assert len(without) == 3  # a request without the key goes to any pod


def test_the_hashed_key_of_a_request():
    headers = {"end-user": "jason", "cookie": 'a=1; user="u-42"; b=2'}
    keys = RequestKeys(headers.get, "/reviews/0?u=7&x=1", "127.0.0.1:5555", "127.0.0.1:15001")
    assert hash_input(HashKey(header="end-user"), keys) == ("jason", None)
    assert hash_input(HashKey(cookie="user"), keys) == ("u-42", None)
    assert hash_input(HashKey(query="u"), keys) == ("7", None)
    assert hash_input(HashKey(source_ip=True), keys) == ("127.0.0.1", None)
    # at a sidecar the app comes over loopback: its pod stands for its IP, so two pods' apps hash apart
    pods = {hash_input(HashKey(source_ip=True), RequestKeys(headers.get, "/", caller_address("127.0.0.1:5555", pod), ""))[0]
            for pod in ("productpage-v1-a", "productpage-v1-b")}
    assert pods == {"productpage-v1-a", "productpage-v1-b"}
    assert caller_address("10.1.2.3:4444", "") == "10.1.2.3:4444" == caller_address("10.1.2.3:4444", "productpage-v1-a")
    assert hash_input(HashKey(cookie="other"), keys) == (None, None)  # no ttl: no cookie is made
    value, made = hash_input(HashKey(cookie="other", cookie_ttl=3600), keys)
    assert value == made and len(made) == 16
    assert hash_input(HashKey(cookie="other", cookie_ttl=3600), keys)[1] == made  # one connection, one value
    assert set_cookie(HashKey(cookie="other", cookie_ttl=3600, cookie_path="/"), made) == f'other="{made}"; Max-Age=3600; Path=/; HttpOnly'.encode()
    assert set_cookie(HashKey(cookie="other", cookie_ttl=0), made) == f'other="{made}"; HttpOnly'.encode()  # a session cookie


async def test_round_robin_sticky_sessions_and_a_subsets_own_policy_through_real_sidecars(mesh: Mesh):
    runners = []
    try:
        for version in ("v1", "v2", "v3"):
            runner, port = await start_echo_app(version)
            runners.append(runner)
            proxy = mesh.start_proxy("bookinfo", "reviews", port, name=f"reviews-{version}", labels={"app": "reviews", "version": version})
            mesh.register("bookinfo", "reviews", version, proxy.ports["inbound"], spiffe("bookinfo", "reviews"),
                          labels={"app": "reviews", "version": version})
        client = mesh.start_proxy("bookinfo", "productpage", port, name="productpage")
        url = "http://reviews:9080/reviews/0"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            async def served(n: int, **kw: Any) -> list[str]:
                return [json.loads((await fetch(session, client.outbound, url, **kw))[2])["served_by"] for _ in range(n)]

            await until(lambda: served(3), lambda got: len(got) == 3, "reviews' three pods to be known")

            # ROUND_ROBIN: one request at a time, each pod in turn
            apply(mesh, dr({"simple": "ROUND_ROBIN"}))
            debug = {"x-meshdojo-debug": "1"}
            await until(lambda: fetch(session, client.outbound, url, headers=debug),
                        lambda r: "balance=ROUND_ROBIN by DestinationRule bookinfo/reviews" in r[1].get("x-meshdojo-fate", ""),
                        "the DestinationRule to reach productpage's sidecar")
            turns = await served(9)
            assert sorted(turns[:3]) == ["v1", "v2", "v3"] and turns == turns[:3] * 3, turns

            # sticky by header: jason always to one pod; many users over all three
            apply(mesh, dr({"consistentHash": {"httpHeaderName": "end-user"}}))
            await until(lambda: fetch(session, client.outbound, url, headers={**debug, "end-user": "jason"}),
                        lambda r: "balance=sticky by header end-user by DestinationRule bookinfo/reviews" in r[1].get("x-meshdojo-fate", ""),
                        "the sticky DestinationRule")
            assert len(set(await served(10, headers={"end-user": "jason"}))) == 1
            everyone = {user: (await served(1, headers={"end-user": user}))[0] for user in (f"user{i}" for i in range(30))}
            assert set(everyone.values()) == {"v1", "v2", "v3"}, everyone
            again = {user: (await served(1, headers={"end-user": user}))[0] for user in list(everyone)[:10]}
            assert again == {user: everyone[user] for user in again}

            # sticky sessions by a cookie the sidecar sets: the browser sends it back, and stays on one pod
            apply(mesh, dr({"consistentHash": {"httpCookie": {"name": "session", "ttl": "0s", "path": "/"}}}))
            first = await until(lambda: fetch(session, client.outbound, url),
                                lambda r: "set-cookie" in {k.lower() for k in r[1]}, "the cookie DestinationRule")
            cookie = next(v for k, v in first[1].items() if k.lower() == "set-cookie")
            assert cookie.startswith('session="') and cookie.endswith('"; Path=/; HttpOnly'), cookie
            value = cookie.split('"')[1]
            pod = json.loads(first[2])["served_by"]
            status, headers, body = await fetch(session, client.outbound, url, headers={"cookie": f"session={value}"})
            assert "set-cookie" not in {k.lower() for k in headers}  # it has one: none is set
            assert set(await served(10, headers={"cookie": f"session={value}"})) == {pod}

            # a subset's own loadBalancer wins over the host's, for the requests the route sends to that subset
            apply(mesh, dr({"consistentHash": {"httpHeaderName": "end-user"}},
                           [{"name": "new", "labels": {"app": "reviews"}, "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}]),
                  {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": "bookinfo"},
                   "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "new"}}]}]}})
            await until(lambda: fetch(session, client.outbound, url, headers={**debug, "end-user": "jason"}),
                        lambda r: "subset=new, balance=ROUND_ROBIN by DestinationRule" in r[1].get("x-meshdojo-fate", ""), "the subset's policy")
            assert sorted(await served(3, headers={"end-user": "jason"})) == ["v1", "v2", "v3"]

            # the ingress gateway is a caller too: the VirtualService is the sidecars' (mesh), the DestinationRule everyone's
            gateway = mesh.start_gateway("bookinfo", "reviews.bookinfo:9080")
            front = f"http://127.0.0.1:{gateway.ports['outbound']}/reviews/0"
            await until(lambda: fetch(session, None, front, headers={**debug, "end-user": "jason"}),
                        lambda r: "balance=sticky by header end-user" in r[1].get("x-meshdojo-fate", ""), "the gateway")
            at_gateway = [json.loads((await fetch(session, None, front, headers={"end-user": "jason"}))[2])["served_by"] for _ in range(10)]
            assert len(set(at_gateway)) == 1, at_gateway

            # useSourceIp: the app reaches its sidecar over loopback; its pod stands for its IP, so all its requests go to one pod
            apply(mesh, dr({"consistentHash": {"useSourceIp": True}}, [{"name": "new", "labels": {"app": "reviews"}}]))
            await until(lambda: fetch(session, client.outbound, url, headers=debug),
                        lambda r: "balance=sticky by the caller's IP by DestinationRule" in r[1].get("x-meshdojo-fate", ""), "useSourceIp")
            assert len(set(await served(10))) == 1
    finally:
        for runner in runners:
            await runner.cleanup()


def test_tap_on_the_cli_and_in_the_ui_say_the_subset_and_how_the_pod_was_picked():
    from sandbox.tapcli import render
    from tui.render import fate_lines

    fate = {"route": "bookinfo/reviews#0", "backend": "reviews", "subset": "v1",
            "balance": "sticky by header end-user by DestinationRule bookinfo/reviews", "attempts": ["reviews-v1 -> 200"]}
    event = {"kind": "end", "id": 1, "direction": "outbound", "src": "productpage-v1", "dst": "reviews-v1", "tls": True,
             "status": 200, "latency_ms": 1.5, "fate": fate}
    line = render(event)
    assert "subset=v1, balance=sticky by header end-user by DestinationRule bookinfo/reviews, attempts=1" in line, line
    lines = fate_lines(event)
    assert "subset     v1" in lines and "balance    sticky by header end-user by DestinationRule bookinfo/reviews" in lines, lines
    plain = fate_lines({**event, "fate": {"attempts": ["reviews-v1 -> 200"]}})
    assert not [x for x in plain if x.startswith(("subset", "balance"))], plain  # shown only when set
