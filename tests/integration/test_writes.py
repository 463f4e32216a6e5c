"""`shared.db.Writes` on both databases: inserts kept back and sent with the next statement on
PostgreSQL (data-modifying CTEs), run at once on SQLite; the same rows, order and outcome either way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import Writes, make_engine
from tests.support.infra import database

pytestmark = pytest.mark.integration

metadata = sa.MetaData()
parents = sa.Table("parents", metadata, sa.Column("id", sa.String(10), primary_key=True))
children = sa.Table(
    "children",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("parent_id", sa.String(10), sa.ForeignKey("parents.id"), nullable=False),
    sa.Column("name", sa.String(20), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=True),
)
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("id", sa.String(10), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=True),
)
BUMP = counters.update().where(counters.c.id == sa.bindparam("b_id")).values(n=counters.c.n + 1)
# Parameters named like the kept tables' columns (`id`, `created_at`): they must not leak into the CTEs.
ADD_COUNTER = counters.insert()


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with database(db_kind, tmp_path, "writes") as url:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(counters.insert(), {"id": "c", "n": 0})
        yield engine
        await engine.dispose()


def statements_of(engine: AsyncEngine) -> Any:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen, lambda: sa.event.remove(engine.sync_engine, "before_cursor_execute", record)


async def names_in_id_order(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(children.c.parent_id, children.c.name).order_by(children.c.id))
        return [tuple(row) for row in rows]


async def test_kept_inserts_go_with_the_update_in_order_and_refer_to_each_other(
    engine: AsyncEngine, db_kind: str
) -> None:
    seen, stop = statements_of(engine)
    try:
        async with engine.begin() as conn:
            writes = Writes(conn)
            await writes.insert(parents, {"id": "p1"})
            await writes.insert(children, *({"parent_id": "p1", "name": f"n{i}"} for i in range(5)))
            await writes.insert(children, {"parent_id": "p1", "name": "last"})
            bumped = await writes.execute(BUMP, {"b_id": "c"})
            assert bumped.rowcount == 1
    finally:
        stop()
    # The rows of one `insert` get their ids in order; separate inserts run in no set order on PostgreSQL.
    in_order = await names_in_id_order(engine)
    assert [name for _, name in in_order if name != "last"] == [f"n{i}" for i in range(5)]
    assert sorted(in_order) == sorted([("p1", f"n{i}") for i in range(5)] + [("p1", "last")])
    assert len(seen) == (1 if db_kind == "postgres" else 4)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(counters.c.n))).scalar_one() == 1


async def test_an_insert_statement_with_column_named_parameters_carries_them_too(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        writes = Writes(conn)
        await writes.insert(parents, {"id": "p2"})
        await writes.insert(children, {"parent_id": "p2", "name": "a", "created_at": 1.5})
        await writes.execute(ADD_COUNTER, {"id": "d", "n": 7, "created_at": 2.5})
    async with engine.connect() as conn:
        assert (
            await conn.execute(sa.select(counters.c.n, counters.c.created_at).where(counters.c.id == "d"))
        ).one() == (
            7,
            2.5,
        )
        assert (await conn.execute(sa.select(parents.c.id))).scalars().all() == ["p2"]
        child = (await conn.execute(sa.select(children.c.name, children.c.created_at))).one()
    assert tuple(child) == ("a", 1.5)


async def test_a_failing_kept_insert_fails_the_transaction_and_writes_nothing(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(parents.insert(), {"id": "p3"})
        await conn.execute(children.insert(), {"parent_id": "p3", "name": "taken"})
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            writes = Writes(conn)
            await writes.insert(parents, {"id": "p4"})
            await writes.insert(children, {"parent_id": "p4", "name": "taken"})
            await writes.execute(BUMP, {"b_id": "c"})
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(parents.c.id))).scalars().all() == ["p3"]
        assert (await conn.execute(sa.select(counters.c.n).where(counters.c.id == "c"))).scalar_one() == 0
