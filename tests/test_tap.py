"""Tap through real proxies: each request's fate, the token, and readers that fall behind."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from proxy.tap import QUEUE_SIZE, TapFilter
from tests.meshkit import Mesh, spiffe
from tests.test_traffic_e2e import apply, doc


async def read_until(stream: aiohttp.ClientResponse, accept, what: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(stream.content.readline(), max(deadline - time.monotonic(), 0.01))
        event = json.loads(line)
        if accept(event):
            return event
    raise AssertionError(f"no tap event for {what}")


async def test_tap_shows_retried_faulted_and_denied_requests(mesh: Mesh, echo_port: int, tmp_path):
    token = tmp_path / "tap-token"
    token.write_text("s3cret")
    token.chmod(0o600)
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, "--tap-token-file", str(token), name="emoji")
    client = mesh.start_proxy("emojivoto", "web", echo_port, "--tap-token-file", str(token), name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    apply(mesh,
          doc("FaultInjection", "flaky", {"targetRef": {"name": "emoji"}, "match": {"path": {"type": "PathPrefix", "value": "/retried"}},
                                          "abort": {"httpStatus": 503, "percentage": {"value": 50}}}),
          doc("FaultInjection", "broken", {"targetRef": {"name": "emoji"}, "match": {"path": {"type": "PathPrefix", "value": "/faulted"}},
                                           "abort": {"httpStatus": 500}}),
          doc("HTTPRoute", "emoji", {"parentRefs": [{"kind": "Service", "name": "emoji"}],
                                     "rules": [{"retry": {"codes": [503], "attempts": 8, "backoff": "1ms"}}]}),
          doc("AuthorizationPolicy", "no-admin", {"targetRef": {"kind": "Service", "name": "emoji"}, "action": "DENY",
                                                  "rules": [{"to": [{"operation": {"paths": ["/denied*"]}}]}]}))
    headers = {"Authorization": "Bearer s3cret"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        async with session.get(f"http://127.0.0.1:{client.ports['admin']}/tap") as rsp:
            assert rsp.status == 401
        async with session.get(f"http://127.0.0.1:{client.ports['admin']}/tap", headers=headers) as out_tap, \
                session.get(f"http://127.0.0.1:{server.ports['admin']}/tap", headers=headers) as in_tap:
            await out_tap.content.readline()  # hello: subscribed
            await in_tap.content.readline()

            async def request(path: str) -> int:
                async with session.get(f"http://emoji{path}", proxy=client.outbound) as r:
                    await r.read()
                    return r.status

            for _ in range(20):  # until one was retried (50 % each time)
                await request("/retried")
            retried = await read_until(out_tap, lambda e: e["type"] == "end" and e["fate"]["retry"], "a retried request")
            assert retried["direction"] == "outbound" and retried["fate"]["route"] == "emojivoto/emoji#0"
            assert retried["fate"]["retry"][0] == "retried after 503" and len(retried["fate"]["attempts"]) >= 2
            assert retried["server_id"] == spiffe("emojivoto", "emoji") and retried["tls"] is True

            assert await request("/faulted") == 500
            faulted = await read_until(in_tap, lambda e: e["type"] == "end" and e["path"] == "/faulted", "a faulted request")
            assert faulted["fate"]["fault"] == "abort 500 by emojivoto/broken" and faulted["client_id"] == spiffe("emojivoto", "web")

            assert await request("/denied") == 403
            denied = await read_until(in_tap, lambda e: e["type"] == "end" and e["status"] == 403, "a denied request")
            assert denied["fate"]["authz"] == "deny by emojivoto/no-admin" and denied["path"] == "/denied"


async def test_a_reader_that_falls_behind_never_slows_the_proxy_and_sees_what_it_lost(mesh: Mesh, echo_port: int, tmp_path):
    import socket

    token = tmp_path / "tap-token"
    token.write_text("t")
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji")
    client = mesh.start_proxy("emojivoto", "web", echo_port, "--tap-token-file", str(token), name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    # a subscriber with a tiny receive window that does not read: the socket fills, then its queue, then events drop
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", client.ports["admin"]))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /tap HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer t\r\n\r\n")
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    async with aiohttp.ClientSession() as session:
        async def one() -> int:
            async with session.get("http://emoji/", proxy=client.outbound) as r:
                await r.read()
                return r.status

        statuses: list[int] = []
        while client.config()["tap"]["dropped"] == 0 and len(statuses) < 20_000:
            statuses += await asyncio.gather(*(one() for _ in range(50)))
    assert set(statuses) == {200}  # every request went through while nobody read the tap
    assert client.config()["tap"]["dropped"] > 0 and client.config()["tap"]["subscribers"] == 1
    # the reader catches up and is told how much it lost
    async with aiohttp.ClientSession() as session:  # one more request, so the stream has something new to send
        async with session.get("http://emoji/", proxy=client.outbound) as r:
            await r.read()
    seen_dropped, dropped_requests = 0, 0
    deadline = asyncio.get_running_loop().time() + 20
    while not seen_dropped and asyncio.get_running_loop().time() < deadline:
        line = await asyncio.wait_for(reader.readline(), 10)
        if b'"type":"dropped"' in line:
            event = json.loads(line)  # each chunk of the stream holds whole JSON lines
            seen_dropped, dropped_requests = event["count"], event["requests"]
    assert seen_dropped > 0 and 0 < dropped_requests <= seen_dropped
    writer.close()


def test_a_full_subscriber_queue_drops_and_counts_whole_requests():
    from proxy.tap import TapFilter, TapHub

    hub = TapHub()
    slow = hub.subscribe(TapFilter())
    picky = hub.subscribe(TapFilter(path_prefix="/api"))
    events = [{"type": t, "path": "/x"} for t in ("req", "rsp", "end")]
    for _ in range(QUEUE_SIZE // 3 + 5):
        hub.publish(events)
    assert slow.queue.qsize() == (QUEUE_SIZE // 3) * 3  # whole requests only: never a req without its end
    assert slow.dropped == 15 and slow.dropped_requests == 5 and hub.dropped_total == 15
    assert picky.queue.qsize() == 0 and picky.dropped == 0  # filtered out, not dropped
    hub.unsubscribe(slow)
    hub.unsubscribe(picky)
    assert not hub.subscribers


def test_top_aggregates_by_source_destination_method_and_path():
    from sandbox.top import Top, render

    top = Top()
    def end(src, dst, path, status, ms):
        return {"type": "end", "src": src, "dst": dst, "method": "GET", "path": path, "status": status, "latency_ms": ms}

    for event in (end("web-0", "voting", "/api/vote?choice=:joy:", 200, 2.0), end("web-0", "voting", "/api/vote?choice=:doughnut:", 500, 9.0),
                  end("web-0", "emoji", "/api/list", 200, 1.0), {"type": "req"}, {"type": "tick"}):
        top.add(event)
    rows = top.table()
    assert rows[1] == ("web-0", "voting", "GET", "/api/vote", "2", "2.0ms", "9.0ms", "9.0ms", "50%")
    assert rows[2][:5] == ("web-0", "emoji", "GET", "/api/list", "1")
    assert "SUCCESS" in render(top).splitlines()[0]


def test_the_to_filter_names_a_destination_not_a_substring():
    event = {"dst": "voting", "authority": "voting.emojivoto:8080", "server_id": "spiffe://meshdojo.local/ns/emojivoto/sa/voting"}
    assert TapFilter(to="voting").matches(event) and TapFilter(to="voting.emojivoto").matches(event)
    assert not TapFilter(to="emoji").matches(event)  # the namespace emojivoto contains 'emoji'; the destination is voting
    assert TapFilter(to="emoji").matches({"dst": "emoji", "authority": "emoji:8080"})


async def test_the_control_plane_reads_a_sidecars_tap_over_mutual_tls_and_only_from_the_identity_it_expects(mesh: Mesh, echo_port: int):
    """`GET /v1/tap` (what `meshdojo tap` reads on a cluster): the control plane connects to each
    sidecar's admin port over mutual TLS, checks the identity it presents against the one it was
    told before sending that identity's token, and merges the streams."""
    client = mesh.start_proxy("emojivoto", "web", echo_port, name="web")  # no --tap-token-file: the control plane's token
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    assert mesh.call("PUT", "/v1/workloads/emojivoto/web-0", {"deployment": "web", "identity": spiffe("emojivoto", "web"),
                                                               "admin": client.ports["admin"]})[0] == 200
    # an admin port that answers with another identity than the one the control plane knows: not read
    assert mesh.call("PUT", "/v1/workloads/emojivoto/web-1", {"deployment": "web", "identity": spiffe("emojivoto", "vote-bot"),
                                                               "admin": client.ports["admin"]})[0] == 200
    headers = {"Authorization": f"Bearer {mesh.admin_token}"}
    async with aiohttp.ClientSession() as session, \
            session.get(f"{mesh.api}/v1/tap?namespace=emojivoto&deployment=web", headers=headers) as stream:
        assert stream.status == 200
        hello = await read_until(stream, lambda e: e["type"] == "hello", "hello")
        assert hello["instances"] == ["web-0", "web-1"]
        lost = await read_until(stream, lambda e: e["type"] == "lost", "the impostor refused")
        assert lost["workload"] == "web-1" and "presented spiffe://meshdojo.local/ns/emojivoto/sa/web, not " in lost["error"]

        async def send() -> None:
            while True:
                async with session.get("http://emoji/through-the-control-plane", proxy=client.outbound) as rsp:
                    await rsp.read()
                await asyncio.sleep(0.2)

        sender = asyncio.get_running_loop().create_task(send(), name="sender")  # until the stream shows one (kept, cancelled below)
        try:
            end = await read_until(stream, lambda e: e["type"] == "end" and e["path"] == "/through-the-control-plane", "a request's end")
        finally:
            sender.cancel()
        assert end["workload"] == "web" and end["status"] == 200 and end["server_id"] == spiffe("emojivoto", "emoji")


def test_tap_and_fates_refuse_plaintext_from_another_host():
    from proxy.admin import over_the_network_in_clear
    from proxy.exchange import Peer

    assert not over_the_network_in_clear(Peer("127.0.0.1:5000", False, None))  # this machine: the sandbox's own CLI
    assert not over_the_network_in_clear(Peer("::1:5000", False, None))
    assert not over_the_network_in_clear(Peer("10.244.0.9:5000", True, spiffe("meshdojo", "controlplane")))  # mutual TLS
    assert over_the_network_in_clear(Peer("10.244.0.9:5000", False, None))  # a pod, in clear
    assert over_the_network_in_clear(Peer("?:0", False, None))  # not even an address: refused
