"""The bus against a real RabbitMQ and real databases: outbox relay, inbox, retries, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.enrolment.handlers import on_institution
from services.enrolment.tables import inbox, institutions, outbox
from shared.bus import Consumer, Relay, backlog, prune_published, stage
from shared.bus.deadletters import list_dead, replay_dead
from shared.bus.topology import declare_exchange
from shared.db import driver_connect_args, forget_engines, make_engine
from shared.events import Envelope, InstitutionRegistered, LocalizedText, new_event
from tests.support.infra import AMQP_URL, DB_KINDS, BusNamespace, database, eventually, migrate, migrated_engine
from tests.support.proxy import Proxy

pytestmark = pytest.mark.integration
FAST_RETRIES = (50, 100)


def institution_event(slug: str, sequence: int = 1) -> Envelope:
    data = InstitutionRegistered(institution_id=slug, names=LocalizedText(fi=slug), kind="vocational", member=True)
    return new_event(data, source="test", subject=slug, sequence=sequence, correlation_id=f"c-{slug}")


@pytest.fixture(params=[*DB_KINDS, *(["sqlite-thread"] if "sqlite" in DB_KINDS else [])])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Both databases, and SQLite through aiosqlite's thread too: there the bus keeps to SQLAlchemy
    statements (no driver connection to run its hottest ones on: `shared.direct`)."""
    return str(request.param)


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncEngine]:
    if db_kind == "sqlite-thread":
        monkeypatch.setenv("TARJOTIN_SQLITE_THREAD", "1")
    async with migrated_engine("enrolment", db_kind.removesuffix("-thread"), tmp_path, "bus") as engine:
        yield engine


@pytest.fixture
async def pg_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The enrolment schema on PostgreSQL, for tests of what only PostgreSQL does (mark them skipif)."""
    async with migrated_engine("enrolment", "postgres", tmp_path, "bus_pg") as engine:
        yield engine
    forget_engines()


@pytest.fixture
def sent_sql(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement sent through asyncpg from here on, in order (`monkeypatch.undo()` stops it)."""
    sent: list[str] = []
    for name in ("execute", "fetch", "fetchrow", "executemany"):  # what the relay (and BEGIN, COMMIT) run on
        run = getattr(asyncpg.Connection, name)

        async def recorded(self: asyncpg.Connection, query: str, *args: Any, _run: Any = run, **kw: Any) -> Any:
            sent.append(query)
            return await _run(self, query, *args, **kw)

        monkeypatch.setattr(asyncpg.Connection, name, recorded)
    return sent


def verbs(statements: list[str]) -> list[str]:
    return [statement.split()[0].rstrip(";") for statement in statements]


@pytest.fixture
def no_backlog_gauges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Relays without their once-a-second backlog gauges, which mark published rows too."""

    async def no_gauges(_relay: Relay) -> None:
        return None

    monkeypatch.setattr(Relay, "_update_backlog_gauges", no_gauges)


@contextlib.asynccontextmanager
async def probe(bus: BusNamespace) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A throw-away queue bound to every event of the namespace."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_exchange(channel, bus.exchange)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "#")
        yield queue


@contextlib.asynccontextmanager
async def relay_exchange(bus: BusNamespace) -> AsyncIterator[aio_pika.abc.AbstractExchange]:
    """The namespace's exchange on a channel opened as the relay opens its own: publisher confirms, and a
    message the broker returns (no queue bound) raises."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        yield await declare_exchange(channel, bus.exchange)


async def receive(queue: aio_pika.abc.AbstractQueue, count: int, timeout: float = 15) -> list[str]:
    ids: list[str] = []
    async with asyncio.timeout(timeout):
        while len(ids) < count:
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.02)
                continue
            await message.ack()
            ids.append(str(message.message_id))
    return ids


