"""``meshdojo describe``: one workload as its sidecar sees it — istioctl's ``x describe pod``.

Its identity and certificate, the services that select it, its mutual TLS mode and what set it,
the inbound policies in force there in the order they act (each with the level it applies at:
the workload, its namespace, or the mesh), the default inbound policy, what its callers'
sidecars do on the way to it (routes, circuit breakers, retry budgets), what its own sidecar does
on the way to the services it called, its outbound traffic
policy and telemetry. Read from the sidecar itself (``/config``), so it is what is enforced,
not what was meant. :func:`gather` reads; :func:`lines` is pure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from controlplane.istioschema import ISTIO_GATEWAY
from sandbox.cpapi import ApiError
from sandbox.instances import gateway_rows
from sandbox.observe import sidecar_config
from sandbox.resources import api_for

# the inbound policies in the order a request meets them (proxy/inbound.py)
INBOUND_ORDER = ("MeshTLS", "RequestAuthentication", "AuthorizationPolicy", "RateLimit", "FaultInjection")
LINKERD_DEFAULT = "all-unauthenticated"


def instances(status: dict[str, Any], target: str, namespace: str | None) -> list[dict[str, Any]]:
    """The status rows ``target`` names: ``pod/NAME`` one instance, ``deploy/NAME`` (or a bare
    name) every instance of a deployment; ValueError says what exists."""
    kind, slash, name = target.partition("/")
    if not slash:
        kind, name = "deploy", target
    if kind not in ("deploy", "deployment", "pod", "po"):
        raise ValueError(f"describe takes deploy/NAME or pod/NAME, not {target!r}")
    rows = [w for w in [*status.get("workloads", []), *gateway_rows(status)] if namespace is None or w["namespace"] == namespace]
    found = [w for w in rows if (w["name"] == name if kind in ("pod", "po") else w["deployment"] == name)]
    if not found:
        known = ", ".join(sorted({w["deployment"] for w in rows})) or "none"
        raise ValueError(f"no {'pod' if kind in ('pod', 'po') else 'deployment'} {name!r}"
                         f"{f' in namespace {namespace}' if namespace else ''}; the deployments are {known}")
    if len({w["namespace"] for w in found}) > 1:
        raise ValueError(f"{name!r} is in {', '.join(sorted({w['namespace'] for w in found}))}: add -n NAMESPACE")
    return found


def gather(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each instance's status row with its sidecar's ``/config`` (None without a sidecar, or
    ``error`` when it does not answer)."""
    api = api_for(name)
    out = []
    for w in rows:
        entry: dict[str, Any] = {"workload": w, "config": None}
        if w["meshed"]:
            try:
                entry["config"] = sidecar_config(api, w)
            except (OSError, ApiError, ValueError) as exc:
                entry["error"] = f"its sidecar did not answer ({exc})"
        out.append(entry)
    return out


def _applied(inbound: dict[str, Any], kind: str) -> str:
    found = inbound.get(kind) or {}
    names = found.get("applied") or []
    if not names:
        return "-"
    levels = found.get("levels") or [""] * len(names)
    notes = found.get("notes") or [""] * len(names)
    said = ", ".join(f"{n} ({', '.join(filter(None, (note, level)))})" if note or level else n
                     for n, level, note in zip(names, levels, notes, strict=False))
    if found.get("conflict") and found.get("detail"):  # a tie on part of them (CUSTOM providers, a Telemetry field)
        said += f"  — CONFLICT: {', '.join(found['conflict'])} {found['detail']}"
    elif found.get("conflict"):
        said += f"  — CONFLICT: {', '.join(found['conflict'])} tie; the first is used"
    return said


def _rotates(cert: dict[str, Any], now: dt.datetime) -> str:
    not_before, not_after = dt.datetime.fromisoformat(cert["notBefore"]), dt.datetime.fromisoformat(cert["notAfter"])
    left = max((not_before + (not_after - not_before) * 0.7 - now).total_seconds(), 0)
    return f"{int(left // 3600)}h{int(left % 3600 // 60):02d}m"


