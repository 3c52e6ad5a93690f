"""``x-request-id`` as Envoy gives it in Istio's mesh: the layer alone (pure), then through real
proxies: a request the app sent without one gets one both sidecars log and the app behind them
sees, one it carries is kept, a caller without a sidecar gets one at the inbound side, and an
ingress gateway replaces what an outside client sent."""

from __future__ import annotations

import asyncio
import random
import uuid

import aiohttp

from proxy.exchange import BytesBody, Peer, Request, Response
from proxy.http1 import RequestHead
from proxy.requestid import new_request_id, request_id
from tests.meshkit import Mesh, eventually, spiffe
from tests.test_accesslog_e2e import _logged
from tests.test_jwt_e2e import headers_app  # noqa: F401 - a fixture
from tests.test_traffic_e2e import apply, doc


def _request(*headers: tuple[bytes, bytes]) -> Request:
    head = RequestHead("GET", "http://emoji/", "1.1", [(b"host", b"emoji"), *headers], False, False, 0)
    return Request(head, BytesBody(b""), Peer("127.0.0.1:1", False, None))


async def _seen(request: Request) -> Response:
    return Response(200, [], BytesBody(request.head.header(b"x-request-id") or b"(none)"))


def test_a_request_id_is_a_random_version_4_uuid_drawn_from_the_rng_it_is_given():
    made = [new_request_id(random.Random(7)) for _ in range(2)]
    assert made[0] == made[1]  # the rng decides, so tests can pin it
    for text in (made[0], *(new_request_id(random.Random(seed)) for seed in range(200))):
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert len({new_request_id(random.Random(seed)) for seed in range(200)}) == 200


async def test_the_layer_keeps_a_carried_id_gives_one_to_a_request_without_and_an_edge_replaces_it():
    sidecar, edge = request_id(random.Random(1))(_seen), request_id(random.Random(1), edge=True)(_seen)
    kept = _request((b"x-request-id", b"chosen-by-the-app"))
    assert (await sidecar(kept)).body.data == b"chosen-by-the-app" and kept.fate.request_id == "chosen-by-the-app"
    fresh = _request()
    given = (await sidecar(fresh)).body.data.decode()
    assert uuid.UUID(given).version == 4 and fresh.fate.request_id == given
    outside = _request((b"x-request-id", b"from-outside"))
    replaced = (await edge(outside)).body.data.decode()
    assert replaced != "from-outside" and uuid.UUID(replaced).version == 4
    assert [v for n, v in outside.head.headers if n == b"x-request-id"] == [replaced.encode()]  # one header, not two


async def test_one_request_id_on_every_hop_through_real_proxies_and_a_fresh_one_at_the_gateway(mesh: Mesh, headers_app):  # noqa: F811
    app_port, seen = headers_app
    server = mesh.start_proxy("emojivoto", "emoji", app_port, "--mode", "permissive", name="emoji")  # plaintext callers too
    client = mesh.start_proxy("emojivoto", "web", app_port, name="web")
    gateway = mesh.start_proxy("emojivoto", "ingress-gateway", 1, "--gateway", "emoji.emojivoto:8080", name="gateway")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    apply(mesh, doc("Telemetry", "logs", {"accessLogging": [{"providers": [{"name": "envoy"}]}]}))
    for proxy in (client, server):
        await eventually(lambda p=proxy: asyncio.to_thread(p.config), lambda c: c["accessLog"]["outbound"] == "envoy", "access logs on")
    async with aiohttp.ClientSession() as session:
        async def get(url: str, proxy: str | None = None, **headers: str) -> str:
            async with session.get(url, proxy=proxy, headers=headers) as rsp:
                assert rsp.status == 200, await rsp.text()
            return seen[-1]["x-request-id"]

        # the app sent none: web's sidecar gives one; emoji's sidecar and the app see the same
        given = await get("http://emoji/first", client.outbound)
        assert uuid.UUID(given).version == 4
        assert f'"{given}"' in await _logged(client, "/first") and f'"{given}"' in await _logged(server, "/first")
        # the app carries one (an app passing on its caller's): kept on every hop
        assert await get("http://emoji/second", client.outbound, **{"x-request-id": "kept-by-every-hop"}) == "kept-by-every-hop"
        # a caller without a sidecar, straight to emoji's inbound side: one from there on
        direct = await get(f"http://127.0.0.1:{server.ports['inbound']}/third")
        assert uuid.UUID(direct).version == 4 and direct != given
        # an outside client's id stops at the edge
        through = await get(f"http://127.0.0.1:{gateway.ports['outbound']}/fourth", **{"x-request-id": "chosen-outside"})
        assert through != "chosen-outside" and uuid.UUID(through).version == 4
    assert [s["(path)"] for s in seen] == ["/first", "/second", "/third", "/fourth"]
