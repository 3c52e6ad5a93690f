"""Connections to endpoints: opened (mutual TLS when the endpoint is meshed), checked against
the identity discovery promised, and kept alive for reuse.

One pool serves the outbound side (to other workloads' inbound listeners) and another the
inbound side (plaintext to the local app).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.sslcontext import peer_identity
from proxy.deadlines import Deadlines
from proxy.errors import ConnectFailed, IdentityMismatch
from proxy.http1 import HttpConnection
from proxy.metrics import TcpStats

log = logging.getLogger("meshdojo.proxy.pool")
CONNECT_TIMEOUT = 3.0
IDLE_TIMEOUT = 30.0  # shorter than the inbound listener's idle timeout, so the server never closes first
MAX_IDLE_PER_KEY = 128


@dataclass(frozen=True, slots=True)
class Dest:
    """Where to connect and whom to expect there."""

    host: str
    port: int
    identity: str | None  # None: plaintext (unmeshed endpoint, or the local app)
    sni: str | None = None  # a host outside the mesh over TLS the sidecar originates: the name its certificate must carry

    @property
    def tls(self) -> bool:
        return self.identity is not None


@functools.cache
def origination_context() -> ssl.SSLContext:
    """TLS to a host outside the mesh (a BackendTLSPolicy's): the system's CAs, the host's name
    checked, TLS 1.2 or newer. Made once, on first use ($SSL_CERT_FILE and $SSL_CERT_DIR apply)."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class ConnectionPool:
    def __init__(self, tls_context: Callable[[], ssl.SSLContext | None], tcp: TcpStats, direction: str,
                 deadlines: Deadlines | None = None, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._tls_context = tls_context
        self._tcp = tcp
        self._direction = direction
        self._deadlines = deadlines
        self._idle_timeout = idle_timeout
        self._idle: dict[Dest, list[tuple[HttpConnection, float]]] = {}  # most recently used last
        self.connects = 0
        if deadlines is not None:
            deadlines.every_tick(self.expire_idle)

    async def acquire(self, dest: Dest) -> tuple[HttpConnection, bool]:
        """A connection to ``dest`` and whether it was reused from the pool."""
        idle = self._idle.get(dest)
        while idle:
            conn, _since = idle.pop()
            if conn.idle:
                return conn, True
            conn.close()
        return await self._connect(dest), False

    def release(self, dest: Dest, conn: HttpConnection, reusable: bool) -> None:
        if not reusable or not conn.idle:
            conn.close()
            return
        idle = self._idle.setdefault(dest, [])
        if len(idle) >= MAX_IDLE_PER_KEY:
            conn.close()
            return
        idle.append((conn, time.monotonic()))

    def expire_idle(self, now: float) -> None:
        """Close connections unused for ``idle_timeout`` (run by the deadline ticker)."""
        cutoff = now - self._idle_timeout
        for dest, idle in list(self._idle.items()):
            while idle and idle[0][1] <= cutoff:  # oldest first
                idle.pop(0)[0].close()
            if not idle:
                del self._idle[dest]

    def close_all(self) -> None:
        for idle in self._idle.values():
            for conn, _since in idle:
                conn.close()
        self._idle.clear()

    async def _connect(self, dest: Dest) -> HttpConnection:
        loop = asyncio.get_running_loop()
        ctx = self._tls_context() if dest.tls else origination_context() if dest.sni else None
        if dest.tls and ctx is None:
            raise ConnectFailed("this proxy has no certificate yet, so it cannot open mutual TLS")
        conn = HttpConnection("response", on_lost=self._lost, deadlines=self._deadlines)
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn, dest.host, dest.port,
                    ssl=ctx, server_hostname=(dest.sni or "") if ctx else None,
                ),
                CONNECT_TIMEOUT,
            )
        except TimeoutError:
            raise ConnectFailed(f"connecting to {dest.host}:{dest.port} timed out after {CONNECT_TIMEOUT:g}s") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"TLS handshake with {dest.host}:{dest.port} failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {dest.host}:{dest.port}: {exc.strerror or exc}") from None
        self.connects += 1
        if dest.tls:
            seen = peer_identity(transport.get_extra_info("ssl_object"))
            if seen != dest.identity:
                transport.abort()
                log.warning("refusing %s:%d: it presented %s but discovery promised %s", dest.host, dest.port, seen, dest.identity)
                raise IdentityMismatch(
                    f"{dest.host}:{dest.port} presented identity {seen} but discovery promised {dest.identity}"
                )
        self._tcp.opened(conn, (self._direction, "dst", "true" if dest.tls else "no_identity", "", dest.identity or ""))
        return conn

    def _lost(self, conn: HttpConnection, exc: BaseException | None) -> None:
        self._tcp.closed(conn)
