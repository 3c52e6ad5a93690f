"""The server name (SNI) a TLS client asks for, read from its ClientHello before any handshake —
what Envoy's ``tls_inspector`` does so a listener can pick its filter chain, and what lets the
gateway choose a whole TLS context per connection (with its own client-certificate checks,
which OpenSSL does not take from a context swapped in later).

Pure: bytes in (what ``recv(MSG_PEEK)`` shows), an answer out. Records and extensions are
walked by their lengths, never past them; anything malformed is :class:`NotClientHello`.
"""

from __future__ import annotations

from dataclasses import dataclass

HANDSHAKE_RECORD = 0x16
CLIENT_HELLO = 0x01
SERVER_NAME_EXTENSION = 0x0000
HOST_NAME = 0x00
RECORD_HEADER = 5
MAX_HELLO = 64 * 1024  # a ClientHello longer than this is refused (the largest real ones, with post-quantum shares, are ~2 KiB)

# TLS alerts (RFC 8446 6.2), sent in the clear before any handshake
UNRECOGNIZED_NAME = 112
HANDSHAKE_FAILURE = 40
INTERNAL_ERROR = 80


class NotClientHello(ValueError):
    """The bytes are not the start of a TLS ClientHello."""


@dataclass(frozen=True, slots=True)
class NeedMore:
    """The ClientHello is not complete yet: peek again once ``at_least`` bytes have arrived."""

    at_least: int


def server_name(data: bytes) -> str | None | NeedMore:
    """The host name a ClientHello at the start of ``data`` asks for (lower case), None when it
    sends none, or :class:`NeedMore`. Raises :class:`NotClientHello`."""
    hello, wanted = _handshake_message(data)
    if hello is None:
        return NeedMore(wanted)
    return _sni(hello)


def alert(description: int) -> bytes:
    """A fatal TLS alert record, as a server sends it before the handshake has keys."""
    return bytes((0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description))


def _handshake_message(data: bytes) -> tuple[bytes | None, int]:
    """The first handshake message, reassembled from as many records as it spans, or (None, the
    bytes needed before trying again)."""
    payload = b""
    at = 0
    while True:
        if len(data) < at + RECORD_HEADER:
            return None, at + RECORD_HEADER
        kind, major, length = data[at], data[at + 1], int.from_bytes(data[at + 3:at + 5], "big")
        if kind != HANDSHAKE_RECORD or major != 3 or length == 0 or length > 16384 + 2048:
            raise NotClientHello("not a TLS handshake record")
        if len(data) < at + RECORD_HEADER + length:
            return None, at + RECORD_HEADER + length
        payload += data[at + RECORD_HEADER:at + RECORD_HEADER + length]
        at += RECORD_HEADER + length
        if payload[0] != CLIENT_HELLO:
            raise NotClientHello("the first handshake message is not a ClientHello")
        if len(payload) >= 4:
            size = int.from_bytes(payload[1:4], "big")
            if size > MAX_HELLO:
                raise NotClientHello("a ClientHello too long")
            if len(payload) >= 4 + size:
                return payload[4:4 + size], 0


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise NotClientHello("a ClientHello cut short")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def number(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.number(length_bytes))


def _sni(hello: bytes) -> str | None:
    r = _Reader(hello)
    r.take(2 + 32)  # legacy_version, random
    r.vector(1)  # legacy_session_id
    r.vector(2)  # cipher_suites
    r.vector(1)  # legacy_compression_methods
    if r.at == len(hello):
        return None  # no extensions at all (an old client)
    extensions = _Reader(r.vector(2))
    while extensions.at < len(extensions.data):
        kind, body = extensions.number(2), extensions.vector(2)
        if kind != SERVER_NAME_EXTENSION:
            continue
        names = _Reader(_Reader(body).vector(2))
        while names.at < len(names.data):
            name_type, name = names.number(1), names.vector(2)
            if name_type == HOST_NAME:
                try:
                    return name.decode("ascii").lower().rstrip(".")
                except UnicodeDecodeError:
                    raise NotClientHello("a server name that is not ASCII") from None
        return None
    return None
