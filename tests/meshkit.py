"""A real mesh for tests: the control plane and proxies as processes, apps in the test's loop.

Everything binds to 127.0.0.1 with OS-assigned ports; every process is in its own group with
PDEATHSIG and is killed at teardown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.processes import spawn, stop_group, wait_until


async def eventually(probe, accept, what: str, timeout: float = 5.0):
    """Run ``probe`` until ``accept`` likes its result (returned), or fail after ``timeout``."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if accept(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last saw {result!r}")
        await asyncio.sleep(0.02)


class Cli:
    """The real `meshdojo` command, run against its own MESHDOJO_HOME (a sandbox of the test's own)."""

    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "MESHDOJO_HOME": str(home)}
        self.home = home

    def run(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "sandbox.cli", *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"meshdojo {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def status(self, name: str = "default") -> dict:
        return json.loads(self.run("status", "-o", "json", "--name", name).stdout)


TD = "spiffe://meshdojo.local"


def spiffe(ns: str, sa: str) -> str:
    return f"{TD}/ns/{ns}/sa/{sa}"


@dataclass
class ProxyProc:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    identity: str
    log: Path

    @property
    def outbound(self) -> str:
        return f"http://127.0.0.1:{self.ports['outbound']}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/metrics", timeout=5).read().decode()

    def config(self) -> dict[str, Any]:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/config", timeout=5).read())


class Mesh:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cp: subprocess.Popen[bytes] | None = None

    # -- control plane ---------------------------------------------------------------
    def start_controlplane(self, *args: str) -> None:
        state_file = self.state / "controlplane.json"
        state_file.unlink(missing_ok=True)
        self.cp = spawn([sys.executable, "-m", "controlplane", "--state-dir", str(self.state), *args],
                        self.root / "controlplane.log")
        self.procs.append(self.cp)
        info = wait_until(lambda: self._read_json(state_file), 15, "the control plane to write its state file")
        self.api, self.mesh_url = info["api"], info["mesh"]
        self.admin_token = (self.state / "admin-token").read_text().strip()
        self.anchor = self.state / "ca" / "trust-anchor.crt"

    def kill_controlplane(self) -> None:
        assert self.cp is not None
        self.cp.kill()
        self.cp.wait(10)

    def call(self, method: str, path: str, body: Any = None, token: str | None = "admin") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {self.admin_token if token == 'admin' else token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as rsp:
                return rsp.status, json.loads(rsp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def token(self, ns: str, sa: str, ttl: str = "1h") -> str:
        status, body = self.call("POST", "/v1/tokens", {"namespace": ns, "serviceAccount": sa, "ttl": ttl})
        assert status == 200, body
        return body["token"]

    # -- proxies ---------------------------------------------------------------------
    def start_proxy(self, ns: str, sa: str, app_port: int, *args: str, name: str | None = None,
                    labels: dict[str, str] | None = None, launcher: list[str] | None = None) -> ProxyProc:
        """A proxy for one instance of deployment ``sa`` whose pods carry ``labels`` (default app=<sa>);
        ``launcher`` replaces ``python -m proxy`` (a profiler's wrapper, say)."""
        name = name or f"{sa}-{len(self.procs)}"
        label_args = [arg for k, v in sorted((labels or {"app": sa}).items()) for arg in ("--label", f"{k}={v}")]
        token_file = self.root / f"{name}.token"
        token_file.write_text(self.token(ns, sa))
        token_file.chmod(0o600)
        ports_file = self.root / f"{name}.ports"
        log = self.root / f"{name}.log"
        proc = spawn(
            [*(launcher or [sys.executable, "-m", "proxy"]), "--controlplane", self.mesh_url, "--trust-anchor", str(self.anchor),
             "--namespace", ns, "--service-account", sa, "--token-file", str(token_file), "--app-port", str(app_port),
             "--ports-file", str(ports_file), "--workload", name, "--deployment", sa, *label_args, *args],
            log,
        )
        self.procs.append(proc)

        def ready() -> dict[str, int] | None:
            if proc.poll() is not None:
                raise AssertionError(f"proxy {name} exited with {proc.returncode}:\n{log.read_text()}")
            return self._read_json(ports_file)

        ports = wait_until(ready, 20, f"proxy {name} to listen")
        return ProxyProc(proc, ports, spiffe(ns, sa), log)

    def start_gateway(self, ns: str, front: str, *args: str) -> ProxyProc:
        """An ingress gateway of ``ns`` in front of ``front`` (name.namespace:port), labelled as the
        sandbox's are (Istio's istio: ingressgateway selects it)."""
        return self.start_proxy(ns, "ingress-gateway", 1, "--gateway", front, *args, name="gateway",
                                labels={"app": f"{ns}-ingress", "istio": "ingressgateway"})

    def register(self, ns: str, service: str, endpoint_id: str, port: int, identity: str | None,
                 labels: dict[str, str] | None = None, selector: dict[str, str] | None = None) -> None:
        """An endpoint of ``service``, which selects pods labelled ``selector`` (default app=<service>)."""
        status, body = self.call("PUT", f"/v1/services/{ns}/{service}", {"ports": [8080], "selector": selector or {"app": service}})
        assert status == 200, body
        endpoint = {"address": "127.0.0.1", "port": port, "identity": identity, "meshed": identity is not None,
                    "labels": labels or {}}
        status, body = self.call("PUT", f"/v1/services/{ns}/{service}/endpoints/{endpoint_id}", endpoint)
        assert status == 200, body

    def deregister(self, ns: str, service: str, endpoint_id: str) -> None:
        status, body = self.call("DELETE", f"/v1/services/{ns}/{service}/endpoints/{endpoint_id}")
        assert status == 200, body

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_group(proc, grace=3)

    @staticmethod
    def _read_json(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None
