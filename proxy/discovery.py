"""Service discovery for the outbound side: one long-lived watch per name the app uses.

The first request for a name starts its watch and waits (briefly) for the snapshot. After
that, requests read the latest endpoint set without any I/O. When the control plane goes
away the last known endpoints stay in use (static stability) and the watch reconnects with
backoff; when it comes back, updates flow again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.protocol import HEARTBEAT_SECONDS, Endpoint, decode_event
from proxy.cpclient import ControlPlaneClient, ControlPlaneRefused
from proxy.errors import DiscoveryUnavailable, NoEndpoints, UnknownService
from proxy.identity import WorkloadIdentity
from proxy.tasks import TaskSet

log = logging.getLogger("meshdojo.proxy.discovery")
FIRST_SNAPSHOT_TIMEOUT = 3.0
UNKNOWN_RETRY_AFTER = 2.0


@dataclass
class EndpointSet:
    """What the watch for one name knows right now."""

    name: str
    service: str = ""  # fqdn, once known
    endpoints: dict[tuple[str, int], Endpoint] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    unknown_since: float | None = None  # the control plane said: no such service
    connected: bool = False
    updates: int = 0
    ordered: list[Endpoint] = field(default_factory=list)  # endpoints with weight > 0, for the balancer

    def apply(self, event: dict) -> None:
        kind = event["type"]
        if kind == "heartbeat":
            return
        self.service = event.get("service", self.service)
        if event.get("snapshot"):
            self.endpoints.clear()
        if kind == "add":
            for raw in event.get("endpoints", ()):
                endpoint = Endpoint.from_json(raw)
                self.endpoints[endpoint.key] = endpoint
        elif kind == "remove":
            for raw in event.get("endpoints", ()):
                self.endpoints.pop((raw["address"], raw["port"]), None)
        elif kind == "no_endpoints":
            self.endpoints.clear()
        self.ordered = [ep for ep in self.endpoints.values() if ep.weight > 0]
        self.updates += 1
        self.unknown_since = None
        self.ready.set()


class Discovery:
    def __init__(self, client: ControlPlaneClient, identity: WorkloadIdentity, tasks: TaskSet,
                 rng: random.Random | None = None, workload: str = "") -> None:
        self._client = client
        self._workload = workload
        self._identity = identity
        self._tasks = tasks
        self._rng = rng or random.Random()
        self.sets: dict[str, EndpointSet] = {}
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after any endpoint set changed (the balancer forgets what is gone)."""
        self._listeners.append(listener)

    def known_keys(self) -> set[tuple[str, int]]:
        """Every endpoint any watch knows now."""
        return {key for endpoints in self.sets.values() for key in endpoints.endpoints}

    def changed(self) -> None:
        for listener in self._listeners:
            listener()

    async def resolve(self, host: str) -> EndpointSet:
        """The endpoint set for ``host``; raises the proxy errors a client should see."""
        found = self.sets.get(host)
        if found is None or (found.unknown_since is not None and time.monotonic() - found.unknown_since > UNKNOWN_RETRY_AFTER):
            found = EndpointSet(host)
            self.sets[host] = found
            self._tasks.supervise(lambda s=found: self._watch(s), name=f"discovery:{host}")
        if not found.ready.is_set():
            try:
                await asyncio.wait_for(found.ready.wait(), FIRST_SNAPSHOT_TIMEOUT)
            except TimeoutError:
                raise DiscoveryUnavailable(
                    f"no answer from the control plane about {host!r} within {FIRST_SNAPSHOT_TIMEOUT:g}s; is it running?"
                ) from None
        if found.unknown_since is not None:
            raise UnknownService(f"{host!r} is not a service in the mesh (check the name and namespace, or set NO_PROXY for it)")
        if not found.ordered:
            raise NoEndpoints(f"service {found.service or host} has no endpoints (is any instance running and ready?)")
        return found

    async def _watch(self, endpoints: EndpointSet) -> None:
        delay = 0.05
        while True:
            try:
                ctx = self._identity.client_ctx
                assert ctx is not None, "discovery starts only after bootstrap"
                query = {"name": endpoints.name, **({"workload": self._workload} if self._workload else {})}
                lines = self._client.stream_lines("/v1/watch", query, ctx, 3 * HEARTBEAT_SECONDS)
                async for line in lines:
                    if line.strip():
                        event = decode_event(line)
                        endpoints.apply(event)
                        endpoints.connected = True
                        if event["type"] != "heartbeat":
                            self.changed()
                        delay = 0.05
            except asyncio.CancelledError:
                raise
            except ControlPlaneRefused as exc:
                if exc.status == 404:
                    endpoints.unknown_since = time.monotonic()
                    endpoints.ready.set()
                    return
                log.warning("discovery watch for %s refused: %s", endpoints.name, exc)
            except Exception as exc:  # any failure: keep the endpoints, back off, re-watch
                if endpoints.connected:
                    log.warning("discovery watch for %s lost (%s); keeping %d known endpoints",
                                endpoints.name, exc or type(exc).__name__, len(endpoints.endpoints))
            endpoints.connected = False
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, 5.0)
