"""The intruder against STRICT, PERMISSIVE and DENY, through real proxies."""

from __future__ import annotations

import asyncio

from controlplane.intruder import attack_endpoint, classify
from tests.meshkit import Mesh
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc


def verdicts(outcomes) -> dict[str, str]:
    return {o.attempt: o.verdict for o in outcomes}


def test_classify_is_pure():
    assert classify("plaintext", b"", None).verdict == "refused"
    assert classify("plaintext", b"HTTP/1.1 200 OK\r\n\r\n", None).verdict == "let through"
    denied = classify("plaintext", b"HTTP/1.1 403 Forbidden\r\n\r\nmeshdojo: denied by AuthorizationPolicy ns/p\n", None)
    assert denied.verdict == "denied" and "ns/p" in denied.lesson
    assert "no sidecar" in classify("plaintext", b"HTTP/1.1 200 OK\r\n\r\n", None, meshed=False).lesson


async def test_attack_outcomes_for_strict_permissive_and_deny(mesh: Mesh, echo_port: int):
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji")
    anchor = mesh.anchor.read_text()
    port = server.ports["inbound"]
    strict = await asyncio.to_thread(attack_endpoint, "127.0.0.1", port, anchor)
    assert verdicts(strict) == {"plaintext": "refused", "foreign-ca": "refused"}
    assert "trust anchor" in strict[1].lesson

    apply(mesh, doc("MeshTLS", "open", {"mode": "PERMISSIVE"}))
    permissive = await until(lambda: asyncio.to_thread(attack_endpoint, "127.0.0.1", port, anchor),
                             lambda o: verdicts(o)["plaintext"] == "let through", "PERMISSIVE")
    assert verdicts(permissive)["foreign-ca"] == "refused"  # PERMISSIVE still verifies certificates
    assert 'tls="no_identity"' in server.metrics()

    apply(mesh, doc("AuthorizationPolicy", "no-strangers", {"action": "DENY", "rules": [{"from": [{"source": {"unauthenticated": True}}]}]}))
    denied = await until(lambda: asyncio.to_thread(attack_endpoint, "127.0.0.1", port, anchor),
                         lambda o: verdicts(o)["plaintext"] == "denied", "the DENY")
    assert "emojivoto/no-strangers" in denied[0].lesson
