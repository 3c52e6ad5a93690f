"""kind, minikube and kubectl command lines: argv contracts with fake binaries on PATH (the one
place fakes are right: we own only the command lines), their failure outputs turned into the
right hint, the preflight's decisions, and `up --backend kind` stopping at the preflight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox.check import FAIL, OK, WARN
from sandbox.kube import preflight, providers
from sandbox.kube.image import ImageError

# what the real tools print in these cases (kind v0.27, minikube v1.35)
KIND_EXISTS = 'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "meshdojo-lab"\n'
KIND_NO_DOCKER = ("ERROR: failed to create cluster: failed to get docker info: command \"docker info\" failed with error: exit status 1\n"
                  "Command Output: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n")
KIND_PULL = "ERROR: failed to create cluster: failed to pull image \"kindest/node:v1.33.1\": command \"docker pull\" failed\n"
MINIKUBE_MEMORY = ("X Exiting due to RSRC_INSUFFICIENT_CONTAINER_MEMORY: docker only has 1987MiB available, less than the "
                   "required 1800MiB for Kubernetes\n")
MINIKUBE_NO_DOCKER = "X Exiting due to PROVIDER_DOCKER_NOT_RUNNING: \"docker version --format <no value>-<no value>:<no value>\" exit status 1\n"


def fake_tool(bin_dir: Path, name: str, log: Path, outputs: dict[str, tuple[int, str, str]]) -> None:
    """A ``name`` on PATH that appends its argv (JSON) to ``log`` and answers by the first
    matching argv prefix in ``outputs`` (exit status, stdout, stderr); exit 0 otherwise."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f"""#!{sys.executable}
import json, sys
argv = sys.argv[1:]
with open({str(log)!r}, "a") as f:
    f.write(json.dumps([{name!r}, *argv]) + "\\n")
outputs = {json.dumps(outputs)}
for prefix, (code, out, err) in outputs.items():
    if " ".join(argv).startswith(prefix):
        sys.stdout.write(out); sys.stderr.write(err); sys.exit(code)
