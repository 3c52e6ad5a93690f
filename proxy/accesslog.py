"""Access logs: a line per request in the sidecar's log, as Envoy writes them for Istio and as
Linkerd's proxy writes them (``config.linkerd.io/access-log``).

Three formats, chosen per sidecar:

- ``envoy``: Envoy's default text format, the one Istio's access-log task shows (a
  ``Telemetry``'s ``accessLogging``): the same fields in the same order, with Envoy's response
  flags for what the sidecar itself decided (``UF`` the connection failed, ``UO`` a pool
  overflowed, ``NR`` no route, ``UT`` a timeout, ``FI``/``DI`` an injected abort or delay ...);
- ``apache`` and ``json``: Linkerd's two formats, for inbound requests only (as Linkerd logs).

Formatting is pure (:func:`envoy_line`, :func:`apache_line`, :func:`json_line`); the layer
writes the line through the ``meshdojo.proxy.access`` logger, which prints it as it is.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from controlplane.accessfilter import LogFacts
from controlplane.protocol import fqdn
from proxy.exchange import Handler, Layer, Request, Response, header_of

# what the sidecar itself answered (x-meshdojo-error) -> Envoy's response flag
RESPONSE_FLAGS = {
    "connect_failed": "UF", "app_unavailable": "UF", "identity_mismatch": "UF", "no_endpoints": "UH", "breaker_open": "UH",
    "discovery_unavailable": "UH", "pool_overflow": "UO", "request_timeout": "UT", "backend_timeout": "UT",
    "unknown_service": "NR", "no_route": "NR", "no_subset": "NC", "egress_blocked": "NR", "rate_limited": "RL",
    "upstream_protocol_error": "UPE", "bad_request": "DPE", "bad_request_body": "DPE",
}


def response_flags(request: Request, response: Response) -> str:
    """Envoy's %RESPONSE_FLAGS% for this request: ``-`` when nothing went wrong on the way. Pure."""
    flags = []
    fault = request.fate.fault or ""
    if "abort" in fault:
        flags.append("FI")
    if "delay" in fault:
        flags.append("DI")
    if response.error in RESPONSE_FLAGS:
        flags.append(RESPONSE_FLAGS[response.error])
    if len(request.fate.attempts) > 1 and response.status >= 500:
        flags.append("URX")  # retries ran out
    return ",".join(flags) or "-"


def _header(request: Request, name: bytes) -> str:
    value = request.head.header(name)
    return value.decode("latin-1") if value else "-"


def _length(body: object) -> int:
    length = getattr(body, "length", None)
    return length if isinstance(length, int) else 0


def envoy_line(request: Request, response: Response, start: float, duration_ms: int) -> str:
    """Envoy's default format (Istio's ``accessLogFile``). Pure."""
    when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(start * 1000) % 1000:03d}Z"
    details = response.error or ("fault_filter_abort" if "abort" in (request.fate.fault or "") else "via_upstream")
    upstream = f"{request.endpoint.address}:{request.endpoint.port}" if request.endpoint is not None else "-"
    return (f'[{when}] "{request.head.method} {request.path} HTTP/{request.head.version}" {response.status} '
            f'{response_flags(request, response)} {details} - "-" {_length(request.body)} {_length(response.body)} '
            f'{duration_ms} - "{_header(request, b"x-forwarded-for")}" "{_header(request, b"user-agent")}" '
            f'"{_header(request, b"x-request-id")}" "{request.authority}" "{upstream}" {_cluster(request)} - - '
            f'{request.peer.address} - {request.fate.route or "default"}')


def _cluster(request: Request) -> str:
    """Envoy's %UPSTREAM_CLUSTER% as Istio names it: ``outbound|PORT||FQDN``, or ``inbound``."""
    if request.fate.direction != "outbound":
        return "inbound"
    host, _, port = request.authority.rpartition(":")
    port = port if host and port.isdigit() else "80"
    if request.fate.egress is not None:  # a host outside the mesh: its ServiceEntry's, PassthroughCluster, BlackHoleCluster
        return f"outbound|{port}||{request.dst_service}" if request.dst_service and "." in request.dst_service \
            else request.dst_service or "PassthroughCluster"
    return f"outbound|{port}||{fqdn(request.dst_service, request.dst_namespace)}" if request.dst_service else "-"


def apache_line(request: Request, response: Response, start: float, duration_ms: int) -> str:
    """Linkerd's ``apache`` format (Apache's combined log, then the time taken). Pure."""
    when = datetime.fromtimestamp(start, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    client = request.peer.address.rpartition(":")[0] or request.peer.address
    return (f'{client} - - [{when}] "{request.head.method} {request.path} HTTP/{request.head.version}" {response.status} '
            f'{_length(response.body)} "{_header(request, b"referer")}" "{_header(request, b"user-agent")}" {duration_ms * 1_000_000}')


def json_line(request: Request, response: Response, start: float, duration_ms: int) -> str:
    """Linkerd's ``json`` format: its field names. Pure."""
    return json.dumps({
        "client.addr": request.peer.address, "client.id": request.peer.identity or "-", "host": request.authority,
        "method": request.head.method, "processing_ns": duration_ms * 1_000_000, "request_bytes": _length(request.body),
        "response_bytes": _length(response.body), "status": response.status,
        "timestamp": datetime.fromtimestamp(start, UTC).isoformat().replace("+00:00", "Z"), "total_ns": duration_ms * 1_000_000,
        "trace_id": request.fate.trace or "", "uri": request.path, "user_agent": _header(request, b"user-agent"),
        "version": f"HTTP/{request.head.version}"}, separators=(",", ":"))


LINES = {"envoy": envoy_line, "apache": apache_line, "json": json_line}


def chosen_format(telemetry: bool | None, linkerd: str | None, direction: str) -> str | None:
    """The format in force: a Telemetry's accessLogging (Envoy's, both directions) decides when one
    says on or off; else Linkerd's annotation, for inbound requests (Linkerd logs only those). Pure."""
    if telemetry is not None:
        return "envoy" if telemetry else None
    return linkerd if direction == "inbound" else None


def access_logger() -> logging.Logger:
    """The sidecar's access log: each line as it is, on stderr beside the sidecar's own log."""
    logger = logging.getLogger("meshdojo.proxy.access")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def access_log(form: Callable[[], str | None], write: Callable[[str], None], clock=time.time,
               keep: Callable[[], Callable[[LogFacts], bool] | None] = lambda: None) -> Layer:
    """A line per request in the format ``form()`` says now (None: no access log, one call);
    with a Telemetry's format, only for the requests its filter (``keep()``) is true for."""

    def layer(inner: Handler) -> Handler:
        def handle(request: Request) -> Awaitable[Response]:
            chosen = form()
            if chosen is None:  # the common case: straight on (and no coroutine of our own)
                return inner(request)
            return logged(request, chosen)

        async def logged(request: Request, chosen: str) -> Response:
            start = clock()
            response = await inner(request)
            took = clock() - start
            wanted = keep() if chosen == "envoy" else None
            if wanted is None or wanted(LogFacts(request.head.method, request.path, request.authority, response.status, took,
                                                 header_of(request), response.tls or request.peer.tls, request.peer.address)):
                write(LINES[chosen](request, response, start, round(took * 1000)))
            return response

        return handle

    return layer
