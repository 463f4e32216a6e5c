"""Transactional outbox: stage events in the caller's transaction; a relay publishes them.

The relay reads pending rows in id order, publishes a batch as persistent messages with publisher
confirms and `mandatory`, waits for every confirm, and only then marks the batch sent. A crash
between publish and mark re-publishes the batch (consumers dedupe by event id); nothing is lost,
and since rows leave in id order, nothing is reordered. On any broker error it reconnects with
backoff and starts again from the oldest pending row.

On PostgreSQL, where every statement is a round trip, the mark rides on the next read: a batch is
marked sent by the statement that reads the next one, right away when the batch was full, else at the
next kick or poll, so each batch costs one statement, also when events come one at a time. After a
pause of 50 ms with no read, the relay marks on its own: published rows do not look pending (the
backlog) for longer than that. On SQLite a statement is a local call and the mark a write transaction,
which would then stand between a kick and its publish: there the relay marks right after the confirms.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, NamedTuple

import aio_pika
import aiormq
import asyncpg
import sqlalchemy as sa
import structlog
from aio_pika.abc import AbstractExchange
from prometheus_client import Counter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import metrics
from shared.bus.tables import NOTIFY_CHANNEL
from shared.bus.topology import declare_exchange
from shared.db import Writes, driver_connect_args, plain_insert
from shared.direct import driver_of, placeholders, translated
from shared.events import Envelope

log = structlog.get_logger("relay")


class Pending(NamedTuple):
    """An outbox row not yet published."""

    id: int
    event_id: str
    routing_key: str
    payload: bytes
    created_at: float


async def stage(conn: AsyncConnection, outbox: sa.Table, *events: Envelope) -> None:
    """Write events to the outbox inside the caller's transaction (never publish directly)."""
    if not events:
        return
    now = time.time()
    rows = [(e.id, e.routing_key, e.to_json(), now) for e in events]
    driver = await driver_of(conn)
    if isinstance(driver, sqlite3.Connection):
        sql = f"INSERT INTO {outbox.name} (event_id, routing_key, payload, created_at) VALUES (?, ?, ?, ?)"
        async with translated(conn, sql):
            driver.executemany(sql, rows)
    elif driver is not None:
        sql = f"INSERT INTO {outbox.name} (event_id, routing_key, payload, created_at) VALUES ($1, $2, $3, $4)"
        async with translated(conn, sql):
            await (driver.execute(sql, *rows[0]) if len(rows) == 1 else driver.executemany(sql, rows))
    else:
        columns = ("event_id", "routing_key", "payload", "created_at")
        await conn.execute(plain_insert(outbox), [dict(zip(columns, row, strict=True)) for row in rows])


async def stage_with(writes: Writes, outbox: sa.Table, *events: Envelope) -> None:
    """`stage` as one of `writes`: on PostgreSQL the rows go with their next statement, in this order."""
    if not writes.deferred:
        await stage(writes.conn, outbox, *events)
        return
    now = time.time()
    rows = [{"event_id": e.id, "routing_key": e.routing_key, "payload": e.to_json(), "created_at": now} for e in events]
    await writes.insert(outbox, *rows)


async def unstage(conn: AsyncConnection, outbox: sa.Table, event_id: str) -> None:
    """Take back an event staged earlier in the same transaction (a write that turned out otherwise)."""
    await conn.execute(outbox.delete().where(outbox.c.event_id == event_id))


def to_message(event_id: str, payload: bytes, created_at: float) -> aio_pika.Message:
    return aio_pika.Message(
        payload,
        message_id=event_id,
        content_type="application/cloudevents+json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=created_at,
    )


async def _channel_under(exchange: AbstractExchange) -> aiormq.Channel:
    """The AMQP channel under an aio-pika exchange: aiormq's, whose publish can leave out the wait for
    the socket write (`_publish`)."""
    assert isinstance(exchange, aio_pika.Exchange), exchange
    channel = await exchange.channel.get_underlay_channel()
    assert isinstance(channel, aiormq.Channel), channel
    return channel


