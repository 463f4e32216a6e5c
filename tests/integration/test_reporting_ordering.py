"""Every projection reaches the same reports whatever the order and however many times events arrive."""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting import views
from services.reporting.consumers import SUBSCRIPTIONS
from services.reporting.rebuild import clear_read_models
from services.reporting.tables import enrolment_states, event_store, offering_counts
from shared.db import forget_engines
from shared.events import Envelope
from tests.integration.test_reporting_scenario import ALL, YEAR, Network, all_reports, reporting_engine, scenario
from tests.support.infra import examples

pytestmark = pytest.mark.integration
SHUFFLES = (1, 2, 3, 5, 8, 13)  # fixed seeds: failures reproduce
BATCH = 20  # events per transaction, as the consumer batches deliveries


def of(*prefixes: str) -> Callable[[list[Envelope]], list[Envelope]]:
    return lambda events: [e for e in events if e.routing_key.startswith(prefixes)]


def offering_churn() -> list[Envelope]:
    """Offerings published, updated several times (seats, subject, dates), one cancelled after updates."""
    n = Network()
    n.institution("sakky", region="Pohjois-Savo")
    n.publish("P1", "sakky", "Kemia", "chemistry", seats=5, minimum=3, start=date(2026, 9, 7))
    n.update_offering("P1", max_participants=8)
    n.update_offering("P1", subject="biology", min_participants=1)
    n.publish("P2", "sakky", "Historia", "history", seats=4, minimum=2, start=date(2026, 11, 2))
    n.enrol("x1", "P2", "sakky")
    n.update_offering("P2", start_date=date(2027, 2, 1), max_participants=6)
    n.cancel_offering("P2")
    n.cancel("x1")
    n.publish("P3", "sakky", "Filosofia", "philosophy", seats=3, minimum=5, start=date(2026, 10, 1))
    n.enrol("x2", "P3", "sakky")
    n.confirm("x2")
    return n.events


STREAMS: dict[str, Callable[[], list[Envelope]]] = {
    "enrolments": lambda: of("offering.", "enrolment.")(scenario().events),
    "offerings": offering_churn,
    "commitments-invoices-credit-notes": lambda: of("commitment.", "invoice.", "credit_note.")(scenario().events),
    "institutions-and-regions": lambda: of("institution.", "offering.")(scenario().events),
    "everything": lambda: scenario().events,
}


