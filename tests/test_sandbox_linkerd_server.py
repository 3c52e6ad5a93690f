"""Linkerd's *Restricting Access To Services* task on a real emojivoto sandbox, as a learner runs
it: the task's Server makes web's calls to voting fail (403), `meshdojo authz` shows who was
refused; the ServerAuthorization lets web (and only web) in again; Linkerd's file as written
(its emojivoto's labels and port name) is applied with a warning saying why it covers nothing;
a bad port is refused by field with nothing applied; Linkerd's newer form of the same step, an
AuthorizationPolicy requiring a MeshTLSAuthentication, does the same beside our own
AuthorizationPolicy of the same name; `delete -f` puts everything back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sandbox.processes import wait_until
from tests.meshkit import Cli
from tests.test_sandbox import DEMO_POLICIES

SERVER_FILE = DEMO_POLICIES / "voting-server.yaml"
AUTHORIZATION_FILE = DEMO_POLICIES / "voting-serverauthorization.yaml"
POLICY_FILE = DEMO_POLICIES / "voting-authorizationpolicy.yaml"
OURS = {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "AuthorizationPolicy",  # ours, of the same name as Linkerd's
        "metadata": {"namespace": "emojivoto", "name": "voting-policy"},
        "spec": {"selector": {"matchLabels": {"app": "voting"}}, "action": "DENY",
                 "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}}


def codes(cli: Cli, source: str) -> dict[str, int]:
    """What voting answered 5 requests from ``source``'s sidecar, with its identity."""
    out = cli.run("load", "svc/voting", "/api/results", "--from", f"deploy/{source}", "--namespace", "emojivoto",
                  "-n", "5", "-c", "1", "-o", "json").stdout
    return {code: entry["count"] for code, entry in json.loads(out)["codes"].items()}


def authz_rows(cli: Cli) -> list[dict]:
    return json.loads(cli.run("authz", "deploy/voting", "-n", "emojivoto", "-t", "1m", "-o", "json").stdout)["rows"]


