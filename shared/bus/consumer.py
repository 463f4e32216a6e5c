"""Idempotent consumer: inbox row + effect in one transaction, ack after commit, retries, dead letters.

Messages arrive with prefetch N and are handled in small batches: one database transaction per
batch, one inbox statement for all of its events. If a handler raises, the batch is rolled back and
run again with one savepoint per message; the failing message is re-published to the retry queue
for its attempt (or to the dead-letter queue after the last attempt) and acked only once that
publish is confirmed. The others are acked after the commit: a batch that fully succeeded with one
`ack(multiple=True)` up to its last delivery tag.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import aio_pika
import sqlalchemy as sa
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import metrics
from shared.bus.topology import QueueNames, declare_consumer_queues, declare_exchange
from shared.db import insert_if_absent, insert_unless_present
from shared.direct import driver_of, placeholders, translated
from shared.events import Envelope

log = structlog.get_logger("consumer")


def _delivery_tag(message: AbstractIncomingMessage) -> int:
    return message.delivery_tag or 0


Handler = Callable[[AsyncConnection, Envelope], Awaitable[None]]
ATTEMPT_HEADER = "x-attempt"


class _HandlerFailed(Exception):
    """A handler raised inside the optimistic batch: redo the batch message by message."""

    def __init__(self, outcome: _Outcome, error: Exception) -> None:
        super().__init__(repr(error))
        self.outcome, self.error = outcome, error


@dataclass
class _Outcome:
    message: AbstractIncomingMessage | None
    event: Envelope | None
    error: BaseException | None = None
    duplicate: bool = False


class Consumer:
    """Consumes one service's queue and dispatches each event type to its handler."""

    def __init__(
        self,
        engine: AsyncEngine,
        inbox: sa.Table,
        subscriptions: Mapping[str, Handler],
        *,
        service: str,
        amqp_url: str,
        exchange: str,
        queue: str,
        binding_keys: Sequence[str] | None = None,
        prefetch: int = 100,
        batch: int = 50,
        linger_s: float = 0.0,
        retry_delays_ms: Sequence[int] = (1000, 10000, 60000),
        max_attempts: int = 5,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.engine, self.inbox, self.subscriptions = engine, inbox, dict(subscriptions)
        self.service, self.amqp_url, self.exchange_name = service, amqp_url, exchange
        self.names = QueueNames(queue)
        self.binding_keys = list(binding_keys) if binding_keys is not None else list(self.subscriptions)
        self.prefetch, self.batch, self.linger_s = prefetch, batch, linger_s
        self.retry_delays_ms, self.max_attempts = tuple(retry_delays_ms), max_attempts
        self.after_commit = after_commit
        self.ready = asyncio.Event()
        self._handler_duration = metrics.HANDLER_DURATION.labels(service)
        self._metric_children: dict[str, tuple[Counter, Counter, Histogram]] = {}
        self._claim: sa.Insert | None = None

    async def run(self) -> None:
        """Consume forever, reconnecting after broker failures."""
        backoff = 0.2
        while True:
            try:
                connection = await aio_pika.connect(self.amqp_url, timeout=5)
                async with connection:
                    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                    await channel.set_qos(prefetch_count=self.prefetch)
                    exchange = await declare_exchange(channel, self.exchange_name)
                    queue = await declare_consumer_queues(
                        channel, exchange, self.names, self.binding_keys, self.retry_delays_ms
                    )
                    inbound: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
                    await queue.consume(inbound.put)
                    self.ready.set()
                    log.info("consumer connected", queue=self.names.main)
                    backoff = 0.2
                    await self._consume(connection, channel, inbound)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.ready.clear()
                log.warning("consumer failed; reconnecting", error=repr(exc), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _consume(
        self,
        connection: aio_pika.abc.AbstractConnection,
        channel: AbstractChannel,
        inbound: asyncio.Queue[AbstractIncomingMessage],
    ) -> None:
        while True:
            try:
                first = inbound.get_nowait() if not inbound.empty() else await asyncio.wait_for(inbound.get(), 1.0)
            except TimeoutError:
                if connection.is_closed or channel.is_closed:
                    raise ConnectionError("broker connection closed") from None
                continue
            batch = [first]
            while len(batch) < self.batch and not inbound.empty():
                batch.append(inbound.get_nowait())
            if self.linger_s and len(batch) < self.batch:
                await asyncio.sleep(self.linger_s)  # let more arrive: fewer transactions and acks per message
                while len(batch) < self.batch and not inbound.empty():
                    batch.append(inbound.get_nowait())
            await self.handle_batch(channel, batch)

    async def handle_batch(self, channel: AbstractChannel, messages: Sequence[AbstractIncomingMessage]) -> None:
        outcomes = [self._parse(m) for m in messages]
        started = time.perf_counter()
        await self._apply_with_db_retry(outcomes)
        self._handler_duration.observe(time.perf_counter() - started)
        if self.after_commit:
            self.after_commit()
        now = time.time()
        if all(outcome.error is None and outcome.event is not None for outcome in outcomes):
            # Every earlier delivery on this channel is acked (batches are handled one after another,
            # in delivery order), so one ack up to the batch's last tag acks exactly this batch.
            last = max((outcome.message for outcome in outcomes if outcome.message), key=_delivery_tag)
            await last.ack(multiple=True)
            for outcome in outcomes:
                self._count_handled(outcome, now)
            return
        for outcome in outcomes:
            event = outcome.event
            assert outcome.message is not None
            if outcome.error is None and event is not None:
                await outcome.message.ack()
                self._count_handled(outcome, now)
            else:
                await self._retry_or_dead_letter(channel, outcome, event.routing_key if event else "unparseable")

    def _count_handled(self, outcome: _Outcome, now: float) -> None:
        event = outcome.event
        assert event is not None
        routing_key = event.routing_key
        children = self._metric_children.get(routing_key)
        if children is None:
            children = self._metric_children[routing_key] = (
                metrics.EVENTS_CONSUMED.labels(self.service, routing_key, "handled"),
                metrics.EVENTS_CONSUMED.labels(self.service, routing_key, "duplicate"),
                metrics.EVENT_LAG.labels(self.service, routing_key),
            )
        (children[1] if outcome.duplicate else children[0]).inc()
        children[2].observe(max(0.0, now - event.time.timestamp()))

    async def apply(self, events: Sequence[Envelope]) -> list[BaseException | None]:
        """Handle events exactly as deliveries would be (inbox, savepoints, one transaction), without a broker.

        For replaying stored events and for tests that feed consumers duplicates in any order.
        """
        outcomes = [_Outcome(None, event) for event in events]
        await self._apply_with_db_retry(outcomes)
        return [outcome.error for outcome in outcomes]

    def _parse(self, message: AbstractIncomingMessage) -> _Outcome:
        try:
            return _Outcome(message, Envelope.from_json(message.body))
        except (ValidationError, ValueError) as exc:
            return _Outcome(message, None, error=exc)

    async def _apply_with_db_retry(self, outcomes: list[_Outcome]) -> None:
        """Run the batch's transaction; if the database itself fails, wait and run it again.

        First optimistically: one inbox statement for the batch and no savepoints. Only when a handler
        fails in a batch of several is the batch rolled back and run again with a savepoint per
        message, so that the failing message is set aside alone.
        """
        delay = 0.1
        while True:
            try:
                if not await self._apply_batch(outcomes):
                    async with self.engine.begin() as conn:
                        for outcome in outcomes:
                            if outcome.event is not None:
                                outcome.error, outcome.duplicate = None, False
                                await self._apply_one(conn, outcome)
                return
            except Exception as exc:
                log.warning("consumer transaction failed; retrying", error=repr(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _apply_batch(self, outcomes: list[_Outcome]) -> bool:
        """All messages in one transaction without savepoints; False (and nothing kept) if a handler failed
        in a batch of several. A lone event whose handler failed is rolled back and keeps its error."""
        events = [outcome for outcome in outcomes if outcome.event is not None]
        if not events:
            return True
        try:
            async with self.engine.begin() as conn:
                claimed = await self._claim_all(conn, [o.event.id for o in events if o.event])
                for outcome in events:
                    event = outcome.event
                    assert event is not None
                    outcome.error = None
                    outcome.duplicate = event.id not in claimed
                    if outcome.duplicate:
                        continue
                    claimed.discard(event.id)  # the same event twice in one batch takes effect once
                    try:
                        await self._dispatch(conn, event)
                    except Exception as exc:
                        raise _HandlerFailed(outcome, exc) from exc
        except _HandlerFailed as failed:
            if len(events) > 1:
                return False
            failed.outcome.error = failed.error
            log.warning(
                "event handler failed",
                event_id=failed.outcome.event.id if failed.outcome.event else None,
                event_type=failed.outcome.event.type if failed.outcome.event else None,
                error=repr(failed.error),
            )
        return True

    async def _claim_all(self, conn: AsyncConnection, event_ids: list[str]) -> set[str]:
        """Insert the batch's inbox rows in one statement; the ids not seen before (the rest are duplicates)."""
        now, name = time.time(), self.inbox.name
        driver = await driver_of(conn)
        if isinstance(driver, sqlite3.Connection):
            sql = (
                f"INSERT INTO {name} (consumer, event_id, processed_at) VALUES {placeholders(len(event_ids), 3)}"
                " ON CONFLICT DO NOTHING RETURNING event_id"
            )
            params = [value for event_id in event_ids for value in (self.service, event_id, now)]
            async with translated(conn, sql):
                return {row[0] for row in driver.execute(sql, params).fetchall()}
        if driver is not None:
            sql = (
                f"INSERT INTO {name} (consumer, event_id, processed_at) SELECT $1, e, $3 FROM unnest($2::text[]) AS e"
                " ON CONFLICT DO NOTHING RETURNING event_id"
            )
            async with translated(conn, sql):
                return {row[0] for row in await driver.fetch(sql, self.service, event_ids, now)}
        if self._claim is None:
            self._claim = insert_unless_present(conn, self.inbox).returning(self.inbox.c.event_id)
        rows = [{"consumer": self.service, "event_id": event_id, "processed_at": now} for event_id in event_ids]
        return set((await conn.execute(self._claim, rows)).scalars())

    async def _dispatch(self, conn: AsyncConnection, event: Envelope) -> None:
        """Run the event's handler (its routing key's, else the catch-all `#`), logging with its ids."""
        handler = self.subscriptions.get(event.routing_key) or self.subscriptions.get("#")
        if handler is None:
            return
        tokens = structlog.contextvars.bind_contextvars(
            event_id=event.id, event_type=event.type, correlation_id=event.correlationid
        )
        try:
            await handler(conn, event)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    async def _apply_one(self, conn: AsyncConnection, outcome: _Outcome) -> None:
        event = outcome.event
        assert event is not None
        try:
            async with conn.begin_nested():
                row = {"consumer": self.service, "event_id": event.id, "processed_at": time.time()}
                if not await insert_if_absent(conn, self.inbox, row):
                    outcome.duplicate = True
                    return
                await self._dispatch(conn, event)
        except Exception as exc:
            outcome.error = exc
            log.warning("event handler failed", event_id=event.id, event_type=event.type, error=repr(exc))

    async def _retry_or_dead_letter(self, channel: AbstractChannel, outcome: _Outcome, routing_key: str) -> None:
        message = outcome.message
        assert message is not None
        headers = dict(message.headers or {})
        previous = headers.get(ATTEMPT_HEADER)
        attempt = (previous if isinstance(previous, int) else 0) + 1
        permanent = outcome.event is None
        if permanent or attempt >= self.max_attempts:
            target, destination = self.names.dead, "dead"
            metrics.DEAD_LETTERS.labels(self.service, routing_key).inc()
        else:
            delay = self.retry_delays_ms[min(attempt, len(self.retry_delays_ms)) - 1]
            target, destination = self.names.retry(delay), "retry"
        headers.update({ATTEMPT_HEADER: attempt, "x-error": repr(outcome.error)[:1000], "x-failed-by": self.service})
        republished = aio_pika.Message(
            message.body,
            headers=headers,
            message_id=message.message_id,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            timestamp=message.timestamp,
        )
        await channel.default_exchange.publish(republished, routing_key=target, mandatory=True)
        await message.ack()
        metrics.EVENTS_FAILED.labels(self.service, routing_key, destination).inc()
        log.warning(
            "event sent to " + destination,
            message_id=message.message_id,
            attempt=attempt,
            queue=target,
            error=repr(outcome.error)[:300],
        )
