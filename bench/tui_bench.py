"""The terminal UI: the real ``meshdojo tui`` in tmux (120×40) against a sandbox with both
demos — time from launch to the first full paint of the dashboard, the UI's CPU while idle
on it and on the Lessons screen, and the time from an action to its effect on screen (a fault applied from another
terminal, until the dashboard lists it; a key, until its screen is drawn)."""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.measure import BenchError, Section, Settings, Spread, Target, cpu_seconds, rss_mb, targets_table

IDLE_CPU, EFFECT_SECONDS = 0.10, 1.5  # the targets


SOCKETS = itertools.count()  # one tmux server per window


class Window:
    """One tmux session running the UI."""

    def __init__(self, home: Path) -> None:
        self.session = f"meshdojo-bench-{os.getpid()}"
        # a tmux server of its own (-L): no other test's, benchmark's or window's session ending can take it down
        self.tmux = ["tmux", "-L", f"{self.session}-{next(SOCKETS)}"]
        command = f"env MESHDOJO_HOME={shlex.quote(str(home))} {shlex.quote(sys.executable)} -m sandbox.cli tui"
        subprocess.run([*self.tmux, "new-session", "-d", "-s", self.session, "-x", "120", "-y", "40", command], check=True)
        # a tmux server that is already running may keep its own default size: insist
        subprocess.run([*self.tmux, "resize-window", "-t", self.session, "-x", "120", "-y", "40"], capture_output=True)
        self.pid = int(subprocess.run([*self.tmux, "display", "-p", "-t", self.session, "#{pane_pid}"], capture_output=True,
                                      text=True, check=True).stdout)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.session], capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.session, *keys], check=True)

    def until(self, ready: Callable[[str], bool], what: str, timeout: float = 30.0) -> float:
        """Seconds until ``ready(screen)`` (the measurement: the screen is polled every 20 ms)."""
        started = time.monotonic()
        while not ready(self.screen()):
            if time.monotonic() - started > timeout:
                raise BenchError(f"the UI did not show {what} within {timeout:.0f} s; the screen:\n{self.screen()}")
            time.sleep(0.02)
        return time.monotonic() - started

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-session", "-t", self.session], capture_output=True)


def _dashboard(text: str) -> bool:
    return all(word in text for word in ("control plane up", "productpage", "vote-bot", "ratings-v1"))


def run(settings: Settings, root: Path) -> Section:
    section = Section("Terminal UI")
    if shutil.which("tmux") is None:
        raise BenchError("tmux is not installed (apt install tmux)")
    env = {**os.environ, "MESHDOJO_HOME": str(root)}

    def cli(*argv: str) -> None:
        subprocess.run([sys.executable, "-m", "sandbox.cli", *argv], env=env, check=True, capture_output=True, timeout=120)

    cli("up", "--no-tui")
    paints, idle, fault_seen, key_seen = [], [], [], []
    window = None
    try:
        for _ in range(settings.repeats):
            started = time.monotonic()
            window = Window(root)
            window.until(_dashboard, "the dashboard", timeout=60)
            paints.append(time.monotonic() - started)
            window.close()
        window = Window(root)
        window.until(_dashboard, "the dashboard", timeout=60)
        time.sleep(3)  # the sparklines' first seconds pass before idling is measured (a window, not synchronization)
        for _ in range(settings.repeats):
            before, t0 = cpu_seconds(window.pid), time.monotonic()
            time.sleep(settings.seconds)
            idle.append((cpu_seconds(window.pid) - before) / (time.monotonic() - t0))
        rss = rss_mb(window.pid)
        # the Lessons screen open on a started lesson: its step's check runs live, once a refresh
        cli("lesson", "start", "1")
        window.keys("8")
        window.until(lambda text: "Lesson 1, step 1 of" in text, "the Lessons screen")
        lessons_idle = []
        for _ in range(settings.repeats):
            before, t0 = cpu_seconds(window.pid), time.monotonic()
            time.sleep(settings.seconds)
            lessons_idle.append((cpu_seconds(window.pid) - before) / (time.monotonic() - t0))
        window.keys("1")
        window.until(lambda text: "control plane up" in text, "the dashboard again")
        for _ in range(settings.repeats):
            cli("fault", "inject", "voting", "--abort", "500", "--for", "1m")
            fault_seen.append(window.until(lambda text: "emojivoto/voting-fault" in text, "the fault"))
            cli("fault", "clear")
            window.until(lambda text: "emojivoto/voting-fault" not in text, "the fault gone")
            window.keys("4")
            key_seen.append(window.until(lambda text: "trust anchor" in text and "WORKLOAD" in text, "the Security screen"))
            window.keys("1")
            window.until(lambda text: "control plane up" in text, "the dashboard again")
    finally:
        if window is not None:
            window.close()
        subprocess.run([sys.executable, "-m", "sandbox.cli", "down"], env=env, capture_output=True, timeout=60)
    paint, cpu, fault, key = Spread.of(paints), Spread.of(idle), Spread.of(fault_seen), Spread.of(key_seen)
    lessons_cpu = Spread.of(lessons_idle)
    section.figure("first paint seconds", paint.median)
    section.figure("idle CPU share", cpu.median)
    section.figure("idle CPU share, Lessons screen", lessons_cpu.median)
    section.figure("fault to screen seconds", fault.median)
    section.figure("key to screen seconds", key.median)
    section.add(f"- first full paint of the dashboard (Python start, imports, the first snapshot): {paint.show('.2f', ' s')} "
                f"after launch, {len(paints)} launches")
    section.add(f"- idle on the dashboard (it refreshes once a second): {cpu.show('.1%')} of one core; RSS {rss:.0f} MB")
    section.add(f"- idle on the Lessons screen with lesson 1 started (its step's check runs live): {lessons_cpu.show('.1%')} of one core")
    section.add(f"- action to effect: a fault applied with the CLI is on the dashboard after {fault.show('.2f', ' s')}; "
                f"key 4 draws the Security screen after {key.show('.2f', ' s')}")
    targets_table(section, [
        Target(f"idle UI ≤ {IDLE_CPU:.0%} of one core", cpu.show(".1%"), cpu.median <= IDLE_CPU),
        Target(f"idle Lessons screen ≤ {IDLE_CPU:.0%} of one core", lessons_cpu.show(".1%"), lessons_cpu.median <= IDLE_CPU),
        Target(f"an action's effect on screen ≤ {EFFECT_SECONDS:g} s", f"max {fault.high:.2f} s", fault.high <= EFFECT_SECONDS),
    ])
    return section
