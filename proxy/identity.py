"""This workload's identity: a key made in memory, a certificate from the control plane,
and the TLS contexts built from them, renewed at about 70 % of the certificate's lifetime.

The key never touches persistent storage (see :func:`controlplane.sslcontext.load_chain`).
Rotation swaps in new contexts for new connections; connections already open keep theirs, so
no request, in flight or new, is dropped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context, server_context
from proxy.cpclient import ControlPlaneClient, ControlPlaneError, ControlPlaneRefused
from proxy.keygen import key_and_csr
from proxy.metrics import IdentityGauges

log = logging.getLogger("meshdojo.proxy.identity")
RENEW_AT = 0.7


@dataclass(frozen=True)
class Certificate:
    chain_pem: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime


def renewal_delay(cert: Certificate, now: dt.datetime, rotate_every: float | None, rng: random.Random) -> float:
    """Seconds until renewal: ~70 % into the validity (a little jitter so a fleet spreads out)."""
    lifetime = (cert.not_after - cert.not_before).total_seconds()
    at = cert.not_before + dt.timedelta(seconds=lifetime * RENEW_AT * (1 - 0.05 * rng.random()))
    delay = (at - now).total_seconds()
    if rotate_every is not None:
        delay = min(delay, rotate_every)
    return max(delay, 0.0)


class WorkloadIdentity:
    def __init__(self, identity: SpiffeId, anchor_pem: str, client: ControlPlaneClient, token: str | None,
                 gauges: IdentityGauges, rotate_every: float | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 rng: random.Random | None = None,
                 keygen: Callable[[str], Awaitable[tuple[str, str]]] = key_and_csr) -> None:
        self.identity = identity
        self.anchor_pem = anchor_pem
        self._client = client
        self._token = token
        self._gauges = gauges
        self._rotate_every = rotate_every
        self._clock = clock
        self._rng = rng or random.Random()
        self._keygen = keygen  # (SPIFFE ID) -> (key PEM, CSR PEM): a child process, so cryptography is not resident here
        self.certificate: Certificate | None = None
        self.server_ctx: ssl.SSLContext | None = None
        self.client_ctx: ssl.SSLContext | None = None
        # before bootstrap: trust the anchor, present nothing (only used to reach the control plane)
        self.anonymous_ctx = client_context(anchor_pem)
        self.refreshes = 0
        self.tap_token: str | None = None  # the control plane's key to this proxy's tap (came with the certificate)
        self.changed = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.certificate is not None

    async def obtain(self) -> None:
        """One CSR round trip: with the current certificate if it is still valid, else the token."""
        try:
            key_pem, csr = await self._keygen(self.identity.uri)
        except (OSError, ValueError, KeyError, TimeoutError) as exc:  # KeygenError is an OSError; ValueError: bad JSON
            raise ControlPlaneError(f"could not make a key and CSR: {exc}") from exc
        now = self._clock()
        use_cert = self.certificate is not None and self.certificate.not_after > now and self.client_ctx is not None
        if use_cert:
            reply = await self._client.post_json("/v1/certify", {"csr": csr}, self.client_ctx)
        elif self._token:
            reply = await self._client.post_json("/v1/certify", {"csr": csr, "token": self._token}, self.anonymous_ctx)
        else:
            raise ControlPlaneRefused("no valid certificate and no bootstrap token: cannot obtain an identity", 401)
        cert = Certificate(
            chain_pem=reply["certificateChainPEM"],
            serial=reply["serial"],
            not_before=dt.datetime.fromisoformat(reply["notBefore"]),
            not_after=dt.datetime.fromisoformat(reply["notAfter"]),
        )
        # build both contexts before swapping either in: a failure leaves the old identity whole
        server_ctx = server_context(self.anchor_pem, cert.chain_pem, key_pem)
        client_ctx = client_context(self.anchor_pem, cert.chain_pem, key_pem)
        first = self.certificate is None
        self.certificate, self.server_ctx, self.client_ctx = cert, server_ctx, client_ctx
        self.tap_token = reply.get("tapToken") or self.tap_token
        if not first:
            self.refreshes += 1
        self._gauges.expiration = cert.not_after.timestamp()
        self._gauges.refreshes = self.refreshes
        self.changed.set()
        self.changed = asyncio.Event()
        log.info("identity %s: certificate serial %s valid until %s", self.identity.uri, cert.serial, cert.not_after.isoformat())

    async def bootstrap(self, deadline: float) -> None:
        """Obtain the first certificate, retrying while the control plane is unreachable."""
        delay = 0.05
        while True:
            try:
                await self.obtain()
                return
            except ControlPlaneRefused:
                raise
            except ControlPlaneError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("control plane not reachable yet (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def rotate_forever(self) -> None:
        """Renew before expiry; on failure keep the current certificate and retry with backoff."""
        failures = 0
        while True:
            assert self.certificate is not None
            if failures:
                delay = min(0.5 * 2**failures, 30.0) * (0.5 + self._rng.random())
            else:
                delay = renewal_delay(self.certificate, self._clock(), self._rotate_every, self._rng)
            await asyncio.sleep(delay)
            try:
                await self.obtain()
                failures = 0
            except ControlPlaneError as exc:
                failures += 1
                log.warning("certificate renewal failed (%s); keeping serial %s", exc, self.certificate.serial)
