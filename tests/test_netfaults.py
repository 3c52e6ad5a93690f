"""Network faults and the wire view: relays on edges, measured end to end through real proxies."""

from __future__ import annotations

import time

import aiohttp
import pytest

from controlplane import netfaults, wire
from controlplane.netfaults import NetFaultError, Workloads
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc

NS = "emojivoto"


def test_parse_names_the_field_and_fills_defaults():
    fault = netfaults.parse({"kind": "latency", "to": {"namespace": NS, "service": "emoji"}, "from": {"namespace": NS, "deployment": "web"},
                             "latency": "300ms", "jitter": "50ms"}, now=100.0)
    assert (fault.name, fault.latency_ms, fault.jitter_ms, fault.expires_at) == ("latency-web-emoji", 300.0, 50.0, 100.0 + 300)
    assert netfaults.parse({"kind": "bandwidth", "to": {"namespace": NS, "service": "emoji"}, "rate": "10KB/s"}).rate_bytes == 10_000
    bad = [
        ({"kind": "smoke", "to": {"namespace": NS, "service": "e"}}, "kind"),
        ({"kind": "latency", "to": {"namespace": NS, "service": "e"}, "latency": "fast"}, "latency"),
        ({"kind": "latency", "to": {"namespace": NS, "service": "e"}, "latency": "10ms", "jitter": "20ms"}, "latency"),
        ({"kind": "bandwidth", "to": {"namespace": NS, "service": "e"}, "rate": "lots"}, "rate"),
        ({"kind": "reset", "to": {"namespace": NS, "service": "e"}, "latency": "1s"}, "latency"),
        ({"kind": "reset", "to": {"namespace": NS}}, "to"),
        ({"kind": "reset", "to": {"namespace": NS, "service": "e"}, "from": {"namespace": NS, "service": "w"}}, "from"),
        ({"kind": "partition", "to": {"namespace": NS, "deployment": "e"}}, "from"),
        ({"kind": "reset", "to": {"namespace": NS, "service": "e"}, "duration": "2d"}, "duration"),
        ({"kind": "reset", "to": {"namespace": NS, "service": "e"}, "colour": "red"}, "colour"),
    ]
    for raw, field in bad:
        with pytest.raises(NetFaultError) as err:
            netfaults.parse(raw)
        assert err.value.field == field, (raw, err.value)


def test_which_connections_a_fault_applies_to():
    web, bot = Workloads(NS, deployment="web"), Workloads(NS, deployment="vote-bot")
    svc = netfaults.parse({"kind": "reset", "to": {"namespace": NS, "service": "emoji"}})
    edge = netfaults.parse({"kind": "reset", "to": {"namespace": NS, "service": "emoji"}, "from": {"namespace": NS, "deployment": "web"}})
    part = netfaults.parse({"kind": "partition", "from": {"namespace": NS, "deployment": "web"}, "to": {"namespace": NS, "deployment": "emoji"}})
    assert svc.applies(web, NS, "emoji", "emoji") and svc.applies(None, NS, "emoji", "emoji") and not svc.applies(web, NS, "voting", "v")
    assert edge.applies(web, NS, "emoji", "emoji") and not edge.applies(bot, NS, "emoji", "emoji") and not edge.applies(None, NS, "emoji", "x")
    assert part.applies(web, NS, "emoji", "emoji") and part.applies(Workloads(NS, deployment="emoji"), NS, "web", "web")
    assert not part.applies(bot, NS, "emoji", "emoji") and not part.applies(web, NS, "voting", "voting")


def test_wire_reads_tls_records_and_a_hexdump():
    hello = bytes.fromhex("1603030032") + bytes.fromhex("0200002e0303") + bytes(32) + b"\x00" + bytes.fromhex("1301") + b"\x00" \
        + bytes.fromhex("0006002b00020304")
    data = hello + bytes.fromhex("1703030005") + b"abcde"
    found = wire.records(data)
    assert [(r.type, r.length) for r in found] == [("handshake", 50), ("application_data", 5)]
    assert wire.first_application_data(data)[:3] == b"\x17\x03\x03"
    summary = wire.handshake_summary(bytes.fromhex("1603010000"), data)
    assert summary["version"] == "TLS 1.3" and summary["cipher"] == "TLS_AES_128_GCM_SHA256" and not summary["certificates_visible"]
    assert wire.records(b"GET / HTTP/1.1\r\n") is None and wire.readable_http(b"GET / HTTP/1.1\r\n")
    assert wire.hexdump(b"GET /\r\n")[0] == "0000  47 45 54 20 2f 0d 0a" + " " * 27 + "  |GET /..|"


