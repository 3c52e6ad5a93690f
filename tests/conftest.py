from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.apps import start_echo_app
from tests.meshkit import Mesh


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(tmp_path)
    m.start_controlplane()
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    runner, port = await start_echo_app("emoji")
    try:
        yield port
    finally:
        await runner.cleanup()
