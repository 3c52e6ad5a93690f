"""``make bench`` (UI part): the real ``meshdojo tui`` in tmux against a sandbox with both demos —
time from launch to the first full paint of the dashboard, the UI's CPU while idle on it, and
the time from an action to its effect on screen (a fault applied from another terminal, until
the dashboard lists it; a key, until its screen is drawn)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench.sandbox_up import cpu_seconds, rss_mb


def main() -> int:
    if shutil.which("tmux") is None:
        print("- terminal UI: skipped, tmux is not installed")
        return 0
    idle_window = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    session = f"meshdojo-bench-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="meshdojo-bench-") as home:
        env = {**os.environ, "MESHDOJO_HOME": home}
        cli = [sys.executable, "-m", "sandbox.cli"]
        subprocess.run([*cli, "up", "--no-tui"], env=env, check=True, capture_output=True, timeout=120)
        try:
            def screen() -> str:
                return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

            started = time.monotonic()
            subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                            f"env MESHDOJO_HOME={home} {sys.executable} -m sandbox.cli tui"], check=True)
            deadline = started + 60
            while not all(word in screen() for word in ("control plane up", "productpage", "vote-bot", "ratings-v1")):
                if time.monotonic() > deadline:
                    raise SystemExit("the UI did not paint the dashboard within 60 s")
                time.sleep(0.02)  # polling resolution of the measurement
            first_paint = time.monotonic() - started
            pid = int(subprocess.run(["tmux", "display", "-p", "-t", session, "#{pane_pid}"], capture_output=True, text=True).stdout)
            time.sleep(3)  # let the sparklines' first seconds pass (a measurement window, not synchronization)
            before, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(idle_window)
            elapsed = time.monotonic() - t0
            cpu = (cpu_seconds(pid) - before) / elapsed
            rss = rss_mb(pid)
            fault_seen, key_seen = [], []
            for _ in range(ROUNDS):
                subprocess.run([*cli, "fault", "inject", "voting", "--abort", "500", "--for", "1m"], env=env, check=True,
                               capture_output=True, timeout=30)
                fault_seen.append(_until(screen, lambda text: "emojivoto/voting-fault" in text))
                subprocess.run([*cli, "fault", "clear"], env=env, check=True, capture_output=True, timeout=30)
                _until(screen, lambda text: "emojivoto/voting-fault" not in text)
                subprocess.run(["tmux", "send-keys", "-t", session, "4"], check=True)
                key_seen.append(_until(screen, lambda text: "trust anchor" in text and "ROTATES" in text.upper()))
                subprocess.run(["tmux", "send-keys", "-t", session, "1"], check=True)
                _until(screen, lambda text: "control plane up" in text)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
            subprocess.run([*cli, "down"], env=env, capture_output=True, timeout=60)
    print(f"- terminal UI (120x40, both demos): first full paint of the dashboard {first_paint:.2f} s after launch; "
          f"idle on the dashboard {cpu:.1%} of one core over {elapsed:.0f} s (target < 10 %); RSS {rss:.0f} MB")
    print(f"- terminal UI, action to effect ({ROUNDS} rounds): a fault applied with the CLI is on the dashboard after "
          f"median {statistics.median(fault_seen):.2f} s (max {max(fault_seen):.2f} s; it refreshes every 1 s, target < 1.5 s); "
          f"key 4 draws the Security screen after median {statistics.median(key_seen):.2f} s (max {max(key_seen):.2f} s)")
    return 0


ROUNDS = 5


def _until(screen, ready, timeout: float = 30.0) -> float:
    """Seconds until ``ready(screen())`` (the measurement: polled every 20 ms)."""
    started = time.monotonic()
    while not ready(screen()):
        if time.monotonic() - started > timeout:
            raise SystemExit(f"the UI did not show the effect within {timeout:.0f} s:\n{screen()}")
        time.sleep(0.02)
    return time.monotonic() - started


if __name__ == "__main__":
    sys.exit(main())
