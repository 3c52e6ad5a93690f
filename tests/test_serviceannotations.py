"""Linkerd's annotations on a Service: read and checked, turned into the routes and circuit
breakers they mean next to what was applied, and written with kubectl annotate's rules
(tests/test_serviceannotations_e2e.py sends traffic through them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.policy import GATEWAY_API, POLICY_API, parse
from controlplane.serviceannotations import AnnotationError, derive, linkerd_only, read
from sandbox.cli.annotate import ChangeError, changed
from sandbox.manifests import ManifestError, read_documents

FIVE_XX = tuple(range(500, 600))
ACCRUAL = {"balancer.linkerd.io/failure-accrual": "consecutive"}


def route(name: str, rules: list[dict], annotations: dict | None = None, service: str = "emoji-svc") -> object:
    return parse({"apiVersion": GATEWAY_API, "kind": "HTTPRoute",
                  "metadata": {"name": name, "namespace": "emojivoto", "annotations": annotations or {}},
                  "spec": {"parentRefs": [{"kind": "Service", "name": service}], "rules": rules}}, "r.yaml", 0)


def breaker(name: str, spec: dict) -> object:
    return parse({"apiVersion": POLICY_API, "kind": "CircuitBreaker", "metadata": {"name": name, "namespace": "emojivoto"},
                  "spec": {"targetRef": {"kind": "Service", "name": "emoji-svc"}, **spec}}, "cb.yaml", 0)


def test_only_linkerds_annotations_are_kept():
    assert linkerd_only({"retry.linkerd.io/http": "5xx", "kubectl.kubernetes.io/last-applied-configuration": "{}",
                         "balancer.linkerd.io/failure-accrual": "consecutive", "linkerd.io/inject": "enabled"}) == {
        "retry.linkerd.io/http": "5xx", "balancer.linkerd.io/failure-accrual": "consecutive"}
    assert linkerd_only(None) == {}


def test_failure_accrual_reads_linkerds_defaults_and_values():
    spec = read("emojivoto", "emoji-svc", ACCRUAL).accrual
    assert (spec.consecutive_failures, spec.penalty, spec.max_penalty, spec.jitter, spec.outlier) == (7, 1.0, 60.0, 0.5, True)
    spec = read("emojivoto", "emoji-svc", {**ACCRUAL, "balancer.linkerd.io/failure-accrual-consecutive-max-failures": "3",
                                           "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "500ms",
                                           "balancer.linkerd.io/failure-accrual-consecutive-max-penalty": "10s",
                                           "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio": "0.1"}).accrual
    assert (spec.consecutive_failures, spec.penalty, spec.max_penalty, spec.jitter) == (3, 0.5, 10.0, 0.1)
    assert read("emojivoto", "emoji-svc", {}).accrual is None


P = "metadata.annotations.balancer.linkerd.io/failure-accrual"


@pytest.mark.parametrize(("annotations", "field", "message"), [
    ({"balancer.linkerd.io/failure-accrual": "success-rate"}, P, "expected consecutive"),
    ({"balancer.linkerd.io/failure-accrual-consecutive-max-failures": "3"}, P + "-consecutive-max-failures",
     "has no effect without balancer.linkerd.io/failure-accrual: consecutive"),
    ({**ACCRUAL, "balancer.linkerd.io/failure-accrual-consecutive-max-failures": "three"}, P + "-consecutive-max-failures", "whole number"),
    ({**ACCRUAL, "balancer.linkerd.io/failure-accrual-consecutive-max-failures": 3}, P + "-consecutive-max-failures", 'quote it, "3"'),
    ({**ACCRUAL, "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "soon"}, P + "-consecutive-min-penalty", "not a duration"),
    ({**ACCRUAL, "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "0s"}, P + "-consecutive-min-penalty", "not be zero"),
    ({**ACCRUAL, "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "2m"}, P + "-consecutive-max-penalty", "not be shorter"),
    ({**ACCRUAL, "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio": "5"}, P + "-consecutive-jitter-ratio", "from 0 to 1"),
    ({"balancer.linkerd.io/load-biaser": "true"}, "metadata.annotations.balancer.linkerd.io/load-biaser", "unknown Linkerd annotation"),
    ({"retry.linkerd.io/http": "5xz"}, "metadata.annotations.retry.linkerd.io/http", "not a status"),
])
def test_each_mistake_names_the_service_and_the_annotation(annotations, field, message):
    with pytest.raises(AnnotationError) as err:
        read("emojivoto", "emoji-svc", annotations)
    assert err.value.field == field and message in str(err.value) and str(err.value).startswith("Service emojivoto/emoji-svc: ")


def test_a_service_without_a_route_gets_one_rule_for_everything():
    resources, notes = derive([], {("emojivoto", "emoji-svc"): {"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "3",
                                                                "timeout.linkerd.io/request": "2s"}})
    assert notes == []
    [derived] = resources
    assert (derived.kind, derived.namespace, derived.name, derived.target) == ("HTTPRoute", "emojivoto", "emoji-svc.annotations", "emoji-svc")
    [rule] = derived.spec.rules
    assert rule.matches == () and rule.backends == () and rule.request_timeout == 2.0
    assert rule.retry.codes == FIVE_XX and rule.retry.attempts == 3


def test_a_route_keeps_what_it_says_and_takes_the_rest_from_its_service():
    own_field = {"matches": [{"path": {"type": "PathPrefix", "value": "/api/vote"}}], "retry": {"codes": [503], "attempts": 1},
                 "timeouts": {"request": "5s"}}
    service = {"retry.linkerd.io/http": "5xx", "retry.linkerd.io/timeout": "300ms", "timeout.linkerd.io/request": "2s"}
    [plain] = derive([route("emoji", [own_field, {}])], {("emojivoto", "emoji-svc"): service})[0]
    first, second = plain.spec.rules
    assert first.retry.codes == (503,) and first.request_timeout == 5.0  # the rule's own fields win
    assert first.backend_timeout is None  # a per-try timeout is part of the Service's retries, which this rule does not take
    assert second.retry.codes == FIVE_XX and second.backend_timeout == 0.3 and second.request_timeout == 2.0
    # any retry annotation on the route overrides all of the Service's (Linkerd's rule); its timeouts still come from the Service
    [annotated] = derive([route("emoji", [{}], {"retry.linkerd.io/http": "504"})], {("emojivoto", "emoji-svc"): service})[0]
    [rule] = annotated.spec.rules
    assert rule.retry.codes == (504,) and rule.backend_timeout is None and rule.request_timeout == 2.0
    # a route of another service is left alone, and a Service with a route gets no second one
    other = route("web", [{}], service="web-svc")
    resources = derive([other, route("emoji", [{}])], {("emojivoto", "emoji-svc"): service})[0]
    assert [r.name for r in resources] == ["web", "emoji"] and resources[0] is other


def test_a_response_timeout_is_not_given_to_a_rule_that_retries():
    service = {"timeout.linkerd.io/response": "1s"}
    [r] = derive([route("emoji", [{"retry": {"codes": [503]}}, {}])], {("emojivoto", "emoji-svc"): service})[0]
    assert [rule.backend_timeout for rule in r.spec.rules] == [None, 1.0]


def test_failure_accrual_is_a_circuit_breaker_unless_one_ejects_endpoints_itself():
    annotations = {("emojivoto", "emoji-svc"): {**ACCRUAL, "balancer.linkerd.io/failure-accrual-consecutive-max-failures": "3"}}
    [derived] = derive([], annotations)[0]
    assert (derived.kind, derived.name, derived.spec.consecutive_failures, derived.spec.outlier) == ("CircuitBreaker", "emoji-svc.annotations", 3, True)
    own = breaker("emoji-cb", {"consecutiveFailures": 10})
    resources, notes = derive([own], annotations)
    assert resources == [own] and notes == ["Service emojivoto/emoji-svc: its failure-accrual annotations are not used: "
                                            "CircuitBreaker emojivoto/emoji-cb targets it and ejects endpoints itself"]
    pool_only = breaker("emoji-pool", {"connectionPool": {"tcp": {"maxConnections": 2}}})
    [merged] = derive([pool_only], annotations)[0]
    assert merged.name == "emoji-pool" and merged.spec.outlier and merged.spec.consecutive_failures == 3
    assert merged.spec.pool.max_connections == 2


def test_annotations_that_cannot_be_read_are_left_out_and_said():
    resources, notes = derive([], {("emojivoto", "emoji-svc"): {"retry.linkerd.io/http": "5xxx"},
                                   ("emojivoto", "voting-svc"): ACCRUAL})
    assert [r.name for r in resources] == ["voting-svc.annotations"]
    assert notes == ["Service emojivoto/emoji-svc: metadata.annotations.retry.linkerd.io/http: '5xxx' is not a status, a range or a name "
                     "(expected e.g. 504, 500-504, gateway-error or 5xx); its Linkerd annotations are not used until this is fixed"]


def test_routes_show_what_a_rule_retries_and_times_out():  # `meshdojo routes -o wide`'s MATCH
    [derived] = derive([], {("emojivoto", "emoji-svc"): {"retry.linkerd.io/http": "gateway-error,429", "retry.linkerd.io/limit": "3",
                                                         "retry.linkerd.io/timeout": "300ms", "timeout.linkerd.io/request": "2s"}})[0]
    assert derived.spec.rules[0].describe() == "everything [retries on 429, 502-504, up to 3; each try 300ms; request 2s]"
    only_timeout = route("emoji", [{"matches": [{"method": "GET"}], "retry": {"codes": [], "attempts": 1}}]).spec.rules[0]
    assert only_timeout.describe() == "GET [retries on timeouts and failed connections, up to 1]"


def test_describe_says_what_each_request_gets():
    assert read("e", "s", {"retry.linkerd.io/http": "500-504,429", "retry.linkerd.io/limit": "2", "retry.linkerd.io/timeout": "300ms",
                           "timeout.linkerd.io/request": "2s", **ACCRUAL}).describe() == [
        "retried on 429, 500-504, up to 2 times", "each try within 300ms (a try that runs out is retried)",
        "the whole request within 2s, retries included",
        "an endpoint is left out after 7 failures in a row, for 1s at first, doubling up to 60s"]


# -- meshdojo annotate: kubectl's rules -------------------------------------------------------

def test_changes_follow_kubectl_annotate():
    current = {"retry.linkerd.io/http": "5xx"}
    assert changed(current, ["retry.linkerd.io/limit=3"], False) == ({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "3"}, [])
    assert changed(current, ["retry.linkerd.io/http=5xx"], False) == (current, [])  # the same value: no --overwrite needed
    assert changed(current, ["retry.linkerd.io/http=504"], True) == ({"retry.linkerd.io/http": "504"}, [])
    assert changed(current, ["retry.linkerd.io/http-", "retry.linkerd.io/limit-"], False) == ({}, ["retry.linkerd.io/limit"])
    assert current == {"retry.linkerd.io/http": "5xx"}


@pytest.mark.parametrize(("change", "message"), [
    ("retry.linkerd.io/http=504", "--overwrite is false but 'retry.linkerd.io/http' already has a value (5xx)"),
    ("retry.linkerd.io/http", "is not KEY=VALUE or KEY-"),
    ("example.com/owner=me", "not one of Linkerd's annotations"),
])
def test_changes_refused(change, message):
    with pytest.raises(ChangeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        changed({"retry.linkerd.io/http": "5xx"}, [change], False)


# -- a Service manifest's annotations ----------------------------------------------------------

def service_doc(annotations: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "emoji-svc", "namespace": "emojivoto", "annotations": annotations},
            "spec": {"selector": {"app": "emoji"}, "ports": [{"port": 8080}]}}


def test_a_manifests_linkerd_annotations_are_read_and_checked(tmp_path: Path):
    demo = read_documents("d", tmp_path, [(tmp_path / "svc.yaml", 0, service_doc({"retry.linkerd.io/http": "5xx", "owner": "me"}))])
    assert demo.services[0].annotations == {"retry.linkerd.io/http": "5xx"}
    with pytest.raises(ManifestError) as err:
        read_documents("d", tmp_path, [(tmp_path / "svc.yaml", 1, service_doc({"retry.linkerd.io/limit": "lots"}))])
    assert str(err.value).startswith(f"{tmp_path / 'svc.yaml'}: document 1: metadata.annotations.retry.linkerd.io/limit: expected a number")
