"""``meshdojo fault net …``, ``fault clear`` and ``meshdojo wire``: network faults and the
eavesdropper's view, through the control plane's relays (see controlplane/relay.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from controlplane.netfaults import WHAT_TO_WATCH  # noqa: F401 - the UI explains faults with these
from sandbox import local
from sandbox.backends import backend_for
from sandbox.cpapi import ApiError
from sandbox.resources import ResourceError, api_for, service_namespace

NET_KINDS = ("latency", "bandwidth", "reset", "blackhole", "partition")


def workloads(name: str, target: str, namespace: str | None, what: str) -> dict[str, str]:
    """``svc/NAME`` or ``deploy/NAME`` -> the API's {namespace, service|deployment}."""
    kind, _, resource = target.partition("/")
    if kind in ("svc", "service") and resource:
        return {"namespace": service_namespace(name, resource, namespace), "service": resource}
    if kind in ("deploy", "deployment") and resource:
        st = backend_for(name).status()
        if st is None:
            raise ResourceError(f"sandbox {name!r} is not running; start it with 'meshdojo up --name {name}'")
        ns, deployment = local.find_deployment(st, resource, namespace)
        return {"namespace": ns, "deployment": deployment}
    raise ValueError(f"{what} {target!r}: expected svc/NAME or deploy/NAME, e.g. svc/emoji or deploy/web")


NEWEST = "newest"


def newest_instance(instances: list[str], workloads: list[dict[str, Any]]) -> str:
    """The instance started last: by the pod's creation time on a cluster, by the ordinal locally
    (emoji-1 after emoji-0) — the one a scale-down removes first on both."""
    created = {w["name"]: w.get("created") or "" for w in workloads}

    def age_key(name: str) -> tuple[str, int, str]:
        ordinal = re.search(r"(\d+)$", name)
        return created.get(name, ""), int(ordinal.group(1)) if ordinal else -1, name

    return max(instances, key=age_key)


def instance_of(name: str, service: str, namespace: str, instance: str) -> str:
    """``instance`` if it is one of ``service``'s endpoints (``newest``: the one started last);
    else an error listing them."""
    services = api_for(name).call("GET", "/v1/services")["services"]
    known = sorted(ep.get("instance") or eid for s in services if s["name"] == service and s["namespace"] == namespace
                   for eid, ep in s["endpoints"].items())
    if instance == NEWEST and known:
        st = backend_for(name).status() or {"workloads": []}
        return newest_instance(known, st["workloads"])
    if instance not in known:
        raise ValueError(f"--instance {instance!r} is not an instance of svc/{service} (its instances: {', '.join(known) or 'none yet'}; "
                         f"or --instance {NEWEST}: the one started last)")
    return instance


def net_fault(name: str, kind: str, targets: list[str], source: str | None, namespace: str | None, latency: str | None,
              jitter: str | None, rate: str | None, duration: str | None, instance: str | None = None) -> dict[str, Any]:
    """Create a network fault (on one instance of the target with ``instance``); returns it as the control plane describes it."""
    if kind == "partition":
        if len(targets) != 2 or source:
            raise ValueError("a partition is between two deployments: 'meshdojo fault net partition deploy/A deploy/B'")
        body: dict[str, Any] = {"kind": kind, "from": workloads(name, targets[0], namespace, "first side"),
                                "to": workloads(name, targets[1], namespace, "second side")}
    else:
        if len(targets) != 1:
            raise ValueError(f"a {kind} fault has one target: svc/NAME (every caller) or deploy/NAME, narrowed by --from deploy/X")
        body = {"kind": kind, "to": workloads(name, targets[0], namespace, "target")}
        if instance is not None:
            if "service" not in body["to"]:
                raise ValueError("--instance narrows a service: 'meshdojo fault net reset svc/emoji --instance emoji-1'")
            body["to"]["instance"] = instance_of(name, body["to"]["service"], body["to"]["namespace"], instance)
        if source:
            body["from"] = workloads(name, source, namespace, "--from")
    body.update({k: v for k, v in (("latency", latency), ("jitter", jitter), ("rate", rate), ("duration", duration)) if v is not None})
    return api_for(name).call("POST", "/v1/netfaults", body)["applied"]


def _names_service(spec: dict[str, Any], service: str, instances: set[str]) -> bool:
    ref = spec.get("targetRef") or {}
    return (ref.get("kind", "Service") == "Service" and ref.get("name") == service) or (ref.get("kind") == "Pod" and ref.get("name") in instances)


def clear(name: str, service: str | None, namespace: str | None) -> list[str]:
    """Every network fault (and FaultInjection resource), or only those on one service."""
    api = api_for(name)
    lines = []
    if service is None:
        for fault in api.call("DELETE", "/v1/netfaults")["deleted"]:
            lines.append(f"network fault {fault} removed")
        items = api.call("GET", "/v1/policies?kind=FaultInjection")["items"]
    else:
        ns = service_namespace(name, service, namespace)
        for fault in api.call("GET", "/v1/netfaults")["faults"]:
            target = fault["target"]
            if fault["kind"] != "wire" and target["namespace"] == ns and target["service"] == service:
                api.call("DELETE", f"/v1/netfaults/{fault['name']}")
                lines.append(f"network fault {fault['name']} removed")
        services = api.call("GET", "/v1/services")["services"]
        instances = {ep.get("instance") or eid for s in services if s["name"] == service and s["namespace"] == ns
                     for eid, ep in s["endpoints"].items()}
        items = [i for i in api.call("GET", f"/v1/policies?kind=FaultInjection&namespace={ns}")["items"]
                 if _names_service(i["document"]["spec"], service, instances)]
    for item in items:
        meta = item["document"]["metadata"]
        api.call("DELETE", f"/v1/policies/FaultInjection/{meta['namespace']}/{meta['name']}")
        lines.append(f"faultinjection/{meta['name']} deleted")
    return lines or ["no faults to clear"]


