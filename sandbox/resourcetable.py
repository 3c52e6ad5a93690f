"""``meshdojo get``'s table: each resource's TARGET and DETAIL in a few words, as kubectl's
columns say them, read from the document as applied (a lesson's check may ask for the DETAIL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from controlplane.istioegress import outside_the_mesh
from controlplane.istioschema import ISTIO_GATEWAY, read_as
from controlplane.linkerdschema import LINKERD_AUTHORIZATION_POLICY, LINKERD_HTTP_ROUTE
from controlplane.policy import parent_kind
from controlplane.policyschema import internal_kind


def _target(spec: dict[str, Any], namespace: str = "default") -> str:
    if "envoyExtAuthzHttp" in spec or "zipkin" in spec:  # ExtensionProvider: mesh-wide, as Istio's meshConfig
        return "(mesh)"
    if isinstance(spec.get("http"), list) and isinstance(spec.get("hosts"), list):  # Istio's VirtualService: its Service,
        bound = [g for g in spec.get("gateways") or [] if g != "mesh"]                   # or on a Gateway the host it serves
        if bound:
            return f"gateway/{bound[0]} " + ",".join(map(str, spec["hosts"]))
        return ",".join(str(h) if outside_the_mesh(str(h), namespace) else f"svc/{str(h).split('.')[0]}" for h in spec["hosts"])
    if isinstance(spec.get("servers"), list):  # Istio's Gateway: its servers, port and hosts
        return ",".join(f"{(s.get('port') or {}).get('number')} " + ",".join(map(str, s.get("hosts") or []))
                        for s in spec["servers"] if isinstance(s, dict))
    if isinstance(spec.get("host"), str):  # Istio's DestinationRule: a Service's, or a host outside the mesh's
        return spec["host"] if outside_the_mesh(spec["host"], namespace) else f"svc/{spec['host'].split('.')[0]}"
    if isinstance(spec.get("hosts"), list):  # ServiceEntry
        return ",".join(map(str, spec["hosts"]))
    if isinstance(spec.get("targetRefs"), list):  # BackendTLSPolicy: ServiceEntries, and a port by name
        return ",".join(f"se/{r.get('name')}" + (f":{r['sectionName']}" if r.get("sectionName") else "")
                        for r in spec["targetRefs"] if isinstance(r, dict))
    if isinstance(spec.get("workloadSelector"), dict):  # Sidecar
        return ",".join(f"{k}={v}" for k, v in (spec["workloadSelector"].get("labels") or {}).items())
    if isinstance(spec.get("listeners"), list):  # Gateway: its listeners, name:port and host
        return ",".join(f"{item.get('name')}:{item.get('port')}" + (f" {item['hostname']}" if item.get("hostname") else "")
                        for item in spec["listeners"] if isinstance(item, dict))
    if isinstance(spec.get("podSelector"), dict):  # a Linkerd Server: its pods' labels and the port
        return f"{_selector(spec['podSelector'])}:{spec.get('port')}"
    if any(isinstance(spec.get(f), list) for f in ("identities", "identityRefs", "networks")):  # a Linkerd authentication
        return "-"
    if isinstance(spec.get("server"), dict):  # a Linkerd ServerAuthorization: its Server by name, or Servers by label
        server = spec["server"]
        return f"server/{server['name']}" if server.get("name") else f"servers {_selector(server.get('selector') or {})}"
    ref = spec.get("targetRef") or (spec.get("parentRefs") or [{}])[0]
    if isinstance(spec.get("selector"), dict):
        return ",".join(f"{k}={v}" for k, v in (spec["selector"].get("matchLabels") or {}).items()) or "(namespace)"
    short = {"Service": "svc", "Deployment": "deploy", "Pod": "pod", "ServiceAccount": "sa", "ServiceEntry": "se", "Gateway": "gateway",
             "Server": "server", "Namespace": "ns"}
    if not isinstance(ref, dict) or not ref.get("name"):
        return "(namespace)"
    kind = parent_kind(ref) if "parentRefs" in spec else ref.get("kind", "Service")  # a route's parent: Gateway API's default
    return f"{short.get(kind, kind)}/{ref['name']}" + (f":{ref['sectionName']}" if ref.get("sectionName") else "")


def _selector(selector: dict[str, Any]) -> str:
    """A Kubernetes label selector in kubectl's words: app=voting,tier notin (x)."""
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    parts += [f"{e.get('key')} {str(e.get('operator', '')).lower()} ({','.join(map(str, e.get('values') or []))})"
              for e in selector.get("matchExpressions") or [] if isinstance(e, dict)]
    return ",".join(parts) or "-"


