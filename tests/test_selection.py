"""Which inbound policies apply to a workload: pure decisions from what the workload is."""

from __future__ import annotations

import pytest

from controlplane.policy import PolicyError, parse
from controlplane.selection import Workload, applicable, conflicts, level

REVIEWS_V1 = Workload("bookinfo", "reviews", "reviews-v1", "reviews-v1-0", {"app": "reviews", "version": "v1"})
RATINGS = Workload("bookinfo", "ratings", "ratings-v1", "ratings-v1-0", {"app": "ratings", "version": "v1"})
SELECTORS = {("bookinfo", "reviews"): {"app": "reviews"}, ("bookinfo", "reviews-v1"): {"app": "reviews", "version": "v1"},
             ("bookinfo", "ratings"): {"app": "ratings"}}


def policy(kind: str, name: str, spec: dict, namespace: str = "bookinfo"):
    api = "gateway.networking.k8s.io/v1" if kind == "HTTPRoute" else "policy.meshdojo.dev/v1alpha1"
    return parse({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}, "t.yaml", 0)


def authz(name: str, namespace: str = "bookinfo", **target):
    return policy("AuthorizationPolicy", name, {"action": "DENY", **target}, namespace)


def test_a_service_target_applies_to_every_pod_the_service_selects_whatever_name_a_caller_used():
    by_service = authz("deny-reviews", targetRef={"kind": "Service", "name": "reviews"})
    assert level(by_service, REVIEWS_V1, SELECTORS) == "workload"  # reviews-v1 pods are reviews pods too
    assert level(by_service, RATINGS, SELECTORS) is None
    assert level(by_service, REVIEWS_V1, {}) is None  # an unknown service selects nothing


@pytest.mark.parametrize("target, applies", [
    ({"targetRef": {"kind": "Deployment", "name": "reviews-v1"}}, True),
    ({"targetRef": {"kind": "Deployment", "name": "reviews-v2"}}, False),
    ({"targetRef": {"kind": "Pod", "name": "reviews-v1-0"}}, True),
    ({"targetRef": {"kind": "ServiceAccount", "name": "reviews"}}, True),
    ({"selector": {"matchLabels": {"app": "reviews", "version": "v1"}}}, True),
    ({"selector": {"matchLabels": {"app": "reviews", "version": "v2"}}}, False),
])
def test_workload_targets(target, applies):
    assert (level(authz("p", **target), REVIEWS_V1, SELECTORS) == "workload") is applies


def test_namespace_and_mesh_levels():
    assert level(authz("ns-wide"), REVIEWS_V1, SELECTORS) == "namespace"
    assert level(authz("elsewhere", namespace="emojivoto"), REVIEWS_V1, SELECTORS) is None
    assert level(authz("mesh-wide", namespace="meshdojo-system"), REVIEWS_V1, SELECTORS) == "mesh"
    root_selector = authz("mesh-reviews", namespace="meshdojo-system", selector={"matchLabels": {"app": "reviews"}})
    assert level(root_selector, REVIEWS_V1, SELECTORS) == "workload"
    assert level(authz("other-ns-ref", namespace="emojivoto", targetRef={"kind": "Deployment", "name": "reviews-v1"}),
                 REVIEWS_V1, SELECTORS) is None


def mtls(name: str, mode: str, namespace: str = "bookinfo", **target):
    return policy("MeshTLS", name, {"mode": mode, **target}, namespace)


