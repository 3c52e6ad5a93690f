"""Sending the sandbox's spans to a collector of the learner's own (Jaeger's or Zipkin's
9411), as Istio's distributed tracing task does with its Zipkin provider: a receiver on this
machine, reached as a ServiceEntry's host, named by an ExtensionProvider and a mesh-wide
Telemetry — applied with the learner's commands."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sandbox.processes import wait_until


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict]]]:
    spans: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            spans.extend(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], spans
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(120)
def test_the_sandboxs_spans_reach_a_collector_of_the_learners_own(emojivoto, receiver, tmp_path):
    cli = emojivoto
    port, spans = receiver
    collector = tmp_path / "jaeger.yaml"
    collector.write_text(f"""\
apiVersion: policy.meshdojo.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: jaeger, namespace: meshdojo-system}}
spec:
  hosts: [jaeger.local]
  ports: [{{number: 9411, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
---
apiVersion: policy.meshdojo.dev/v1alpha1
kind: ExtensionProvider
metadata: {{name: jaeger, namespace: meshdojo-system}}
spec:
  zipkin: {{service: jaeger.local, port: 9411}}
---
apiVersion: policy.meshdojo.dev/v1alpha1
kind: Telemetry
metadata: {{name: mesh-default, namespace: meshdojo-system}}
spec:
  tracing: [{{randomSamplingPercentage: 100, providers: [{{name: jaeger}}]}}]
""")
    early = cli.run("apply", "-f", str(collector))
    assert "warning" not in early.stderr, early.stderr
    assert "zipkin http://jaeger.local:9411/api/v2/spans" in cli.run("get", "extensionproviders").stdout

    def services() -> set[str]:
        return {s["localEndpoint"]["serviceName"] for s in spans}

    # the bot's votes: vote-bot -> web -> emoji and voting, each sidecar's spans in one trace
    wait_until(lambda: {"vote-bot.emojivoto", "web.emojivoto", "emoji.emojivoto", "voting.emojivoto"} <= services(), 30,
               "every sidecar's spans at the collector")
    by_id = {s["id"]: s for s in spans}
    children = [s for s in spans if s["localEndpoint"]["serviceName"] == "web.emojivoto" and s["kind"] == "SERVER"]
    assert any(by_id.get(s.get("parentId", ""), {}).get("localEndpoint") == {"serviceName": "vote-bot.emojivoto"} for s in children)
    assert "spans sent to jaeger" in cli.run("describe", "deploy/web").stdout
    cli.run("delete", "-f", str(collector))
