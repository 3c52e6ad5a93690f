"""HTTP/1.1 as written on the wire: heads, chunks and the headers a proxy must not forward.
Pure functions of what they are given (the connection that reads is :mod:`proxy.http1`)."""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]  # names lower-cased

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
     b"te", b"trailer", b"transfer-encoding", b"upgrade", b"content-length"}
)


def forwardable(headers: Headers) -> Headers:
    """Headers minus hop-by-hop ones (and any the Connection header names)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    drop = HOP_BY_HOP | named if named else HOP_BY_HOP
    return [(n, v) for n, v in headers if n not in drop]


def framing_headers(length: int | None) -> bytes:
    if length is None:
        return b"transfer-encoding: chunked\r\n"
    return b"content-length: %d\r\n" % length


def encode_request_head(method: str, target: str, headers: Headers, length: int | None, extra: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
    lines.extend(b"%s: %s\r\n" % pair for pair in headers)
    if length is None or length or method in ("POST", "PUT", "PATCH"):
        lines.append(framing_headers(length))
    lines.append(extra)
    lines.append(b"\r\n")
    return b"".join(lines)


def encode_response_head(status: int, headers: Headers, length: int | None, keep_alive: bool, extra: bytes = b"") -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))]
    lines.extend(b"%s: %s\r\n" % pair for pair in headers)
    if not (status < 200 or status in (204, 304)):
        lines.append(framing_headers(length))
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(extra)
    lines.append(b"\r\n")
    return b"".join(lines)


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"

_REASONS = {
    200: b"OK", 201: b"Created", 204: b"No Content", 301: b"Moved Permanently", 302: b"Found",
    304: b"Not Modified", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Payload Too Large", 429: b"Too Many Requests",
    500: b"Internal Server Error", 501: b"Not Implemented", 502: b"Bad Gateway", 503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"Status")
