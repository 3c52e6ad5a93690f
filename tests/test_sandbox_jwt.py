"""End users' JWTs with the learner's commands against a real sandbox: ``meshdojo jwt`` for a
token, bookinfo's demo policies for Istio's two JWT tasks, ``meshdojo load`` to send requests
with and without one."""

from __future__ import annotations

import json

import pytest

from sandbox.processes import wait_until

POLICIES = "demo-apps/bookinfo/policies"


@pytest.mark.timeout(180)
def test_istios_jwt_tasks_on_bookinfo(bookinfo):
    cli = bookinfo

    def codes(*headers: str) -> dict[str, int]:
        args = [arg for h in headers for arg in ("-H", h)]
        out = cli.run("load", "svc/productpage", "/productpage", "--from", "deploy/traffic", "-n", "4", "-c", "1", *args, "-o", "json")
        return {code: c["count"] for code, c in json.loads(out.stdout)["codes"].items()}

    alice = cli.run("jwt", "alice", "--claim", "groups=group1,group2").stdout.strip()
    bob = cli.run("jwt", "bob", "--claim", "groups=group2").stdout.strip()
    expired = cli.run("jwt", "alice", "--expired").stdout.strip()
    claims = json.loads(cli.run("jwt", "carol", "--claim", "admin=true", "--aud", "bookinfo", "-o", "json").stdout)["payload"]
    assert claims["admin"] is True and claims["aud"] == "bookinfo" and claims["sub"] == "carol"

    # a token required where nothing verifies tokens would answer every request 403: apply and check say so
    early = cli.run("apply", "-f", f"{POLICIES}/require-jwt.yaml")
    assert "warning: AuthorizationPolicy bookinfo/require-jwt reads end users' tokens" in early.stderr, early.stderr
    assert "no RequestAuthentication selects bookinfo/productpage" in early.stderr, early.stderr
    assert "require-jwt reads end users' tokens" in cli.run("check", check=False).stdout
    cli.run("delete", "-f", f"{POLICIES}/require-jwt.yaml")

    cli.run("apply", "-f", f"{POLICIES}/jwt-productpage.yaml")
    assert "productpage-jwt" in cli.run("get", "requestauthentications").stdout
    wait_until(lambda: codes(f"Authorization: Bearer {expired}") == {"401": 4}, 10, "the expired token to be refused")
    assert codes() == {"200": 4}  # no token: let in, with no principal
    assert codes(f"Authorization: Bearer {alice}") == {"200": 4}

    assert "warning" not in cli.run("apply", "-f", f"{POLICIES}/require-jwt.yaml").stderr
    assert "reads end users' tokens" not in cli.run("check", check=False).stdout
    wait_until(lambda: codes() == {"403": 4}, 10, "a token to be required")
    assert codes(f"Authorization: Bearer {bob}") == {"200": 4}
    cli.run("apply", "-f", f"{POLICIES}/deny-without-group1.yaml")
    wait_until(lambda: codes(f"Authorization: Bearer {bob}") == {"403": 4}, 10, "group1 to be required")
    assert codes(f"Authorization: Bearer {alice}") == {"200": 4} and codes() == {"403": 4}

    # the same from the gateway, with --jwt minting the token: as the lesson sends it
    def through_gateway(*args: str) -> dict[str, int]:
        out = cli.run("load", "svc/productpage", "/productpage", "-n", "3", "-c", "1", *args, "-o", "json").stdout
        return {code: c["count"] for code, c in json.loads(out)["codes"].items()}

    assert through_gateway("--jwt", "alice", "--jwt-claim", "groups=group1") == {"200": 3}
    assert through_gateway("--jwt", "bob") == {"403": 3}
    # the same at the edge: bookinfo's ingress gateway asks for a token, the mesh inside does not
    cli.run("delete", "-f", f"{POLICIES}/deny-without-group1.yaml", "-f", f"{POLICIES}/require-jwt.yaml",
            "-f", f"{POLICIES}/jwt-productpage.yaml")
    cli.run("apply", "-f", f"{POLICIES}/ingress-jwt.yaml")
    wait_until(lambda: through_gateway() == {"403": 3}, 10, "the gateway to require a token")
    assert through_gateway("--jwt", "bob") == {"200": 3} and codes() == {"200": 4}  # the traffic deployment: inside
    bad = cli.run("load", "svc/productpage", "--jwt-claim", "groups=group1", check=False)
    assert bad.returncode == 1 and "--jwt alice" in bad.stderr

    bad = cli.run("jwt", "alice", "--claim", "sub=mallory", check=False)
    assert bad.returncode == 1 and "claims: sub is set by the issuer" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli.run("jwt", check=False)
    assert bad.returncode == 1 and "meshdojo jwt alice" in bad.stderr
    keys = json.loads(cli.run("jwt", "--jwks").stdout)["keys"]
    assert keys[0]["kty"] == "EC" and keys[0]["crv"] == "P-256" and "d" not in keys[0]  # public only
