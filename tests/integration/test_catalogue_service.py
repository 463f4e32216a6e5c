"""Catalogue against real databases: changes to institutions, guidelines, courses and offerings, the
offering lifecycle, and the events each change stages in the outbox (type, sequence, payload)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalogue.app import build_api
from services.catalogue.settings import Settings
from services.catalogue.tables import courses, institutions, offerings, outbox
from shared.db import make_engine
from shared.events import Envelope
from shared.migrate import upgrade
from tests.support.apps import app_on, client_of
from tests.support.auth import ADMIN
from tests.support.infra import ROOT, database, migrate

pytestmark = pytest.mark.integration
TODAY = date.today()


# --- helpers shared by the catalogue's integration tests --------------------------------------------


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with database(db_kind, tmp_path, "catalogue") as url:
        await migrate("catalogue", url)
        engine = make_engine(url)
        yield engine
        await engine.dispose()


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with catalogue_client(engine) as client:
        yield client


def catalogue_client(engine: AsyncEngine, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """A client of the catalogue app on `engine`; a network admin unless other `headers` are given ({}: anonymous)."""
    return client_of(app_on(build_api, Settings, engine), "/api/catalogue", ADMIN if headers is None else headers)


async def staged(engine: AsyncEngine, routing_key: str | None = None) -> list[Envelope]:
    """The events in the outbox, oldest first (optionally of one type)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox.c.routing_key, outbox.c.payload).order_by(outbox.c.id))).all()
    return [Envelope.from_json(r.payload) for r in rows if routing_key is None or r.routing_key == routing_key]


async def institution(
    client: httpx.AsyncClient, slug: str, *, region: str = "Pohjois-Savo", member: bool = True
) -> None:
    body = {"id": slug, "names": {"fi": slug.title()}, "kind": "vocational", "member": member, "region": region}
    response = await client.post("/institutions", json=body)
    assert response.status_code == 201, response.text


async def course(client: httpx.AsyncClient, provider: str, code: str, **fields: Any) -> dict[str, Any]:
    body = {
        "provider_id": provider,
        "code": code,
        "titles": {"fi": "Funktiot", "en": "Functions"},
        "subject": "mathematics",
        "level": "upper_secondary",
        "credits": "3.0",
        "languages": ["fi"],
        "delivery_mode": "online_self_paced",
        **fields,
    }
    response = await client.post("/courses", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def plan(start_in_days: int = 30, **fields: Any) -> dict[str, Any]:
    start = TODAY + timedelta(days=start_in_days)
    return {
        "start_date": str(start),
        "end_date": str(start + timedelta(days=60)),
        "enrolment_opens": str(TODAY - timedelta(days=1)),
        "enrolment_closes": str(start - timedelta(days=5)),
        "max_participants": 20,
        **fields,
    }


async def offering(
    client: httpx.AsyncClient, course_id: str, *, publish: bool = False, **fields: Any
) -> dict[str, Any]:
    response = await client.post("/offerings", json={"course_id": course_id, **plan(**fields)})
    assert response.status_code == 201, response.text
    if publish:
        response = await client.post(f"/offerings/{response.json()['id']}/publish")
        assert response.status_code == 200, response.text
    return dict(response.json())


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table.name: int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
            for table in (institutions, courses, offerings, outbox)
        }


# --- institutions -------------------------------------------------------------------------------------


