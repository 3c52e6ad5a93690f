"""Istio's External Authorization task with the learner's commands against a real sandbox: the
sample authorizer applied as a Deployment beside emojivoto, its ExtensionProvider, a CUSTOM
policy on web's votes; the warnings of apply and check when the provider is missing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from sandbox.processes import wait_until

FILES = "demo-apps/extauthz"


@pytest.mark.timeout(150)
def test_istios_external_authorization_task_on_emojivoto(emojivoto):
    cli = emojivoto

    def codes(path: str, *headers: str) -> dict[str, int]:
        args = [arg for h in headers for arg in ("-H", h)]
        out = cli.run("load", "svc/web", path, "-n", "4", "-c", "1", *args, "-o", "json").stdout
        return {code: c["count"] for code, c in json.loads(out)["codes"].items()}

    # the policy before its provider: every vote is denied (Istio fails closed), and apply and check say why
    early = cli.run("apply", "-f", f"{FILES}/web-ext-authz.yaml")
    assert "asks provider 'sample-ext-authz-http', which no ExtensionProvider in meshdojo-system defines" in early.stderr, early.stderr
    assert "which no ExtensionProvider" in cli.run("check", check=False).stdout
    wait_until(lambda: codes("/api/vote?choice=:joy:") == {"403": 4}, 15, "votes denied without a provider")

    applied = cli.run("apply", "-f", f"{FILES}/ext-authz.yaml", "-f", f"{FILES}/provider.yaml")
    assert "deployment/ext-authz created (namespace emojivoto)" in applied.stdout and "warning" not in applied.stderr
    assert "which no ExtensionProvider" not in cli.run("check", check=False).stdout
    wait_until(lambda: any(w["deployment"] == "ext-authz" and w["ready"] for w in cli.status()["workloads"]), 30,
               "the authorizer's pod to be ready")
    wait_until(lambda: codes("/api/vote?choice=:joy:", "x-ext-authz: allow") == {"200": 4}, 15, "the authorizer to allow")
    assert codes("/api/vote?choice=:joy:", "x-ext-authz: deny") == {"403": 4}
    assert codes("/api/list") == {"200": 4}  # the rules name /api/vote only
    gateway = next(g["url"] for g in cli.status()["gateways"] if g["demo"] == "emojivoto")
    with pytest.raises(urllib.error.HTTPError) as denied:  # as curl shows it: the authorizer's own answer
        urllib.request.urlopen(f"{gateway}api/vote?choice=:joy:", timeout=10)
    assert denied.value.code == 403 and denied.value.headers["x-ext-authz-check-result"] == "denied"
    assert denied.value.read() == b"denied by ext_authz for not found header `x-ext-authz: allow` in the request\n"

    assert "CUSTOM by sample-ext-authz-http" in cli.run("get", "authz").stdout
    described = cli.run("describe", "deploy/web").stdout  # what web's sidecar enforces, and why
    assert "AuthorizationPolicy    emojivoto/web-ext-authz (CUSTOM by sample-ext-authz-http, workload)" in described, described
    assert "ext_authz http://ext-authz.emojivoto.svc.cluster.local:8000" in cli.run("get", "extensionproviders").stdout
    # web asks the authorizer over mutual TLS: an edge like any other
    wait_until(lambda: any(e["src"] == "web" and e["dst"] == "ext-authz" and e["secured"]
                           for e in json.loads(cli.run("edges", "-n", "emojivoto", "-o", "json").stdout)), 20, "the web -> ext-authz edge")

    cli.run("delete", "-f", f"{FILES}/web-ext-authz.yaml", "-f", f"{FILES}/provider.yaml", "-f", f"{FILES}/ext-authz.yaml")
    wait_until(lambda: codes("/api/vote?choice=:joy:") == {"200": 4}, 15, "votes let through again")
    assert not any(w["deployment"] == "ext-authz" for w in cli.status()["workloads"])
