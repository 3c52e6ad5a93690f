"""``meshdojo authz``: the sidecars' authorization decisions per policy, counted from their
metrics over a window and shown with the policies in force — pure, then through real proxies."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client import generate_latest

from controlplane import authzview
from controlplane.policy import parse
from controlplane.telemetry import WorkloadHistory, authz_counts, parse_exposition
from proxy.metrics import ProxyMetrics
from tests.meshkit import spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc, fetch

POL = "policy.meshdojo.dev/v1alpha1"


def policy(name: str, action: str, dry_run: bool = False, **spec) -> object:
    meta = {"name": name, "namespace": "emojivoto", **({"annotations": {"istio.io/dry-run": "true"}} if dry_run else {})}
    return parse({"apiVersion": POL, "kind": "AuthorizationPolicy", "metadata": meta,
                  "spec": {"action": action, "rules": [{}], **spec}}, "p.yaml", 0)


def test_the_decisions_of_a_window_from_two_scrapes():
    metrics = ProxyMetrics()
    history = WorkloadHistory("emojivoto", "emoji-0", "emoji", "spiffe://x", True)
    metrics.authz_allow.labels("emojivoto/from-web").inc(5)  # before the window: not counted
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 100.0))
    metrics.authz_allow.labels("emojivoto/from-web").inc(30)
    metrics.authz_deny.labels("emojivoto/no-bots").inc(10)
    metrics.authz_audit.labels("emojivoto/watch").inc(2)
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 110.0))
    assert authz_counts(history, 60) == ({("allow", "emojivoto/from-web"): 30.0, ("deny", "emojivoto/no-bots"): 10.0,
                                          ("audit", "emojivoto/watch"): 2.0}, 10.0)


def test_a_row_per_policy_in_force_then_per_decision_counted():
    applied = [policy("no-bots", "DENY"), policy("shadow", "DENY", dry_run=True),
               policy("ext", "CUSTOM", provider={"name": "sample-ext-authz-http"}), policy("from-web", "ALLOW")]
    first = {("deny", "emojivoto/no-bots"): 20.0, ("allow", "emojivoto/from-web"): 40.0,
             ("deny", "emojivoto/from-web (no ALLOW rule matched)"): 4.0}
    second = {("deny", "emojivoto/no-bots"): 10.0, ("deny", "default:deny"): 2.0, ("allow", ""): 6.0,
              ("deny", "meshdojo-system/edge"): 8.0}
    rows = authzview.rows([(first, 10.0), (second, 8.0)], applied, ["workload", "workload", "workload", "namespace"])
    assert [(r["policy"], r["decides"], r["allowed_rps"], r["denied_rps"]) for r in rows] == [
        ("emojivoto/no-bots", "DENY, workload", 0.0, 3.0),
        ("emojivoto/shadow", "DENY (dry run), workload", 0.0, 0.0),
        ("emojivoto/ext", "CUSTOM by sample-ext-authz-http, workload", 0.0, 0.0),
        ("emojivoto/from-web", "ALLOW, namespace", 4.0, 0.0),
        ("(no policy)", "let in: no DENY matched and no ALLOW applies", 0.6, 0.0),
        ("default:deny", "the default inbound policy (config.linkerd.io/default-inbound-policy)", 0.0, 0.2),
        ("emojivoto/from-web (no ALLOW rule matched)", "ALLOW policies apply and none matched: denied", 0.0, 0.4),
        ("meshdojo-system/edge", "a policy its sidecars applied (one that selects it by label)", 0.0, 0.8)]
    assert rows[0]["denied"] == 30 and authzview.rows([], []) == []


async def test_a_deny_counted_for_its_policy_through_real_proxies(emoji_mesh, echo_port):
    """web is denied by a DENY for its identity, voting is let in: the control plane's scrapes
    count both, per policy, for GET /v1/authz (what meshdojo authz prints)."""
    mesh, server, client = emoji_mesh
    voting = mesh.start_proxy("emojivoto", "voting", echo_port, name="voting")
    status, _ = mesh.call("PUT", "/v1/workloads/emojivoto/emoji-0", {"deployment": "emoji", "identity": spiffe("emojivoto", "emoji"),
                                                                    "meshed": True, "admin": server.ports["admin"]})
    assert status == 200
    # the control plane has scraped emoji once: the window's baseline is before the traffic below
    await until(lambda: asyncio.to_thread(mesh.call, "GET", "/v1/stats?resource=deploy&name=emoji"),
                lambda r: r[1]["rows"] and not r[1]["rows"][0]["not_answering"], "the first scrape", 5)
    apply(mesh, doc("AuthorizationPolicy", "no-web", {"action": "DENY",  # the namespace's: every workload of emojivoto
                                                      "rules": [{"from": [{"source": {"principals": [spiffe("emojivoto", "web")]}}]}]}))
    async with aiohttp.ClientSession() as session:
        await until(lambda: fetch(session, client.outbound, "http://emoji/"), lambda r: r[0] == 403, "the DENY")
        for _ in range(20):
            assert (await fetch(session, client.outbound, "http://emoji/"))[0] == 403
            assert (await fetch(session, voting.outbound, "http://emoji/"))[0] == 200

    def counted(r):
        rows = {row["policy"]: row for row in r[1].get("rows", [])}
        return rows.get("emojivoto/no-web", {}).get("denied", 0) >= 20 and rows.get("(no policy)", {}).get("allowed", 0) >= 20

    status, body = await until(lambda: asyncio.to_thread(mesh.call, "GET", "/v1/authz?namespace=emojivoto&deployment=emoji&window=1m"),
                               counted, "the decisions scraped", 10)
    rows = {row["policy"]: row for row in body["rows"]}
    assert rows["emojivoto/no-web"]["decides"] == "DENY, namespace" and rows["emojivoto/no-web"]["allowed"] == 0
    assert body["inbound_rps"] > 0 and body["listed"] is True
    missing = mesh.call("GET", "/v1/authz?namespace=emojivoto&deployment=nobody")
    assert missing[0] == 404 and "known: emoji" in missing[1]["error"]
    assert mesh.call("GET", "/v1/authz?namespace=emojivoto")[0] == 400
