"""Personal data in the enrolment service: a student's export, erasure, and no personal data in events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from services.enrolment.tables import enrolments, idempotency_keys, outbox, students
from tests.integration.test_enrolment_support import World, enrolment_body, enrolment_world
from tests.support.auth import ADMIN, bearer

pytestmark = pytest.mark.integration

STUDENT = bearer("student", "kao", "P1", subject="oidc|p1")
COUNSELLOR = bearer("counsellor", "kao", subject="oidc|counsellor")


@pytest.fixture
async def world(db_kind: str, tmp_path: Path) -> AsyncIterator[World]:
    async with enrolment_world(db_kind, tmp_path) as world:
        yield world


async def test_a_student_exports_everything_held_about_them_and_nothing_of_others(world: World) -> None:
    nothing = await world.client.get("/students/me", headers=STUDENT)
    assert nothing.status_code == 200
    assert nothing.json()["student_ref"] is None and nothing.json()["enrolments"] == []

    passed = await world.confirmed("kao", "P1", "sakky")
    staff = bearer("provider_staff", "sakky")
    result = await world.client.post(f"/{passed['id']}/result", json={"outcome": "passed", "grade": "9"}, headers=staff)
    assert result.status_code == 200
    waiting = await world.enrol("kao", "P1", await world.offering("tampere"), headers=STUDENT)
    await world.enrol("kao", "P2", await world.offering("sakky"))  # a classmate
    await world.enrol("edupoli", "P1", await world.offering("sakky"))  # the same learner id elsewhere: another person

    response = await world.client.get("/students/me", headers=STUDENT)
    assert response.status_code == 200
    export = response.json()
    assert {k: export[k] for k in ("student_ref", "home_institution_id", "learner_id", "name", "email", "erased")} == {
        "student_ref": passed["student_ref"],
        "home_institution_id": "kao",
        "learner_id": "P1",
        "name": "Name P1",
        "email": "p1@example.fi",
        "erased": False,
    }
    records = {e["id"]: e for e in export["enrolments"]}
    assert set(records) == {passed["id"], waiting["id"]}
    assert (records[passed["id"]]["status"], records[passed["id"]]["grade"]) == ("passed", "9")
    assert records[passed["id"]]["credits_earned"] == "2.0" and records[passed["id"]]["provider_id"] == "sakky"
    assert records[waiting["id"]]["status"] == "awaiting_commitment"
    assert records[waiting["id"]]["offering_title"].startswith("Kurssi tampere-")

    by_counsellor = await world.client.get(f"/students/{passed['student_ref']}", headers=COUNSELLOR)
    by_admin = await world.client.get(f"/students/{passed['student_ref']}", headers=ADMIN)
    for other in (by_counsellor, by_admin):
        assert other.status_code == 200
        assert {**other.json(), "exported_at": None} == {**export, "exported_at": None}
    elsewhere = await world.client.get(f"/students/{passed['student_ref']}", headers=bearer("counsellor", "edupoli"))
    missing = await world.client.get("/students/no-such-ref", headers=COUNSELLOR)
    assert (elsewhere.status_code, missing.status_code) == (404, 404)
    refused = [
        (await world.client.get(f"/students/{passed['student_ref']}", headers=headers)).status_code
        for headers in (STUDENT, bearer("provider_staff", "sakky"), bearer("finance", "kao"))
    ]
    assert refused == [403, 403, 403]
    assert (await world.client.get("/students/me", headers=ADMIN)).status_code == 403


async def test_erasure_removes_personal_data_but_keeps_the_enrolments_and_is_idempotent(world: World) -> None:
    first = await world.confirmed("kao", "P1", "sakky")
    second = await world.enrol(
        "kao", "P1", await world.offering("tampere"), headers={**STUDENT, "Idempotency-Key": "k"}
    )
    classmate = await world.enrol("kao", "P2", await world.offering("sakky"))
    ref = first["student_ref"]
    enrolled_before, outbox_before = await world.count(enrolments), await world.count(outbox)

    elsewhere = await world.client.post(f"/students/{ref}/erase", headers=bearer("counsellor", "edupoli"))
    assert elsewhere.status_code == 404
    assert (await world.client.post(f"/students/{ref}/erase", headers=STUDENT)).status_code == 403
    assert (await world.client.get(f"/{first['id']}", headers=ADMIN)).json()["student"]["name"] == "Name P1"

    erased = await world.client.post(f"/students/{ref}/erase", headers=COUNSELLOR)
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert (body["student_ref"], body["learner_id"], body["name"], body["email"], body["erased"]) == (
        ref,
        None,
        None,
        None,
        True,
    )
    assert {e["id"] for e in body["enrolments"]} == {first["id"], second["id"]}

    async with world.engine.connect() as conn:
        row = (await conn.execute(sa.select(students).where(students.c.id == ref))).one()
        other = (await conn.execute(sa.select(students).where(students.c.id == classmate["student_ref"]))).one()
    assert (row.learner_id, row.name, row.email) == (None, None, None) and row.erased_at is not None
    assert (other.learner_id, other.name) == ("P2", "Name P2"), "only the one student is erased"
    assert await world.count(enrolments) == enrolled_before
    assert await world.count(enrolments, enrolments.c.student_id == ref) == 2
    assert await world.count(outbox) == outbox_before, "erasure publishes nothing"

    for seen in (
        (await world.client.get(f"/{first['id']}", headers=ADMIN)).json(),
        (await world.client.get(f"/{second['id']}", headers=bearer("provider_staff", "tampere"))).json(),
        next(e for e in (await world.client.get("", headers=COUNSELLOR)).json()["items"] if e["id"] == first["id"]),
    ):
        assert seen["student"] == {"learner_id": None, "name": None, "email": None, "erased": True}
        assert seen["student_ref"] == ref
    assert (await world.client.get(f"/{first['id']}", headers=ADMIN)).json()["status"] == "confirmed"

    # The stored answer to the Idempotency-Key request held the student's data: it no longer does.
    async with world.engine.connect() as conn:
        stored = [orjson.loads(b) for b in (await conn.execute(sa.select(idempotency_keys.c.body))).scalars()]
    assert [s["student"] for s in stored] == [{"learner_id": None, "name": None, "email": None, "erased": True}]
    replay = await world.client.post(
        "", json=enrolment_body(second["offering_id"], "kao", "P1"), headers={**STUDENT, "Idempotency-Key": "k"}
    )
    assert replay.status_code == 200 and replay.json()["id"] == second["id"]
    assert replay.json()["student"]["erased"] is True

    again = await world.client.post(f"/students/{ref}/erase", headers=ADMIN)
    assert again.status_code == 200
    assert {**again.json(), "exported_at": None} == {**body, "exported_at": None}, "erasing twice changes nothing"
    # The erased student can no longer be found by learner id.
    assert (await world.client.get("/students/me", headers=STUDENT)).json()["student_ref"] is None
    assert (await world.client.get("", headers=STUDENT)).json()["total"] == 0
    assert (await world.client.get(f"/{first['id']}", headers=STUDENT)).status_code == 404
    assert (await world.client.post(f"/{second['id']}/withdraw", headers=STUDENT)).status_code == 404


async def test_the_same_learner_enrolling_after_erasure_is_a_new_pseudonymous_student(world: World) -> None:
    offering = await world.offering("sakky")
    old = await world.enrol("kao", "P1", offering, headers=STUDENT)
    assert (await world.client.post(f"/students/{old['student_ref']}/erase", headers=COUNSELLOR)).status_code == 200
    new = await world.client.post("", json=enrolment_body(offering, "kao", "P1"), headers=STUDENT)
    assert new.status_code == 201, new.text
    assert new.json()["student_ref"] != old["student_ref"] and new.json()["id"] != old["id"]
    assert new.json()["student"] == {"learner_id": "P1", "name": "Name P1", "email": "p1@example.fi", "erased": False}
    export = (await world.client.get("/students/me", headers=STUDENT)).json()
    assert export["student_ref"] == new.json()["student_ref"]
    assert [e["id"] for e in export["enrolments"]] == [new.json()["id"]]
    # Both can be erased, and a third enrolment still works: erased rows never collide on the learner id.
    assert (await world.client.post(f"/students/{export['student_ref']}/erase", headers=ADMIN)).status_code == 200
    third = await world.client.post(
        "", json=enrolment_body(await world.offering("sakky"), "kao", "P1"), headers=STUDENT
    )
    assert third.status_code == 201
    assert await world.count(students, students.c.erased_at.is_not(None)) == 2
    assert await world.count(students) == 3


async def test_events_carry_no_personal_data(world: World) -> None:
    enrolment = await world.confirmed("kao", "Secret-Learner-7", "sakky")
    staff = bearer("provider_staff", "sakky")
    await world.client.post(f"/{enrolment['id']}/result", json={"outcome": "interrupted"}, headers=staff)
    withdrawn = await world.confirmed("kao", "Secret-Learner-7", "sakky")
    await world.client.post(f"/{withdrawn['id']}/withdraw", headers=ADMIN)
    async with world.engine.connect() as conn:
        payloads = [bytes(p).decode() for p in (await conn.execute(sa.select(outbox.c.payload))).scalars()]
    assert len(payloads) >= 5
    for payload in payloads:
        assert "Secret-Learner-7" not in payload
        assert "secret-learner-7@example.fi" not in payload
    assert all(enrolment["student_ref"] in p for p in payloads if enrolment["id"] in p)
