"""Every traffic decision as a pure function, with an injected clock and seeded randomness."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from controlplane import inboundpolicy
from controlplane.authzrules import RequestFacts
from controlplane.policy import PolicyError, parse
from proxy.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from proxy.budget import RetryBudget
from proxy.decisions import authorize as decide
from proxy.decisions import choose_route
from proxy.ratelimit import TokenBucket
from tests.test_balancer import FakeClock

GW = "gateway.networking.k8s.io/v1"
POL = "policy.meshdojo.dev/v1alpha1"


def authorize(policies, identity, namespace, path, method, default=inboundpolicy.DEFAULT):
    """The decision for a request with only a caller, a path and a method."""
    return decide(policies, RequestFacts(identity, namespace, method, path), default)


def route(name: str, rules: list, service: str = "reviews") -> object:
    return parse({"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": "bookinfo"},
                  "spec": {"parentRefs": [{"kind": "Service", "name": service}], "rules": rules}}, "t.yaml", 0)


def authz(name: str, action: str, rules: list, target: str | None = None) -> object:
    spec = {"action": action, "rules": rules}
    if target:
        spec["targetRef"] = {"kind": "Service", "name": target}
    return parse({"apiVersion": POL, "kind": "AuthorizationPolicy", "metadata": {"name": name, "namespace": "emojivoto"},
                  "spec": spec}, "t.yaml", 0)


def no_headers(_name: str) -> None:
    return None


def test_route_matching_order_and_header_routing():
    jason = route("a-jason", [{"matches": [{"headers": [{"name": "end-user", "value": "jason"}]}], "backendRefs": [{"name": "reviews-v2"}]},
                              {"matches": [{"path": {"type": "PathPrefix", "value": "/reviews"}, "method": "GET"}],
                               "backendRefs": [{"name": "reviews-v1"}]}])
    rng = random.Random(0)
    assert choose_route([jason], "/reviews/0", {"end-user": "jason"}.get, "GET", rng).backend == "reviews-v2"
    assert choose_route([jason], "/reviews/0", no_headers, "GET", rng).backend == "reviews-v1"
    assert choose_route([jason], "/reviews/0", no_headers, "POST", rng) is None  # method
    assert choose_route([jason], "/details", no_headers, "GET", rng) is None  # -> 404 in the proxy
    assert choose_route([jason], "/reviewsX", no_headers, "GET", rng) is None  # a prefix is per path segment


def test_header_regular_expressions_and_query_parameters_match_as_gateway_api_says():
    canary = route("canary", [
        {"matches": [{"queryParams": [{"name": "version", "value": "v3"}]}], "backendRefs": [{"name": "reviews-v3"}]},
        {"matches": [{"headers": [{"name": "End-User", "type": "RegularExpression", "value": "jason|json"}]}],
         "backendRefs": [{"name": "reviews-v2"}]},
        {"matches": [{"queryParams": [{"name": "beta", "type": "RegularExpression", "value": "[0-9]+"}]}],
         "backendRefs": [{"name": "reviews-v1"}]}])
    rng = random.Random(0)
    pick = lambda path, headers=None: choose_route([canary], path, (headers or {}).get, "GET", rng)  # noqa: E731
    assert pick("/reviews/0?version=v3").backend == "reviews-v3"
    assert pick("/reviews/0?a=1&version=v3&version=v1").backend == "reviews-v3"  # the first value counts
    assert pick("/reviews/0?Version=v3") is None  # query parameter names are case-sensitive
    assert pick("/reviews/0?version=v3x") is None  # exact is exact
    assert pick("/reviews/0", {"end-user": "json"}).backend == "reviews-v2"
    assert pick("/reviews/0", {"end-user": "jason2"}) is None  # a regular expression matches the whole value
    assert pick("/?beta=42").backend == "reviews-v1" and pick("/?beta=4x2") is None and pick("/?beta") is None
    assert [r.matches[0].describe() for r in canary.spec.rules] == ["?version=v3", "end-user~jason|json", "?beta~[0-9]+"]


def test_weighted_split_within_statistical_bounds():
    split = route("split", [{"backendRefs": [{"name": "reviews-v1", "weight": 50}, {"name": "reviews-v3", "weight": 50}]}])
    rng = random.Random(7)
    picks = Counter(choose_route([split], "/", no_headers, "GET", rng).backend for _ in range(10_000))
    assert abs(picks["reviews-v1"] / 10_000 - 0.5) < 0.02
    canary = route("canary", [{"backendRefs": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}, {"name": "v3", "weight": 0}]}])
    picks = Counter(choose_route([canary], "/", no_headers, "GET", rng).backend for _ in range(10_000))
    assert picks["v3"] == 0 and abs(picks["v2"] / 10_000 - 0.1) < 0.015


@pytest.mark.parametrize(("rules", "field"), [
    ([{"backendRefs": [{"name": "a", "weight": "half"}]}], "spec.rules[0].backendRefs[0].weight"),
    ([{"backendRefs": [{"name": "a", "weight": 0}]}], "spec.rules[0].backendRefs"),
    ([{"timeouts": {"request": "3 seconds"}}], "spec.rules[0].timeouts.request"),
    ([{"retry": {"attempts": 11}}], "spec.rules[0].retry.attempts"),
    ([{"retry": {"codes": [200]}}], "spec.rules[0].retry.codes[0]"),  # the item itself
    ([{"matches": [{"method": "FETCH"}]}], "spec.rules[0].matches[0].method"),
    ([{"matches": [{"headers": [{"name": "x", "value": "(", "type": "RegularExpression"}]}]}], "spec.rules[0].matches[0].headers[0].value"),
    ([{"matches": [{"queryParams": [{"name": "x", "value": "a", "type": "Prefix"}]}]}], "spec.rules[0].matches[0].queryParams[0].type"),
])
def test_route_validation_names_the_field(rules, field):
    with pytest.raises(PolicyError) as err:
        route("bad", rules)
    assert err.value.field == field


def test_retry_budget_arithmetic():
    clock = FakeClock()
    budget = RetryBudget(retry_ratio=0.2, min_retries_per_second=1, ttl=10, clock=clock)
    # with no traffic: the floor, min_retries_per_second x ttl = 10 retries
    assert sum(budget.withdraw() for _ in range(20)) == 10
    for _ in range(100):
        budget.deposit()
    assert budget.allowance() == pytest.approx(10 + 20 - 10)  # 20 % of 100 requests more
    assert sum(budget.withdraw() for _ in range(50)) == 20
    clock.now += 10.01  # everything has aged out of the window
    assert budget.allowance() == pytest.approx(10)


def test_breaker_trips_after_consecutive_failures_probes_once_and_doubles():
    clock = FakeClock()
    br = Breaker(consecutive_failures=3, penalty=1.0, max_penalty=4.0, jitter=0.0, clock=clock, rng=random.Random(1))
    key = ("127.0.0.1", 1)
    assert br.record(key, True) is None and br.record(key, False) is None  # a success resets the count
    for _ in range(2):
        br.record(key, True)
    assert br.state(key) == CLOSED
    assert br.record(key, True) == "tripped" and br.state(key) == OPEN and not br.admit(key)
    clock.now += 1.0
    assert br.state(key) == HALF_OPEN and br.admit(key)
    br.begin(key)
    assert not br.admit(key)  # one probe at a time
    assert br.record(key, True) == "tripped"  # the probe failed: penalty doubles
    clock.now += 1.5
    assert br.state(key) == OPEN
    clock.now += 0.5
    br.begin(key)
    assert br.record(key, False) == "closed" and br.state(key) == CLOSED


def test_breaker_jitter_stays_within_half():
    clock = FakeClock()
    br = Breaker(consecutive_failures=1, penalty=10.0, jitter=0.5, clock=clock, rng=random.Random(3))
    for i in range(200):
        br.record(("e", i), True)
    spans = [a.open_until - clock.now for a in br.endpoints.values()]
    assert 5.0 <= min(spans) and max(spans) <= 15.0 and max(spans) - min(spans) > 5


def test_linkerds_default_inbound_policy_decides_only_without_an_allow():
    from controlplane import inboundpolicy

    web = "spiffe://meshdojo.local/ns/emojivoto/sa/web"
    deny_bot = authz("deny-bot", "DENY", [{"from": [{"source": {"serviceAccounts": ["vote-bot"]}}]}])
    allow_web = authz("allow-web", "ALLOW", [{"from": [{"source": {"serviceAccounts": ["web"]}}]}])
    verdicts = {policy: (authorize([], web, "emojivoto", "/", "GET", policy).allowed,
                         authorize([], None, "emojivoto", "/", "GET", policy).allowed) for policy in inboundpolicy.POLICIES}
    assert verdicts == {"all-unauthenticated": (True, True), "cluster-unauthenticated": (True, True), "audit": (True, True),
                        "all-authenticated": (True, False), "cluster-authenticated": (True, False), "deny": (False, False)}
    denied = authorize([deny_bot], web, "emojivoto", "/", "GET", "deny")  # a DENY policy alone is no ALLOW: the default decides
    assert (denied.allowed, denied.label, denied.describe()) == (False, "default:deny", "deny by the default inbound policy deny")
    allowed = authorize([allow_web], web, "emojivoto", "/", "GET", "deny")  # an ALLOW policy: the default steps aside
    assert (allowed.allowed, allowed.label) == (True, "emojivoto/allow-web")
    assert authorize([], None, "emojivoto", "/", "GET", "audit").audited == ("default:audit",)


def test_the_default_inbound_policy_is_read_as_linkerd_reads_it():
    from controlplane.inboundpolicy import ANNOTATION, InboundPolicyError, chosen

    assert chosen({}, {}) is None
    assert chosen({}, {ANNOTATION: "deny"}) == "deny"
    assert chosen({ANNOTATION: "all-authenticated"}, {ANNOTATION: "deny"}) == "all-authenticated"  # the pod's wins
    with pytest.raises(InboundPolicyError) as refused:
        chosen({}, {ANNOTATION: "none"}, namespace_field="Namespace shop: metadata.annotations")
    assert str(refused.value).startswith(f"Namespace shop: metadata.annotations.{ANNOTATION}: expected one of all-unauthenticated")


def test_authorization_in_istios_order():
    web = "spiffe://meshdojo.local/ns/emojivoto/sa/web"
    bot = "spiffe://meshdojo.local/ns/emojivoto/sa/vote-bot"
    deny_bot = authz("deny-bot", "DENY", [{"from": [{"source": {"principals": [bot]}}]}], "web")
    allow_web = authz("allow-web", "ALLOW", [{"from": [{"source": {"serviceAccounts": ["web"]}}],
                                              "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}]}])
    audit_all = authz("audit", "AUDIT", [{}])
    assert authorize([], bot, "emojivoto", "/", "GET").allowed  # no policy: allowed
    d = authorize([deny_bot], bot, "emojivoto", "/", "GET")
    assert not d.allowed and d.policy == "emojivoto/deny-bot"
    assert authorize([deny_bot], web, "emojivoto", "/", "GET").allowed
    # once an ALLOW exists, something must match
    assert authorize([allow_web], web, "emojivoto", "/api/list", "GET").allowed
    assert not authorize([allow_web], web, "emojivoto", "/api/list", "POST").allowed
    assert not authorize([allow_web], None, "emojivoto", "/api/list", "GET").allowed
    # DENY wins over ALLOW; AUDIT only records
    both = authorize([allow_web, deny_bot, audit_all], bot, "emojivoto", "/api/list", "GET")
    assert not both.allowed and both.policy == "emojivoto/deny-bot" and both.audited == ("emojivoto/audit",)
    unauth = authz("plaintext-only", "ALLOW", [{"from": [{"source": {"unauthenticated": True}}]}])
    assert authorize([unauth], None, "emojivoto", "/", "GET").allowed and not authorize([unauth], web, "emojivoto", "/", "GET").allowed


def test_authorization_by_service_account_namespace_and_path_forms():
    web = "spiffe://meshdojo.local/ns/emojivoto/sa/web"
    other_ns = "spiffe://meshdojo.local/ns/bookinfo/sa/web"
    by_sa = authz("by-sa", "ALLOW", [{"from": [{"source": {"serviceAccounts": ["web"]}}]}])
    assert authorize([by_sa], web, "emojivoto", "/", "GET").allowed
    assert not authorize([by_sa], other_ns, "emojivoto", "/", "GET").allowed  # "web" means web of this namespace
    by_qualified = authz("by-ns-sa", "ALLOW", [{"from": [{"source": {"serviceAccounts": ["bookinfo/web"]}}]}])
    assert authorize([by_qualified], other_ns, "emojivoto", "/", "GET").allowed and not authorize([by_qualified], web, "emojivoto", "/", "GET").allowed
    by_ns = authz("by-ns", "ALLOW", [{"from": [{"source": {"namespaces": ["bookinfo"]}}]}])
    assert authorize([by_ns], other_ns, "emojivoto", "/", "GET").allowed and not authorize([by_ns], web, "emojivoto", "/", "GET").allowed
    paths = authz("paths", "ALLOW", [{"to": [{"operation": {"paths": ["/api/list", "/static/*", "*/health"]}}]}])
    allowed = {p: authorize([paths], web, "emojivoto", p, "GET").allowed
               for p in ("/api/list", "/api/list/x", "/api/vote", "/static/app.js", "/static", "/x/health", "/healthz", "/api/list?q=1")}
    assert allowed == {"/api/list": True, "/api/list/x": False, "/api/vote": False, "/static/app.js": True, "/static": False,
                       "/x/health": True, "/healthz": False, "/api/list?q=1": True}
    anything = authz("any", "ALLOW", [{"to": [{"operation": {"paths": ["*"]}}]}])
    assert authorize([anything], None, "emojivoto", "/whatever", "GET").allowed
    templates = authz("templates", "ALLOW", [{"to": [{"operation": {"paths": ["/api/{*}/vote", "/static/{**}"]}}]}])
    allowed = {p: authorize([templates], web, "emojivoto", p, "GET").allowed
               for p in ("/api/joy/vote", "/api/joy/x/vote", "/api//vote", "/static/a/b.js", "/static/", "/staticx/a")}
    assert allowed == {"/api/joy/vote": True, "/api/joy/x/vote": False, "/api//vote": False, "/static/a/b.js": True,
                       "/static/": True, "/staticx/a": False}
    with pytest.raises(PolicyError, match=r"paths\[0\]: expected an exact path"):
        authz("bad", "ALLOW", [{"to": [{"operation": {"paths": ["/a/*/b"]}}]}])
    with pytest.raises(PolicyError, match=r"paths\[0\]: '/a/\{\*\*\}/b': \{\*\*\} matches the rest"):
        authz("bad", "ALLOW", [{"to": [{"operation": {"paths": ["/a/{**}/b"]}}]}])
    with pytest.raises(PolicyError, match="must each be a whole segment"):
        authz("bad", "ALLOW", [{"to": [{"operation": {"paths": ["/a/x{*}"]}}]}])


def test_token_bucket():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back
    assert bucket.take() and not bucket.take()
    clock.now += 100
    assert sum(bucket.take() for _ in range(10)) == 3  # never more than the burst
    assert bucket.wait() == 0.5  # empty at 2 tokens/s: the next one in half a second
    slow = TokenBucket(rate=4 / 60, burst=4, clock=clock)  # Istio's task: 4 per minute
    assert [slow.take() for _ in range(5)] == [True, True, True, True, False]
    assert abs(slow.wait() - 15.0) < 1e-9  # what Retry-After says: 15 s, not 1
    clock.now += 10
    assert abs(slow.wait() - 5.0) < 1e-9
