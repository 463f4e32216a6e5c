"""Who may do what in the enrolment service: tests/authz/matrix.csv row by row, then the rules in detail."""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from services.enrolment.tables import audit_log, enrolments, idempotency_keys
from tests.integration.test_enrolment_support import World, enrolment_body, enrolment_world
from tests.support.auth import ADMIN, bearer
from tests.support.infra import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
async def world(db_kind: str, tmp_path: Path) -> AsyncIterator[World]:
    async with enrolment_world(db_kind, tmp_path) as world:
        yield world


MATRIX = [row for row in csv.DictReader((ROOT / "tests/authz/matrix.csv").open()) if row["service"] == "enrolments"]

# The callers of the matrix, each acting for an institution of the world (the student is "L-me" at kao).
CALLERS: dict[str, dict[str, str]] = {
    "anonymous": {},
    "student": bearer("student", "kao", "L-me", subject="sub-student-me"),
    "counsellor": bearer("counsellor", "kao", subject="sub-counsellor-kao"),
    "provider_staff": bearer("provider_staff", "sakky", subject="sub-staff-sakky"),
    "finance": bearer("finance", "kao", subject="sub-finance-kao"),
    "network_admin": ADMIN,
    "operations": bearer("operations", subject="sub-ops"),
    "partner": bearer("partner", subject="sub-partner"),
}
STATUS = {"allow": {200, 201}, "forbidden": {403}, "hidden": {404}, "unauthenticated": {401}, "filtered": {200}}


def target_of(role: str, whose: str) -> tuple[str, str, str]:
    """(home institution, learner id, provider) of an enrolment that is the caller's own or someone else's."""
    learner = f"L-{uuid.uuid4().hex[:6]}"
    if role == "student":
        return ("kao", "L-me", "sakky") if whose == "own" else ("kao", learner, "sakky")  # a classmate's
    if role == "provider_staff":
        return ("kao", learner, "sakky") if whose == "own" else ("kao", learner, "tampere")
    return ("kao", learner, "sakky") if whose == "own" else ("edupoli", learner, "tampere")


async def check_row(world: World, row: dict[str, str], whose: str) -> str | None:
    """Do what the row describes as its role, on an own or other item; returns a mismatch or None."""
    role, method, path, expected = row["role"], row["method"], row["path"], row[whose]
    headers = CALLERS[role]
    home, learner, provider = target_of(role, whose)
    client = world.client
    response: httpx.Response
    if method == "POST" and path == "/":
        response = await client.post(
            "", json=enrolment_body(await world.offering(provider), home, learner), headers=headers
        )
    elif path == "/audit-log":
        response = await client.get("/audit-log", headers=headers)
    elif path == "/students/me":
        if role == "student":
            await world.enrol("kao", "L-me", await world.offering("sakky"))
        response = await client.get("/students/me", headers=headers)
        if response.status_code == 200 and response.json()["learner_id"] != "L-me":
            return f"{role} {method} {path}: the export is not the caller's own: {response.json()}"
    else:
        target = await world.confirmed(home, learner, provider)
        if path == "/":
            response = await client.get("", params={"offering_id": target["offering_id"]}, headers=headers)
            if response.status_code == 200:
                listed = {e["id"] for e in response.json()["items"]}
                if (target["id"] in listed) != (expected == "allow"):
                    return f"{role} {method} {path} ({whose}): expected {expected}, listed {sorted(listed)}"
        elif path == "/{id}":
            response = await client.get(f"/{target['id']}", headers=headers)
        elif path == "/{id}/withdraw":
            response = await client.post(f"/{target['id']}/withdraw", headers=headers)
        elif path == "/{id}/result":
            response = await client.post(f"/{target['id']}/result", json={"outcome": "passed"}, headers=headers)
        elif path == "/students/{student_ref}":
            response = await client.get(f"/students/{target['student_ref']}", headers=headers)
        elif path == "/students/{student_ref}/erase":
            response = await client.post(f"/students/{target['student_ref']}/erase", headers=headers)
        else:
            return f"the test does not know {method} {path}"
    if response.status_code not in STATUS[expected]:
        return (
            f"{role} {method} {path} ({whose}): expected {expected}, got {response.status_code} {response.text[:200]}"
        )
    if response.status_code >= 400 and response.headers["content-type"] != "application/problem+json":
        return f"{role} {method} {path} ({whose}): error is not problem+json"
    return None