@contextlib.asynccontextmanager
async def running(loop_coro: Awaitable[None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(loop_coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_relay_publishes_committed_events_in_order_and_never_rolled_back_ones(
    engine: AsyncEngine, bus: BusNamespace
) -> None:
    events = [institution_event(f"school-{i}") for i in range(30)]
    async with engine.begin() as conn:
        await stage(conn, outbox, *events[:15])
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await stage(conn, outbox, institution_event("rolled-back"))
            raise RuntimeError("the use case failed after staging")
    async with engine.begin() as conn:
        await stage(conn, outbox, *events[15:])

    async with probe(bus) as queue:
        relay = Relay(engine, outbox, service="test", amqp_url=AMQP_URL, exchange=bus.exchange, batch=7)
        async with running(relay.run()):
            received = await receive(queue, 30)
            await asyncio.sleep(0.3)
            assert await queue.get(fail=False) is None, "something beyond the committed events was published"
    assert received == [e.id for e in events]
    assert (await backlog(engine, outbox))[0] == 0


async def test_a_relay_marks_what_was_confirmed_with_its_next_read(
    engine: AsyncEngine, db_kind: str, bus: BusNamespace, monkeypatch: pytest.MonkeyPatch, sent_sql: list[str]
) -> None:
    """On PostgreSQL a relay cycle marks what the last one published (the broker confirmed) and reads on
    in one statement (no BEGIN and COMMIT around two; the read must leave out the rows it marks, which its
    snapshot still shows pending), then publishes: one statement per batch, back to back or one event at
    a time. On SQLite (local calls) it marks right after the confirms."""
    events = [institution_event(f"cycle-{i}") for i in range(15)]
    async with engine.begin() as conn:
        await stage(conn, outbox, *events)
    statements = sent_sql
    sent_sql.clear()  # staging the events above went through asyncpg too
    relay = Relay(engine, outbox, service="test", amqp_url=AMQP_URL, exchange=bus.exchange, batch=10)
    async with probe(bus) as queue, relay_exchange(bus) as exchange:
        assert await relay.publish_batch(exchange) == 10
        assert await relay.publish_batch(exchange) == 5
        assert await receive(queue, 15) == [e.id for e in events]
        if db_kind == "postgres":
            assert verbs(statements) == ["SELECT", "WITH"], statements  # read 10; mark them and read 5
        waiting = 5 if db_kind == "postgres" else 0
        assert (await backlog(engine, outbox))[0] == waiting, "on PostgreSQL the last 5 wait for the next read"

        late = institution_event("late")
        async with engine.begin() as conn:
            await stage(conn, outbox, late)
        statements.clear()
        assert await relay.publish_batch(exchange) == 1
        assert await receive(queue, 1) == [late.id]
        if db_kind == "postgres":
            assert verbs(statements) == ["WITH"], statements  # mark the 5 and read the late one
        assert (await backlog(engine, outbox))[0] == (1 if db_kind == "postgres" else 0)

        await asyncio.sleep(0.3)
        statements.clear()
        marking = time.time()
        assert await relay.publish_batch(exchange) == 0
        if db_kind == "postgres":
            assert verbs(statements) == ["WITH"], statements
    monkeypatch.undo()
    assert (await backlog(engine, outbox))[0] == 0
    async with engine.connect() as conn:
        query = sa.select(outbox.c.published_at).where(outbox.c.event_id == late.id)
        published_at = (await conn.execute(query)).scalar_one()
    assert published_at < marking - 0.2, "published_at is when the broker confirmed it, not when it was marked"


async def test_a_relays_batch_is_written_in_a_few_turns_of_a_busy_loop_and_arrives_in_order(
    engine: AsyncEngine, bus: BusNamespace
) -> None:
    """The relay shares its event loop with a service's requests. Its publishes must not take turns of
    that loop one after another (aio-pika's publish holds the channel's lock until the frames are
    written: three turns a message, so a batch of 500 took 1.8 s in a busy enrolment process). Counted
    here in turns of a loop kept busy by a task that holds it 2 ms a turn, not in time."""
    events = [institution_event(f"busy-{i}") for i in range(600)]
    async with engine.begin() as conn:
        await stage(conn, outbox, *events)
    relay = Relay(engine, outbox, service="test", amqp_url=AMQP_URL, exchange=bus.exchange, batch=600)
    turns = 0

    async def busy() -> None:
        nonlocal turns
        while True:
            # Holds the loop as a request's work would, but not the GIL: aiosqlite's thread (sqlite-thread)
            # must still run the relay's reads, which a busy-wait here would starve.
            time.sleep(0.002)  # noqa: ASYNC251
            turns += 1
            await asyncio.sleep(0)

    async with probe(bus) as queue:
        async with relay_exchange(bus) as exchange, running(busy()):
            await asyncio.sleep(0.01)
            before = turns
            assert await relay.publish_batch(exchange) == 600
            taken = turns - before
        assert await receive(queue, 600) == [e.id for e in events]
    # One publish a turn would be 600 turns (aio-pika's way, 1,200 or more); a group of 10 a turn is 60, plus
    # the turns while the broker confirms (each at least 2 ms long here).
    assert taken < 300, taken


async def test_an_event_no_queue_takes_stays_in_the_outbox(engine: AsyncEngine, bus: BusNamespace) -> None:
    """Events are published `mandatory`: one the broker cannot route anywhere comes back, the relay's
    batch fails, and the event stays pending (published later, once its consumers' queues exist)."""
    event = institution_event("nobody-listens")
    async with engine.begin() as conn:
        await stage(conn, outbox, event)
    relay = Relay(engine, outbox, service="test", amqp_url=AMQP_URL, exchange=bus.exchange)
    async with relay_exchange(bus) as exchange:  # nothing bound to it
        with pytest.raises(aio_pika.exceptions.PublishError):
            await relay.publish_batch(exchange)
    assert (await backlog(engine, outbox))[0] == 1
    async with probe(bus) as queue:
        async with relay_exchange(bus) as exchange:
            assert await relay.publish_batch(exchange) == 1
        assert await receive(queue, 1) == [event.id]


@pytest.mark.skipif("postgres" not in DB_KINDS, reason="marks wait for the next read on PostgreSQL only")
@pytest.mark.usefixtures("no_backlog_gauges")  # only the stop may mark here
async def test_a_stopped_relay_marks_what_the_broker_confirmed(pg_engine: AsyncEngine, bus: BusNamespace) -> None:
    """What the broker confirmed but the relay had not marked yet is marked when the relay stops, so a
    restart does not publish it a second time (after a crash it does: consumers dedupe)."""
    relay = Relay(
        pg_engine,
        outbox,
        service="test",
        amqp_url=AMQP_URL,
        exchange=bus.exchange,
        poll_s=10,
        idle_poll_s=10,
        mark_after_s=10,
    )
    event = institution_event("before-a-stop")
    async with pg_engine.begin() as conn:
        await stage(conn, outbox, event)
    async with probe(bus) as queue, running(relay.run()):
        assert await receive(queue, 1) == [event.id]
        await asyncio.sleep(0.2)
        assert (await backlog(pg_engine, outbox))[0] == 1, "marked with the next read, 10 s away"
    assert (await backlog(pg_engine, outbox))[0] == 0


@pytest.mark.skipif("postgres" not in DB_KINDS, reason="generic plans of prepared statements are PostgreSQL's")
async def test_on_postgresql_a_relay_finds_the_rows_it_marks_through_an_index_whatever_the_statistics(
    pg_engine: AsyncEngine, bus: BusNamespace, monkeypatch: pytest.MonkeyPatch, sent_sql: list[str]
) -> None:
    """asyncpg prepares the relay's statement once; after five runs PostgreSQL may keep one plan for all
    later runs (a generic plan), made from the statistics of that moment: for a new service an empty,
    never analysed outbox. That plan must still reach the rows to mark through an index. A sequential
    scan there reads the whole outbox every cycle, slower as it grows (seen: 1 ms a cycle at 100
    enrolments/s a few thousand events in, against 0.07 ms through the pending-rows index)."""
    relay = Relay(pg_engine, outbox, service="test", amqp_url=AMQP_URL, exchange=bus.exchange)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        exchange = await declare_exchange(await connection.channel(publisher_confirms=True), bus.exchange)
        for name in ("first", "second"):
            async with pg_engine.begin() as conn:
                await stage(conn, outbox, institution_event(name))
            assert await relay.publish_batch(exchange) == 1
    monkeypatch.undo()
    cycles = [query for query in sent_sql if "UPDATE outbox" in query]
    assert cycles, sent_sql
    async with pg_engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.execute("SET plan_cache_mode = force_generic_plan")
        await driver.execute(f"PREPARE relay_cycle AS {cycles[-1]}")
        plan = "\n".join(row[0] for row in await driver.fetch("EXPLAIN EXECUTE relay_cycle(0, '{1}', 10)"))
        await driver.execute("DEALLOCATE relay_cycle")
        await driver.execute("RESET plan_cache_mode")
    assert "Seq Scan" not in plan, plan


@pytest.mark.usefixtures("no_backlog_gauges")
async def test_after_a_pause_a_relay_marks_what_it_published_without_waiting_for_its_next_read(
    engine: AsyncEngine, bus: BusNamespace
) -> None:
    """Published rows must not look pending (the backlog in /ready and the metrics) for long after a rush:
    with no read in sight (the next poll 10 s away), the relay marks them on its own after `mark_after_s`."""
    relay = Relay(engine, outbox, service="test", amqp_url=AMQP_URL, exchange=bus.exchange, poll_s=10, idle_poll_s=10)
    event = institution_event("before-a-pause")
    async with engine.begin() as conn:
        await stage(conn, outbox, event)
    async with probe(bus) as queue, running(relay.run()):
        assert await receive(queue, 1) == [event.id]

        async def marked() -> bool:
            return (await backlog(engine, outbox))[0] == 0

        await eventually(marked, timeout=2)


async def test_outbox_grows_while_the_broker_is_unreachable_and_catches_up_in_order(
    engine: AsyncEngine, bus: BusNamespace
) -> None:
    proxy = await Proxy("127.0.0.1", 5672).start()
    relay = Relay(
        engine, outbox, service="test", amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", exchange=bus.exchange
    )
    before = [institution_event(f"before-{i}") for i in range(5)]
    during = [institution_event(f"during-{i}") for i in range(20)]
    try:
        async with probe(bus) as queue, running(relay.run()):
            async with engine.begin() as conn:
                await stage(conn, outbox, *before)
            first = await receive(queue, 5)
            proxy.cut()
            for event in during:  # requests keep being accepted: each commits its state and event
                async with engine.begin() as conn:
                    await stage(conn, outbox, event)
            await asyncio.sleep(1.0)
            assert (await backlog(engine, outbox))[0] == 20
            proxy.restore()
            rest = await receive(queue, 20, timeout=30)

            # Delivered is not yet marked: the relay marks a batch once its confirms are in, which can be
            # just after the probe got the messages. While it still runs, the backlog empties.
            async def drained() -> bool:
                return (await backlog(engine, outbox))[0] == 0

            await eventually(drained, timeout=10)
    finally:
        await proxy.stop()
    assert first == [e.id for e in before]
    assert rest == [e.id for e in during]


async def publish_raw(bus: BusNamespace, *events: Envelope) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_exchange(channel, bus.exchange)
        for event in events:
            await exchange.publish(aio_pika.Message(event.to_json(), message_id=event.id), event.routing_key)


def make_consumer(
    engine: AsyncEngine, bus: BusNamespace, handler: Callable[[AsyncConnection, Envelope], Awaitable[None]]
) -> Consumer:
    return Consumer(
        engine,
        inbox,
        {"institution.registered": handler},
        service="enrolment",
        amqp_url=AMQP_URL,
        exchange=bus.exchange,
        queue=bus.queue("enrolment"),
        retry_delays_ms=FAST_RETRIES,
        max_attempts=3,
    )


async def institution_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(institutions.c.id).order_by(institutions.c.id))).scalars())


