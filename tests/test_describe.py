"""``meshdojo describe`` drawn from fixed sidecar answers (pure): what a learner reads about one
workload. Against real sidecars: tests/test_sandbox_extauthz.py (locally) and
tests/test_kube_traffic.py (a pod's, through the control plane)."""

from __future__ import annotations

import datetime as dt

import pytest

from sandbox import describe

NOW = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)
WEB = {"name": "web-0", "namespace": "emojivoto", "deployment": "web", "ready": True, "meshed": True, "restarts": 1,
       "services": ["web"], "ports": {"admin": 1}}
CONFIG = {
    "identity": "spiffe://meshdojo.local/ns/emojivoto/sa/web", "mode": "strict", "defaultInboundPolicy": "deny",
    "labels": {"app": "web", "version": "v1"},
    "certificate": {"serial": "ab12", "notBefore": "2027-01-15T00:00:00+00:00", "notAfter": "2027-01-16T00:00:00+00:00", "refreshes": 2},
    "policies": {
        "inbound": {
            "MeshTLS": {"applied": ["emojivoto/strict"], "levels": ["namespace"], "notes": [""], "conflict": []},
            "AuthorizationPolicy": {"applied": ["emojivoto/deny-vote-bot", "meshdojo-system/audit"], "levels": ["workload", "mesh"],
                                    "notes": ["DENY", "AUDIT"], "conflict": []},
            "RateLimit": {"applied": ["emojivoto/a", ], "levels": ["namespace"], "notes": ["5 rps, burst 5"],
                          "conflict": ["emojivoto/a", "emojivoto/b"]},
        },
        "callers": {"emojivoto/web": {"HTTPRoute": ["emojivoto/web-split"], "CircuitBreaker": ["emojivoto/web-cb"]}},
        "calls": {"emojivoto/emoji": {"HTTPRoute": ["emojivoto/emoji-retries"], "RetryBudget": ["emojivoto/emoji-budget"]}},
        "outbound": {"mode": "REGISTRY_ONLY", "by": "Sidecar emojivoto/registry-only"},
    },
    "tracing": {"samplingPercent": 1.0, "spansRecorded": 7}, "accessLog": {"inbound": None, "outbound": None},
}


def test_a_workload_is_described_as_its_sidecar_enforces():
    text = "\n".join(describe.lines({"workload": WEB, "config": CONFIG}, NOW))
    assert text.splitlines()[0] == "pod emojivoto/web-0 (deploy/web): ready, 1 restarts"
    assert "rotates in 8h48m (2 rotations so far)" in text  # 70 % of the certificate's life, as it rotates
    assert "mutual TLS    STRICT by MeshTLS emojivoto/strict (namespace)" in text
    assert "AuthorizationPolicy    emojivoto/deny-vote-bot (DENY, workload), meshdojo-system/audit (AUDIT, mesh)" in text
    assert "RateLimit              emojivoto/a (5 rps, burst 5, namespace)  — CONFLICT: emojivoto/a, emojivoto/b tie" in text
    assert "RequestAuthentication  -" in text
    assert "default policy         deny (config.linkerd.io/default-inbound-policy)" in text
    assert "to svc/web, their sidecars act on: HTTPRoute emojivoto/web-split; CircuitBreaker emojivoto/web-cb" in text
    assert ("calls         svc/emoji (emojivoto), its sidecar acts on: HTTPRoute emojivoto/emoji-retries; "
            "RetryBudget emojivoto/emoji-budget") in text
    assert "REGISTRY_ONLY (Sidecar emojivoto/registry-only): hosts outside the mesh only if a ServiceEntry names them" in text
    assert "traces 1 % of new requests (7 spans so far), access log off" in text
    custom = {"applied": ["emojivoto/a", "emojivoto/b"], "levels": ["workload", "namespace"], "notes": ["CUSTOM by opa", "CUSTOM by x"],
              "conflict": ["emojivoto/a", "emojivoto/b"], "detail": "are CUSTOM with different providers (opa, x)"}
    tied = {**CONFIG, "policies": {**CONFIG["policies"], "inbound": {"AuthorizationPolicy": custom}}}
    assert ("AuthorizationPolicy    emojivoto/a (CUSTOM by opa, workload), emojivoto/b (CUSTOM by x, namespace)  — CONFLICT: "
            "emojivoto/a, emojivoto/b are CUSTOM with different providers (opa, x)") in "\n".join(describe.lines({"workload": WEB, "config": tied}, NOW))


def test_without_a_sidecar_or_when_it_does_not_answer_it_says_so():
    bare = describe.lines({"workload": {**WEB, "meshed": False}, "config": None}, NOW)
    assert "no mesh identity" in bare[2] and "meshdojo inject deploy/web -n emojivoto" in bare[3]
    silent = describe.lines({"workload": WEB, "config": None, "error": "its sidecar did not answer (timed out)"}, NOW)
    assert silent[-1] == "  sidecar       its sidecar did not answer (timed out)"


def test_targets_are_read_as_kubectl_does():
    status = {"workloads": [WEB, {**WEB, "name": "web-1"}, {**WEB, "name": "web-0", "namespace": "other"}]}
    assert [w["name"] for w in describe.instances(status, "deploy/web", "emojivoto")] == ["web-0", "web-1"]
    assert [w["namespace"] for w in describe.instances(status, "pod/web-0", "other")] == ["other"]
    for target, namespace, says in (("deploy/web", None, "add -n NAMESPACE"), ("svc/web", None, "deploy/NAME or pod/NAME"),
                                    ("pod/web-9", "emojivoto", "no pod 'web-9' in namespace emojivoto; the deployments are web")):
        with pytest.raises(ValueError, match=says):
            describe.instances(status, target, namespace)
