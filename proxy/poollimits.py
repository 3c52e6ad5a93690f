"""Circuit breaking by connection-pool limits, as Istio's DestinationRule ``connectionPool``
does it in Envoy: per client proxy and destination service, at most ``maxConnections``
requests in flight (with HTTP/1.1 one request holds one connection), at most
``http1MaxPendingRequests`` waiting for one of them, and the next is answered ``503`` at once
— Envoy's *pending overflow* — instead of queueing without end. A slot is held until the
response body has been read (or the attempt failed), because until then the connection is busy.

The admission decision is :class:`Limiter`, pure but for the futures it hands waiters; the
layer wires it to the request and records what happened in its fate and metrics.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from controlplane.protocol import fqdn
from controlplane.resiliencespecs import BreakerSpec, PoolLimits
from proxy.errors import ProxyError
from proxy.exchange import Body, Handler, Layer, Request, Response
from proxy.metrics import ProxyMetrics
from proxy.policies import PolicyWatch


class PoolOverflow(ProxyError):
    status = 503
    code = "pool_overflow"


class Limiter:
    def __init__(self, limits: PoolLimits, subset: str | None = None) -> None:
        self.limits = limits
        self.subset = subset  # a DestinationRule subset's own pool (None: the Service's)
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def pending(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        """A slot now, or after waiting in the pending queue; PoolOverflow when that is full too."""
        if self.active < self.limits.max_connections and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.limits.max_pending:
            raise PoolOverflow(f"{self.active} requests in flight (maxConnections {self.limits.max_connections}) and "
                               f"{len(self._waiters)} waiting (http1MaxPendingRequests {self.limits.max_pending}): overflow")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # release() hands its slot over: active stays counted
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1


class Limiters:
    """One Limiter per destination service with a CircuitBreaker ``connectionPool``."""

    def __init__(self, policies: PolicyWatch) -> None:
        self._policies = policies
        self._limiters: dict[tuple[str, str], Limiter] = {}

    def get(self, namespace: str, service: str, subset: str | None = None) -> Limiter | None:
        """The pool of ``service``'s requests, or of those routed to ``subset`` if it has its own."""
        if "CircuitBreaker" not in self._policies.kinds:
            return None
        target = self._policies.breaker_target(namespace, service, subset)  # reviews, or reviews/v1
        found = self._policies.find("CircuitBreaker", namespace, target)
        spec: BreakerSpec | None = found[0].spec if found else None  # type: ignore[assignment]
        if spec is None or spec.pool is None:
            self._limiters.pop((namespace, target), None)
            return None
        current = self._limiters.get((namespace, target))
        if current is None or current.limits != spec.pool:
            current = self._limiters[(namespace, target)] = Limiter(spec.pool, subset if target != service else None)
        return current


class _ReleasingBody:
    """A response body that gives the pool slot back once it was read to the end or abandoned."""

    def __init__(self, body: Body, release) -> None:
        self._body, self._release = body, release
        self.length = body.length
        self.conn = getattr(body, "conn", None)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._body.chunks():
                yield chunk
        finally:
            self._release()

    def abandon(self) -> None:
        self._body.abandon()
        self._release()


def pool_limits(limiters: Limiters, metrics: ProxyMetrics) -> Layer:
    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            service = request.fate.backend or request.dst_service
            limiter = limiters.get(request.dst_namespace, service, request.fate.subset)
            if limiter is None:
                return await inner(request)
            try:
                await limiter.acquire()
            except PoolOverflow:
                request.fate.pool = (f"overflow: {limiter.active} in flight, {limiter.pending} pending (connectionPool of "
                                     f"{service}.{request.dst_namespace}{f' (subset {limiter.subset})' if limiter.subset else ''})")
                metrics.pool_overflow.labels(fqdn(service, request.dst_namespace)).inc()
                raise
            released = False

            def release() -> None:
                nonlocal released
                if not released:
                    released = True
                    limiter.release()

            request.max_requests_per_connection = limiter.limits.max_requests_per_connection
            try:
                response = await inner(request)
            except BaseException:
                release()
                raise
            response.body = _ReleasingBody(response.body, release)
            return response

        return handle

    return layer
