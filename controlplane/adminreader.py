"""Asking a sidecar's admin port for what only holders of its tap token may read (``/tap``,
``/spans``), over mutual TLS: the control plane presents its own identity and checks that the
sidecar presents the one discovery knows for it *before* the token is sent, so the token goes
to that identity only and never crosses the pod network in clear.

Written by hand rather than with aiohttp, which sends the request (and the token) as soon as
the handshake ends. HTTP/1.0, so a response comes unchunked and ends with the connection.
"""

from __future__ import annotations

import asyncio
import ssl

from controlplane.sslcontext import peer_identity

CONNECT_SECONDS = 3.0


class AdminReadError(Exception):
    """The sidecar could not be read: the message says why, for a ``lost`` line."""


async def open_admin(address: str, expected: str, path: str, token: str, tls: ssl.SSLContext,
                     body: bytes | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, check the sidecar's identity, send ``GET path`` (``POST`` with a JSON ``body``)
    and read the head of a 200 answer; the body is left in the reader. Raises AdminReadError
    (and closes) otherwise."""
    host, _, port = address.rpartition(":")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port), ssl=tls, server_hostname=""),
                                                CONNECT_SECONDS)
    except (ssl.SSLError, ValueError, OSError, TimeoutError) as exc:
        raise AdminReadError(f"{address}: {exc or type(exc).__name__}") from None
    try:
        presented = peer_identity(writer.get_extra_info("ssl_object"))
        if presented != expected:
            raise AdminReadError(f"{address} presented {presented}, not {expected}: not read")
        sent = "" if body is None else f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(f"{'GET' if body is None else 'POST'} {path} HTTP/1.0\r\nHost: {address}\r\n"
                     f"Authorization: Bearer {token}\r\n{sent}\r\n".encode() + (body or b""))
        status = (await reader.readline()).split(b" ", 2)
        while (await reader.readline()).strip():  # the response's header fields
            pass
        if len(status) < 2 or status[1] != b"200":
            reason = (await reader.read(2000)).decode("utf-8", "replace").strip()
            raise AdminReadError(f"{b' '.join(status[1:]).decode('latin-1').strip()} from its sidecar: {reason}")
    except AdminReadError:
        writer.close()
        raise
    except (ssl.SSLError, ValueError, OSError, TimeoutError) as exc:
        writer.close()
        raise AdminReadError(f"{address}: {exc or type(exc).__name__}") from None
    return reader, writer
