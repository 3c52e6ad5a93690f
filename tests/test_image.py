"""meshdojo's image, built and run for real: built through the ``docker`` SDK on a base made
offline, then the control plane, two sidecars and two demo apps run from it as containers on a
Docker network of the test's own. A request crosses containers over mutual TLS, identity and
discovery work across real IP addresses, and stopping the control plane fails no request."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import urllib.request

import pytest

from sandbox.kube import image
from sandbox.processes import WaitTimeout, wait_until
from tests.dockerenv import TEST_LABEL, Engine, ensure_base_image

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

UID = 2103
NS = "emojivoto"
TD = "spiffe://meshdojo.local"
INBOUND, OUTBOUND, ADMIN, APP = 4143, 4140, 4191, 8080


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    eng = Engine(tmp_path_factory.mktemp("docker"))
    try:
        eng.start()
        yield eng
    finally:
        eng.stop()


@pytest.fixture(scope="module")
def built(engine, tmp_path_factory):
    client = engine.client()
    base = ensure_base_image(client, tmp_path_factory.mktemp("base"))
    # the learner's command, on the engine the test started
    done = subprocess.run([sys.executable, "-m", "sandbox.cli", "images", "build", "--base", base], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "DOCKER_HOST": engine.host})
    assert done.returncode == 0, done.stdout + done.stderr
    tag = image.image_ref()
    yield client, tag, client.images.get(tag).id, done.stdout.splitlines(), engine.host
    client.close()


def test_the_image_is_built_through_the_sdk_with_its_steps_shown(built) -> None:
    client, tag, image_id, output, _ = built
    assert re.fullmatch(r"meshdojo/meshdojo:\d+\.\d+\.\d+-[0-9a-f]{12}", tag) and not tag.endswith(":latest")
    steps = [line for line in output if re.match(r"\[\s*[\d.]+s\] step \d+/\d+: ", line)]
    assert steps and "step 1/" in steps[0] and any("FROM ${BASE}" in line for line in steps), output
    assert output[-1].startswith(f"Built {tag} ({image_id[:19]})"), output[-1]
    config = client.images.get(tag).attrs["Config"]
    assert config["User"] == f"{UID}:{UID}"  # non-root, the same uid the control plane's Deployment runs as
    # every entry point the manifests use is in it, run as that user
    out = client.containers.run(tag, ["sh", "-c", "id -u; meshdojo --help | head -1; python emojivoto/app.py nope; echo rc=$?"],
                                remove=True, network_mode="none", labels={TEST_LABEL: ""}).decode()
    assert out.splitlines()[0] == str(UID) and "usage: meshdojo" in out and "rc=" in out


def test_a_missing_base_is_refused_with_the_fix(built, tmp_path) -> None:
    client, *_ = built
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    with pytest.raises(image.ImageError, match=r"not on this engine and cannot be pulled.*--base IMAGE"):
        image.build(client, context, "meshdojo-test/nothing:1", "meshdojo-test/absent:1")


def test_save_and_load_round_trip(built, tmp_path) -> None:
    client, tag, image_id, _, docker_host = built
    archive = tmp_path / "meshdojo.tar"
    done = subprocess.run([sys.executable, "-m", "sandbox.cli", "images", "save", str(archive)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "DOCKER_HOST": docker_host})
    assert done.returncode == 0 and f"Saved {tag} to {archive}" in done.stdout, done.stdout + done.stderr
    assert archive.stat().st_size > 50_000_000 and tarfile.is_tarfile(archive)
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == [tag]
    assert image.load(client, archive) == [tag]
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    with pytest.raises(image.ImageError, match="not an image archive"):
        image.load(client, bad)


# -- the mesh in containers --------------------------------------------------------------------

def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, UID, UID
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _exec(container, *argv: str) -> str:
    code, out = container.exec_run(list(argv))
    assert code == 0, out.decode(errors="replace")
    return out.decode()


def _http(method: str, url: str, body=None, token: str | None = None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as rsp:
        return json.loads(rsp.read() or b"null")


class ContainerMesh:
    def __init__(self, client, tag: str) -> None:
        self.client, self.tag = client, tag
        self.network = client.networks.create(f"meshdojo-test-{os.getpid()}", driver="bridge", labels={TEST_LABEL: ""})
        self.containers: list = []

    def run(self, name: str, command: list[str], files: dict[str, tuple[bytes, int]] | None = None, **kwargs):
        if "network_mode" not in kwargs:
            kwargs["network"] = self.network.name
        container = self.client.containers.create(self.tag, command, name=f"{name}-{os.getpid()}", labels={TEST_LABEL: ""},
                                                  detach=True, **kwargs)
        self.containers.append(container)
        if files:
            container.put_archive("/tmp", _tar(files))
        container.start()
        return container

    def ip(self, container) -> str:
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"]

    def logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.logs(tail=30).decode(errors='replace')}" for c in self.containers)

    def close(self) -> None:
        for container in reversed(self.containers):
            container.remove(force=True)
        self.network.remove()


@pytest.fixture
def container_mesh(built):
    client, tag, *_ = built
    mesh = ContainerMesh(client, tag)
    try:
        yield mesh
    finally:
        mesh.close()


def test_the_mesh_runs_from_the_image_across_containers(container_mesh: ContainerMesh) -> None:
    m = container_mesh
    cp = m.run("controlplane", ["meshdojo", "controlplane", "--state-dir", "/tmp/state", "--host", "0.0.0.0", "--relay-address", "controlplane",
                                "--api-port", "8085", "--mesh-port", "8086"], hostname="controlplane")

    def started():
        code, out = cp.exec_run(["cat", "/tmp/state/controlplane.json"])
        return out if code == 0 else None

    try:
        wait_until(started, 60, "the control plane's state file")
    except WaitTimeout:
        pytest.fail(m.logs())
    api = f"http://{m.ip(cp)}:8085"
    admin = _exec(cp, "cat", "/tmp/state/admin-token").strip()
    anchor = _exec(cp, "cat", "/tmp/state/ca/trust-anchor.crt").encode()

    pods = {}
    for sa, role in (("emoji", "emoji"), ("web", "web")):
        token = _http("POST", f"{api}/v1/tokens", {"namespace": NS, "serviceAccount": sa, "ttl": "1h"}, admin)["token"]
        sidecar = m.run(f"{sa}-proxy", [
            "meshdojo", "proxy", "--controlplane", "https://controlplane:8086", "--trust-anchor", "/tmp/anchor.crt",
            "--namespace", NS, "--service-account", sa, "--token-file", "/tmp/token", "--app-port", str(APP),
            "--inbound-address", "0.0.0.0", "--inbound-port", str(INBOUND), "--outbound-port", str(OUTBOUND),
            "--admin-address", "0.0.0.0", "--admin-port", str(ADMIN), "--workload", f"{sa}-0", "--deployment", sa,
            "--label", f"app={sa}"], files={"anchor.crt": (anchor, 0o644), "token": (token.encode(), 0o600)})
        app = m.run(sa, ["python", "emojivoto/app.py", role], network_mode=f"container:{sidecar.id}",
                    environment={"PORT": str(APP), "BIND_HOST": "127.0.0.1", "HTTP_PROXY": f"http://127.0.0.1:{OUTBOUND}", "NO_PROXY": "127.0.0.1,localhost",
                                 "EMOJI_ADDR": f"emoji.{NS}:{APP}", "VOTING_ADDR": f"voting.{NS}:{APP}"})
        pods[sa] = (sidecar, app, m.ip(sidecar))
        # discovery: the endpoint is the sidecar's inbound listener on the container's own address
        _http("PUT", f"{api}/v1/services/{NS}/{sa}", {"ports": [APP], "selector": {"app": sa}}, admin)
        _http("PUT", f"{api}/v1/services/{NS}/{sa}/endpoints/{sa}-0",
              {"address": pods[sa][2], "port": INBOUND, "identity": f"{TD}/ns/{NS}/sa/{sa}", "meshed": True,
               "labels": {"app": sa}}, admin)

    def ready(ip: str):
        try:
            return urllib.request.urlopen(f"http://{ip}:{ADMIN}/ready", timeout=2).status == 200
        except OSError:
            return None

    try:
        for sa in pods:
            wait_until(lambda sa=sa: ready(pods[sa][2]), 60, f"{sa}'s proxy to be ready")
    except WaitTimeout:
        pytest.fail(m.logs())

    web_app = pods["web"][1]
    fetch = ["python", "-c", "import urllib.request as u, sys; r = u.urlopen('http://127.0.0.1:8080/api/list', timeout=10); "
             "sys.stdout.write(str(r.status) + ' ' + r.read().decode())"]

    def listed():
        code, out = web_app.exec_run(fetch)
        return out.decode() if code == 0 and out.startswith(b"200 ") else None

    try:
        body = wait_until(listed, 30, "web to list the emojis through the mesh")
    except WaitTimeout:
        pytest.fail(m.logs())
    assert "doughnut" in body

    # mutual TLS across real addresses: emoji's proxy saw web's identity on a TLS connection
    emoji_metrics = urllib.request.urlopen(f"http://{pods['emoji'][2]}:{ADMIN}/metrics", timeout=5).read().decode()
    inbound = [line for line in emoji_metrics.splitlines() if line.startswith("request_total{") and 'direction="inbound"' in line]
    assert any('tls="true"' in line and f'client_id="{TD}/ns/{NS}/sa/web"' in line for line in inbound), inbound
    web_config = json.loads(urllib.request.urlopen(f"http://{pods['web'][2]}:{ADMIN}/config", timeout=5).read())
    assert f"{TD}/ns/{NS}/sa/web" in json.dumps(web_config)

    # the ingress gateway, from the same image: the learner's request enters the mesh there, from outside the network
    token = _http("POST", f"{api}/v1/tokens", {"namespace": NS, "serviceAccount": "ingress-gateway", "ttl": "1h"}, admin)["token"]
    gateway = m.run("ingress", [
        "meshdojo", "proxy", "--controlplane", "https://controlplane:8086", "--trust-anchor", "/tmp/anchor.crt",
        "--namespace", NS, "--service-account", "ingress-gateway", "--token-file", "/tmp/token", "--app-port", str(APP),
        "--gateway", f"web.{NS}:{APP}", "--outbound-address", "0.0.0.0", "--outbound-port", str(OUTBOUND),
        "--admin-address", "0.0.0.0", "--admin-port", str(ADMIN), "--workload", "ingress-0"],
        files={"anchor.crt": (anchor, 0o644), "token": (token.encode(), 0o600)})
    gateway_ip = m.ip(gateway)
    wait_until(lambda: ready(gateway_ip), 60, "the gateway to be ready")
    page = urllib.request.urlopen(f"http://{gateway_ip}:{OUTBOUND}/api/list", timeout=10)
    assert page.status == 200 and "doughnut" in page.read().decode()
    web_metrics = urllib.request.urlopen(f"http://{pods['web'][2]}:{ADMIN}/metrics", timeout=5).read().decode()
    assert any('direction="inbound"' in line and f'client_id="{TD}/ns/{NS}/sa/ingress-gateway"' in line
               for line in web_metrics.splitlines() if line.startswith("request_total{"))

    # static stability: with the control plane stopped, the proxies keep what they know
    cp.stop(timeout=5)
    cp.reload()
    assert cp.status == "exited"
    failures = [out for out in (web_app.exec_run(fetch)[1] for _ in range(20)) if not out.startswith(b"200 ")]
    assert failures == [], failures[:3]
