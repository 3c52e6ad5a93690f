"""An ingress gateway's TLS port: HTTPS listeners of Gateway API, TLS terminated here.

The control plane streams the certificates, keys and client CAs of the Secrets this namespace's
Gateways name (``GET /v1/gateway/credentials``, to the gateway's identity only — as Istio's
gateways get theirs by SDS). Each connection, before any handshake:

1. the server name its ClientHello asks for is read without consuming it (proxy/clienthello.py,
   as Envoy's tls_inspector does);
2. that name picks the HTTPS listener, as Gateway API matches hosts (controlplane/gatewayapi.py),
   and the listener picks a whole TLS context: its Secret's certificate and, for Istio's
   ``tls-terminate-mode: MUTUAL`` (or ``OPTIONAL_MUTUAL``), the Secret's ca.crt to check the
   client's certificate against. No listener for the name, or nothing to serve it with: a TLS
   alert (``unrecognized_name``) and the connection ends;
3. the handshake, then the gateway's one request path (proxy/outbound.py), matched against the
   routes attached to HTTPS listeners; the backend is told who the client's certificate says it
   is (``x-forwarded-client-cert``, as Envoy tells it).

Every refusal is counted (``gateway_tls_refused_total{reason}``) and logged once per name and
reason, so a learner sees why a client got no page.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.gatewayapi import TlsListener, listener_for
from controlplane.protocol import HEARTBEAT_SECONDS
from controlplane.sslcontext import load_chain
from proxy import clienthello
from proxy.acceptor import Acceptor, readable
from proxy.cpclient import ControlPlaneClient, ControlPlaneRefused, follow_snapshots
from proxy.identity import WorkloadIdentity
from proxy.tasks import TaskSet

log = logging.getLogger("meshdojo.proxy.gatewaytls")
SAID_AT_MOST = 64  # distinct refusals logged, so a scan cannot flood the log
VERIFY = {"SIMPLE": ssl.CERT_NONE, "MUTUAL": ssl.CERT_REQUIRED, "OPTIONAL_MUTUAL": ssl.CERT_OPTIONAL}
# why a handshake was refused: the label of gateway_tls_refused_total
UNKNOWN_NAME, NO_SECRET, NO_CLIENT_CA = "unknown_server_name", "secret_missing", "no_client_ca"
NO_CLIENT_CERT, UNTRUSTED_CLIENT_CERT = "no_client_certificate", "client_certificate_untrusted"
NOT_TLS, TIMEOUT, FAILED = "not_tls", "timeout", "handshake_failed"
PEEK_BACKOFF = (0.001, 0.02)  # a ClientHello split across segments: peek again after this (doubling), until the deadline


def public_context(verify: int = ssl.CERT_NONE) -> ssl.SSLContext:
    """A context as a public HTTPS endpoint serves: TLS 1.2 or newer, HTTP/1.1, the client's
    certificate asked for only by a mutual TLS listener."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.verify_mode = verify
    return ctx


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # a label of gateway_tls_refused_total
    message: str  # what the log says, once


def refused_handshake(exc: BaseException) -> str:
    """The reason label of a handshake that failed (``ssl`` names the cause in ``reason``)."""
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    reason = getattr(exc, "reason", None) or ""
    if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
        return NO_CLIENT_CERT
    if reason == "CERTIFICATE_VERIFY_FAILED":
        return UNTRUSTED_CLIENT_CERT
    return FAILED


SHORT_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
               "localityName": "L", "stateOrProvinceName": "ST", "domainComponent": "DC", "userId": "UID"}


def rfc4514(subject: tuple) -> str:
    """A subject as ``ssl``'s ``getpeercert()`` gives it, written as RFC 4514 writes names (the
    last RDN first, CN=...,O=...), as Envoy's x-forwarded-client-cert does."""
    def escaped(value: str) -> str:
        out = "".join(f"\\{c}" if c in ',+"\\<>;' else c for c in value)
        if out[:1] in ("#", " "):
            out = "\\" + out
        return out[:-1] + "\\ " if out.endswith(" ") else out

    return ",".join("+".join(f"{SHORT_NAMES.get(k, k)}={escaped(v)}" for k, v in rdn) for rdn in reversed(subject))