async def inbox_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(inbox))).scalar_one())


async def test_a_redelivered_event_takes_effect_once(engine: AsyncEngine, bus: BusNamespace) -> None:
    calls: list[str] = []

    async def counting(conn: AsyncConnection, event: Envelope) -> None:
        calls.append(event.id)
        await on_institution(conn, event)

    consumer = make_consumer(engine, bus, counting)
    event = institution_event("kao")
    async with running(consumer.run()):
        await consumer.ready.wait()
        await publish_raw(bus, event, event, event)
        await eventually(lambda: _true_after_settle(engine))
    assert calls == [event.id]
    assert await institution_ids(engine) == ["kao"]
    assert await inbox_count(engine) == 1


async def _true_after_settle(engine: AsyncEngine) -> bool:
    await asyncio.sleep(0.5)
    return await inbox_count(engine) >= 1


async def test_a_failing_handler_is_retried_with_delay_then_succeeds(engine: AsyncEngine, bus: BusNamespace) -> None:
    failures = {"left": 2}

    async def flaky(conn: AsyncConnection, event: Envelope) -> None:
        await on_institution(conn, event)  # the effect is rolled back with the failure
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database of a partner was down")

    consumer = make_consumer(engine, bus, flaky)
    async with running(consumer.run()):
        await consumer.ready.wait()
        await publish_raw(bus, institution_event("esedu"))

        async def landed() -> bool:
            return await institution_ids(engine) == ["esedu"]

        await eventually(landed)
    assert failures["left"] == 0
    assert await inbox_count(engine) == 1