""")
    script.chmod(0o755)


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def tools(tmp_path, monkeypatch):
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def make(name: str, outputs: dict[str, tuple[int, str, str]] | None = None) -> None:
        fake_tool(bin_dir, name, log, outputs or {})

    make.log = log  # type: ignore[attr-defined]
    return make


def test_kind_create_load_delete_argv(tools, tmp_path) -> None:
    tools("kind", {"get clusters": (0, "other\n", "")})
    kind = providers.Kind("meshdojo-lab", tmp_path / "sb")
    assert not kind.exists()
    kind.create()
    kind.load_image(image="meshdojo/meshdojo:0.1.0-abc")
    kind.load_image(archive=tmp_path / "m.tar")
    kind.delete()
    config = str(tmp_path / "sb" / "kind-config.yaml")
    assert calls(tools.log) == [
        ["kind", "get", "clusters"],
        ["kind", "create", "cluster", "--name", "meshdojo-lab", "--config", config, "--image", providers.KIND_NODE_IMAGE, "--wait", "120s"],
        ["kind", "load", "docker-image", "meshdojo/meshdojo:0.1.0-abc", "--name", "meshdojo-lab"],
        ["kind", "load", "image-archive", str(tmp_path / "m.tar"), "--name", "meshdojo-lab"],
        ["kind", "delete", "cluster", "--name", "meshdojo-lab"],
    ]
    written = yaml.safe_load(Path(config).read_text())
    assert written["name"] == "meshdojo-lab" and written["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    mappings = written["nodes"][0]["extraPortMappings"]
    assert {(m["containerPort"], m["hostPort"], m["listenAddress"]) for m in mappings} == {(30080, 8080, "127.0.0.1"), (30980, 9080, "127.0.0.1"),
                                                                                                (30443, 8443, "127.0.0.1"), (30943, 9443, "127.0.0.1")}
    assert kind.context == "kind-meshdojo-lab"


@pytest.mark.parametrize(("stderr", "hint"), [
    (KIND_EXISTS, "a kind cluster named meshdojo-lab exists already: `meshdojo up --backend context=kind-meshdojo-lab`"),
    (KIND_NO_DOCKER, "kind cannot reach Docker: start the Docker engine"),
    (KIND_PULL, "kind could not pull an image (no registry reachable?)"),
    ("ERROR: failed to create cluster: exit status 137 (out of memory)\n", "Docker has too little memory"),
])
def test_kind_failures_become_the_right_hint(tools, tmp_path, stderr, hint) -> None:
    tools("kind", {"create cluster": (1, "", stderr)})
    with pytest.raises(providers.ProviderError) as caught:
        providers.Kind("meshdojo-lab", tmp_path).create()
    assert hint in str(caught.value)


def test_minikube_argv_and_failures(tools, tmp_path) -> None:
    profiles = {"valid": [{"Name": "meshdojo-lab"}], "invalid": []}
    tools("minikube", {"profile list": (0, json.dumps(profiles), ""), "start": (0, "Done!", "")})
    mk = providers.Minikube("meshdojo-lab", tmp_path)
    assert mk.exists()
    mk.create()
    mk.load_image(image="meshdojo/meshdojo:0.1.0-abc")
    mk.load_image(archive=tmp_path / "m.tar")
    mk.delete()
    assert calls(tools.log) == [
        ["minikube", "profile", "list", "-o", "json"],
        ["minikube", "start", "-p", "meshdojo-lab", "--driver=docker", "--memory=4096", "--wait=all",
         "--ports=127.0.0.1:8080:30080", "--ports=127.0.0.1:9080:30980", "--ports=127.0.0.1:8443:30443",
         "--ports=127.0.0.1:9443:30943"],
        ["minikube", "-p", "meshdojo-lab", "image", "load", "meshdojo/meshdojo:0.1.0-abc"],
        ["minikube", "-p", "meshdojo-lab", "image", "load", str(tmp_path / "m.tar")],
        ["minikube", "delete", "-p", "meshdojo-lab"],
    ]
    assert mk.context == "meshdojo-lab"
    for stderr, hint in ((MINIKUBE_MEMORY, "Docker has too little memory for a cluster"), (MINIKUBE_NO_DOCKER, "start the Docker engine")):
        tools("minikube", {"start": (80, "", stderr)})
        with pytest.raises(providers.ProviderError, match=hint):
            mk.create()
    tools("minikube", {"profile list": (85, "", "* No minikube profile was found.\n")})
    assert not mk.exists()


def test_a_missing_tool_says_how_to_install_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(providers.ProviderError, match=r"kind is not installed .*kind.sigs.k8s.io.*--backend local"):
        providers.Kind("meshdojo-lab", tmp_path).exists()


class Machine:
    """What a machine answers, for the preflight's decisions."""

    def __init__(self, **over) -> None:
        self.docker = over.get("docker", {"ServerVersion": "28.2.2", "OperatingSystem": "Debian", "MemTotal": 8 * 1024**3})
        self.tools = over.get("tools", {"kind": "kind v0.27.0 go1.24 linux/amd64", "kubectl": json.dumps({"clientVersion": {"gitVersion": "v1.33.1"}}),
                                        "minikube": "v1.35.0"})
        self.inotify = over.get("inotify", {"max_user_watches": "524288", "max_user_instances": "512"})
        self.taken = over.get("taken", set())
        self.clusters = over.get("clusters", "")

    def probes(self) -> preflight.Probes:
        def docker_info():
            if self.docker is None:
                raise ImageError("no Docker engine answers (connection refused); start Docker")
            return self.docker

        def run(argv, _timeout):
            if argv[:3] == ["kind", "get", "clusters"]:
                return providers.Ran(argv, 0, self.clusters, "")
            if argv[:3] == ["minikube", "profile", "list"]:
                return providers.Ran(argv, 0, json.dumps({"valid": [{"Name": n} for n in self.clusters.split()]}), "")
            return providers.Ran(argv, 0, self.tools.get(argv[0], ""), "")

        def read(path):
            return self.inotify[path.rsplit("/", 1)[1]]

        return preflight.Probes(docker_info=docker_info, which=lambda t: f"/usr/bin/{t}" if t in self.tools else None, run=run,
                                read=read, port_free=lambda p: p not in self.taken)


def _verdicts(machine: Machine, kind: str = "kind") -> dict[str, tuple[str, str]]:
    return {r.message: (r.verdict, r.hint) for r in preflight.checks(kind, "lab", machine.probes())}


def test_preflight_on_a_ready_machine_passes() -> None:
    found = _verdicts(Machine())
    assert all(verdict == OK for verdict, _ in found.values()), found
    assert "kind is installed (v0.27.0)" in found and "kubectl is installed (v1.33.1)" in found
    assert "no kind cluster named meshdojo-lab yet: `up` creates it" in found


