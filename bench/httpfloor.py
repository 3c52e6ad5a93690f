"""Reference point for the benchmark: our HTTP/1 forwarding with no layers at all.

The same pieces the proxy forwards a request with — :class:`proxy.http1.HttpConnection`
(httptools), :func:`proxy.serve.serve_connection` (the head checks, keep-alive, the response
written back), :func:`proxy.endpoint.exchange` over a :class:`proxy.pool.ConnectionPool` (mutual
TLS 1.3 with the peer's identity checked, pooled) — and nothing of the request stack: no
discovery, balancer, policies, metrics, fates or tap. ``front`` takes what a client sends
through ``HTTP_PROXY`` and forwards it over mutual TLS to ``back``, which forwards it to the app.

Between the bare TLS byte pipe (:mod:`bench.tlspipe`) and the meshed path, it splits the
proxy's cost in two: the HTTP/1 machinery every request needs, and the layers on top of it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.tlspipe import run_relay
from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context, server_context
from proxy.deadlines import Deadlines
from proxy.endpoint import exchange
from proxy.exchange import Handler, Peer, Request, Response
from proxy.http1 import HttpConnection
from proxy.metrics import TcpStats
from proxy.outbound import parse_target
from proxy.pool import ConnectionPool, Dest
from proxy.serve import ServerState, serve_connection

IDENTITY = str(SpiffeId("bench", "pipe"))  # whom bench.tlspipe.make_material's leaf names


def forward_to(pool: ConnectionPool, dest: Dest, absolute_form: bool) -> Handler:
    async def handle(request: Request) -> Response:
        if absolute_form:
            parse_target(request)
        else:
            request.path = request.head.target
        return await exchange(pool, dest, request, b"")

    return handle


class _Accepted(HttpConnection):
    def __init__(self, handler: Handler, state: ServerState, deadlines: Deadlines, tasks: set[asyncio.Task]) -> None:
        super().__init__("request", deadlines=deadlines)
        self._handler, self._state, self._tasks = handler, state, tasks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        task = asyncio.get_running_loop().create_task(serve_connection(self, self._handler, Peer("client", False, None), self._state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def serve(role: str, listen_port_file: Path, upstream_port: int, material: tuple[str, str, str]) -> None:
    loop = asyncio.get_running_loop()
    anchor, chain, key = material
    deadlines = Deadlines()
    tasks: set[asyncio.Task] = {loop.create_task(deadlines.run())}
    if role == "front":  # plaintext in (as HTTP_PROXY), mutual TLS out
        client_ctx = client_context(anchor, chain, key)
        pool = ConnectionPool(lambda: client_ctx, TcpStats(), "outbound", deadlines)
        handler, server_ctx = forward_to(pool, Dest("127.0.0.1", upstream_port, IDENTITY), absolute_form=True), None
    else:  # mutual TLS in, plaintext to the app
        pool = ConnectionPool(lambda: None, TcpStats(), "inbound", deadlines)
        handler = forward_to(pool, Dest("127.0.0.1", upstream_port, None), absolute_form=False)
        server_ctx = server_context(anchor, chain, key)
    state = ServerState()
    server = await loop.create_server(lambda: _Accepted(handler, state, deadlines, tasks), "127.0.0.1", 0, ssl=server_ctx)
    listen_port_file.write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240
    await asyncio.Event().wait()


if __name__ == "__main__":
    run_relay(serve)
