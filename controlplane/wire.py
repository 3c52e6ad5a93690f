"""What an eavesdropper sees: TLS records and handshake fields in captured bytes, and hex dumps.

Pure functions over the bytes a relay captured (see :mod:`controlplane.relay`). In TLS 1.3
only the ClientHello and ServerHello travel in the clear; the certificates (and so the
identities) are encrypted, which is one of the lessons ``meshdojo wire`` teaches.
"""

from __future__ import annotations

from dataclasses import dataclass

RECORD_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
CIPHER_SUITES = {
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384", 0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384", 0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
}
VERSIONS = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS = 0x0000, 0x0010, 0x002B


@dataclass(frozen=True)
class Record:
    type: str
    version: str
    length: int
    offset: int  # where its header starts in the captured bytes


def records(data: bytes) -> list[Record] | None:
    """The TLS records at the start of ``data``; None if it does not look like TLS at all."""
    found: list[Record] = []
    offset = 0
    while offset + 5 <= len(data):
        kind, major, minor, length = data[offset], data[offset + 1], data[offset + 2], int.from_bytes(data[offset + 3:offset + 5])
        if kind not in RECORD_TYPES or major != 3 or minor > 4:
            return found or None
        found.append(Record(RECORD_TYPES[kind], VERSIONS.get(0x0300 | minor, f"3.{minor}"), length, offset))
        offset += 5 + length
    return found or None


def _hello_fields(data: bytes) -> dict[str, object]:
    """Fields of the ClientHello or ServerHello that starts ``data`` (a handshake record)."""
    if len(data) < 9 or data[0] != 22 or data[5] not in (1, 2):
        return {}
    is_client = data[5] == 1
    body = data[9:]
    fields: dict[str, object] = {}
    try:
        at = 2 + 32  # legacy_version, random
        session_len = body[at]
        at += 1 + session_len
        if is_client:
            suites_len = int.from_bytes(body[at:at + 2])
            suites = [int.from_bytes(body[i:i + 2]) for i in range(at + 2, at + 2 + suites_len, 2)]
            fields["offered_ciphers"] = [CIPHER_SUITES.get(s, f"0x{s:04x}") for s in suites if s in CIPHER_SUITES]
            at += 2 + suites_len
            at += 1 + body[at]  # compression methods
        else:
            suite = int.from_bytes(body[at:at + 2])
            fields["cipher"] = CIPHER_SUITES.get(suite, f"0x{suite:04x}")
            at += 3  # cipher suite, compression method
        end = at + 2 + int.from_bytes(body[at:at + 2])
        at += 2
        while at + 4 <= min(end, len(body)):
            ext, length = int.from_bytes(body[at:at + 2]), int.from_bytes(body[at + 2:at + 4])
            value = body[at + 4:at + 4 + length]
            if ext == EXT_SUPPORTED_VERSIONS and not is_client and len(value) >= 2:
                fields["version"] = VERSIONS.get(int.from_bytes(value[:2]), "?")
            elif ext == EXT_SERVER_NAME and is_client and len(value) > 5:
                fields["server_name"] = value[5:].decode("ascii", "replace")
            elif ext == EXT_ALPN and is_client and len(value) > 3:
                fields["alpn"] = value[3:3 + value[2]].decode("ascii", "replace")
            at += 4 + length
    except IndexError:  # captured bytes ended inside the hello: report what was read
        pass
    if not is_client and "version" not in fields:
        fields["version"] = VERSIONS.get(int.from_bytes(body[0:2]), "?") if len(body) >= 2 else "?"
    return fields


def handshake_summary(client_bytes: bytes, server_bytes: bytes) -> dict[str, object] | None:
    """TLS version, cipher and what else the hellos show in the clear; None for plaintext."""
    if records(client_bytes) is None:
        return None
    client, server = _hello_fields(client_bytes), _hello_fields(server_bytes)
    return {"version": server.get("version"), "cipher": server.get("cipher"), "server_name": client.get("server_name"),
            "alpn": client.get("alpn"), "offered_ciphers": client.get("offered_ciphers", []),
            "certificates_visible": server.get("version") != "TLS 1.3"}


def first_application_data(data: bytes) -> bytes:
    """From the first application_data record on (what carries the HTTP once encrypted), or
    the bytes as they are when they are not TLS."""
    found = records(data)
    if found is None:
        return data
    for record in found:
        if record.type == "application_data":
            return data[record.offset:]
    return data[found[-1].offset:]


def hexdump(data: bytes, width: int = 16, limit: int = 128) -> list[str]:
    """``0000  17 03 03 00 35 ...  |....5|`` lines, as ``xxd``/``hexdump -C`` show them."""
    lines = []
    for start in range(0, min(len(data), limit), width):
        chunk = data[start:start + width]
        hexes = " ".join(f"{b:02x}" for b in chunk).ljust(width * 3 - 1)
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:04x}  {hexes}  |{printable}|")
    return lines


def readable_http(data: bytes) -> bool:
    """Does this look like an HTTP/1 request or response an eavesdropper could read?"""
    return data[:16].split(b" ", 1)[0] in (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"PATCH", b"OPTIONS", b"HTTP/1.1", b"HTTP/1.0")
