"""Rebuilding the read models from the event store gives exactly the reports the live projections built."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting import rebuild
from services.reporting.app import build_worker
from services.reporting.handlers import store_event
from services.reporting.settings import Settings
from services.reporting.tables import event_store, inbox, offering_counts, projection_state
from shared.bus import QueueNames
from shared.bus.topology import declare_consumer_queues, declare_exchange
from shared.db import make_engine
from tests.integration.test_reporting_scenario import all_reports, feed, scenario
from tests.support.infra import AMQP_URL, BusNamespace, database, eventually, migrate

pytestmark = pytest.mark.integration


@pytest.fixture
async def url(db_kind: str, tmp_path: Path) -> AsyncIterator[str]:
    async with database(db_kind, tmp_path, "reporting_rebuild") as url:
        await migrate("reporting", url)
        yield url


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(url)
    yield engine
    await engine.dispose()


async def test_rebuilt_reports_equal_the_live_ones_and_stale_rows_are_gone(engine: AsyncEngine) -> None:
    events = scenario().events
    await feed(engine, events)
    live = await all_reports(engine)
    async with engine.begin() as conn:  # a row no event explains: the rebuild must drop it
        await conn.execute(offering_counts.update().values(requests=offering_counts.c.requests + 100))
    assert await all_reports(engine) != live

    result = await rebuild.rebuild(engine, batch_size=7)

    assert result.events == len(events)
    assert await all_reports(engine) == live
    async with engine.connect() as conn:
        state = (await conn.execute(sa.select(projection_state))).one()
    assert (state.version, state.events) == (rebuild.PROJECTION_VERSION, len(events))
    assert await rebuild.rebuild_if_stale(engine) is None


async def test_rebuild_command_line_replays_the_store_and_if_stale_does_nothing_when_current(
    engine: AsyncEngine, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    events = scenario().events
    await feed(engine, events)
    live = await all_reports(engine)
    async with engine.begin() as conn:
        await rebuild.clear_read_models(conn)
    await engine.dispose()  # SQLite: the command is the writer now

    assert await asyncio.to_thread(rebuild.main, ["--database-url", url, "--batch-size", "50"]) == 0
    assert f"rebuilt read models from {len(events)} events" in capsys.readouterr().out
    assert await asyncio.to_thread(rebuild.main, ["--database-url", url, "--if-stale"]) == 0
    assert "nothing rebuilt" in capsys.readouterr().out
    assert await all_reports(engine) == live


@contextlib.asynccontextmanager
async def running_worker(
    url: str, bus: BusNamespace, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[asyncio.Task[None]]]:
    monkeypatch.setenv("TARJOTIN_EXCHANGE", bus.exchange)
    monkeypatch.setenv("TARJOTIN_QUEUE_PREFIX", bus.prefix)
    monkeypatch.setenv("TARJOTIN_AMQP_URL", AMQP_URL)
    tasks = [asyncio.ensure_future(loop) for loop in build_worker(Settings(database_url=url))]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_the_worker_rebuilds_a_stale_store_at_start_then_consumes_live_and_both_agree_with_a_rebuild(
    url: str, engine: AsyncEngine, bus: BusNamespace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_kind: str
) -> None:
    events = scenario().events
    before, after = events[:40], events[40:]
    async with engine.begin() as conn:  # as left by an older version: events stored, read models never built
        for event in before:
            await store_event(conn, event)
    async with database(db_kind, tmp_path, "reporting_reference") as reference_url:
        await migrate("reporting", reference_url)
        reference = make_engine(reference_url)
        try:
            await feed(reference, events)
            expected = await all_reports(reference)
        finally:
            await reference.dispose()

    async with running_worker(url, bus, monkeypatch):

        async def rebuilt() -> bool:
            async with engine.connect() as conn:
                return (await conn.execute(sa.select(projection_state.c.version))).first() is not None

        await eventually(rebuilt, timeout=30)
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await declare_exchange(channel, bus.exchange)
            # the worker's queue, declared as the worker does, so nothing is published before it is bound
            settings = Settings(database_url=url)
            names = QueueNames(settings.queue)
            await declare_consumer_queues(channel, exchange, names, ["#"], settings.retry_delays_ms)
            for event in [*after, *after[::5]]:  # every fifth one delivered twice
                message = aio_pika.Message(event.to_json(), message_id=event.id)
                await exchange.publish(message, routing_key=event.routing_key)

        async def consumed() -> bool:
            async with engine.connect() as conn:
                stored = (await conn.execute(sa.select(sa.func.count()).select_from(event_store))).scalar_one()
                handled = (await conn.execute(sa.select(sa.func.count()).select_from(inbox))).scalar_one()
            return stored == len(events) and handled == len(after)

        await eventually(consumed, timeout=60)

    assert await all_reports(engine) == expected
    await rebuild.rebuild(engine)
    assert await all_reports(engine) == expected
