"""Policy resources: validation that names the field, atomic apply, expiry, and the pure
fault decision with a seeded random source."""

from __future__ import annotations

import copy
import random

import pytest

from controlplane.policy import GATEWAY_API, POLICY_API, PolicyError, parse
from controlplane.policystore import PolicyErrors, PolicyStore
from proxy.faults import decide

FAULT = {
    "apiVersion": "policy.meshdojo.dev/v1alpha1",
    "kind": "FaultInjection",
    "metadata": {"name": "ratings-delay", "namespace": "bookinfo"},
    "spec": {
        "targetRef": {"kind": "Service", "name": "ratings"},
        "match": {"path": {"type": "PathPrefix", "value": "/ratings"}, "headers": [{"name": "end-user", "value": "jason"}]},
        "delay": {"fixedDelay": "7s", "percentage": {"value": 100}},
        "abort": {"httpStatus": 503, "percentage": {"value": 30}},
        "duration": "2m",
    },
}


def with_change(path: str, value):
    doc = copy.deepcopy(FAULT)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return doc


def test_a_full_fault_parses():
    r = parse(FAULT, "f.yaml", 0)
    assert (r.kind, r.namespace, r.name) == ("FaultInjection", "bookinfo", "ratings-delay")
    s = r.spec
    assert (s.service, s.delay_seconds, s.delay_percent, s.abort_status, s.abort_percent, s.duration) == ("ratings", 7, 100, 503, 30, 120)


@pytest.mark.parametrize(("path", "value", "field", "what"), [
    ("kind", "ServiceProfile", "kind", "ServiceProfile (policy.meshdojo.dev/v1alpha1) is not a meshdojo kind; here that job is done by HTTPRoute"),
    ("kind", "PeerAuthentication", "apiVersion", "PeerAuthentication is security.istio.io/v1beta1 or security.istio.io/v1, not 'policy.meshdojo.dev/v1alpha1'"),
    ("kind", "VirtualService", "apiVersion", "VirtualService is networking.istio.io/v1alpha3 or networking.istio.io/v1beta1 or networking.istio.io/v1, not 'policy.meshdojo.dev/v1alpha1'"),
    ("kind", "Gadget", "kind", "unknown kind"),
    ("apiVersion", "v1", "apiVersion", "policy.meshdojo.dev/v1alpha1"),
    ("spec.delay.fixedDelay", "7 seconds", "spec.delay.fixedDelay", "valid: 500ms, 2s, 1m"),
    ("spec.abort.percentage", {"value": 130}, "spec.abort.percentage.value", "from 0 to 100"),
    ("spec.abort.httpStatus", "503", "spec.abort.httpStatus", "HTTP status"),
    ("spec.retries", 3, "spec.retries", "unknown field"),
    ("spec.targetRef", KeyError, "spec.targetRef", "required"),
    ("spec.match.path", {"type": "Glob", "value": "/x"}, "spec.match.path.type", "PathPrefix"),
    ("spec.match.path", {"type": "RegularExpression", "value": "(["}, "spec.match.path.value", "regular expression"),
    ("metadata.name", "Bad_Name", "metadata.name", "lowercase"),
    ("spec.duration", "forever", "spec.duration", "not a duration"),
])
def test_errors_name_the_document_and_field(path, value, field, what):
    with pytest.raises(PolicyError) as err:
        parse(with_change(path, value), "lesson.yaml", 3)
    assert err.value.source == "lesson.yaml" and err.value.index == 3
    assert err.value.field == field and what in err.value.message