def http_fault_summary(spec: dict[str, Any]) -> str:
    """What a FaultInjection does, in one line: 'abort 500 on 50% of requests; delay 2s on 100%'."""
    parts = []
    if isinstance(spec.get("abort"), dict):
        a = spec["abort"]
        parts.append(f"abort {a.get('httpStatus')} on {(a.get('percentage') or {}).get('value', 100):g}% of requests")
    if isinstance(spec.get("delay"), dict):
        d = spec["delay"]
        parts.append(f"delay {d.get('fixedDelay')} on {(d.get('percentage') or {}).get('value', 100):g}%")
    return "; ".join(parts) or "no fault (neither abort nor delay)"


def fault_listing(http_items: list[dict[str, Any]], net_faults: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """Every fault in force, HTTP (FaultInjection resources) then network, as one list of records."""
    out: list[dict[str, Any]] = []
    for item in http_items:
        doc, expires = item["document"], item.get("expiresAt")
        ref = doc["spec"].get("targetRef") or {}
        short = "pod" if ref.get("kind") == "Pod" else "svc"
        out.append({"type": "http", "name": f"faultinjection/{doc['metadata']['name']}", "namespace": doc["metadata"]["namespace"],
                    "target": f"{short}/{ref.get('name')}", "what": http_fault_summary(doc["spec"]),
                    "remaining_seconds": None if expires is None else max(0.0, expires - now)})
    for fault in net_faults:
        if fault.get("kind") == "wire":
            continue  # a 'meshdojo wire' session watches; it does not fail anything
        what, _, edge = fault["description"].partition(": ")
        out.append({"type": "network", "name": fault["name"], "namespace": (fault.get("target") or {}).get("namespace", ""),
                    "target": edge, "what": what, "remaining_seconds": fault.get("remaining_seconds")})
    return out


def listing(name: str, clock: Callable[[], float] = time.time) -> list[dict[str, Any]]:
    api = api_for(name)
    return fault_listing(api.call("GET", "/v1/policies?kind=FaultInjection")["items"], api.call("GET", "/v1/netfaults")["faults"],
                         clock())


def active(name: str) -> list[dict[str, Any]]:
    try:
        return api_for(name).call("GET", "/v1/netfaults", timeout=2)["faults"]
    except (ApiError, ResourceError):
        return []


def wire(name: str, source: str, target: str, namespace: str | None, timeout: float,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Put a watching relay on the edge and wait for a connection that carried data both ways."""
    src, dst = workloads(name, source, namespace, "source"), workloads(name, target, namespace, "destination")
    if "deployment" not in src or "deployment" not in dst:
        raise ValueError("wire watches an edge between two deployments: 'meshdojo wire deploy/A deploy/B'")
    api = api_for(name)
    session = api.call("POST", "/v1/wire", {"from": src, "to": dst})["name"]
    deadline = clock() + timeout
    try:
        while True:
            seen = api.call("GET", f"/v1/wire/{session}")
            done = [c for c in seen["connections"] if c["client_to_server"]["bytes_total"] and
                    (c["server_to_client"]["bytes_total"] or c["kind"] in ("blackhole", "partition", "reset"))]
            if done or clock() > deadline:
                return {**seen, "connections": done[:1] or seen["connections"][:1]}
            sleep(0.2)
    finally:
        try:
            api.call("DELETE", f"/v1/netfaults/{session}")
        except ApiError:
            pass


def render_wire(seen: dict[str, Any]) -> list[str]:
    edge = seen["edge"]
    lines = [f"edge {edge['from']} -> {edge['to']} (relayed by: {'; '.join(seen['relayed_by'])})"]
    if not seen["connections"]:
        return [*lines, "no new connection crossed this edge in time: is there traffic on it? (try again, or send some requests)"]
    c = seen["connections"][0]
    hs = c["handshake"]
    if hs:
        lines.append(f"{hs['version']}, cipher {hs['cipher']}; certificates visible on the wire: "
                     f"{'yes' if hs['certificates_visible'] else 'no (encrypted)'}")
        lines.append(f"  client identity: {hs['client_identity'] or '-'}")
        lines.append(f"  server identity: {hs['server_identity'] or '-'}")
        lines.append(f"  ({hs['identities_note']})")
    else:
        lines.append("PLAINTEXT: no TLS at all; anyone on the path reads and can change every byte")
    for label, key in (("client -> server", "client_to_server"), ("server -> client", "server_to_client")):
        d = c[key]
        lines.append(f"{label}: {d['bytes_total']} bytes" + (f"; records: {', '.join(d['records'][:6])}" if d["records"] else ""))
        if d["records"]:
            lines.append("  first application data, as an eavesdropper sees it:")
        lines += [f"  {line}" for line in d["first_bytes_hex"][:6]]
    verdict = ("readable HTTP crossed the wire" if c["client_to_server"]["readable_http"]
               else "no readable HTTP on the wire: only TLS records" if hs else "")
    return [*lines, verdict] if verdict else lines


def describe(fault: dict[str, Any]) -> str:
    left = fault.get("remaining_seconds")
    return f"{fault['name']}: {fault['description']}" + (f" ({left:.0f}s left)" if left is not None else "")
