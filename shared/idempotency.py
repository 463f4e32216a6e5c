"""Idempotency-Key support: the response to a creating POST is stored with the state change.

The key row is written in the same transaction as what the request created, so a retried request
gets the very same answer, and a crash leaves either both or neither. Reusing a key with a
different body is refused (409), as draft-ietf-httpapi-idempotency-key-header suggests.
Keys belong to the caller who sent them (another caller's key is a different key) and are kept
for 24 hours: after that the same key starts a new request, and `prune` deletes the old rows.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import Writes
from shared.errors import Conflict, DomainError

Work = Callable[[AsyncConnection], Awaitable[tuple[int, dict[str, Any]]]]
RawWork = Callable[[AsyncConnection, "Answer"], Awaitable[tuple[int, bytes]]]
KEEP_S = 24 * 3600


def add_idempotency_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "idempotency_keys",
        metadata,
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def fingerprint(payload: Any) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class _Statements:
    recall: sa.Select[Any]
    forget: sa.Delete
    store: sa.Insert
    restore: sa.Update


@functools.cache
def _statements(table: sa.Table) -> _Statements:
    """Built once per table and run with parameters (building them per request cost more than running them)."""
    c = table.c
    return _Statements(
        recall=sa.select(c.fingerprint, c.status, c.body, c.created_at).where(c.key == sa.bindparam("key")),
        forget=table.delete().where(c.key == sa.bindparam("key")),
        store=table.insert(),
        restore=table.update().where(c.key == sa.bindparam("b_key")),
    )


async def _recall(conn: AsyncConnection, table: sa.Table, key: str, print_: str) -> tuple[int, bytes] | None:
    statements = _statements(table)
    row = (await conn.execute(statements.recall, {"key": key})).first()
    if row is None:
        return None
    if row.created_at < time.time() - KEEP_S:
        await conn.execute(statements.forget, {"key": key})
        return None
    if row.fingerprint != print_:
        raise Conflict(
            "This Idempotency-Key was already used with a different request body; use a new key for a new request."
        )
    return row.status, bytes(row.body)


async def prune(engine: AsyncEngine, table: sa.Table) -> int:
    """Delete keys older than 24 hours; returns how many went."""
    async with engine.begin() as conn:
        result = await conn.execute(table.delete().where(table.c.created_at < time.time() - KEEP_S))
    return int(result.rowcount or 0)


def scoped_key(namespace: str, caller_subject: str, key: str | None) -> str | None:
    """The stored key: per operation and per caller, so nobody can replay another caller's response."""
    if key is None:
        return None
    return f"{namespace}:{hashlib.sha256(caller_subject.encode()).hexdigest()[:16]}:{key}"


async def run_once(
    engine: AsyncEngine, table: sa.Table, key: str | None, payload: Any, work: Work
) -> tuple[int, dict[str, Any], bool]:
    """Run `work` in one transaction, at most once per key. Returns (status, body, replayed).

    A replay neither runs nor audits anything again: the key is looked up before the work.
    """
    if key is None:
        async with engine.begin() as conn:
            status, body = await work(conn)
        return status, body, False
    print_ = fingerprint(payload)
    statements = _statements(table)
    for _ in range(2):
        try:
            async with engine.begin() as conn:
                stored = await _recall(conn, table, key, print_)
                if stored is not None:
                    return stored[0], orjson.loads(stored[1]), True
                status, body = await work(conn)
                row = {"key": key, "fingerprint": print_, "status": status, "body": orjson.dumps(body)}
                await conn.execute(statements.store, {**row, "created_at": time.time()})
            return status, body, False
        except IntegrityError:
            continue  # a concurrent request with the same key won; answer with its stored response
    async with engine.begin() as conn:
        stored = await _recall(conn, table, key, print_)
    if stored is None:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.")
    return stored[0], orjson.loads(stored[1]), True


class Answer:
    """The stored answer of one `run_once_raw` run under an Idempotency-Key.

    The work may store the answer it expects to give early (`store`), e.g. before it takes a row lock
    that other requests queue for, so that the key's insert does not lengthen that wait; whatever it
    returns in the end is stored after it (as an update if it differs from the early one). A key
    already stored fails the early insert just as it would fail the late one. Without a key, nothing
    is stored.
    """

    __slots__ = ("_key", "_print", "_statements", "_stored", "_table")

    def __init__(self, table: sa.Table, key: str | None, print_: str) -> None:
        self._key, self._print, self._statements, self._table = key, print_, _statements(table), table
        self._stored: tuple[int, bytes] | None = None

    async def store(self, conn: AsyncConnection | Writes, status: int, body: bytes) -> None:
        """Store (or correct) the answer; given `Writes`, a first answer goes with their next statement."""
        if self._key is None or self._stored == (status, body):
            return
        if self._stored is None:
            row = {"key": self._key, "fingerprint": self._print, "status": status, "body": body}
            if isinstance(conn, Writes):
                await conn.insert(self._table, {**row, "created_at": time.time()})
            else:
                await conn.execute(self._statements.store, {**row, "created_at": time.time()})
        else:
            target = conn.conn if isinstance(conn, Writes) else conn
            await target.execute(self._statements.restore, {"b_key": self._key, "status": status, "body": body})
        self._stored = (status, body)


async def run_once_raw(
    engine: AsyncEngine, table: sa.Table, key: str | None, print_: str, work: RawWork
) -> tuple[int, bytes, bool]:
    """`run_once` for cheap work that answers with JSON bytes, stored and replayed as they are.

    `print_` is the request's `fingerprint`. Optimistic: the work runs first and the key is stored
    with its answer in the same transaction (after it, or early through `Answer.store`); a key already
    stored fails that insert, the transaction (the work too) rolls back and the stored answer is given
    instead. New keys, nearly all of them, pay one statement instead of two; a replay pays for running
    the work and rolling it back, so this is for work of a few statements (an enrolment), not for
    imports or invoice runs. When the work refuses (a domain error), the key is looked up before the
    refusal is answered, so a replay still gets the original answer (or 409).

    The work must be safe to run again after a unique conflict with a concurrent request (two first
    enrolments of the same student at once): it then runs once more and finds what the other wrote.
    With a key that happens below, when no stored answer is found; without one, here.
    """
    if key is None:
        try:
            async with engine.begin() as conn:
                status, body = await work(conn, Answer(table, None, print_))
        except IntegrityError:
            async with engine.begin() as conn:
                status, body = await work(conn, Answer(table, None, print_))
        return status, body, False
    for _ in range(2):
        try:
            async with engine.begin() as conn:
                answer = Answer(table, key, print_)
                status, body = await work(conn, answer)
                await answer.store(conn, status, body)
            return status, body, False
        except IntegrityError:
            pass  # the key is stored (or a concurrent request with it won): answer with the stored response
        except DomainError:
            async with engine.begin() as conn:
                stored = await _recall(conn, table, key, print_)
            if stored is None:
                raise
            return stored[0], stored[1], True
        async with engine.begin() as conn:
            stored = await _recall(conn, table, key, print_)  # an expired key is deleted here: run again
        if stored is not None:
            return stored[0], stored[1], True
    raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.")
