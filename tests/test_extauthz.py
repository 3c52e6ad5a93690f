"""External authorization's pure parts: the ExtensionProvider as the validator reads it, the
CUSTOM action's fields, the check request, what the answer means, and the learner's warnings.
Through real proxies: tests/test_extauthz_e2e.py."""

from __future__ import annotations

import copy

import pytest

from controlplane import extauthz, providers
from controlplane.authzrules import RequestFacts
from controlplane.policy import PolicyError, parse
from proxy.decisions import authorize, custom_check
from sandbox.resourcetable import table

POL = "policy.meshdojo.dev/v1alpha1"
PROVIDER = {"apiVersion": POL, "kind": "ExtensionProvider", "metadata": {"name": "sample-ext-authz-http", "namespace": "meshdojo-system"},
            "spec": {"envoyExtAuthzHttp": {"service": "ext-authz.foo.svc.cluster.local", "port": "8000",
                                           "includeRequestHeadersInCheck": ["x-ext-authz", "x-user-*", "*-token"]}}}


def custom(name: str = "ext-authz", paths: tuple[str, ...] = ("/headers",), provider: str = "sample-ext-authz-http") -> dict:
    return {"apiVersion": POL, "kind": "AuthorizationPolicy", "metadata": {"name": name, "namespace": "foo"},
            "spec": {"action": "CUSTOM", "provider": {"name": provider}, "rules": [{"to": [{"operation": {"paths": list(paths)}}]}]}}


def with_http(**fields) -> dict:
    doc = copy.deepcopy(PROVIDER)
    doc["spec"]["envoyExtAuthzHttp"].update(fields)
    return doc


def test_a_provider_reads_istios_fields_with_istios_defaults():
    p = parse(PROVIDER, "p.yaml", 0).spec
    assert (p.name, p.service_name, p.namespace, p.port) == ("sample-ext-authz-http", "ext-authz", "foo", 8000)  # "8000" or 8000
    assert (p.timeout, p.status_on_error, p.fail_open, p.downstream_on_deny) == (600.0, 403, False, None)
    assert parse(with_http(service="ext-authz.foo", port=9000, timeout="250ms", pathPrefix="/check"), "p.yaml", 0).spec.timeout == 0.25


@pytest.mark.parametrize(("doc", "field", "says"), [
    ({**PROVIDER, "metadata": {"name": "x", "namespace": "foo"}}, "metadata.namespace", "put it in meshdojo-system"),
    ({**PROVIDER, "spec": {"envoyExtAuthzGrpc": {"service": "a.b", "port": 9000}}}, "spec.envoyExtAuthzGrpc", "HTTP/1.1 only"),
    ({**PROVIDER, "spec": {"datadog": {"service": "d.b", "port": 8126}}}, "spec.datadog", "not a provider meshdojo's sidecars have"),
    ({**PROVIDER, "spec": {"opentelemetry": {"service": "o.b", "port": 4317}}}, "spec.opentelemetry", "use zipkin"),
    (with_http(includeRequestBodyInCheck={"maxRequestBytes": 10}), "spec.envoyExtAuthzHttp.includeRequestBodyInCheck", "no body"),
    (with_http(port="http"), "spec.envoyExtAuthzHttp.port", "expected a port from 1 to 65535"),
    (with_http(port=70000), "spec.envoyExtAuthzHttp.port", "expected a port from 1 to 65535"),
    (with_http(service="ext-authz"), "spec.envoyExtAuthzHttp.service", "NAME.NAMESPACE"),
    (with_http(pathPrefix="check"), "spec.envoyExtAuthzHttp.pathPrefix", "starts with /"),
    (with_http(timeout="soon"), "spec.envoyExtAuthzHttp.timeout", "is not a duration"),
    (with_http(headersToUpstreamOnAllow=["x y"]), "spec.envoyExtAuthzHttp.headersToUpstreamOnAllow[0]", "header name"),
    ({**custom(), "spec": {"action": "CUSTOM", "rules": [{}]}}, "spec.provider", "names the external authorizer"),
    ({**custom(), "spec": {"action": "DENY", "provider": {"name": "p"}, "rules": [{}]}}, "spec.provider", "only a CUSTOM policy"),
    ({**custom(), "metadata": {"name": "x", "namespace": "foo", "annotations": {"istio.io/dry-run": "true"}}},
     "metadata.annotations.istio.io/dry-run", "a CUSTOM one asks its provider"),
])
def test_refusals_name_the_field(doc, field, says):
    with pytest.raises(PolicyError) as caught:
        parse(doc, "p.yaml", 0)
    assert caught.value.field == field and says in caught.value.message, caught.value


