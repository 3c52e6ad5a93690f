"""``POST /load`` on the admin port: requests sent from this sidecar as its app would send them,
for ``meshdojo load --from deploy/X`` on a cluster, where nothing but the pod itself reaches the
sidecar's outbound listener.

Each request enters this proxy's own outbound stack in-process — the stack the app's requests go
through after ``HTTP_PROXY``: discovery or egress, the routes and their policies, mutual TLS with
this workload's identity, metrics, fates and tap — so it is counted, tapped and authorized as
the app's would be. The load generator is :mod:`controlplane.loadgen`'s; only one load runs at a
time. Only holders of this sidecar's tap token may ask (the control plane, over mutual TLS:
proxy.admin), and the fields are checked here again (:mod:`controlplane.loadspec`).
"""

from __future__ import annotations

from typing import Any

from controlplane import loadgen
from controlplane.loadspec import MAX_SECONDS, LoadRequestError, parse_from
from proxy.exchange import BytesBody, Handler, Peer, Request
from proxy.http1 import RequestHead

APP = Peer("127.0.0.1:0", False, None)  # as if the app had sent them


class LoadFromHere:
    def __init__(self) -> None:
        self.outbound: Handler | None = None  # set once the outbound stack is built
        self._running = False

    async def __call__(self, body: Any) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer): the summary ``meshdojo load -o json`` prints, or an error."""
        if self.outbound is None:
            return 503, {"error": "this sidecar is still starting: try again in a moment"}
        if self._running:
            return 429, {"error": "a load is already running from this sidecar: wait for it to end"}
        try:
            want = parse_from({**body, "from": {"namespace": "-", "pod": "-"}} if isinstance(body, dict) else body)
        except LoadRequestError as exc:
            return 400, {"error": str(exc)}
        seconds = want["seconds"] if want["seconds"] is not None else MAX_SECONDS  # -n alone: still bounded
        outbound, url = self.outbound, want["url"]
        authority = url[len("http://"):].split("/", 1)[0].split("?", 1)[0]
        headers = [(b"host", authority.encode("latin-1")), (b"user-agent", b"meshdojo-load"),
                   *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in want["headers"].items())]
        if want["method"] in ("POST", "PUT", "PATCH"):  # no body, said as curl -X says it
            headers.append((b"content-length", b"0"))

        async def send() -> tuple[int, str | None]:
            head = RequestHead(want["method"], url, "1.1", list(headers), True, False, 0)
            response = await outbound(Request(head, BytesBody(b""), APP))
            async for _chunk in response.body.chunks():  # read to the end, as the app would
                pass
            return response.status, response.error

        self._running = True
        try:
            result = await loadgen.run(loadgen.Target(url, None, "this sidecar"), want["connections"], want["requests"],
                                       seconds, want["qps"], send=send)
        finally:
            self._running = False
        return 200, loadgen.summary(result)