def test_a_fault_needs_a_delay_or_an_abort():
    doc = with_change("spec.delay", KeyError)
    del doc["spec"]["abort"]
    with pytest.raises(PolicyError, match="needs a delay, an abort, or both"):
        parse(doc, "f.yaml", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_apply_is_atomic_and_time_boxed_resources_expire():
    clock = Clock()
    store = PolicyStore(clock)
    other = with_change("metadata.name", "other")
    with pytest.raises(PolicyErrors) as err:
        store.apply([("a.yaml", 0, other), ("a.yaml", 1, with_change("spec.abort.httpStatus", 99))])
    assert [e.index for e in err.value.errors] == [1]
    assert store.list() == []  # nothing half-applied
    queue = store.watch("bookinfo")
    assert queue.get_nowait()["resources"] == []
    assert [r["action"] for r in store.apply([("a.yaml", 0, FAULT), ("a.yaml", 1, other)])] == ["created", "created"]
    assert len(queue.get_nowait()["resources"]) == 2
    clock.now += 119
    assert store.expire() == []
    clock.now += 2
    assert sorted(store.expire()) == [("FaultInjection", "bookinfo", "other"), ("FaultInjection", "bookinfo", "ratings-delay")]
    assert queue.get_nowait()["resources"] == []
    # what happened, with when, for a report's "what changed in between" (a refused apply left no trace)
    assert [(c["time"] - clock.now, c["action"], c["name"]) for c in store.changes] == [
        (-121, "created", "ratings-delay"), (-121, "created", "other"), (0, "expired", "ratings-delay"), (0, "expired", "other")]


def test_fault_percentages_hold_within_statistical_bounds():
    rule = parse(with_change("spec.match", {}), "f.yaml", 0)
    rng = random.Random(42)
    n = 10_000
    decisions = [decide([rule], "/ratings/0", lambda _h: None, rng) for _ in range(n)]
    aborts = sum(1 for d in decisions if d and d.abort_status == 503)
    delays = sum(1 for d in decisions if d and d.delay == 7)
    assert abs(aborts / n - 0.30) < 0.015  # ~4.6 standard deviations
    assert delays == n  # 100 %


def test_fault_matching_by_path_and_header():
    rule = parse(FAULT, "f.yaml", 0)
    rng = random.Random(1)
    jason = {"end-user": "jason"}.get
    assert decide([rule], "/ratings/0", jason, rng) is not None
    assert decide([rule], "/ratings/0", {}.get, rng) is None  # no header
    assert decide([rule], "/other", jason, rng) is None  # path


@pytest.mark.parametrize(("kind", "spec", "field", "words"), [
    ("HTTPRoute", {"parentRefs": [{"kind": "Service", "name": "reviews", "namespace": "default"}]}, "spec.parentRefs[0].namespace",
     "'default' is another namespace: a route attaches to a Service of its own namespace (here bookinfo); leave namespace out, "
     "or set metadata.namespace to default"),
    ("HTTPRoute", {"parentRefs": [{"kind": "Service", "name": "reviews"}], "rules": [{}, {"backendRefs": [{"name": "v1", "namespace": "other"}]}]},
     "spec.rules[1].backendRefs[0].namespace", "its own namespace (meshdojo has no ReferenceGrant)"),
    ("CircuitBreaker", {"targetRef": {"name": "reviews", "namespace": "default"}}, "spec.targetRef.namespace",
     "a CircuitBreaker applies to a Service of its own namespace"),
    ("RetryBudget", {"targetRef": {"name": "reviews", "namespace": "default"}}, "spec.targetRef.namespace", "RetryBudget"),
])
def test_a_service_in_another_namespace_is_refused_not_silently_read_as_this_ones(kind, spec, field, words):
    """These kinds act on Services of their own namespace: a reference to another namespace
    used to be read as the same name here, and shaped the wrong Service."""
    api = GATEWAY_API if kind == "HTTPRoute" else POLICY_API
    doc = {"apiVersion": api, "kind": kind, "metadata": {"name": "x", "namespace": "bookinfo"}, "spec": spec}
    with pytest.raises(PolicyError) as refused:
        parse(doc, "x.yaml", 0)
    assert refused.value.field == field and words in str(refused.value)
    same = {**doc, "spec": {k: ([{**ref, "namespace": "bookinfo"} for ref in v] if k == "parentRefs" else
                                {**v, "namespace": "bookinfo"} if k == "targetRef" else v) for k, v in spec.items()}}
    if kind != "HTTPRoute" or "rules" not in spec:
        parse(same, "x.yaml", 0)  # its own namespace, written out: fine


def test_every_shipped_example_policy_is_valid():
    import pathlib

    import yaml

    root = pathlib.Path(__file__).resolve().parent.parent / "demo-apps"
    files = sorted(root.glob("*/policies/*.yaml"))
    assert len(files) >= 10
    from sandbox.resources import checked_ingress_classes, is_ingress_class

    for file in files:
        for i, document in enumerate(yaml.safe_load_all(file.read_text())):
            if is_ingress_class(document):  # Istio's Kubernetes Ingress task brings one: checked, never stored
                assert checked_ingress_classes([{"document": document, "source": str(file), "index": i}]) == ["istio"]
            else:
                parse(document, str(file), i)


def test_files_that_are_not_text_or_too_large_are_refused_by_name(tmp_path):
    from sandbox.resources import ResourceError, read_documents

    binary = tmp_path / "policy.yaml"
    binary.write_bytes(b"\x7fELF\x00\x01\x02")
    with pytest.raises(ResourceError, match=f"{binary}: not a text file"):
        read_documents([str(binary)])
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 * 1024 * 1024))
    with pytest.raises(ResourceError, match=r"big.yaml: 2.0 MiB is more than a resource file may hold \(1 MiB\)"):
        read_documents([str(big)])


@pytest.mark.parametrize("kind, job", [("sp", "HTTPRoute"), ("TrafficSplits", "HTTPRoute with weighted backendRefs"),
                                       ("trafficsplit", "HTTPRoute with weighted backendRefs"), ("ServiceProfile", "HTTPRoute")])
def test_istio_kinds_in_get_say_which_kind_does_that_job(kind, job):
    from sandbox.resources import ResourceError, kind_of

    with pytest.raises(ResourceError, match=f"is not a meshdojo kind; here that job is done by {job}"):
        kind_of(kind)
    with pytest.raises(ResourceError, match="the kinds are HTTPRoute, FaultInjection"):
        kind_of("gizmo")