def test_the_check_request_carries_the_path_and_only_the_headers_named():
    p = parse(with_http(pathPrefix="/check", includeAdditionalHeadersInCheck={"X-Mesh": "meshdojo"}), "p.yaml", 0).spec
    headers = [(b"host", b"httpbin"), (b"x-ext-authz", b"allow"), (b"x-user-id", b"7"), (b"session-token", b"t"),
               (b"cookie", b"secret"), (b"content-length", b"12"), (b"x-ext-authz-other", b"1")]
    assert extauthz.check_headers(p, headers) == [
        (b"host", b"ext-authz.foo.svc.cluster.local:8000"), (b"x-ext-authz", b"allow"), (b"x-user-id", b"7"), (b"session-token", b"t"),
        (b"x-mesh", b"meshdojo"), (b"content-length", b"0")]
    assert extauthz.check_target(p, "/headers?a=1") == "http://ext-authz.foo.svc.cluster.local:8000/check/headers?a=1"


def test_only_200_allows_and_each_list_picks_the_answers_headers():
    p = parse(with_http(headersToUpstreamOnAllow=["x-ext-authz-check-*"], headersToDownstreamOnAllow=["*-result"]), "p.yaml", 0).spec
    answer = [(b"X-Ext-Authz-Check-Result", b"allowed"), (b"X-Ext-Authz-Check-Received", b"GET /"), (b"Content-Length", b"0"),
              (b"Set-Cookie", b"s=1")]
    allowed = extauthz.verdict(p, 200, answer, b"")
    assert allowed == extauthz.Allowed([(b"x-ext-authz-check-result", b"allowed"), (b"x-ext-authz-check-received", b"GET /")],
                                       [(b"x-ext-authz-check-result", b"allowed")])
    denied = extauthz.verdict(p, 403, answer, b"no")  # headersToDownstreamOnDeny left out: every header but the framing
    assert (denied.status, denied.body, denied.result) == (403, b"no", "denied")
    assert [n for n, _ in denied.headers] == [b"x-ext-authz-check-result", b"x-ext-authz-check-received", b"set-cookie"]
    assert isinstance(extauthz.verdict(p, 204, answer, b""), extauthz.Denied)  # Envoy's rule: 200 only
    picky = parse(with_http(headersToDownstreamOnDeny=["x-ext-authz-check-result"]), "p.yaml", 0).spec
    assert extauthz.verdict(picky, 401, answer, b"").headers == [(b"x-ext-authz-check-result", b"allowed")]
    assert extauthz.with_headers([(b"a", b"1"), (b"b", b"2")], [(b"a", b"3")]) == [(b"b", b"2"), (b"a", b"3")]


def test_an_authorizer_that_cannot_be_asked_denies_with_status_on_error_or_fails_open():
    closed = parse(with_http(statusOnError=503), "p.yaml", 0).spec
    verdict = extauthz.unreachable(closed, "connection refused")
    assert (verdict.status, verdict.result) == (503, "error") and b"could not be asked (connection refused)" in verdict.body
    opened = extauthz.unreachable(parse(with_http(failOpen=True), "p.yaml", 0).spec, "timeout")
    assert isinstance(opened, extauthz.Allowed) and opened.result == "failure_mode_allowed"


def _facts(path: str) -> RequestFacts:
    return RequestFacts(None, "foo", "GET", path, "httpbin", lambda name: None)


def test_custom_is_asked_first_and_takes_no_part_in_allow_or_deny():
    policies = [parse(custom("a-other", ("/ip",), "other"), "p", 0), parse(custom(), "p", 1)]
    assert custom_check(policies, _facts("/headers")).name == "ext-authz"
    assert custom_check(policies, _facts("/status")) is None
    assert authorize(policies, _facts("/headers")).allowed  # a CUSTOM policy is no ALLOW: the default decides the rest


def test_a_custom_policy_without_its_provider_is_named_and_get_says_who_decides():
    resources = [parse(custom(), "p", 0)]
    [problem] = providers.missing_providers(resources)
    assert "foo/ext-authz asks provider 'sample-ext-authz-http'" in problem and "defined: none yet" in problem
    assert providers.missing_providers([*resources, parse(PROVIDER, "p", 1)]) == []
    rows = table([{"document": custom(), "expiresAt": None}, {"document": PROVIDER, "expiresAt": None}])
    assert rows[1][4] == "CUSTOM by sample-ext-authz-http"
    assert rows[2][3:5] == ("(mesh)", "ext_authz http://ext-authz.foo.svc.cluster.local:8000")
