"""Durations as learners write them: ``500ms``, ``2s``, ``1m``, ``24h``, ``1h30m``."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class InvalidDuration(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises :class:`InvalidDuration` with an example of what is valid."""
    value = text.strip() if isinstance(text, str) else ""
    pos, total = 0, 0.0
    while pos < len(value):
        match = _PART.match(value, pos)
        if not match:
            break
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        pos = match.end()
    if not value or pos != len(value):
        raise InvalidDuration(f"{text!r} is not a duration (expected e.g. 500ms, 2s, 1m, 24h or 1h30m)")
    return total


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 120:
        return f"{seconds:g}s"
    if seconds < 7200:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"
