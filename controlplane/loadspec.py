"""What a ``meshdojo load`` asks for, checked at the boundary (pure): through a service's
endpoint from the control plane (:func:`parse`), or from a workload's own sidecar
(:func:`parse_from`, which a sidecar checks again before it sends anything). The errors name the
field and what was expected. No I/O and no web framework here, so a sidecar can import it.
"""

from __future__ import annotations

from typing import Any

from controlplane.durations import InvalidDuration, parse_duration
from controlplane.routeschema import METHODS

MAX_CONNECTIONS = 256
MAX_REQUESTS = 100_000
MAX_SECONDS = 120.0  # one operator call; longer runs are several calls


class LoadRequestError(ValueError):
    """A field of the request is wrong: the message names it."""


def parse(body: Any) -> dict[str, Any]:
    """The request's fields, checked (pure): the errors name the field and what was expected."""
    if not isinstance(body, dict):
        raise LoadRequestError('expected {"namespace": NS, "service": NAME, ...}')
    namespace, service = body.get("namespace"), body.get("service")
    if not isinstance(namespace, str) or not isinstance(service, str):
        raise LoadRequestError("namespace, service: expected the names of the service to send to")
    path = body.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/"):
        raise LoadRequestError("path: expected a path starting with /")
    return {"namespace": namespace, "service": service, "path": path, "https": _https(body.get("https")), **_amounts(body)}


def _https(value: Any) -> dict[str, str] | None:
    """Over TLS to the gateway's HTTPS listeners: the server name to send (SNI and Host), the
    CA that signed its certificate (fortio's -cacert) and, for a mutual TLS listener, a client
    certificate and its key (fortio's -cert and -key), checked to belong together."""
    if value is None:
        return None
    if (not isinstance(value, dict) or not isinstance(value.get("serverName"), str) or not value["serverName"]
            or not isinstance(value.get("caPEM"), str) or "BEGIN CERTIFICATE" not in value["caPEM"] or len(value["caPEM"]) > 256 * 1024):
        raise LoadRequestError('https: expected {"serverName": HOST, "caPEM": "<the CA certificate, PEM>"}')
    out = {"serverName": value["serverName"], "caPEM": value["caPEM"]}
    if "certPEM" in value or "keyPEM" in value:
        from controlplane.tlssecrets import SecretError, tls_secret

        cert, key = value.get("certPEM"), value.get("keyPEM")
        if not isinstance(cert, str) or not isinstance(key, str) or len(cert) + len(key) > 256 * 1024:
            raise LoadRequestError("https: certPEM and keyPEM go together: a client certificate and its key, PEM")
        try:
            tls_secret("-", "client", cert, key, "https", names=("certPEM", "keyPEM"))
        except SecretError as exc:
            raise LoadRequestError(str(exc)) from None
        out.update(certPEM=cert, keyPEM=key)
    return out


def _amounts(body: dict[str, Any]) -> dict[str, Any]:
    """How much and how: connections, requests or duration, qps, headers, the method."""
    connections = body.get("connections", 4)
    if not isinstance(connections, int) or not 1 <= connections <= MAX_CONNECTIONS:
        raise LoadRequestError(f"connections: expected 1 to {MAX_CONNECTIONS}")
    requests, duration = body.get("requests"), body.get("duration")
    if requests is not None and (not isinstance(requests, int) or not 1 <= requests <= MAX_REQUESTS):
        raise LoadRequestError(f"requests: expected 1 to {MAX_REQUESTS}")
    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration(str(duration))
        except InvalidDuration as exc:
            raise LoadRequestError(f"duration: {exc}") from None
    if requests is None and seconds is None:
        requests = 100
    if (seconds or 0) > MAX_SECONDS:
        raise LoadRequestError(f"duration: at most {MAX_SECONDS:g}s in one call")
    qps = body.get("qps", 0)
    if not isinstance(qps, (int, float)) or qps < 0:
        raise LoadRequestError("qps: expected a number of requests per second, 0 for as fast as answered")
    headers = body.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise LoadRequestError("headers: expected an object of header names to values")
    method = body.get("method", "GET")
    if method not in METHODS:
        raise LoadRequestError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    return {"connections": connections, "requests": requests, "seconds": seconds, "qps": float(qps), "headers": headers,
            "method": method}


def parse_from(body: Any) -> dict[str, Any]:
    """A load sent from a workload's sidecar, as its app would send it (``meshdojo load --from``
    on a cluster): ``{"from": {"namespace": NS, "pod": NAME}, "url": "http://emoji.emojivoto:8080/api/list", ...}``."""
    if not isinstance(body, dict):
        raise LoadRequestError('expected {"from": {"namespace": NS, "pod": NAME}, "url": "http://...", ...}')
    source = body.get("from")
    if not isinstance(source, dict) or not isinstance(source.get("namespace"), str) or not isinstance(source.get("pod"), str):
        raise LoadRequestError("from: expected {\"namespace\": NS, \"pod\": NAME}, the pod whose sidecar sends")
    url = body.get("url")
    if not isinstance(url, str) or not url.lower().startswith("http://") or len(url) > 2000 or any(c in url for c in " \r\n"):
        raise LoadRequestError("url: expected an absolute http:// URL, as the app would ask its sidecar for it "
                               "(e.g. http://emoji.emojivoto:8080/api/list)")
    return {"namespace": source["namespace"], "pod": source["pod"], "url": url, **_amounts(body)}
