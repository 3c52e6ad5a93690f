"""Linkerd's retry and timeout annotations on an HTTPRoute (Linkerd 2.16 and later), read into
the rule fields they mean here, so a learner following Linkerd's retries and timeouts tasks
sees the same effects:

    metadata:
      annotations:
        retry.linkerd.io/http: 5xx          # 504, 500-504, gateway-error (502-504), 5xx; comma-separated
        retry.linkerd.io/limit: "2"         # retries after the first try (1 by default)
        retry.linkerd.io/timeout: 300ms     # each try; a try that runs out is retried
        timeout.linkerd.io/request: 2s      # the whole request, retries included
        timeout.linkerd.io/response: 1s     # each try, when the route has no retries

They apply to every rule of the route; a rule that sets the same thing with its own fields
(``retry``, ``timeouts``) is refused, so there is never a question of which one wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.durations import InvalidDuration, parse_duration
from controlplane.fields import FieldReader

RETRY_HTTP, RETRY_LIMIT, RETRY_TIMEOUT = "retry.linkerd.io/http", "retry.linkerd.io/limit", "retry.linkerd.io/timeout"
TIMEOUT_REQUEST, TIMEOUT_RESPONSE = "timeout.linkerd.io/request", "timeout.linkerd.io/response"
KNOWN = (RETRY_HTTP, RETRY_LIMIT, RETRY_TIMEOUT, TIMEOUT_REQUEST, TIMEOUT_RESPONSE)
NOT_HERE = {
    "retry.linkerd.io/grpc": "gRPC retries are for GRPCRoutes (Linkerd refuses this annotation on an HTTPRoute too)",
    "timeout.linkerd.io/idle": "an idle timeout is not implemented here; use timeout.linkerd.io/request",
}
NAMED_CODES = {"gateway-error": range(502, 505), "5xx": range(500, 600)}


@dataclass(frozen=True, slots=True)
class RouteAnnotations:
    """What the annotations ask of every rule; None where they say nothing."""

    retry_codes: tuple[int, ...] | None = None  # None: no retries asked for
    retry_limit: int = 1
    try_timeout: float | None = None  # retry.linkerd.io/timeout or timeout.linkerd.io/response
    request_timeout: float | None = None

    @property
    def retries(self) -> bool:
        return self.retry_codes is not None


def read(r: FieldReader, annotations: dict[str, Any]) -> RouteAnnotations:
    """Linkerd's annotations among ``annotations`` (others are left alone), checked."""
    ours = {k: v for k, v in annotations.items() if k.startswith(("retry.linkerd.io/", "timeout.linkerd.io/"))}
    for key, value in ours.items():
        where = f"metadata.annotations.{key}"
        if key in NOT_HERE:
            raise r.fail(where, f"not supported: {NOT_HERE[key]}")
        if key not in KNOWN:
            raise r.fail(where, f"unknown Linkerd annotation (expected one of: {', '.join(KNOWN)})")
        if not isinstance(value, str):
            raise r.fail(where, f"expected a string (annotation values are strings: quote it, \"{value}\"), got {value!r}")
    codes = _codes(r, ours[RETRY_HTTP]) if RETRY_HTTP in ours else None
    if codes is None and (RETRY_LIMIT in ours or RETRY_TIMEOUT in ours):
        codes = ()  # a retry timeout alone retries the tries that run out (and failed connections)
    limit = _limit(r, ours[RETRY_LIMIT]) if RETRY_LIMIT in ours else 1
    if RETRY_TIMEOUT in ours and TIMEOUT_RESPONSE in ours:
        raise r.fail(f"metadata.annotations.{TIMEOUT_RESPONSE}",
                     f"give {RETRY_TIMEOUT} (each try, retried) or {TIMEOUT_RESPONSE} (each try, not retried), not both")
    if TIMEOUT_RESPONSE in ours and codes is not None:
        raise r.fail(f"metadata.annotations.{TIMEOUT_RESPONSE}",
                     f"with retries, a try's timeout is retried: use {RETRY_TIMEOUT} instead")
    try_key = RETRY_TIMEOUT if RETRY_TIMEOUT in ours else TIMEOUT_RESPONSE if TIMEOUT_RESPONSE in ours else None
    return RouteAnnotations(codes, limit, _duration(r, ours, try_key) if try_key else None,
                            _duration(r, ours, TIMEOUT_REQUEST) if TIMEOUT_REQUEST in ours else None)


def _codes(r: FieldReader, value: str) -> tuple[int, ...]:
    codes: set[int] = set()
    for item in (part.strip() for part in value.split(",")):
        if item in NAMED_CODES:
            codes.update(NAMED_CODES[item])
            continue
        low, _, high = item.partition("-")
        if not (low.isdigit() and (not high or high.isdigit())) or not 100 <= int(low) <= int(high or low) <= 599:
            raise r.fail(f"metadata.annotations.{RETRY_HTTP}",
                         f"{item!r} is not a status, a range or a name (expected e.g. 504, 500-504, gateway-error or 5xx)")
        codes.update(range(int(low), int(high or low) + 1))
    return tuple(sorted(codes))


def _limit(r: FieldReader, value: str) -> int:
    if not value.strip().isdigit() or not 0 <= int(value) <= 10:
        raise r.fail(f"metadata.annotations.{RETRY_LIMIT}", f"expected a number of retries from 0 to 10, got {value!r}")
    return int(value)


def _duration(r: FieldReader, ours: dict[str, str], key: str) -> float:
    try:
        return parse_duration(ours[key])
    except InvalidDuration:
        raise r.fail(f"metadata.annotations.{key}", f"{ours[key]!r} is not a duration (valid: 500ms, 2s, 1m)") from None


def status_ranges(codes: tuple[int, ...]) -> str:
    """``(500, 501, ..., 599, 429)`` as ``429, 500-599``: what :func:`_codes` reads, written back."""
    runs: list[list[int]] = []
    for code in sorted(codes):
        if runs and code == runs[-1][1] + 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
