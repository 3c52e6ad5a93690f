"""Istio's access-log filter (a Telemetry's accessLogging[].filter.expression, CEL), pure: what
it is true for, and what the validator refuses, saying where. Through real proxies:
tests/test_accesslog_e2e.py."""

from __future__ import annotations

import pytest

from controlplane.accessfilter import FilterError, LogFacts, compile_filter
from controlplane.policy import PolicyError, parse
from controlplane.telemetrypolicy import effective

FACTS = LogFacts("GET", "/api/login?x=1", "web", 503, 0.25, lambda n: {"x-user-type": "dev"}.get(n), True, "10.0.0.7:4431")


@pytest.mark.parametrize(("expression", "result"), [
    ("response.code >= 400", True),  # Istio's task: the failures only
    ("response.code < 400", False),
    ("response.code >= 500 || request.duration > duration('1s')", True),
    ("request.duration > duration('1s')", False),
    ("request.url_path.contains('login') && request.headers['x-user-type'] == 'dev'", True),
    ("request.headers['x-missing'] == 'x'", False),  # a header that is not there: no line, as in Envoy
    ("request.headers['x-missing'] == 'x' || response.code >= 500", True),  # CEL: true || error is true, either way round
    ("response.code >= 500 || request.headers['x-missing'] == 'x'", True),
    ("request.headers['x-missing'] == 'x' && response.code >= 600", False),  # false && error is false
    ("request.headers['x-missing'] == 'x' && response.code >= 500", False),  # true && error is an error: no line
    ("!(request.headers['x-missing'] == 'x')", False),
    ("!(request.method in ['GET', 'HEAD'])", False),
    ("response.code in [500, 503]", True),
    ("connection.mtls && source.address.startsWith('10.')", True),
    ("request.path.endsWith('x=1') && request.host == \"web\"", True),
])
def test_what_a_filter_is_true_for(expression: str, result: bool):
    assert compile_filter(expression)(FACTS) is result


@pytest.mark.parametrize(("expression", "says"), [
    ("response.code >= \"400\"", "at column 15: >= compares an int with a string"),
    ("response.cod >= 400", "at column 1: unknown attribute response.cod"),
    ("request.method < 'A'", "< compares numbers and durations only, not a string"),
    ("response.code", "the expression is an int, not true or false"),
    ("", "the expression is empty"),
    ("response.code >= 400 400", "at column 22: unexpected '400' after a whole expression"),
    ("request.headers[1] == 'a'", "only request.headers['NAME'] is indexed, by a string"),
    ("duration('soon') > request.duration", "duration() takes a duration as a string"),
    ("response.code in [1, 'a']", "a list holds values of one type"),
    ("xds.cluster_name == 'a'", "unknown name 'xds'"),
    ("response.code >= 400 && ", "expected more, found the end"),
    ("request.path.matches('a.*')", "matches() is not a method here"),
    ("response.code >= 400 # note", "unexpected '#'"),
])
def test_a_wrong_expression_is_refused_saying_where(expression: str, says: str):
    with pytest.raises(FilterError) as caught:
        compile_filter(expression)
    assert says in str(caught.value), caught.value


def _telemetry(name: str, entry: dict) -> object:
    return parse({"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "Telemetry", "metadata": {"name": name, "namespace": "foo"},
                  "spec": {"accessLogging": [entry]}}, "t.yaml", 0)


def test_the_validator_names_the_field_and_the_filter_follows_the_telemetry_that_turned_logs_on():
    with pytest.raises(PolicyError) as caught:
        _telemetry("bad", {"providers": [{"name": "envoy"}], "filter": {"expression": "response.code >= 'x'"}})
    assert caught.value.field == "spec.accessLogging[0].filter.expression" and "compares an int with a string" in caught.value.message
    failures = _telemetry("failures", {"providers": [{"name": "envoy"}], "filter": {"expression": "response.code >= 400"}})
    quiet = _telemetry("quiet", {"disabled": True})
    assert effective([failures]).access_filter == "response.code >= 400"
    assert effective([quiet, failures]).access_filter is None  # the more specific one turned logs off: no filter to apply