def _linkerd_client(client: dict[str, Any]) -> str:
    """Who a ServerAuthorization lets in, in a few words."""
    mesh = client.get("meshTLS") if isinstance(client.get("meshTLS"), dict) else None
    if mesh is None:
        who = "anyone"
    elif mesh.get("serviceAccounts"):
        who = "meshed " + ",".join(f"sa/{a.get('name')}" for a in mesh["serviceAccounts"] if isinstance(a, dict))
    elif mesh.get("identities"):
        who = "meshed " + ",".join(map(str, mesh["identities"]))
    else:
        who = "any meshed caller"
    networks = [str(n.get("cidr")) for n in client.get("networks") or [] if isinstance(n, dict)]
    return who + (f" from {','.join(networks)}" if networks else "")


def _rate_limits(spec: dict[str, Any], namespace: str) -> str:
    """An HTTPLocalRateLimitPolicy's limits in a few words: total 10 rps, 4 rps per identity, 6 rps for sa/web."""
    def rps(part: Any) -> Any:
        return part.get("requestsPerSecond") if isinstance(part, dict) else None

    parts = [f"total {rps(spec.get('total'))} rps"] if rps(spec.get("total")) else []
    parts += [f"{rps(spec.get('identity'))} rps per identity"] if rps(spec.get("identity")) else []
    for override in (o for o in spec.get("overrides") or [] if isinstance(o, dict)):
        refs = [r for r in override.get("clientRefs") or [] if isinstance(r, dict)]
        names = [f"sa/{r.get('name')}" if r.get("namespace") in (None, "", namespace) else f"sa/{r.get('namespace')}/{r.get('name')}"
                 for r in refs]
        parts.append(f"{rps(override)} rps for {','.join(names)}")
    return ", ".join(parts) or "-"


def _ingress_hosts(spec: dict[str, Any]) -> str:
    """An Ingress's hosts, as kubectl's HOSTS column shows them (* for a rule of any host)."""
    return ",".join(str(rule.get("host") or "*") for rule in spec.get("rules") or [] if isinstance(rule, dict)) or "*"


