"""Access logs through real proxies: a Telemetry's accessLogging gives Envoy's lines at both
sidecars (and turns them off for one workload), Linkerd's config.linkerd.io/access-log (the
proxy's --access-log) gives its JSON lines for inbound requests. (Formats: tests/test_accesslog.py.)"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.meshkit import Mesh, eventually, spiffe
from tests.test_traffic_e2e import apply, doc


async def _get(session: aiohttp.ClientSession, proxy: str, url: str) -> int:
    async with session.get(url, proxy=proxy, headers={"user-agent": "learner/1"}) as rsp:
        await rsp.read()
        return rsp.status


async def _logged(proc, text: str) -> str:
    """The line of ``proc``'s log that contains ``text``, once it is there."""
    def line() -> str | None:
        return next((ln for ln in proc.log_text().splitlines() if text in ln), None)

    return await eventually(lambda: asyncio.to_thread(line), lambda found: found is not None, f"{text!r} in {proc.identity}'s log")


async def test_telemetry_access_logging_writes_envoys_lines_and_a_workload_can_turn_them_off(mesh: Mesh, echo_port: int):
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji")
    client = mesh.start_proxy("emojivoto", "web", echo_port, name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    assert client.config()["accessLog"] == {"inbound": None, "outbound": None, "filter": None}  # off until something turns it on
    apply(mesh, doc("Telemetry", "logs", {"accessLogging": [{"providers": [{"name": "envoy"}]}]}))  # the namespace
    await eventually(lambda: asyncio.to_thread(client.config), lambda c: c["accessLog"]["outbound"] == "envoy", "web's access log")
    await eventually(lambda: asyncio.to_thread(server.config), lambda c: c["accessLog"]["inbound"] == "envoy", "emoji's access log")
    async with aiohttp.ClientSession() as session:
        assert await _get(session, client.outbound, "http://emoji/logged") == 200
        outbound = await _logged(client, "/logged")
        assert '"GET /logged HTTP/1.1" 200 - via_upstream - "-" 0 ' in outbound and '"learner/1"' in outbound
        assert f'"emoji" "127.0.0.1:{server.ports["inbound"]}" outbound|80||emoji.emojivoto.svc.cluster.local ' in outbound
        inbound = await _logged(server, "/logged")
        assert '"GET /logged HTTP/1.1" 200 - via_upstream' in inbound and " inbound - - " in inbound
        # what the sidecar decided itself carries Envoy's response flag: no route to a name that is no Service
        assert await _get(session, client.outbound, "http://nosuch/") == 502
        assert '" 502 NR unknown_service - ' in await _logged(client, '"GET / HTTP/1.1" 502')

        # web's own Telemetry turns its access log off; emoji's stays on (merged field by field)
        apply(mesh, doc("Telemetry", "web-quiet", {"selector": {"matchLabels": {"app": "web"}}, "accessLogging": [{"disabled": True}]}))
        await eventually(lambda: asyncio.to_thread(client.config), lambda c: c["accessLog"]["outbound"] is None, "web's log off")
        assert await _get(session, client.outbound, "http://emoji/quiet") == 200
        await _logged(server, "/quiet")  # emoji logged it: by then web would have too
        assert "/quiet" not in client.log_text()

        # Istio's filter: emoji logs only what its CEL expression is true for (the failures, and one header)
        apply(mesh, doc("Telemetry", "logs", {"accessLogging": [{"providers": [{"name": "envoy"}], "filter": {
            "expression": "response.code >= 500 || request.headers['x-debug'] == 'yes'"}}]}))
        await eventually(lambda: asyncio.to_thread(server.config), lambda c: c["accessLog"]["filter"], "emoji's filter")
        assert await _get(session, client.outbound, "http://emoji/status/500") == 500
        assert await _get(session, client.outbound, "http://emoji/skipped") == 200
        async with session.get("http://emoji/debugged", proxy=client.outbound, headers={"x-debug": "yes"}) as rsp:
            assert rsp.status == 200
        await _logged(server, '"GET /status/500 HTTP/1.1" 500')
        await _logged(server, "/debugged")  # logged after /skipped was answered: had it been logged, it would be there
        assert "/skipped" not in server.log_text()


async def test_linkerds_access_log_annotation_gives_json_lines_for_inbound_requests(mesh: Mesh, echo_port: int):
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, "--access-log", "json", name="emoji")
    client = mesh.start_proxy("emojivoto", "web", echo_port, name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    assert server.config()["accessLog"] == {"inbound": "json", "outbound": None, "filter": None}  # Linkerd logs inbound requests only
    async with aiohttp.ClientSession() as session:
        assert await _get(session, client.outbound, "http://emoji/json-logged") == 200
    line = json.loads(await _logged(server, '"uri":"/json-logged"'))
    assert line["client.id"] == spiffe("emojivoto", "web") and line["status"] == 200 and line["user_agent"] == "learner/1"
    assert line["method"] == "GET" and line["host"] == "emoji" and line["total_ns"] >= 0
    assert "/json-logged" not in client.log_text()
