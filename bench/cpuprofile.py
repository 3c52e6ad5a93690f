"""Run the proxy with cProfile on a CPU clock (``time.process_time``: time spent waiting, or
descheduled while a peer runs, is not counted), switched on by SIGUSR1 and dumped by SIGUSR2,
so the profile covers a measured window and not the start-up.

    python -m bench.cpuprofile OUT.prof PROXY-ARGS...     (used by ``python -m bench.profile --cpu``)
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time


def main() -> None:
    out = sys.argv[1]
    sys.argv = ["proxy", *sys.argv[2:]]
    profiler = cProfile.Profile(time.process_time)

    def start(_signum, _frame) -> None:
        profiler.enable()

    def stop(_signum, _frame) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    runpy.run_module("proxy", run_name="__main__")


if __name__ == "__main__":
    main()
