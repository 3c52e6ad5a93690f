"""The meshed path end to end: real control plane and proxy processes, real sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import socket
import ssl

import aiohttp
import pytest

from controlplane import ca, castore
from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context
from sandbox.processes import wait_until
from tests.apps import start_echo_app
from tests.meshkit import Mesh, eventually, spiffe

EMOJI = spiffe("emojivoto", "emoji")
WEB = spiffe("emojivoto", "web")


async def get(session: aiohttp.ClientSession, proxy_url: str, url: str, **kw):
    async with session.get(url, proxy=proxy_url, **kw) as rsp:
        return rsp.status, rsp.headers, await rsp.text()


def two_proxies(mesh: Mesh, app_port: int, *server_args: str):
    server = mesh.start_proxy("emojivoto", "emoji", app_port, *server_args, name="emoji")
    client = mesh.start_proxy("emojivoto", "web", app_port, name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], EMOJI, {"version": "v1"})
    return server, client


async def test_request_crosses_the_mesh_over_mtls_with_identities(mesh: Mesh, echo_port: int):
    server, client = two_proxies(mesh, echo_port)
    async with aiohttp.ClientSession() as session:
        for url in ("http://emoji:8080/api/list?x=1", "http://emoji.emojivoto/api/list?x=1",
                    "http://emoji.emojivoto.svc.cluster.local/api/list?x=1"):
            status, _, text = await get(session, client.outbound, url)
            assert status == 200, text
            body = __import__("json").loads(text)
            assert body["path"] == "/api/list?x=1"
            assert body["client_id"] == WEB  # set by the inbound proxy from the verified certificate
        async with session.post("http://emoji:8080/echo", data=b"x" * 100_000, proxy=client.outbound) as rsp:
            assert rsp.status == 200 and (await rsp.json())["body_len"] == 100_000
        # a client cannot forge its identity header
        status, _, text = await get(session, client.outbound, "http://emoji/", headers={"x-meshdojo-client-id": "spiffe://evil"})
        assert WEB in text and "evil" not in text
    out_metrics = client.metrics()
    assert f'server_id="{EMOJI}"' in out_metrics and 'direction="outbound"' in out_metrics and 'tls="true"' in out_metrics
    assert 'dst_service="emoji"' in out_metrics and 'classification="success"' in out_metrics
    in_metrics = server.metrics()
    assert f'client_id="{WEB}"' in in_metrics and 'direction="inbound"' in in_metrics
    assert "identity_cert_expiration_timestamp_seconds" in in_metrics


async def test_errors_the_client_sees(mesh: Mesh, echo_port: int):
    server, client = two_proxies(mesh, echo_port)
    closed_port = _free_port()
    mesh.call("PUT", "/v1/services/emojivoto/empty", {"ports": [80]})
    mesh.register("emojivoto", "liar", "liar-0", server.ports["inbound"], spiffe("emojivoto", "voting"))
    mesh.register("emojivoto", "gone", "gone-0", closed_port, spiffe("emojivoto", "gone"))
    # a host outside the mesh is refused (not looked up) once the mesh is REGISTRY_ONLY
    status, body = mesh.call("POST", "/v1/policies", {"documents": [{"source": "t", "index": 0, "document": {
        "apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "Sidecar", "metadata": {"name": "mesh", "namespace": "meshdojo-system"},
        "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}}]})
    assert status == 200, body
    await eventually(lambda: asyncio.to_thread(client.config), lambda c: c["policies"]["inbound"].get("Sidecar"),
                     "the Sidecar to reach the client")
    cases = {
        "http://nope:8080/": (502, "unknown_service"),  # a cluster-local name is a Service or nothing
        "http://nope.example:8080/": (502, "egress_blocked"),
        "http://empty/": (503, "no_endpoints"),
        "http://liar/": (502, "identity_mismatch"),
        "http://gone/": (502, "connect_failed"),
    }
    async with aiohttp.ClientSession() as session:
        for url, (want_status, want_code) in cases.items():
            status, headers, text = await get(session, client.outbound, url)
            assert (status, headers.get("x-meshdojo-error")) == (want_status, want_code), text
            assert text.startswith("meshdojo proxy: ") and text.count("\n") == 1
    assert "presented identity spiffe://meshdojo.local/ns/emojivoto/sa/emoji" in client.log_text()
    assert 'proxy_errors_total{direction="outbound",error="identity_mismatch"} 1.0' in client.metrics()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plaintext_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: emoji\r\n\r\n")
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except ConnectionResetError:  # refused with unread data in flight: the kernel answers RST
            pass
        return b"".join(chunks)


async def test_strict_refuses_plaintext_permissive_labels_it(mesh: Mesh, echo_port: int):
    strict = mesh.start_proxy("emojivoto", "emoji", echo_port, name="strict")
    permissive = mesh.start_proxy("emojivoto", "voting", echo_port, "--mode", "permissive", name="permissive")
    assert await asyncio.to_thread(_plaintext_get, strict.ports["inbound"]) == b""
    assert 'inbound_tls_refused_total{reason="plaintext"} 1.0' in strict.metrics()
    answer = await asyncio.to_thread(_plaintext_get, permissive.ports["inbound"])
    assert answer.startswith(b"HTTP/1.1 200")
    assert 'tls="no_identity"' in permissive.metrics() and 'direction="inbound"' in permissive.metrics()


def _handshake(port: int, ctx: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: emoji\r\n\r\n")
                return "accepted" if tls.recv(100).startswith(b"HTTP/1.1 200") else "refused"
        except (ssl.SSLError, ConnectionError):
            return "refused"


async def test_foreign_ca_expired_and_anonymous_clients_are_refused(mesh: Mesh, echo_port: int):
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji")
    anchor_pem = mesh.anchor.read_text()
    material = castore.load_or_create(mesh.state, dt.datetime.now(dt.UTC))
    now = dt.datetime.now(dt.UTC)

    def ctx_with(issuer: ca.KeyPair, when: dt.datetime, lifetime: dt.timedelta) -> ssl.SSLContext:
        key = ca.new_key()
        me = SpiffeId("emojivoto", "web")
        leaf = ca.sign_workload(ca.make_csr(me, key), me, issuer, when, lifetime)
        return client_context(anchor_pem, ca.cert_pem(leaf) + ca.cert_pem(issuer.certificate), ca.key_pem(key))

    foreign_anchor = ca.make_trust_anchor(now)
    foreign = ctx_with(ca.make_issuer(foreign_anchor, now), now, dt.timedelta(hours=1))
    expired = ctx_with(material.issuer, now - dt.timedelta(hours=3), dt.timedelta(hours=1))
    valid = ctx_with(material.issuer, now, dt.timedelta(hours=1))
    port = server.ports["inbound"]
    assert await asyncio.to_thread(_handshake, port, valid) == "accepted"
    assert await asyncio.to_thread(_handshake, port, foreign) == "refused"
    assert await asyncio.to_thread(_handshake, port, expired) == "refused"
    assert await asyncio.to_thread(_handshake, port, client_context(anchor_pem)) == "refused"
    assert 'inbound_tls_refused_total{reason="handshake"} 3.0' in server.metrics()


async def test_discovery_updates_take_effect(mesh: Mesh):
    runner_a, port_a = await start_echo_app("a")
    runner_b, port_b = await start_echo_app("b")
    try:
        proxy_a = mesh.start_proxy("emojivoto", "emoji", port_a, name="a")
        proxy_b = mesh.start_proxy("emojivoto", "emoji", port_b, name="b")
        client = mesh.start_proxy("emojivoto", "web", port_a, name="web")
        mesh.register("emojivoto", "emoji", "a", proxy_a.ports["inbound"], EMOJI)
        async with aiohttp.ClientSession() as session:
            async def served_by() -> set[str]:
                seen = set()
                for _ in range(20):
                    status, _, text = await get(session, client.outbound, "http://emoji/")
                    assert status == 200, text
                    seen.add(__import__("json").loads(text)["served_by"])
                return seen

            assert await served_by() == {"a"}
            mesh.register("emojivoto", "emoji", "b", proxy_b.ports["inbound"], EMOJI)
            await eventually(lambda: served_by(), lambda seen: "b" in seen, "endpoint b to be added")
            mesh.deregister("emojivoto", "emoji", "a")
            await eventually(lambda: served_by(), lambda seen: seen == {"b"}, "endpoint a to be removed")
            mesh.deregister("emojivoto", "emoji", "b")
            await eventually(lambda: get(session, client.outbound, "http://emoji/"),
                              lambda r: r[1].get("x-meshdojo-error") == "no_endpoints", "no endpoints left")
    finally:
        await runner_a.cleanup()
        await runner_b.cleanup()


def _raw_exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        return data


@pytest.mark.parametrize("payload, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: emoji\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: emoji\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"GET http://emoji:99999/ HTTP/1.1\r\nHost: emoji\r\n\r\n", 400),
    (b"CONNECT emoji:443 HTTP/1.1\r\nHost: emoji\r\n\r\n", 501),
    (b"\x16\x03\x01\x00\xff" + b"\x00" * 50, 400),
], ids=["garbage", "length-and-chunked", "huge-header", "bad-port", "connect", "tls-bytes"])
async def test_malformed_requests_get_4xx_and_do_not_hurt_the_proxy(mesh: Mesh, echo_port: int, payload: bytes, status: int):
    _server, client = two_proxies(mesh, echo_port)
    answer = await asyncio.to_thread(_raw_exchange, client.ports["outbound"], payload)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    async with aiohttp.ClientSession() as session:
        status, _, _ = await get(session, client.outbound, "http://emoji/")
    assert status == 200 and client.proc.poll() is None


class Load:
    """Steady concurrent requests through the mesh, counting every outcome."""

    def __init__(self, proxy_url: str, url: str, concurrency: int = 4) -> None:
        self.proxy_url, self.url, self.concurrency = proxy_url, url, concurrency
        self.ok = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()

    async def _worker(self, session: aiohttp.ClientSession, fresh_connections: bool) -> None:
        while not self._stop.is_set():
            try:
                headers = {"Connection": "close"} if fresh_connections else {}
                async with session.get(self.url, proxy=self.proxy_url, headers=headers) as rsp:
                    await rsp.read()
                    if rsp.status == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{rsp.status} {rsp.headers.get('x-meshdojo-error')}")
            except aiohttp.ClientError as exc:
                self.failures.append(repr(exc))

    async def run_while(self, during) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            workers = [asyncio.ensure_future(self._worker(session, i % 2 == 0)) for i in range(self.concurrency)]  # noqa: TID251
            try:
                await during()
            finally:
                self._stop.set()
                await asyncio.gather(*workers)


async def test_rotation_under_load_drops_nothing(mesh: Mesh, echo_port: int):
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, "--rotate-every", "1s", name="emoji")
    client = mesh.start_proxy("emojivoto", "web", echo_port, "--rotate-every", "1s", name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], EMOJI)
    load = Load(client.outbound, "http://emoji/")

    async def until_rotated() -> None:
        def refreshes() -> list[int]:
            return [p.config()["certificate"]["refreshes"] for p in (server, client)]

        await eventually(lambda: asyncio.to_thread(refreshes), lambda counts: min(counts) >= 3, "three rotations each", 20)

    await asyncio.wait_for(load.run_while(until_rotated), 30)
    assert load.failures == [] and load.ok > 50
    refreshes = float(next(line.split()[1] for line in server.metrics().splitlines() if line.startswith("identity_cert_refresh_count")))
    assert refreshes >= 3


async def test_controlplane_killed_under_load_drops_nothing_and_updates_resume(mesh: Mesh, echo_port: int):
    server, client = two_proxies(mesh, echo_port)
    api_port, mesh_port = mesh.api.rsplit(":", 1)[1], mesh.mesh_url.rsplit(":", 1)[1]
    load = Load(client.outbound, "http://emoji/")

    async def kill_and_wait() -> None:
        await asyncio.sleep(0.3)  # some traffic before the kill (load, not synchronization)
        before = load.ok
        await asyncio.to_thread(mesh.kill_controlplane)
        await eventually(lambda: asyncio.sleep(0.05, load.ok), lambda ok: ok > before + 200, "traffic after the kill", 20)

    await asyncio.wait_for(load.run_while(kill_and_wait), 40)
    assert load.failures == [] and load.ok > 200
    # back on the same ports, with the same CA and registry: updates flow again
    await asyncio.to_thread(mesh.start_controlplane, "--api-port", api_port, "--mesh-port", mesh_port)
    runner_b, port_b = await start_echo_app("b")
    try:
        proxy_b = mesh.start_proxy("emojivoto", "emoji", port_b, name="b")
        mesh.deregister("emojivoto", "emoji", "emoji-0")
        mesh.register("emojivoto", "emoji", "b", proxy_b.ports["inbound"], EMOJI)
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: get(session, client.outbound, "http://emoji/"),
                              lambda r: '"served_by": "b"' in r[2], "the restarted control plane's update", 15)
    finally:
        await runner_b.cleanup()


async def test_sigterm_drains_requests_in_flight(mesh: Mesh, echo_port: int):
    _server, client = two_proxies(mesh, echo_port)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(get(session, client.outbound, "http://emoji/?delay_ms=800"))  # noqa: TID251
        await eventually(lambda: asyncio.sleep(0.02, client.metrics()),
                          lambda m: 'tcp_open_connections{client_id="",direction="outbound",peer="dst"' in m, "request in flight")
        client.proc.send_signal(signal.SIGTERM)
        status, _, text = await slow
        assert status == 200, text
    assert await asyncio.to_thread(client.proc.wait, 10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", client.ports["outbound"]), timeout=2).close()
    wait_until(lambda: client.proc.poll() is not None, 5, "proxy exit")


def test_sigterm_while_bootstrapping_stops_the_proxy_there(mesh: Mesh, tmp_path):
    """A sidecar waiting on its control plane (here one that takes the connection and never
    answers) stops at SIGTERM and exits 0, rather than after its bootstrap gives up (30 s) with
    an error. A supervisor that gives up on a stuck sidecar needs it."""
    import sys

    from sandbox.processes import spawn

    silent = socket.create_server(("127.0.0.1", 0))
    silent.settimeout(20)
    token = tmp_path / "token"
    token.write_text(mesh.token("emojivoto", "web"))
    token.chmod(0o600)
    log = tmp_path / "proxy.log"
    proc = spawn([sys.executable, "-m", "proxy", "--controlplane", f"https://127.0.0.1:{silent.getsockname()[1]}",
                  "--trust-anchor", str(mesh.anchor), "--namespace", "emojivoto", "--service-account", "web",
                  "--token-file", str(token), "--app-port", "1", "--ports-file", str(tmp_path / "ports")], log)
    try:
        conn, _ = silent.accept()  # it is asking for its certificate now, and will get no answer
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
        assert "stopped before it was ready" in log.read_text() and not (tmp_path / "ports").exists()
        conn.close()
    finally:
        proc.kill()
        proc.wait()
        silent.close()


async def test_unmeshed_endpoints_are_reached_in_plaintext_and_labelled(mesh: Mesh, echo_port: int):
    client = mesh.start_proxy("emojivoto", "web", echo_port, name="web")
    mesh.register("emojivoto", "legacy", "legacy-0", echo_port, None)  # the app itself, no sidecar
    async with aiohttp.ClientSession() as session:
        status, _, text = await get(session, client.outbound, "http://legacy/hello")
    assert status == 200 and '"client_id": null' in text  # nobody vouched for the caller
    metrics = client.metrics()
    assert 'dst_service="legacy"' in metrics
    line = next(m for m in metrics.splitlines() if m.startswith("request_total") and 'dst_service="legacy"' in m)
    assert 'tls="no_identity"' in line and 'server_id=""' in line


async def test_exposition_passes_promtool_but_for_linkerds_ms_unit(mesh: Mesh, echo_port: int):
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (.ci/run installs Debian's prometheus package)")
    server, client = two_proxies(mesh, echo_port)
    async with aiohttp.ClientSession() as session:
        for path in ("/", "/status/500"):
            await get(session, client.outbound, f"http://emoji{path}")
        await get(session, client.outbound, f"http://127.0.0.1:{_free_port()}/")  # an error: nothing listens there
    for proxy in (server, client):
        result = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=proxy.metrics(),
                                         capture_output=True, text=True, timeout=30)
        remarks = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        # the one expected remark, about Linkerd's _ms unit names (for each histogram that has them)
        assert set(remarks) <= {f"{name} metric names should not contain abbreviated units"
                                for name in ("response_latency_ms", "route_response_latency_ms")}, remarks
        assert "response_latency_ms metric names should not contain abbreviated units" in remarks
