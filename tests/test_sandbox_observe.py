"""The observability and network-fault commands a learner types, against a real sandbox."""

from __future__ import annotations

import json
import re

import pytest

from sandbox.processes import wait_until
from tests.test_sandbox import DEMO_POLICIES


@pytest.mark.timeout(180)
def test_routes_wire_and_network_faults_from_the_cli(emojivoto):
    cli = emojivoto

    def routes():
        rows = json.loads(cli.run("routes", "svc/emoji", "--from", "deploy/web", "-o", "json", "-t", "10s").stdout)
        return rows if rows and rows[0]["effective_rps"] > 0 else None

    rows = wait_until(routes, 20, "route metrics for web -> emoji")
    assert rows[0]["route"] == "[default]" and rows[0]["effective_success"] is not None
    table = cli.run("routes", "svc/emoji", "-o", "wide").stdout
    assert table.splitlines()[0].split()[:4] == ["ROUTE", "MATCH", "EFFECTIVE_SUCCESS", "EFFECTIVE_RPS"]

    # the wire between web and emoji: TLS records, no readable HTTP
    out = cli.run("wire", "deploy/web", "deploy/emoji").stdout
    assert "TLS 1.3" in out and "17 03 03" in out and "no readable HTTP" in out, out
    assert "spiffe://meshdojo.local/ns/emojivoto/sa/emoji" in out

    # a network fault, shown in status until cleared
    out = cli.run("fault", "net", "latency", "svc/emoji", "--from", "deploy/web", "--latency", "200ms", "--for", "1m").stdout
    assert "latency 200ms" in out and "watch for:" in out
    status = cli.run("status").stdout
    assert "network faults" in status and "latency-web-emoji: latency 200ms" in status and "s left)" in status
    bad = cli.run("fault", "net", "partition", "deploy/web", "deploy/nope", check=False)
    assert bad.returncode == 1 and "no deployment 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli.run("fault", "net", "bandwidth", "svc/emoji", "--rate", "fast", check=False)
    assert bad.returncode == 1 and "rate: 'fast' is not a rate" in bad.stderr
    out = cli.run("fault", "clear").stdout
    assert "network fault latency-web-emoji removed" in out
    assert "network faults" not in cli.run("status").stdout

    # the server leaves the mesh: the same edge now carries readable HTTP
    cli.run("uninject", "emoji")
    out = cli.run("wire", "deploy/web", "deploy/emoji").stdout
    assert "PLAINTEXT" in out and "readable HTTP crossed the wire" in out and "|GET /" in out, out