@pytest.mark.timeout(180)
def test_linkerds_restricting_access_task_on_emojivoto(cli: Cli, tmp_path: Path):
    cli.run("up", "--no-tui", "--demo", "emojivoto")
    assert codes(cli, "web") == {"200": 5} and codes(cli, "emoji") == {"200": 5}  # Linkerd's default: anyone

    # Linkerd's file as its task writes it: its emojivoto's labels (app=voting-svc) and port name (grpc)
    verbatim = yaml.safe_load(SERVER_FILE.read_text())
    verbatim["spec"].update(podSelector={"matchLabels": {"app": "voting-svc"}}, port="grpc")
    (tmp_path / "verbatim.yaml").write_text(yaml.safe_dump(verbatim))
    applied = cli.run("apply", "-f", str(tmp_path / "verbatim.yaml"))
    assert "spec.podSelector (app=voting-svc) selects no pod in emojivoto (its pods are labelled app=emoji, app=voting" in applied.stderr
    assert codes(cli, "emoji") == {"200": 5}  # it covers nothing
    checked = cli.run("check", check=False).stdout  # and `check` keeps saying so
    assert "Server emojivoto/voting-grpc: spec.podSelector (app=voting-svc) selects no pod" in checked, checked
    verbatim["spec"]["podSelector"] = {"matchLabels": {"app": "voting"}}
    (tmp_path / "verbatim.yaml").write_text(yaml.safe_dump(verbatim))
    said = cli.run("apply", "-f", str(tmp_path / "verbatim.yaml")).stderr
    assert "spec.port grpc is not a port its pods declare (8080 (http))" in said, said
    verbatim["spec"]["port"] = "gRPC"
    (tmp_path / "verbatim.yaml").write_text(yaml.safe_dump(verbatim))
    refused = cli.run("apply", "-f", str(tmp_path / "verbatim.yaml"), check=False)
    assert refused.returncode == 1 and "document 0: spec.port: expected a port number or a container port's name" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert json.loads(cli.run("get", "server", "-o", "json").stdout)[0]["spec"]["port"] == "grpc"  # nothing applied

    # the task's step 1, with the demo's labels and port name: nobody is authorized, so web's calls fail
    assert "server/voting-grpc configured" in cli.run("apply", "-f", str(SERVER_FILE)).stdout
    wait_until(lambda: codes(cli, "web") == {"403": 5}, 10, "the Server to refuse web")
    denied = wait_until(lambda: [r for r in authz_rows(cli) if r["denied"]], 15, "the denials in authz (the next scrape)")
    assert denied[0]["policy"].startswith("emojivoto/voting-grpc.server"), denied
    described = cli.run("describe", "deploy/voting", "-n", "emojivoto").stdout
    assert "Server                 emojivoto/voting-grpc (port http, accessPolicy deny, workload)" in described, described

    # step 2: web, and only web, may call voting
    assert "serverauthorization/voting-grpc created" in cli.run("apply", "-f", str(AUTHORIZATION_FILE)).stdout
    wait_until(lambda: codes(cli, "web") == {"200": 5}, 10, "the ServerAuthorization to let web in")
    assert codes(cli, "emoji") == {"403": 5}
    allowed = wait_until(lambda: next((r for r in authz_rows(cli) if r["policy"] == "emojivoto/voting-grpc.serverauthorization"
                                       and r["allowed"] >= 5), None), 15, "web's calls counted as allowed in authz")
    assert allowed["decides"] == "ALLOW (ServerAuthorization emojivoto/voting-grpc), workload", allowed
    table = cli.run("get", "serverauthorization").stdout
    assert "server/voting-grpc" in table and "meshed sa/web" in table

    # Linkerd's newer form of step 2: an AuthorizationPolicy requiring a MeshTLSAuthentication
    cli.run("delete", "-f", str(AUTHORIZATION_FILE))
    wait_until(lambda: codes(cli, "web") == {"403": 5}, 10, "web refused again without the ServerAuthorization")
    (tmp_path / "ours.yaml").write_text(yaml.safe_dump(OURS))
    assert "authorizationpolicy/voting-policy created" in cli.run("apply", "-f", str(tmp_path / "ours.yaml")).stdout
    policy_only = list(yaml.safe_load_all(POLICY_FILE.read_text()))[:1]
    (tmp_path / "policy-only.yaml").write_text(yaml.safe_dump_all(policy_only))
    said = cli.run("apply", "-f", str(tmp_path / "policy-only.yaml"))
    assert "authorizationpolicy.policy.linkerd.io/voting-policy created" in said.stdout, said.stdout
    assert ("spec.requiredAuthenticationRefs names MeshTLSAuthentication voting-authn, which does not exist (yet): until it does, "
            "this policy lets nobody in") in said.stderr, said.stderr
    assert codes(cli, "web") == {"403": 5}
    applied = cli.run("apply", "-f", str(POLICY_FILE)).stdout
    assert "meshtlsauthentication/voting-authn created" in applied, applied
    wait_until(lambda: codes(cli, "web") == {"200": 5}, 10, "the AuthorizationPolicy to let web in")
    assert codes(cli, "emoji") == {"403": 5}
    allowed = wait_until(lambda: next((r for r in authz_rows(cli) if r["policy"] == "emojivoto/voting-policy.authorizationpolicy"
                                       and r["allowed"] >= 5), None), 15, "web's calls counted as allowed by the policy")
    assert allowed["decides"] == "ALLOW (Linkerd's AuthorizationPolicy emojivoto/voting-policy), workload", allowed
    linkerds = json.loads(cli.run("get", "authorizationpolicies.policy.linkerd.io", "-o", "json").stdout)
    assert [(d["apiVersion"], d["metadata"]["name"]) for d in linkerds] == [("policy.linkerd.io/v1alpha1", "voting-policy")]
    ours = json.loads(cli.run("get", "authz", "-n", "emojivoto", "-o", "json").stdout)
    assert [(d["apiVersion"], d["metadata"]["name"]) for d in ours] == [("policy.meshdojo.dev/v1alpha1", "voting-policy")]
    assert "AuthorizationPolicy.policy.linkerd.io emojivoto/voting-policy deleted" in cli.run("delete", "-f", str(POLICY_FILE)).stdout
    assert json.loads(cli.run("get", "authz", "-n", "emojivoto", "-o", "json").stdout) == ours  # ours stays
    wait_until(lambda: codes(cli, "web") == {"403": 5}, 10, "web refused once Linkerd's policy is gone")
    cli.run("delete", "authz", "voting-policy", "-n", "emojivoto")

    for path in (SERVER_FILE,):
        cli.run("delete", "-f", str(path))
    wait_until(lambda: codes(cli, "emoji") == {"200": 5}, 10, "voting open to anyone again")


