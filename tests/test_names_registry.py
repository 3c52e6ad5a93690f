"""Cluster-DNS-style names, and the registry's watch events."""

from __future__ import annotations

import pytest

from controlplane.durations import InvalidDuration, parse_duration
from controlplane.names import resolve, split_authority
from controlplane.protocol import Endpoint
from controlplane.registry import WATCH_QUEUE_SIZE, Registry, UnknownService


@pytest.mark.parametrize(("host", "expected"), [
    ("emoji", ("emojivoto", "emoji")),
    ("emoji.emojivoto", ("emojivoto", "emoji")),
    ("emoji.emojivoto.svc", ("emojivoto", "emoji")),
    ("emoji.emojivoto.svc.cluster.local", ("emojivoto", "emoji")),
    ("EMOJI.emojivoto.svc.cluster.local.", ("emojivoto", "emoji")),
    ("reviews.bookinfo", ("bookinfo", "reviews")),
    ("example.com.org", None),
    ("a.b.c", None),
    ("under_score", None),
])
def test_resolve_relative_to_caller(host, expected):
    assert resolve(host, "emojivoto") == expected


def test_split_authority():
    assert split_authority("emoji:8080") == ("emoji", 8080)
    assert split_authority("Emoji") == ("emoji", None)
    with pytest.raises(ValueError):
        split_authority("emoji:99999")


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("2s", 2), ("1m", 60), ("24h", 86400), ("1h30m", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "2 s", "1x", "-1s", "s"])
def test_bad_durations(text):
    with pytest.raises(InvalidDuration, match="expected e.g. 500ms"):
        parse_duration(text)


def ep(port: int, sa: str = "emoji") -> Endpoint:
    return Endpoint("127.0.0.1", port, f"spiffe://meshdojo.local/ns/emojivoto/sa/{sa}")


def drain(watch) -> list:
    events = []
    while not watch.queue.empty():
        events.append(watch.queue.get_nowait())
    return events


async def test_watch_snapshot_then_deltas():
    registry = Registry()
    registry.put_service("emojivoto", "emoji", (8080,))
    with pytest.raises(UnknownService):
        registry.watch("emojivoto", "nope")
    watch = registry.watch("emojivoto", "emoji")
    assert drain(watch) == [{"type": "no_endpoints", "snapshot": True, "service": "emoji.emojivoto.svc.cluster.local"}]
    registry.put_endpoint("emojivoto", "emoji", "emoji-0", ep(1000))
    registry.put_endpoint("emojivoto", "emoji", "emoji-0", ep(1000))  # unchanged: no event
    registry.put_endpoint("emojivoto", "emoji", "emoji-1", ep(1001))
    events = drain(watch)
    assert [e["type"] for e in events] == ["add", "add"]
    assert [e["endpoints"][0]["port"] for e in events] == [1000, 1001]
    later = registry.watch("emojivoto", "emoji")
    snapshot = drain(later)[0]
    assert snapshot["snapshot"] and {e["port"] for e in snapshot["endpoints"]} == {1000, 1001}
    registry.delete_endpoint("emojivoto", "emoji", "emoji-0")
    registry.delete_endpoint("emojivoto", "emoji", "emoji-1")
    assert [e["type"] for e in drain(watch)] == ["remove", "remove", "no_endpoints"]


async def test_slow_watcher_is_cut_off_not_blocking():
    registry = Registry()
    registry.put_service("emojivoto", "emoji", ())
    slow = registry.watch("emojivoto", "emoji")
    for i in range(WATCH_QUEUE_SIZE + 5):
        registry.put_endpoint("emojivoto", "emoji", f"e{i}", ep(2000 + i))
    assert slow.closed and drain(slow) == [None]
    assert registry.watcher_count() == 0


def test_endpoint_json_validation():
    from controlplane.protocol import ProtocolError

    with pytest.raises(ProtocolError, match="identity is required"):
        Endpoint.from_json({"address": "127.0.0.1", "port": 1})
    unmeshed = Endpoint.from_json({"address": "127.0.0.1", "port": 1, "meshed": False, "identity": "x"})
    assert unmeshed.identity is None
    # the port its pod declares, and that port's name (what a Linkerd Server names), round-trip; 0 and "": unknown
    declared = Endpoint("127.0.0.1", 1, "spiffe://meshdojo.local/ns/a/sa/b", pod_port=8080, pod_port_name="http")
    assert Endpoint.from_json(declared.to_json()) == declared and (unmeshed.pod_port, unmeshed.pod_port_name) == (0, "")
    with pytest.raises(ProtocolError, match="podPort must be a port number"):
        Endpoint.from_json({**declared.to_json(), "podPort": 70000})
