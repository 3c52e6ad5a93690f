"""Linkerd's retry and timeout annotations on an HTTPRoute: read into the rule's fields, and
every mistake refused naming the annotation (tests/test_traffic_e2e.py sends traffic through them)."""

from __future__ import annotations

import pytest

from controlplane.policy import GATEWAY_API, PolicyError, parse


def route(annotations: dict, rule: dict | None = None) -> dict:
    return {"apiVersion": GATEWAY_API, "kind": "HTTPRoute",
            "metadata": {"name": "emoji", "namespace": "emojivoto", "annotations": annotations},
            "spec": {"parentRefs": [{"kind": "Service", "name": "emoji"}], "rules": [rule or {}, {"matches": [{"method": "POST"}]}]}}


def rules(annotations: dict, rule: dict | None = None):
    return parse(route(annotations, rule), "r.yaml", 0).spec.rules


@pytest.mark.parametrize(("value", "codes"), [
    ("5xx", tuple(range(500, 600))),
    ("504", (504,)),
    ("500-504", (500, 501, 502, 503, 504)),
    ("gateway-error", (502, 503, 504)),
    ("429, gateway-error,503", (429, 502, 503, 504)),
])
def test_retry_codes_as_linkerd_writes_them(value, codes):
    for rule in rules({"retry.linkerd.io/http": value}):  # every rule of the route
        assert rule.retry.codes == codes and rule.retry.attempts == 1  # Linkerd retries once by default


def test_limit_and_timeouts_become_the_rules_fields():
    rule = rules({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "3", "retry.linkerd.io/timeout": "300ms",
                  "timeout.linkerd.io/request": "2s", "linkerd.io/inject": "enabled", "example.com/owner": "me"})[0]
    assert (rule.retry.attempts, rule.backend_timeout, rule.request_timeout) == (3, 0.3, 2.0)
    only_timeouts = rules({"timeout.linkerd.io/response": "1s"})[1]
    assert (only_timeouts.retry, only_timeouts.backend_timeout, only_timeouts.request_timeout) == (None, 1.0, None)
    timeout_retried = rules({"retry.linkerd.io/timeout": "250ms"})[0]  # tries that run out are retried, no status is
    assert timeout_retried.retry.codes == () and timeout_retried.backend_timeout == 0.25
    assert rules({})[0].retry is None and rules({"other": "x"})[0].request_timeout is None


A = "metadata.annotations."
INVALID = [
    ({"retry.linkerd.io/http": "5xz"}, None, A + "retry.linkerd.io/http", "'5xz' is not a status, a range or a name"),
    ({"retry.linkerd.io/http": "504-500"}, None, A + "retry.linkerd.io/http", "expected e.g. 504, 500-504"),
    ({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": 2}, None, A + "retry.linkerd.io/limit", 'quote it, "2"'),
    ({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "eleven"}, None, A + "retry.linkerd.io/limit", "from 0 to 10"),
    ({"retry.linkerd.io/grpc": "unavailable"}, None, A + "retry.linkerd.io/grpc", "gRPC retries are for GRPCRoutes"),
    ({"timeout.linkerd.io/idle": "5s"}, None, A + "timeout.linkerd.io/idle", "not supported"),
    ({"retry.linkerd.io/htpp": "5xx"}, None, A + "retry.linkerd.io/htpp", "unknown Linkerd annotation"),
    ({"timeout.linkerd.io/request": "2 seconds"}, None, A + "timeout.linkerd.io/request", "not a duration"),
    ({"retry.linkerd.io/timeout": "1s", "timeout.linkerd.io/response": "1s"}, None, A + "timeout.linkerd.io/response", "not both"),
    ({"retry.linkerd.io/http": "5xx", "timeout.linkerd.io/response": "1s"}, None, A + "timeout.linkerd.io/response",
     "use retry.linkerd.io/timeout instead"),
    ({"retry.linkerd.io/http": "5xx"}, {"retry": {"attempts": 2}}, "spec.rules[0].retry", "give the field or the annotation, not both"),
    ({"timeout.linkerd.io/request": "1s"}, {"timeouts": {"request": "2s"}}, "spec.rules[0].timeouts.request", "not both"),
    ({"retry.linkerd.io/timeout": "1s"}, {"timeouts": {"backendRequest": "2s"}}, "spec.rules[0].timeouts.backendRequest", "not both"),
]


@pytest.mark.parametrize(("annotations", "rule", "field", "words"), INVALID, ids=[f"{i}" for i in range(len(INVALID))])
def test_a_mistake_is_refused_naming_the_annotation(annotations, rule, field, words):
    with pytest.raises(PolicyError) as refused:
        rules(annotations, rule)
    assert refused.value.field == field and words in str(refused.value), str(refused.value)


def test_annotations_that_are_not_a_mapping_are_refused():
    doc = route({})
    doc["metadata"]["annotations"] = ["retry.linkerd.io/http=5xx"]
    with pytest.raises(PolicyError, match="metadata.annotations: expected a mapping of names to strings, got list"):
        parse(doc, "r.yaml", 0)
