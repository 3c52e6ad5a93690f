"""A mutation fuzzer for the proxy's HTTP/1.1 listeners, with h11 as the referee.

Valid requests (the seeds) are mutated with a seeded random source and sent, one case per
connection, to a listener: a sidecar's outbound port, a sidecar's inbound port (PERMISSIVE,
so plaintext is accepted) or an ingress gateway. Behind them a recording app parses what it
receives with h11 too. Each case ends in one outcome:

    answered        a request h11 accepts got a response
    rejected        a request h11 refuses got a 4xx from the proxy (or the connection closed)
    incomplete      h11 wants more bytes: no answer expected (the proxy times it out later)
    REACHED_APP     h11 refuses it, yet the app received it            (a violation)
    APP_GOT_GARBAGE the app could not parse what the proxy forwarded    (a violation)
    TWO_RESPONSES   more responses than requests                        (a violation)
    HANG            a complete request got no answer before the deadline (a violation)
    SERVER_ERROR    the proxy answered a malformed request with a 5xx   (a violation)

Run ``python -m tests.fuzzing --seconds 600`` (``make fuzz``) for a long run; the test suite
runs a short, fixed-seed one (tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

import h11

VIOLATIONS = ("REACHED_APP", "APP_GOT_GARBAGE", "TWO_RESPONSES", "HANG", "SERVER_ERROR")
ANSWER_DEADLINE = 3.0  # a complete request must be answered within this
QUIET = 0.25  # how long silence means "no (more) answer coming" for incomplete or refused input


# -- the seeds and their mutations ---------------------------------------------------------

def seeds(host: str, absolute: bool) -> list[bytes]:
    target = f"http://{host}" if absolute else ""
    h = host.encode()
    t = target.encode()
    return [
        b"GET " + t + b"/ HTTP/1.1\r\nHost: " + h + b"\r\n\r\n",
        b"GET " + t + b"/api/list?x=1 HTTP/1.1\r\nHost: " + h + b"\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
        b"POST " + t + b"/api/vote HTTP/1.1\r\nHost: " + h + b"\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        b"POST " + t + b"/api/vote HTTP/1.1\r\nHost: " + h + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HEAD " + t + b"/ HTTP/1.1\r\nHost: " + h + b"\r\n\r\n",
        b"GET " + t + b"/a HTTP/1.1\r\nHost: " + h + b"\r\n\r\nGET " + t + b"/b HTTP/1.1\r\nHost: " + h + b"\r\n\r\n",
        b"DELETE " + t + b"/x HTTP/1.1\r\nHost: " + h + b"\r\nConnection: close\r\n\r\n",
        b"PUT " + t + b"/y HTTP/1.1\r\nHost: " + h + b"\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
        b"GET " + t + b"/old HTTP/1.0\r\nHost: " + h + b"\r\n\r\n",
    ]


INTERESTING_LINES = [
    b"Transfer-Encoding: chunkedx", b"Transfer-Encoding: identity", b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, chunked", b"Content-Length: -1", b"Content-Length: 5, 6", b"Content-Length: 99999999999999999999",
    b"Content-Length: 1\r\nContent-Length: 2", b"Connection: Upgrade\r\nUpgrade: websocket", b"Upgrade: h2c", b"Host:", b"Host: a b",
    b"Host: x\r\nHost: y", b"Host: [::1", b"Host: \x01", b" folded", b"\tfolded: x", b"X-Bad\x00: y", b"X-Bad: \x7f", b": nameless",
    b"Expect: something", b"X-Long: " + b"A" * 9000, b"Connection: close", b"Connection: keep-alive, te",
]
INTERESTING_BYTES = [b"\r", b"\n", b"\r\n", b"\x00", b":", b" ", b"\t", b"\xff", b"chunked", b"0", b"-", b"9" * 12, b"\r\n\r\n"]
VERSIONS = [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"", b"HTTPS/1.1", b"HTTP/1.10", b"http/1.1"]
METHODS = [b"CONNECT", b"get", b"G\x00T", b"PRI", b"OPTIONS", b"TRACE", b"PATCH", b"M" * 40]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three structured or byte-level changes."""
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(_MUTATIONS)(data, rng)
    return data


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]


def _insert(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice(INTERESTING_BYTES) + data[i:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 2:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 8):]


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def _add_line(data: bytes, rng: random.Random) -> bytes:
    head, sep, body = data.partition(b"\r\n")
    return head + b"\r\n" + rng.choice(INTERESTING_LINES) + (sep or b"\r\n") + body


