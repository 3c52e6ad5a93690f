"""Two watches the cluster control-plane test reads (tests/test_kube_controlplane.py): a proxy's
discovery watch on the mesh API, and the test's own watch of a Service's EndpointSlices — each
event with the time it arrived, so the test can say which saw a change first."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time

from kubernetes import client

from tests.kube_plane import NS, Plane


class MeshWatch:
    """A proxy's discovery watch (mutual TLS with its certificate), in a thread: each event with its arrival time."""

    def __init__(self, plane: Plane, identity: str, key_pem: str, chain_pem: str, service: str) -> None:
        ctx = ssl.create_default_context(cafile=str(plane.anchor))
        ctx.check_hostname = False
        from controlplane.sslcontext import load_chain

        load_chain(ctx, chain_pem, key_pem)
        host, port = plane.mesh.mesh_url.removeprefix("https://").split(":")
        self.conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
        self.conn.request("GET", f"/v1/watch?name={service}")
        self.rsp = self.conn.getresponse()
        assert self.rsp.status == 200
        self.events: list[tuple[float, dict]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.rsp:
                if line.strip():
                    self.events.append((time.monotonic(), json.loads(line)))
        except Exception:
            pass

    def close(self) -> None:
        self.conn.close()


def addresses_of(event: dict) -> set[str]:
    return {e["address"] for e in event.get("endpoints", [])}


class SliceWatch:
    """The test's own watch of emoji's EndpointSlices: when each set of ready addresses appeared."""

    def __init__(self, plane: Plane) -> None:
        from kubernetes import watch

        self._watch = watch.Watch()
        self._discovery = client.DiscoveryV1Api(plane.api)
        self.seen: list[tuple[float, set[str]]] = []
        self._slices: dict[str, set[str]] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch.stream(self._discovery.list_namespaced_endpoint_slice, NS,
                                            label_selector="kubernetes.io/service-name=emoji", timeout_seconds=300):
                s = event["object"]
                ready = {a for ep in s.endpoints or [] if ep.conditions.ready for a in ep.addresses}
                if event["type"] == "DELETED":
                    self._slices.pop(s.metadata.name, None)
                else:
                    self._slices[s.metadata.name] = ready
                self.seen.append((time.monotonic(), set().union(*self._slices.values())))
        except Exception:
            pass

    def when(self, addresses: set[str]) -> float | None:
        return next((t for t, seen in reversed(self.seen) if seen == addresses), None)

    def stop(self) -> None:
        self._watch.stop()


def watch_state(watch: MeshWatch) -> set[str]:
    """The endpoint set the watch's events add up to (snapshots replace, add/remove change)."""
    state: set[str] = set()
    for _, event in watch.events:
        if event.get("snapshot"):
            state = addresses_of(event)
        elif event["type"] == "add":
            state |= addresses_of(event)
        elif event["type"] == "remove":
            state -= addresses_of(event)
        elif event["type"] == "no_endpoints":
            state = set()
    return state