def emoji_codes(cli: Cli, source: str, path: str) -> dict[str, int]:
    out = cli.run("load", "svc/emoji", path, "--from", f"deploy/{source}", "--namespace", "emojivoto",
                  "-n", "3", "-c", "1", "-o", "json").stdout
    return {code: entry["count"] for code, entry in json.loads(out)["codes"].items()}


@pytest.mark.timeout(180)
def test_linkerds_per_route_policy_task_on_emojis_routes(cli: Cli):
    """Linkerd's Configuring Per-Route Policy task, with emoji in the part of booksapp's authors:
    a Server (403), a route of GET /api/list authorized for any meshed caller (GET /api/find,
    which no route matches yet: 404), a route of GET /api/find (403: routed, not authorized), its
    policy for web (200 for web, 403 for voting)."""
    cli.run("up", "--no-tui", "--demo", "emojivoto")
    find = "/api/find?shortcode=:joy:"
    steps = [DEMO_POLICIES / f"{name}.yaml" for name in ("emoji-server", "emoji-list-route", "emoji-find-route", "emoji-find-policy")]
    cli.run("apply", "-f", str(steps[0]))
    wait_until(lambda: emoji_codes(cli, "web", "/api/list") == {"403": 3}, 10, "the Server to refuse web")
    applied = cli.run("apply", "-f", str(steps[1])).stdout
    assert "httproute.policy.linkerd.io/emoji-list-route created" in applied, applied
    wait_until(lambda: emoji_codes(cli, "web", "/api/list") == {"200": 3}, 10, "the list route's policy to let web in")
    assert emoji_codes(cli, "voting", "/api/list") == {"200": 3}  # any meshed caller
    assert emoji_codes(cli, "web", find) == {"404": 3}  # no route matches it
    posted = cli.run("load", "svc/emoji", "/api/list", "-X", "post", "--from", "deploy/web", "--namespace", "emojivoto", "-n", "2")
    assert "2 POST requests to" in posted.stdout and "Code 404 : 2" in posted.stdout, posted.stdout  # the route is GET's
    refused = cli.run("load", "svc/emoji", "/api/list", "-X", "FETCH", "--from", "deploy/web", check=False)
    assert refused.returncode == 1 and "-X FETCH: expected one of GET, HEAD, POST" in refused.stderr, refused.stderr
    cli.run("apply", "-f", str(steps[2]))
    wait_until(lambda: emoji_codes(cli, "web", find) == {"403": 3}, 10, "the find route: routed, not authorized")
    cli.run("apply", "-f", str(steps[3]))
    wait_until(lambda: emoji_codes(cli, "web", find) == {"200": 3}, 10, "the find route's policy to let web in")
    assert emoji_codes(cli, "voting", find) == {"403": 3}

    rows = wait_until(lambda: [r for r in json.loads(cli.run("authz", "deploy/emoji", "-n", "emojivoto", "-t", "1m", "-o", "json")
                                                    .stdout)["rows"]
                               if r["policy"] == "emojivoto/emoji-find-policy.authorizationpolicy" and r["allowed"] >= 3],
                      15, "web's finds counted as allowed by the route's policy")
    assert rows[0]["decides"] == "ALLOW (Linkerd's AuthorizationPolicy emojivoto/emoji-find-policy, route emoji-find-route), workload"
    described = cli.run("describe", "deploy/emoji", "-n", "emojivoto").stdout
    assert ("HTTPRoutes             emojivoto/emoji-find-route (GET /api/find), emojivoto/emoji-list-route (GET /api/list): "
            "the Server serves only what they match (any other request: 404)") in described, described
    listed = json.loads(cli.run("get", "httproutes.policy.linkerd.io", "-o", "json").stdout)
    assert sorted(d["metadata"]["name"] for d in listed) == ["emoji-find-route", "emoji-list-route"]
    assert json.loads(cli.run("get", "httproute", "-n", "emojivoto", "-o", "json").stdout) == []  # Gateway API's: another kind

    for path in reversed(steps):
        cli.run("delete", "-f", str(path))
    wait_until(lambda: emoji_codes(cli, "voting", find) == {"200": 3}, 10, "emoji open to anyone again")