def _detail(kind: str, spec: dict[str, Any], annotations: dict[str, Any] | None = None, namespace: str = "") -> str:
    kind = read_as(kind)  # Istio's AuthorizationPolicy (ServiceEntry ...) does what ours does
    on_service = any(isinstance(p, dict) and p.get("kind") == "Service" for p in spec.get("parentRefs") or [])
    if kind == "HTTPRoute" or (kind == LINKERD_HTTP_ROUTE and on_service):  # Linkerd's on a Service: Gateway API's, in its group
        rules = spec.get("rules") or [{}]
        hosts = f" for {', '.join(map(str, spec['hostnames']))}" if spec.get("hostnames") else ""
        return f"{len(rules)} rule{'s' if len(rules) != 1 else ''}{hosts}"
    if kind == "VirtualService":  # its rules, and the subsets they send to (a DestinationRule must define them)
        rules = [r for r in spec.get("http") or [] if isinstance(r, dict)]
        subsets = dict.fromkeys(str((d.get("destination") or {}).get("subset")) for r in rules for d in r.get("route") or []
                                if isinstance(d, dict) and (d.get("destination") or {}).get("subset"))
        return f"{len(rules)} rule{'s' if len(rules) != 1 else ''}" + (f", subsets {', '.join(subsets)}" if subsets else "")
    if kind == "DestinationRule":
        subsets = [str(s.get("name")) for s in spec.get("subsets") or [] if isinstance(s, dict)]
        policy = spec.get("trafficPolicy") if isinstance(spec.get("trafficPolicy"), dict) else {}
        balancer = policy.get("loadBalancer") if isinstance(policy.get("loadBalancer"), dict) else {}
        levels = [policy, *(p for p in policy.get("portLevelSettings") or [] if isinstance(p, dict))]
        originated = any(isinstance(level.get("tls"), dict) and level["tls"].get("mode") == "SIMPLE" for level in levels)
        said = ([f"subsets {', '.join(subsets)}"] if subsets else []) + \
            ([f"balance {balancer['simple']}"] if "simple" in balancer else ["sticky"] if "consistentHash" in balancer else []) + [
            words for field, words in (("connectionPool", "connection pool"), ("outlierDetection", "outlier detection")) if field in policy
        ] + (["TLS originated"] if originated else [])
        return ", ".join(said) or "-"
    if kind == "Gateway":
        return f"class {spec.get('gatewayClassName')}, served by the namespace's ingress gateway"
    if kind == ISTIO_GATEWAY:
        servers = [s for s in spec.get("servers") or [] if isinstance(s, dict)]
        protocols = sorted({str((s.get("port") or {}).get("protocol")) for s in servers})
        redirects = any(isinstance(s.get("tls"), dict) and s["tls"].get("httpsRedirect") for s in servers)
        return f"{'/'.join(protocols)}{' (HTTP sent to HTTPS)' if redirects else ''}, served by the namespace's ingress gateway"
    if kind == "Ingress":  # as kubectl's PORTS: 80, and 443 with tls
        ports = "80, 443" if spec.get("tls") else "80"
        return f"class {spec.get('ingressClassName') or (annotations or {}).get('kubernetes.io/ingress.class')}, ports {ports}, " \
               "served by the namespace's ingress gateway"
    if kind == "AuthorizationPolicy":  # Istio's istio.io/dry-run: evaluated and reported, not enforced
        provider = spec.get("provider") if isinstance(spec.get("provider"), dict) else {}
        return (str(spec.get("action", "ALLOW")) + (f" by {provider.get('name')}" if provider else "")
                + (" (dry-run)" if (annotations or {}).get("istio.io/dry-run") == "true" else ""))
    if kind == "Server":  # Linkerd's: who may call it once it exists
        protocol = spec.get("proxyProtocol")
        return f"accessPolicy {spec.get('accessPolicy', 'deny')}" + (f", proxyProtocol {protocol} (served as HTTP/1.1)"
                                                                    if protocol not in (None, "unknown", "HTTP/1") else "")
    if kind == "ServerAuthorization":
        return _linkerd_client(spec.get("client") or {})
    if kind == LINKERD_HTTP_ROUTE:  # a Server's route: the requests it matches
        matches = [m for rule in spec.get("rules") or [] if isinstance(rule, dict) for m in rule.get("matches") or []
                   if isinstance(m, dict)]
        said = [" ".join(filter(None, (str(m.get("method") or ""), str((m.get("path") or {}).get("value") or ""))))
                for m in matches]
        return " or ".join(s or "everything" for s in said) or "everything"
    if kind == LINKERD_AUTHORIZATION_POLICY:  # every authentication it requires must let a caller in
        refs = [r for r in spec.get("requiredAuthenticationRefs") or [] if isinstance(r, dict)]
        return "requires " + " and ".join(f"{r.get('kind')} {r.get('name')}" for r in refs) if refs else "anyone"
    if kind == "MeshTLSAuthentication":
        refs = [f"{'ns' if r.get('kind') == 'Namespace' else 'sa'}/{r.get('name')}" for r in spec.get("identityRefs") or []
                if isinstance(r, dict)]
        return "meshed " + ",".join(refs or map(str, spec.get("identities") or []))
    if kind == "HTTPLocalRateLimitPolicy":  # Linkerd's limits, as linkerdratelimit's describe says them
        return _rate_limits(spec, namespace)
    if kind == "NetworkAuthentication":
        return "from " + ",".join(str(n.get("cidr")) for n in spec.get("networks") or [] if isinstance(n, dict))
    if kind == "BackendTLSPolicy":
        validation = spec.get("validation") if isinstance(spec.get("validation"), dict) else {}
        return f"TLS to {validation.get('hostname')} ({validation.get('wellKnownCACertificates', 'System')} CAs)"
    if kind == "ExtensionProvider":
        if isinstance(spec.get("zipkin"), dict):
            zipkin = spec["zipkin"]
            return f"zipkin http://{zipkin.get('service', '?')}:{zipkin.get('port', '?')}{zipkin.get('path', '/api/v2/spans')}"
        http = spec.get("envoyExtAuthzHttp") if isinstance(spec.get("envoyExtAuthzHttp"), dict) else {}
        return f"ext_authz http://{http.get('service', '?')}:{http.get('port', '?')}{http.get('pathPrefix', '')}"
    if kind == "MeshTLS":
        return str(spec.get("mode", ""))
    if kind == "PeerAuthentication":  # Istio's: UNSET leaves it to the namespace's, or the mesh's
        mode = str((spec.get("mtls") or {}).get("mode", "UNSET"))
        ports = spec.get("portLevelMtls") if isinstance(spec.get("portLevelMtls"), dict) else {}
        return mode + (" (as the level above)" if mode == "UNSET" else "") + "".join(
            f", port {port} {(said or {}).get('mode', 'UNSET') if isinstance(said, dict) else '?'}" for port, said in ports.items())
    if kind == "Sidecar":
        return f"outbound {spec.get('outboundTrafficPolicy', {}).get('mode', '')}"
    if kind == "Telemetry":
        parts = []
        for key, say in (("tracing", lambda e: ", ".join(filter(None, (
                f"tracing {e['randomSamplingPercentage']}% sampled" if "randomSamplingPercentage" in e else "",
                f"spans to {e['providers'][0].get('name')}" if e.get("providers") else "")))),
                         ("accessLogging", lambda e: "access log " + ("off" if e.get("disabled") else "on"))):
            entries = spec.get(key)
            if isinstance(entries, list) and entries and isinstance(entries[0], dict):
                parts.append(say(entries[0]))
        return ", ".join(parts) or "-"
    if kind == "ServiceEntry":
        ports = ",".join(str(p.get("number")) for p in spec.get("ports") or [] if isinstance(p, dict))
        return f"{spec.get('resolution', 'NONE')}, port {ports}"
    return ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("targetRef", "parentRefs") and not isinstance(v, dict | list))[:60] or "-"


