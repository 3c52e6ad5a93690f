"""``meshdojo check --pre --backend kind|minikube``: what must hold before a cluster can be made,
each failure with its fix. ``up`` runs it first and stops on a failure with the hint.

Every probe is injected (:class:`Probes`), so the checks are pure decisions over what the
machine answered; the defaults ask the machine (the ``docker`` SDK, the tools' own ``version``
commands, /proc, a bind).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.check import FAIL, OK, WARN, Result
from sandbox.kube import providers

MIN_DOCKER_MEMORY = 4 * 1024**3  # kind's and minikube's advice for a control plane plus a few pods
MIN_INOTIFY_WATCHES, MIN_INOTIFY_INSTANCES = 524288, 512  # kind's "known issues": pods fail with "too many open files"


def _docker_info() -> dict[str, Any]:
    from sandbox.kube.image import engine

    return engine().info()


def _read(path: str) -> str:
    return Path(path).read_text()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@dataclass
class Probes:
    docker_info: Callable[[], dict[str, Any]] = _docker_info  # raises ImageError when no engine answers
    which: Callable[[str], str | None] = shutil.which
    run: providers.Runner = providers.run_command
    read: Callable[[str], str] = _read
    port_free: Callable[[int], bool] = _port_free
    extra: dict[str, Any] = field(default_factory=dict)


def asked_once(probes: Probes) -> Probes:
    """The same probes, each question put to the machine once (its answer, or its error, kept):
    for checking kind and minikube one after the other, which share the Docker engine and kubectl."""
    answers: dict[tuple[str, ...], Any] = {}

    def once(key: tuple[str, ...], ask: Callable[[], Any]) -> Any:
        if key not in answers:
            try:
                answers[key] = (ask(), None)
            except Exception as exc:  # the same error again for the next asker
                answers[key] = (None, exc)
        answer, error = answers[key]
        if error is not None:
            raise error
        return answer

    return Probes(docker_info=lambda: once(("docker",), probes.docker_info), which=probes.which,
                  run=lambda argv, timeout: once(tuple(argv), lambda: probes.run(argv, timeout)),
                  read=probes.read, port_free=probes.port_free, extra=probes.extra)


def _version(tool: str, probes: Probes) -> str | None:
    argv = {"kind": ["kind", "version"], "minikube": ["minikube", "version", "--short"],
            "kubectl": ["kubectl", "version", "--client", "-o", "json"]}[tool]
    ran = probes.run(argv, 30)
    if ran.returncode != 0:
        return None
    if tool == "kubectl":
        try:
            return json.loads(ran.stdout)["clientVersion"]["gitVersion"]
        except (ValueError, KeyError):
            return None
    found = re.search(r"v\d+\.\d+\.\d+", ran.stdout)
    return found[0] if found else ran.stdout.strip()[:40]


def checks(kind: str, sandbox: str, probes: Probes | None = None) -> Iterator[Result]:
    """The preflight of ``--backend kind`` or ``minikube``."""
    from sandbox.kube.image import ImageError

    probes = probes or Probes()
    cat = f"{kind}-pre"
    engine_ok = False
    try:
        info = probes.docker_info()
        engine_ok = True
        yield Result(cat, OK, f"Docker engine answers ({info.get('ServerVersion', '?')}, {info.get('OperatingSystem', '?')})")
        memory = int(info.get("MemTotal") or 0)
        if memory >= MIN_DOCKER_MEMORY:
            yield Result(cat, OK, f"Docker has {memory / 1024**3:.1f} GiB of memory")
        else:
            yield Result(cat, FAIL, f"Docker has {memory / 1024**3:.1f} GiB of memory; a cluster needs {MIN_DOCKER_MEMORY // 1024**3} GiB",
                         "give Docker more memory (Docker Desktop → Settings → Resources), or use --backend local")
    except ImageError as exc:
        yield Result(cat, FAIL, "Docker engine answers", str(exc))
    for tool in (kind, "kubectl"):
        if probes.which(tool) is None:
            yield Result(cat, FAIL, f"{tool} is installed", providers.hint_for(tool, sandbox, providers.Ran([tool], 127, "", "")))
            continue
        version = _version(tool, probes)
        if version is None:
            yield Result(cat, FAIL, f"{tool} answers `version`", f"reinstall {tool}: its `version` command fails")
        else:
            yield Result(cat, OK, f"{tool} is installed ({version})")
    if kind == "kind":
        for name, minimum in (("max_user_watches", MIN_INOTIFY_WATCHES), ("max_user_instances", MIN_INOTIFY_INSTANCES)):
            try:
                value = int(probes.read(f"/proc/sys/fs/inotify/{name}").strip())
            except (OSError, ValueError):
                continue  # not Linux (Docker Desktop's VM has its own limits)
            if value >= minimum:
                yield Result(cat, OK, f"fs.inotify.{name} is {value}")
            else:
                yield Result(cat, WARN, f"fs.inotify.{name} is {value} (kind advises {minimum}): pods may fail with "
                                        "'too many open files'", f"sudo sysctl fs.inotify.{name}={minimum}")
    ports = [(demo, host, "") for demo, (_node, host) in providers.GATEWAY_PORTS.items()]
    ports += [(demo, host, "'s TLS port") for demo, (_node, host) in providers.GATEWAY_TLS_PORTS.items()]
    for demo, host, which in ports:
        if probes.port_free(host):
            yield Result(cat, OK, f"host port {host} is free (the {demo} gateway{which})")
        else:
            yield Result(cat, FAIL, f"host port {host} is taken (the {demo} gateway{which} publishes there)",
                         f"stop what listens on it (`ss -ltnp 'sport = :{host}'`), or use --backend local")
    if engine_ok and probes.which(kind) is not None:
        name = providers.cluster_name(sandbox)
        provider = providers.provider_for(kind, sandbox, Path("."), None, probes.run)
        try:
            if provider.exists():
                yield Result(cat, WARN, f"a {kind} cluster named {name} exists: `up` uses it as it is",
                             f"start fresh: {'kind delete cluster --name' if kind == 'kind' else 'minikube delete -p'} {name}")
            else:
                yield Result(cat, OK, f"no {kind} cluster named {name} yet: `up` creates it")
        except providers.ProviderError as exc:
            yield Result(cat, FAIL, f"{kind} lists its clusters", str(exc))


def failures(found: list[Result]) -> list[Result]:
    return [r for r in found if r.verdict == FAIL]
