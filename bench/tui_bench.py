"""``make bench`` (UI part): the real ``meshdojo tui`` in tmux against a sandbox with both demos —
time from launch to the first full paint of the dashboard, and the UI's CPU while idle on it."""

from __future__ import annotations

import os
import shutil
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
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
            subprocess.run([*cli, "down"], env=env, capture_output=True, timeout=60)
    print(f"- terminal UI (120x40, both demos): first full paint of the dashboard {first_paint:.2f} s after launch; "
          f"idle on the dashboard {cpu:.1%} of one core over {elapsed:.0f} s (target < 10 %); RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
