"""Every lesson on the Kubernetes backend, unattended, as on the local one (tests/test_lessons.py):
each step's check fails before its action and passes after it — against the real API server,
with the pods running for real (tests/k8senv/pods.py follows them as inject, scale and kill roll
them), the control plane beside the cluster as in tests/test_kube_traffic.py, and `meshdojo load`
sent from the control plane's place in the network through the demos' gateways."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from unittest.mock import patch

import pytest

from sandbox.processes import wait_until
from tests.k8senv import pods as podnet
from tests.test_kube_traffic import meshed_cluster
from tests.test_lessons import LESSONS, _in_process, print_timings, run_every_lesson
from tests.test_tui_sandbox import until

pytestmark = [pytest.mark.k8s, pytest.mark.long, pytest.mark.timeout(900)]
NAMESPACES = {"emojivoto", "bookinfo"}


async def _the_lessons_screen_on_the_cluster(home: Path, kubeconfig: Path) -> str:
    """The UI alone, on the cluster sandbox: Lessons (8), Enter starts lesson 1, d runs its first
    step's command, the check passes by itself, n goes on."""
    from textual.widgets import Static

    from sandbox.lessons import progress
    from tui.app import MeshdojoApp
    from tui.panes import Lessons

    with patch.dict(os.environ, {"MESHDOJO_HOME": str(home), "KUBECONFIG": str(kubeconfig)}):
        app = MeshdojoApp("lab")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.snapshot.status, "the first refresh", 30)
            await pilot.press("8")
            pane = app.query_one(Lessons)
            await until(pilot, lambda: app.focused is pane.query_one("#lesson-list"), "the lesson list")
            await pilot.press("enter")
            await until(pilot, lambda: (progress.load("lab") or progress.Progress(0, 0, 0, [])).lesson == 1, "lesson 1 started", 60)
            await pilot.press("d")
            await until(pilot, lambda: pane._passed is True, "the first step's check to pass by itself", 30)
            await pilot.press("n")
            await until(pilot, lambda: "step 2 of" in str(pane.query_one("#lesson-step", Static).render()), "the second step")
            shown = str(pane.query_one("#lesson-step", Static).render())
            assert progress.load("lab").step == 1
        assert app.crash is None
        return shown


@pytest.mark.skipif(podnet.usable() is not None, reason=podnet.usable() or "")
def test_every_lesson_runs_on_the_cluster(k8s, tmp_path, capsys, record_property):
    demos = ",".join(sorted({d for lesson in LESSONS for d in lesson.demos}))
    with meshed_cluster(k8s, tmp_path, demos) as (learner, net):
        net.follow(NAMESPACES)

        def serving() -> bool:  # every pod runs and its probes passed (the runner reported it Ready)
            st = learner.status()
            return bool(st["ready"]) and {f"{w['namespace']}/{w['name']}" for w in st["workloads"]} <= {
                key for key, pod in list(net.pods.items()) if pod.ready}

        wait_until(serving, 120, "the demos' pods running")
        load = json.loads(learner.run("load", "svc/productpage", "/productpage", "-n", "5", "-o", "json").stdout)
        assert load["codes"].get("200", {}).get("count") == 5, load

        def ask(*args: str) -> str:  # read-only verbs in this process, as the learner's sandbox and cluster
            with patch.dict(os.environ, learner.env):
                return _in_process(*args, "--name", "lab")

        try:
            timings = run_every_lesson(lambda *args: learner.run(*args).stdout, ask)
        except BaseException:
            for verb in (("status",), ("fault", "list"), ("get",), ("stat", "svc", "-t", "10s", "-o", "wide"), ("edges", "-o", "wide")):
                done = learner.run(*verb, ok=False)
                print(f"$ meshdojo {' '.join(verb)}\n{done.stdout}{done.stderr}")
            print(f"pods the runner could not run: {net.errors}")
            print("\n".join(f"--- {key}/{c}\n{net.log(p.name, c)[-800:]}" for key, p in list(net.pods.items()) for c in p.procs))
            raise
        assert not net.errors, net.errors
        with capsys.disabled():
            print_timings(timings)
        shown = asyncio.run(_the_lessons_screen_on_the_cluster(tmp_path / "home", k8s.kubeconfig))
        assert LESSONS[0].steps[1].title in shown, shown
        steps = sorted(t for times in timings.values() for t in times)
        record_property("lesson steps on the cluster: median, max (s)", (round(steps[len(steps) // 2], 2), round(steps[-1], 1)))
