"""The proxy's command line: what it refuses, before anything listens."""

from __future__ import annotations

import datetime as dt

import pytest

from controlplane import ca
from proxy.config import parse_args


@pytest.fixture
def base(tmp_path):
    anchor = tmp_path / "anchor.crt"
    anchor.write_text(ca.cert_pem(ca.make_trust_anchor(dt.datetime.now(dt.UTC)).certificate))
    token = tmp_path / "token"
    token.write_text("t")
    return ["--controlplane", "https://127.0.0.1:1", "--trust-anchor", str(anchor), "--namespace", "ns",
            "--service-account", "sa", "--token-file", str(token), "--app-port", "8080"]


def test_only_a_gateway_listens_beyond_loopback_for_outbound(base, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args([*base, "--outbound-address", "0.0.0.0"])
    assert exited.value.code == 2
    assert "only a gateway (--gateway) listens beyond loopback" in capsys.readouterr().err
    assert parse_args(base).outbound_address == "127.0.0.1"
    gateway = parse_args([*base, "--outbound-address", "0.0.0.0", "--gateway", "web.emojivoto:80"])
    assert (gateway.outbound_address, gateway.gateway) == ("0.0.0.0", "web.emojivoto:80")
