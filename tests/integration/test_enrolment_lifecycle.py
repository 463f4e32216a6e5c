"""The enrolment lifecycle on both databases: waitlist promotion, withdrawal charges, results, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.enrolment import handlers
from services.enrolment.app import build_api
from services.enrolment.settings import Settings
from services.enrolment.tables import offerings, outbox
from shared.db import make_engine
from shared.events import (
    CommitmentAccepted,
    CommitmentRejected,
    Envelope,
    InstitutionRegistered,
    LocalizedText,
    OfferingCancelled,
    OfferingPublished,
    OfferingUpdated,
    new_event,
)
from tests.support.apps import app_on, client_of
from tests.support.infra import database, migrate

pytestmark = pytest.mark.integration
TODAY = date.today()


def offering_data(offering_id: str, seats: int, *, deadline: date, late_percent: str = "50") -> dict[str, Any]:
    return {
        "offering_id": offering_id,
        "course_id": "c1",
        "provider_id": "sakky",
        "titles": LocalizedText(fi="Kemia"),
        "subject": "chemistry",
        "level": "upper_secondary",
        "credits": "2.0",
        "languages": ["fi"],
        "delivery_mode": "online_scheduled",
        "academic_year": "2026-2027",
        "start_date": TODAY + timedelta(days=5),
        "end_date": TODAY + timedelta(days=60),
        "enrolment_opens": TODAY - timedelta(days=10),
        "enrolment_closes": TODAY + timedelta(days=30),
        "min_participants": 1,
        "max_participants": seats,
        "member_price": Decimal("80.00"),
        "external_price": Decimal("100.00"),
        "free_cancellation_deadline": deadline,
        "late_withdrawal_percent": Decimal(late_percent),
    }


def catalogue_event(data: Any, subject: str, sequence: int) -> Envelope:
    return new_event(data, source="catalogue", subject=subject, sequence=sequence, correlation_id="seed")


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with database(db_kind, tmp_path, "lifecycle") as url:
        await migrate("enrolment", url)
        engine = make_engine(url, pool_size=20)
        async with engine.begin() as conn:
            registered = InstitutionRegistered(
                institution_id="kao", names=LocalizedText(fi="KAO"), kind="vocational", member=True
            )
            await handlers.on_institution(conn, catalogue_event(registered, "kao", 1))
        yield engine
        await engine.dispose()


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app_on(build_api, Settings, engine), "/api/enrolments") as client:
        yield client


async def publish(
    engine: AsyncEngine,
    offering_id: str,
    seats: int,
    *,
    deadline: date | None = None,
    sequence: int = 2,
    updated: bool = False,
) -> None:
    data = offering_data(offering_id, seats, deadline=deadline or TODAY + timedelta(days=19))
    event = OfferingUpdated(**data) if updated else OfferingPublished(**data)
    async with engine.begin() as conn:
        await handlers.on_offering(conn, catalogue_event(event, offering_id, sequence))


async def enrol(client: httpx.AsyncClient, offering_id: str, learner: str) -> dict[str, Any]:
    response = await client.post(
        "",
        json={
            "offering_id": offering_id,
            "home_institution_id": "kao",
            "student": {"learner_id": learner, "name": learner, "email": f"{learner}@example.fi"},
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def decide(engine: AsyncEngine, enrolment: dict[str, Any], *, accept: bool) -> None:
    facts = {
        "commitment_id": "c" + enrolment["id"][1:],
        "enrolment_id": enrolment["id"],
        "offering_id": enrolment["offering_id"],
        "payer_id": "kao",
        "payee_id": "sakky",
        "amount": Decimal("80.00"),
        "academic_year": "2026-2027",
    }
    data = CommitmentAccepted(**facts, decided_by="automatic") if accept else CommitmentRejected(**facts, reason="no")
    async with engine.begin() as conn:
        handler = handlers.on_commitment_accepted if accept else handlers.on_commitment_rejected
        await handler(
            conn, new_event(data, source="billing", subject=facts["commitment_id"], sequence=2, correlation_id="t")
        )


async def get(client: httpx.AsyncClient, enrolment_id: str) -> dict[str, Any]:
    response = await client.get(f"/{enrolment_id}")
    assert response.status_code == 200
    return dict(response.json())


async def staged(engine: AsyncEngine, routing_key: str) -> list[Envelope]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.payload).where(outbox.c.routing_key == routing_key).order_by(outbox.c.id)
        )
        return [Envelope.from_json(row.payload) for row in rows]


async def test_released_seats_promote_the_waitlist_in_order_through_the_commitment_step(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await publish(engine, "o1", seats=1)
    a, b, c = [await enrol(client, "o1", name) for name in ("anna", "bertta", "cecilia")]
    assert [(e["status"], e["waitlist_position"]) for e in (a, b, c)] == [
        ("awaiting_commitment", None),
        ("waitlisted", 1),
        ("waitlisted", 2),
    ]
    await decide(engine, a, accept=False)
    assert (await get(client, a["id"]))["status"] == "rejected"
    assert (await get(client, b["id"]))["status"] == "awaiting_commitment"
    assert (await get(client, c["id"]))["waitlist_position"] == 1
    requested = [e for e in await staged(engine, "enrolment.requested") if e.subject == b["id"]]
    assert [e.sequence for e in requested] == [2]  # waitlisted was 1

    await decide(engine, b, accept=True)
    withdrawn = await client.post(f"/{b['id']}/withdraw", json={"by": "counsellor"})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    assert (await get(client, c["id"]))["status"] == "awaiting_commitment"


async def test_withdrawal_is_free_before_the_deadline_and_charged_after(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await publish(engine, "early", seats=5, deadline=TODAY + timedelta(days=3))
    await publish(engine, "late", seats=5, deadline=TODAY - timedelta(days=1))
    early, late = await enrol(client, "early", "eero"), await enrol(client, "late", "lauri")
    for enrolment in (early, late):
        await decide(engine, enrolment, accept=True)
        assert (await client.post(f"/{enrolment['id']}/withdraw")).status_code == 200
    events = {e.subject: e.data for e in await staged(engine, "enrolment.withdrawn")}
    assert (events[early["id"]]["late"], events[early["id"]]["charge_percent"]) == (False, "0")
    assert (events[late["id"]]["late"], events[late["id"]]["charge_percent"]) == (True, "50")
    again = await client.post(f"/{late['id']}/withdraw")
    assert again.status_code == 409 and "withdrawn" in again.json()["detail"]


async def test_leaving_the_waitlist_costs_nothing_and_moves_the_others_up(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await publish(engine, "o3", seats=1, deadline=TODAY - timedelta(days=1))
    await enrol(client, "o3", "first")
    second, third = await enrol(client, "o3", "second"), await enrol(client, "o3", "third")
    assert (await client.post(f"/{second['id']}/withdraw")).status_code == 200
    event = next(e for e in await staged(engine, "enrolment.withdrawn") if e.subject == second["id"])
    assert (event.data["was_waitlisted"], event.data["charge_percent"]) == (True, "0")
    assert (await get(client, third["id"]))["waitlist_position"] == 1
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(offerings.c.held).where(offerings.c.id == "o3"))).scalar_one() == 1


@pytest.mark.parametrize(
    ("outcome", "charge", "credits"), [("passed", "100", "2.0"), ("failed", "100", "0"), ("interrupted", "50", "0")]
)
async def test_a_recorded_result_makes_the_commitment_chargeable(
    engine: AsyncEngine, client: httpx.AsyncClient, outcome: str, charge: str, credits: str
) -> None:
    await publish(engine, "o4", seats=5)
    enrolment = await enrol(client, "o4", "rasmus")
    early = await client.post(f"/{enrolment['id']}/result", json={"outcome": outcome})
    assert early.status_code == 409, "a result needs a confirmed enrolment"
    await decide(engine, enrolment, accept=True)
    response = await client.post(f"/{enrolment['id']}/result", json={"outcome": outcome, "grade": "8"})
    assert response.status_code == 200 and response.json()["status"] == outcome
    event = (await staged(engine, "enrolment.completed"))[-1]
    assert (event.data["outcome"], event.data["charge_percent"], event.data["credits_earned"]) == (
        outcome,
        charge,
        credits,
    )
    bad = await client.post(f"/{enrolment['id']}/result", json={"outcome": "excellent"})
    assert bad.status_code == 422


async def test_a_cancelled_offering_cancels_every_active_enrolment_and_takes_no_more(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await publish(engine, "o5", seats=2)
    enrolled = [await enrol(client, "o5", f"s{i}") for i in range(3)]
    await decide(engine, enrolled[0], accept=True)
    cancelled = OfferingCancelled(offering_id="o5", provider_id="sakky", reason="teacher ill")
    async with engine.begin() as conn:
        await handlers.on_offering_cancelled(conn, catalogue_event(cancelled, "o5", 3))
    assert [(await get(client, e["id"]))["status"] for e in enrolled] == ["cancelled"] * 3
    assert sorted(e.subject for e in await staged(engine, "enrolment.cancelled")) == sorted(e["id"] for e in enrolled)
    response = await client.post(
        "",
        json={
            "offering_id": "o5",
            "home_institution_id": "kao",
            "student": {"learner_id": "new", "name": "N", "email": "n@example.fi"},
        },
    )
    assert response.status_code == 409 and "cancelled" in response.json()["detail"]


async def test_a_cancellation_seen_before_the_publication_keeps_the_offering_closed(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    cancelled = OfferingCancelled(offering_id="o6", provider_id="sakky")
    async with engine.begin() as conn:
        await handlers.on_offering_cancelled(conn, catalogue_event(cancelled, "o6", 3))
    await publish(engine, "o6", seats=5, sequence=2)
    response = await client.post(
        "",
        json={
            "offering_id": "o6",
            "home_institution_id": "kao",
            "student": {"learner_id": "x", "name": "X", "email": "x@example.fi"},
        },
    )
    assert response.status_code == 404


async def test_more_seats_promote_the_waitlist_and_fewer_seats_bump_nobody(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await publish(engine, "o7", seats=2)
    enrolled = [await enrol(client, "o7", f"p{i}") for i in range(4)]
    await publish(engine, "o7", seats=1, sequence=3, updated=True)
    assert [(await get(client, e["id"]))["status"] for e in enrolled[:2]] == ["awaiting_commitment"] * 2
    await publish(engine, "o7", seats=3, sequence=4, updated=True)
    assert [(await get(client, e["id"]))["status"] for e in enrolled] == [
        "awaiting_commitment",
        "awaiting_commitment",
        "awaiting_commitment",
        "waitlisted",
    ]
    await publish(engine, "o7", seats=4, sequence=5, updated=True)
    assert (await get(client, enrolled[3]["id"]))["status"] == "awaiting_commitment"


async def test_concurrent_withdrawals_promote_exactly_as_many_as_they_release(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await publish(engine, "o8", seats=5)
    holders = [await enrol(client, "o8", f"h{i}") for i in range(5)]
    waiting = [await enrol(client, "o8", f"w{i}") for i in range(10)]
    responses = await asyncio.gather(*(client.post(f"/{h['id']}/withdraw") for h in holders))
    assert {r.status_code for r in responses} == {200}
    statuses = [(await get(client, w["id"]))["status"] for w in waiting]
    assert statuses == ["awaiting_commitment"] * 5 + ["waitlisted"] * 5
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(offerings.c.held).where(offerings.c.id == "o8"))).scalar_one() == 5