async def test_every_enrolment_row_of_the_authorisation_matrix_holds(world: World) -> None:
    assert len(MATRIX) >= 72 and {r["role"] for r in MATRIX} == set(CALLERS)
    mismatches = []
    for row in MATRIX:
        for whose in ("own", "other"):
            mismatch = await check_row(world, row, whose)
            if mismatch:
                mismatches.append(mismatch)
    assert mismatches == []


async def test_a_student_sees_only_their_own_enrolments(world: World) -> None:
    offering = await world.offering("sakky")
    mine = await world.enrol("kao", "A1", offering)
    classmate = await world.enrol("kao", "A2", offering)
    a1 = bearer("student", "kao", "A1", subject="sub-a1")
    assert (await world.client.get(f"/{mine['id']}", headers=a1)).status_code == 200
    hidden = await world.client.get(f"/{classmate['id']}", headers=a1)
    missing = await world.client.get("/no-such-enrolment", headers=a1)
    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json()["detail"] == missing.json()["detail"].replace("no-such-enrolment", classmate["id"])
    listed = (await world.client.get("", headers=a1)).json()
    assert [e["id"] for e in listed["items"]] == [mine["id"]] and listed["total"] == 1
    # The same learner id at another institution is another person.
    elsewhere = bearer("student", "edupoli", "A1", subject="sub-a1-edupoli")
    assert (await world.client.get(f"/{mine['id']}", headers=elsewhere)).status_code == 404
    assert (await world.client.get("", headers=elsewhere)).json()["total"] == 0


async def test_a_student_may_enrol_only_themself_and_a_counsellor_only_their_own_students(world: World) -> None:
    offering = await world.offering("sakky")
    student = bearer("student", "kao", "A1", subject="sub-a1")
    counsellor = bearer("counsellor", "kao", subject="sub-c-kao")
    before = await world.count(enrolments)
    cases = [
        (student, enrolment_body(offering, "kao", "A2"), "only themself"),
        (student, enrolment_body(offering, "edupoli", "A1"), "only themself"),
        (counsellor, enrolment_body(offering, "edupoli", "B1"), "own institution ('kao')"),
        (bearer("provider_staff", "sakky"), enrolment_body(offering, "sakky", "P1"), "may not do this"),
        (bearer("finance", "kao"), enrolment_body(offering, "kao", "F1"), "may not do this"),
    ]
    for headers, body, phrase in cases:
        response = await world.client.post("", json=body, headers=headers)
        assert response.status_code == 403, response.text
        assert phrase in response.json()["detail"]
    assert await world.count(enrolments) == before
    assert await world.count(audit_log) == 0, "a refused request is not audited as done"
    own = await world.client.post("", json=enrolment_body(offering, "kao", "A1"), headers=student)
    theirs = await world.client.post("", json=enrolment_body(offering, "kao", "A3"), headers=counsellor)
    other = await world.client.post("/", json=enrolment_body(offering, "edupoli", "B1"), headers=ADMIN)
    assert (own.status_code, theirs.status_code, other.status_code) == (201, 201, 201)
    slash = await world.client.post("/", json=enrolment_body(offering, "edupoli", "B2"), headers=counsellor)
    assert slash.status_code == 403


