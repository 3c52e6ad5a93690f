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


def test_the_pod_port_is_a_real_port_and_optional(base, capsys) -> None:
    assert parse_args(base).pod_port is None  # the port a request arrived on, as on a cluster
    assert parse_args([*base, "--pod-port", "9080"]).pod_port == 9080
    for bad in ("0", "70000"):
        with pytest.raises(SystemExit) as exited:
            parse_args([*base, "--pod-port", bad])
        assert exited.value.code == 2 and f"--pod-port: {bad} is not a valid port" in capsys.readouterr().err
    # its name, which a Linkerd Server may give instead of the number
    assert parse_args(base).pod_port_name == "" and parse_args([*base, "--pod-port-name", "http"]).pod_port_name == "http"
    with pytest.raises(SystemExit) as exited:
        parse_args([*base, "--pod-port-name", "HTTP"])
    assert exited.value.code == 2 and "--pod-port-name: 'HTTP' is not a port name" in capsys.readouterr().err
