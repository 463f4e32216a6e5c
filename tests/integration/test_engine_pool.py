"""The PostgreSQL engine of `shared.db.make_engine` under a burst: its pool's connections, no more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import make_engine
from tests.support.infra import DB_KINDS, database

pytestmark = pytest.mark.integration


@pytest.fixture(params=[kind for kind in DB_KINDS if kind == "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with database(request.param, tmp_path, "pool") as url:
        engine = make_engine(url, pool_size=4)
        yield engine
        await engine.dispose()


async def test_a_burst_beyond_the_pool_waits_for_its_connections_instead_of_opening_more(engine: AsyncEngine) -> None:
    """Each connection opened beyond the pool was closed on return: a server process forked per request."""
    opened: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda connection, _record: opened.append(connection))

    async def transaction(i: int) -> int:
        async with engine.begin() as conn:
            await conn.execute(sa.text("SELECT pg_sleep(0.01)"))
            return int((await conn.execute(sa.select(sa.literal(i)))).scalar_one())

    for _ in range(3):
        assert await asyncio.gather(*(transaction(i) for i in range(40))) == list(range(40))
    assert len(opened) == 4