async def test_counsellors_and_provider_staff_see_only_their_institutions_enrolments(world: World) -> None:
    sakky, tampere = await world.offering("sakky"), await world.offering("tampere")
    kao_sakky = await world.enrol("kao", "K1", sakky)
    kao_tampere = await world.enrol("kao", "K2", tampere)
    edupoli_sakky = await world.enrol("edupoli", "E1", sakky)
    await world.enrol("edupoli", "E2", tampere)

    async def listed(headers: dict[str, str], **params: str) -> set[str]:
        response = await world.client.get("/", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["items"])
        return {e["id"] for e in body["items"]}

    counsellor = bearer("counsellor", "kao")
    staff = bearer("provider_staff", "sakky")
    assert await listed(counsellor) == {kao_sakky["id"], kao_tampere["id"]}
    assert await listed(counsellor, home_institution_id="edupoli") == set()
    assert await listed(counsellor, offering_id=sakky) == {kao_sakky["id"]}
    assert await listed(staff) == {kao_sakky["id"], edupoli_sakky["id"]}
    assert await listed(staff, offering_id=tampere) == set()
    assert await listed(staff, home_institution_id="edupoli") == {edupoli_sakky["id"]}
    assert len(await listed(ADMIN)) == 4
    # Provider staff see their participants' contact details; others' enrolments are simply not there.
    seen = await world.client.get(f"/{edupoli_sakky['id']}", headers=staff)
    assert seen.status_code == 200 and seen.json()["student"]["email"] == "e1@example.fi"
    assert (await world.client.get(f"/{kao_tampere['id']}", headers=staff)).status_code == 404
    assert (await world.client.get(f"/{edupoli_sakky['id']}", headers=counsellor)).status_code == 404
    for role in ("finance", "operations", "partner"):
        refused = await world.client.get("", headers=bearer(role, "kao" if role == "finance" else None))
        assert refused.status_code == 403


async def test_withdrawing_and_recording_results_follow_who_may_change_what(world: World) -> None:
    student = bearer("student", "kao", "W1", subject="sub-w1")
    counsellor = bearer("counsellor", "kao", subject="sub-c")
    staff = bearer("provider_staff", "sakky", subject="sub-s")
    other_staff = bearer("provider_staff", "tampere", subject="sub-t")
    other_counsellor = bearer("counsellor", "edupoli", subject="sub-ce")

    first = await world.confirmed("kao", "W1", "sakky")
    assert (await world.client.post(f"/{first['id']}/withdraw", headers=staff)).status_code == 403
    assert (await world.client.post(f"/{first['id']}/withdraw", headers=other_staff)).status_code == 404
    assert (await world.client.post(f"/{first['id']}/withdraw", headers=other_counsellor)).status_code == 404
    assert (await world.client.get(f"/{first['id']}", headers=ADMIN)).json()["status"] == "confirmed"
    withdrawn = await world.client.post(f"/{first['id']}/withdraw", json={"by": "counsellor"}, headers=student)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"

    second = await world.confirmed("kao", "W1", "sakky")
    assert (await world.client.post(f"/{second['id']}/withdraw", headers=counsellor)).status_code == 200

    third = await world.confirmed("kao", "W1", "sakky")
    for headers in (student, counsellor):
        refused = await world.client.post(f"/{third['id']}/result", json={"outcome": "passed"}, headers=headers)
        assert refused.status_code == 403 and "providing institution" in refused.json()["detail"]
    hidden = await world.client.post(f"/{third['id']}/result", json={"outcome": "passed"}, headers=other_staff)
    assert hidden.status_code == 404
    assert (await world.client.get(f"/{third['id']}", headers=ADMIN)).json()["status"] == "confirmed"
    passed = await world.client.post(f"/{third['id']}/result", json={"outcome": "passed", "grade": "9"}, headers=staff)
    assert passed.status_code == 200 and passed.json()["grade"] == "9"

    async with world.engine.connect() as conn:
        by = dict(
            (
                await conn.execute(
                    sa.select(enrolments.c.id, enrolments.c.withdrawn_by).where(enrolments.c.withdrawn_by.is_not(None))
                )
            ).all()
        )
    assert by == {first["id"]: "student", second["id"]: "counsellor"}, "who withdrew comes from the token"


async def test_anonymous_and_invalid_tokens_get_401_and_change_nothing(world: World) -> None:
    offering = await world.offering("sakky")
    enrolment = await world.confirmed("kao", "X1", "sakky")
    before = await world.count(enrolments)
    bad_tokens: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {bearer('network_admin', ttl_s=-3600)['Authorization'].split()[1]}"},
    ]
    for headers in bad_tokens:
        for method, path, body in [
            ("POST", "", enrolment_body(offering, "kao", "X2")),
            ("POST", "/", enrolment_body(offering, "kao", "X2")),
            ("GET", "", None),
            ("GET", f"/{enrolment['id']}", None),
            ("POST", f"/{enrolment['id']}/withdraw", None),
            ("POST", f"/{enrolment['id']}/result", {"outcome": "passed"}),
            ("GET", "/students/me", None),
            ("GET", f"/students/{enrolment['student_ref']}", None),
            ("POST", f"/students/{enrolment['student_ref']}/erase", None),
            ("GET", "/audit-log", None),
        ]:
            response = await world.client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert await world.count(enrolments) == before
    assert (await world.client.get(f"/{enrolment['id']}", headers=ADMIN)).json()["status"] == "confirmed"


