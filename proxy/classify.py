"""Classify once: turn a finished exchange into success or failure, with a reason.

Metrics use it today; retries, the circuit breaker and tap consume the same class.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.exchange import Response


@dataclass(frozen=True, slots=True)
class Classification:
    failure: bool
    reason: str  # "ok", "http_5xx", or the proxy's own error code


def classify(response: Response) -> Classification:
    if response.error is not None:
        return Classification(True, response.error) if response.status >= 500 else Classification(False, response.error)
    if response.status >= 500:
        return Classification(True, "http_5xx")
    return Classification(False, "ok")
