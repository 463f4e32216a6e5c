"""The few hottest statements, run straight on the database driver of a SQLAlchemy connection.

Every message crosses the outbox (insert, relay read, relay mark) and an inbox (claim). Through
SQLAlchemy's async execution layer each of these statements costs ~90 µs of CPU on SQLite and more on
asyncpg, most of it the greenlet bridge and result machinery, while `sqlite3` itself takes ~12 µs
(docs/performance.md). These statements touch only plain columns (text, float, bytes, integer ids),
so they need none of SQLAlchemy's type processing: `shared.bus` writes them once per database, in its
own SQL, and runs them on the driver connection *of the caller's transaction*.

`driver_of(conn)` hands out that driver connection only where it is safe:

- SQLite on the event loop's thread (`shared.db._InlineSqlite`): the `sqlite3` connection. SQLAlchemy
  has already sent `BEGIN IMMEDIATE` when its transaction began.
- PostgreSQL (asyncpg): the asyncpg connection. SQLAlchemy's adapter begins its transaction lazily, at
  its first statement; a statement run on the driver before that would run outside the transaction, so
  the adapter's transaction is started first.
- Anything else (aiosqlite on its thread: `:memory:` databases, `TARJOTIN_SQLITE_THREAD=1`), or a
  connection not in the transaction state the caller expects: `None`, and callers keep to their
  SQLAlchemy statements.

Driver errors are raised as SQLAlchemy's (`translated`), so that callers and the HTTP layer treat them
exactly as before: a lost connection is still a 503 "send it again", not a 500.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import _InlineSqlite

Driver: TypeAlias = sqlite3.Connection | asyncpg.Connection

_LOST = (
    sqlite3.OperationalError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # The server's goodbye of a terminated backend can arrive while the next statement starts: asyncpg
    # then reports its protocol in the wrong state ("cannot switch to state …"); the connection is unusable.
    asyncpg.InternalClientError,
    OSError,
)
_INTEGRITY = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)


async def driver_of(conn: AsyncConnection, *, in_transaction: bool = True) -> Driver | None:
    """The driver connection under `conn`, inside its transaction (see the module's notes), or None.

    With `in_transaction=False` the caller runs its own transaction on the driver and ends it before
    `conn` goes back to the pool; the SQLAlchemy connection must have none open (else None).
    """
    sync = conn.sync_connection
    if sync is None or sync.closed or sync.invalidated or sync.in_transaction() != in_transaction:
        return None
    fairy = sync.connection
    driver = fairy.driver_connection
    if isinstance(driver, _InlineSqlite):
        return driver.sqlite3_connection
    if isinstance(driver, asyncpg.Connection):
        adapter: Any = fairy.dbapi_connection
        if in_transaction and adapter._transaction is None:  # SQLAlchemy's asyncpg adapter: lazy BEGIN
            async with translated(conn, "BEGIN"):
                await adapter._start_transaction()
        return driver
    return None


@contextlib.asynccontextmanager
async def translated(conn: AsyncConnection, statement: str) -> AsyncIterator[None]:
    """Raise a driver's error as the SQLAlchemy error SQLAlchemy itself would have raised for it.

    A connection the server lost is invalidated first, as SQLAlchemy does: the pool replaces it, and
    the caller's rollback does not fail again on the dead socket.
    """
    try:
        yield
    except sa.exc.SQLAlchemyError:
        raise
    except _LOST as exc:
        lost = not isinstance(exc, sqlite3.OperationalError)  # SQLite's are "busy" or "locked", the file stays
        if lost:
            await conn.invalidate(exc)
        raise sa.exc.OperationalError(statement, None, exc, connection_invalidated=lost) from exc
    except _INTEGRITY as exc:
        raise sa.exc.IntegrityError(statement, None, exc) from exc
    except (sqlite3.Error, asyncpg.PostgresError) as exc:
        raise sa.exc.DBAPIError(statement, None, exc) from exc


def placeholders(count: int, per_row: int = 1) -> str:
    """`?` markers for SQLite: `(?, ?), (?, ?)` for count=2, per_row=2; `?, ?` for per_row=1."""
    if per_row == 1:
        return ", ".join("?" * count)
    row = "(" + ", ".join("?" * per_row) + ")"
    return ", ".join([row] * count)
