from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.apps import start_echo_app
from tests.meshkit import Cli, Mesh, spiffe

# a sandbox a test brings up (`meshdojo up` leaves it running, as a daemon) stops by itself when
# this test worker is gone, even after a SIGKILL that left its teardown unrun
os.environ["MESHDOJO_OWNER_PID"] = str(os.getpid())


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(tmp_path)
    m.start_controlplane()
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """The `meshdojo` command with a MESHDOJO_HOME of the test's own; every sandbox started in it
    is stopped afterwards."""
    c = Cli(tmp_path / "home")
    yield c
    for state in sorted(c.home.iterdir()) if c.home.is_dir() else ():
        if state.is_dir():
            c.run("down", "--name", state.name, check=False)


@pytest.fixture
def emojivoto(cli: Cli) -> Cli:
    """A sandbox with emojivoto up, as a learner starts it (the cli fixture takes it down)."""
    cli.run("up", "--no-tui", "--demo", "emojivoto")
    return cli


@pytest.fixture
def bookinfo(cli: Cli) -> Cli:
    """A sandbox with bookinfo up (the cli fixture takes it down)."""
    cli.run("up", "--no-tui", "--demo", "bookinfo")
    return cli


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    runner, port = await start_echo_app("emoji")
    try:
        yield port
    finally:
        await runner.cleanup()


# -- the real Kubernetes control plane (tests/k8senv) ------------------------------------------

@pytest.fixture
def on_time(tmp_path_factory) -> Iterator[None]:
    """For tests that time the real UI or benchmarks: one at a time across the test workers
    (``make test`` runs two files at once), so neither steals the other's CPU or tmux."""
    lock = tmp_path_factory.getbasetemp().parent / "on-time.lock"  # shared by every worker of this run
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected what will not run
def pytest_collection_modifyitems(config, items):
    """k8s tests need the binaries `make k8senv` builds: say so in one line, never skip silently."""
    # The files of several minutes start first (one on each test worker), so the two workers
    # finish at about the same time; then the local tests; the cluster's tests after them (a
    # worker's cluster runs from its first test to the end of the session), the image's build (a
    # minute of CPU) just before those.
    items.sort(key=lambda item: (item.get_closest_marker("long") is None, item.get_closest_marker("k8s") is not None,
                                 item.get_closest_marker("docker") is not None))
    if any(item.get_closest_marker("docker") for item in items):
        from tests.dockerenv import missing_tools

        if missing := missing_tools():
            pytest.exit(f"the docker tests need {', '.join(missing)}: `apt-get install docker.io debootstrap` as root (.ci/run "
                        "does), or run the rest with `make test PYTEST_ARGS='-m \"not docker\"'`", returncode=4)
    if not any(item.get_closest_marker("k8s") for item in items):
        return
    from tests.k8senv.cluster import missing_binaries

    missing = missing_binaries()
    if missing:
        pytest.exit(f"the k8s tests need the Kubernetes binaries ({', '.join(missing)} missing): run `make k8senv` "
                    "(Go 1.26+, ~15 min the first time), or run the rest with `make test PYTEST_ARGS='-m \"not k8s\"'`", returncode=4)


@pytest.fixture(scope="session")
def k8s(tmp_path_factory):
    """A real API server with controllers, a scheduler and two kwok nodes, for the whole session."""
    from tests.k8senv.cluster import Cluster, binaries

    cluster = Cluster(tmp_path_factory.mktemp("k8s"), binaries())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def emoji_mesh(mesh: Mesh, echo_port: int):
    """A control plane, emoji's proxy in front of the echo app (registered as emoji-0), and web's proxy as the client."""
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, name="emoji")
    client = mesh.start_proxy("emojivoto", "web", echo_port, name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    return mesh, server, client


@pytest.fixture
async def plane(tmp_path: Path):
    """A control plane of the test's own (local mode, state in tmp_path/state), started and stopped."""
    from controlplane.config import ControlPlaneConfig
    from controlplane.server import ControlPlane

    cp = ControlPlane(ControlPlaneConfig(state_dir=tmp_path / "state"))
    await cp.start()
    yield cp
    await cp.stop()
