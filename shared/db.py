"""Engines, column types and small SQL helpers that work on both SQLite and PostgreSQL."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


@functools.cache
def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """One engine per database per process (cached, so the API and worker of a combined process share it).

    SQLite: a single connection (one writer), every transaction `BEGIN IMMEDIATE`.
    """
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so that every transaction can start as
        # BEGIN IMMEDIATE: a read that later writes would otherwise fail with SQLITE_BUSY_SNAPSHOT
        # when another process wrote in between (https://sqlite.org/isolation.html).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Cents(sa.TypeDecorator[Decimal]):
    """Euros as `Decimal` in Python, integer cents in the database."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        cents = Decimal(value) * 100
        if cents != cents.to_integral_value():
            raise ValueError(f"{value} has fractions of a cent")
        return int(cents)

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else (Decimal(value) / 100).quantize(Decimal("0.01"))


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite keeps no zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalText(sa.TypeDecorator[Decimal]):
    """An exact decimal stored as text (credits such as 2.5), the same on both databases."""

    impl = sa.String(32)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


@functools.cache
def _insert_unless_present(dialect_name: str, table: sa.Table) -> sa.Insert:
    module = postgresql if dialect_name == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()


async def insert_if_absent(conn: AsyncConnection, table: sa.Table, row: Mapping[str, Any]) -> bool:
    """INSERT one row unless its key exists; True if it was inserted.

    The statement is built once per dialect and table and run with parameters: building an
    INSERT … ON CONFLICT with literal values per call cost more CPU than the database work itself.
    """
    result = await conn.execute(_insert_unless_present(conn.dialect.name, table), dict(row))
    return bool(result.rowcount == 1)


def insert_ignoring_duplicates(
    conn: AsyncConnection, table: sa.Table, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]
) -> sa.Insert:
    """An INSERT that skips rows whose key exists (ON CONFLICT DO NOTHING) on either database."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).values(rows).on_conflict_do_nothing()


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def upsert_if_newer(
    conn: AsyncConnection, table: sa.Table, key: Mapping[str, Any], version: int, values: Mapping[str, Any]
) -> bool:
    """Write `values` at `version` unless the row already holds this or a newer version.

    This is how local copies stay right whatever order events arrive in: the aggregate's
    `sequence` decides, and a stale event changes nothing. Returns whether anything was written.
    """
    where = [table.c[name] == value for name, value in key.items()]
    updated = await conn.execute(
        table.update().where(*where, table.c.version < version).values(version=version, **values)
    )
    if updated.rowcount:
        return True
    return await insert_if_absent(conn, table, {**key, **values, "version": version})
