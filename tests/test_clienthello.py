"""The server name a ClientHello asks for, read before the handshake (pure): from real
ClientHellos that Python's own TLS client writes, whole, cut short, split across records, and
from bytes that are no ClientHello at all."""

from __future__ import annotations

import ssl

import pytest

from proxy.clienthello import UNRECOGNIZED_NAME, NeedMore, NotClientHello, alert, server_name


def client_hello(host: str | None) -> bytes:
    """What a TLS client sends first, written into memory (no socket)."""
    ctx = ssl.create_default_context()
    if host is None:
        ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=host)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_the_server_name_of_a_real_client_hello():
    hello = client_hello("Bookinfo.Example.com")
    assert server_name(hello) == "bookinfo.example.com"  # as DNS compares names
    assert server_name(hello + b"more bytes the handshake reads later") == "bookinfo.example.com"
    assert server_name(client_hello(None)) is None  # a client that sends no name


def test_a_client_hello_cut_short_asks_for_more_and_never_reads_past_what_came():
    hello = client_hello("bookinfo.example.com")
    for cut in (0, 1, 4, 5, 6, 40, len(hello) - 1):
        found = server_name(hello[:cut])
        assert isinstance(found, NeedMore) and cut < found.at_least <= len(hello), (cut, found)


def test_a_client_hello_split_across_records_is_put_back_together():
    hello = client_hello("httpbin.example.com")
    body = hello[5:]
    split = b"".join(bytes((0x16, 3, 1)) + len(part).to_bytes(2, "big") + part for part in (body[:30], body[30:100], body[100:]))
    assert server_name(split) == "httpbin.example.com"
    assert isinstance(server_name(split[:60]), NeedMore)


def test_bytes_that_are_no_client_hello_are_refused():
    hello = client_hello("a.example.com")
    for junk in (b"GET / HTTP/1.1\r\n\r\n", bytes((0x16, 3, 3, 0, 0)), bytes((0x16, 3, 3, 0, 4, 2, 0, 0, 0)),  # a ServerHello
                 hello[:5] + b"\x01\x00\x00\x05" + b"\x03\x03" + b"\x00" * (len(hello) - 11)):  # lengths that lie
        with pytest.raises(NotClientHello):
            server_name(junk)


def test_an_alert_before_the_handshake_is_a_plain_fatal_record():
    assert alert(UNRECOGNIZED_NAME) == bytes((0x15, 3, 3, 0, 2, 2, 112))


def test_mutated_client_hellos_are_read_or_refused_never_anything_else():
    """The TLS port reads this from anyone who connects: whatever the bytes, the answer is a
    name, None, NeedMore or NotClientHello — never another exception, never a read past the end."""
    import random

    rng = random.Random(20261129)
    hellos = [client_hello("bookinfo.example.com"), client_hello(None)]
    for _ in range(3000):
        data = bytearray(rng.choice(hellos))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.6:
                data[at] = rng.randrange(256)
            elif choice < 0.8:
                del data[at:at + rng.randint(1, 40)]
            else:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        try:
            found = server_name(bytes(data))
        except NotClientHello:
            continue
        assert found is None or isinstance(found, (str, NeedMore)), found
        if isinstance(found, NeedMore):  # more than came: the listener waits for it rather than reading the same bytes again
            assert found.at_least > len(data), (found, len(data))
        elif found is not None:
            assert found.isascii() and found == found.lower(), found
