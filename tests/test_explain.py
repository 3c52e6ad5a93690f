"""``meshdojo explain``: each kind's fields as kubectl explain prints a CRD's, read from the same
schema the CRDs carry — every field described, paths walked through lists, wrong paths and
foreign kinds answered with the way out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.crds import SUBSET_KINDS, policy_crds, subset_crd
from controlplane.policyschema import BUILT_IN_KINDS, KINDS, internal_kind
from controlplane.schema import openapi
from sandbox.explain import ExplainError, explain

ROOT = Path(__file__).resolve().parent.parent


def _undescribed(schema: dict, path: str) -> list[str]:
    while schema.get("type") == "array":
        schema = schema["items"]
    schema = schema.get("additionalProperties", schema)
    out = []
    for name, sub in (schema.get("properties") or {}).items():
        if not sub.get("description"):
            out.append(f"{path}.{name}")
        out += _undescribed(sub, f"{path}.{name}")
    return out


def test_every_field_of_every_kind_is_described_in_its_crd_too():
    assert [p for kind, (_, spec) in KINDS.items() for p in _undescribed(openapi(spec), f"{kind}.spec")] == []
    # by meshdojo's kind: Linkerd's AuthorizationPolicy is a CRD of its group beside ours
    crds = {internal_kind(c["spec"]["names"]["kind"], c["spec"]["group"]): c for c in [*policy_crds(), *map(subset_crd, SUBSET_KINDS)]}
    assert set(crds) == set(KINDS) - set(BUILT_IN_KINDS)
    assert crds["AuthorizationPolicy.policy.linkerd.io"]["metadata"]["name"] == "authorizationpolicies.policy.linkerd.io"
    for kind, crd in crds.items():  # the CRD carries the kind's sentence and the same field descriptions (kubectl explain reads them)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert schema["description"] and schema["properties"]["spec"] == openapi(KINDS[kind][1])


def test_a_path_through_lists_shows_the_fields_their_types_and_limits():
    page = explain("routes.spec.rules.retry")
    assert page.startswith("KIND:     HTTPRoute\nVERSION:  gateway.networking.k8s.io/v1\n\nFIELD: retry <Object>\n")
    assert "Gateway API's retries (GEP-1731); a RetryBudget caps them" in page
    assert "  attempts\t<integer>\n    retries after the first try (2 by default); from 0 to 10\n" in page
    assert "  codes\t<[]integer>\n" in page and "  backoff\t<string>\n    the wait before a retry" in page
    top = explain("FaultInjection")
    assert "  spec\t<Object> -required-\n" in top and "Delays or aborts a share of the requests" in top
    assert "  principals\t<[]string>\n    the caller's mTLS identity is one of these; each: cluster.local/ns/NS/sa/SA" in explain(
        "authz.spec.rules.from.source")
    # an enum with the core group in it names "" (not an empty item); integer bounds as written
    assert 'one of: policy.linkerd.io, "", core' in " ".join(explain("httproutes.policy.linkerd.io.spec.parentRefs").split())
    assert "from 1 to 2147483647" in explain("httplocalratelimitpolicy.spec.total")


def test_recursive_shows_the_tree_below():
    tree = explain("fault.spec.abort", recursive=True)
    assert tree.endswith("FIELDS:\n  httpStatus\t<integer> -required-\n  percentage\t<Object>\n    value\t<number> -required-\n")
    assert "  rules\t<[]Object>\n    name\t<string>\n    matches\t<[]Object>\n      path\t<Object>\n" in explain("httproute.spec", True)


@pytest.mark.parametrize(("target", "words"), [
    ("httproute.spec.rule", "HTTPRoute.spec has no field 'rule'; its fields: parentRefs, hostnames, rules"),
    ("fault.spec.abort.httpStatus.x", "FaultInjection.spec.abort.httpStatus has no field 'x'; its fields: none (a plain value)"),
    ("frobnicator", "unknown kind 'frobnicator'; the kinds are HTTPRoute, FaultInjection"),
    ("ServiceProfile.spec", "ServiceProfile is not a meshdojo kind; here that job is done by HTTPRoute"),
])
def test_a_wrong_path_or_kind_says_what_there_is(target, words):
    with pytest.raises(ExplainError) as caught:
        explain(target)
    assert str(caught.value).startswith(words), caught.value


def test_the_cli_prints_the_page_or_the_error_without_a_sandbox(tmp_path):
    env = {"MESHDOJO_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "sandbox.cli", "explain", "meshtls.spec.mode"], capture_output=True, text=True,
                        env=env, timeout=60, cwd=ROOT)
    assert ok.returncode == 0 and "STRICT: mutual TLS only, plaintext refused; PERMISSIVE: both" in ok.stdout, ok
    bad = subprocess.run([sys.executable, "-m", "sandbox.cli", "explain", "meshtls.spec.mood"], capture_output=True, text=True,
                         env=env, timeout=60, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr == "error: MeshTLS.spec has no field 'mood'; its fields: targetRef, selector, mode\n", bad
