"""Asking an external authorizer (an ``ExtensionProvider``) about one request, as Envoy's
``ext_authz`` filter does for Istio's CUSTOM ``AuthorizationPolicy``.

The check request goes out through this proxy's own outbound side (``send``): discovery, load
balancing and mutual TLS to the authorizer's sidecar, counted and tapped like any request this
workload makes — so the authorizer shows up as a service this workload calls. What it is sent
and what its answer means are pure (controlplane/extauthz.py).
"""

from __future__ import annotations

import asyncio

from controlplane.extauthz import Verdict, check_headers, check_target, unreachable, verdict
from controlplane.providers import HttpProvider
from proxy.errors import ProxyError
from proxy.exchange import EMPTY, Handler, Peer, Request
from proxy.http1 import RequestHead

ANSWER_LIMIT = 64 * 1024  # of the authorizer's body, passed on to the caller when it denies
CHECKER = Peer("127.0.0.1:0", False, None)  # the check is this proxy's own request


async def ask(provider: HttpProvider, request: Request, send: Handler) -> Verdict:
    """The provider's verdict on ``request`` (its head only), within the provider's timeout."""
    target = check_target(provider, request.path)
    head = RequestHead(request.head.method, target, "1.1", check_headers(provider, request.head.headers), True, False, 0)
    check = Request(head, EMPTY, CHECKER, authority=provider.authority, path=provider.path_prefix + request.path)
    try:
        async with asyncio.timeout(provider.timeout):
            answer = await send(check)
            body = await _read(answer.body.chunks())
    except TimeoutError:
        return unreachable(provider, f"no answer within {provider.timeout:g}s")
    except (OSError, ProxyError) as exc:  # (a gateway's send is below its errors layer: failures are raised)
        return unreachable(provider, str(exc) or type(exc).__name__)
    if answer.error is not None:  # this proxy answered for the authorizer: it could not be reached
        return unreachable(provider, f"{answer.status} {answer.error}")
    return verdict(provider, answer.status, answer.headers, body)


async def _read(chunks) -> bytes:
    parts, size = [], 0
    async for chunk in chunks:  # read to the end, so the connection is pooled again
        if size < ANSWER_LIMIT:
            parts.append(chunk[: ANSWER_LIMIT - size])
        size += len(chunk)
    return b"".join(parts)
