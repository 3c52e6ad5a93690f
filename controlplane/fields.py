"""Reading one YAML document field by field, so every error names the field's path.

Shared by the policy resources and the demo manifests; each says how its errors look
(:meth:`FieldReader.fail`) and which fields it accepts without reading.
"""

from __future__ import annotations

from typing import Any

from controlplane.durations import InvalidDuration, parse_duration


class FieldReader:
    unknown_hint = "expected one of"  # how the list of known fields is introduced in errors
    ignored: frozenset[str] = frozenset()  # accepted and not read

    def fail(self, field: str, message: str) -> Exception:
        raise NotImplementedError

    def obj(self, value: Any, field: str, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if key not in allowed and key not in self.ignored:
                raise self.fail(f"{field}.{key}".lstrip("."), f"unknown field ({self.unknown_hint}: {', '.join(sorted(allowed))})")
        for key in sorted(required):
            if key not in value:
                raise self.fail(f"{field}.{key}".lstrip("."), "required field is missing")
        return value

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(field, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, value: Any, field: str, low: int, high: int, what: str = "an integer") -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(field, f"expected {what} from {low} to {high}, got {value!r}")
        return value

    def number(self, value: Any, field: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.fail(field, f"expected a number from {low:g} to {high:g}, got {value!r}")
        return float(value)

    def duration(self, value: Any, field: str) -> float:
        try:
            return parse_duration(value if isinstance(value, str) else "")
        except InvalidDuration:
            raise self.fail(field, f"{value!r} is not a duration (valid: 500ms, 2s, 1m)") from None