@pytest.fixture
def edge_mesh(mesh: Mesh, echo_port: int):
    """emoji (server) and two clients, web and vote-bot, all known to telemetry by deployment."""
    proxies = {}
    for name in ("emoji", "web", "vote-bot"):
        proxies[name] = p = mesh.start_proxy(NS, name, echo_port, name=name)
        status, _ = mesh.call("PUT", f"/v1/workloads/{NS}/{name}", {"deployment": name, "identity": spiffe(NS, name), "meshed": True,
                                                                   "admin": p.ports["admin"]})
        assert status == 200
    mesh.register(NS, "emoji", "emoji", proxies["emoji"].ports["inbound"], spiffe(NS, "emoji"))
    mesh.register(NS, "web", "web", proxies["web"].ports["inbound"], spiffe(NS, "web"))
    return mesh, proxies


async def timed(session: aiohttp.ClientSession, proxy: str, url: str, **kw) -> tuple[int, float, int, str]:
    started = time.monotonic()
    async with session.get(url, proxy=proxy, **kw) as rsp:
        body = await rsp.read()
        return rsp.status, time.monotonic() - started, len(body), rsp.headers.get("x-meshdojo-error", "")


def put_fault(mesh: Mesh, **body) -> dict:
    status, answer = mesh.call("POST", "/v1/netfaults", body)
    assert status == 200, answer
    return answer["applied"]


