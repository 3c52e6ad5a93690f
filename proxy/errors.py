"""Failures the proxy reports to the client itself: a status, a code for the
``x-meshdojo-error`` header and a one-line explanation that suggests what to check."""

from __future__ import annotations

from proxy.exchange import BytesBody, Response


class ProxyError(Exception):
    status = 502
    code = "proxy_error"
    client_fault = False  # the downstream client did something wrong: never held against an endpoint
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()  # on its answer too (an allowed origin's CORS headers)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> Response:
        body = f"meshdojo proxy: {self.message}\n".encode()
        return Response(
            self.status,
            [(b"content-type", b"text/plain; charset=utf-8"), (b"x-meshdojo-error", self.code.encode()), *self.extra_headers],
            BytesBody(body),
            error=self.code,
        )


class BadRequest(ProxyError):
    status = 400
    code = "bad_request"


class UnknownService(ProxyError):
    status = 502
    code = "unknown_service"


class NoEndpoints(ProxyError):
    status = 503
    code = "no_endpoints"


class DiscoveryUnavailable(ProxyError):
    status = 503
    code = "discovery_unavailable"


class ConnectFailed(ProxyError):
    status = 502
    code = "connect_failed"


class IdentityMismatch(ProxyError):
    status = 502
    code = "identity_mismatch"


class UpstreamProtocolError(ProxyError):
    status = 502
    code = "upstream_protocol_error"


class AppUnavailable(ProxyError):
    status = 502
    code = "app_unavailable"


class RequestTimeout(ProxyError):
    status = 408
    code = "request_timeout"


class ClientError(ProxyError):
    """The client's request went wrong while it was being forwarded (a malformed or stalled
    body, or the client left): its fault, never the endpoint's — no breaker failure, no
    latency sample, no retry. The connection's framing is lost, so it is closed."""

    status = 400
    code = "bad_request_body"
    client_fault = True

    def __init__(self, message: str, status: int = 400, code: str = "bad_request_body") -> None:
        super().__init__(message)
        self.status, self.code = status, code
