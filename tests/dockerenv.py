"""A Docker engine for the `docker` tests, and an offline base image for meshdojo's image.

No registry is reachable from these machines, so nothing can be pulled: the engine is Debian's
``dockerd`` started here (its own socket, data under the cache so image layers survive between
runs, no default bridge: the tests make networks of their own), and the base image is Debian
made with ``debootstrap`` from the mirror apt already uses, then ``docker import``-ed.

Cold cost: debootstrap ≈ 1 min, the first image build ≈ 1 min; warm: seconds (the base and the
dependencies' layer are cached in ``~/.cache/meshdojo/docker``; ``MESHDOJO_DOCKER_CACHE`` moves it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from sandbox.processes import spawn, stop_group, wait_until

BASE_IMAGE = "meshdojo-test/debian-python:bookworm"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv")
TEST_LABEL = "meshdojo-test"


def cache_root() -> Path:
    return Path(os.environ.get("MESHDOJO_DOCKER_CACHE") or Path.home() / ".cache" / "meshdojo" / "docker")


def missing_tools() -> list[str]:
    missing = [tool for tool in ("dockerd", "debootstrap") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root (dockerd and debootstrap need it)")
    return missing


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 ``URIs:`` or a one-line ``deb`` entry)."""
    files = sorted((sources / "sources.list.d").glob("*")) + [sources / "sources.list"]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^\s*URIs:\s*(\S+)|^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            uri = match.group(1) or match.group(2)
            if uri and "security" not in uri and (match.group(3) or SUITE).split("-")[0] == SUITE:
                return uri
    raise RuntimeError(f"no Debian mirror in {sources}/sources.list(.d): debootstrap needs one")


class Engine:
    """``dockerd`` on a socket of its own; stopped (with its containerd) at :meth:`stop`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.socket = run_dir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        data = cache_root() / "data"
        data.mkdir(parents=True, exist_ok=True)
        exec_root = Path("/run") / f"meshdojo-test-docker-{os.getpid()}"  # short: containerd's socket paths have a limit
        self.exec_root = exec_root
        self.proc = spawn(["dockerd", "--host", self.host, "--data-root", str(data), "--exec-root", str(exec_root),
                           "--pidfile", str(self.run_dir / "dockerd.pid"), "--bridge", "none", "--log-level", "warn"],
                          self.run_dir / "dockerd.log")
        client = wait_until(self._ping, 60, f"dockerd to answer (log: {self.run_dir / 'dockerd.log'})", interval=0.2)
        self.remove_leftovers(client)
        client.close()

    def _ping(self):
        import docker

        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"dockerd exited with {self.proc.returncode}:\n{(self.run_dir / 'dockerd.log').read_text()[-2000:]}")
        import socket

        try:  # the socket first: a client made against a dead socket leaks its connection pool
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(self.socket))
        except OSError:
            return None
        client = docker.DockerClient(base_url=self.host, timeout=120)
        try:
            client.ping()
            return client
        except Exception:
            client.close()
            return None

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=300)

    @staticmethod
    def remove_leftovers(client) -> None:
        """Containers and networks a previous run left (a SIGKILLed test run cannot clean up)."""
        for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
            container.remove(force=True)
        for network in client.networks.list(filters={"label": TEST_LABEL}):
            network.remove()

    def stop(self) -> None:
        if self.proc is not None:
            try:
                client = self.client()
                self.remove_leftovers(client)
                client.close()
            except Exception:  # the engine is going away anyway; its containers die with containerd
                pass
            stop_group(self.proc, grace=20)
        shutil.rmtree(getattr(self, "exec_root", self.run_dir / "none"), ignore_errors=True)


def ensure_base_image(client, work: Path) -> str:
    """``BASE_IMAGE`` on the engine: Debian with python3 and venv, made offline by debootstrap."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except ImageNotFound:
        pass
    root = work / "rootfs"
    done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), apt_mirror()],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"debootstrap failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    archive = work / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".")
    client.api.import_image_from_file(str(archive), repository=BASE_IMAGE.split(":")[0], tag=BASE_IMAGE.split(":")[1])
    shutil.rmtree(root, ignore_errors=True)
    archive.unlink()
    client.images.get(BASE_IMAGE)
    return BASE_IMAGE