async def test_a_poison_event_goes_to_dead_letters_while_others_flow_and_replay_brings_it_back(
    engine: AsyncEngine, bus: BusNamespace
) -> None:
    fixed = {"yes": False}

    async def picky(conn: AsyncConnection, event: Envelope) -> None:
        if event.subject == "poison" and not fixed["yes"]:
            raise ValueError("a bug in this handler")
        await on_institution(conn, event)

    consumer = make_consumer(engine, bus, picky)
    poison = institution_event("poison")
    async with running(consumer.run()):
        await consumer.ready.wait()
        await publish_raw(bus, poison, *(institution_event(f"ok-{i}") for i in range(5)))

        async def others_done_and_poison_dead() -> bool:
            dead = await list_dead(AMQP_URL, bus.queue("enrolment"))
            return len(await institution_ids(engine)) == 5 and len(dead) == 1

        await eventually(others_done_and_poison_dead)
        dead = await list_dead(AMQP_URL, bus.queue("enrolment"))
        assert dead[0]["event_id"] == poison.id
        assert dead[0]["attempts"] == 3
        assert "a bug in this handler" in dead[0]["error"]

        fixed["yes"] = True
        assert await replay_dead(AMQP_URL, bus.queue("enrolment")) == 1

        async def poison_landed() -> bool:
            return "poison" in await institution_ids(engine)

        await eventually(poison_landed)
    assert await list_dead(AMQP_URL, bus.queue("enrolment")) == []


