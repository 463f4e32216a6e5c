"""Enrolment against real databases: race-free seats, FIFO waitlist, problem+json, idempotency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.enrolment import handlers
from services.enrolment.app import build_api
from services.enrolment.settings import Settings
from services.enrolment.tables import enrolments, offerings, outbox, students
from shared.events import InstitutionRegistered, LocalizedText, new_event
from tests.integration.test_enrolment_support import offering_event
from tests.support.apps import app_on, client_of
from tests.support.infra import migrated_engine

pytestmark = pytest.mark.integration
TODAY = date.today()


async def seed(engine: AsyncEngine, offering_id: str, seats: int) -> None:
    async with engine.begin() as conn:
        for slug, member in (("kao", True), ("edupoli", False)):
            data = InstitutionRegistered(
                institution_id=slug, names=LocalizedText(fi=slug), kind="vocational", member=member
            )
            await handlers.on_institution(
                conn, new_event(data, source="catalogue", subject=slug, sequence=1, correlation_id="seed")
            )
        await handlers.on_offering(conn, offering_event(offering_id, seats))


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine("enrolment", db_kind, tmp_path, "enrolment", pool_size=20) as engine:
        yield engine


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app_on(build_api, Settings, engine), "/api/enrolments") as client:
        yield client


def body(offering_id: str, learner: str, home: str = "kao") -> dict[str, Any]:
    return {
        "offering_id": offering_id,
        "home_institution_id": home,
        "student": {"learner_id": learner, "name": f"Student {learner}", "email": f"{learner}@example.fi"},
    }


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        result = {}
        for name, table in (("enrolments", enrolments), ("students", students), ("outbox", outbox)):
            result[name] = int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
        return result


async def test_a_thousand_concurrent_requests_for_ten_seats_hold_ten_and_waitlist_the_rest_in_order(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed(engine, "o1", seats=10)
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> httpx.Response:
        async with gate:
            return await client.post("", json=body("o1", f"L{i}"))

    responses = await asyncio.gather(*(one(i) for i in range(1000)))
    assert {r.status_code for r in responses} == {201}
    statuses = [r.json()["status"] for r in responses]
    assert statuses.count("awaiting_commitment") == 10
    assert statuses.count("waitlisted") == 990
    waitlisted = sorted(
        (r.json() for r in responses if r.json()["status"] == "waitlisted"), key=lambda e: e["waitlist_position"]
    )
    assert [e["waitlist_position"] for e in waitlisted] == list(range(1, 991))
    # As times, not strings: a time on a whole second is written without its fraction ("…:37Z" > "…:37.011Z").
    created = [datetime.fromisoformat(e["created_at"]) for e in waitlisted]
    assert created == sorted(created), "waitlist order is not the order the requests were taken"
    async with engine.connect() as conn:
        held = (await conn.execute(sa.select(offerings.c.held).where(offerings.c.id == "o1"))).scalar_one()
    assert held == 10


async def test_enrolling_twice_returns_the_same_enrolment(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await seed(engine, "o2", seats=5)
    first = await client.post("", json=body("o2", "same"))
    again = await client.post("", json=body("o2", "same"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert (await counts(engine))["enrolments"] == 1


async def test_the_same_new_student_enrolling_twice_at_once_gets_one_enrolment_and_no_error(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """Both requests insert the student (and the enrolment) before either commits: on PostgreSQL one of
    them meets the other's unique key and runs again, finding what the other wrote (it was a 500)."""
    await seed(engine, "o2b", seats=5)
    for round_ in range(5):
        responses = await asyncio.gather(*(client.post("", json=body("o2b", f"twin{round_}")) for _ in range(2)))
        assert sorted(r.status_code for r in responses) == [200, 201], [r.text for r in responses]
        assert responses[0].json()["id"] == responses[1].json()["id"]
    assert (await counts(engine))["enrolments"] == 5


async def test_an_idempotency_key_replays_the_answer_and_refuses_a_different_body(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed(engine, "o3", seats=5)
    first = await client.post("", json=body("o3", "a"), headers={"Idempotency-Key": "k1"})
    replay = await client.post("", json=body("o3", "a"), headers={"Idempotency-Key": "k1"})
    other = await client.post("", json=body("o3", "b"), headers={"Idempotency-Key": "k1"})
    assert (first.status_code, replay.status_code, other.status_code) == (201, 200, 409)
    assert replay.json() == first.json()
    assert other.headers["content-type"] == "application/problem+json"
    assert (await counts(engine))["enrolments"] == 1


@pytest.mark.parametrize(
    ("payload", "status", "phrase"),
    [
        ("{not json", 400, "not valid JSON"),
        ({"offering_id": "o4", "home_institution_id": "kao"}, 422, "student"),
        ({**body("o4", "x"), "student": {"learner_id": "x", "name": "X", "email": "nope"}}, 422, "student.email"),
        ({**body("o4", "x"), "offering_id": 12}, 422, "offering_id"),
        (body("missing", "x"), 404, "not open for enrolment"),
        (body("o4", "x", home="nowhere"), 422, "Home institution 'nowhere'"),
        ({**body("o4", "x"), "extra": 1}, 422, "extra"),
    ],
)
async def test_bad_requests_get_a_clear_problem_and_change_nothing(
    engine: AsyncEngine, client: httpx.AsyncClient, payload: Any, status: int, phrase: str
) -> None:
    await seed(engine, "o4", seats=5)
    before = await counts(engine)
    if isinstance(payload, str):
        response = await client.post("", content=payload, headers={"content-type": "application/json"})
    else:
        response = await client.post("", json=payload)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and phrase in problem["detail"] + str(problem.get("errors"))
    assert await counts(engine) == before


async def test_a_closed_window_is_refused(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await seed(engine, "o5", seats=5)
    async with engine.begin() as conn:
        await conn.execute(offerings.update().values(enrolment_closes=TODAY - timedelta(days=1)))
    response = await client.post("", json=body("o5", "late"))
    assert response.status_code == 409
    assert "Enrolment closed" in response.json()["detail"]


async def test_an_older_offering_event_does_not_overwrite_a_newer_copy(engine: AsyncEngine) -> None:
    await seed(engine, "o6", seats=5)
    async with engine.begin() as conn:
        await handlers.on_offering(conn, offering_event("o6", seats=9, sequence=3))
        await handlers.on_offering(conn, offering_event("o6", seats=1, sequence=2))
        seats = (await conn.execute(sa.select(offerings.c.max_participants))).scalar_one()
    assert seats == 9
