"""``x-request-id``: one id a request keeps on every hop, as Envoy gives it in Istio's mesh.

A sidecar gives a request that comes without one a fresh random UUID, and keeps the one it
carries: the app's outbound request, and an inbound request from a caller without a sidecar,
both get an id, and a request passed on from hop to hop (bookinfo's apps copy the header, as
Istio asks apps to) keeps its first. An ingress gateway replaces whatever an outside client sent
(Envoy's default for edge requests, ``preserve_external_request_id: false``), so nobody outside
the mesh chooses the ids inside it. The id shows in the access log's Envoy format, in tap's
detail and in the fate (``Fate.request_id``). :func:`new_request_id` is pure given its ``rng``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable

from proxy.exchange import Handler, Layer, Request, Response

HEADER = b"x-request-id"
_VERSION_4 = (0xF << 76, 0x4 << 76)  # (mask, value) of a UUID's version nibble
_VARIANT_RFC4122 = (0xC << 60, 0x8 << 60)  # ... and of its variant's two bits


def new_request_id(rng: random.Random) -> str:
    """A random (version 4) UUID in its usual text form, from ``rng``."""
    bits = rng.getrandbits(128)
    bits = (bits & ~_VERSION_4[0]) | _VERSION_4[1]
    bits = (bits & ~_VARIANT_RFC4122[0]) | _VARIANT_RFC4122[1]
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_id(rng: random.Random, edge: bool = False) -> Layer:
    """Give each request an ``x-request-id`` (the one it carries, unless at the ``edge``)."""

    def layer(inner: Handler) -> Handler:
        def handle(request: Request) -> Awaitable[Response]:  # no coroutine of its own: it returns inner's
            headers = request.head.headers
            carried = None if edge else request.head.header(HEADER)
            if carried is not None:
                request.fate.request_id = carried.decode("latin-1")
                return inner(request)
            fresh = new_request_id(rng)
            if edge:
                request.head.headers = headers = [(n, v) for n, v in headers if n != HEADER]
            headers.append((HEADER, fresh.encode()))
            request.fate.request_id = fresh
            return inner(request)

        return handle

    return layer

