"""The CLI as a learner scripts it: machine-readable output, exit statuses that mean something,
errors that show the right usage, and `up` saying what it carries over."""

from __future__ import annotations

import argparse
import json
import re
import stat
import subprocess
import sys

import pytest

from sandbox.cli import build_parser
from sandbox.netcli import fault_listing, http_fault_summary
from sandbox.processes import wait_until
from tests.meshkit import Cli


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("meshdojo",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_positional_argument_has_help():
    missing = [f"{' '.join(path)} {a.dest}" for path, p in _parsers(build_parser()) for a in p._actions
               if not a.option_strings and not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert missing == []


def test_an_unknown_option_prints_the_subcommands_usage(tmp_path):
    result = Cli(tmp_path / "home").run("fault", "inject", "emoji", "--abrot", "500", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: meshdojo fault inject") and "unrecognized arguments: --abrot" in result.stderr
    result = Cli(tmp_path / "home").run("stat", "--wide", check=False)
    assert result.returncode == 2 and result.stderr.startswith("usage: meshdojo stat"), result.stderr


def test_fault_listing_is_one_list_of_http_and_network_faults():
    http = [{"document": {"metadata": {"name": "emoji-fault", "namespace": "emojivoto"},
                          "spec": {"targetRef": {"kind": "Service", "name": "emoji"},
                                   "abort": {"httpStatus": 500, "percentage": {"value": 50}},
                                   "delay": {"fixedDelay": "2s", "percentage": {"value": 100}}}},
             "expiresAt": 1300.0},
            {"document": {"metadata": {"name": "emoji-1-fault", "namespace": "emojivoto"},
                          "spec": {"targetRef": {"kind": "Pod", "name": "emoji-1"}, "abort": {"httpStatus": 503}}},
             "expiresAt": None}]
    net = [{"name": "latency-web-emoji", "kind": "latency", "target": {"namespace": "emojivoto"},
            "description": "latency 200ms ± 0ms: deploy/web.emojivoto -> svc/emoji.emojivoto", "remaining_seconds": 59.5},
           {"name": "wire-1", "kind": "wire", "target": {"namespace": "emojivoto"}, "description": "wire: a -> b"}]
    rows = fault_listing(http, net, now=1000.0)
    assert [(r["type"], r["name"], r["target"], r["remaining_seconds"]) for r in rows] == [
        ("http", "faultinjection/emoji-fault", "svc/emoji", 300.0),
        ("http", "faultinjection/emoji-1-fault", "pod/emoji-1", None),
        ("network", "latency-web-emoji", "deploy/web.emojivoto -> svc/emoji.emojivoto", 59.5)]
    assert rows[0]["what"] == "abort 500 on 50% of requests; delay 2s on 100%"
    assert rows[2]["what"] == "latency 200ms ± 0ms"
    assert http_fault_summary({}) == "no fault (neither abort nor delay)"


@pytest.mark.timeout(240)
def test_scriptable_output_and_exit_statuses(emojivoto):
    cli = emojivoto
    root = cli.home / "default"
    for private in ("logs", "run", "tokens", "."):
        assert stat.S_IMODE((root / private).stat().st_mode) == 0o700, private

    # tap -o json: JSON lines only on stdout, its note on stderr; `| head` ends it without a Broken pipe
    tap = subprocess.run(f"{sys.executable} -m sandbox.cli tap deploy/web -o json | head -n 3", shell=True, env=cli.env,
                         capture_output=True, text=True, timeout=60)
    lines = tap.stdout.splitlines()
    assert len(lines) == 3 and all(isinstance(json.loads(line), dict) for line in lines), tap.stdout
    assert "# tapping" in tap.stderr and "Broken pipe" not in tap.stderr and "Traceback" not in tap.stderr, tap.stderr

    top = json.loads(cli.run("top", "deploy/web", "--duration", "2", "-o", "json").stdout)
    assert top and {"source", "destination", "method", "path", "count", "success"} <= set(top[0]), top
    bad = cli.run("top", "deploy/web", "-o", "json", check=False)
    assert bad.returncode == 1 and "--duration" in bad.stderr

    # attack: the meshed service holds (exit 0); unmeshed, plaintext gets in (exit 1) and no TLS is "refused"
    held = cli.run("attack", "svc/emoji", "-o", "json")
    verdicts = {a["attempt"]: a["verdict"] for e in json.loads(held.stdout) for a in e["attempts"]}
    assert held.returncode == 0 and verdicts == {"plaintext": "refused", "foreign-ca": "refused"}, held.stdout

    # fault list: HTTP and network faults with their time left, as a table and as JSON
    assert "no faults in force" in cli.run("fault", "list").stdout
    cli.run("fault", "inject", "voting", "--abort", "500", "--percent", "50")
    cli.run("fault", "net", "latency", "svc/emoji", "--from", "deploy/web", "--latency", "100ms", "--for", "1m")
    faults = json.loads(cli.run("fault", "list", "-o", "json").stdout)["faults"]
    assert [(f["type"], f["name"]) for f in faults] == [("http", "faultinjection/voting-fault"), ("network", "latency-web-emoji")]
    assert 290 < faults[0]["remaining_seconds"] <= 300 and 50 < faults[1]["remaining_seconds"] <= 60
    table = cli.run("fault", "list").stdout
    assert table.splitlines()[0].split() == ["TYPE", "NAME", "NAMESPACE", "TARGET", "WHAT", "LEFT"]
    assert "abort 500 on 50% of requests" in table and "4m5" in table, table
    cli.run("fault", "clear")

    # delete -f of what is not there: exit 1, like 'delete KIND NAME'
    policy = cli.home / "retries.yaml"
    policy.write_text("apiVersion: policy.meshdojo.dev/v1alpha1\nkind: RetryBudget\nmetadata: {name: emoji-budget, namespace: emojivoto}\n"
                      "spec: {targetRef: {kind: Service, name: emoji}, retryRatio: 0.2}\n")
    cli.run("apply", "-f", str(policy))
    assert "deleted" in cli.run("delete", "-f", str(policy)).stdout
    again = cli.run("delete", "-f", str(policy), check=False)
    assert again.returncode == 1 and "emoji-budget" in again.stderr, again.stderr

    # identity prints durations the way the UI does
    ident = cli.run("identity").stdout
    assert re.search(r"\s1[67]h\d\dm\s", ident), ident  # rotation at 70 % of a 24 h certificate, not "60451s"

    # an unmeshed emoji: check warns, attack exits 1, logs --proxy says its log is old
    cli.run("uninject", "emoji")
    wait_until(lambda: not any(w["meshed"] for w in cli.status()["workloads"] if w["deployment"] == "emoji"), 30, "emoji unmeshed")
    report = json.loads(cli.run("check", "-o", "json", check=False).stdout)
    assert any(c["verdict"] == "warning" and "deployment emojivoto/emoji is not meshed" in c["message"] for c in report["checks"]), report
    breached = cli.run("attack", "svc/emoji", "-o", "json", check=False)
    verdicts = {a["attempt"]: a["verdict"] for e in json.loads(breached.stdout) for a in e["attempts"]}
    assert breached.returncode == 1 and verdicts == {"plaintext": "let through", "foreign-ca": "no tls"}, breached.stdout
    logs = cli.run("logs", "deploy/emoji", "--proxy")
    assert "has no sidecar now" in logs.stderr

    # down, then up: it says what it restores; --fresh starts clean
    cli.run("scale", "web", "2")
    cli.run("apply", "-f", str(policy))
    cli.run("down")
    out = cli.run("up", "--no-tui", "--demo", "emojivoto").stdout
    assert "Restoring what the last run" in out and "emojivoto/emoji uninjected (no sidecar)" in out, out
    assert "emojivoto/web scaled to 2" in out and "1 policy resource (RetryBudget)" in out, out
    assert len([w for w in cli.status()["workloads"] if w["deployment"] == "web"]) == 2
    cli.run("down")
    out = cli.run("up", "--no-tui", "--demo", "emojivoto", "--fresh").stdout
    assert "Restoring" not in out
    st = cli.status()
    assert len([w for w in st["workloads"] if w["deployment"] == "web"]) == 1 and all(w["meshed"] for w in st["workloads"])
    assert "emoji-budget" not in cli.run("get").stdout


def test_workloads_may_be_named_the_kubectl_way():
    from sandbox.cli.common import workload_name

    assert [workload_name(t) for t in ("deploy/web", "deployment/web", "pod/web-0", "web", "svc/web", "deploy/")] == [
        "web", "web", "web-0", "web", "svc/web", "deploy/"]
