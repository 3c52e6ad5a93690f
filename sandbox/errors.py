"""The one error every backend raises for something the learner can fix (the message says how)."""

from __future__ import annotations


class SandboxError(RuntimeError):
    """Something the learner can fix; the message says how."""
