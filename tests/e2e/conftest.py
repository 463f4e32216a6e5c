"""One private system per database kind, started the way `make run` starts it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.infra import DB_KINDS
from tests.support.system import System


@pytest.fixture(scope="module", params=DB_KINDS)
async def system(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[System]:
    workdir: Path = tmp_path_factory.mktemp(f"system-{request.param}")
    system = System(workdir, request.param)
    try:
        system.up()
        yield system
    finally:
        await system.down()