async def _publish(channel: aiormq.Channel, exchange: str, row: Pending) -> object:
    """Publish one row (persistent, `mandatory`) and wait for the broker's confirm; raises if the broker
    returns it (no queue bound: the channel has `on_return_raises`) or nacks it.

    What `aio_pika.Exchange.publish` does, less its wait for the socket write: aio-pika's publish holds
    the channel's lock until the connection's writer task has written its frames, so the publishes of a
    batch take turns, three turns of the event loop each. On a loop busy with requests that made a batch
    of 500 take 1.8 s against 0.1 s on an idle one (docs/performance.md, twenty-first round). Here a
    publish queues its frames and lets go of the lock at once (`_publish_all` starts no more at a time
    than the write queue holds), and only the confirm is awaited.
    """
    message = to_message(row.event_id, row.payload, row.created_at)
    return await channel.basic_publish(
        message.body,
        exchange=exchange,
        routing_key=row.routing_key,
        properties=message.properties,
        mandatory=True,
        wait=False,
    )


async def _publish_all(channel: aiormq.Channel, exchange: str, rows: Sequence[Pending]) -> list[object]:
    """Publish `rows` with pipelined confirms; each row's confirm, or what its publish raised.

    Publishes start in row order, so their frames leave in outbox order on this one channel, and as
    many at a time as the connection's write queue holds (aiormq's `FRAME_BUFFER_SIZE`, 10): one more
    would wait inside the channel's lock for the writer, and every publish after it would take its turn
    of the event loop for that lock. Between groups the relay yields once, in which the writer empties
    the queue; a group that finds it full anyway only waits, in order.
    """
    group = aiormq.Connection.FRAME_BUFFER_SIZE
    publishes: list[asyncio.Future[object]] = []
    try:
        for start in range(0, len(rows), group):
            if start:
                await asyncio.sleep(0)
            publishes += [asyncio.ensure_future(_publish(channel, exchange, r)) for r in rows[start : start + group]]
        return await asyncio.gather(*publishes, return_exceptions=True)
    except BaseException:  # cancelled (stopping): no publish outlives its batch
        for publish in publishes:
            publish.cancel()
        raise


