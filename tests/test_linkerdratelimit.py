"""Linkerd's HTTPLocalRateLimitPolicy (controlplane/linkerdratelimit.py, proxy/ratelimit.py): its
Configuring Rate Limiting task on emojivoto's web through the shipped files — which policy is in
force at a pod, the buckets a sidecar keeps (total, per identity with the unmeshed sharing one,
overrides shared by their callers) on an injected clock, in Linkerd's words; the warnings and the
refusals by field; get's row and the CRD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane import linkerdserver
from controlplane.crds import subset_crd
from controlplane.policy import PolicyError, Resource, canonical_kind, parse
from controlplane.selection import Workload, applicable, conflicts
from proxy.ratelimit import LocalRateLimit
from sandbox.resourcetable import table

POLICIES = Path(__file__).resolve().parent.parent / "demo-apps/emojivoto/policies"
WEB = Workload("emojivoto", "web", "web", "web-0", {"app": "web"}, port=8080, port_name="http")
GATEWAY = "spiffe://meshdojo.local/ns/emojivoto/sa/ingress-gateway"
VOTE_BOT = "spiffe://meshdojo.local/ns/emojivoto/sa/vote-bot"


def shipped(*names: str) -> list[Resource]:
    docs = [d for name in names for d in yaml.safe_load_all((POLICIES / f"{name}.yaml").read_text())]
    return [parse(doc, f"{names}", i) for i, doc in enumerate(docs)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def passed(limit: LocalRateLimit, identity: str | None, n: int) -> list[str]:
    """What n requests at one instant get: "ok", or the words of the limit each went past."""
    return ["ok" if (said := limit.check(identity)) is None else said[0] for _ in range(n)]


def in_force(resources: list[Resource]) -> LocalRateLimit:
    chosen = applicable(resources, WEB, {})["HTTPLocalRateLimitPolicy"].chosen
    assert chosen is not None
    return LocalRateLimit(chosen.spec, Clock())  # type: ignore[arg-type]


def test_the_task_four_a_second_per_identity_then_an_override_of_six():
    assert applicable(shipped("web-server"), WEB, {})["HTTPLocalRateLimitPolicy"].chosen is None  # a Server alone limits nothing
    limit = in_force(shipped("web-server", "web-ratelimit-linkerd"))
    said = passed(limit, GATEWAY, 10)  # ten at once, one identity: four pass, as in Linkerd's task
    assert said.count("ok") == 4 and said[4:] == ["per-identity rate limit exceeded: 4rps"] * 6
    assert passed(limit, VOTE_BOT, 4) == ["ok"] * 4  # another identity: a bucket of its own
    assert passed(limit, None, 5)[3:] == ["ok", "per-identity rate limit exceeded: 4rps"]  # the unmeshed: one shared bucket
    override = in_force(shipped("web-server", "web-ratelimit-override"))
    said = passed(override, GATEWAY, 10)
    assert said.count("ok") == 6 and said[6:] == ["override rate limit exceeded: 6rps"] * 4
    assert passed(override, VOTE_BOT, 5).count("ok") == 4  # everyone else keeps 4


def test_buckets_refill_at_their_rate_and_say_when():
    clock = Clock()
    spec = parse({"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "HTTPLocalRateLimitPolicy",
                  "metadata": {"namespace": "emojivoto", "name": "rl"},
                  "spec": {"targetRef": {"kind": "Server", "name": "web-http"}, "total": {"requestsPerSecond": 2}}}, "t", 0).spec
    limit = LocalRateLimit(spec, clock)  # type: ignore[arg-type]
    assert passed(limit, GATEWAY, 2) == ["ok", "ok"]
    words, wait = limit.check(VOTE_BOT) or ("", 0.0)  # total: whoever asks
    assert words == "total rate limit exceeded: 2rps" and wait == pytest.approx(0.5)
    clock.now += 0.5
    assert passed(limit, None, 2) == ["ok", "total rate limit exceeded: 2rps"]


def test_total_counts_first_and_an_override_is_shared_by_its_callers():
    clock = Clock()
    policy = rate_limit(total={"requestsPerSecond": 10}, identity={"requestsPerSecond": 3},
                        overrides=[{"requestsPerSecond": 4, "clientRefs": [{"kind": "ServiceAccount", "name": "web"},
                                                                           {"kind": "ServiceAccount", "name": "voting"}]}])
    limit = LocalRateLimit(policy.spec, clock)  # type: ignore[arg-type]
    web, voting = "spiffe://meshdojo.local/ns/emojivoto/sa/web", "spiffe://meshdojo.local/ns/emojivoto/sa/voting"
    assert passed(limit, web, 3) == ["ok"] * 3
    assert passed(limit, voting, 2) == ["ok", "override rate limit exceeded: 4rps"]  # one bucket for both
    assert passed(limit, VOTE_BOT, 4) == ["ok"] * 3 + ["per-identity rate limit exceeded: 3rps"]
    # the total counted every one of those 9, the refused too (Linkerd's order): one more, then the total refuses
    assert passed(limit, GATEWAY, 3) == ["ok"] + ["total rate limit exceeded: 10rps"] * 2
    assert policy.spec.describe() == "total 10 rps, 3 rps per identity, 4 rps for sa/web,sa/voting"
    twice = rate_limit(overrides=[{"requestsPerSecond": n, "clientRefs": [{"kind": "ServiceAccount", "name": "web"}]} for n in (1, 2)])
    assert passed(LocalRateLimit(twice.spec, clock), web, 3)[2] == "override rate limit exceeded: 2rps"  # the last override


def test_idle_callers_buckets_are_dropped_past_the_cap(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(LocalRateLimit, "MAX_IDENTITIES", 3)
    limit = LocalRateLimit(rate_limit(identity={"requestsPerSecond": 1}).spec, clock)  # type: ignore[arg-type]
    for i in range(3):
        assert passed(limit, f"spiffe://meshdojo.local/ns/a/sa/s{i}", 2) == ["ok", "per-identity rate limit exceeded: 1rps"]
    clock.now += 0.5  # none refilled yet: all three are kept, and a fourth added
    assert passed(limit, "spiffe://meshdojo.local/ns/a/sa/s3", 1) == ["ok"]
    assert len(limit._identities) == 4
    clock.now += 5  # all refilled: dropped when the next new caller comes
    assert passed(limit, "spiffe://meshdojo.local/ns/a/sa/s4", 1) == ["ok"] and len(limit._identities) == 1


def rate_limit(name: str = "rl", server: str = "web-http", **spec: Any) -> Resource:
    return parse({"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "HTTPLocalRateLimitPolicy",
                  "metadata": {"namespace": "emojivoto", "name": name},
                  "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": server}, **spec}}, "rl.yaml", 0)


def test_one_policy_a_server_and_what_apply_warns_about():
    server = shipped("web-server")
    first, second = rate_limit("a", identity={"requestsPerSecond": 4}), rate_limit("b", total={"requestsPerSecond": 1})
    applied = applicable([*server, second, first], WEB, {})["HTTPLocalRateLimitPolicy"]
    assert applied.chosen is first and applied.conflict == ("emojivoto/a", "emojivoto/b")
    tie = conflicts([*server, first, second], [WEB], {})
    assert [c.describe() for c in tie] == [
        "HTTPLocalRateLimitPolicies emojivoto/a, emojivoto/b target the Server of emojivoto/web-0's port (a Server takes one, "
        "as in Linkerd); emojivoto/a is used (the first by name): delete the others"]
    everything = [*server, first, second]
    assert linkerdserver.warnings(first, everything, [WEB]) == []
    assert linkerdserver.warnings(second, everything, [WEB]) == [
        "HTTPLocalRateLimitPolicy emojivoto/b: Server web-http already has HTTPLocalRateLimitPolicy a, which is used (a Server "
        "takes one, the first by name): delete one of them"]
    assert linkerdserver.warnings(first, [first], [WEB]) == [
        "HTTPLocalRateLimitPolicy emojivoto/a targets Server web-http, which is not applied in emojivoto: it limits nothing "
        "until that Server is (meshdojo get servers)"]
    deny = parse({**server[0].document, "spec": {**server[0].document["spec"], "accessPolicy": "deny"}}, "s", 0)
    assert linkerdserver.warnings(first, [deny, first], [WEB]) == [
        "HTTPLocalRateLimitPolicy emojivoto/a: Server web-http has accessPolicy deny and nothing authorizes its callers, so each "
        "gets 403 before any limit counts; set accessPolicy: all-unauthenticated on it (as Linkerd's task does), or authorize them"]
    other = Workload("emojivoto", "voting", "voting", "voting-0", {"app": "voting"}, port=8080, port_name="http")
    assert applicable([*server, first], other, {})["HTTPLocalRateLimitPolicy"].chosen is None  # only the Server's pods


@pytest.mark.parametrize("spec, field, words", [
    ({}, "spec", "expected total, identity or overrides: without one there is nothing to limit"),
    ({"identity": {"requestsPerSecond": 0}}, "spec.identity.requestsPerSecond",
     "expected a whole number of requests a second from 1 to 2147483647, got 0"),
    ({"total": {"requestsPerSecond": 2}, "identity": {"requestsPerSecond": 3}}, "spec.identity.requestsPerSecond",
     "3 is more than total.requestsPerSecond (2)"),
    ({"total": {"requestsPerSecond": 2}, "overrides": [{"requestsPerSecond": 5, "clientRefs": [{"kind": "ServiceAccount", "name": "w"}]}]},
     "spec.overrides[0].requestsPerSecond", "5 is more than total.requestsPerSecond (2)"),
    ({"overrides": [{"requestsPerSecond": 5, "clientRefs": []}]}, "spec.overrides[0].clientRefs", "expected a non-empty list of clientRefs"),
    ({"overrides": [{"requestsPerSecond": 5, "clientRefs": [{"kind": "Namespace", "name": "w"}]}]},
     "spec.overrides[0].clientRefs[0].kind", "ServiceAccount"),
    ({"overrides": [{"requestsPerSecond": 5, "clientRefs": [{"kind": "ServiceAccount", "name": "W_x"}]}]},
     "spec.overrides[0].clientRefs[0]", "is not a DNS label"),
    ({"overrides": [{"requestsPerSecond": 5, "clientRefs": [{"kind": "ServiceAccount", "name": "w", "group": "apps"}]}]},
     "spec.overrides[0].clientRefs[0].group", "leave group out"),
    ({"total": {"requestsPerSecond": 1.5}}, "spec.total.requestsPerSecond", "got 1.5"),
    ({"total": {"rps": 1}}, "spec.total.rps", "requestsPerSecond"),
])
def test_refusals_name_the_field(spec, field, words):
    with pytest.raises(PolicyError) as raised:
        rate_limit(**spec)
    assert raised.value.field == field and words in raised.value.message


def test_target_must_be_a_server():
    doc = rate_limit(identity={"requestsPerSecond": 1}).document
    for target, field in (({"kind": "Service", "name": "web"}, "spec.targetRef.kind"),
                          ({"kind": "Server", "name": "web-http", "group": "gateway.networking.k8s.io"}, "spec.targetRef.group")):
        with pytest.raises(PolicyError) as raised:
            parse({**doc, "spec": {**doc["spec"], "targetRef": target}}, "t", 0)
        assert raised.value.field == field


def test_get_row_names_and_the_crd():
    policy = shipped("web-ratelimit-override")[0]
    assert canonical_kind("httplocalratelimitpolicies") == canonical_kind("HTTPLocalRateLimitPolicy") == policy.kind
    rows = table([{"document": policy.document, "expiresAt": None}])
    assert rows[1][1:5] == ("HTTPLocalRateLimitPolicy", "web-http", "server/web-http", "4 rps per identity, 6 rps for sa/ingress-gateway")
    crd = subset_crd("HTTPLocalRateLimitPolicy")
    assert crd["metadata"]["name"] == "httplocalratelimitpolicies.policy.linkerd.io"
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["identity"]["properties"]["requestsPerSecond"]["minimum"] == 1


def test_every_crd_short_name_and_plural_is_a_name_get_takes():
    from controlplane.policyschema import kube_kind
    from sandbox.kube.install import crd_manifests

    crds = crd_manifests(True)
    assert len(crds) == 30
    for crd in crds:
        names = crd["spec"]["names"]
        for name in (*names["shortNames"], f"{names['plural']}.{crd['spec']['group']}"):
            assert kube_kind(canonical_kind(name) or "") == names["kind"], name
    assert [canonical_kind(n) for n in ("cb", "rb", "rl", "srv")] == ["CircuitBreaker", "RetryBudget", "RateLimit", "Server"]
    assert canonical_kind("authorizationpolicy.policy.linkerd.io") == "AuthorizationPolicy.policy.linkerd.io"
    assert canonical_kind("authorizationpolicies") == "AuthorizationPolicy"  # the bare name is ours
