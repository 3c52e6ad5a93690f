"""What a request head must be before the proxy forwards it: RFC 9110/9112's rules that the
parser (llhttp) leaves to us. Pure functions of the parsed head; each refusal names the rule
and carries the status RFC 9112 asks for.

    505  a version other than HTTP/1.0 and HTTP/1.1 (HTTP/0.9 has no headers; HTTP/2 is not spoken here)
    501  a protocol switch (Upgrade, CONNECT), or a transfer coding other than chunked
    400  Transfer-Encoding in which chunked is not the last coding, or that repeats it;
         Transfer-Encoding with Content-Length; HTTP/1.1 without exactly one valid Host;
         an invalid Host; a target that is not origin-, absolute- or (for OPTIONS) asterisk-form
    417  an Expect other than 100-continue
"""

from __future__ import annotations

import re

from proxy.http1 import Headers, ProtocolViolation, RequestHead

# RFC 3986 host (reg-name, IPv4, [IPv6]) and an optional port
_HOST = re.compile(rb"^(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?$")
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # in a field value: controls other than HTAB


def transfer_codings(headers: Headers) -> list[bytes]:
    """Every coding named by the Transfer-Encoding fields, in order, lower-cased."""
    codings: list[bytes] = []
    for name, value in headers:
        if name == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
    return codings


def valid_host(value: bytes) -> bool:
    return bool(value) and _HOST.match(value) is not None and (b":" not in value.rsplit(b"]", 1)[-1]
                                                                or value.rsplit(b":", 1)[1].isdigit())


def check_request_head(head: RequestHead) -> ProtocolViolation | None:
    """None if ``head`` may be forwarded; else the refusal to send instead."""
    if head.version not in ("1.1", "1.0"):
        if head.version == "0.9":
            return ProtocolViolation("the request line has no HTTP version (HTTP/0.9 is not supported)", 400)
        return ProtocolViolation(f"HTTP/{head.version} is not supported here: speak HTTP/1.1", 505)
    upgrade = head.header(b"upgrade")
    if head.method == "CONNECT" or upgrade is not None:
        what = "CONNECT" if head.method == "CONNECT" else f"Upgrade: {upgrade.decode('latin-1')[:40]}"
        return ProtocolViolation(f"protocol switches ({what}) are not supported by meshdojo's proxy", 501)
    codings = transfer_codings(head.headers)
    if codings:
        unknown = [c for c in codings if c != b"chunked"]
        if unknown:
            return ProtocolViolation(f"transfer coding {unknown[0].decode('latin-1')[:40]!r} is not supported (only chunked)", 501)
        if len(codings) > 1:
            return ProtocolViolation("Transfer-Encoding names chunked more than once", 400)
        if head.header(b"content-length") is not None:
            return ProtocolViolation("a request must not carry both Transfer-Encoding and Content-Length", 400)
    hosts = [v for n, v in head.headers if n == b"host"]
    if head.version == "1.1" and len(hosts) != 1:
        return ProtocolViolation("an HTTP/1.1 request needs exactly one Host header" + (f" (it has {len(hosts)})" if hosts else ""), 400)
    if len(hosts) > 1 or (hosts and not valid_host(hosts[0])):
        return ProtocolViolation(f"invalid Host header {hosts[0][:60]!r}" if len(hosts) == 1 else "more than one Host header", 400)
    target = head.target
    if not (target.startswith("/") or target.lower().startswith(("http://", "https://")) or (target == "*" and head.method == "OPTIONS")):
        return ProtocolViolation(f"request target {target[:60]!r} is not a path or an absolute http:// URI", 400)
    for name, value in head.headers:
        if not _TOKEN.match(name):
            return ProtocolViolation(f"header name {name[:40]!r} is not a token", 400)
        if _CONTROL.search(value) is not None:
            return ProtocolViolation(f"header {name.decode('latin-1')[:40]} holds a control character", 400)
    expect = head.header(b"expect")
    if expect is not None and expect.lower() != b"100-continue":
        return ProtocolViolation(f"Expect: {expect.decode('latin-1')[:40]} cannot be met (only 100-continue)", 417)
    return None


def authority_of(target: str) -> str | None:
    """The authority of an absolute-form target (RFC 9112 §3.2.2: it replaces any Host)."""
    lowered = target.lower()
    for scheme in ("http://", "https://"):
        if lowered.startswith(scheme):
            rest = target[len(scheme):]
            end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
            return rest[:end]
    return None