class Relay:
    """Publishes the outbox of one service's database to the exchange."""

    def __init__(
        self,
        engine: AsyncEngine,
        outbox: sa.Table,
        *,
        service: str,
        amqp_url: str,
        exchange: str,
        poll_s: float = 0.02,
        batch: int = 500,
        idle_poll_s: float = 0.25,
        idle_after_s: float = 1.0,
        mark_after_s: float = 0.05,
    ) -> None:
        self.engine, self.outbox, self.service = engine, outbox, service
        self.amqp_url, self.exchange_name = amqp_url, exchange
        self.poll_s, self.batch = poll_s, batch
        # With nothing to publish for `idle_after_s`, poll only every `idle_poll_s` (kicks still wake
        # the relay at once): an idle service's relay stops costing CPU, a busy one keeps `poll_s`.
        self.idle_poll_s, self.idle_after_s = max(poll_s, idle_poll_s), idle_after_s
        # A published batch is marked with the next read (`publish_batch`), or after `mark_after_s` without one.
        self.mark_after_s = mark_after_s
        self.kick = asyncio.Event()
        self.connected = asyncio.Event()
        self._last_backlog_check = 0.0
        self._last_found = 0.0
        self._own: sa.Connection | None = None
        # Published and confirmed, not yet marked: the next read marks them (module docstring).
        self._marks_wait = engine.dialect.name == "postgresql"
        self._unmarked: list[Pending] = []
        self._confirmed_at = 0.0  # when the broker confirmed them: their `published_at`
        o = outbox
        self._pending = (
            sa.select(o.c.id, o.c.event_id, o.c.routing_key, o.c.payload, o.c.created_at)
            .where(o.c.published_at.is_(None))
            .order_by(o.c.id)
            .limit(batch)
        )
        self._mark = (
            o.update().where(o.c.id.in_(sa.bindparam("ids", expanding=True))).values(published_at=sa.bindparam("now"))
        )
        pending = (
            f"SELECT id, event_id, routing_key, payload, created_at FROM {o.name}"
            " WHERE published_at IS NULL ORDER BY id LIMIT "
        )
        self._pending_sqlite, self._pending_pg = pending + "?", pending + "$1"
        # "published_at IS NULL" lets PostgreSQL find the rows through the small pending-rows index in
        # any plan: asyncpg prepares the statement once, and a generic plan made while the outbox was
        # empty otherwise scans the whole table for `id = ANY(...)` on every cycle (decision 009).
        self._mark_pg = f"UPDATE {o.name} SET published_at = $1 WHERE published_at IS NULL AND id = ANY($2::bigint[])"
        # One statement (its own transaction): the read shares the update's snapshot, so it still sees
        # the rows being marked as pending and leaves them out by id.
        self._mark_and_fetch_pg = (
            f"WITH marked AS ({self._mark_pg}) SELECT id, event_id, routing_key, payload, created_at FROM {o.name}"
            " WHERE published_at IS NULL AND id <> ALL($2::bigint[]) ORDER BY id LIMIT $3"
        )
        self._published: dict[str, Counter] = {}

    def wake_after_commits(self, engine: AsyncEngine) -> Coroutine[Any, Any, None] | None:
        """Wake the relay after every commit on `engine` that may have staged events; returns the loop
        to run beside `run` that does it, if it takes one.

        PostgreSQL: the outbox's notification (`listen`), which arrives once the commit is visible, from
        this process and any other (the API's, in split mode). Not SQLAlchemy's commit event: it fires
        before the COMMIT is sent, so a relay woken by it read while the commit was on its way, found
        nothing, and took another wake for the rows (a wasted read per commit at a trickle). Elsewhere
        (SQLite) the commit event (`_wake_on_commit`): the inline connection commits without handing the
        loop over, so the relay runs after the commit.
        """
        if engine.dialect.name == "postgresql":
            return self.listen(driver_connect_args(engine))
        self._wake_on_commit(engine)
        return None

    def _wake_on_commit(self, engine: AsyncEngine) -> None:
        """Kick the relay after every commit on `engine` (it may have staged events), except its own."""

        def on_commit(conn: sa.Connection) -> None:
            if conn is not self._own:
                self.kick.set()

        event.listen(engine.sync_engine, "commit", on_commit)

    async def listen(self, connect_args: Mapping[str, Any], *, check_every_s: float = 30.0) -> None:
        """PostgreSQL: wake the relay whenever a transaction that staged events commits, in any process.

        LISTENs on `NOTIFY_CHANNEL` (the outbox's trigger, `create_outbox_notify`) on a connection of its
        own (`connect_args`: `asyncpg.connect`'s, see `shared.db.driver_connect_args`), and reconnects when
        it is lost; after (re)connecting it wakes the relay once for what was staged meanwhile. The poll
        stays as the fallback, so a lost notification only costs its delay.
        """
        backoff = 0.2
        while True:
            try:
                conn = await asyncpg.connect(**{**connect_args, "timeout": 5})
                try:
                    lost = asyncio.Event()
                    conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                    await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self.kick.set())
                    self.kick.set()
                    backoff = 0.2
                    while not lost.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(lost.wait(), check_every_s)
                        if not lost.is_set():
                            await conn.execute("SELECT 1")  # a half-open socket shows here
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("relay listener failed; reconnecting", service=self.service, error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def run(self) -> None:
        """Publish forever, reconnecting after broker or database failures."""
        try:
            await self._run()
        finally:  # stopping: mark what was confirmed, so that a restart does not publish it again
            if self._unmarked:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._mark_unmarked())

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                connection = await aio_pika.connect(self.amqp_url, timeout=5)
                async with connection:
                    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                    exchange = await declare_exchange(channel, self.exchange_name)
                    self.connected.set()
                    log.info("relay connected", service=self.service)
                    backoff = 0.2
                    await self._publish_forever(exchange)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any broker/database failure: back off and start over
                self.connected.clear()
                metrics.RELAY_ERRORS.labels(self.service, type(exc).__name__).inc()
                log.warning("relay failed; reconnecting", service=self.service, error=repr(exc), backoff=backoff)
                with contextlib.suppress(Exception):  # keep the backlog visible while the broker is away
                    await self._update_backlog_gauges()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _publish_forever(self, exchange: AbstractExchange) -> None:
        while True:
            self.kick.clear()
            sent = await self.publish_batch(exchange)
            await self._update_backlog_gauges()
            if sent < self.batch and not self.kick.is_set():
                now = time.monotonic()
                if sent:
                    self._last_found = now
                idle = now - self._last_found >= self.idle_after_s
                wait = self.idle_poll_s if idle else self.poll_s
                if self._unmarked and wait > self.mark_after_s:  # the next read may be a while away
                    if await self._kicked_within(self.mark_after_s):
                        continue
                    await self._mark_unmarked()  # a pause: published rows should not look pending for long
                    wait -= self.mark_after_s
                await self._kicked_within(wait)

    async def _kicked_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.kick.wait(), seconds)
            return True
        return False

    async def publish_batch(self, exchange: AbstractExchange) -> int:
        """Publish up to `batch` pending rows with pipelined confirms. Returns how many.

        On PostgreSQL the rows the last call published (confirmed) are marked sent by the statement
        that reads these: one statement per batch, whether the batches come back to back (a full batch:
        the relay reads on at once) or one at a time (a trickle: what is staged meanwhile wakes the
        relay, and its poll finds the rest). On SQLite they are marked as soon as they are confirmed.
        """
        rows = await self._mark_and_fetch(self._unmarked, at=self._confirmed_at)
        self._unmarked = []
        if not rows:
            return 0
        results = await _publish_all(await _channel_under(exchange), exchange.name, rows)
        done = 0
        for result in results:
            if isinstance(result, BaseException):
                break
            done += 1
        if done < len(rows):
            if done:
                await self._mark_and_fetch(rows[:done], fetch=False)
            failure = results[done]
            assert isinstance(failure, BaseException)
            raise failure
        if self._marks_wait:
            self._unmarked, self._confirmed_at = rows, time.time()
        else:
            await self._mark_and_fetch(rows, fetch=False)
        return len(rows)

    async def _mark_unmarked(self) -> None:
        await self._mark_and_fetch(self._unmarked, fetch=False, at=self._confirmed_at)
        self._unmarked = []

    async def _mark_and_fetch(
        self, published: Sequence[Pending], *, fetch: bool = True, at: float | None = None
    ) -> list[Pending]:
        """Mark confirmed rows sent (`published_at`: `at`, their confirm, or now) and read the next pending
        ones, in one transaction (on PostgreSQL one statement).

        On the inline SQLite connection and on asyncpg the transaction runs on the driver itself
        (`shared.direct`): no SQLAlchemy statement, no greenlet hop, and no commit event to wake
        this relay again.
        """
        ids, now = [r.id for r in published], at or time.time()
        async with self.engine.connect() as conn:
            driver = await driver_of(conn, in_transaction=False)
            if driver is None:
                rows = await self._mark_and_fetch_sqlalchemy(conn, ids, now, fetch)
            else:
                async with translated(conn, f"UPDATE {self.outbox.name} … / SELECT … pending"):
                    if isinstance(driver, sqlite3.Connection):
                        rows = self._mark_and_fetch_sqlite(driver, ids, now, fetch)
                    else:
                        rows = await self._mark_and_fetch_asyncpg(driver, ids, now, fetch)
        for r in published:
            counter = self._published.get(r.routing_key)
            if counter is None:
                counter = self._published[r.routing_key] = metrics.EVENTS_PUBLISHED.labels(self.service, r.routing_key)
            counter.inc()
        return rows

    def _mark_and_fetch_sqlite(self, db: sqlite3.Connection, ids: list[int], now: float, fetch: bool) -> list[Pending]:
        if not ids:  # a read alone needs no transaction of its own (autocommit connection)
            return [Pending(*row) for row in db.execute(self._pending_sqlite, (self.batch,))] if fetch else []
        db.execute("BEGIN IMMEDIATE")
        try:
            mark = f"UPDATE {self.outbox.name} SET published_at = ? WHERE id IN ({placeholders(len(ids))})"
            db.execute(mark, (now, *ids))
            rows = [Pending(*row) for row in db.execute(self._pending_sqlite, (self.batch,))] if fetch else []
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return rows

    async def _mark_and_fetch_asyncpg(
        self, db: asyncpg.Connection, ids: list[int], now: float, fetch: bool
    ) -> list[Pending]:
        """One round trip: a single statement needs no BEGIN and COMMIT of its own (autocommit)."""
        if not ids:
            return [Pending(*row) for row in await db.fetch(self._pending_pg, self.batch)] if fetch else []
        if not fetch:
            await db.execute(self._mark_pg, now, ids)
            return []
        return [Pending(*row) for row in await db.fetch(self._mark_and_fetch_pg, now, ids, self.batch)]

    async def _mark_and_fetch_sqlalchemy(
        self, conn: AsyncConnection, ids: list[int], now: float, fetch: bool
    ) -> list[Pending]:
        self._own = conn.sync_connection
        try:
            if ids:
                await conn.execute(self._mark, {"ids": ids, "now": now})
            rows = [Pending(*row) for row in await conn.execute(self._pending)] if fetch else []
            if ids:
                await conn.commit()
            else:
                await conn.rollback()
        finally:
            self._own = None
        return rows

    async def _update_backlog_gauges(self) -> None:
        now = time.monotonic()
        if now - self._last_backlog_check < 1.0:
            return
        self._last_backlog_check = now
        if self._unmarked:  # published: not backlog
            await self._mark_unmarked()
        count, oldest = await backlog(self.engine, self.outbox)
        metrics.OUTBOX_BACKLOG.labels(self.service).set(count)
        metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(time.time() - oldest if oldest else 0)


