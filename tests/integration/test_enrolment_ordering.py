"""Property: the enrolment service ends in the same state whatever the order and duplication of its events."""

from __future__ import annotations

import asyncio
import random
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.enrolment import handlers
from services.enrolment.consumers import SUBSCRIPTIONS
from services.enrolment.tables import enrolments, inbox, offerings, outbox
from shared.bus import Consumer
from shared.db import forget_engines, make_engine
from shared.events import (
    CommitmentAccepted,
    CommitmentRejected,
    Envelope,
    EventData,
    InstitutionRegistered,
    LocalizedText,
    OfferingPublished,
    OfferingUpdated,
    new_event,
)
from tests.support.infra import database, examples, migrate

pytestmark = pytest.mark.integration
TODAY = date.today()
SEATS, STUDENTS = 3, 6


def offering(seats: int, updated: bool) -> Any:
    data = {
        "offering_id": "o",
        "course_id": "c",
        "provider_id": "sakky",
        "titles": LocalizedText(fi="Fysiikka"),
        "subject": "physics",
        "level": "upper_secondary",
        "credits": "2.0",
        "languages": ["fi"],
        "delivery_mode": "blended",
        "academic_year": "2026-2027",
        "start_date": TODAY + timedelta(days=9),
        "end_date": TODAY + timedelta(days=99),
        "enrolment_opens": TODAY - timedelta(days=9),
        "enrolment_closes": TODAY + timedelta(days=8),
        "min_participants": 1,
        "max_participants": seats,
        "member_price": Decimal("80.00"),
        "external_price": Decimal("100.00"),
        "free_cancellation_deadline": TODAY + timedelta(days=20),
    }
    return OfferingUpdated(**data) if updated else OfferingPublished(**data)


async def scenario_state(url: str, decisions: list[bool], order: list[int], duplicates: list[int]) -> dict[str, Any]:
    """Seed students, then deliver the consumed events in `order`, with `duplicates` delivered again."""
    engine = make_engine(url)
    consumer = Consumer(
        engine, inbox, SUBSCRIPTIONS, service="enrolment", amqp_url="amqp://unused/", exchange="unused", queue="unused"
    )
    seed = [
        new_event(
            InstitutionRegistered(institution_id="kao", names=LocalizedText(fi="KAO"), kind="vocational", member=True),
            source="catalogue",
            subject="kao",
            sequence=1,
            correlation_id="s",
        ),
        new_event(offering(SEATS, False), source="catalogue", subject="o", sequence=2, correlation_id="s"),
    ]
    assert await consumer.apply(seed) == [None, None]
    ids = []
    async with engine.begin() as conn:
        for i in range(STUDENTS):
            student = handlers.Student(learner_id=f"l{i}", name=f"S{i}", email=f"s{i}@example.fi")
            _created, data = await handlers.request_enrolment(conn, handlers.RequestEnrolment("o", "kao", student), "s")
            ids.append(data["id"])
    events: list[Envelope] = [
        new_event(offering(SEATS + 1, True), source="catalogue", subject="o", sequence=3, correlation_id="s")
    ]
    for enrolment_id, accept in zip(ids[:SEATS], decisions, strict=True):
        facts = {
            "commitment_id": enrolment_id,
            "enrolment_id": enrolment_id,
            "offering_id": "o",
            "payer_id": "kao",
            "payee_id": "sakky",
            "amount": Decimal("80.00"),
            "academic_year": "2026-2027",
        }
        decision: EventData = (
            CommitmentAccepted(**facts, decided_by="auto") if accept else CommitmentRejected(**facts, reason="no")
        )
        events.append(new_event(decision, source="billing", subject=enrolment_id, sequence=2, correlation_id="s"))
    delivered = [events[i] for i in order] + [events[i] for i in duplicates]
    for event in delivered:  # one delivery per transaction, as separate messages would be
        assert await consumer.apply([event]) == [None]
    async with engine.connect() as conn:
        statuses = dict((await conn.execute(sa.select(enrolments.c.id, enrolments.c.status))).all())
        held = (await conn.execute(sa.select(offerings.c.held, offerings.c.max_participants))).one()
        emitted = sorted((await conn.execute(sa.select(outbox.c.routing_key))).scalars())
    await engine.dispose()
    forget_engines()
    return {"statuses": [statuses[i] for i in ids], "held": tuple(held), "emitted": emitted}


def run_case(kind: str, decisions: list[bool], order: list[int], duplicates: list[int]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            async with database(kind, Path(tmp), "ordering") as url:
                await migrate("enrolment", url)
                return await scenario_state(url, decisions, order, duplicates)

    return asyncio.run(go())


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_consumed_events_in_any_order_and_any_number_of_times_give_the_in_order_state(kind: str) -> None:
    count = examples(12 if kind == "sqlite" else 4)
    in_order: dict[tuple[bool, ...], dict[str, Any]] = {}

    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck))
    @given(decisions=st.lists(st.booleans(), min_size=SEATS, max_size=SEATS), seed=st.integers(0, 10**6))
    def check(decisions: list[bool], seed: int) -> None:
        rng = random.Random(seed)
        count = SEATS + 1
        order = list(range(count))
        rng.shuffle(order)
        duplicates = [rng.randrange(count) for _ in range(rng.randrange(1, 4))]
        key = tuple(decisions)
        if key not in in_order:
            in_order[key] = run_case(kind, decisions, list(range(count)), [])
        expected = in_order[key]
        assert run_case(kind, decisions, order, duplicates) == expected
        # each rejection frees a seat and the update adds one: that many waitlisted move up, in FIFO order
        promoted = min(STUDENTS - SEATS, decisions.count(False) + 1)
        assert expected["statuses"][SEATS:] == ["awaiting_commitment"] * promoted + ["waitlisted"] * (
            STUDENTS - SEATS - promoted
        )
        assert expected["held"][0] == decisions.count(True) + promoted

    check()