def test_preflight_failures_carry_their_fix() -> None:
    found = _verdicts(Machine(docker=None, tools={"kubectl": "{}"}, taken={8080}))
    assert found["Docker engine answers"][0] == FAIL and "start Docker" in found["Docker engine answers"][1]
    assert found["kind is installed"][0] == FAIL and "kind.sigs.k8s.io" in found["kind is installed"][1]
    assert found["kubectl answers `version`"][0] == FAIL
    taken = found["host port 8080 is taken (the emojivoto gateway publishes there)"]
    assert taken[0] == FAIL and "ss -ltnp" in taken[1]

    small = _verdicts(Machine(docker={"MemTotal": 2 * 1024**3}, inotify={"max_user_watches": "8192", "max_user_instances": "128"}))
    memory = next(v for m, v in small.items() if m.startswith("Docker has 2.0 GiB"))
    assert memory[0] == FAIL and "Resources" in memory[1]
    watches = next(v for m, v in small.items() if m.startswith("fs.inotify.max_user_watches is 8192"))
    assert watches == (WARN, "sudo sysctl fs.inotify.max_user_watches=524288")

    there = _verdicts(Machine(clusters="meshdojo-lab\n"), "minikube")
    assert there["a minikube cluster named meshdojo-lab exists: `up` uses it as it is"][0] == WARN
    assert not any(m.startswith("fs.inotify") for m in there)  # kind's known issue only


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox.cli", *args], capture_output=True, text=True, env=env, timeout=60)


def test_up_on_kind_stops_at_the_preflight_with_the_fix_and_makes_nothing(tools, tmp_path) -> None:
    tools("kind", {"get clusters": (0, "", ""), "version": (0, "kind v0.27.0 go1.24 linux/amd64", "")})
    tools("kubectl", {"version": (0, json.dumps({"clientVersion": {"gitVersion": "v1.33.1"}}), "")})
    env = {**os.environ, "MESHDOJO_HOME": str(tmp_path / "home"), "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    done = _cli(env, "up", "--backend", "kind", "--name", "lab", "--no-tui")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "the cluster cannot be made here" in done.stderr and "start Docker" in done.stderr
    assert "meshdojo check --pre --backend kind" in done.stderr
    assert not any(c[:2] == ["kind", "create"] for c in calls(tools.log))
    assert not (tmp_path / "home" / "lab" / "backend.json").exists()

    pre = _cli(env, "check", "--pre", "--backend", "kind", "-o", "json")
    report = json.loads(pre.stdout)
    assert pre.returncode == 1 and not report["ok"]
    assert {c["message"] for c in report["checks"] if c["verdict"] == "failed"} == {"Docker engine answers"}


def test_backend_choices_are_checked_and_remembered(tmp_path) -> None:
    env = {**os.environ, "MESHDOJO_HOME": str(tmp_path / "home")}
    bad = _cli(env, "up", "--backend", "kubernetes", "--name", "lab", "--no-tui")
    assert bad.returncode == 1 and "choose from local, kind, minikube, context or context=NAME" in bad.stderr
    wrong = _cli(env, "up", "--image-archive", "x.tar", "--name", "lab", "--no-tui")
    assert wrong.returncode == 1 and "--image-archive is for the Kubernetes backends" in wrong.stderr
    own = _cli(env, "up", "--backend", "context", "--image-archive", "x.tar", "--name", "lab", "--no-tui")
    assert own.returncode == 1 and "push the image to a registry" in own.stderr
    env["MESHDOJO_BACKEND"] = "minikube=x"
    assert "only 'context' takes a name" in _cli(env, "status", "--name", "lab").stderr


# -- the port-forward to the control plane ------------------------------------------------------

FAKE_KUBECTL = """#!{python}
# kubectl port-forward as far as meshdojo relies on it: prints the port it took, then serves it
import json, socket, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(["kubectl", *sys.argv[1:]]) + "\\n")
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print(f"Forwarding from 127.0.0.1:{{server.getsockname()[1]}} -> 8085", flush=True)
while True:
    conn, _ = server.accept()
    conn.close()
"""


def test_the_port_forward_is_started_reused_restarted_and_stopped(tmp_path, monkeypatch) -> None:
    from sandbox.kube import forward
    from sandbox.processes import pid_alive, wait_until

    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL.format(python=sys.executable, log=str(log)))
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    argv = forward.kubectl_argv("/k/config", "kind-meshdojo-lab", "meshdojo-system", "meshdojo-controlplane", 8085)
    assert argv == ["kubectl", "--context", "kind-meshdojo-lab", "--kubeconfig", "/k/config", "port-forward", "--address",
                    "127.0.0.1", "-n", "meshdojo-system", "svc/meshdojo-controlplane", ":8085"]
    root = tmp_path / "sandbox"
    try:
        port = forward.ensure(root, argv)
        first = json.loads((root / forward.FILE).read_text())["pid"]
        assert forward.ensure(root, argv) == port and len(calls(log)) == 1  # kept for the next command
        os.killpg(first, 9)  # the forward died (a pod restart breaks it)
        wait_until(lambda: not pid_alive(first), 10, "the forward to die")
        again = forward.ensure(root, argv)
        assert len(calls(log)) == 2 and json.loads((root / forward.FILE).read_text())["pid"] != first and again > 0
    finally:
        pid = json.loads((root / forward.FILE).read_text())["pid"]
        assert forward.stop(root)
    wait_until(lambda: not pid_alive(pid), 10, "the forward to stop")
    assert not (root / forward.FILE).exists()


