"""The intruder of ``meshdojo attack svc/NAME``: it tries each of the service's endpoints the way
an attacker inside the network could — in plaintext, and with a certificate from a CA the mesh
does not trust — and says what the current mTLS mode and policies did to it.

It runs in the control plane (``POST /v1/attack``): on a cluster only a pod reaches the pods, and
the control plane's is one, with no identity the sidecars would accept from it."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from dataclasses import dataclass

from controlplane import ca
from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context

REQUEST = b"GET / HTTP/1.1\r\nHost: intruder\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Outcome:
    attempt: str  # "plaintext" or "foreign-ca"
    verdict: str  # "refused", "let through", "denied", or "no tls" (nothing there checks certificates at all)
    detail: str
    lesson: str


def classify(attempt: str, answer: bytes | None, error: str | None, meshed: bool = True) -> Outcome:
    """What an attempt's answer means. Pure: the answer (or the error) in, the explanation out."""
    if not meshed:
        if attempt == "plaintext" and answer:
            return Outcome(attempt, "let through", answer.split(b"\r\n", 1)[0].decode("latin-1", "replace"),
                           "no sidecar: the app answers anyone who can reach it, and nobody knows who called")
        return Outcome(attempt, "no tls", "the app speaks no TLS: there is no certificate check to pass or fail",
                       "without a sidecar nothing checks identities — the plaintext attempt above is what gets in")
    if answer is None or answer == b"":
        why = error or ("the proxy closed the connection before any HTTP answer" if attempt == "plaintext"
                        else "the proxy ended the TLS session at once: it does not trust the certificate's CA")
        lesson = ("STRICT mTLS: without a certificate from this mesh's CA there is no connection at all"
                  if attempt == "plaintext" else
                  "the TLS handshake failed: the proxy only accepts client certificates chained to the mesh's trust anchor")
        return Outcome(attempt, "refused", why, lesson)
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    if b" 403 " in answer[:20]:
        policy = answer.split(b"denied by AuthorizationPolicy ", 1)[-1].split(b"\n", 1)[0].decode("latin-1") if b"denied by" in answer else "?"
        return Outcome(attempt, "denied", status_line, f"the connection was accepted, but AuthorizationPolicy {policy} denies it")
    return Outcome(attempt, "let through", status_line,
                   "PERMISSIVE mode (or no sidecar): plaintext is accepted and labelled tls=\"no_identity\" — "
                   "anyone on the network can call this service" if attempt == "plaintext" else "a foreign certificate was accepted!")


def _exchange(address: str, port: int, ctx: ssl.SSLContext | None, timeout: float = 5.0) -> tuple[bytes | None, str | None]:
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            if ctx is None:
                return _talk(raw), None
            with ctx.wrap_socket(raw) as tls:
                return _talk(tls), None
    except ssl.SSLError as exc:
        return None, f"TLS handshake failed: {exc.reason or exc}"
    except OSError as exc:
        return None, f"connection failed: {exc.strerror or exc}"


def _talk(sock: socket.socket) -> bytes:
    sock.sendall(REQUEST)
    data = b""
    try:
        while len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass  # refused with our request unread: the kernel answers with a reset
    return data


def foreign_context(anchor_pem: str) -> ssl.SSLContext:
    """A client certificate for a plausible identity, signed by a CA of the intruder's own."""
    now = dt.datetime.now(dt.UTC)
    rogue = ca.make_issuer(ca.make_trust_anchor(now), now)
    key = ca.new_key()
    me = SpiffeId("default", "intruder")
    leaf = ca.sign_workload(ca.make_csr(me, key), me, rogue, now)
    ctx = client_context(anchor_pem, ca.cert_pem(leaf) + ca.cert_pem(rogue.certificate), ca.key_pem(key))
    ctx.verify_mode = ssl.CERT_NONE  # the intruder does not care who the server is
    return ctx


def attack_endpoint(address: str, port: int, anchor_pem: str, meshed: bool = True) -> list[Outcome]:
    plain = _exchange(address, port, None)
    foreign = _exchange(address, port, foreign_context(anchor_pem))
    return [classify("plaintext", *plain, meshed=meshed), classify("foreign-ca", *foreign, meshed=meshed)]


def outcome_json(outcome: Outcome) -> dict[str, str]:
    return {"attempt": outcome.attempt, "verdict": outcome.verdict, "detail": outcome.detail, "lesson": outcome.lesson}
