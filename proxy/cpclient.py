"""Talking to the control plane's mesh API over TLS — through the proxy's own connection
pool, so the control plane's SPIFFE ID is checked exactly like any other peer's."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from proxy.endpoint import exchange
from proxy.errors import ProxyError
from proxy.exchange import EMPTY, BytesBody, ConnectionBody, Peer, Request
from proxy.http1 import ConnectionClosed, ProtocolViolation, ReadTimeout, RequestHead
from proxy.metrics import TcpStats
from proxy.pool import ConnectionPool, Dest

FIRST_RETRY_SECONDS, LAST_RETRY_SECONDS = 0.05, 5.0


class ControlPlaneError(Exception):
    """The control plane could not be reached, or answered with an error."""


class ControlPlaneRefused(ControlPlaneError):
    """The control plane answered, and said no (4xx): retrying the same thing will not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ControlPlaneClient:
    def __init__(self, base_url: str, expected_identity: str, tcp: TcpStats | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname or not parts.port:
            raise ValueError(f"control plane URL {base_url!r} must look like https://127.0.0.1:PORT")
        self.base_url = base_url.rstrip("/")
        self.dest = Dest(parts.hostname, parts.port, expected_identity)
        self._tcp = tcp or TcpStats()
        self._pools: dict[int, ConnectionPool] = {}

    def _pool(self, ctx: ssl.SSLContext) -> ConnectionPool:
        # one pool per TLS context: a rotated certificate gets fresh connections
        pool = self._pools.get(id(ctx))
        if pool is None:
            for old in self._pools.values():
                old.close_all()
            self._pools = {id(ctx): (pool := ConnectionPool(lambda: ctx, self._tcp, "controlplane"))}
        return pool

    async def _send(self, method: str, path: str, ctx: ssl.SSLContext, body: bytes | None, timeout: float | None):
        headers = [(b"host", f"{self.dest.host}:{self.dest.port}".encode()), (b"accept", b"application/json")]
        if body is not None:
            headers.append((b"content-type", b"application/json"))
        head = RequestHead(method, path, "1.1", headers, True, False, len(body) if body else 0)
        request = Request(head, BytesBody(body) if body else EMPTY, Peer("", False, None), path=path)
        try:
            return await exchange(self._pool(ctx), self.dest, request, b"", response_timeout=timeout)
        except ProxyError as exc:
            raise ControlPlaneError(exc.message) from None

    async def post_json(self, path: str, body: dict[str, Any], ctx: ssl.SSLContext) -> dict[str, Any]:
        response = await self._send("POST", path, ctx, json.dumps(body).encode(), timeout=10.0)
        raw = await _read_all(response.body)
        try:
            payload = json.loads(raw or b"null")
        except ValueError:
            raise ControlPlaneError(f"{path}: answer is not JSON") from None
        if response.status >= 400:
            error = payload.get("error") if isinstance(payload, dict) else payload
            raise ControlPlaneRefused(f"{path}: {response.status} {error}", response.status)
        return payload

    async def stream_lines(self, path: str, query: dict[str, str], ctx: ssl.SSLContext,
                           idle_timeout: float) -> AsyncIterator[bytes]:
        """Lines of a streamed response. Raises ControlPlaneRefused for a 4xx answer."""
        response = await self._send("GET", f"{path}?{urlencode(query)}", ctx, None, timeout=idle_timeout)
        if response.status >= 400:
            raw = await _read_all(response.body)
            raise ControlPlaneRefused(f"{path}: {response.status} {raw[:200].decode(errors='replace')}", response.status)
        body = response.body
        if isinstance(body, ConnectionBody):
            body._idle_timeout = idle_timeout
        buffer = b""
        try:
            async for chunk in body.chunks():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line
        except (ConnectionClosed, ProtocolViolation, ReadTimeout) as exc:
            raise ControlPlaneError(f"{path}: stream lost ({exc})") from None
        finally:
            body.abandon()

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close_all()
        self._pools.clear()


async def _read_all(body) -> bytes:
    try:
        return b"".join([chunk async for chunk in body.chunks()])
    except (ConnectionClosed, ProtocolViolation, ReadTimeout) as exc:
        raise ControlPlaneError(f"answer cut short ({exc})") from None




async def follow_snapshots(client: ControlPlaneClient, path: str, context: Callable[[], ssl.SSLContext | None],
                           on_snapshot: Callable[[dict[str, Any]], None], on_lost: Callable[[Exception], None],
                           rng: random.Random, idle_timeout: float) -> None:
    """Follow a control-plane watch for good: each ``{"type": "snapshot"}`` event goes to
    ``on_snapshot``; a lost or refused stream goes to ``on_lost`` (the caller keeps what it has)
    and is watched again after a jittered backoff, from 50 ms doubling to 5 s, reset by a snapshot."""
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            ctx = context()
            assert ctx is not None
            async for line in client.stream_lines(path, {}, ctx, idle_timeout):
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "snapshot":
                    on_snapshot(event)
                    delay = FIRST_RETRY_SECONDS
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_lost(exc)
        await asyncio.sleep(delay * (0.5 + rng.random()))
        delay = min(delay * 2, LAST_RETRY_SECONDS)
