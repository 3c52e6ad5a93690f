"""Reference point for the benchmark: a bare TLS byte pipe pair, no HTTP at all.

``front`` accepts plaintext and relays bytes over TLS to ``back``, which relays them in
plaintext to the app. It does the same socket and TLS work as the meshed path and none of
the HTTP, so it shows how much of the meshed cost is the machine rather than the proxy.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context, server_context


class Relay(asyncio.Protocol):
    def __init__(self, on_made=None) -> None:
        self.on_made = on_made
        self.peer: asyncio.Transport | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport):
        self.transport = transport
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)
        else:
            self.peer.write(data)

    def connection_lost(self, exc):
        if self.peer is not None:
            self.peer.close()


async def serve(role: str, listen_port_file: Path, upstream_port: int, material: tuple[str, str, str]) -> None:
    loop = asyncio.get_running_loop()
    anchor, chain, key = material
    upstream_ctx = client_context(anchor, chain, key) if role == "front" else None
    server_ctx = server_context(anchor, chain, key) if role == "back" else None

    tasks: set[asyncio.Task] = set()

    def made(down: Relay) -> None:
        async def connect() -> None:
            up = Relay()
            await loop.create_connection(lambda: up, "127.0.0.1", upstream_port, ssl=upstream_ctx,
                                                server_hostname="" if upstream_ctx else None)
            up.peer, down.peer = down.transport, up.transport
            for data in down.pending:
                up.transport.write(data)  # type: ignore[union-attr]

        task = loop.create_task(connect())
        tasks.add(task)
        task.add_done_callback(connect_done(tasks))

    def factory() -> Relay:
        return Relay(on_made=made)

    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
    listen_port_file.write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240
    await asyncio.Event().wait()


def make_material() -> tuple[str, str, str]:
    import datetime as dt

    from controlplane import ca  # only here: the relays themselves never load cryptography

    now = dt.datetime.now(dt.UTC)
    anchor = ca.make_trust_anchor(now)
    issuer = ca.make_issuer(anchor, now)
    key = ca.new_key()
    me = SpiffeId("bench", "pipe")
    leaf = ca.sign_workload(ca.make_csr(me, key), me, issuer, now)
    return ca.cert_pem(anchor.certificate), ca.cert_pem(leaf) + ca.cert_pem(issuer.certificate), ca.key_pem(key)


def connect_done(tasks: set[asyncio.Task]) -> Callable[[asyncio.Task], None]:
    """A relay's connection attempt is over: forget it, and say why if it failed."""

    def done(task: asyncio.Task) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception():
            print(f"relay connect failed: {task.exception()!r}", file=sys.stderr, flush=True)

    return done


def run_relay(serve: Callable[[str, Path, int, tuple[str, str, str]], Coroutine[Any, Any, None]]) -> None:
    """The reference relays' command line: ``front|back PORT_FILE UPSTREAM_PORT MATERIAL_FILE``."""
    role, port_file, upstream, material_file = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    parts = tuple(material_file.read_text().split("\n\n\n"))
    assert ssl.HAS_TLSv1_3 and len(parts) == 3
    uvloop.run(serve(role, port_file, upstream, parts))  # type: ignore[arg-type]


if __name__ == "__main__":
    run_relay(serve)
