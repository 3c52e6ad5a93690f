"""``meshdojo diagnostics endpoints``, pure: which service a target names, and the table."""

from __future__ import annotations

import pytest

from sandbox.diagnostics import HEADER, rows, service_named

SERVICES = [{"namespace": "emojivoto", "name": "emoji", "endpoints": {
    "e1": {"address": "10.0.0.7", "port": 8080, "identity": "spiffe://meshdojo.local/ns/emojivoto/sa/emoji", "meshed": True,
           "instance": "emoji-1"},
    "e0": {"address": "10.0.0.6", "port": 8080, "identity": "spiffe://meshdojo.local/ns/emojivoto/sa/emoji", "meshed": True,
           "instance": "emoji-0"}}},
    {"namespace": "emojivoto", "name": "legacy", "endpoints": {"x": {"address": "10.0.0.9", "port": 80, "identity": None,
                                                                      "meshed": False, "instance": "legacy-0"}}},
    {"namespace": "bookinfo", "name": "ratings", "endpoints": {}}]


def test_a_target_names_a_service_as_linkerd_takes_it():
    assert service_named("svc/emoji", None) == (None, "emoji")  # the namespace found by name
    assert service_named("svc/emoji", "emojivoto") == ("emojivoto", "emoji")
    assert service_named("emoji.emojivoto.svc.cluster.local:8080", None) == ("emojivoto", "emoji")
    assert service_named("emoji.emojivoto", None) == ("emojivoto", "emoji")
    assert service_named("emoji", "emojivoto") == ("emojivoto", "emoji")
    for bad in ("emoji.emojivoto.svc.cluster.local:http", "a.b.c.d"):
        with pytest.raises(ValueError, match="expected svc/NAME or a service's name"):
            service_named(bad, None)


def test_the_table_names_each_pod_and_the_identity_a_caller_checks():
    assert rows(SERVICES, "emojivoto", "emoji") == [
        HEADER,
        ("emojivoto", "10.0.0.6", "8080", "emoji-0", "emoji.emojivoto", "spiffe://meshdojo.local/ns/emojivoto/sa/emoji"),
        ("emojivoto", "10.0.0.7", "8080", "emoji-1", "emoji.emojivoto", "spiffe://meshdojo.local/ns/emojivoto/sa/emoji")]
    assert rows(SERVICES, "emojivoto", "legacy")[1][-1] == "-"  # no sidecar: plaintext, no identity to check
    assert rows(SERVICES, "bookinfo", "ratings") == [HEADER]  # "No endpoints found."
    with pytest.raises(ValueError, match="no service nope.emojivoto; the services are emoji.emojivoto, legacy.emojivoto"):
        rows(SERVICES, "emojivoto", "nope")