def lines(entry: dict[str, Any], now: dt.datetime | None = None) -> list[str]:
    """One instance, described for a learner."""
    now = now or dt.datetime.now(dt.UTC)
    w, config = entry["workload"], entry.get("config")
    head = (f"pod {w['namespace']}/{w['name']} (deploy/{w['deployment']}): {'ready' if w['ready'] else 'NOT READY'}, "
            f"{w.get('restarts', 0)} restarts")
    out = [head, f"  services      {', '.join(w.get('services') or []) or '- (no Service selects it)'}"]
    if not w["meshed"]:
        return out + ["  sidecar       none: no mesh identity, no policies here; callers reach it in plaintext",
                      f"                (meshdojo inject deploy/{w['deployment']} -n {w['namespace']} gives it one)"]
    if config is None:
        return out + [f"  sidecar       {entry.get('error', 'not answering')}"]
    cert = config.get("certificate") or {}
    policies = config.get("policies") or {}
    inbound = policies.get("inbound") or {}
    out.append(f"  identity      {config['identity']}")
    if cert:
        out.append(f"  certificate   serial {cert['serial']}, valid to {cert['notAfter'][:16].replace('T', ' ')}, "
                   f"rotates in {_rotates(cert, now)} ({cert.get('refreshes', 0)} rotations so far)")
    if config.get("labels"):
        out.append(f"  labels        {', '.join(f'{k}={v}' for k, v in sorted(config['labels'].items()))}")
    if config.get("gateway"):  # the mesh's edge: its clients are outside, so only who may come in is decided here
        out.append("  edge          the policies that select it, before any route:")
        for kind in ("RequestAuthentication", "AuthorizationPolicy"):
            out.append(f"    {kind:<22} {_applied(inbound, kind)}")
    else:
        mtls = _applied(inbound, "MeshTLS")
        out.append(f"  mutual TLS    {config['mode'].upper()}" + (f" by MeshTLS {mtls}" if mtls != "-" else
                                                                " (how its sidecar started: no MeshTLS applies)"))
        out.append("  inbound       the policies in force here, in the order a request meets them:")
        for kind in INBOUND_ORDER[1:]:
            if kind == "AuthorizationPolicy" and inbound.get("Server"):  # Linkerd's: it means the ALLOWs below it
                out.append(f"    {'Server':<22} {_applied(inbound, 'Server')}: only the callers its ServerAuthorizations "
                           "and Linkerd AuthorizationPolicies let in get in (the .server, .serverauthorization and "
                           ".authorizationpolicy policies below)")
                if inbound.get("ServerRoutes"):  # Linkerd's per-route policy
                    out.append(f"    {'HTTPRoutes':<22} {_applied(inbound, 'ServerRoutes')}: the Server serves only what "
                               "they match (any other request: 404)")
            out.append(f"    {kind:<22} {_applied(inbound, kind)}")
            if kind == "RateLimit" and inbound.get("HTTPLocalRateLimitPolicy"):  # Linkerd's, on the Server's port
                out.append(f"    {'HTTPLocalRateLimit':<22} {_applied(inbound, 'HTTPLocalRateLimitPolicy')}: Linkerd's limit "
                           "on the Server's port (429 past it)")
        default = config.get("defaultInboundPolicy") or LINKERD_DEFAULT
        out.append(f"    {'default policy':<22} {default}" + (" (Linkerd's default)" if default == LINKERD_DEFAULT else
                                                           " (config.linkerd.io/default-inbound-policy)")
                   + ": decides who gets in when no ALLOW policy applies")
    callers = policies.get("callers") or {}
    for service, kinds in callers.items():
        out.append(f"  callers       to svc/{service.split('/')[1]}, their sidecars act on: "
                   + "; ".join(f"{kind} {', '.join(names)}" for kind, names in kinds.items()))
    for service, kinds in (policies.get("calls") or {}).items():  # what its own sidecar does on the way to the services it called
        out.append(f"  calls         svc/{service.split('/')[1]} ({service.split('/')[0]}), its sidecar acts on: "
                   + "; ".join(f"{kind} {', '.join(names)}" for kind, names in kinds.items()))
    if config.get("gateway"):  # a demo's ingress gateway: what decides where a request from outside goes
        routes = policies.get("gatewayRoutes") or []
        out.append("  gateway       " + ("routes attached to its Gateways decide, the most specific host first: " + "; ".join(
            (f"HTTPRoute {r['route']} on Gateway {r['gateway']}" if r.get("kind", "Gateway") == "Gateway"
             else f"VirtualService {r['route']} on Istio's Gateway {r['gateway']}" if r["kind"] == ISTIO_GATEWAY
             else f"Ingress {r['gateway']} as route {r['route']}")
            + f" ({', '.join(r['hosts']) or 'any host'}" + (", HTTPS)" if r.get("protocol") == "HTTPS"
                                                            else ", sent to https:// by its server)" if r.get("httpsRedirect")
                                                            else ")") for r in routes)
            if routes else f"no route attached to a Gateway of {w['namespace']}: everything goes to {config['gateway']}"))
        tls = policies.get("gatewayTls") or []
        if tls:  # its HTTPS listeners: the certificate each server name gets, on the TLS port
            out.append(f"  tls           port {(config.get('ports') or {}).get('https', '-')}, by server name (SNI): " + "; ".join(
                f"{t['hostname'] or 'any name'} -> Secret {t['secret']} " + _tls_state(t) for t in tls))
    outbound = policies.get("outbound") or {}
    if outbound and not config.get("gateway"):  # a gateway has no egress
        out.append(f"  outbound      {outbound['mode']} ({outbound['by']}): hosts outside the mesh "
                   + ("are passed through" if outbound["mode"] == "ALLOW_ANY" else "only if a ServiceEntry names them"))
    tracing, logs = config.get("tracing") or {}, config.get("accessLog") or {}
    if tracing:
        telemetry = _applied(inbound, "Telemetry")
        out.append("  telemetry     " + (f"Telemetry {telemetry}: " if telemetry != "-" else "")
                   + f"traces {tracing['samplingPercent']:g} % of new requests ({tracing.get('spansRecorded', 0)} spans so far"
                   + (f", spans sent to {tracing['provider']['name']} at {tracing['provider']['url']}" if tracing.get("provider") else "")
                   + f"), access log {'/'.join(sorted({logs.get(d) or 'off' for d in ('inbound', 'outbound')}))}"
                   + (f" where {logs['filter']}" if logs.get("filter") else ""))
    return out


def _tls_state(listener: dict[str, Any]) -> str:
    """``(served)``, ``(served; MUTUAL: clients need a certificate its ca.crt signed)``, or why not."""
    mode = listener.get("mode", "SIMPLE")
    if not listener["loaded"]:
        return (f"(not served: a {mode} listener needs the Secret, with a ca.crt; handshakes for it fail)" if mode != "SIMPLE"
                else "(not there: handshakes for it fail)")
    return {"MUTUAL": "(served; MUTUAL: clients need a certificate its ca.crt signed)",
            "OPTIONAL_MUTUAL": "(served; OPTIONAL_MUTUAL: a client certificate is checked against its ca.crt when given)"}.get(mode, "(served)")