async def backlog(engine: AsyncEngine, outbox: sa.Table) -> tuple[int, float | None]:
    """Number of unpublished events and the creation time of the oldest one."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(outbox.c.published_at.is_(None))
            )
        ).one()
        await conn.rollback()
    return int(row[0]), row[1]


async def prune_published(engine: AsyncEngine, outbox: sa.Table, older_than_s: float, *, chunk: int = 5000) -> int:
    """Delete rows published more than `older_than_s` ago; returns how many went. Unpublished rows stay.

    Nothing reads a published row again (consumers dedupe by their own inbox), so it is kept only for
    looking back at what left the service. It deletes `chunk` rows per transaction: a SQLite writer
    (on the event loop's thread) or a PostgreSQL lock is never held for a whole rush's worth at once.
    """
    cutoff = time.time() - older_than_s
    o = outbox.c
    oldest = sa.select(o.id).where(o.published_at.is_not(None), o.published_at < cutoff).order_by(o.id).limit(chunk)
    delete = outbox.delete().where(o.id.in_(oldest))
    removed = 0
    while True:
        async with engine.begin() as conn:
            gone = int((await conn.execute(delete)).rowcount or 0)
        removed += gone
        if gone < chunk:
            return removed
        await asyncio.sleep(0)  # let requests in between chunks