def burst(cli: Cli, source: str | None = None, n: int = 10) -> dict[str, int]:
    """What web answered n requests sent at once: through the ingress gateway (its identity), or
    from ``source``'s sidecar (its own)."""
    where = ["--from", f"deploy/{source}"] if source else []
    out = cli.run("load", "svc/web", "/api/list", *where, "--namespace", "emojivoto", "-n", str(n), "-c", str(n), "-o", "json").stdout
    return {code: entry["count"] for code, entry in json.loads(out)["codes"].items()}


@pytest.mark.timeout(180)
def test_linkerds_rate_limiting_task_on_web(cli: Cli):
    """Linkerd's Configuring Rate Limiting task on web: a Server that lets everyone in, a limit of
    4 a second per identity (ten at once through the gateway: 429s; voting's own bucket is
    untouched), an override of 6 for the gateway's ServiceAccount; describe and get say which."""
    cli.run("up", "--no-tui", "--demo", "emojivoto")
    server, limit, override = (DEMO_POLICIES / f"{name}.yaml" for name in ("web-server", "web-ratelimit-linkerd", "web-ratelimit-override"))
    cli.run("apply", "-f", str(server))
    assert burst(cli) == {"200": 10}  # a Server with accessPolicy all-unauthenticated changes nothing
    applied = cli.run("apply", "-f", str(limit)).stdout
    assert "httplocalratelimitpolicy/web-http created (namespace emojivoto)" in applied, applied
    limited = wait_until(lambda: (c := burst(cli)).get("429") and c, 10, "the limit to refuse the gateway's burst")
    assert limited.get("200", 0) <= 6, limited  # four in the bucket, and what refilled while the ten were sent
    assert burst(cli, "voting", 4) == {"200": 4}  # another identity: a bucket of its own
    described = cli.run("describe", "deploy/web", "-n", "emojivoto").stdout
    assert ("HTTPLocalRateLimit     emojivoto/web-http (4 rps per identity, workload): Linkerd's limit on the Server's port "
            "(429 past it)") in described, described
    cli.run("apply", "-f", str(override))
    wait_until(lambda: "6 rps for sa/ingress-gateway" in cli.run("describe", "deploy/web", "-n", "emojivoto").stdout, 10,
               "web's sidecar to have the override")
    raised = wait_until(lambda: (c := burst(cli)).get("200", 0) >= 6 and c, 10, "the gateway's six a second")
    assert "429" in raised, raised
    listed = cli.run("get", "httplocalratelimitpolicies", "-n", "emojivoto").stdout
    assert "server/web-http" in listed and "4 rps per identity, 6 rps for sa/ingress-gateway" in listed, listed
    for path in (override, server):
        cli.run("delete", "-f", str(path))
    wait_until(lambda: burst(cli) == {"200": 10}, 10, "web unlimited again")