async def test_a_consumer_that_dies_mid_transaction_has_not_acked(engine: AsyncEngine, bus: BusNamespace) -> None:
    entered = asyncio.Event()

    async def hangs(conn: AsyncConnection, event: Envelope) -> None:
        await on_institution(conn, event)
        entered.set()
        await asyncio.Event().wait()  # never returns: the process "dies" here

    first = make_consumer(engine, bus, hangs)
    async with running(first.run()):
        await first.ready.wait()
        await publish_raw(bus, institution_event("ysao"))
        await asyncio.wait_for(entered.wait(), 10)
    # The first consumer is gone without commit or ack: the broker hands the event to the next one.
    assert await institution_ids(engine) == []
    second = make_consumer(engine, bus, on_institution)
    async with running(second.run()):

        async def landed() -> bool:
            return await institution_ids(engine) == ["ysao"]

        await eventually(landed)
    assert await inbox_count(engine) == 1


async def test_a_consumed_batch_is_acked_in_full_and_nothing_comes_back(engine: AsyncEngine, bus: BusNamespace) -> None:
    events = [institution_event(f"batch-{i}") for i in range(40)]
    consumer = make_consumer(engine, bus, on_institution)
    async with running(consumer.run()):
        await consumer.ready.wait()
        await publish_raw(bus, *events)

        async def all_landed() -> bool:
            return await inbox_count(engine) == len(events)

        await eventually(all_landed)
        await asyncio.sleep(0.3)  # the acks leave after the commit
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(bus.queue("enrolment"), passive=True)
        assert queue.declaration_result.message_count == 0, "a delivery was left unacked and went back to the queue"
    assert len(await institution_ids(engine)) == len(events)