def test_a_forward_that_cannot_start_says_why(tmp_path, monkeypatch) -> None:
    from sandbox.errors import SandboxError
    from sandbox.kube import forward

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text("#!/bin/sh\necho 'error: services \"meshdojo-controlplane\" not found' >&2\nexit 1\n")
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(SandboxError, match=r'services "meshdojo-controlplane" not found.*kubectl -n meshdojo-system get pods'):
        forward.ensure(tmp_path / "sb", forward.kubectl_argv(None, None, "meshdojo-system", "meshdojo-controlplane", 8085))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(SandboxError, match="kubectl is not installed"):
        forward.ensure(tmp_path / "sb", ["kubectl", "port-forward"])


def test_a_cluster_that_does_not_answer_is_a_problem_line_in_the_ui_and_an_error_in_the_cli(tmp_path, monkeypatch) -> None:
    from sandbox.backends.choice import BackendChoice, remember
    from tui.source import MeshSource

    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path / "home"))
    root = tmp_path / "home" / "lab"
    remember(root, BackendChoice(kind="context", kubeconfig=str(tmp_path / "gone.kubeconfig")))
    (root / "kube.json").write_text(json.dumps({"demos": ["emojivoto"], "made_cluster": False, "namespaces": ["emojivoto"]}))
    snap = MeshSource("lab").snapshot()
    assert snap.status is None and "no usable kubeconfig" in snap.problem
    done = _cli({**os.environ, "MESHDOJO_HOME": str(tmp_path / "home")}, "status", "--name", "lab")
    assert done.returncode == 1 and "no usable kubeconfig" in done.stderr and "Traceback" not in done.stderr


def test_switching_to_local_after_a_failed_kind_start_deletes_the_cluster_it_made(tools, tmp_path, monkeypatch) -> None:
    from sandbox.backends.choice import BackendChoice, remember, remembered
    from tui.launcher import start_sandbox

    tools("kind")
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path / "home"))
    root = tmp_path / "home" / "lab"
    remember(root, BackendChoice(kind="kind"))
    (root / "kube.json").write_text(json.dumps({"demos": ["emojivoto"], "made_cluster": True, "namespaces": []}))
    said: list[str] = []
    with pytest.raises(Exception, match="unknown demo"):  # stops right after the clean-up, before anything local starts
        start_sandbox("lab")("local", ["nope"], said.append)
    assert calls(tools.log) == [["kind", "delete", "cluster", "--name", "meshdojo-lab"]]
    assert said[0].endswith("removing what the kind start made") and remembered(root) is None
    assert not (root / "kube.json").exists()


def test_the_start_screen_asks_the_engine_and_kubectl_once_for_both_cluster_kinds() -> None:
    from tui.launcher import machine_availability

    machine, asked = Machine(docker=None), []
    probes = machine.probes()
    refused, run = probes.docker_info, probes.run
    probes.docker_info = lambda: asked.append("docker") or refused()
    probes.run = lambda argv, timeout: asked.append(" ".join(argv)) or run(argv, timeout)
    found = machine_availability("lab", probes)
    assert found["kind"] == found["minikube"] == "no Docker engine answers (connection refused); start Docker"
    assert asked.count("docker") == 1  # its refusal is kept for minikube's checks too
    assert asked.count("kubectl version --client -o json") == 1
    assert "kind version" in asked and "minikube version --short" in asked