def client_certificate_header(der: bytes, decoded: dict) -> str:
    """Envoy's ``x-forwarded-client-cert`` for a verified client certificate (``der`` and
    ``getpeercert()``'s reading of it): its SHA-256, subject, and URI and DNS names — what Istio's
    gateways send the backend. Anything outside printable ASCII is percent-escaped: a
    certificate's subject cannot add a header line. (No ``cryptography`` here: the proxy stays small.)"""
    parts = [f"Hash={hashlib.sha256(der).hexdigest()}", f'Subject="{rfc4514(decoded.get("subject", ()))}"']
    names = decoded.get("subjectAltName", ())
    parts += [f"URI={value}" for kind, value in names if kind == "URI"]
    parts += [f"DNS={value}" for kind, value in names if kind == "DNS"]
    return "".join(c if " " <= c <= "~" else "".join(f"%{b:02X}" for b in c.encode()) for c in ";".join(parts))  # one safe header line


class GatewayCertificates:
    """The certificates this gateway serves: a TLS context per (Secret, terminate mode), and the
    choice of one for a server name."""

    def __init__(self, client: ControlPlaneClient, identity: WorkloadIdentity, listeners: Callable[[], tuple[TlsListener, ...]],
                 rng: random.Random | None = None) -> None:
        self._client = client
        self._identity = identity
        self._listeners = listeners
        self._rng = rng or random.Random()
        self.contexts: dict[tuple[str, str], ssl.SSLContext] = {}  # (Secret name, mode) -> a context serving it
        self.loaded: dict[str, bool] = {}  # Secret name -> whether it has a client CA (ca.crt)
        self._said: set[tuple[str, str]] = set()

    def say(self, reason: str, server_name: str | None, message: str) -> None:
        """Log a refusal once per reason and name (until the certificates change), at most SAID_AT_MOST."""
        key = (reason, server_name or "")
        if key not in self._said and len(self._said) < SAID_AT_MOST:
            self._said.add(key)
            log.warning("%s", message)

    def choose(self, server_name: str | None) -> ssl.SSLContext | Refusal:
        """The context a ClientHello for ``server_name`` is answered with, or why none."""
        listener = listener_for(server_name, self._listeners())
        name = server_name or "(no server name)"
        if listener is None:
            return Refusal(UNKNOWN_NAME, f"TLS handshake for {name} refused: no HTTPS listener of this namespace's Gateways "
                                         "takes that name")
        chosen = self.contexts.get((listener.secret, listener.mode))
        if chosen is not None:
            return chosen
        if listener.secret not in self.loaded:
            return Refusal(NO_SECRET, f"TLS handshake for {name} refused: Secret {listener.secret}, which "
                                      f"{_named_by(listener)} names, is not there (meshdojo create secret tls {listener.secret} "
                                      "--cert FILE --key FILE)")
        return Refusal(NO_CLIENT_CA, f"TLS handshake for {name} refused: {_named_by(listener)} is "
                                     f"{listener.mode}, and Secret {listener.secret} has no ca.crt to check client "
                                     "certificates against (meshdojo create secret generic ... --from-file=ca.crt=FILE)")

    def mode_for(self, server_name: str | None) -> str:
        listener = listener_for(server_name, self._listeners())
        return listener.mode if listener is not None else "SIMPLE"

    def apply(self, certificates: dict[str, dict[str, str]]) -> None:
        contexts, loaded = {}, {}
        for name, item in certificates.items():
            ca = item.get("caPEM")
            try:
                for mode, verify in VERIFY.items():
                    if verify != ssl.CERT_NONE and not ca:
                        continue  # a mutual TLS listener on this Secret is refused: nothing to check clients against
                    ctx = public_context(verify)
                    if verify != ssl.CERT_NONE:
                        ctx.load_verify_locations(cadata=ca)
                    load_chain(ctx, item["certificateChainPEM"], item["privateKeyPEM"])
                    contexts[(name, mode)] = ctx
            except (ssl.SSLError, KeyError, TypeError) as exc:  # the control plane checked them; be safe anyway
                log.warning("cannot serve Secret %s: %s", name, exc)
                contexts = {k: v for k, v in contexts.items() if k[0] != name}
                continue
            loaded[name] = bool(ca)
        self.contexts, self.loaded = contexts, loaded
        self._said.clear()  # say again what is still refused
        log.info("TLS certificates: %s", ", ".join(f"{n}{' (with ca.crt)' if ca else ''}" for n, ca in sorted(loaded.items()))
                 or "none")

    async def run(self) -> None:
        def lost(exc: Exception) -> None:  # keep the certificates; watch again
            if isinstance(exc, ControlPlaneRefused):
                log.warning("TLS certificates refused: %s", exc)
            else:
                log.debug("TLS certificates watch lost (%s); keeping %d", exc, len(self.loaded))

        await follow_snapshots(self._client, "/v1/gateway/credentials", lambda: self._identity.client_ctx,
                               lambda event: self.apply(event.get("certificates") or {}), lost, self._rng, 3 * HEARTBEAT_SECONDS)


