"""The local backend's supervisor: one process that outlives ``meshdojo up``.

It starts the control plane, then every replica of every Deployment — the app and, when the
Deployment asks for injection, its sidecar wired through ``HTTP_PROXY`` — plus one ingress
gateway per demo, registers them, and then watches them like a kubelet: a process that exits
is restarted with exponential backoff and its restart count goes up. ``status.json`` says
what is running; SIGTERM stops everything. Children die with the supervisor (PDEATHSIG),
and their process groups are recorded so ``meshdojo down`` can clean up after a SIGKILL.

What it runs is data in :mod:`sandbox.instances`; telling the control plane about it is
:mod:`sandbox.registration`; ``status.json`` is :func:`sandbox.localstatus.status_document`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from controlplane.gatewayapi import GATEWAY_SERVICE_ACCOUNT
from controlplane.statefiles import JsonRecord, private_dir, write_json, write_private
from sandbox import applied, registration
from sandbox.cpapi import OperatorApi
from sandbox.forkserver import ForkServer
from sandbox.instances import (
    BACKOFF_MAX,
    BACKOFF_START,
    GATEWAYS,
    STARTUP_DEADLINE,
    Instance,
    Proc,
    ReadinessProbe,
    gateway_labels,
    gateway_name,
    with_flags,
)
from sandbox.localstatus import status_document
from sandbox.manifests import Demo, Deployment, ManifestError, expand, load_demo
from sandbox.paths import SandboxPaths
from sandbox.ports import accepting, free_port
from sandbox.processes import kill_group, pid_alive, stop_groups

log = logging.getLogger("meshdojo.supervisor")
DEMO_ROOT = Path(__file__).resolve().parent.parent / "demo-apps"


def app_directory(manifest: Path) -> Path:
    """Where an applied Deployment's command runs: the directory of its file, or — for a file
    among the demo apps (demo-apps/extauthz/ext-authz.yaml) — demo-apps itself, as in the image
    (its WORKDIR), so one manifest's command works in both backends."""
    resolved = manifest.resolve()
    return DEMO_ROOT if resolved.is_relative_to(DEMO_ROOT) else resolved.parent