async def test_patching_an_institution_publishes_its_whole_new_state(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await institution(client, "sakky")
    response = await client.patch(
        "/institutions/sakky",
        json={"names": {"sv": "Savolax yrkesinstitut"}, "member": False, "business_id": "1234567-8"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["names"] == {"fi": "Sakky", "sv": "Savolax yrkesinstitut", "en": None}
    [event] = await staged(engine, "institution.updated")
    assert (event.type, event.subject, event.sequence) == ("fi.tarjotin.institution.updated.v1", "sakky", 2)
    assert event.data == {
        "institution_id": "sakky",
        "names": {"fi": "Sakky", "sv": "Savolax yrkesinstitut", "en": None},
        "kind": "vocational",
        "member": False,
        "municipality": None,
        "region": "Pohjois-Savo",
        "business_id": "1234567-8",
        "einvoice_address": None,
    }
    again = await client.patch("/institutions/sakky", json={"municipality": "Kuopio"})
    assert again.status_code == 200
    assert [e.sequence for e in await staged(engine, "institution.updated")] == [2, 3]


async def test_a_patch_that_changes_nothing_publishes_nothing(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await institution(client, "sakky")
    response = await client.patch("/institutions/sakky", json={"region": "Pohjois-Savo", "names": {"fi": "Sakky"}})
    assert response.status_code == 200
    assert await staged(engine, "institution.updated") == []


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"business_id": "12345678"}, "business_id"),
        ({"names": {"fi": None}}, "names needs at least one of fi, sv, en"),
        ({"kind": None}, "kind cannot be null"),
        ({"kind": "castle"}, "kind"),
        ({"id": "other"}, "id"),
    ],
)
async def test_an_invalid_institution_patch_is_refused_and_changes_nothing(
    engine: AsyncEngine, client: httpx.AsyncClient, body: dict[str, Any], phrase: str
) -> None:
    await institution(client, "sakky")
    before = await client.get("/institutions/sakky")
    response = await client.patch("/institutions/sakky", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert phrase in response.json()["detail"] + str(response.json().get("errors"))
    assert (await client.get("/institutions/sakky")).json() == before.json()
    assert await staged(engine, "institution.updated") == []


async def test_patching_an_unknown_institution_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/institutions/nowhere", json={"region": "Kainuu"})
    assert response.status_code == 404


async def test_a_new_region_reannounces_the_published_offerings_of_the_provider(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    published = await offering(client, c["id"], publish=True)
    await offering(client, c["id"])  # a draft: nobody else knows it
    await client.patch("/institutions/sakky", json={"region": "Kainuu"})
    [event] = await staged(engine, "offering.updated")
    assert (event.subject, event.sequence) == (published["id"], 3)
    assert event.data["region"] == "Kainuu" and event.data["status"] == "published"
    found = await client.get("/offerings", params={"region": "Kainuu"})
    assert found.json()["total"] == 2


# --- pricing guideline ----------------------------------------------------------------------------------


async def test_setting_a_guideline_publishes_it_with_a_per_year_version(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    body = {"price_per_credit": "45.50", "external_surcharge_percent": "20", "late_withdrawal_percent": "80"}
    assert (await client.put("/pricing-guidelines/2026-2027", json=body)).status_code == 200
    assert (await client.put("/pricing-guidelines/2026-2027", json=body)).status_code == 200  # same: no event
    changed = {**body, "free_cancellation_days": 21}
    assert (await client.put("/pricing-guidelines/2026-2027", json=changed)).status_code == 200
    assert (await client.put("/pricing-guidelines/2027-2028", json=body)).status_code == 200
    events = await staged(engine, "pricing_guideline.set")
    assert [(e.subject, e.sequence) for e in events] == [("2026-2027", 1), ("2026-2027", 2), ("2027-2028", 1)]
    assert events[1].type == "fi.tarjotin.pricing_guideline.set.v1"
    assert events[1].data == {
        "academic_year": "2026-2027",
        "price_per_credit": "45.50",
        "external_surcharge_percent": "20",
        "late_withdrawal_percent": "80",
        "free_cancellation_days": 21,
    }


async def test_existing_offerings_keep_their_prices_and_share_when_the_guideline_changes(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    start = date(TODAY.year + 1, 9, 1)
    year = f"{start.year}-{start.year + 1}"
    first = {"price_per_credit": "40.00", "external_surcharge_percent": "25", "late_withdrawal_percent": "100"}
    await client.put(f"/pricing-guidelines/{year}", json=first)
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2", credits="2.5")
    days = (start - TODAY).days
    before = await offering(client, c["id"], publish=True, start_in_days=days)
    assert (before["member_price"], before["external_price"], before["late_withdrawal_percent"]) == (
        "100.00",
        "125.00",
        "100",
    )
    second = {"price_per_credit": "33.33", "external_surcharge_percent": "12.5", "late_withdrawal_percent": "50"}
    await client.put(f"/pricing-guidelines/{year}", json=second)
    kept = (await client.get(f"/offerings/{before['id']}")).json()
    assert (kept["member_price"], kept["external_price"], kept["late_withdrawal_percent"]) == (
        "100.00",
        "125.00",
        "100",
    )
    await client.patch(f"/offerings/{before['id']}", json={"max_participants": 25})
    [update] = await staged(engine, "offering.updated")
    assert update.data["late_withdrawal_percent"] == "100" and update.data["member_price"] == "100.00"
    after = await offering(client, c["id"], publish=True, start_in_days=days)
    assert (after["member_price"], after["external_price"], after["late_withdrawal_percent"]) == (
        "83.33",  # 2.5 × 33.33 = 83.325, half up
        "93.75",  # 83.33 × 1.125 = 93.74625
        "50",
    )
    published = await staged(engine, "offering.published")
    assert [e.data["late_withdrawal_percent"] for e in published] == ["100", "50"]


# --- courses ----------------------------------------------------------------------------------------------


async def test_a_course_change_reannounces_only_its_published_offerings(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    published = await offering(client, c["id"], publish=True)
    await offering(client, c["id"])
    response = await client.patch(
        f"/courses/{c['id']}", json={"titles": {"sv": "Funktioner"}, "languages": ["fi", "sv"], "level": "vocational"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["titles"] == {"fi": "Funktiot", "sv": "Funktioner", "en": "Functions"}
    [event] = await staged(engine, "offering.updated")
    assert (event.subject, event.sequence) == (published["id"], 3)
    assert event.data["titles"] == {"fi": "Funktiot", "sv": "Funktioner", "en": "Functions"}
    assert (event.data["languages"], event.data["level"], event.data["status"]) == (
        ["fi", "sv"],
        "vocational",
        "published",
    )
    assert event.data["member_price"] == published["member_price"]
    assert (await client.get(f"/offerings/{published['id']}")).json()["version"] == 3


async def test_a_description_change_is_searchable_but_announces_nothing(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    await offering(client, c["id"], publish=True)
    response = await client.patch(f"/courses/{c['id']}", json={"descriptions": {"sv": "Derivatan och integralen"}})
    assert response.status_code == 200
    assert await staged(engine, "offering.updated") == []
    assert (await client.get("/offerings", params={"q": "derivatan"})).json()["total"] == 1


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"credits": "0"}, "credits"),
        ({"languages": []}, "languages"),
        ({"languages": ["de"]}, "languages"),
        ({"titles": {"fi": None, "en": None}}, "A course title needs at least one of fi, sv, en"),
        ({"subject": None}, "subject cannot be null"),
        ({"code": "NEW"}, "code"),
    ],
)
async def test_an_invalid_course_patch_is_refused_and_changes_nothing(
    engine: AsyncEngine, client: httpx.AsyncClient, body: dict[str, Any], phrase: str
) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    response = await client.patch(f"/courses/{c['id']}", json=body)
    assert response.status_code == 422
    assert phrase in response.json()["detail"] + str(response.json().get("errors"))
    assert (await client.get(f"/courses/{c['id']}")).json() == c


# --- offerings ------------------------------------------------------------------------------------------


async def test_patching_a_published_offering_publishes_its_whole_state(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    o = await offering(client, c["id"], publish=True)
    new_start = TODAY + timedelta(days=37)
    response = await client.patch(
        f"/offerings/{o['id']}",
        json={"start_date": str(new_start), "max_participants": 2, "member_price": "99.90"},
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["max_participants"], data["member_price"], data["version"]) == (2, "99.90", 3)
    assert data["free_cancellation_deadline"] == str(new_start + timedelta(days=14))  # moved with the start
    [event] = await staged(engine, "offering.updated")
    assert (event.type, event.subject, event.sequence) == ("fi.tarjotin.offering.updated.v1", o["id"], 3)
    expected = {k: data[k] for k in ("course_id", "provider_id", "start_date", "max_participants", "member_price")}
    assert {k: event.data[k] for k in expected} == expected
    assert (event.data["status"], event.data["external_price"], event.data["credits"]) == ("published", "150.00", "3.0")
    reset = await client.patch(f"/offerings/{o['id']}", json={"member_price": None})
    assert reset.json()["member_price"] == "120.00"  # back to 3 credits × the default 40.00


async def test_patching_a_draft_announces_nothing(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    o = await offering(client, c["id"])
    response = await client.patch(f"/offerings/{o['id']}", json={"min_participants": 5})
    assert response.status_code == 200 and response.json()["min_participants"] == 5
    assert await staged(engine, "offering.updated") == []


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"end_date": str(TODAY)}, "end_date is before start_date"),
        ({"enrolment_closes": str(TODAY - timedelta(days=9))}, "enrolment_closes is before enrolment_opens"),
        ({"enrolment_opens": str(TODAY + timedelta(days=90))}, "enrolment_opens"),
        ({"min_participants": 30}, "min_participants is larger than max_participants"),
        ({"start_date": "2026-02-30"}, "start_date"),
        ({"start_date": None}, "start_date cannot be null"),
        ({"max_participants": 0}, "max_participants"),
        ({"member_price": "1.234"}, "member_price"),
        ({"status": "published"}, "status"),
    ],
)
async def test_an_invalid_offering_patch_is_refused_and_changes_nothing(
    engine: AsyncEngine, client: httpx.AsyncClient, body: dict[str, Any], phrase: str
) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    o = await offering(client, c["id"], publish=True)
    before = await row_counts(engine)
    response = await client.patch(f"/offerings/{o['id']}", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert phrase in response.json()["detail"] + str(response.json().get("errors"))
    assert (await client.get(f"/offerings/{o['id']}")).json() == o
    assert await row_counts(engine) == before


async def test_cancelling_publishes_the_cancellation_and_twice_is_a_conflict(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    o = await offering(client, c["id"], publish=True)
    response = await client.post(f"/offerings/{o['id']}/cancel", json={"reason": "Liian vähän ilmoittautuneita"})
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["cancellation_reason"]) == (
        "cancelled",
        "Liian vähän ilmoittautuneita",
    )
    [event] = await staged(engine, "offering.cancelled")
    assert (event.type, event.subject, event.sequence) == ("fi.tarjotin.offering.cancelled.v1", o["id"], 3)
    assert event.data == {"offering_id": o["id"], "provider_id": "sakky", "reason": "Liian vähän ilmoittautuneita"}
    again = await client.post(f"/offerings/{o['id']}/cancel")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert "already cancelled" in again.json()["detail"]
    changed = await client.patch(f"/offerings/{o['id']}", json={"max_participants": 3})
    assert changed.status_code == 409
    assert len(await staged(engine, "offering.cancelled")) == 1


async def test_a_draft_can_be_cancelled_without_a_reason(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    o = await offering(client, c["id"])
    response = await client.post(f"/offerings/{o['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    [event] = await staged(engine, "offering.cancelled")
    assert (event.sequence, event.data["reason"]) == (2, None)
    assert (await client.post(f"/offerings/{o['id']}/publish")).status_code == 409


async def test_closing_and_completing_publish_the_new_status(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    o = await offering(client, c["id"], publish=True)
    assert (await client.post(f"/offerings/{o['id']}/close")).json()["status"] == "closed"
    assert (await client.post(f"/offerings/{o['id']}/close")).status_code == 409
    assert (await client.post(f"/offerings/{o['id']}/complete")).json()["status"] == "completed"
    assert (await client.post(f"/offerings/{o['id']}/cancel")).status_code == 409
    events = await staged(engine, "offering.updated")
    assert [(e.sequence, e.data["status"]) for e in events] == [(3, "closed"), (4, "completed")]


async def test_lifecycle_of_an_unknown_offering_is_404(client: httpx.AsyncClient) -> None:
    for action in ("publish", "cancel", "close", "complete"):
        assert (await client.post(f"/offerings/nope/{action}")).status_code == 404
    assert (await client.patch("/offerings/nope", json={"max_participants": 3})).status_code == 404


async def test_an_external_id_is_unique_per_provider(client: httpx.AsyncClient) -> None:
    await institution(client, "sakky")
    await institution(client, "kao")
    mine, theirs = await course(client, "sakky", "MAA2"), await course(client, "kao", "MAA2")
    first = await offering(client, mine["id"], external_id="2026-MAA2-1")
    assert first["external_id"] == "2026-MAA2-1"
    duplicate = await client.post("/offerings", json={"course_id": mine["id"], "external_id": "2026-MAA2-1", **plan()})
    assert duplicate.status_code == 409 and duplicate.json()["offering_id"] == first["id"]
    await offering(client, theirs["id"], external_id="2026-MAA2-1")


# --- an existing database --------------------------------------------------------------------------------


async def test_upgrading_an_existing_database_indexes_its_offerings_and_fixes_their_share(
    db_kind: str, tmp_path: Path
) -> None:
    async with database(db_kind, tmp_path, "catalogue_old") as url:
        await asyncio.to_thread(upgrade, ROOT / "services" / "catalogue" / "migrations", url, "0001")
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO institutions (id, name_fi, kind, member, region, version)"
                    " VALUES ('sakky', 'Sakky', 'vocational', true, 'Pohjois-Savo', 1)"
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO pricing_guidelines (academic_year, price_per_credit, external_surcharge_percent,"
                    " late_withdrawal_percent, free_cancellation_days) VALUES ('2026-2027', 4000, '25', '80', 14)"
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO courses (id, provider_id, code, title_fi, description_sv, subject, level, credits,"
                    " languages, delivery_mode) VALUES ('c1', 'sakky', 'MAA2', 'Äidinkieli', 'Modersmål', 'finnish',"
                    " 'upper_secondary', '2.0', 'fi,sv', 'blended')"
                )
            )
            for oid, status in (("o1", "published"), ("o2", "draft")):
                await conn.execute(
                    sa.text(
                        "INSERT INTO offerings (id, course_id, provider_id, academic_year, start_date, end_date,"
                        " enrolment_opens, enrolment_closes, min_participants, max_participants, member_price,"
                        " external_price, free_cancellation_deadline, status, version) VALUES (:id, 'c1', 'sakky',"
                        " '2026-2027', :start, :end, :opens, :closes, 1, 20, 8000, 10000, :deadline, :status, 2)"
                    ).bindparams(
                        sa.bindparam("start", date(2026, 9, 1), sa.Date),
                        sa.bindparam("end", date(2026, 12, 1), sa.Date),
                        sa.bindparam("opens", date(2026, 8, 1), sa.Date),
                        sa.bindparam("closes", date(2026, 8, 25), sa.Date),
                        sa.bindparam("deadline", date(2026, 9, 15), sa.Date),
                    ),
                    {"id": oid, "status": status},
                )
        await engine.dispose()
        await migrate("catalogue", url)
        engine = make_engine(url)
        async with catalogue_client(engine) as client:
            found = await client.get("/offerings", params={"q": "aidinkiel modersm", "language": "sv"})
            assert found.json()["total"] == 2
            assert found.json()["facets"]["subject"] == [{"value": "finnish", "count": 2}]
            old = (await client.get("/offerings/o1")).json()
            assert (old["late_withdrawal_percent"], old["member_price"]) == ("80", "80.00")
            assert old["published_at"] is not None
            assert (await client.get("/offerings/o2")).json()["late_withdrawal_percent"] is None
            assert (await client.patch("/offerings/o1", json={"max_participants": 10})).status_code == 200
            [event] = await staged(engine, "offering.updated")
            assert (event.sequence, event.data["late_withdrawal_percent"]) == (3, "80")
        await engine.dispose()


async def test_concurrent_changes_never_publish_the_same_sequence_twice(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await institution(client, "sakky")
    c = await course(client, "sakky", "MAA2")
    o = await offering(client, c["id"], publish=True)
    changes = [client.patch(f"/offerings/{o['id']}", json={"max_participants": 10 + i}) for i in range(8)]
    changes += [client.patch(f"/courses/{c['id']}", json={"titles": {"en": f"Functions {i}"}}) for i in range(4)]
    responses = await asyncio.gather(*changes)
    assert {r.status_code for r in responses} <= {200, 409}
    assert sum(r.status_code == 200 for r in responses) >= 2
    sequences = [e.sequence for e in await staged(engine, "offering.updated")]
    assert sequences == sorted(set(sequences)) and len(sequences) >= 2
    final = (await client.get(f"/offerings/{o['id']}")).json()
    assert final["version"] == sequences[-1]
