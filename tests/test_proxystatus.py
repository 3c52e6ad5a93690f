"""``meshdojo proxy-status``, pure: what each sidecar reports it holds against what the control
plane holds (policy version; each watched service's endpoints, by instance), and a change made
while the sidecars are read, read once more. Against a real sandbox: tests/test_sandbox_observe.py."""

from __future__ import annotations

from sandbox import proxystatus
from sandbox.cpapi import ApiError

EMOJI = {"fqdn": "emoji.emojivoto.svc.cluster.local", "endpoints": {
    "emoji-0": {"address": "127.0.0.1", "port": 4001, "instance": "emoji-0"},
    "emoji-1": {"address": "127.0.0.1", "port": 4002, "instance": "emoji-1"}}}


def _config(version: int, endpoints: list[dict], updated: float = 100.0) -> dict:
    return {"policies": {"version": version, "updatedAt": updated},
            "discovery": {"emoji": {"service": EMOJI["fqdn"], "endpoints": endpoints},
                          "nosuch": {"service": "", "unknown": True, "endpoints": []}}}


def _w(name: str) -> dict:
    return {"name": name, "namespace": "emojivoto"}


def test_a_sidecar_in_step_is_synced_and_one_behind_says_in_what():
    both = list(EMOJI["endpoints"].values())
    relayed = [both[0], {**both[1], "address": "127.0.0.1", "port": 9999}]  # a network fault's relay: same instance
    found = proxystatus.rows(7, [EMOJI], [(_w("web-0"), _config(7, both)), (_w("web-1"), _config(7, relayed)),
                                          (_w("vote-bot-0"), _config(6, both[:1], updated=95.0)), (_w("gone-0"), None)], now=103.0)
    assert [(r["name"], r["policies"], r["endpoints"]) for r in found] == [
        ("web-0", "SYNCED", "SYNCED"), ("web-1", "SYNCED", "SYNCED"), ("vote-bot-0", "STALE", "STALE"),
        ("gone-0", "NOT ANSWERING", "NOT ANSWERING")]
    behind = found[2]
    assert behind["policyVersion"] == 6 and behind["policyAge"] == 8.0
    assert behind["stale"] == [{"service": EMOJI["fqdn"], "name": "emoji", "missing": ["emoji-1"], "extra": []}]
    table = proxystatus.table(found)
    assert table[0] == ("NAME", "NAMESPACE", "POLICIES", "ENDPOINTS", "POLICY UPDATED")
    assert table[1][2:] == ("SYNCED (v7)", "SYNCED (2 services)", "3s ago")
    assert table[3][2:4] == ("STALE (v6, control plane v7)", "STALE: emoji.emojivoto")


class _Api:
    """The operator API as gather reads it: the policy version moves on once, while the sidecars are read."""

    def __init__(self, versions: list[int]) -> None:
        self.versions = versions
        self.reads = 0

    def call(self, method: str, path: str):
        if path.startswith("/v1/policies"):
            self.reads += 1
            return {"version": self.versions[min(self.reads - 1, len(self.versions) - 1)]}
        return {"services": [EMOJI]}


def test_a_change_made_while_the_sidecars_are_read_is_read_again_not_shown_as_stale():
    status = {"workloads": [{**_w("web-0"), "meshed": True}, {**_w("plain-0"), "meshed": False}],
              "gateways": [{"demo": "emojivoto", "admin": 1}]}
    held = iter([6, 7, 7])  # web-0 first holds v6 (the control plane's then), then v7 after a change

    def read(w: dict) -> dict:
        if w["name"] == "emojivoto-ingress":
            raise ApiError(502, {"error": "no answer"})
        return _config(next(held), list(EMOJI["endpoints"].values()))

    api = _Api([6, 7, 7, 7])
    found = proxystatus.gather(api, status, read, clock=lambda: 100.0)
    assert [(r["name"], r["policies"]) for r in found] == [("web-0", "SYNCED"), ("emojivoto-ingress", "NOT ANSWERING")]
    assert found[0]["controlPlaneVersion"] == 7 and api.reads == 4  # read, changed; read again, unchanged
    assert [r["name"] for r in proxystatus.gather(_Api([7]), status, read, namespace="bookinfo")] == []
