"""Relays on the edges that have a network fault (or a ``meshdojo wire`` capture).

For each fault and each endpoint it targets, a TCP relay listens on the control plane's host
(127.0.0.1 locally; in Kubernetes its pod's IP, which every pod can reach); the control plane points the affected clients' discovery at it (see ``Registry.redirector``), so their
connections cross it while every other client keeps going direct. Mutual TLS passes through
untouched: the client still verifies the identity discovery promised. What a relay does to
the bytes is the fault's kind:

    latency     server->client chunks are held latency ± jitter (order kept), as toxiproxy's default stream
    bandwidth   server->client bytes leave at the given rate
    reset       every connection is reset (RST) as soon as it is accepted
    blackhole   accepted, read and never answered; nothing is forwarded
    partition   a blackhole both ways between two deployments
    wire        passed through unchanged

Every relay keeps the first bytes of its recent connections, both directions, for the wire view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.netfaults import NetFault, Workloads
from controlplane.registry import Registry

log = logging.getLogger("meshdojo.controlplane.relay")
CAPTURE_BYTES = 4096
CAPTURES_KEPT = 8
CHUNK = 16 * 1024
CHANGES_KEPT = 500
LOCAL = "127.0.0.1"


@dataclass
class Capture:
    """The first bytes of one relayed connection, each direction."""

    fault: str
    kind: str
    namespace: str
    service: str
    endpoint: str
    started: float
    client_bytes: bytearray = field(default_factory=bytearray)
    server_bytes: bytearray = field(default_factory=bytearray)
    client_total: int = 0
    server_total: int = 0

    def keep(self, to_server: bool, data: bytes) -> None:
        if to_server:
            self.client_total += len(data)
            buf = self.client_bytes
        else:
            self.server_total += len(data)
            buf = self.server_bytes
        if len(buf) < CAPTURE_BYTES:
            buf += data[:CAPTURE_BYTES - len(buf)]


class Relay:
    """One listener: the relay for one fault in front of one endpoint."""

    def __init__(self, fault: NetFault, namespace: str, service: str, endpoint_id: str,
                 target: Callable[[], tuple[str, int] | None], captures: deque[Capture], rng: random.Random,
                 host: str = LOCAL) -> None:
        self.fault, self.namespace, self.service, self.endpoint_id = fault, namespace, service, endpoint_id
        self._target = target
        self._captures = captures
        self._rng = rng
        self._host = host
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task] = set()
        self.port = 0
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.connections += 1
        try:
            await self._serve(reader, writer)
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            self._conns.discard(task)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind = self.fault.kind
        capture = Capture(self.fault.name, kind, self.namespace, self.service, self.endpoint_id, time.time())
        self._captures.append(capture)
        if kind == "reset":  # SO_LINGER 0: closing sends RST instead of FIN
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if kind in ("blackhole", "partition"):  # swallow whatever comes, answer nothing
            while data := await reader.read(CHUNK):
                capture.keep(True, data)
            return
        where = self._target()
        if where is None:
            return
        up_reader, up_writer = await asyncio.open_connection(*where)
        try:
            await asyncio.gather(self._pump(reader, up_writer, capture, True), self._pump(up_reader, writer, capture, False))
        finally:
            up_writer.transport.abort()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, capture: Capture, to_server: bool) -> None:
        fault = self.fault
        if fault.kind == "latency" and not to_server:
            await self._delayed(src, dst, capture)
            return
        rate = fault.rate_bytes if fault.kind == "bandwidth" and not to_server else 0
        read_size = min(CHUNK, max(rate // 10, 64)) if rate else CHUNK
        while data := await src.read(read_size):
            capture.keep(to_server, data)
            dst.write(data)
            await dst.drain()
            if rate:
                await asyncio.sleep(len(data) / rate)
        if dst.can_write_eof():
            with contextlib.suppress(OSError):
                dst.write_eof()

    async def _delayed(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, capture: Capture) -> None:
        """Each chunk leaves latency ± jitter after it arrived, never before the one ahead of it."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            last_due = 0.0
            while data := await src.read(CHUNK):
                capture.keep(False, data)
                delay = (self.fault.latency_ms + self._rng.uniform(-1, 1) * self.fault.jitter_ms) / 1000
                last_due = max(loop.time() + max(delay, 0.0), last_due)
                queue.put_nowait((last_due, data))
            queue.put_nowait((last_due, b""))

        async def write() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(due - loop.time(), 0))
                if not data:
                    if dst.can_write_eof():
                        with contextlib.suppress(OSError):
                            dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()

        await asyncio.gather(read(), write())


