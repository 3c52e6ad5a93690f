"""``meshdojo stat / edges / identity``: what the control plane's telemetry and the proxies
say, as tables in the style of ``linkerd viz`` (or JSON)."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from typing import Any
from urllib.parse import urlencode

from sandbox.cpapi import ApiError
from sandbox.resources import api_for


def human_duration(seconds: float) -> str:
    """A duration as a learner reads it: 23h59m, 3d4h, 4m05s, 45s (the CLI and the UI alike)."""
    seconds = int(seconds)
    if seconds >= 2 * 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def stat(name: str, target: str | None, namespace: str | None, window: str) -> list[dict[str, Any]]:
    kind, _, resource = (target or "deploy").partition("/")
    kind = {"deploy": "deploy", "deployment": "deploy", "deployments": "deploy", "svc": "svc", "service": "svc",
            "services": "svc"}.get(kind)
    if kind is None:
        raise ValueError(f"{target!r}: expected deploy[/NAME] or svc[/NAME]")
    query = {"resource": kind, "window": window, **({"namespace": namespace} if namespace else {}),
             **({"name": resource} if resource else {})}
    return api_for(name).call("GET", "/v1/stats?" + urlencode(query))["rows"]


def edges(name: str, namespace: str | None, window: str) -> list[dict[str, Any]]:
    query = {"window": window, **({"namespace": namespace} if namespace else {})}
    return api_for(name).call("GET", "/v1/edges?" + urlencode(query))["rows"]


def routes(name: str, target: str, namespace: str | None, source: str | None, window: str) -> list[dict[str, Any]]:
    from sandbox.resources import service_namespace

    kind, _, service = target.partition("/")
    if kind not in ("svc", "service", "services") or not service:
        raise ValueError(f"{target!r}: expected svc/NAME, e.g. 'meshdojo routes svc/web'")
    query = {"service": service, "namespace": service_namespace(name, service, namespace), "window": window}
    if source:
        src_kind, _, deployment = source.partition("/")
        if src_kind not in ("deploy", "deployment") or not deployment:
            raise ValueError(f"--from {source!r}: expected deploy/NAME, e.g. --from deploy/vote-bot")
        query["from"] = deployment
    return api_for(name).call("GET", "/v1/routes?" + urlencode(query))["rows"]


def authz(name: str, target: str, namespace: str | None, window: str) -> dict[str, Any]:
    """A deployment's inbound authorization over ``window`` (``GET /v1/authz``)."""
    kind, _, deployment = target.partition("/")
    if kind not in ("deploy", "deployment", "deployments") or not deployment:
        raise ValueError(f"{target!r}: expected deploy/NAME, e.g. 'meshdojo authz deploy/emoji'")
    api = api_for(name)
    if namespace is None:
        found = sorted({r["namespace"] for r in api.call("GET", "/v1/stats?" + urlencode({"resource": "deploy", "name": deployment}))["rows"]})
        if len(found) > 1:
            raise ValueError(f"deployment {deployment!r} is in {', '.join(found)}: add -n NAMESPACE")
        namespace = found[0] if found else "default"
    return api.call("GET", "/v1/authz?" + urlencode({"namespace": namespace, "deployment": deployment, "window": window}))


def authz_table(data: dict[str, Any]) -> list[tuple[str, ...]]:
    """``meshdojo authz``'s table: a row per policy, as Linkerd's ``viz authz`` has per authorization."""
    linkerd = any(row.get("server") for row in data["rows"])  # a Linkerd Server decides: its ROUTE and SERVER columns too
    table = [(*(("ROUTE", "SERVER") if linkerd else ()), "POLICY", "DECIDES", "ALLOWED", "DENIED", "AUDITED")]
    for row in data["rows"]:
        table.append((*((row.get("route") or "-", row.get("server") or "-") if linkerd else ()), row["policy"], row["decides"],
                      f"{row['allowed_rps']:.2f}rps", f"{row['denied_rps']:.2f}rps", f"{row['audited_rps']:.2f}rps"))
    return table


def sidecar_config(api: Any, w: dict[str, Any]) -> dict[str, Any]:
    """A meshed instance's sidecar ``/config`` (identity, certificate, policies): a local one's
    from its admin port, a pod's through the control plane (only it reaches the pods).
    OSError or ApiError when the sidecar does not answer."""
    if (w.get("ports") or {}).get("admin"):
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{w['ports']['admin']}/config", timeout=3).read())
    return api.call("GET", f"/v1/workloads/{w['namespace']}/{w['name']}/config")


def sidecar_metrics(api: Any, w: dict[str, Any]) -> str:
    """A meshed instance's sidecar Prometheus page (``/metrics``): a local one's from its admin
    port, a pod's through the control plane. OSError or ApiError when the sidecar does not answer."""
    if (w.get("ports") or {}).get("admin"):
        return urllib.request.urlopen(f"http://127.0.0.1:{w['ports']['admin']}/metrics", timeout=3).read().decode()
    return str(api.call("GET", f"/v1/workloads/{w['namespace']}/{w['name']}/metrics")["metrics"])