@pytest.mark.timeout(120)
def test_a_vote_is_one_trace_through_four_sidecars_and_a_fault_shows_where_it_struck(emojivoto):
    """Istio's and Linkerd's tracing task with the learner's commands: a Telemetry samples every
    request, the apps pass the context on, and ``meshdojo trace`` puts the spans together."""
    cli = emojivoto
    cli.run("apply", "-f", "demo-apps/emojivoto/policies/tracing-all.yaml")
    assert "tracing 100% sampled" in cli.run("get", "telemetries").stdout

    def trace_of(path: str, accept) -> dict | None:
        for t in json.loads(cli.run("trace", "-n", "emojivoto", "-o", "json").stdout):
            if t["root"]["path"].startswith(path) and t["spans"] == 6:
                spans = json.loads(cli.run("trace", t["traceId"][:12], "-o", "json").stdout)["spans"]
                if accept(spans):
                    return {"id": t["traceId"], "spans": spans}
        return None

    vote = wait_until(lambda: trace_of("/api/vote", lambda spans: True), 30, "a vote's whole trace")
    assert [(s["depth"], s["workload"].rsplit("-", 1)[0], s["direction"]) for s in vote["spans"]] == [
        (0, "emojivoto/vote-bot", "outbound"), (1, "emojivoto/web", "inbound"),
        (2, "emojivoto/web", "outbound"), (3, "emojivoto/emoji", "inbound"),
        (2, "emojivoto/web", "outbound"), (3, "emojivoto/voting", "inbound")]
    text = cli.run("trace", vote["id"][:10]).stdout
    assert f"trace {vote['id']}: 6 spans at 4 sidecars" in text and "emojivoto/voting-0 inbound: POST voting:8080/" in text
    assert "from web (mutual TLS)" in text

    cli.run("apply", "-f", "demo-apps/emojivoto/policies/voting-abort.yaml")
    struck = wait_until(lambda: trace_of("/api/vote", lambda spans: "fault=abort 503" in spans[-1]["fate"]), 30,
                        "a vote the fault struck")
    assert [s["status"] for s in struck["spans"]] == [503, 503, 200, 200, 503, 503]  # what failed, and where it began
    assert "503 (4 failed)" in cli.run("trace", "-n", "emojivoto").stdout  # the list says which traces went wrong

    # Istio's access-log task: the same Telemetry kind, a line per request in each sidecar's log
    cli.run("apply", "-f", "demo-apps/emojivoto/policies/access-logs.yaml")
    def logged(deployment: str, text: str) -> list[str] | None:
        return [ln for ln in cli.run("logs", deployment, "--proxy").stdout.splitlines() if text in ln] or None

    # the abort still in force: voting's sidecar injected the 503 (Envoy's flag FI), web's passed it on as it came
    assert wait_until(lambda: logged("voting", '" 503 FI fault_filter_abort '), 20, "voting's sidecar to log an injected abort")
    assert wait_until(lambda: logged("web", '" 503 - via_upstream '), 20, "web's sidecar to log the 503 it passed on")

    bad = cli.run("trace", "not-a-trace", check=False)
    assert bad.returncode == 1 and "trace: expected a trace id" in bad.stderr and "Traceback" not in bad.stderr
    gone = cli.run("trace", "0" * 32, check=False)
    assert gone.returncode == 1 and "no trace '" in gone.stderr and "meshdojo trace' lists the latest traces" in gone.stderr


@pytest.mark.timeout(120)
def test_a_dry_run_deny_reports_what_it_would_refuse_then_refuses_it(emojivoto):
    """Istio's Dry Run task with emojivoto's demo file: the bot still gets through, web's sidecar
    says the policy would have denied it, and without the annotation it does."""
    cli = emojivoto
    policies = "demo-apps/emojivoto/policies"

    def bot_codes() -> dict[str, int]:
        out = cli.run("load", "svc/web", "/api/list", "--from", "deploy/vote-bot", "-n", "3", "-c", "1", "-o", "json").stdout
        return {code: c["count"] for code, c in json.loads(out)["codes"].items()}

    cli.run("apply", "-f", f"{policies}/deny-vote-bot-dry-run.yaml")
    assert "DENY (dry-run)" in cli.run("get", "authz", "-n", "emojivoto").stdout
    wait_until(lambda: "dry-run DENY policies: denied by emojivoto/deny-vote-bot" in cli.run("logs", "web", "--proxy").stdout, 20,
               "web's sidecar to report the dry-run DENY")
    assert bot_codes() == {"200": 3}  # reported, never enforced
    cli.run("apply", "-f", f"{policies}/deny-vote-bot.yaml")  # the same policy, enforced
    wait_until(lambda: bot_codes() == {"403": 3}, 10, "the DENY to be enforced")

    def denied() -> int:  # meshdojo authz: the bot's requests counted as denied by the policy (once scraped)
        rows = json.loads(cli.run("authz", "deploy/web", "-o", "json").stdout)["rows"]
        return next((r["denied"] for r in rows if r["policy"] == "emojivoto/deny-vote-bot"), 0)

    wait_until(lambda: denied() >= 3, 10, "the denials counted for the policy")
    table = cli.run("authz", "deploy/web", "-n", "emojivoto").stdout.splitlines()
    assert table[0].startswith("deploy/web in emojivoto: ") and table[1].split()[:3] == ["POLICY", "DECIDES", "ALLOWED"], table
    (row,) = [line for line in table if line.startswith("emojivoto/deny-vote-bot ")]
    assert "DENY, workload" in row and row.split()[-2] != "0.00rps", row  # DENIED, per second


