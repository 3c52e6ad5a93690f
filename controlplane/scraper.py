"""Scraping every proxy's ``/metrics`` once a second into the telemetry history, and the
rows ``meshdojo stat`` and ``meshdojo edges`` show."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from controlplane.protocol import fqdn
from controlplane.telemetry import (
    WorkloadHistory,
    golden,
    overflow_in,
    parse_exposition,
    quantile,
    rate_limited_in,
    route_golden,
    sum_golden,
    sum_route_golden,
    tls_refused_in,
)

log = logging.getLogger("meshdojo.controlplane.scraper")
SCRAPE_INTERVAL = 1.0
STALE_AFTER = 3.0


class Telemetry:
    def __init__(self, clock=time.time) -> None:
        self.workloads: dict[tuple[str, str], WorkloadHistory] = {}
        self.admin_ports: dict[tuple[str, str], int | str | None] = {}  # a port on 127.0.0.1, or "address:port" (a pod's)
        self._clock = clock

    def put_workload(self, namespace: str, name: str, deployment: str, identity: str | None, meshed: bool,
                     admin: int | str | None) -> None:
        key = (namespace, name)
        current = self.workloads.get(key)
        if current is None or (current.identity, current.meshed, current.deployment) != (identity, meshed, deployment):
            self.workloads[key] = WorkloadHistory(namespace, name, deployment, identity, meshed)
        self.admin_ports[key] = admin

    def admin_address(self, namespace: str, name: str) -> str | None:
        """Where a workload's proxy serves its admin port: ``host:port`` (a local one's port is on 127.0.0.1)."""
        admin = self.admin_ports.get((namespace, name))
        if not admin:
            return None
        return f"127.0.0.1:{admin}" if isinstance(admin, int) else str(admin)

    def deployment_of(self, namespace: str, instance: str) -> str | None:
        history = self.workloads.get((namespace, instance))
        return history.deployment if history else None

    def identity_of(self, namespace: str, deployment: str) -> str | None:
        return next((h.identity for h in self.workloads.values() if h.namespace == namespace and h.deployment == deployment), None)

    def delete_workload(self, namespace: str, name: str) -> bool:
        self.admin_ports.pop((namespace, name), None)
        return self.workloads.pop((namespace, name), None) is not None

    async def scrape_forever(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_INTERVAL * 0.8)) as session:
            while True:
                started = time.monotonic()
                await asyncio.gather(*(self._scrape(session, key, where) for key in list(self.admin_ports)
                                       if (where := self.admin_address(*key))))
                await asyncio.sleep(max(SCRAPE_INTERVAL - (time.monotonic() - started), 0.05))

    async def _scrape(self, session: aiohttp.ClientSession, key: tuple[str, str], where: str) -> None:
        history = self.workloads.get(key)
        if history is None:
            return
        try:
            async with session.get(f"http://{where}/metrics") as rsp:
                text = await rsp.text()
            history.add(parse_exposition(text, self._clock(), history.series_cache))
            history.last_success, history.last_error = self._clock(), None
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            history.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    # -- views ----------------------------------------------------------------------------
    def stale(self, history: WorkloadHistory) -> bool:
        return history.meshed and self._clock() - history.last_success > STALE_AFTER

    def deployment_rows(self, window: float, namespace: str | None = None, name: str | None = None,
                        until: float | None = None) -> list[dict[str, Any]]:
        """``until``: the window ends then (unix time), not now — a report's earlier window."""
        groups: dict[tuple[str, str], list[WorkloadHistory]] = {}
        for h in self.workloads.values():
            if (namespace is None or h.namespace == namespace) and (name is None or h.deployment == name):
                groups.setdefault((h.namespace, h.deployment), []).append(h)
        rows = []
        for (ns, deployment), members in sorted(groups.items()):
            g = sum_golden(golden(h, window, until=until) for h in members if h.meshed)
            row = _row(ns, deployment, f"{sum(h.meshed for h in members)}/{len(members)}", g, [h.name for h in members if self.stale(h)])
            # a gateway's TLS connections refused (no listener, no Secret, no or a wrong client certificate); requests
            # its sidecars answered 429 (a RateLimit's, or Linkerd's HTTPLocalRateLimitPolicy's)
            for key, counted_in in (("tls_refused", tls_refused_in), ("rate_limited", rate_limited_in)):
                counts: dict[str, float] = {}
                for h in members:
                    for what, n in counted_in(h, window).items():
                        counts[what] = counts.get(what, 0.0) + n
                if counts:
                    row[key] = {what: round(n) for what, n in sorted(counts.items())}
            rows.append(row)
        return rows

    def service_rows(self, window: float, namespace: str | None = None, name: str | None = None,
                     until: float | None = None) -> list[dict[str, Any]]:
        """Traffic to each service, as the meshed clients saw it (their outbound side)."""
        services = set()
        for h in self.workloads.values():
            if h.fine:
                services |= {(k[3], k[2]) for k in h.fine[-1].requests if k[0] == "outbound" and k[2]}
        rows = []
        for ns, svc in sorted(services):
            if (namespace is not None and ns != namespace) or (name is not None and svc != name):
                continue
            g = sum_golden(golden(h, window, "outbound", lambda k, ns=ns, svc=svc: k[3] == ns and k[2] == svc, until)
                           for h in self.workloads.values() if h.meshed)
            row = _row(ns, svc, "-", g, [])
            row["tcp_conn"] = None  # connections are counted per workload, not per service
            row["overflow"] = round(sum(overflow_in(h, window, fqdn(svc, ns)) for h in self.workloads.values() if h.meshed), 3)
            rows.append(row)
        return rows

    def edges(self, window: float, namespace: str | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """One row per (client deployment, server deployment), as Linkerd's ``viz edges``: its
        own traffic numbers, and how much of it was mutually authenticated. A server that is
        being uninjected is briefly both: ``secured`` is true only when all of it was."""
        by_identity: dict[str, set[str]] = {}
        for h in self.workloads.values():
            if h.identity:
                by_identity.setdefault(h.identity, set()).add(h.deployment)
        found: dict[tuple[str, str, str, str], _EdgeSum] = {}
        for h in self.workloads.values():
            pair = h.fine[-1] if h.fine else None
            if pair is None:
                continue
            for key in [k for k in pair.requests if k[0] == "outbound" and k[2]]:
                g = golden(h, window, "outbound", lambda k, key=key: k == key, until)
                if g is None or g.requests <= 0:
                    continue
                server_id, dst_service, dst_ns = key[1], key[2], key[3]
                candidates = by_identity.get(server_id, set())
                # the deployment the proxy actually sent to (reviews-v1, not reviews); older proxies: by identity
                dst = key[5] if len(key) > 5 and key[5] else next(iter(candidates)) if len(candidates) == 1 else dst_service
                edge = found.setdefault((h.deployment, dst, h.namespace, dst_ns), _EdgeSum())
                # no server, no deployment: the caller's sidecar answered these itself (a fault, a breaker, no route)
                edge.add(g, h.identity, server_id, reached=bool(server_id or (len(key) > 5 and key[5])))
        rows = [{"src": src, "dst": dst, "src_namespace": src_ns, "dst_namespace": dst_ns, **e.row()}
                for (src, dst, src_ns, dst_ns), e in sorted(found.items())]
        return [r for r in rows if namespace is None or namespace in (r["src_namespace"], r["dst_namespace"])]

    def route_rows(self, window: float, namespace: str, service: str, source: str | None = None,
                   configured: list[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        """Per route of ``service.namespace``, as its meshed clients (or only ``source``'s
        instances) saw it: EFFECTIVE after retries, ACTUAL every attempt. ``configured`` lists
        (route, description) of the HTTPRoute rules in force, shown even without traffic."""
        dst = fqdn(service, namespace)
        per_route: dict[str, list] = {}
        for h in self.workloads.values():
            if not h.meshed or (source is not None and h.deployment != source):
                continue
            for route, g in route_golden(h, window, dst).items():
                per_route.setdefault(route, []).append(g)
        described = dict(configured)
        rows = []
        for route in sorted(set(per_route) | set(described), key=lambda r: (r == "[default]", r)):
            g = sum_route_golden(per_route.get(route, []))
            latency = {name: quantile(q, g.buckets) for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
            rows.append({"route": route, "match": described.get(route, "everything no route matches" if route == "[default]" else "-"),
                         "service": service, "namespace": namespace, "from": source,
                         **{k: (round(v, 4) if v is not None else None) for k, v in g.rates().items()},
                         "latency_ms": {k: (round(v, 2) if v is not None else None) for k, v in latency.items()}})
        return rows


class _EdgeSum:
    """The traffic of one edge, summed over its client instances and TLS states."""

    def __init__(self) -> None:
        self.requests = self.failures = self.secured = self.seconds = self.reached = 0.0
        self.client_id: str | None = None
        self.server_id: str | None = None

    def add(self, g, client_id: str | None, server_id: str, reached: bool = True) -> None:
        self.requests += g.requests
        self.failures += g.failures
        self.secured += g.secured
        self.reached += g.requests if reached else 0.0
        self.seconds = max(self.seconds, g.seconds)
        self.client_id = self.client_id or client_id or None
        self.server_id = self.server_id or server_id or None

    def row(self) -> dict[str, Any]:
        # mutual TLS is a property of the requests that went to a pod: the ones the caller's sidecar answered had no connection
        share = self.secured / self.reached if self.reached else 0.0
        return {"secured": share >= 1.0, "mtls_share": round(share, 4), "reached": self.reached > 0, "client_id": self.client_id,
                "server_id": self.server_id if self.secured else None,
                "rps": round(self.requests / self.seconds, 3) if self.seconds else 0.0,
                "success_rate": round(1 - self.failures / self.requests, 4) if self.requests else None}


def _row(ns: str, name: str, meshed: str, g, stale: list[str]) -> dict[str, Any]:
    latency = g.latency_ms if g else {"p50": None, "p95": None, "p99": None}
    return {
        "namespace": ns, "name": name, "meshed": meshed,
        "success_rate": g.success_rate if g else None,
        "rps": round(g.rps, 3) if g else 0.0,
        "latency_ms": {k: (round(v, 2) if v is not None else None) for k, v in latency.items()},
        "tcp_conn": int(g.tcp_conn) if g else 0,
        "mtls_share": (g.secured / g.requests if g and g.requests else None),
        "not_answering": stale,
    }
