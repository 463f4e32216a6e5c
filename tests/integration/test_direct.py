"""`shared.direct`: the bus's hottest statements on the driver, inside the caller's transaction, on real databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.enrolment.tables import outbox
from shared.bus import stage
from shared.db import make_engine
from shared.direct import driver_of
from shared.events import Envelope, InstitutionRegistered, LocalizedText, new_event
from tests.support.infra import DB_KINDS, PG_URL, database, migrate

pytestmark = pytest.mark.integration


def event(slug: str) -> Envelope:
    data = InstitutionRegistered(institution_id=slug, names=LocalizedText(fi=slug), kind="vocational", member=True)
    return new_event(data, source="test", subject=slug, sequence=1, correlation_id=f"c-{slug}")


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with database(db_kind, tmp_path, "direct") as url:
        await migrate("enrolment", url)
        engine = make_engine(url)
        yield engine
        await engine.dispose()


async def staged(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(outbox.c.event_id).order_by(outbox.c.id))).scalars())


async def test_the_driver_is_handed_out_inside_the_callers_transaction(engine: AsyncEngine) -> None:
    """A statement on the driver as the transaction's very first one is rolled back with it.

    On asyncpg SQLAlchemy's adapter sends BEGIN only with its first statement: without `driver_of`
    starting it, the insert below would run in autocommit and survive the rollback.
    """
    with pytest.raises(RuntimeError, match="roll back"):
        async with engine.begin() as conn:
            assert await driver_of(conn) is not None  # the fast path is the one under test
            await stage(conn, outbox, event("first"))
            raise RuntimeError("roll back")
    assert await staged(engine) == []
    async with engine.begin() as conn:
        await stage(conn, outbox, event("kept"), event("kept-too"))
    assert len(await staged(engine)) == 2


async def test_no_driver_for_a_connection_outside_the_expected_transaction_state(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await driver_of(conn) is None  # no transaction yet: callers use SQLAlchemy, which begins one
        assert await driver_of(conn, in_transaction=False) is not None
        await conn.execute(sa.select(1))
        assert await driver_of(conn, in_transaction=False) is None  # SQLAlchemy's transaction is open
        await conn.rollback()


async def test_without_a_usable_driver_stage_keeps_to_sqlalchemy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosqlite on its thread (`TARJOTIN_SQLITE_THREAD=1`, `:memory:`): no driver, same outcome."""
    monkeypatch.setenv("TARJOTIN_SQLITE_THREAD", "1")
    url = f"sqlite+aiosqlite:///{tmp_path / 'thread.db'}"
    await migrate("enrolment", url)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            assert await driver_of(conn) is None
            await stage(conn, outbox, event("via-sqlalchemy"))
        assert len(await staged(engine)) == 1
    finally:
        await engine.dispose()


@pytest.mark.parametrize("db_kind", [kind for kind in DB_KINDS if kind == "postgres"])
async def test_a_connection_lost_under_a_driver_statement_is_sqlalchemys_error(engine: AsyncEngine) -> None:
    """The HTTP layer answers SQLAlchemy's OperationalError with 503 'send it again'; a raw driver error
    would have been a 500."""
    async with engine.connect() as conn:
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        await conn.rollback()
    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    with pytest.raises(sa.exc.OperationalError):
        async with engine.begin() as conn:
            await conn.execute(sa.select(1))  # the same pooled connection, its transaction begun
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            await stage(conn, outbox, event("lost"))
    await admin.close()
    assert await staged(engine) == []  # the pool replaced the dead connection; nothing was written
