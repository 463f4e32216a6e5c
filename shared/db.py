"""Engines, column types and small SQL helpers that work on both SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared.pool import FairAsyncPool

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
    # Reads (search facets, reports) over a catalogue-sized database: a 64 MiB page cache instead of the
    # default 2 MiB and memory-mapped reads (no read() call per page); both only as far as used.
    "PRAGMA cache_size=-65536",
    "PRAGMA mmap_size=268435456",
    "PRAGMA temp_store=MEMORY",
)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


# Options of SQLAlchemy's asyncpg adapter that asyncpg.connect itself does not take.
_ADAPTER_ONLY = frozenset({"async_creator_fn", "prepared_statement_cache_size", "prepared_statement_name_func"})


def driver_connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """PostgreSQL: `asyncpg.connect` keyword arguments for a connection of one's own (outside the pool) to
    the engine's database: its URL as the dialect translates it (host, port, user, password, database,
    ssl, …), less the options only SQLAlchemy's adapter knows. Turning the URL back into a DSN instead
    would hand asyncpg those options as server settings, and the server refuses unknown ones."""
    _args, kwargs = engine.dialect.create_connect_args(engine.url)
    return {name: value for name, value in kwargs.items() if name not in _ADAPTER_ONLY}


def make_engine(
    url: str, *, pool_size: int = 10, pg_settings: tuple[tuple[str, str], ...] = (), read_only: bool = False
) -> AsyncEngine:
    """One engine per database per process (cached, so the API and worker of a combined process share it).

    The cache keys on the settings, not on how a call spells them: `make_engine(url)` and
    `make_engine(url, read_only=False)` are one engine. (`functools.cache` on this function itself told
    them apart, and a combined reporting process had two SQLite writer connections, whose inline
    `BEGIN IMMEDIATE` could wait out the busy timeout on the loop that the other needed to commit.)

    SQLite: a single connection (one writer), every transaction `BEGIN IMMEDIATE`, statements run on
    the event loop's own thread (see `_InlineSqlite`). PostgreSQL: `pool_size` connections kept open,
    none beyond; no round trip to test a connection at each checkout; one the server has closed is
    replaced instead (`_replace_closed`); `pg_settings` are the server settings of every connection
    (sent as it opens: no round trip). Both: requests waiting for a connection get one in the order
    they asked (`shared.pool.FairAsyncPool`).

    `read_only`: for a process that only reads (the reporting API's extra processes, decision 004).
    SQLite transactions then begin deferred (`BEGIN`): in WAL mode a reader neither takes nor waits for
    the write lock, so it runs beside the writer process, and its snapshot starts at its first read.
    `PRAGMA query_only` (SQLite) or `default_transaction_read_only` (PostgreSQL) refuses any write.
    """
    return _engine(url, pool_size, pg_settings, read_only)


def forget_engines() -> None:
    """Drop the cached engines (tests and benchmarks that make many databases); disposing is the caller's."""
    _engine.cache_clear()


@functools.cache
def _engine(url: str, pool_size: int, pg_settings: tuple[tuple[str, str], ...], read_only: bool) -> AsyncEngine:
    if not is_sqlite(url):
        if read_only:
            pg_settings = (*pg_settings, ("default_transaction_read_only", "on"))
        # No overflow: a connection opened above the pool's size is closed again as soon as it is returned,
        # and under a rush that meant a new server process (fork, catalogue cache, SQLAlchemy's type
        # queries) every few requests: the postmaster alone took 0.1 core. Requests beyond `pool_size`
        # wait for a connection instead; ten in flight keep one process busy (docs/performance.md).
        connect_args = {"server_settings": dict(pg_settings)} if pg_settings else {}
        engine = create_async_engine(
            url, poolclass=FairAsyncPool, pool_size=pool_size, max_overflow=0, connect_args=connect_args
        )
        event.listen(engine.sync_engine, "checkout", _replace_closed)
        return engine
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    inline = path not in ("", ":memory:") and os.environ.get("TARJOTIN_SQLITE_THREAD", "") != "1"
    engine = create_async_engine(
        url,
        poolclass=FairAsyncPool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
        # Inline: SQLAlchemy closes every transaction it began before the checkin; `_end_leftover` below
        # catches anything else without the pool's rollback through the greenlet bridge (~30 µs).
        **(
            {"async_creator": functools.partial(_InlineSqlite.connect, path), "pool_reset_on_return": None}
            if inline
            else {}
        ),
    )
    if inline:
        event.listen(engine.sync_engine.pool, "checkin", _end_leftover)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so that every transaction can start as
        # BEGIN IMMEDIATE: a read that later writes would otherwise fail with SQLITE_BUSY_SNAPSHOT
        # when another process wrote in between (https://sqlite.org/isolation.html).
        if dbapi_connection.isolation_level is not None:
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        driver = conn.connection.driver_connection
        if isinstance(driver, _InlineSqlite):
            driver.begin(immediate=not read_only)  # on this thread: no statement context, no greenlet hop
        else:
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _end_leftover(dbapi_connection: Any, _record: Any) -> None:
    """A transaction still open at checkin (none should be) is rolled back, on this thread, before reuse."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if isinstance(driver, _InlineSqlite):
        driver.end_leftover()


def _replace_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled asyncpg connection the server closed (restart, idle timeout) is swapped for a new one.

    asyncpg notices a closed socket on its own, so this costs no round trip, unlike `pool_pre_ping`
    (~0.2 ms of CPU per checkout). A connection that dies unnoticed fails its statement; SQLAlchemy
    then invalidates the pool and callers retry (consumers and the relay do by design).
    """
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise sa.exc.DisconnectionError("the server closed this connection")


class _InlineCursor:
    """aiosqlite's cursor interface over a sqlite3 cursor, run on the calling thread."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> _InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = None) -> _InlineCursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Any) -> _InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _RunNow:
    """Stands in for aiosqlite's request queue (SQLAlchemy puts isolation-level changes on it)."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class _InlineSqlite:
    """The part of aiosqlite's connection SQLAlchemy uses, over sqlite3 on the event loop's thread.

    aiosqlite hands every call (cursor, execute, fetch, close, commit) to a thread and back: ~0.1 ms
    of CPU each, four per statement, 3-4x the cost of the statement itself on a local WAL file. With
    one connection per database and process (the pool holds one), the loop would wait for it anyway;
    only another process holding the write lock (busy_timeout) can now stall the loop.
    `TARJOTIN_SQLITE_THREAD=1` goes back to aiosqlite's thread.
    """

    _tx = _RunNow()

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection

    @classmethod
    async def connect(cls, path: str) -> _InlineSqlite:
        return cls(sqlite3.connect(path, isolation_level=None, check_same_thread=False))

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self._conn.isolation_level = value

    def cursor(self) -> _InlineCursor:
        return _InlineCursor(self._conn.cursor())

    @property
    def sqlite3_connection(self) -> sqlite3.Connection:
        """The `sqlite3` connection itself (`shared.direct` runs the hottest statements on it)."""
        return self._conn

    def begin(self, *, immediate: bool) -> None:
        self._conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def end_leftover(self) -> None:
        connection = self._connection
        if connection is not None and connection.in_transaction:
            connection.rollback()

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


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


def insert_unless_present(conn: AsyncConnection, table: sa.Table) -> sa.Insert:
    """The INSERT … ON CONFLICT DO NOTHING of `table`, built once per dialect: run it with a list of rows.

    With `.returning(...)` and many rows it answers the rows actually inserted (duplicates are
    skipped), at a third of the CPU of `insert_ignoring_duplicates(...)`, which builds the statement
    with the rows' values on every call.
    """
    return _insert_unless_present(conn.dialect.name, table)


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


@functools.cache
def plain_insert(table: sa.Table) -> sa.Insert:
    """`table.insert()`, built once per table and run with parameters: no construction or cache key per call."""
    return table.insert()


Statement = sa.Update | sa.Insert
Shape = tuple[tuple[sa.Table, tuple[str, ...], int], ...]


@functools.lru_cache(maxsize=256)
def _with_inserts(statement: Statement, shape: Shape) -> Statement:
    """`statement` with one data-modifying CTE per kept insert (of one or more rows, in one statement so
    that their ids follow their order); parameters `w<i>_<row>_<column>`. Built once per shape."""
    ctes = []
    for i, (table, columns, rows) in enumerate(shape):
        # INSERT … SELECT, not VALUES: an INSERT with VALUES would also take any of `statement`'s
        # parameters named like one of its other columns (`id`, `created_at`) when compiled.
        selects = [
            sa.select(*(sa.bindparam(f"w{i}_{r}_{name}", type_=table.c[name].type) for name in columns))
            for r in range(rows)
        ]
        source = selects[0] if rows == 1 else sa.union_all(*selects)
        ctes.append(table.insert().from_select(columns, source).cte(f"w{i}"))
    return statement.add_cte(*ctes)


class Writes:
    """Inserts of one transaction sent together with its next statement where that saves round trips.

    On PostgreSQL every statement is a round trip (and a parse, bind and execute on the server):
    `insert` keeps the rows back, and `execute` sends the kept inserts as data-modifying CTEs of its own
    statement, `WITH w0 AS (INSERT …), w1 AS (INSERT …) UPDATE …`, in one. PostgreSQL runs the parts of
    one statement on one snapshot (none sees another's rows) and checks foreign keys at its end, so an
    inserted row may refer to one inserted beside it. It runs the inserts after the main statement, in
    no set order between separate `insert`s; the rows of one `insert` are inserted in their order (their
    ids follow it: an outbox's events). On SQLite, where a statement costs no round trip, `insert` runs
    at once. Either way a failing insert (a unique key) fails the transaction, at the `execute` on
    PostgreSQL. The enrolment request sends its five inserts with its seat update, billing its events
    with the new commitment (decision 009). A combined statement is built once per shape (tables,
    columns, row counts, statement). Kept rows go only with `execute`: a caller must end with it.
    """

    __slots__ = ("_held", "conn", "deferred")

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.deferred = conn.dialect.name == "postgresql"
        self._held: list[tuple[sa.Table, tuple[Mapping[str, Any], ...]]] = []

    async def insert(self, table: sa.Table, *rows: Mapping[str, Any]) -> None:
        """Rows of one table, all with the same columns."""
        if not rows:
            return
        if self.deferred:
            self._held.append((table, rows))
        else:
            await self.conn.execute(
                plain_insert(table), [dict(row) for row in rows] if len(rows) > 1 else dict(rows[0])
            )

    async def execute(self, statement: Statement, params: Mapping[str, Any]) -> sa.CursorResult[Any]:
        """Run `statement` (an UPDATE or INSERT), with the kept inserts on PostgreSQL."""
        held, self._held = self._held, []
        if not held:
            return await self.conn.execute(statement, dict(params))
        shape = tuple((table, tuple(rows[0]), len(rows)) for table, rows in held)
        values = dict(params)
        for i, (_table, rows) in enumerate(held):
            for r, row in enumerate(rows):
                values.update({f"w{i}_{r}_{name}": value for name, value in row.items()})
        return await self.conn.execute(_with_inserts(statement, shape), values)