async def test_idempotency_keys_belong_to_the_caller_who_sent_them(world: World) -> None:
    offering = await world.offering("sakky")
    a = bearer("counsellor", "kao", subject="sub-counsellor-a")
    b = bearer("counsellor", "kao", subject="sub-counsellor-b")
    key = {"Idempotency-Key": "same-key"}
    first = await world.client.post("", json=enrolment_body(offering, "kao", "I1"), headers={**a, **key})
    replay = await world.client.post("", json=enrolment_body(offering, "kao", "I1"), headers={**a, **key})
    reused = await world.client.post("", json=enrolment_body(offering, "kao", "I2"), headers={**a, **key})
    # The same key from another caller is another key: b's request runs, it neither replays a's answer nor
    # collides with a's body.
    other = await world.client.post("", json=enrolment_body(offering, "kao", "I2"), headers={**b, **key})
    assert (first.status_code, replay.status_code, reused.status_code, other.status_code) == (201, 200, 409, 201)
    assert replay.json() == first.json() and other.json()["id"] != first.json()["id"]
    assert other.json()["student"]["learner_id"] == "I2"
    assert await world.count(idempotency_keys) == 2
    assert await world.count(enrolments) == 2


async def test_every_change_is_audited_with_the_actor_and_no_personal_data(world: World) -> None:
    offering = await world.offering("sakky")
    student = bearer("student", "kao", "AUD1", subject="oidc|7f3a")
    staff = bearer("provider_staff", "sakky", subject="oidc|staff")
    counsellor = bearer("counsellor", "kao", subject="oidc|couns")
    requested = await world.enrol("kao", "AUD1", offering, headers=student)
    again = await world.enrol("kao", "AUD1", offering, headers=student)
    assert again["id"] == requested["id"]
    await world.confirm(requested)
    assert (
        await world.client.post(f"/{requested['id']}/result", json={"outcome": "failed"}, headers=staff)
    ).status_code == 200
    second = await world.enrol("kao", "AUD1", await world.offering("sakky"), headers=student)
    assert (await world.client.post(f"/{second['id']}/withdraw", headers=student)).status_code == 200
    erase = await world.client.post(f"/students/{requested['student_ref']}/erase", headers=counsellor)
    assert erase.status_code == 200
    conflict = await world.client.post(f"/{second['id']}/withdraw", headers=ADMIN)
    assert conflict.status_code == 409, "withdrawing twice is refused, and leaves no audit row"

    response = await world.client.get("/audit-log", params={"page_size": 100}, headers=ADMIN)
    assert response.status_code == 200
    rows = sorted(response.json()["items"], key=lambda r: r["at"])
    assert [(r["action"], r["target_id"], r["actor"], r["actor_role"], r["actor_institution_id"]) for r in rows] == [
        ("enrolment.request", requested["id"], "oidc|7f3a", "student", "kao"),
        ("enrolment.request", requested["id"], "oidc|7f3a", "student", "kao"),
        ("enrolment.result", requested["id"], "oidc|staff", "provider_staff", "sakky"),
        ("enrolment.request", second["id"], "oidc|7f3a", "student", "kao"),
        ("enrolment.withdraw", second["id"], "oidc|7f3a", "student", "kao"),
        ("student.erase", requested["student_ref"], "oidc|couns", "counsellor", "kao"),
    ]
    text = str(rows).lower()
    for personal in ("aud1", "name ", "@example.fi"):
        assert personal not in text
    only_erasures = await world.client.get("/audit-log", params={"action": "student.erase"}, headers=ADMIN)
    assert only_erasures.json()["total"] == 1
    assert (await world.client.get("/audit-log", headers=counsellor)).status_code == 403
