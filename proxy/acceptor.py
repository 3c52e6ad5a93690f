"""Listeners that accept connections themselves, to look at a client's first bytes before
choosing how to serve it: the inbound port (TLS or not, proxy/inbound.py) and a gateway's TLS
port (which certificate, proxy/gatewaytls.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from proxy.tasks import TaskSet

log = logging.getLogger("meshdojo.proxy.accept")


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def accept_forever(sock: socket.socket, serve: Callable[[socket.socket, tuple[str, int]], Awaitable[None]],
                         tasks: TaskSet, name: str) -> None:
    """Each accepted connection served by ``serve`` in a task of its own (non-blocking, TCP_NODELAY)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn, addr = await loop.sock_accept(sock)
        except OSError as exc:
            log.warning("%s: accept failed: %s", name, exc)
            await asyncio.sleep(0.05)  # out of descriptors, say: let connections finish
            continue
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tasks.spawn(serve(conn, addr), name=f"{name}:{addr[0]}:{addr[1]}")


class Acceptor:
    """A listening socket whose connections are each served by ``serve(sock, addr)`` in a task
    of their own; ``close()`` stops accepting (connections being served go on)."""

    def __init__(self, serve: Callable[[socket.socket, tuple[str, int]], Awaitable[None]], tasks: TaskSet, name: str) -> None:
        self._serve = serve
        self._tasks = tasks
        self._name = name
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task | None = None

    def listen(self, host: str, port: int) -> int:
        """Bind and start accepting; the port bound (0: the OS picks)."""
        self._sock = listening_socket(host, port)
        self._accepting = self._tasks.spawn(accept_forever(self._sock, self._serve, self._tasks, self._name),
                                            name=f"{self._name}:accept")
        return self._sock.getsockname()[1]

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def readable(loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout: float) -> None:
    """Until the client has sent something (TimeoutError after ``timeout``)."""
    ready = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, max(timeout, 0.0))
    finally:
        loop.remove_reader(fd)