async def test_an_idle_relay_still_finds_an_event_nobody_kicked_it_for(engine: AsyncEngine, bus: BusNamespace) -> None:
    relay = Relay(
        engine, outbox, service="test", amqp_url=AMQP_URL, exchange=bus.exchange, idle_poll_s=0.2, idle_after_s=0.1
    )
    async with probe(bus) as queue, running(relay.run()):
        await relay.connected.wait()
        await asyncio.sleep(0.5)  # nothing to publish: the relay has slowed down to its idle poll
        event = institution_event("late")
        async with engine.begin() as conn:  # no commit listener here, as for an API in another process
            await stage(conn, outbox, event)
        assert await receive(queue, 1, timeout=5) == [event.id]

        async def marked() -> bool:  # after the confirm, with the relay's next read (not before the probe has it)
            return (await backlog(engine, outbox))[0] == 0

        await eventually(marked, timeout=5)


@pytest.mark.skipif("postgres" not in DB_KINDS, reason="LISTEN/NOTIFY is PostgreSQL's (TARJOTIN_TEST_DBS)")
async def test_on_postgresql_a_relay_wakes_at_once_for_events_another_process_staged(
    tmp_path: Path, bus: BusNamespace
) -> None:
    """The API's process stages and commits; the worker's relay, polling only every 10 s here, hears of
    it through the outbox's trigger (LISTEN/NOTIFY), also after its listening connection was killed."""
    async with database("postgres", tmp_path, "notify") as url:
        await migrate("enrolment", url)
        # One engine for both sides (make_engine is cached per URL); no commit listener wakes the relay on
        # it, as for an API in another process: only the notification can. Its URL carries an option only
        # SQLAlchemy's adapter knows: the listener's own connection must still open (the server refuses
        # it as a setting).
        api = make_engine(
            sa.make_url(url)
            .update_query_dict({"prepared_statement_cache_size": "100"})
            .render_as_string(hide_password=False)
        )
        relay = Relay(api, outbox, service="test", amqp_url=AMQP_URL, exchange=bus.exchange, poll_s=10, idle_poll_s=10)

        async def listening() -> list[int]:
            async with api.connect() as conn:
                found = await conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                    )
                )
                return list(found.scalars())

        try:
            async with probe(bus) as queue, running(relay.run()), running(relay.listen(driver_connect_args(api))):
                await relay.connected.wait()
                await eventually(listening, timeout=5)
                await asyncio.sleep(0.3)  # the relay has read the empty outbox and waits for its next poll
                first = institution_event("notified")
                async with api.begin() as conn:
                    await stage(conn, outbox, first)
                assert await receive(queue, 1, timeout=3) == [first.id]

                killed = await listening()
                async with api.connect() as conn:
                    terminate = "SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS integer[])) AS pid"
                    await conn.execute(sa.text(terminate), {"pids": killed})

                async def listening_again() -> bool:
                    return bool(set(await listening()) - set(killed))

                await eventually(listening_again, timeout=5)
                await asyncio.sleep(0.3)
                second = institution_event("notified-again")
                async with api.begin() as conn:
                    await stage(conn, outbox, second)
                assert await receive(queue, 1, timeout=3) == [second.id]
        finally:
            await api.dispose()
            forget_engines()


