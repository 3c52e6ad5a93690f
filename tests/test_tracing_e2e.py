"""Distributed tracing through real proxies: a span at each sidecar a request crosses, linked
parent to child, the context handed to the app; sampling by Telemetry; the spans gathered by
the control plane over mutual TLS. (Pure parsing and assembly: tests/test_tracing.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controlplane import traces
from tests.apps import recording_app
from tests.meshkit import Mesh, eventually, spiffe
from tests.test_traffic_e2e import apply, doc

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
APP_SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def header_app() -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    """An app that keeps the trace headers of every request it gets: (its port, what it saw)."""
    async with recording_app(lambda request: {k.lower(): v for k, v in request.headers.items()
                                              if k.lower() in ("traceparent", "b3") or k.lower().startswith("x-b3-")}) as recorded:
        yield recorded


def _pair(mesh: Mesh, app_port: int):
    server = mesh.start_proxy("emojivoto", "emoji", app_port, "--mode", "permissive", name="emoji")  # plaintext callers too
    client = mesh.start_proxy("emojivoto", "web", app_port, name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    for name, proc, deployment in (("web-0", client, "web"), ("emoji-0", server, "emoji")):  # as the sandbox reports them
        assert mesh.call("PUT", f"/v1/workloads/emojivoto/{name}", {"deployment": deployment, "identity": proc.identity,
                                                                    "admin": proc.ports["admin"]})[0] == 200
    return server, client


async def _get(session: aiohttp.ClientSession, proxy: str, url: str, headers: dict[str, str] | None = None) -> int:
    async with session.get(url, proxy=proxy, headers=headers or {}) as rsp:
        await rsp.read()
        return rsp.status


def _spans(mesh: Mesh, trace: str | None = None) -> dict[str, Any]:
    status, body = mesh.call("GET", f"/v1/traces?trace={trace}" if trace else "/v1/traces")
    assert status == 200, body
    return body


async def _sampling(proxy, percent: float) -> None:
    await eventually(lambda: asyncio.to_thread(proxy.config), lambda c: c["tracing"]["samplingPercent"] == percent,
                     f"{proxy.identity} to sample {percent} %")


async def test_a_sampled_context_gets_a_span_at_each_sidecar_linked_parent_to_child(mesh: Mesh, header_app):
    port, seen = header_app
    server, client = _pair(mesh, port)
    async with aiohttp.ClientSession() as session:
        # the app passes on a sampled W3C context, as an instrumented app or the demo apps do
        assert await _get(session, client.outbound, "http://emoji/traced", {"traceparent": f"00-{TRACE}-{APP_SPAN}-01"}) == 200
    body = _spans(mesh, TRACE[:8])  # the first digits are enough
    assert body["instances"] == 2 and body["lost"] == []
    ordered = traces.tree(body["spans"])
    assert [(depth, s["workload"], s["direction"]) for depth, s in ordered] == [
        (0, "emojivoto/web", "outbound"), (1, "emojivoto/emoji", "inbound")]
    outbound, inbound = ordered[0][1], ordered[1][1]
    assert outbound["parentId"] == APP_SPAN and inbound["parentId"] == outbound["spanId"]
    assert outbound["traceId"] == inbound["traceId"] == TRACE
    assert (outbound["deployment"], inbound["deployment"]) == ("web", "emoji")
    assert outbound["peer"] == spiffe("emojivoto", "emoji") and inbound["peer"] == spiffe("emojivoto", "web")
    assert outbound["path"] == inbound["path"] == "/traced" and outbound["status"] == 200
    assert f"attempts=1[127.0.0.1:{server.ports['inbound']} -> 200]" in outbound["fate"]
    # the app gets the inbound span as its parent, in both formats, and nothing of the caller's left
    assert seen[-1] == {"traceparent": f"00-{TRACE}-{inbound['spanId']}-01", "x-b3-traceid": TRACE,
                        "x-b3-spanid": inbound["spanId"], "x-b3-sampled": "1", "x-b3-parentspanid": outbound["spanId"]}
    assert client.config()["tracing"] == {"samplingPercent": 1.0, "spansRecorded": 1, "provider": None}


async def test_telemetry_sets_who_starts_traces_and_an_unsampled_context_passes_untouched(mesh: Mesh, header_app):
    port, seen = header_app
    server, client = _pair(mesh, port)
    apply(mesh, doc("Telemetry", "all", {"tracing": [{"randomSamplingPercentage": 100}]}))  # the namespace
    await _sampling(client, 100)
    await _sampling(server, 100)
    async with aiohttp.ClientSession() as session:
        assert await _get(session, client.outbound, "http://emoji/fresh") == 200
        started = [s for s in _spans(mesh)["spans"] if s["path"] == "/fresh"]
        # the trace starts at web's outbound sidecar, and emoji's continues it
        assert sorted((s["direction"], s["parentId"] is None) for s in started) == [("inbound", False), ("outbound", True)]
        assert len({s["traceId"] for s in started}) == 1

        # web's own Telemetry (the most specific) samples nothing: emoji's sidecar, at 100 %, does not start a
        # trace for web's requests either (a caller over mutual TLS had its sidecar's chance: never sampled twice)
        apply(mesh, doc("Telemetry", "web-none", {"selector": {"matchLabels": {"app": "web"}},
                                                  "tracing": [{"randomSamplingPercentage": 0}]}))
        await _sampling(client, 0)
        for _ in range(10):
            assert await _get(session, client.outbound, "http://emoji/quiet") == 200
        assert not [s for s in _spans(mesh)["spans"] if s["path"] == "/quiet"]

        # an unsampled context: no span, and the headers reach the app as the client wrote them
        unsampled = f"00-{TRACE}-{APP_SPAN}-00"
        assert await _get(session, client.outbound, "http://emoji/unsampled", {"traceparent": unsampled}) == 200
        assert seen[-1] == {"traceparent": unsampled}
        assert not [s for s in _spans(mesh)["spans"] if s["path"] == "/unsampled"]

        # B3 as Istio's bookinfo passes it: a 64-bit trace id, padded to 128 bits
        assert await _get(session, client.outbound, "http://emoji/b3", {"b3": f"a3ce929d0e0e4736-{APP_SPAN}-1"}) == 200
        b3 = [s for s in _spans(mesh)["spans"] if s["path"] == "/b3"]
        assert {s["traceId"] for s in b3} == {"0000000000000000a3ce929d0e0e4736"} and len(b3) == 2

        # the whole namespace at 0 %, web's own Telemetry gone: nobody starts a trace
        status, _ = mesh.call("DELETE", "/v1/policies/Telemetry/emojivoto/web-none")
        assert status == 200
        apply(mesh, doc("Telemetry", "all", {"tracing": [{"randomSamplingPercentage": 0}]}))
        await _sampling(client, 0)
        await _sampling(server, 0)
        for _ in range(20):
            assert await _get(session, client.outbound, "http://emoji/off") == 200
        assert not [s for s in _spans(mesh)["spans"] if s["path"] == "/off"]

        # a caller with no sidecar (plaintext): the inbound sidecar is the first to see the request
        apply(mesh, doc("Telemetry", "all", {"tracing": [{"randomSamplingPercentage": 100}]}))
        await _sampling(server, 100)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["inbound"])
        writer.write(b"GET /plain HTTP/1.1\r\nHost: emoji\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
        [plain] = [s for s in _spans(mesh)["spans"] if s["path"] == "/plain"]
        assert plain["direction"] == "inbound" and plain["parentId"] is None and plain["peer"].endswith("(no identity)")


async def test_the_control_plane_reads_spans_only_from_the_identity_it_expects(mesh: Mesh, header_app):
    port, _seen = header_app
    _server, client = _pair(mesh, port)
    # an admin port that answers with another identity than the one the control plane knows: not read
    assert mesh.call("PUT", "/v1/workloads/emojivoto/web-1", {"deployment": "web", "identity": spiffe("emojivoto", "vote-bot"),
                                                               "admin": client.ports["admin"]})[0] == 200
    body = _spans(mesh)
    assert body["instances"] == 3
    assert [lost["workload"] for lost in body["lost"]] == ["emojivoto/web-1"]
    assert "presented spiffe://meshdojo.local/ns/emojivoto/sa/web, not" in body["lost"][0]["error"]
    status, body = mesh.call("GET", "/v1/traces?trace=not-hex")
    assert status == 400 and "trace: expected a trace id" in body["error"]
    status, body = mesh.call("GET", "/v1/traces?limit=0")
    assert status == 400 and "limit: expected 1 to 10000" in body["error"]