def disorder(events: list[Envelope], seed: int) -> list[Envelope]:
    """A shuffle with about a third of the events delivered twice (the same event id)."""
    rng = random.Random(seed)
    delivered = events + rng.sample(events, k=len(events) // 3)
    rng.shuffle(delivered)
    return delivered


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with reporting_engine(db_kind, tmp_path, "reporting_order") as engine:
        yield engine


async def reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await clear_read_models(conn)
        await conn.execute(event_store.delete())


async def feed(engine: AsyncEngine, events: list[Envelope]) -> None:
    handler = SUBSCRIPTIONS["#"]
    for start in range(0, len(events), BATCH):
        async with engine.begin() as conn:
            for event in events[start : start + BATCH]:
                await handler(conn, event)


@pytest.mark.parametrize("stream", list(STREAMS))
async def test_shuffled_duplicated_deliveries_give_the_same_reports_as_in_order(
    engine: AsyncEngine, stream: str
) -> None:
    events = STREAMS[stream]()
    await feed(engine, events)
    expected = await all_reports(engine)
    assert expected[f"participants/{YEAR}"]["items"] or expected[f"billing/{YEAR}"]["items"]
    for order in (*(disorder(events, seed) for seed in SHUFFLES), [*reversed(events), *reversed(events)]):
        await reset(engine)
        await feed(engine, order)
        assert await all_reports(engine) == expected


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_orders_and_repeats_drawn_by_hypothesis_give_the_in_order_reports(kind: str) -> None:
    """The same property over every event of the scenario, with hypothesis drawing the order and the
    repeated events (and shrinking a failure to a small counterexample) instead of fixed seeds."""
    events = scenario().events
    n = len(events)

    async def reports_of(delivered: list[Envelope]) -> tuple[dict[str, Any], dict[str, Any]]:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                async with reporting_engine(kind, Path(tmp), "reporting_drawn") as engine:
                    await feed(engine, events)
                    in_order = await all_reports(engine)
                    await reset(engine)
                    await feed(engine, delivered)
                    return in_order, await all_reports(engine)
            finally:
                forget_engines()

    @settings(
        max_examples=examples(8 if kind == "sqlite" else 3), deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(order=st.permutations(range(n)), repeats=st.lists(st.integers(0, n - 1), max_size=n // 3))
    def check(order: list[int], repeats: list[int]) -> None:
        delivered = [events[i] for i in order]
        for at, i in enumerate(repeats):  # each repeat goes in somewhere after the first delivery
            delivered.insert(min(len(delivered), order.index(i) + 1 + at), events[i])
        in_order, drawn = asyncio.run(reports_of(delivered))
        assert in_order[f"participants/{YEAR}"]["items"] and in_order[f"billing/{YEAR}"]["items"]
        assert drawn == in_order

    check()


async def test_an_older_enrolment_event_after_a_newer_one_changes_no_count(engine: AsyncEngine) -> None:
    n = Network()
    n.institution("sakky")
    n.publish("O1", "sakky", "Funktiot", "mathematics", seats=3, minimum=1, start=date(2026, 9, 1))
    n.enrol("e1", "O1", "kao")  # requested, sequence 1
    n.confirm("e1")  # confirmed, sequence 2
    published, requested, confirmed = n.events[1:]
    await feed(engine, [published, confirmed, requested, confirmed, requested])
    async with engine.connect() as conn:
        line = (await views.participants(conn, views.Filters(), "offering", ALL)).body["items"][0]
        state = (await conn.execute(sa.select(enrolment_states))).one()
        counters = (await conn.execute(sa.select(offering_counts))).one()
    assert (line["confirmed"], line["awaiting_commitment"], line["held"], line["requests"]) == (1, 0, 1, 1)
    assert (state.status, state.version) == ("confirmed", 2)
    assert counters.requests == 1 and counters.awaiting_commitment == 0


async def test_an_offering_cancelled_before_its_publication_arrives_stays_cancelled_with_its_details(
    engine: AsyncEngine,
) -> None:
    n = Network()
    n.institution("sakky")
    n.publish("O1", "sakky", "Funktiot", "mathematics", seats=3, minimum=1, start=date(2026, 9, 1))  # v2
    n.update_offering("O1", max_participants=9)  # v3
    n.cancel_offering("O1")  # v4
    institution, published, updated, cancelled = n.events
    await feed(engine, [institution, cancelled, updated, published])
    async with engine.connect() as conn:
        line = (await views.participants(conn, views.Filters(academic_year=YEAR), "offering", ALL)).body["items"][0]
        supply = (await views.supply_demand(conn, views.Filters(), "subject", ALL)).body["items"][0]
    assert (line["status"], line["seats"], line["title"]) == ("cancelled", 9, "Funktiot")
    assert (supply["offerings"], supply["cancelled_offerings"], supply["seats"]) == (0, 1, 0)


async def test_a_commitment_voided_before_it_was_created_is_counted_once_as_voided(engine: AsyncEngine) -> None:
    n = scenario()
    c12 = [e for e in n.events if e.subject == "c12"]
    assert [e.routing_key for e in c12] == ["commitment.created", "commitment.accepted", "commitment.voided"]
    await feed(engine, [c12[2], c12[0], c12[2], c12[1]])
    async with engine.connect() as conn:
        report = (await views.billing(conn, views.Filters(), "kao", None, None, ALL)).body
    kao = {item["institution_id"]: item for item in report["items"]}["kao"]["as_home"]
    assert (kao["commitments"], kao["voided"], kao["voided_count"], kao["committed"], kao["pending"]) == (
        1,
        "80.00",
        1,
        "0.00",
        "0.00",
    )


async def test_an_institution_update_overtaken_by_an_older_registration_keeps_the_newer_region(
    engine: AsyncEngine,
) -> None:
    n = Network()
    n.institution("sakky", region="Savo")
    n.institution("sakky", region="Pohjois-Savo", update=True)
    n.publish("O1", "sakky", "Funktiot", "mathematics", seats=3, minimum=1, start=date(2026, 9, 1))
    registered, updated, published = n.events
    await feed(engine, [published, updated, registered])
    async with engine.connect() as conn:
        supply = (await views.supply_demand(conn, views.Filters(), "region", ALL)).body["items"]
    assert [(s["region"], s["offerings"]) for s in supply] == [("Pohjois-Savo", 1)]
