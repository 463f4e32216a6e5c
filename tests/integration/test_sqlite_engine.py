"""The SQLite engine of `shared.db.make_engine`: one writer connection on the loop, BEGIN IMMEDIATE, no leftovers;
and the read-only engine of a process that only reads (deferred BEGIN, writes refused)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.reporting.app import build_api as build_reporting_api
from services.reporting.settings import Settings as ReportingSettings
from shared.db import make_engine

pytestmark = pytest.mark.integration

NOTES = sa.table("notes", sa.column("id", sa.Integer))


async def _count(url: str) -> int:
    async with make_engine(url).connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(NOTES))).scalar_one())


@pytest.fixture
async def url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    async with make_engine(url).begin() as conn:
        await conn.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))
    return url


async def test_every_transaction_holds_the_write_lock_from_its_start(url: str) -> None:
    """A second process's writer waits for ours (BEGIN IMMEDIATE), even while ours has only read."""
    async with make_engine(url).connect() as conn:
        await conn.execute(sa.select(NOTES.c.id))  # a read only, and yet:
        other = sqlite3.connect(url.split("///", 1)[1], timeout=0.05, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
        await conn.rollback()


async def test_commits_and_rollbacks_end_their_transactions(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(NOTES.insert(), [{"id": 1}])
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await conn.execute(NOTES.insert(), [{"id": 2}])
            raise RuntimeError("rolled back")
    async with engine.connect() as conn:  # left without commit: SQLAlchemy rolls it back at close
        await conn.execute(NOTES.insert(), [{"id": 3}])
    assert await _count(url) == 1
    async with engine.begin() as conn:  # the single connection is free for the next transaction
        await conn.execute(NOTES.insert(), [{"id": 4}])
    assert await _count(url) == 2


async def test_a_transaction_left_open_behind_sqlalchemy_is_rolled_back_when_the_connection_returns(url: str) -> None:
    """The pool does not roll back on checkin (SQLAlchemy ends what it began); a transaction opened on the
    driver directly must still not survive into the next checkout, holding the write lock."""
    engine = make_engine(url)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        driver.begin(immediate=True)
        driver._conn.execute("INSERT INTO notes (id) VALUES (7)")
    async with engine.begin() as conn:  # would fail: "cannot start a transaction within a transaction"
        await conn.execute(NOTES.insert(), [{"id": 8}])
    assert await _count(url) == 1
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(NOTES.c.id))).scalars().all() == [8]


def test_one_database_has_one_writer_engine_however_a_call_spells_its_settings(url: str) -> None:
    """A combined process's API and worker must share the single SQLite writer connection: two would each
    run `BEGIN IMMEDIATE` on the one event loop, and one could wait out the busy timeout (30 s, the loop
    stalled) for a transaction that the other can only finish on that loop. The reporting API asked with
    `read_only=False` and its worker without it, and got two engines (a 30 s hang seen in CI)."""
    writer = make_engine(url)
    assert make_engine(url, read_only=False) is writer
    assert make_engine(url, pool_size=10, pg_settings=()) is writer
    assert make_engine(url, read_only=True) is not writer


def test_a_combined_reporting_process_gives_its_worker_the_apis_engine(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARJOTIN_REPORTING_DATABASE_URL", url)
    settings = ReportingSettings()
    api = build_reporting_api(settings)
    assert api.state.engine is make_engine(settings.database_url)


async def test_a_read_only_engine_reads_beside_the_writer_without_taking_its_lock(url: str) -> None:
    """The reporting API's extra processes: their reads neither hold nor wait for the write lock, and a
    new transaction sees what the writer committed meanwhile."""
    reader = make_engine(url, read_only=True)
    assert reader is not make_engine(url)  # its own connection, not the writer's
    path = url.split("///", 1)[1]
    async with reader.connect() as conn:
        assert (await conn.execute(sa.select(NOTES.c.id))).all() == []  # inside a transaction that has read
        writer = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # would raise "database is locked" under BEGIN IMMEDIATE
            writer.execute("INSERT INTO notes (id) VALUES (1)")
            writer.execute("COMMIT")
        finally:
            writer.close()
        # The same transaction keeps its snapshot; the next one sees the commit.
        assert (await conn.execute(sa.select(NOTES.c.id))).all() == []
        await conn.rollback()
        assert (await conn.execute(sa.select(NOTES.c.id))).scalars().all() == [1]
    await reader.dispose()


async def test_a_read_only_engine_refuses_writes(url: str) -> None:
    reader = make_engine(url, read_only=True)
    with pytest.raises(sa.exc.OperationalError, match=r"readonly|read-only|query_only"):
        async with reader.begin() as conn:
            await conn.execute(NOTES.insert(), [{"id": 1}])
    await reader.dispose()
    assert await _count(url) == 0
