"""The UI's word on a gateway's TLS: its certificates on the Security screen (``meshdojo get
secrets``: hosts, time left, client CA, who uses each) and its refused connections in
Topology's detail of the gateway."""

from __future__ import annotations

import datetime as dt
import time

from textual.widgets import DataTable

from tests.test_tui import app
from tui import render


def test_a_gateways_node_says_how_many_tls_clients_it_refused_and_where_to_read_why():
    row = {"namespace": "bookinfo", "name": "bookinfo-ingress", "meshed": "1/1", "success_rate": None, "rps": 0.0,
           "latency_ms": {"p50": None, "p95": None, "p99": None}, "tcp_conn": 0, "mtls_share": None, "not_answering": []}
    assert "TLS refused" not in render.node_detail(row, [])
    shown = render.node_detail({**row, "tls_refused": {"no_client_certificate": 10}}, [], "ws")
    assert "TLS refused: 10 (no_client_certificate 10) (meshdojo logs bookinfo-ingress --name ws says why)" in shown
    assert "rate limited" not in shown
    limited = render.node_detail({**row, "rate_limited": {"emojivoto/web-http": 6}}, [])  # a deployment's 429s, per rate limit
    assert "rate limited (429): 6 (emojivoto/web-http 6)" in limited


async def test_the_security_screen_lists_the_gateways_certificates_with_their_client_ca():
    ui = app()
    async with ui.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        table = ui.query_one("#gateway-certs", DataTable)
        data = {"trust_anchor": {"subject": "CN=anchor", "notAfter": "2036-01-01T00:00:00"},
                "issuer": {"subject": "CN=issuer", "notAfter": "2027-01-01T00:00:00"}, "policy_version": 3, "workloads": []}
        ui.pane().show_identities({**data, "gateway_certificates": []})
        await pilot.pause()
        assert "meshdojo create secret tls" in str(table.get_row_at(0)[1])  # none yet: how to make one
        soon = dt.datetime.fromtimestamp(time.time() + 3 * 86400 + 60, dt.UTC).isoformat()
        ui.pane().show_identities({**data, "gateway_certificates": [
            {"namespace": "bookinfo", "name": "bookinfo-credential", "type": "Opaque", "hosts": ["bookinfo.example.com"],
             "notAfter": soon, "clientCA": "CN=example.com,O=example Inc.", "usedBy": ["bookinfo/bookinfo-gateway:https"]}]})
        await pilot.pause()
        assert [str(c) for c in table.get_row_at(0)] == ["bookinfo/bookinfo-credential", "bookinfo.example.com", "3d0h",
                                                          "CN=example.com,O=example Inc.", "bookinfo/bookinfo-gateway:https"]