DESIRED_FILE = "desired.json"  # written by `meshdojo scale` / `inject` / `uninject`
# status.json is rewritten when it changes and at least this often: its age tells `meshdojo check`
# whether the supervisor is stuck (it warns at 30 s)
STATUS_HEARTBEAT = 10.0
OWNER_ENV = "MESHDOJO_OWNER_PID"  # set: the sandbox stops once that process is gone (tests set it to their worker)
FORKSERVER_ENV = "MESHDOJO_FORKSERVER"  # "off": every sidecar is started by exec, as before the fork server


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class Supervisor:
    def __init__(self, paths: SandboxPaths, demos: list[Demo], cert_lifetime: str,
                 startup_deadline: float = STARTUP_DEADLINE) -> None:
        self.paths = paths
        self.startup_deadline = startup_deadline  # a sidecar not ready this long after it started is killed
        self.demos = demos
        self.cert_lifetime = cert_lifetime
        self.cp: Proc | None = None
        self.api: OperatorApi | None = None
        self.mesh_url = ""
        self.instances: list[Instance] = []
        self.gateways: dict[str, tuple[Proc, dict[str, int], str]] = {}
        self.stopping = False
        self._desired_stamp: float | None = _mtime(paths.root / DESIRED_FILE)
        self.applied: Demo | None = None  # a learner's own workloads (`meshdojo apply -f app.yaml`)
        self._applied_stamp: float | None = None
        self._relaunch: list[tuple[float, Instance, bool]] = []  # (when, fresh instance, inject)
        self._targets: list[dict] = []
        self._gateways_registered: set[str] = set()
        self.ready = False
        self.started = time.time()
        self._cp_probe = ReadinessProbe()  # the control plane's API port
        # written each round only if something changed: no write (and no fsync) while the sandbox idles
        self._status_file = JsonRecord(paths.status, heartbeat=STATUS_HEARTBEAT)
        self._groups_file = JsonRecord(paths.supervisor)
        # sidecars are forked from one process that has imported the proxy (sandbox.forkserver)
        self.forkserver = ForkServer(paths.logs / "forkserver.log") if os.environ.get(FORKSERVER_ENV) != "off" else None

    # -- start -----------------------------------------------------------------------
    def start(self) -> None:
        private_dir(self.paths.secrets)
        self.tap_token_file = self.paths.secrets / "tap-token"
        if not self.tap_token_file.exists():
            write_private(self.tap_token_file, secrets.token_urlsafe(32))
        private_dir(self.paths.logs)  # logs hold paths and identities: 0700, as the docs say
        private_dir(self.paths.root / "run")
        if self.forkserver is not None:
            self.forkserver.start()  # it imports the proxy while the control plane starts
        self._start_controlplane()
        for demo in self.demos:
            for service in demo.services:
                self.api.put_service(service.namespace, service.name, [p for p, _ in service.ports], dict(service.selector),
                                     service.annotations)
            if demo.name in GATEWAYS:
                self._start_gateway(demo)
        self._reload_applied()
        self.reconcile()  # every sidecar and app starts now; tick() registers each instance once it is ready

    # -- desired state: replicas and injection per deployment ---------------------------
    def desired(self) -> dict[str, dict]:
        """Per ``namespace/deployment``: replicas and inject, from the manifests and ``desired.json``."""
        overrides = {}
        try:
            overrides = json.loads((self.paths.root / DESIRED_FILE).read_text())
        except (OSError, ValueError):
            pass
        result = {}
        for demo in self.all_demos:
            for d in demo.deployments:
                key = f"{d.namespace}/{d.name}"
                want = overrides.get(key, {})
                result[key] = {"deployment": d, "demo": demo, "replicas": want.get("replicas", d.replicas),
                               "inject": want.get("inject", d.inject)}
        return result

    @property
    def all_demos(self) -> list[Demo]:
        return [*self.demos, *([self.applied] if self.applied is not None else [])]

    def services_for(self, d: Deployment) -> list[str]:
        """Every service (a demo's or a learner's) whose selector picks the deployment's pods."""
        return sorted({s.name for demo in self.all_demos for s in demo.services_for(d)})

    def _reload_applied(self) -> None:
        """The learner's applied workloads changed: services registered or removed, instances follow."""
        self._applied_stamp = _mtime(self.paths.root / applied.APPLIED_FILE)
        try:
            new = applied.as_demo(self.paths.root, applied.load(self.paths.root))
        except (ManifestError, ValueError, KeyError, TypeError) as exc:  # `apply` validated it: only a hand edit gets here
            log.warning("ignoring %s: %s", self.paths.root / applied.APPLIED_FILE, exc)
            return
        old = {(s.namespace, s.name): s for s in (self.applied.services if self.applied else ())}
        for service in new.services:
            if old.pop((service.namespace, service.name), None) != service:
                self.api.put_service(service.namespace, service.name, [p for p, _ in service.ports], dict(service.selector),
                                     service.annotations)
        for namespace, name in old:
            self.api.call("DELETE", f"/v1/services/{namespace}/{name}")
        self.applied = new
        for inst in self.instances:  # a new Service may select running instances, a deleted one no longer does
            services = self.services_for(inst.deployment)
            if services != inst.services:
                if inst.registered:
                    registration.deregister(self.api, inst)
                inst.services = services

    def reconcile(self) -> None:
        """Bring instances in line with the desired state, like a ReplicaSet controller."""
        desired = self.desired()
        for inst in [i for i in self.instances if f"{i.deployment.namespace}/{i.deployment.name}" not in desired]:
            self._remove(inst)  # its Deployment was deleted
        self._relaunch = [r for r in self._relaunch if f"{r[1].deployment.namespace}/{r[1].deployment.name}" in desired]
        for key, want in desired.items():
            d: Deployment = want["deployment"]

            def mine() -> list[Instance]:
                pending = [fresh for _when, fresh, _inject in self._relaunch]
                return [i for i in (*self.instances, *pending) if f"{i.deployment.namespace}/{i.deployment.name}" == key]  # noqa: B023

            for inst in mine():  # injection changed: roll the instance, as `linkerd inject` does
                if inst.meshed != want["inject"]:
                    self._remove(inst)
            for inst in sorted(mine(), key=lambda i: i.index)[want["replicas"]:]:
                self._remove(inst)
            used = {i.index for i in mine()}
            index = 0
            while len(mine()) < want["replicas"]:
                while index in used:
                    index += 1
                used.add(index)
                self._launch(Instance(d, index, self.services_for(d)), want["inject"])

    def _launch(self, inst: Instance, inject: bool) -> None:
        self._app_port(inst)
        if inject:
            # the outbound port is chosen here, so the app (whose HTTP_PROXY names it) starts alongside its sidecar
            inst.outbound_port = free_port()
            labels = [arg for k, v in sorted(inst.deployment.labels.items()) for arg in ("--label", f"{k}={v}")]
            policy = inst.deployment.default_inbound_policy  # Linkerd's annotation, handed to the proxy as its injector does
            inst.proxy = self._proxy_proc(inst.name, inst.deployment.namespace, inst.deployment.service_account,
                                          inst.app_port, "--outbound-port", str(inst.outbound_port),
                                          "--deployment", inst.deployment.name, *labels,
                                          # what AuthorizationPolicy's ports read: the containerPort, as on a cluster
                                          *(("--pod-port", str(inst.deployment.container.port)) if inst.deployment.container.port else ()),
                                          *(("--pod-port-name", inst.deployment.container.port_name)
                                            if inst.deployment.container.port_name else ()),
                                          *(("--default-inbound-policy", policy) if policy else ()),
                                          *(("--access-log", inst.deployment.access_log) if inst.deployment.access_log else ()))
            inst.proxy.start()
        inst.app = self._app_proc(inst)
        inst.app.start()
        self.instances.append(inst)

    def _remove(self, inst: Instance) -> None:
        if inst not in self.instances:  # still waiting to be relaunched
            self._relaunch = [r for r in self._relaunch if r[1] is not inst]
            return
        if inst.registered:
            registration.deregister(self.api, inst, forget=True)
        stop_groups([p.popen for p in (inst.app, inst.proxy) if p is not None and p.popen is not None], grace=5)
        self.instances.remove(inst)
        (self.paths.root / "run" / f"{inst.name}.ports").unlink(missing_ok=True)

    def _start_controlplane(self) -> None:
        state = self.paths.controlplane
        (state / "controlplane.json").unlink(missing_ok=True)
        self.cp = Proc("controlplane", self._controlplane_argv(), self.paths.logs / "controlplane.log")
        self.cp.start()
        deadline = time.monotonic() + 20
        while not (state / "controlplane.json").exists():
            if self.cp.exited() or time.monotonic() > deadline:
                last = [line for line in self.cp.log.read_text(errors="replace").splitlines() if line.strip()][-1:]
                raise RuntimeError(f"the control plane did not come up ({last[0] if last else 'no output'}); see {self.cp.log}")
            time.sleep(0.02)
        info = json.loads((state / "controlplane.json").read_text())
        self.mesh_url = info["mesh"]
        self.api = OperatorApi.from_state(state)

    def _app_port(self, inst: Instance) -> int:
        inst.app_port = free_port()
        return inst.app_port

    def _proxy_proc(self, name: str, namespace: str, service_account: str, app_port: int, *extra: str) -> Proc:
        token_file = self.paths.secrets / f"{name}.token"
        write_private(token_file, self.api.token(namespace, service_account))
        run = private_dir(self.paths.root / "run")
        ports_file = run / f"{name}.ports"
        ports_file.unlink(missing_ok=True)
        return Proc("proxy", [
            sys.executable, "-m", "proxy", "--controlplane", self.mesh_url,
            "--trust-anchor", str(self.paths.controlplane / "ca" / "trust-anchor.crt"),
            "--namespace", namespace, "--service-account", service_account, "--token-file", str(token_file),
            "--app-port", str(app_port), "--ports-file", str(ports_file), "--workload", name,
            "--tap-token-file", str(self.tap_token_file), *extra,
        ], self.paths.logs / f"{name}.proxy.log", forkserver=self.forkserver)

    def _app_proc(self, inst: Instance) -> Proc:
        d = inst.deployment
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHDOJO_")}
        env.update(dict(d.container.env))
        env.update({"PORT": str(inst.app_port or self._app_port(inst)), "BIND_HOST": "127.0.0.1",
                    "POD_NAME": inst.name, "PYTHONUNBUFFERED": "1"})
        if inst.proxy is not None:
            env.update({"HTTP_PROXY": f"http://127.0.0.1:{inst.outbound_port}", "NO_PROXY": "127.0.0.1,localhost"})
        # as Kubernetes does, $(VAR) in the command is the container's variable: $(PORT) is the port it must serve
        argv = [sys.executable if part == "python" else expand(part, env) for part in d.container.command]
        cwd = DEMO_ROOT if self.applied is None or d not in self.applied.deployments else app_directory(d.source)
        return Proc("app", argv, self.paths.logs / f"{inst.name}.log", env, cwd=cwd)

    def _start_gateway(self, demo: Demo) -> None:
        service, port, title = GATEWAYS[demo.name]
        namespace = next(s.namespace for s in demo.services if s.name == service)
        name = gateway_name(demo.name)
        labels = [arg for k, v in sorted(gateway_labels(name, demo.name).items()) for arg in ("--label", f"{k}={v}")]
        proc = self._proxy_proc(name, namespace, GATEWAY_SERVICE_ACCOUNT, 1, "--gateway", f"{service}.{namespace}:{port}",
                                "--https-port", "0", "--deployment", name, *labels)
        proc.start()
        self.gateways[demo.name] = (proc, {}, title)

    # -- supervise ----------------------------------------------------------------------
    def tick(self) -> None:
        """One round: restart what exited (with backoff), register what became ready, write status."""
        now = time.monotonic()
        stamp = _mtime(self.paths.root / DESIRED_FILE)
        if stamp != self._desired_stamp:
            self._desired_stamp = stamp
            self.reconcile()
        if _mtime(self.paths.root / applied.APPLIED_FILE) != self._applied_stamp:
            self._reload_applied()
            self.reconcile()
        for when, fresh, inject in [r for r in self._relaunch if r[0] <= now]:
            self._relaunch.remove((when, fresh, inject))
            self._launch(fresh, inject)
        for inst in list(self.instances):
            early = [p for p in (inst.proxy, inst.app) if p is not None and p.exited() and not inst.ever_ready]
            if not early and inst.app is not None and inst.app.exited() and self._port_held_by_another(inst):
                early = [inst.app]  # it never served: the readiness probe reached whoever holds its port
            if early:
                self._relaunch_fresh(inst, early[0], now)
                continue
            for proc in (inst.proxy, inst.app):
                if proc is not None and proc.exited():
                    self._crashed(inst, proc, now)
                if proc is not None and proc.popen is None and now >= proc.next_start:
                    if proc.role == "proxy":
                        (self.paths.root / "run" / f"{inst.name}.ports").unlink(missing_ok=True)
                    proc.start()
                    proc.backoff = min(proc.backoff * 2, BACKOFF_MAX)
            if inst.proxy is not None and inst.proxy.pid and not self._proxy_ready(inst):
                inst.ready = False
                self._kill_if_stuck(inst.proxy, f"{inst.name}'s sidecar", now)
                continue
            app_answers = inst.deployment.container.port is None or inst.app_probe.look(inst.app_port, now, inst.ready)
            app_ok = inst.app is not None and inst.app.pid is not None and app_answers
            inst.ready = app_ok and (inst.proxy is None or inst.proxy.pid is not None)
            inst.ever_ready = inst.ever_ready or inst.ready
            if inst.ready and not inst.registered:
                registration.register(self.api, inst)
        for name, (proc, ports, title) in list(self.gateways.items()):
            if proc.exited():
                log.warning("%s-ingress exited; restarting in %.0fs", name, proc.schedule_restart(now))
                if ports:  # the same ports again: the URLs printed by `up` stay valid; the admin port is new
                    kept = {flag: ports[key] for flag, key in (("--outbound-port", "outbound"), ("--https-port", "https")) if key in ports}
                    proc.argv = with_flags(proc.argv, kept)
                    (self.paths.root / "run" / f"{name}-ingress.ports").unlink(missing_ok=True)
                    self.gateways[name] = (proc, {key: ports[key] for key in ("outbound", "https") if key in ports}, title)
                    self._gateways_registered.discard(name)
            elif proc.popen is None and now >= proc.next_start:
                proc.start()
                proc.backoff = min(proc.backoff * 2, BACKOFF_MAX)
            elif "admin" not in ports:
                file = self.paths.root / "run" / f"{name}-ingress.ports"
                if file.exists():
                    self.gateways[name] = (proc, json.loads(file.read_text()), title)
                else:
                    self._kill_if_stuck(proc, f"{name}-ingress", now)
            elif name not in self._gateways_registered:
                service = GATEWAYS[name][0]
                namespace = next(s.namespace for d in self.demos if d.name == name for s in d.services if s.name == service)
                if registration.register_gateway(self.api, name, namespace, ports):
                    self._gateways_registered.add(name)
        if self.cp is not None:
            if self.cp.exited():
                self._controlplane_exited(now)
            elif self.cp.popen is None and now >= self.cp.next_start:
                self.cp.start()
                self.cp.backoff = min(self.cp.backoff * 2, BACKOFF_MAX)
        self.ready = (all(i.ready for i in self.instances) and not self._relaunch
                      and all(p for _, p, _ in self.gateways.values()))
        self._record_groups(now)
        self._status_file.write(self.status(), now)
        targets = registration.prometheus_targets(self.instances)
        if targets != self._targets:
            self._targets = targets
            registration.write_prometheus_targets(self.paths.root, targets)

    def _kill_if_stuck(self, proc: Proc, what: str, now: float) -> None:
        """A proxy still not listening ``startup_deadline`` after it started is stuck (its own
        bootstrap gives up well before): it is killed, as a kubelet kills a container whose
        startupProbe fails, and the next round restarts it as it restarts any exit."""
        if proc.popen is not None and proc.pid is not None and now - proc.started_at > self.startup_deadline:
            log.warning("%s is not ready %.0fs after it started (pid %d, its log: %s); killing it, to be started again",
                        what, now - proc.started_at, proc.pid, proc.log)
            kill_group(proc.popen)

    def _proxy_ready(self, inst: Instance) -> bool:
        if not inst.ports:
            file = self.paths.root / "run" / f"{inst.name}.ports"
            if not file.exists():
                return False
            try:
                inst.ports = json.loads(file.read_text())
            except ValueError:
                return False
        return True

    @staticmethod
    def _port_held_by_another(inst: Instance) -> bool:
        """The app exited, yet its port still accepts: another process took the port between
        its choosing and the app's binding (the app then fails with "Address already in use"),
        and the readiness probe was answered by that process. Restarting on the same port would
        fail forever."""
        return inst.deployment.container.port is not None and bool(inst.app_port) and accepting(inst.app_port)

    def _relaunch_fresh(self, inst: Instance, proc: Proc, now: float) -> None:
        """A process died before its instance was ever ready (or its app died while another
        process holds its port) — most often a port taken between choosing and binding it. Start
        the whole instance again on fresh ports (at once the first time, then with backoff, so a
        broken command does not spin)."""
        restarts = inst.earlier_restarts + 1
        delay = 0.0 if restarts == 1 else min(BACKOFF_START * 2 ** (restarts - 2), BACKOFF_MAX)
        log.warning("%s %s exited with %s before becoming ready; relaunching the instance on fresh ports in %.0fs (see %s)",
                    inst.name, proc.role, proc.popen.returncode if proc.popen else None, delay, proc.log)
        inject = inst.proxy is not None
        self._remove(inst)
        fresh = Instance(inst.deployment, inst.index, inst.services, earlier_restarts=restarts)
        self._relaunch.append((now + delay, fresh, inject))

    def _crashed(self, inst: Instance, proc: Proc, now: float) -> None:
        code = proc.popen.returncode if proc.popen else None
        log.warning("%s %s exited with %s; restarting in %.0fs", inst.name, proc.role, code, proc.schedule_restart(now))
        if proc.role == "proxy" and inst.ports:
            # same ports again, so the app's HTTP_PROXY and the registered endpoint stay right
            base = list(proc.argv)
            for flag in ("--outbound-port", "--inbound-port", "--admin-port"):
                if flag in base:
                    i = base.index(flag)
                    del base[i:i + 2]
            proc.argv = [*base, "--outbound-port", str(inst.ports["outbound"]), "--inbound-port", str(inst.ports["inbound"]),
                         "--admin-port", str(inst.ports["admin"])]
        inst.ready = False
        if inst.registered:
            registration.deregister(self.api, inst)

    def _controlplane_exited(self, now: float) -> None:
        """Restart it on its old ports with its old state: the proxies reconnect by themselves,
        and serve from what they know until then (static stability)."""
        assert self.cp is not None
        info = json.loads((self.paths.controlplane / "controlplane.json").read_text())
        code = self.cp.popen.returncode if self.cp.popen else None
        log.warning("control plane exited with %s; restarting it on the same ports in %.0fs", code, self.cp.schedule_restart(now))
        self.cp.argv = self._controlplane_argv(info["apiPort"], info["meshPort"])
        self._cp_probe = ReadinessProbe()  # the next one is probed at every round until it answers
        for inst in self.instances:  # endpoints are saved with the registry; telemetry's workloads are not: register again
            inst.registered = False
        self._gateways_registered.clear()

    def _controlplane_argv(self, api_port: int = 0, mesh_port: int = 0) -> list[str]:
        return [sys.executable, "-m", "controlplane", "--state-dir", str(self.paths.controlplane),
                "--cert-lifetime", self.cert_lifetime, "--api-port", str(api_port), "--mesh-port", str(mesh_port)]

    def _procs(self) -> list[Proc]:
        procs = [p for i in self.instances for p in (i.app, i.proxy) if p is not None]
        procs += [g for g, _, _ in self.gateways.values()]
        return procs + ([self.cp] if self.cp else [])

    def _record_groups(self, now: float) -> None:
        groups = {p.popen.pid for p in self._procs() if p.popen is not None}
        if self.forkserver is not None and self.forkserver.popen is not None:
            groups.add(self.forkserver.popen.pid)
        self._groups_file.write({"pid": os.getpid(), "groups": sorted(groups), "started": self.started}, now)

    def status(self) -> dict:
        cp_info = json.loads((self.paths.controlplane / "controlplane.json").read_text())
        now = time.monotonic()
        cp_answers = self.cp is not None and self.cp.pid is not None and self._cp_probe.look(cp_info["apiPort"], now)
        return status_document(self.paths.name, self.ready, os.getpid(), [d.name for d in self.demos], self.cp, cp_info,
                               cp_answers, self.gateways, self.desired(), self.instances, now,
                               self.forkserver.popen.pid if self.forkserver is not None and self.forkserver.alive else None)

    def stop(self) -> None:
        # apps first, then gateways and sidecars (apps never lose their proxy mid-request), then the control plane
        for roles in (("app",), ("gateway", "proxy"), ("controlplane",)):
            stop_groups([p.popen for p in self._procs() if p.popen is not None and p.role in roles], grace=5)
            if roles == ("gateway", "proxy") and self.forkserver is not None:
                self.forkserver.stop()
        self.paths.status.unlink(missing_ok=True)
        self.paths.supervisor.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.supervisor")
    parser.add_argument("--name", required=True)
    parser.add_argument("--demo", required=True)
    parser.add_argument("--cert-lifetime", default="24h")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s supervisor: %(message)s")
    paths = SandboxPaths.for_name(args.name)
    demos = [load_demo(DEMO_ROOT / d) for d in args.demo.split(",") if d]
    supervisor = Supervisor(paths, demos, args.cert_lifetime)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    given = os.environ.get(OWNER_ENV, "")
    owner = int(given) if given.isdigit() else 0  # a test run's worker: the sandbox ends with it, even if it is SIGKILLed
    try:
        supervisor.start()
        while not stop:
            if owner and not pid_alive(owner):
                log.warning("the process that owns this sandbox (pid %d, %s) is gone: stopping", owner, OWNER_ENV)
                break
            supervisor.tick()
            time.sleep(0.1 if not supervisor.ready else 0.5)
    except Exception as exc:
        log.error("sandbox failed: %s", exc)
        write_json(paths.root / "failed.json", {"error": str(exc)})
        return 1
    finally:
        supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
