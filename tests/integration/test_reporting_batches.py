"""A consumer batch projects exactly as one event per transaction: counter deltas summed per row and written
at commit, and nothing of a failed message kept when the batch falls back to one savepoint per message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting import handlers
from services.reporting.consumers import SUBSCRIPTIONS
from services.reporting.tables import inbox
from shared.bus import Consumer
from shared.events import Envelope
from tests.integration.test_reporting_ordering import reset
from tests.integration.test_reporting_scenario import all_reports, feed, reporting_engine, scenario

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with reporting_engine(db_kind, tmp_path, "reporting_batches") as engine:
        yield engine


def consumer(engine: AsyncEngine) -> Consumer:
    return Consumer(engine, inbox, SUBSCRIPTIONS, service="reporting", amqp_url="amqp://-", exchange="-", queue="-")


def poisoned(event: Envelope) -> Envelope:
    """An `enrolment.completed` whose outcome no rule knows: its projection raises."""
    return event.model_copy(update={"id": str(uuid.uuid4()), "data": {**event.data, "outcome": "vanished"}})


async def test_one_batch_of_every_event_gives_the_reports_of_one_event_per_transaction(engine: AsyncEngine) -> None:
    events = scenario().events
    await feed(engine, events)
    expected = await all_reports(engine)
    await reset(engine)
    async with engine.begin() as conn:
        await conn.execute(inbox.delete())
    assert await consumer(engine).apply(events + events[:10]) == [None] * (len(events) + 10)
    assert await all_reports(engine) == expected


async def test_a_failing_message_keeps_none_of_its_counts_and_the_others_count_once(engine: AsyncEngine) -> None:
    events = scenario().events
    await feed(engine, events)
    expected = await all_reports(engine)
    await reset(engine)
    async with engine.begin() as conn:
        await conn.execute(inbox.delete())
    bad = poisoned(next(e for e in events if e.routing_key == "enrolment.completed"))
    middle = len(events) // 2
    errors = await consumer(engine).apply([*events[:middle], bad, *events[middle:]])
    assert [i for i, error in enumerate(errors) if error is not None] == [middle]
    assert await all_reports(engine) == expected


async def test_an_event_the_store_cannot_hold_fails_alone_not_the_batch_at_commit(
    engine: AsyncEngine, db_kind: str
) -> None:
    events = scenario().events[:12]
    unfit = events[0].model_copy(update={"id": str(uuid.uuid4()), "subject": "x" * 150})
    errors = await consumer(engine).apply([*events[:5], unfit, *events[5:]])
    failed = [i for i, error in enumerate(errors) if error is not None]
    assert failed == ([5] if db_kind == "postgres" else [])  # SQLite keeps any length, as before


async def test_a_state_row_the_database_cannot_hold_fails_its_message_alone_not_the_batch_at_commit(
    engine: AsyncEngine, db_kind: str
) -> None:
    """State rows wait for the commit too; what PostgreSQL would refuse there is refused at projection.
    (Without that check the batch's commit fails, and the consumer runs it again and again: hence the
    time limit.)"""
    events = scenario().events
    requested = next(e for e in events if e.routing_key == "enrolment.requested")
    enrolment_id = str(uuid.uuid4())
    data = {**requested.data, "enrolment_id": enrolment_id, "student_ref": "s" * 100}
    unfit = requested.model_copy(update={"id": str(uuid.uuid4()), "subject": enrolment_id, "data": data})
    errors = await asyncio.wait_for(consumer(engine).apply([*events[:20], unfit, *events[20:]]), timeout=30)
    failed = [i for i, error in enumerate(errors) if error is not None]
    assert failed == ([20] if db_kind == "postgres" else [])  # SQLite keeps any length, as before


async def test_a_batch_writes_each_state_table_once_at_commit_and_early_past_the_memory_bound(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An aggregate's events in one batch collapse into its newest state row, written with the others of its
    table in one upsert; the counters still move exactly as event by event. A transaction holding more
    aggregates than `MAX_PENDING_STATES` (a rebuild) writes them early, with the same result."""
    events = scenario().events
    await feed(engine, events)
    expected = await all_reports(engine)
    for bound, writes in ((handlers.MAX_PENDING_STATES, 1), (3, None)):
        await reset(engine)
        async with engine.begin() as conn:
            await conn.execute(inbox.delete())
        monkeypatch.setattr(handlers, "MAX_PENDING_STATES", bound)
        seen: list[str] = []

        def record(_conn: object, _cursor: object, statement: str, *_args: object, seen: list[str] = seen) -> None:
            seen.extend(t for t in ("enrolment_states", "commitment_states") if f"INSERT INTO {t}" in statement)

        sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            assert await consumer(engine).apply(events) == [None] * len(events)
        finally:
            sa.event.remove(engine.sync_engine, "before_cursor_execute", record)
        assert await all_reports(engine) == expected
        requested = sum(e.routing_key.startswith("enrolment.") for e in events)
        if writes is not None:
            assert (seen.count("enrolment_states"), seen.count("commitment_states")) == (writes, writes)
        else:
            assert 1 < seen.count("enrolment_states") < requested
