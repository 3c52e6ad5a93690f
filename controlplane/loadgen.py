"""``meshdojo load``: a load generator in the manner of fortio and hey — a number of connections
(``-c``) sending requests back to back (or at ``--qps`` in all) for ``-n`` requests or ``-d``
seconds — through a workload's sidecar (so the requests carry its identity and its policies
apply) or through a demo's ingress gateway. It prints the latency histogram, quantiles and the
count per status code, as fortio does.

Measuring is :func:`run` (async, I/O); reading the numbers is :func:`summary` and
:func:`render` (pure).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

BUCKETS_MS = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000, math.inf)


@dataclass
class LoadResult:
    concurrency: int
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no response (connection error, timeout)
    errors: Counter[str] = field(default_factory=Counter)  # x-meshdojo-error codes, and client-side errors
    latencies_ms: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.statuses.values())


@dataclass(frozen=True)
class Target:
    url: str
    proxy: str | None  # the sidecar's outbound listener, as HTTP_PROXY would name it
    via: str  # for the learner: "web-0's sidecar" or "the emojivoto ingress gateway"
    server_name: str | None = None  # https: the name sent (SNI, and Host) and checked on the certificate
    cadata: str | None = None  # https: the CA trusted for it (PEM), as fortio's -cacert
    client: tuple[str, str] | None = None  # https: a client certificate and its key (PEM), for a MUTUAL listener (fortio's -cert, -key)


Send = Callable[[], Awaitable[tuple[int, str | None]]]  # one request: its status and x-meshdojo-error, or SendFailed


class SendFailed(Exception):
    """No response: the message names what went wrong (a connection error, a timeout)."""


async def run(target: Target, concurrency: int = 4, requests: int | None = None, duration: float | None = None,
              qps: float = 0.0, headers: dict[str, str] | None = None, timeout: float = 10.0,
              send: Send | None = None, method: str = "GET") -> LoadResult:
    """Send requests until ``requests`` are done or ``duration`` is over (one of them is needed).
    ``send``: how one request goes (default: over HTTP with aiohttp, to ``target``; a sidecar
    passes its own outbound stack, proxy.loadhere). ``method``: each request's, without a body
    (as curl -X and hey -m send one)."""
    if requests is None and duration is None:
        raise ValueError("say how much: -n REQUESTS or -d DURATION")
    if send is not None:
        return await _drive(send, concurrency, requests, duration, qps, timeout)
    import aiohttp  # only here: a sidecar that sends load never loads a web framework

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        tls: dict[str, Any] = {}
        if target.cadata is not None:  # to a gateway's HTTPS listener: its certificate checked for the name, by the CA given
            import ssl

            context = ssl.create_default_context(cadata=target.cadata)
            if target.client is not None:
                from controlplane.sslcontext import load_chain

                load_chain(context, *target.client)
            tls = {"ssl": context, "server_hostname": target.server_name}
            headers = {**(headers or {}), "Host": target.server_name or ""}

        async def over_http() -> tuple[int, str | None]:
            try:
                # a redirect is an answer to count (fortio's default), not a request to send elsewhere
                async with session.request(method, target.url, proxy=target.proxy, headers=headers or {}, allow_redirects=False,
                                           **tls) as rsp:
                    await rsp.read()
                    return rsp.status, rsp.headers.get("x-meshdojo-error")
            except aiohttp.ClientError as exc:
                raise SendFailed(tls_failure(exc) if target.cadata is not None else type(exc).__name__) from None

        return await _drive(over_http, concurrency, requests, duration, qps, timeout)


async def _drive(send: Send, concurrency: int, requests: int | None, duration: float | None, qps: float,
                 timeout: float) -> LoadResult:
    result = LoadResult(concurrency)
    issued = 0
    started = time.monotonic()
    stop_at = started + duration if duration is not None else math.inf

    async def worker() -> None:
        nonlocal issued
        while time.monotonic() < stop_at and (requests is None or issued < requests):
            issued += 1
            if qps > 0:  # paced: request k leaves at k/qps seconds
                await asyncio.sleep(max(started + (issued - 1) / qps - time.monotonic(), 0))
            await _one(send, timeout, result)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.monotonic() - started
    return result


async def _one(send: Send, timeout: float, result: LoadResult) -> None:
    began = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            status, code = await send()
    except (SendFailed, TimeoutError) as exc:
        result.statuses[0] += 1
        result.errors[str(exc) if isinstance(exc, SendFailed) else type(exc).__name__] += 1
        return
    result.statuses[status] += 1
    if code:
        result.errors[code] += 1
    result.latencies_ms.append((time.perf_counter() - began) * 1000)


def quantile(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, max(math.ceil(q * len(sorted_ms)) - 1, 0))]


def summary(result: LoadResult) -> dict[str, Any]:
    """The numbers, for ``-o json`` and for the text."""
    ordered = sorted(result.latencies_ms)
    histogram, previous = [], 0.0
    for bound in BUCKETS_MS:
        n = sum(1 for v in ordered if previous < v <= bound) if bound != math.inf else sum(1 for v in ordered if v > previous)
        if n:
            histogram.append({"from_ms": previous, "to_ms": None if bound == math.inf else bound, "count": n})
        previous = bound
    total = result.count
    return {
        "requests": total, "concurrency": result.concurrency, "seconds": round(result.elapsed, 3),
        "qps": round(total / result.elapsed, 1) if result.elapsed else 0.0,
        "codes": {str(code): {"count": n, "share": round(n / total, 4)} for code, n in sorted(result.statuses.items())},
        "errors": dict(result.errors),
        "latency_ms": {name: (round(v, 2) if (v := quantile(ordered, q)) is not None else None)
                       for name, q in (("p50", 0.5), ("p75", 0.75), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        "histogram": histogram,
    }


# what a failed request over TLS to a gateway means, for the learner: (error name, what to do)
TLS_FAILURES = {
    "tls_server_not_trusted": "the gateway's certificate is not signed by the --cacert CA (or not for that host name)",
    "tls_unrecognized_name": "the gateway has nothing to serve that name: no HTTPS listener for it, or its Secret is "
                             "missing (or lacks the ca.crt a MUTUAL listener needs) — meshdojo check says which",
    "tls_closed_after_handshake": "the gateway ended the connection after the handshake: a MUTUAL listener wants a client "
                                  "certificate its ca.crt signed (--cert and --key); the gateway's log says which",
}


def tls_failure(exc: BaseException) -> str:
    """The name a failed request over TLS is counted under: one of TLS_FAILURES where the cause
    is known (aiohttp wraps ssl's error; TLS 1.3 checks a client's certificate after the
    client's side of the handshake is done, so a refusal arrives as the connection closing),
    else the exception's type, as for plain HTTP."""
    cause = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc.__cause__
    reason = getattr(cause, "reason", None) or getattr(exc, "reason", None) or ""  # ssl's name for it, e.g. TLSV1_UNRECOGNIZED_NAME
    kind = type(exc).__name__  # (aiohttp is imported only where load is sent: named, not isinstance'd)
    if kind == "ClientConnectorCertificateError" or reason == "CERTIFICATE_VERIFY_FAILED":
        return "tls_server_not_trusted"
    if reason == "TLSV1_UNRECOGNIZED_NAME":
        return "tls_unrecognized_name"
    if kind in ("ServerDisconnectedError", "ClientOSError") or reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return "tls_closed_after_handshake"
    return type(exc).__name__


def render(numbers: dict[str, Any], target: Target, method: str = "GET") -> str:
    lines = [f"{numbers['requests']} {'' if method == 'GET' else method + ' '}requests to {target.url} via {target.via}: {numbers['concurrency']} connections, "
             f"{numbers['seconds']:.1f}s, {numbers['qps']} req/s"]
    lat = numbers["latency_ms"]
    if lat["p50"] is not None:
        lines.append("latency ms: " + ", ".join(f"{k} {v:.1f}" for k, v in lat.items()))
        lines.append("histogram (ms):")
        width = max(h["count"] for h in numbers["histogram"])
        for h in numbers["histogram"]:
            upper = "+" if h["to_ms"] is None else f"{h['to_ms']:g}"
            bar = "#" * max(1, round(30 * h["count"] / width))
            lines.append(f"  {h['from_ms']:>6g} - {upper:<6} {h['count']:>6}  {bar}")
    for code, c in numbers["codes"].items():
        label = "no response" if code == "0" else f"Code {code}"
        lines.append(f"{label} : {c['count']} ({c['share'] * 100:.1f} %)")
    if numbers["errors"]:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(numbers["errors"].items())))
        lines += [f"  {name}: {TLS_FAILURES[name]}" for name in sorted(numbers["errors"]) if name in TLS_FAILURES]
    return "\n".join(lines)
