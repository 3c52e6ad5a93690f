"""``python -m controlplane --state-dir DIR``."""

from __future__ import annotations

import sys

from controlplane.config import parse_args
from controlplane.run import main_with

if __name__ == "__main__":
    sys.exit(main_with(parse_args()))