@pytest.mark.timeout(120)
def test_proxy_status_follows_an_apply_and_a_scale_and_check_says_every_sidecar_is_in_step(emojivoto):
    cli = emojivoto

    def status() -> list[dict]:
        return json.loads(cli.run("proxy-status", "-o", "json").stdout)

    def in_step(rows: list[dict]) -> list[dict] | None:
        return rows if rows and all(r["policies"] == r["endpoints"] == "SYNCED" for r in rows) else None

    before = wait_until(lambda: in_step(status()), 20, "every sidecar in step")
    assert {r["name"] for r in before} == {"web-0", "emoji-0", "voting-0", "vote-bot-0", "emojivoto-ingress"}
    version = before[0]["controlPlaneVersion"]
    cli.run("apply", "-f", str(DEMO_POLICIES / "emoji-retries.yaml"))
    after = wait_until(lambda: in_step(rows := status()) and rows[0]["controlPlaneVersion"] > version and rows, 20,
                       "every sidecar holding the new snapshot")
    assert all(r["policyVersion"] == after[0]["controlPlaneVersion"] for r in after)
    # a second emoji: web's sidecar (which calls emoji) holds both endpoints once it is in step
    cli.run("scale", "deploy/emoji", "2")
    wait_until(lambda: (rows := in_step(status())) and next(r for r in rows if r["name"] == "web-0")["services"] >= 2
               and any(r["name"] == "emoji-1" for r in rows), 40, "web's sidecar in step with two emoji instances")
    table = cli.run("ps", "-n", "emojivoto").stdout
    assert table.startswith("control plane: policy snapshot v") and "SYNCED (v" in table and "emoji-1" in table
    check = cli.run("check").stdout
    assert "sidecars hold the control plane's latest policies" in check, check
    # describe: what web's own sidecar does on the way to the services it called (emoji's route, applied above)
    described = cli.run("describe", "deploy/web").stdout
    assert "calls         svc/emoji (emojivoto), its sidecar acts on: HTTPRoute emojivoto/" in described, described
    # linkerd diagnostics proxy-metrics: each instance's sidecar page, with Linkerd's names, read from the sidecar itself
    page = cli.run("diagnostics", "proxy-metrics", "deploy/emoji", "-n", "emojivoto").stdout
    assert page.startswith("#\n# POD emoji-0 (1 of 2)\n#\n") and "\n#\n# POD emoji-1 (2 of 2)\n#\n" in page, page[:300]
    assert re.search(r'^request_total\{[^}]*direction="inbound"', page, re.M) and "# TYPE response_latency_ms histogram" in page
    unmeshed = cli.run("diagnostics", "proxy-metrics", "deploy/nope", check=False)
    assert unmeshed.returncode == 1 and "no deployment 'nope'" in unmeshed.stderr and "Traceback" not in unmeshed.stderr
    # linkerd diagnostics endpoints: what discovery hands the sidecars for emoji, both instances, the identity checked
    shown = json.loads(cli.run("diagnostics", "endpoints", "emoji.emojivoto.svc.cluster.local:8080", "-o", "json").stdout)
    assert sorted(e["pod"] for e in shown) == ["emoji-0", "emoji-1"], shown
    assert {e["identity"] for e in shown} == {"spiffe://meshdojo.local/ns/emojivoto/sa/emoji"} and all(e["ip"] == "127.0.0.1" for e in shown)
    table = cli.run("diagnostics", "endpoints", "svc/emoji").stdout.splitlines()
    assert table[0].split() == ["NAMESPACE", "IP", "PORT", "POD", "SERVICE", "IDENTITY"] and len(table) == 3, table
    gone = cli.run("diagnostics", "endpoints", "svc/nope", check=False)
    assert gone.returncode == 1 and "no service 'nope'" in gone.stderr and "Traceback" not in gone.stderr, gone.stderr