def _duplicate_line(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\r\n")
    if len(lines) < 3:
        return data
    i = rng.randrange(1, len(lines) - 1)
    return b"\r\n".join(lines[:i] + [lines[i]] * rng.randint(2, 150) + lines[i:])


def _version(data: bytes, rng: random.Random) -> bytes:
    line, sep, rest = data.partition(b"\r\n")
    parts = line.rsplit(b" ", 1)
    return (parts[0] + (b" " + v if (v := rng.choice(VERSIONS)) else b"")) + sep + rest if len(parts) == 2 else data


def _method(data: bytes, rng: random.Random) -> bytes:
    _, sep, rest = data.partition(b" ")
    return rng.choice(METHODS) + sep + rest if sep else data


def _chunk_size(data: bytes, rng: random.Random) -> bytes:
    return data.replace(b"\r\n5\r\n", b"\r\n" + rng.choice([b"zz", b"-1", b"ffffffffffffffffff", b"5;ext", b"5 ", b" 5", b"6"]) + b"\r\n", 1)


_MUTATIONS = [_flip, _insert, _delete, _truncate, _add_line, _add_line, _duplicate_line, _version, _method, _chunk_size]


# -- the referee -----------------------------------------------------------------------------

@dataclass
class Verdict:
    complete: int = 0  # requests h11 read completely before anything went wrong
    invalid: bool = False  # h11 refused something
    incomplete: bool = False  # h11 wants more bytes
    close_after: bool = False  # a request asked to close: what follows is never read
    methods: list[bytes] = field(default_factory=list)  # of the requests h11 read

    @property
    def attempts(self) -> int:
        return self.complete + (1 if self.invalid or self.incomplete else 0)


def referee(data: bytes) -> Verdict:
    """What a strict HTTP/1.1 server makes of ``data``. h11 refuses empty lines before a request
    line, which RFC 9112 §2.2 says a server SHOULD ignore (llhttp does): the referee ignores
    them too, and judges the rest with a fresh h11 connection per request."""
    verdict = Verdict()
    rest = data
    while True:
        rest = rest.lstrip(b"\r\n")
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        conn.receive_data(rest)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    verdict.incomplete = conn.their_state is not h11.IDLE or bool(conn.trailing_data[0])
                    return verdict
                if isinstance(event, h11.Request):
                    verdict.methods.append(event.method)
                    if event.method == b"CONNECT" or any(n == b"upgrade" for n, _ in event.headers):
                        verdict.invalid = True  # a protocol switch: meshdojo does not support one, it must never reach the app
                        return verdict
                if isinstance(event, h11.EndOfMessage):
                    verdict.complete += 1
                    conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                    conn.send(h11.EndOfMessage())
                    if conn.our_state is h11.MUST_CLOSE:
                        verdict.close_after = True
                        return verdict
                    rest = conn.trailing_data[0]
                    if not rest:
                        return verdict
                    break  # the next request, on a fresh connection object
                if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return verdict
        except h11.RemoteProtocolError:
            verdict.invalid = True
            return verdict


# -- the recording app -----------------------------------------------------------------------

class RecordingApp(asyncio.Protocol):
    """Parses what arrives with h11, answers each request ``200 ok``, counts what it got."""

    seen: Counter[str] = Counter()
    live: set[asyncio.BaseTransport] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        RecordingApp.live.add(transport)
        self.conn = h11.Connection(h11.SERVER)
        self.method = b""

    def connection_lost(self, exc: BaseException | None) -> None:
        RecordingApp.live.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        try:
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    return
                if isinstance(event, h11.Request):
                    self.method = event.method
                    if event.method == b"CONNECT" or any(n == b"upgrade" for n, _ in event.headers):
                        RecordingApp.seen["requests"] += 1  # a protocol switch reached the app: count it, hang up
                        self.transport.close()
                        return
                if isinstance(event, h11.EndOfMessage):
                    RecordingApp.seen["requests"] += 1
                    body = b"ok\n"
                    head = self.conn.send(h11.Response(status_code=200, headers=[("content-length", str(len(body))),
                                                                                 ("content-type", "text/plain")]))
                    data = b"" if self.method == b"HEAD" else self.conn.send(h11.Data(data=body))
                    self.transport.write(head + data + self.conn.send(h11.EndOfMessage()))
                    if self.conn.our_state is h11.MUST_CLOSE:
                        self.transport.close()
                        return
                    self.conn.start_next_cycle()
        except h11.RemoteProtocolError:
            RecordingApp.seen["garbage"] += 1
            self.transport.close()


async def start_recording_app() -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.get_running_loop().create_server(RecordingApp, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def stop_recording_app(server: asyncio.AbstractServer) -> None:
    server.close()
    for transport in list(RecordingApp.live):
        transport.close()
    await server.wait_closed()


# -- one case --------------------------------------------------------------------------------

@dataclass
class Result:
    outcome: str
    case: bytes
    detail: str = ""


async def run_case(port: int, data: bytes) -> Result:
    verdict = referee(data)
    before = Counter(RecordingApp.seen)
    responses, statuses, closed, detail = await _exchange(port, data, verdict)
    reached = RecordingApp.seen["requests"] - before["requests"]
    if RecordingApp.seen["garbage"] > before["garbage"]:
        return Result("APP_GOT_GARBAGE", data)
    if reached > verdict.complete:
        return Result("REACHED_APP", data, f"app got {reached}, h11 accepts {verdict.complete}; statuses {statuses}")
    if responses > max(verdict.attempts, 1):
        return Result("TWO_RESPONSES", data, f"{responses} responses to {verdict.attempts} requests; statuses {statuses}")
    if verdict.invalid:
        if any(s >= 500 and s not in (501, 505) for s in statuses[verdict.complete:]):  # 501/505: RFC 9112's "not supported"
            return Result("SERVER_ERROR", data, f"statuses {statuses}")
        return Result("rejected", data)
    if verdict.incomplete and responses >= verdict.complete:
        return Result("incomplete", data)
    wanted = verdict.complete if not verdict.close_after else verdict.complete
    if responses < wanted and not closed:
        return Result("HANG", data, f"{responses} of {wanted} answered; {detail}")
    return Result("answered" if responses else "rejected", data)


async def _exchange(port: int, data: bytes, verdict: Verdict) -> tuple[int, list[int], bool, str]:
    """Send ``data`` on a fresh connection; read responses until the expected ones are in, the
    proxy closes, or it stays quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    counter = ResponseCounter(verdict.methods)
    statuses = counter.statuses
    closed = False
    detail = ""
    try:
        writer.write(data)
        await writer.drain()
        deadline = time.monotonic() + ANSWER_DEADLINE
        expected = verdict.complete + (1 if verdict.invalid else 0)
        while True:
            complete_wanted = len(statuses) < verdict.complete
            wait = min(deadline - time.monotonic(), ANSWER_DEADLINE if complete_wanted else QUIET)
            if wait <= 0:
                detail = "deadline"
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), wait)
            except TimeoutError:
                if complete_wanted:
                    detail = "no answer"
                break
            except ConnectionError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            counter.feed(chunk)
            if len(statuses) >= expected + 1:  # more than allowed: stop, it is already a violation
                break
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    return len(statuses), statuses, closed, detail


class ResponseCounter:
    """Splits what a proxy sends back into responses by their framing (status line, headers,
    Content-Length or chunked body; none after HEAD, 1xx, 204, 304) and keeps their statuses."""

    def __init__(self, methods: list[bytes]) -> None:
        self.methods = methods  # of the requests sent, in order (a refusal may answer one not parsed)
        self.buffer = b""
        self.statuses: list[int] = []

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].split(b"\r\n")
            status = int(head[0][9:12]) if head[0].startswith(b"HTTP/1.") and head[0][9:12].isdigit() else 0
            fields = {n.strip().lower(): v.strip() for n, _, v in (line.partition(b":") for line in head[1:])}
            body = self.buffer[end + 4:]
            method = self.methods[len(self.statuses)] if len(self.statuses) < len(self.methods) else b"GET"
            if status < 200 or status in (204, 304) or method == b"HEAD":
                used = 0
            elif b"chunked" in fields.get(b"transfer-encoding", b""):
                used = _chunked_length(body)
                if used is None:
                    return
            else:
                used = int(fields.get(b"content-length", b"0") or 0)
                if len(body) < used:
                    return
            self.buffer = body[used:]
            if status >= 200:
                self.statuses.append(status)


def _chunked_length(body: bytes) -> int | None:
    at = 0
    while True:
        line_end = body.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(body[at:line_end].split(b";")[0] or b"0", 16)
        at = line_end + 2 + size + 2
        if len(body) < at:
            return None
        if size == 0:
            return at


# -- a campaign --------------------------------------------------------------------------------

@dataclass
class Campaign:
    listener: str
    results: list[Result] = field(default_factory=list)
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    alive: bool = True

    def counts(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    def violations(self) -> list[Result]:
        return [r for r in self.results if r.outcome in VIOLATIONS]


async def fuzz(listener: str, port: int, host: str, absolute: bool, seconds: float, seed: int, pid: int | None = None,
               probe: bytes | None = None) -> Campaign:
    """Mutated requests for ``seconds`` against ``port``; ``probe`` (a valid request) must keep being answered."""
    rng = random.Random(seed)
    campaign = Campaign(listener)
    campaign.rss_before_kb = rss_kb(pid) if pid else 0
    corpus = seeds(host, absolute)
    stop = time.monotonic() + seconds
    n = 0
    while time.monotonic() < stop:
        case = corpus[n % len(corpus)] if n < len(corpus) else mutate(rng.choice(corpus), rng)
        campaign.results.append(await run_case(port, case))
        n += 1
        if probe is not None and n % 50 == 0 and (await run_case(port, probe)).outcome != "answered":
            campaign.alive = False
            break
    if probe is not None and campaign.alive:
        campaign.alive = (await run_case(port, probe)).outcome == "answered"
    campaign.rss_after_kb = rss_kb(pid) if pid else 0
    return campaign


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def table(campaigns: list[Campaign]) -> str:
    outcomes = ["answered", "rejected", "incomplete", *VIOLATIONS]
    rows = [["listener", "cases", *outcomes, "alive", "RSS before→after (MB)"]]
    for c in campaigns:
        counts = c.counts()
        rows.append([c.listener, str(len(c.results)), *(str(counts.get(o, 0)) for o in outcomes), "yes" if c.alive else "NO",
                     f"{c.rss_before_kb / 1024:.0f}→{c.rss_after_kb / 1024:.0f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


# -- the mesh it runs against ------------------------------------------------------------------

async def run_against_mesh(root, seconds_per_listener: float, seed: int) -> list[Campaign]:
    """Control plane, a server sidecar (PERMISSIVE) in front of the recording app, a client
    sidecar and an ingress gateway; fuzz each listener in turn."""
    from tests.meshkit import Mesh, spiffe

    app, app_port = await start_recording_app()
    mesh = Mesh(root)
    try:
        await asyncio.to_thread(mesh.start_controlplane)
        server = await asyncio.to_thread(mesh.start_proxy, "emojivoto", "emoji", app_port, "--mode", "permissive", name="emoji")
        client = await asyncio.to_thread(mesh.start_proxy, "emojivoto", "web", app_port, name="web")
        gateway = await asyncio.to_thread(mesh.start_proxy, "emojivoto", "ingress-gateway", 1, "--gateway", "emoji.emojivoto:8080",
                                          name="gateway")
        await asyncio.to_thread(mesh.register, "emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
        # a mutated host name is not a Service: under REGISTRY_ONLY it is refused, never looked up or sent off this machine
        status, body = await asyncio.to_thread(mesh.call, "POST", "/v1/policies", {"documents": [{"source": "fuzzing", "index": 0, "document": {
            "apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "Sidecar", "metadata": {"name": "mesh", "namespace": "meshdojo-system"},
            "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}}]})
        assert status == 200, body
        deadline = time.monotonic() + 10
        while not (await asyncio.to_thread(client.config))["policies"]["inbound"].get("Sidecar"):
            if time.monotonic() > deadline:
                raise AssertionError("the client's sidecar never got the REGISTRY_ONLY Sidecar")
            await asyncio.sleep(0.02)
        targets = [("sidecar outbound", client, client.ports["outbound"], "emoji", True),
                   ("sidecar inbound", server, server.ports["inbound"], "emoji", False),
                   ("ingress gateway", gateway, gateway.ports["outbound"], "meshdojo.example", False)]
        campaigns = []
        for name, proxy, port, host, absolute in targets:
            probe = seeds(host, absolute)[0]
            await _wait_answered(port, probe)
            campaigns.append(await fuzz(name, port, host, absolute, seconds_per_listener, seed, proxy.proc.pid, probe))
        return campaigns
    finally:
        await asyncio.to_thread(mesh.close)
        await stop_recording_app(app)


async def _wait_answered(port: int, probe: bytes, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (await run_case(port, probe)).outcome != "answered":
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} does not answer {probe!r}")
        await asyncio.sleep(0.05)


def main() -> int:
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m tests.fuzzing", description="fuzz the proxy's HTTP/1.1 listeners")
    parser.add_argument("--seconds", type=float, default=600, help="per listener (default 600)")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"seed {seed}, {args.seconds:g} s per listener", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        campaigns = asyncio.run(run_against_mesh(Path(tmp), args.seconds, seed))
    print(table(campaigns))
    bad = [v for c in campaigns for v in c.violations()]
    for v in bad[:30]:
        print(f"{v.outcome}: {v.case[:300]!r} {v.detail}")
    return 1 if bad or not all(c.alive for c in campaigns) else 0


if __name__ == "__main__":
    socket.setdefaulttimeout(10)
    raise SystemExit(main())