async def median_latency(session, proxy: str, url: str, n: int = 5) -> float:
    times = sorted([(await timed(session, proxy, url))[1] for _ in range(n)])
    return times[n // 2]


async def test_latency_on_one_edge_only_and_it_reverts(edge_mesh):
    mesh, p = edge_mesh
    web, bot = p["web"].outbound, p["vote-bot"].outbound
    async with aiohttp.ClientSession() as session:
        base = await median_latency(session, web, "http://emoji/")
        fault = put_fault(mesh, kind="latency", to={"namespace": NS, "service": "emoji"}, **{"from": {"namespace": NS, "deployment": "web"}},
                          latency="300ms", jitter="20ms")
        assert fault["description"] == "latency 300ms ± 20ms: deploy/web.emojivoto -> svc/emoji.emojivoto"
        await until(lambda: timed(session, web, "http://emoji/"), lambda r: r[1] > 0.25, "the relay to be in web's path", 5)
        slow = await median_latency(session, web, "http://emoji/")
        assert 0.27 < slow - base < 0.6, (base, slow)  # one response crossing the relay: +300 ms ± 20 ms
        assert await median_latency(session, bot, "http://emoji/") < base + 0.1  # vote-bot's edge is untouched
        status, listed = mesh.call("GET", "/v1/netfaults")
        assert [f["name"] for f in listed["faults"]] == ["latency-web-emoji"] and 250 < listed["faults"][0]["remaining_seconds"] <= 300
        status, _ = mesh.call("DELETE", "/v1/netfaults/latency-web-emoji")
        assert status == 200
        await until(lambda: median_latency(session, web, "http://emoji/", 3), lambda t: t < base + 0.1, "the fault to go", 5)
        # both are in the control plane's log of changes, for a report's "what changed in between"
        changes = [(c["action"], c["kind"], c["name"], c.get("detail")) for c in mesh.call("GET", "/v1/changes")[1]["changes"]]
        assert changes == [("created", "NetworkFault", "latency-web-emoji", fault["description"]),
                           ("deleted", "NetworkFault", "latency-web-emoji", fault["description"])], changes


async def test_bandwidth_reset_blackhole_and_expiry(edge_mesh):
    mesh, p = edge_mesh
    web = p["web"].outbound
    async with aiohttp.ClientSession() as session:
        fast = (await timed(session, web, "http://emoji/?size=60000"))[1]
        put_fault(mesh, kind="bandwidth", to={"namespace": NS, "service": "emoji"}, rate="100KB/s", duration="20s")
        status, took, size, _ = await until(lambda: timed(session, web, "http://emoji/?size=60000"), lambda r: r[1] > 0.4, "the rate limit", 8)
        assert status == 200 and size == 60000 and 0.45 < took < 3, (fast, took)  # 60 KB at 100 KB/s: about 0.6 s

        put_fault(mesh, kind="reset", to={"namespace": NS, "service": "emoji"}, duration="20s")  # replaces nothing: another name
        mesh.call("DELETE", "/v1/netfaults/bandwidth-emoji")
        status, _, _, error = await until(lambda: timed(session, web, "http://emoji/"), lambda r: r[0] >= 500, "the resets", 5)
        assert status in (502, 503) and error == "connect_failed", (status, error)
        assert "connection reset" in p["web"].log_text().lower() or "cannot connect" in p["web"].log_text().lower()

        mesh.call("DELETE", "/v1/netfaults")
        # a blackhole answers nothing: the caller waits for its route timeout
        apply(mesh, doc("HTTPRoute", "emoji-timeout", {"parentRefs": [{"kind": "Service", "name": "emoji"}], "rules": [{"timeouts": {"request": "500ms"}}]}))
        put_fault(mesh, kind="blackhole", to={"namespace": NS, "service": "emoji"}, duration="2s")
        status, took, _, error = await until(lambda: timed(session, web, "http://emoji/"), lambda r: r[0] == 504, "the blackhole", 5)
        assert error == "request_timeout" and 0.45 < took < 1.5
        # time-boxed: it removes itself, and traffic flows again
        await until(lambda: timed(session, web, "http://emoji/"), lambda r: r[0] == 200, "the blackhole to expire", 8)
        assert mesh.call("GET", "/v1/netfaults")[1]["faults"] == []


async def test_a_partition_cuts_both_ways_and_nothing_else(edge_mesh):
    mesh, p = edge_mesh
    apply(mesh, doc("HTTPRoute", "fast-fail", {"parentRefs": [{"kind": "Service", "name": "emoji"}], "rules": [{"timeouts": {"request": "1s"}}]}),
          doc("HTTPRoute", "fast-fail-web", {"parentRefs": [{"kind": "Service", "name": "web"}], "rules": [{"timeouts": {"request": "1s"}}]}))
    put_fault(mesh, kind="partition", to={"namespace": NS, "deployment": "emoji"}, **{"from": {"namespace": NS, "deployment": "web"}})
    async with aiohttp.ClientSession() as session:
        await until(lambda: timed(session, p["web"].outbound, "http://emoji/"), lambda r: r[0] == 504, "web -/-> emoji", 5)
        await until(lambda: timed(session, p["emoji"].outbound, "http://web/"), lambda r: r[0] == 504, "emoji -/-> web", 5)
        assert (await timed(session, p["vote-bot"].outbound, "http://emoji/"))[0] == 200
        assert (await timed(session, p["vote-bot"].outbound, "http://web/"))[0] == 200


async def test_wire_shows_tls_records_under_mtls_and_the_request_line_without(edge_mesh, echo_port):
    mesh, p = edge_mesh
    body = {"from": {"namespace": NS, "deployment": "web"}, "to": {"namespace": NS, "deployment": "emoji"}}

    async def capture() -> dict:
        status, started = mesh.call("POST", "/v1/wire", body)
        assert status == 200, started
        async with aiohttp.ClientSession() as session:
            async def traffic_then_look():
                await timed(session, p["web"].outbound, "http://emoji/api/list")
                return mesh.call("GET", f"/v1/wire/{started['name']}")[1]

            seen = await until(traffic_then_look, lambda s: any(c["server_to_client"]["bytes_total"] for c in s["connections"]),
                               "a connection through the wire relay", 5)
        mesh.call("DELETE", f"/v1/netfaults/{started['name']}")
        return next(c for c in seen["connections"] if c["server_to_client"]["bytes_total"])

    tls = await capture()
    assert tls["tls"] and tls["handshake"]["version"] == "TLS 1.3" and tls["handshake"]["cipher"].startswith("TLS_")
    assert tls["handshake"]["server_identity"] == spiffe(NS, "emoji") and tls["handshake"]["client_identity"] == spiffe(NS, "web")
    assert tls["client_to_server"]["records"][0].startswith("handshake") and not tls["client_to_server"]["readable_http"]
    assert any(r.startswith("application_data") for r in tls["client_to_server"]["records"])
    assert tls["client_to_server"]["first_bytes_hex"][0].startswith("0000  17 03 03")
    assert "api/list" not in " ".join(tls["client_to_server"]["first_bytes_hex"])

    # the server leaves the mesh (as 'uninject' does): the same edge now carries readable HTTP
    mesh.register(NS, "emoji", "emoji", echo_port, None)
    plain = await capture()
    assert not plain["tls"] and plain["handshake"] is None and plain["client_to_server"]["readable_http"]
    assert plain["client_to_server"]["first_bytes_hex"][0].endswith("|GET /api/list HT|")