def identities(name: str) -> dict[str, Any]:
    from sandbox.backends import backend_for

    st = backend_for(name).status() or {}
    ca = api_for(name).call("GET", "/v1/ca")
    now = dt.datetime.now(dt.UTC)
    rows = []
    api = api_for(name)
    for w in st.get("workloads", []):
        if not w["meshed"]:
            continue
        try:
            config = sidecar_config(api, w)
        except (OSError, ApiError):
            rows.append({"workload": w["name"], "namespace": w["namespace"], "identity": w["identity"], "error": "proxy not answering"})
            continue
        cert = config.get("certificate") or {}
        not_before = dt.datetime.fromisoformat(cert["notBefore"]) if cert else None
        not_after = dt.datetime.fromisoformat(cert["notAfter"]) if cert else None
        rotate_at = not_before + (not_after - not_before) * 0.7 if cert else None
        rows.append({"workload": w["name"], "namespace": w["namespace"], "identity": config["identity"],
                     "issuer": ca["issuer"]["subject"], "serial": cert.get("serial"),
                     "not_before": cert.get("notBefore"), "not_after": cert.get("notAfter"),
                     "rotation_in_seconds": max((rotate_at - now).total_seconds(), 0) if rotate_at else None,
                     "rotations": cert.get("refreshes", 0), "mode": config.get("mode"),
                     "default_inbound_policy": config.get("defaultInboundPolicy"),
                     "policy_version": (config.get("policies") or {}).get("version")})
    # the control plane's policy snapshot, read after the sidecars: one behind it has not got the latest yet
    version = api.call("GET", "/v1/policies?kind=-")["version"]
    # the certificates the gateways serve to clients outside the mesh (never a key): not the mesh's CA's
    certificates = api.call("GET", "/v1/secrets")["items"]
    return {"trust_anchor": ca["trustAnchor"], "issuer": ca["issuer"], "policy_version": version, "workloads": rows,
            "gateway_certificates": certificates}


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def counts_text(refused: dict[str, int]) -> str:
    """``3 (no_client_certificate 2, unknown_server_name 1)``, or ``-``: counts per reason (or per
    rate limit: ``6 (emojivoto/web-http 6)``)."""
    total = sum(refused.values())
    return f"{total} ({', '.join(f'{reason} {n}' for reason, n in refused.items())})" if total else "-"


def stat_table(rows: list[dict[str, Any]], wide: bool) -> list[tuple[str, ...]]:
    header = ("NAMESPACE", "NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN")
    overflow = any(r.get("overflow") for r in rows)  # connectionPool limits turned requests away: show how many
    refused = any(r.get("tls_refused") for r in rows)  # a gateway refused TLS clients: how many, and why
    limited = any(r.get("rate_limited") for r in rows)  # sidecars answered 429: how many, and by which rate limit
    table = [header + (("MTLS",) if wide else ()) + (("OVERFLOW",) if overflow else ()) + (("TLS_REFUSED",) if refused else ())
             + (("RATE_LIMITED",) if limited else ())]
    for r in rows:
        name = r["name"] + (" (not answering: " + ", ".join(r["not_answering"]) + ")" if r["not_answering"] else "")
        line = (r["namespace"], name, r["meshed"], fmt_rate(r["success_rate"]), f"{r['rps']:.1f}rps",
                fmt_ms(r["latency_ms"]["p50"]), fmt_ms(r["latency_ms"]["p95"]), fmt_ms(r["latency_ms"]["p99"]),
                "-" if r["tcp_conn"] is None else str(r["tcp_conn"]))
        table.append(line + ((fmt_rate(r["mtls_share"]),) if wide else ()) + ((f"{r.get('overflow') or 0:.0f}",) if overflow else ())
                     + ((counts_text(r.get("tls_refused") or {}),) if refused else ())
                     + ((counts_text(r.get("rate_limited") or {}),) if limited else ()))
    return table


def edges_table(rows: list[dict[str, Any]], wide: bool) -> list[tuple[str, ...]]:
    table = [("SRC", "DST", "SRC_NS", "DST_NS", "SECURED", "RPS", "SUCCESS") + (("CLIENT_ID", "SERVER_ID") if wide else ())]
    for r in rows:
        share = r.get("mtls_share", 1.0 if r["secured"] else 0.0)
        secured = "√" if r["secured"] else "× (plaintext)" if not share else f"partly ({share * 100:.0f}% mTLS)"
        if not r.get("reached", True):  # every request answered by the caller's own sidecar: no connection, no TLS
            secured = "- (caller's sidecar answered)"
        line = (r["src"], r["dst"], r["src_namespace"], r["dst_namespace"], secured, f"{r.get('rps', 0.0):.1f}rps",
                fmt_rate(r.get("success_rate")))
        table.append(line + ((r["client_id"] or "-", r["server_id"] or "-") if wide else ()))
    return table


def routes_table(rows: list[dict[str, Any]], wide: bool) -> list[tuple[str, ...]]:
    """Linkerd's ``routes -o wide``: EFFECTIVE is what callers saw, ACTUAL every attempt."""
    header = ("ROUTE", "MATCH", "EFFECTIVE_SUCCESS", "EFFECTIVE_RPS", "ACTUAL_SUCCESS", "ACTUAL_RPS", "LATENCY_P50", "LATENCY_P95",
              "LATENCY_P99")
    table = [header if wide else header[:1] + header[2:]]
    for r in rows:
        line = (r["route"], r["match"], fmt_rate(r["effective_success"]), f"{r['effective_rps']:.1f}rps", fmt_rate(r["actual_success"]),
                f"{r['actual_rps']:.1f}rps", fmt_ms(r["latency_ms"]["p50"]), fmt_ms(r["latency_ms"]["p95"]), fmt_ms(r["latency_ms"]["p99"]))
        table.append(line if wide else line[:1] + line[2:])
    return table
