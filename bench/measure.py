"""What every benchmark shares: how long and how often to measure, a repeated figure as median
with its min–max, the section a benchmark reports, and the error that fails the run.

A benchmark never turns a failure into a number: an error, a timeout or a wrong count raises
:class:`BenchError`, and ``python -m bench`` exits non-zero without touching the doc.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A benchmark could not measure what it says it measures."""


@dataclass(frozen=True)
class Settings:
    repeats: int = 5  # each case measured this many times (interleaved with the cases it is compared to)
    seconds: float = 3.0  # per measurement
    smoke: bool = False  # CI: does it run and does its output parse (figures meaningless)

    @classmethod
    def for_smoke(cls) -> Settings:
        return cls(repeats=1, seconds=0.3, smoke=True)


@dataclass(frozen=True)
class Spread:
    """A figure measured several times: its median and its range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: Iterable[float]) -> Spread:
        values = sorted(samples)
        if not values:
            raise BenchError("no samples")
        return cls(statistics.median(values), values[0], values[-1])

    def show(self, fmt: str = ",.0f", unit: str = "") -> str:
        """``7,886 req/s (7,512–8,003)``: the median, then the range over the repeats."""
        if self.low == self.high:
            return f"{self.median:{fmt}}{unit}"
        return f"{self.median:{fmt}}{unit} ({self.low:{fmt}}–{self.high:{fmt}})".replace("%–", "–")

    def map(self, fn: Callable[[float], float]) -> Spread:
        a, b = fn(self.low), fn(self.high)
        return Spread(fn(self.median), min(a, b), max(a, b))


@dataclass
class Section:
    """One benchmark's part of the figures: Markdown lines, and the figures by name (for the
    smoke test and for targets)."""

    title: str
    lines: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def add(self, line: str = "") -> None:
        self.lines.append(line)

    def figure(self, name: str, value: float) -> float:
        self.figures[name] = value
        return value


@dataclass(frozen=True)
class Target:
    what: str
    measured: str
    met: bool


def targets_table(section: Section, targets: list[Target]) -> None:
    section.add()
    section.add("| target | measured | verdict |")
    section.add("|---|---|---|")
    for t in targets:
        section.add(f"| {t.what} | {t.measured} | {'met' if t.met else '**missed**'} |")
        section.figure(f"target met: {t.what}", float(t.met))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError):
        return 0.0


def cpu_ticks() -> tuple[int, int]:
    """The whole machine's CPU time so far, from ``/proc/stat``: (all of it, idle of it), in clock ticks."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4]  # user … steal (guest time is already in user); idle + iowait


def cores_busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How many of the machine's cores were busy, on average, between two :func:`cpu_ticks`."""
    total, idle = after[0] - before[0], after[1] - before[1]
    return (1 - idle / total) * (os.cpu_count() or 1) if total > 0 else 0.0


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (0 when it is gone)."""
    return memory_mb(pid).resident


@dataclass(frozen=True)
class Memory:
    resident: float  # MB, VmRSS
    private: float  # MB of it anonymous (RssAnon): the process's own; the rest is shared libraries

    def show(self) -> str:
        return f"{self.resident:.1f} MB ({self.private:.1f} MB private)"


def pss_mb(pid: int) -> float:
    """A process's proportional set size: its resident pages, each shared page divided among the
    processes that share it, so that a sum over processes counts every page once (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def memory_mb(pid: int) -> Memory:
    """A process's resident memory and the private part of it (zeros when it is gone)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return Memory(int(fields["VmRSS"].split()[0]) / 1024, int(fields["RssAnon"].split()[0]) / 1024)
    except (OSError, KeyError):
        return Memory(0.0, 0.0)