class RelayManager:
    """The faults in force and their relays, kept in step with the registry."""

    def __init__(self, registry: Registry, deployment_of: Callable[[str, str], str | None],
                 on_change: Callable[[RelayManager], None] | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, listen: str = LOCAL, advertised: str | None = None) -> None:
        """``listen``: where relays listen; ``advertised``: the address clients are sent to (default: ``listen``)."""
        self.faults: dict[str, NetFault] = {}
        self._listen, self._advertised = listen, advertised or listen
        self._registry = registry
        self._deployment_of = deployment_of
        self._on_change = on_change
        self._clock = clock
        self._rng = rng or random.Random()
        self._relays: dict[tuple[str, str, str, str], Relay] = {}  # (fault, ns, service, endpoint id)
        self.captures: dict[str, deque[Capture]] = {}
        self._lock = asyncio.Lock()
        self._redirected: set[tuple[str, str]] = set()  # services whose watchers see a relay
        self.changes: deque[dict] = deque(maxlen=CHANGES_KEPT)  # faults put and removed, for reports
        self._pending: asyncio.Task | None = None

    # -- what the registry asks -------------------------------------------------------------
    def redirect(self, namespace: str, service: str, client: tuple[str, str] | None) -> dict[str, tuple[str, int]]:
        """For a watch of ``service`` by ``client`` (namespace, instance): endpoint id -> the relay's address."""
        if not self._relays:
            return {}
        who = None
        if client is not None:
            deployment = self._deployment_of(*client)
            who = Workloads(client[0], deployment=deployment) if deployment else None
        found: dict[str, tuple[str, int]] = {}
        for fault in self._by_precedence():
            for (name, ns, svc, eid), relay in self._relays.items():
                if name == fault.name and ns == namespace and svc == service and eid not in found \
                        and fault.applies(who, ns, svc, self._endpoint_deployment(ns, svc, eid), self._endpoint_instance(ns, svc, eid)):
                    found[eid] = (self._advertised, relay.port)
        return found

    def _by_precedence(self) -> list[NetFault]:
        """Real faults before wire captures; the newest first."""
        return sorted(self.faults.values(), key=lambda f: (f.kind == "wire", -f.created))

    def _endpoint_instance(self, namespace: str, service: str, endpoint_id: str) -> str:
        svc = self._registry.get(namespace, service)
        ep = svc.endpoints.get(endpoint_id) if svc else None
        return (ep.instance if ep else "") or endpoint_id

    def _endpoint_deployment(self, namespace: str, service: str, endpoint_id: str) -> str | None:
        svc = self._registry.get(namespace, service)
        ep = svc.endpoints.get(endpoint_id) if svc else None
        return self._deployment_of(namespace, (ep.instance if ep else "") or endpoint_id)

    # -- changes ----------------------------------------------------------------------------
    async def put(self, fault: NetFault) -> NetFault:
        async with self._lock:
            old = self.faults.get(fault.name)
            if old is not None:
                await self._close_relays(lambda key: key[0] == fault.name)
            self.faults[fault.name] = fault
            self.captures[fault.name] = deque(maxlen=CAPTURES_KEPT)
            await self._reconcile()
        if fault.kind != "wire":
            self._record("created" if old is None else "configured", fault)
        self._saved()
        return fault

    async def remove(self, name: str) -> bool:
        async with self._lock:
            fault = self.faults.pop(name, None)
            if fault is None:
                return False
            self.captures.pop(name, None)
            await self._reconcile()
        if fault.kind != "wire":
            self._record("deleted", fault)
        self._saved()
        return True

    async def expire(self) -> list[str]:
        now = self._clock()
        gone = [f.name for f in self.faults.values() if f.expires_at is not None and f.expires_at <= now]
        for name in gone:
            await self.remove(name)
        return gone

    def poke(self) -> None:
        """Endpoints or workloads came or went: relays follow soon (a new instance gets one too)."""
        if not self.faults or self._pending is not None:
            return
        self._pending = asyncio.get_running_loop().create_task(self._after_poke(), name="relays:reconcile")

    async def _after_poke(self) -> None:
        try:
            await asyncio.sleep(0)  # one reconcile for a burst of changes
            self._pending = None
            await self.reconcile()
        except Exception:  # never let a relay problem take the control plane down
            log.exception("reconciling relays failed")

    def restore(self, saved: list[dict]) -> None:
        """Faults saved by a previous run (relays come with the first reconcile)."""
        now = self._clock()
        for raw in saved:
            fault = NetFault.from_saved(raw)
            if fault.expires_at is None or fault.expires_at > now:
                self.faults[fault.name] = fault
                self.captures[fault.name] = deque(maxlen=CAPTURES_KEPT)

    async def reconcile(self) -> None:
        async with self._lock:
            await self._reconcile()

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        async with self._lock:
            await self._close_relays(lambda key: True)

    def to_json(self) -> list[dict]:
        return [f.to_json() for f in self.faults.values()]

    def _record(self, action: str, fault: NetFault) -> None:
        self.changes.append({"time": self._clock(), "action": action, "kind": "NetworkFault", "namespace": fault.target.namespace,
                             "name": fault.name, "detail": fault.describe()})

    def relay_count(self) -> int:
        return len(self._relays)

    # -- the work ---------------------------------------------------------------------------
    async def _reconcile(self) -> None:
        wanted: dict[tuple[str, str, str, str], NetFault] = {}
        for fault in self.faults.values():
            for svc in self._registry.services():
                for eid, ep in svc.endpoints.items():
                    deployment = self._deployment_of(svc.namespace, ep.instance or eid)
                    if _targets(fault, svc.namespace, svc.name, deployment, ep.instance or eid):
                        wanted[(fault.name, svc.namespace, svc.name, eid)] = fault
        await self._close_relays(lambda key: key not in wanted)
        for key, fault in wanted.items():
            if key in self._relays:
                continue
            relay = Relay(fault, key[1], key[2], key[3], lambda k=key: self._real_address(k), self.captures[fault.name], self._rng,
                          self._listen)
            await relay.start()
            self._relays[key] = relay
        now_redirected = {(k[1], k[2]) for k in self._relays}
        for namespace, service in now_redirected | self._redirected:
            self._registry.refresh(namespace, service)
        self._redirected = now_redirected

    def _real_address(self, key: tuple[str, str, str, str]) -> tuple[str, int] | None:
        svc = self._registry.get(key[1], key[2])
        ep = svc.endpoints.get(key[3]) if svc else None
        return (ep.address, ep.port) if ep else None

    async def _close_relays(self, which: Callable[[tuple[str, str, str, str]], bool]) -> None:
        for key in [k for k in self._relays if which(k)]:
            await self._relays.pop(key).close()

    def _saved(self) -> None:
        if self._on_change is not None:
            self._on_change(self)


def _targets(fault: NetFault, namespace: str, service: str, deployment: str | None, instance: str) -> bool:
    """Could some client's connection to this endpoint be under the fault? (Which clients is
    decided per watch, in ``RelayManager.redirect``.)"""
    sides = [fault.target] + ([fault.source] if fault.kind == "partition" and fault.source else [])
    return any(side.includes(namespace, service, deployment, instance) for side in sides)