def test_the_most_specific_meshtls_wins_and_ties_are_conflicts():
    mesh = mtls("mesh", "STRICT", namespace="meshdojo-system")
    ns = mtls("ns", "PERMISSIVE")
    workload = mtls("reviews", "STRICT", targetRef={"kind": "Deployment", "name": "reviews-v1"})
    assert applicable([mesh], REVIEWS_V1, SELECTORS)["MeshTLS"].chosen is mesh
    assert applicable([mesh, ns], REVIEWS_V1, SELECTORS)["MeshTLS"].chosen is ns
    applied = applicable([mesh, ns, workload], REVIEWS_V1, SELECTORS)["MeshTLS"]
    assert applied.chosen is workload and applied.conflict == ()

    rival = mtls("a-rival", "PERMISSIVE", selector={"matchLabels": {"app": "reviews"}})
    applied = applicable([mesh, ns, workload, rival], REVIEWS_V1, SELECTORS)["MeshTLS"]
    assert applied.chosen is rival and applied.conflict == ("bookinfo/a-rival", "bookinfo/reviews")
    found = conflicts([mesh, ns, workload, rival], [REVIEWS_V1, RATINGS], SELECTORS)
    assert [(c.kind, c.workload) for c in found] == [("MeshTLS", "bookinfo/reviews-v1-0")]
    assert "bookinfo/a-rival is used" in found[0].describe()


def test_telemetries_that_set_one_field_at_one_level_are_a_conflict_and_merging_ones_are_not():
    sampling = {"tracing": [{"randomSamplingPercentage": 100}]}
    mesh = policy("Telemetry", "mesh", sampling, namespace="meshdojo-system")
    logs = policy("Telemetry", "logs", {"accessLogging": [{"providers": [{"name": "envoy"}]}]})
    assert applicable([mesh, logs, policy("Telemetry", "traces", sampling)], REVIEWS_V1, SELECTORS)["Telemetry"].conflict == ()
    rival = policy("Telemetry", "a-few", {"tracing": [{"randomSamplingPercentage": 1}]})
    found = conflicts([mesh, logs, policy("Telemetry", "traces", sampling), rival], [REVIEWS_V1], SELECTORS)
    assert [(c.kind, c.policies) for c in found] == [("Telemetry", ("bookinfo/a-few", "bookinfo/traces"))]
    assert found[0].describe().startswith("Telemetry bookinfo/a-few, bookinfo/traces both set tracing's randomSamplingPercentage "
                                          "for bookinfo/reviews-v1-0 at the same level; bookinfo/a-few is used")


def test_custom_policies_naming_two_providers_at_one_workload_are_a_conflict():
    def custom(name: str, provider: str, namespace: str = "bookinfo", **target):
        return policy("AuthorizationPolicy", name, {"action": "CUSTOM", "provider": {"name": provider},
                                                    "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}], **target}, namespace)

    same = [custom("a", "opa"), custom("b", "opa", targetRef={"kind": "Service", "name": "reviews"})]
    assert conflicts(same, [REVIEWS_V1], SELECTORS) == []  # one provider, asked about two sets of paths: fine
    found = conflicts([*same, custom("c", "ext-authz", namespace="meshdojo-system")], [REVIEWS_V1], SELECTORS)
    assert [(c.kind, c.policies) for c in found] == [("AuthorizationPolicy", ("bookinfo/a", "bookinfo/b", "meshdojo-system/c"))]
    assert "are CUSTOM with different providers (ext-authz, opa); Istio supports one provider per workload" in found[0].describe()


def test_authorization_policies_combine_across_levels():
    both = [authz("mesh", namespace="meshdojo-system"), authz("ns"), authz("mine", targetRef={"kind": "Service", "name": "reviews"})]
    applied = applicable(both, REVIEWS_V1, SELECTORS)["AuthorizationPolicy"]
    assert [r.name for r in applied.resources] == ["mine", "ns", "mesh"] and applied.conflict == ()


def test_target_errors_name_the_field():
    with pytest.raises(PolicyError, match="spec.selector: give spec.targetRef or spec.selector, not both"):
        authz("x", targetRef={"name": "reviews"}, selector={"matchLabels": {"app": "reviews"}})
    with pytest.raises(PolicyError, match="spec.targetRef.kind: expected one of Service, Deployment, Pod"):
        policy("RateLimit", "x", {"requestsPerSecond": 1, "targetRef": {"kind": "ServiceAccount", "name": "a"}})
    with pytest.raises(PolicyError, match="spec.selector.matchLabels: expected a non-empty mapping"):
        authz("x", selector={"matchLabels": {}})
    with pytest.raises(PolicyError, match="spec.targetRef: required"):
        policy("FaultInjection", "x", {"abort": {"httpStatus": 503}})
