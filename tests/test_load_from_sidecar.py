"""``meshdojo load --from deploy/X`` on a cluster: the control plane asks X's own sidecar (``POST
/load`` on its admin port, over mutual TLS, its identity checked before the token is sent) to send
the requests through its outbound side as the app would — real proxies, a real control plane.
The same through the test cluster's pods: tests/test_kube_traffic.py."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from controlplane.loadspec import LoadRequestError, parse_from
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply


def test_what_a_load_from_a_sidecar_may_ask_for_is_checked_naming_the_field():
    ok = {"from": {"namespace": "emojivoto", "pod": "web-0"}, "url": "http://emoji.emojivoto:8080/api/list"}
    assert parse_from(ok) == {"namespace": "emojivoto", "pod": "web-0", "url": ok["url"], "connections": 4, "requests": 100,
                              "seconds": None, "qps": 0.0, "headers": {}, "method": "GET"}
    for bad, field in (({**ok, "from": "web"}, "from:"), ({**ok, "url": "https://emoji/"}, "url:"),
                       ({**ok, "url": "http://emoji/ a"}, "url:"), ({**ok, "connections": 0}, "connections:"),
                       ({**ok, "duration": "10m"}, "duration: at most"), ({**ok, "method": "get"}, "method: expected one of GET")):
        with pytest.raises(LoadRequestError, match=f"^{field}"):
            parse_from(bad)


async def test_the_control_plane_asks_a_workloads_own_sidecar_to_send_its_load(mesh: Mesh, echo_port: int):
    web = mesh.start_proxy("emojivoto", "web", echo_port, name="web")  # no --tap-token-file: only the control plane's token
    emoji = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji")
    mesh.register("emojivoto", "emoji", "emoji-0", emoji.ports["inbound"], spiffe("emojivoto", "emoji"))
    for pod, identity in (("web-0", spiffe("emojivoto", "web")), ("web-1", spiffe("emojivoto", "vote-bot"))):  # web-1: an impostor
        assert mesh.call("PUT", f"/v1/workloads/emojivoto/{pod}", {"deployment": "web", "identity": identity,
                                                                    "admin": web.ports["admin"]})[0] == 200

    def load(**body) -> tuple[int, dict]:
        return mesh.call("POST", "/v1/load", {"from": {"namespace": "emojivoto", "pod": "web-0"}, **body})

    status, body = await asyncio.to_thread(load, url="http://emoji/api/list", requests=12, connections=3,
                                           headers={"end-user": "jason"})
    assert status == 200, body
    assert body["summary"]["codes"] == {"200": {"count": 12, "share": 1.0}} and body["summary"]["concurrency"] == 3
    assert body["via"] == f"web-0's sidecar (identity {spiffe('emojivoto', 'web')})"
    # they left with web's identity, over mutual TLS, and web's sidecar counted them as its app's
    served = emoji.metrics()
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in served.splitlines() if ln.startswith("request_total{")
               and 'direction="inbound"' in ln and f'client_id="{spiffe("emojivoto", "web")}"' in ln) >= 12
    sent = web.metrics()
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in sent.splitlines() if ln.startswith("request_total{")
               and 'direction="outbound"' in ln and 'dst_service="emoji"' in ln) >= 12
    # a host outside the mesh, from the sidecar (egress: passed through), and a name that is nothing: the sidecar's answer
    status, body = await asyncio.to_thread(load, url=f"http://127.0.0.1:{echo_port}/outside", requests=3)
    assert status == 200 and body["summary"]["codes"] == {"200": {"count": 3, "share": 1.0}}, body
    status, body = await asyncio.to_thread(load, url="http://nosuch/", requests=2)
    assert body["summary"]["codes"] == {"502": {"count": 2, "share": 1.0}} and body["summary"]["errors"] == {"unknown_service": 2}
    # another method, without a body (curl -X): emoji's sidecar sees it, as a DENY of POSTs shows
    apply(mesh, {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "AuthorizationPolicy",
                 "metadata": {"name": "no-posts", "namespace": "emojivoto"},
                 "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]}})
    await until(lambda: asyncio.to_thread(load, url="http://emoji/api/vote", requests=2, method="POST"),
                lambda r: r[1]["summary"]["codes"] == {"403": {"count": 2, "share": 1.0}}, "emoji's sidecar to deny the POSTs")
    status, body = await asyncio.to_thread(load, url="http://emoji/api/list", requests=2)
    assert body["summary"]["codes"] == {"200": {"count": 2, "share": 1.0}}, body
    assert mesh.call("DELETE", "/v1/policies/AuthorizationPolicy/emojivoto/no-posts")[0] == 200
    # for a time rather than a count
    status, body = await asyncio.to_thread(load, url="http://emoji/", duration="500ms", connections=1)
    assert status == 200 and body["summary"]["requests"] > 0 and 0.4 < body["summary"]["seconds"] < 5, body

    # a sidecar that presents another identity than the control plane knows for the pod: not asked
    status, body = await asyncio.to_thread(mesh.call, "POST", "/v1/load", {"from": {"namespace": "emojivoto", "pod": "web-1"},
                                                                          "url": "http://emoji/"})
    assert status == 502 and f"presented {spiffe('emojivoto', 'web')}, not {spiffe('emojivoto', 'vote-bot')}" in body["error"]
    status, body = await asyncio.to_thread(mesh.call, "POST", "/v1/load", {"from": {"namespace": "emojivoto", "pod": "nosuch-0"},
                                                                          "url": "http://emoji/"})
    assert status == 404 and "no sidecar the control plane can reach" in body["error"]
    status, body = await asyncio.to_thread(load, url="emoji/")
    assert status == 400 and body["error"].startswith("url:")

    # the admin port itself: POST /load needs the token, like tap
    assert await asyncio.to_thread(_post_load_with_a_guessed_token, web.ports["admin"]) == 401


def _post_load_with_a_guessed_token(admin_port: int) -> int:
    asked = urllib.request.Request(f"http://127.0.0.1:{admin_port}/load", method="POST",
                                   data=json.dumps({"url": "http://emoji/"}).encode(), headers={"Authorization": "Bearer guessed"})
    try:
        with urllib.request.urlopen(asked, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        refused.close()
        return refused.code
