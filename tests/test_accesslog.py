"""Access-log lines, pure: Envoy's default format with its response flags (Istio's
Telemetry accessLogging), and Linkerd's apache and json formats."""

from __future__ import annotations

import json

import pytest

from proxy.accesslog import apache_line, envoy_line, json_line, response_flags
from proxy.exchange import BytesBody, Peer, Request, Response
from proxy.http1 import RequestHead

START = 1_795_000_000.25  # 2026-11-18T11:06:40.250Z


def request(direction: str = "outbound", **fate) -> Request:
    head = RequestHead("GET", "http://emoji:8080/api/list", "1.1",
                       [(b"host", b"emoji:8080"), (b"user-agent", b"curl/8"), (b"x-request-id", b"r-1")], True, False, None)
    req = Request(head, BytesBody(b""), Peer("127.0.0.1:50000", direction == "inbound", "spiffe://meshdojo.local/ns/e/sa/web"
                                             if direction == "inbound" else None))
    req.authority, req.path, req.dst_service, req.dst_namespace = "emoji:8080", "/api/list", "emoji", "e"
    req.fate.direction = direction
    for key, value in fate.items():
        setattr(req.fate, key, value)
    return req


@pytest.mark.parametrize(("error", "fate", "status", "flags"), [
    (None, {}, 200, "-"),
    ("connect_failed", {}, 502, "UF"),
    ("pool_overflow", {}, 503, "UO"),
    ("unknown_service", {}, 502, "NR"),
    ("request_timeout", {}, 504, "UT"),
    (None, {"fault": "abort 503 by e/voting-abort"}, 503, "FI"),
    (None, {"fault": "delay 0.3s by e/slow"}, 200, "DI"),
    (None, {"attempts": ["emoji-0 -> 503", "emoji-1 -> 503"]}, 503, "URX"),
])
def test_envoys_response_flags_say_what_the_sidecar_decided(error, fate, status, flags):
    assert response_flags(request(**fate), Response(status, [], error=error)) == flags


def test_the_envoy_line_has_envoys_fields_in_envoys_order():
    line = envoy_line(request(route="e/emoji-retries#0"), Response(200, [], BytesBody(b"x" * 135)), START, 4)
    assert line == ('[2026-11-18T11:06:40.250Z] "GET /api/list HTTP/1.1" 200 - via_upstream - "-" 0 135 4 - "-" "curl/8" '
                    '"r-1" "emoji:8080" "-" outbound|8080||emoji.e.svc.cluster.local - - 127.0.0.1:50000 - e/emoji-retries#0')
    refused = envoy_line(request("inbound"), Response(403, [], error="authz_denied"), START, 0)
    assert '" 403 - authz_denied - ' in refused and " inbound - - " in refused
    aborted = envoy_line(request("inbound", fault="abort 503 by e/voting-abort"), Response(503, []), START, 0)
    assert '" 503 FI fault_filter_abort - ' in aborted
    outside = request(egress="passthrough: not a Service")
    outside.dst_service = "PassthroughCluster"
    assert " PassthroughCluster - - " in envoy_line(outside, Response(200, []), START, 1)


def test_linkerds_formats():
    rsp = Response(200, [], BytesBody(b"{}"))
    assert apache_line(request("inbound"), rsp, START, 3) == \
        '127.0.0.1 - - [18/Nov/2026:11:06:40 +0000] "GET /api/list HTTP/1.1" 200 2 "-" "curl/8" 3000000'
    fields = json.loads(json_line(request("inbound", trace="4bf9" * 8), rsp, START, 3))
    assert fields["client.id"] == "spiffe://meshdojo.local/ns/e/sa/web" and fields["status"] == 200
    assert fields["trace_id"] == "4bf9" * 8 and fields["uri"] == "/api/list" and fields["total_ns"] == 3_000_000
    assert fields["timestamp"] == "2026-11-18T11:06:40.250000Z"