def detail(doc: dict[str, Any]) -> str:
    """What one resource does, in get's DETAIL words (a lesson's check may ask for them)."""
    kind = internal_kind(str(doc.get("kind", "?")), str(doc.get("apiVersion", "")))
    meta = doc.get("metadata") or {}
    return _detail(kind, doc.get("spec") or {}, meta.get("annotations"), meta.get("namespace", "default"))


def table(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """``meshdojo get``: fault columns for FaultInjection, a generic detail column for the rest."""
    faults = all(i["document"].get("kind") == "FaultInjection" for i in items)
    rows = [("NAMESPACE", "NAME", "TARGET", "DELAY", "ABORT", "EXPIRES IN") if faults
            else ("NAMESPACE", "KIND", "NAME", "TARGET", "DETAIL", "EXPIRES IN")]
    now = dt.datetime.now(dt.UTC).timestamp()
    for item in items:
        doc, exp = item["document"], item["expiresAt"]
        spec = doc.get("spec") or {}
        expires = f"{max(exp - now, 0):.0f}s" if exp else "-"
        if faults:
            delay, abort = spec.get("delay"), spec.get("abort")
            rows.append((
                doc["metadata"].get("namespace", "default"), doc["metadata"]["name"], _target(spec),
                f"{delay['fixedDelay']} {delay.get('percentage', {}).get('value', 100):g}%" if delay else "-",
                f"{abort['httpStatus']} {abort.get('percentage', {}).get('value', 100):g}%" if abort else "-", expires,
            ))
        else:
            kind = internal_kind(str(doc.get("kind", "?")), str(doc.get("apiVersion", "")))  # Linkerd's AuthorizationPolicy, by group
            target = _ingress_hosts(spec) if kind == "Ingress" else _target(spec, doc["metadata"].get("namespace", "default"))
            rows.append((doc["metadata"].get("namespace", "default"), kind, doc["metadata"]["name"], target, detail(doc), expires))
    return rows