class GatewayTlsListener:
    """The TLS port: reads each client's server name, picks its context, and hands the
    connection, once its handshake succeeds, to ``protocol`` (the gateway's HTTP serving)."""

    def __init__(self, certificates: GatewayCertificates, protocol: Callable[[], asyncio.Protocol],
                 count: Callable[[str], None], tasks: TaskSet, handshake_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._certificates = certificates
        self._protocol = protocol
        self._count = count
        self._timeout = handshake_timeout
        self._clock = clock
        self._acceptor = Acceptor(self._serve, tasks, "gateway-tls")

    def listen(self, host: str, port: int) -> int:
        return self._acceptor.listen(host, port)

    def close(self) -> None:
        self._acceptor.close()

    async def _serve(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        deadline = self._clock() + self._timeout
        try:
            server_name = await _peek_server_name(loop, sock, deadline, self._clock)
        except (TimeoutError, OSError, clienthello.NotClientHello) as exc:
            self._refuse(sock, TIMEOUT if isinstance(exc, TimeoutError) else NOT_TLS, None, None)
            return
        chosen = self._certificates.choose(server_name)
        if isinstance(chosen, Refusal):
            self._refuse(sock, chosen.reason, server_name, chosen.message)
            return
        try:
            await loop.connect_accepted_socket(self._protocol, sock, ssl=chosen,
                                               ssl_handshake_timeout=max(deadline - self._clock(), 0.1))
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            reason = refused_handshake(exc)
            mode = self._certificates.mode_for(server_name)
            why = {NO_CLIENT_CERT: f"the client presented no certificate, which this {mode} listener requires",
                   UNTRUSTED_CLIENT_CERT: f"the client's certificate is not signed by the listener's ca.crt ({mode})",
                   TIMEOUT: "the client did not finish it in time"}.get(reason, getattr(exc, "reason", None) or type(exc).__name__)
            self._refuse(sock, reason, server_name, f"TLS handshake for {server_name or '(no server name)'} refused: {why}")

    def _refuse(self, sock: socket.socket, reason: str, server_name: str | None, message: str | None) -> None:
        # said and counted first: whoever sees the connection end can read why (the log, the metric) at once
        if message is not None:
            self._certificates.say(reason, server_name, message)
        self._count(reason)
        if reason in (UNKNOWN_NAME, NO_SECRET, NO_CLIENT_CA):  # before any handshake: say why in TLS's own words
            try:
                sock.send(clienthello.alert(clienthello.UNRECOGNIZED_NAME))
            except OSError:
                pass
        sock.close()


async def _peek_server_name(loop: asyncio.AbstractEventLoop, sock: socket.socket, deadline: float,
                            clock: Callable[[], float]) -> str | None:
    """The ClientHello's server name, the bytes left in the socket for the handshake. Waits for
    it to arrive whole; a hello split across segments is peeked again after a short pause (the
    socket stays readable while peeked bytes wait, so readiness cannot say more came)."""
    await readable(loop, sock, deadline - clock())
    pause = PEEK_BACKOFF[0]
    while True:
        data = sock.recv(clienthello.MAX_HELLO + 4 * clienthello.RECORD_HEADER, socket.MSG_PEEK)
        if not data:
            raise OSError("closed before its ClientHello")
        found = clienthello.server_name(data)
        if not isinstance(found, clienthello.NeedMore):
            return found
        if clock() >= deadline:
            raise TimeoutError
        await asyncio.sleep(pause)
        pause = min(pause * 2, PEEK_BACKOFF[1])


def _named_by(listener: TlsListener) -> str:
    """What names a TLS listener's Secret, in the learner's words."""
    if listener.parent_kind == "Ingress":
        return f"Ingress {listener.gateway}'s tls"
    return f"a listener of Gateway {listener.gateway}"