@pytest.mark.skipif("postgres" not in DB_KINDS, reason="LISTEN/NOTIFY is PostgreSQL's (TARJOTIN_TEST_DBS)")
async def test_on_postgresql_a_relay_wakes_once_per_commit_and_finds_its_rows(
    pg_engine: AsyncEngine, bus: BusNamespace
) -> None:
    """SQLAlchemy's commit event fires before the COMMIT is sent: a relay woken by it reads before the rows
    are visible, finds nothing and needs the notification for them (two reads per commit, one wasted).
    On PostgreSQL the relay is woken by the notification alone, for its own process's commits too."""
    relay = Relay(
        pg_engine, outbox, service="test", amqp_url=AMQP_URL, exchange=bus.exchange, poll_s=10, idle_poll_s=10
    )
    waking = relay.wake_after_commits(pg_engine)
    assert waking is not None
    cycles: list[int] = []
    publish = relay.publish_batch

    async def counting(exchange: Any) -> int:
        cycles.append(await publish(exchange))
        return cycles[-1]

    relay.publish_batch = counting  # type: ignore[method-assign]
    async with probe(bus) as queue, running(relay.run()), running(waking):
        await relay.connected.wait()
        await asyncio.sleep(0.5)  # listening, and the first wake-ups are over
        for round_ in range(5):
            event = institution_event(f"own-{round_}")
            cycles.clear()
            async with pg_engine.begin() as conn:
                await stage(conn, outbox, event)
            assert await receive(queue, 1, timeout=3) == [event.id]
            await asyncio.sleep(0.2)  # long enough for any other wake-up to arrive
            assert cycles == [1], f"round {round_}: relay cycles {cycles} for one commit"


async def test_a_lingering_consumer_takes_what_arrives_meanwhile_into_the_same_batch(
    engine: AsyncEngine, bus: BusNamespace
) -> None:
    """With `linger_s`, messages published just after the first one share its transaction and its ack."""
    batches: list[int] = []
    consumer = make_consumer(engine, bus, on_institution)
    consumer.linger_s = 0.5
    handle_batch = consumer.handle_batch

    async def recording(
        channel: aio_pika.abc.AbstractChannel, messages: Sequence[aio_pika.abc.AbstractIncomingMessage]
    ) -> None:
        batches.append(len(messages))
        await handle_batch(channel, messages)

    consumer.handle_batch = recording  # type: ignore[method-assign]
    first, *later = [institution_event(f"linger-{i}") for i in range(4)]
    async with running(consumer.run()):
        await consumer.ready.wait()
        await publish_raw(bus, first)
        await asyncio.sleep(0.1)  # the first is taken; the others come while it lingers
        await publish_raw(bus, *later)

        async def all_landed() -> bool:
            return await inbox_count(engine) == 4

        await eventually(all_landed)
    assert batches == [4]
    assert len(await institution_ids(engine)) == 4


async def test_housekeeping_deletes_only_published_rows_past_their_keeping_time(engine: AsyncEngine) -> None:
    """Published and old: deleted (in chunks); published lately, or never published however old: kept."""
    old, recent, pending = (
        [institution_event(f"{kind}-{i}") for i in range(5)] for kind in ("old", "recent", "pending")
    )
    async with engine.begin() as conn:
        await stage(conn, outbox, *old, *recent, *pending)
    now = time.time()
    marks = [(old, now - 8 * 86400), (recent, now - 3600), (pending, None)]
    async with engine.begin() as conn:
        for events, published_at in marks:
            ids = [e.id for e in events]
            created = now - 9 * 86400  # all staged long ago: only publication counts
            await conn.execute(
                outbox.update().where(outbox.c.event_id.in_(ids)).values(published_at=published_at, created_at=created)
            )
    assert await prune_published(engine, outbox, older_than_s=7 * 86400, chunk=2) == 5
    async with engine.connect() as conn:
        left = set((await conn.execute(sa.select(outbox.c.event_id))).scalars())
    assert left == {e.id for e in (*recent, *pending)}
    assert (await backlog(engine, outbox))[0] == 5  # the unpublished are still waiting for the relay
    assert await prune_published(engine, outbox, older_than_s=7 * 86400) == 0
