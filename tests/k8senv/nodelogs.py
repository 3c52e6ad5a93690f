"""The one part of a kubelet's API the tests need: container logs.

``kubectl logs`` (and meshdojo's ``logs`` on a cluster) asks the API server, which asks the pod's
node at ``https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/NS/POD/CONTAINER``.
kwok's nodes have no kubelet, so the test cluster points both nodes here (127.0.0.1, this
server's port): a TLS server with a certificate from the cluster's CA that only answers the API
server's kubelet-client certificate, and serves the log files the pod runner
(tests/k8senv/pods.py) registers. A container nobody registered is a 404, as a kubelet's answer
for a container that never ran.
"""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FOLLOW_POLL = 0.1  # how often a followed log is looked at for new lines


class NodeLogs:
    def __init__(self, cert: Path, key: Path, client_ca: Path) -> None:
        self.files: dict[tuple[str, str, str], Path] = {}  # (namespace, pod, container) -> its log
        self._closing = threading.Event()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED  # the API server's kubelet-client certificate, nobody else
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="node-logs", daemon=True)

    def start(self) -> NodeLogs:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        logs = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # the test's output stays quiet
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                path = logs.files.get(tuple(parts[1:4])) if len(parts) == 4 and parts[0] == "containerLogs" else None
                if path is None:
                    self.send_error(404, "container not found (nothing ran it)")
                    return
                follow = parse_qs(url.query).get("follow", ["false"])[0] == "true"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                try:
                    self._send(path, follow)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def _send(self, path: Path, follow: bool) -> None:
                with open(path, "rb") as log:
                    while True:
                        chunk = log.read(64 * 1024)
                        if chunk:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        elif not follow or logs._closing.is_set():
                            return
                        else:
                            time.sleep(FOLLOW_POLL)

        return Handler
