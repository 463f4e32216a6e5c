"""Catalogue access on both databases: the public catalogue without a token, the authorisation matrix
(tests/authz/matrix.csv) route by route and role by role, tenant isolation of drafts, the audit log,
imports limited to the importer's own institution, and Idempotency-Keys that belong to their caller."""

from __future__ import annotations

import csv
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalogue.tables import audit_log, courses, offerings
from tests.integration.test_catalogue_import import COLUMNS, csv_file, row
from tests.integration.test_catalogue_service import (
    catalogue_client,
    course,
    institution,
    offering,
    plan,
    row_counts,
    staged,
)
from tests.support.auth import ADMIN, bearer
from tests.support.infra import ROOT, migrated_engine

pytestmark = pytest.mark.integration
MATRIX = ROOT / "tests" / "authz" / "matrix.csv"
OWN, OTHER = "sakky", "kao"
A_STAFF = bearer("provider_staff", OWN, subject="staff-a")
B_STAFF = bearer("provider_staff", OTHER, subject="staff-b")
GUIDELINE = {"price_per_credit": "41.00", "external_surcharge_percent": "20"}


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine("catalogue", db_kind, tmp_path, "catalogue_auth") as engine:
        yield engine


@pytest.fixture
async def admin(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A network admin's client, with two providers registered (sakky and kao)."""
    async with catalogue_client(engine) as client:
        await institution(client, OWN)
        await institution(client, OTHER, region="Kainuu")
        yield client


@pytest.fixture
async def anyone(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a token; tests pass a caller's `headers=` per request where they need one."""
    async with catalogue_client(engine, headers={}) as client:
        yield client


async def audit_rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """(action, target, actor, role, institution) of every audit row, oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                audit_log.c.action,
                audit_log.c.target_id,
                audit_log.c.actor,
                audit_log.c.actor_role,
                audit_log.c.actor_institution_id,
            ).order_by(audit_log.c.at, audit_log.c.id)
        )
        return [tuple(r) for r in rows]


def assert_problem(response: httpx.Response, status: int, phrase: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert phrase in response.json()["detail"]


# --- the public catalogue ---------------------------------------------------------------------------------


async def test_anonymous_callers_read_everything_published_and_no_draft(
    admin: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    assert (await admin.put("/pricing-guidelines/2026-2027", json=GUIDELINE)).status_code == 200
    c = await course(admin, OWN, "MAA2")
    published = await offering(admin, c["id"], publish=True)
    draft = await offering(admin, c["id"], start_in_days=45)
    cancelled = await offering(admin, c["id"], start_in_days=50)
    assert (await admin.post(f"/offerings/{cancelled['id']}/cancel")).status_code == 200

    institutions = await anyone.get("/institutions")
    assert [i["id"] for i in institutions.json()["items"]] == [OTHER, OWN]
    assert (await anyone.get(f"/institutions/{OWN}")).json()["region"] == "Pohjois-Savo"
    assert (await anyone.get("/pricing-guidelines/2026-2027")).json()["price_per_credit"] == "41.00"
    assert (await anyone.get("/courses")).json()["total"] == 1
    assert (await anyone.get(f"/courses/{c['id']}")).json()["code"] == "MAA2"
    shown = await anyone.get(f"/offerings/{published['id']}")
    assert shown.status_code == 200 and shown.json()["status"] == "published"
    assert (await anyone.get(f"/offerings/{cancelled['id']}")).json()["status"] == "cancelled"

    hidden = await anyone.get(f"/offerings/{draft['id']}")
    assert_problem(hidden, 404, "does not exist")
    unknown = (await anyone.get("/offerings/no-such-id")).json()["detail"]
    assert hidden.json()["detail"] == unknown.replace("no-such-id", draft["id"])  # as if there were none
    found = (await anyone.get("/offerings")).json()
    assert {i["id"] for i in found["items"]} == {published["id"], cancelled["id"]} and found["total"] == 2
    assert found["facets"]["provider"] == [{"value": OWN, "count": 2}]
    assert (await anyone.get("/offerings", params={"status": "draft"})).json()["total"] == 0
    assert (await admin.get("/offerings")).json()["total"] == 3  # the network admin sees the draft too


async def test_a_token_that_does_not_verify_is_refused_even_on_a_public_read(anyone: httpx.AsyncClient) -> None:
    response = await anyone.get("/offerings", headers={"Authorization": "Bearer not-a-jwt"})
    assert_problem(response, 401, "not a well-formed JWT")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await anyone.get("/institutions", headers={"Authorization": "Basic dXNlcjpwdw=="})).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/institutions", {"id": "new", "names": {"fi": "Uusi"}, "kind": "vocational", "member": True}),
        ("PATCH", f"/institutions/{OWN}", {"region": "Kainuu"}),
        ("PUT", "/pricing-guidelines/2026-2027", GUIDELINE),
        ("POST", "/courses", {"provider_id": OWN, "code": "X"}),
        ("PATCH", "/courses/c", {"subject": "physics"}),
        ("POST", "/offerings", {"course_id": "c"}),
        ("PATCH", "/offerings/o", {"max_participants": 3}),
        ("POST", "/offerings/o/publish", None),
        ("POST", "/offerings/o/cancel", None),
        ("POST", "/offerings/o/close", None),
        ("POST", "/offerings/o/complete", None),
        ("POST", "/imports", None),
        ("GET", "/audit-log", None),
    ],
)
async def test_anonymous_changes_are_401_and_change_nothing(
    engine: AsyncEngine,
    admin: httpx.AsyncClient,
    anyone: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    before, audited = await row_counts(engine), await audit_rows(engine)
    response = await anyone.request(method, path, json=body)
    assert_problem(response, 401, "bearer token")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert await row_counts(engine) == before
    assert await audit_rows(engine) == audited


# --- the matrix, row by row -----------------------------------------------------------------------------------

EXPECTED = {"allow": {200, 201}, "filtered": {200}, "forbidden": {403}, "hidden": {404}, "unauthenticated": {401}}


def caller_headers(role: str) -> dict[str, str]:
    if role == "anonymous":
        return {}
    if role == "student":
        return bearer(role, OWN, learner_id="L-1")
    if role in ("counsellor", "provider_staff", "finance"):
        return bearer(role, OWN)
    return bearer(role)


class Fixtures:
    """Fresh resources of an institution for each request that changes one (a publish needs a draft, ...)."""

    def __init__(self, admin: httpx.AsyncClient) -> None:
        self.admin = admin
        self.serial = itertools.count(1)
        self.courses: dict[str, dict[str, Any]] = {}
        self.published: dict[str, str] = {}

    async def course(self, provider: str) -> dict[str, Any]:
        if provider not in self.courses:
            self.courses[provider] = await course(self.admin, provider, f"MATRIX-{provider}")
        return self.courses[provider]

    async def offering(self, provider: str, *, publish: bool) -> str:
        made = await offering(self.admin, (await self.course(provider))["id"], publish=publish)
        return str(made["id"])

    async def request(self, method: str, path: str, provider: str) -> tuple[str, dict[str, Any]]:
        """The URL and request arguments for a matrix row acting on `provider`'s resources."""
        n = next(self.serial)
        if path == "/institutions" and method == "POST":
            return "/institutions", {
                "json": {"id": f"new-{n}", "names": {"fi": "Uusi"}, "kind": "other", "member": True}
            }
        if path == "/institutions/{id}":
            return f"/institutions/{provider}", {"json": {"municipality": f"Kunta {n}"}} if method == "PATCH" else {}
        if path == "/pricing-guidelines/{academic_year}":
            body = {**GUIDELINE, "free_cancellation_days": n % 300}
            return "/pricing-guidelines/2026-2027", {"json": body} if method == "PUT" else {}
        if path == "/courses" and method == "POST":
            body = {
                "provider_id": provider,
                "code": f"NEW-{n}",
                "titles": {"fi": "Uusi"},
                "subject": "physics",
                "level": "upper_secondary",
                "credits": "1.0",
                "languages": ["fi"],
                "delivery_mode": "blended",
            }
            return "/courses", {"json": body}
        if path == "/courses/{id}":
            url = f"/courses/{(await self.course(provider))['id']}"
            return url, {"json": {"teacher_contact": f"opettaja{n}@example.fi"}} if method == "PATCH" else {}
        if path == "/offerings" and method == "POST":
            return "/offerings", {"json": {"course_id": (await self.course(provider))["id"], **plan()}}
        if path == "/offerings/{id}":
            if provider not in self.published:
                self.published[provider] = await self.offering(provider, publish=True)
            url = f"/offerings/{self.published[provider]}"
            return url, {"json": {"max_participants": 10 + n % 50}} if method == "PATCH" else {}
        if path.startswith("/offerings/{id}/"):
            action = path.rsplit("/", 1)[1]
            return f"/offerings/{await self.offering(provider, publish=action != 'publish')}/{action}", {}
        if path == "/imports":
            data = csv_file([row(f"imp-{n}", code=f"IMP-{n}")])
            return "/imports", {
                "params": {"provider_id": provider},
                "content": data,
                "headers": {"content-type": "text/csv"},
            }
        return path, {}


def matrix_rows() -> list[dict[str, str]]:
    with MATRIX.open(newline="") as f:
        return [r for r in csv.DictReader(f) if r["service"] == "catalogue"]


async def test_every_catalogue_route_answers_each_role_as_the_matrix_says(
    engine: AsyncEngine, admin: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    rows = matrix_rows()
    assert len(rows) >= 150 and {r["role"] for r in rows} >= {"anonymous", "provider_staff", "network_admin"}
    fixtures = Fixtures(admin)
    mismatches = []
    for spec in rows:
        for column, provider in (("own", OWN), ("other", OTHER)):
            url, kwargs = await fixtures.request(spec["method"], spec["path"], provider)
            headers = {**kwargs.pop("headers", {}), **caller_headers(spec["role"])}
            response = await anyone.request(spec["method"], url, headers=headers, **kwargs)
            if response.status_code not in EXPECTED[spec[column]]:
                mismatches.append(
                    f"{spec['method']} {spec['path']} as {spec['role']} ({column}): expected {spec[column]}, "
                    f"got {response.status_code} {response.text[:200]}"
                )
            elif response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json"
    assert mismatches == []


# --- tenant isolation ------------------------------------------------------------------------------------------


async def test_provider_staff_change_only_their_own_institutions_offerings(
    engine: AsyncEngine, admin: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    theirs = await course(admin, OTHER, "AI1")
    published = await offering(admin, theirs["id"], publish=True)
    draft = await offering(admin, theirs["id"], start_in_days=40)
    events_before, audit_before = await staged(engine), await audit_rows(engine)

    patched = await anyone.patch(f"/offerings/{published['id']}", json={"max_participants": 2}, headers=A_STAFF)
    assert_problem(patched, 403, "You act for 'sakky'; only the provider staff of 'kao' or a network admin may change")
    assert patched.json()["provider_id"] == OTHER
    for action in ("publish", "cancel", "close", "complete"):
        target = draft if action == "publish" else published
        assert_problem(await anyone.post(f"/offerings/{target['id']}/{action}", headers=A_STAFF), 403, "'kao'")
    assert_problem(await anyone.patch(f"/courses/{theirs['id']}", json={"level": "x"}, headers=A_STAFF), 403)
    new_offering = {"course_id": theirs["id"], **plan()}
    assert_problem(await anyone.post("/offerings", json=new_offering, headers=A_STAFF), 403, "'kao'")
    new_course = {**{k: theirs[k] for k in ("titles", "subject", "level", "credits", "languages", "delivery_mode")}}
    stolen = await anyone.post("/courses", json={**new_course, "provider_id": OTHER, "code": "X1"}, headers=A_STAFF)
    assert_problem(stolen, 403, "'kao'")
    unknown = await anyone.post("/offerings/no-such-id/publish", headers=A_STAFF)
    assert_problem(unknown, 404, "does not exist")

    assert (await admin.get(f"/offerings/{published['id']}")).json()["max_participants"] == 20
    assert (await admin.get(f"/offerings/{draft['id']}")).json()["status"] == "draft"
    assert await staged(engine) == events_before and await audit_rows(engine) == audit_before

    # ... while kao's own staff may, and a counsellor of kao may not (wrong role)
    counsellor = bearer("counsellor", OTHER)
    assert_problem(await anyone.post(f"/offerings/{draft['id']}/publish", headers=counsellor), 403, "provider_staff")
    mine = await anyone.post(f"/offerings/{draft['id']}/publish", headers=B_STAFF)
    assert mine.status_code == 200 and mine.json()["status"] == "published"
    changed = await anyone.patch(f"/offerings/{published['id']}", json={"max_participants": 2}, headers=B_STAFF)
    assert changed.status_code == 200 and changed.json()["max_participants"] == 2


async def test_a_draft_is_seen_only_by_its_providers_staff_and_network_admins(
    admin: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    ours, theirs = await course(admin, OWN, "MAA2"), await course(admin, OTHER, "AI1")
    our_draft = await offering(admin, ours["id"])
    their_draft = await offering(admin, theirs["id"])
    their_published = await offering(admin, theirs["id"], publish=True)

    assert_problem(await anyone.get(f"/offerings/{their_draft['id']}", headers=A_STAFF), 404, "does not exist")
    assert (await anyone.get(f"/offerings/{our_draft['id']}", headers=A_STAFF)).json()["status"] == "draft"
    assert (await anyone.get(f"/offerings/{their_draft['id']}", headers=B_STAFF)).status_code == 200
    assert (await anyone.get(f"/offerings/{their_draft['id']}", headers=ADMIN)).status_code == 200
    for other_role in (bearer("counsellor", OTHER), bearer("student", OTHER, learner_id="L-9"), bearer("partner")):
        assert (await anyone.get(f"/offerings/{their_draft['id']}", headers=other_role)).status_code == 404

    async def seen(headers: dict[str, str], **params: Any) -> set[str]:
        response = await anyone.get("/offerings", params={"page_size": 50, **params}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["items"])
        return {item["id"] for item in body["items"]}

    assert await seen(A_STAFF) == {our_draft["id"], their_published["id"]}
    assert await seen(A_STAFF, status="draft") == {our_draft["id"]}
    assert await seen(A_STAFF, provider=OTHER) == {their_published["id"]}
    assert await seen(B_STAFF) == {their_draft["id"], their_published["id"]}
    assert await seen({}) == {their_published["id"]}
    assert await seen(ADMIN) == {our_draft["id"], their_draft["id"], their_published["id"]}
    facets = (await anyone.get("/offerings", headers=A_STAFF)).json()["facets"]["provider"]
    assert facets == [{"value": OTHER, "count": 1}, {"value": OWN, "count": 1}]


# --- the audit log -----------------------------------------------------------------------------------------------


async def test_changes_are_audited_with_their_actor_and_only_network_admins_read_the_log(
    engine: AsyncEngine, admin: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    ours = await course(admin, OWN, "MAA2")
    created = await anyone.post("/offerings", json={"course_id": ours["id"], **plan()}, headers=A_STAFF)
    assert created.status_code == 201, created.text
    offering_id = created.json()["id"]
    assert (await anyone.post(f"/offerings/{offering_id}/publish", headers=A_STAFF)).status_code == 200
    assert (await anyone.post(f"/offerings/{offering_id}/publish", headers=A_STAFF)).status_code == 409  # no row

    log = await anyone.get("/audit-log", params={"target_id": offering_id}, headers=ADMIN)
    assert log.status_code == 200, log.text
    entries = [
        (e["action"], e["target_id"], e["actor"], e["actor_role"], e["actor_institution_id"])
        for e in log.json()["items"]
    ]
    assert entries == [  # newest first
        ("offering.publish", offering_id, "staff-a", "provider_staff", OWN),
        ("offering.create", offering_id, "staff-a", "provider_staff", OWN),
    ]
    assert log.json()["total"] == 2
    by_action = await anyone.get("/audit-log", params={"action": "institution.create"}, headers=ADMIN)
    assert sorted(e["target_id"] for e in by_action.json()["items"]) == [OTHER, OWN]
    assert {e["actor"] for e in by_action.json()["items"]} == {"test-admin"}
    assert [r[0] for r in await audit_rows(engine)] == [
        "institution.create",
        "institution.create",
        "course.create",
        "offering.create",
        "offering.publish",
    ]

    assert_problem(await anyone.get("/audit-log", headers=A_STAFF), 403, "network_admin")
    assert_problem(await anyone.get("/audit-log", headers=bearer("operations")), 403)
    assert_problem(await anyone.get("/audit-log"), 401)


async def test_every_kind_of_change_leaves_its_audit_row(engine: AsyncEngine, admin: httpx.AsyncClient) -> None:
    await admin.put("/pricing-guidelines/2026-2027", json=GUIDELINE)
    await admin.patch(f"/institutions/{OWN}", json={"municipality": "Kuopio"})
    c = await course(admin, OWN, "MAA2")
    await admin.patch(f"/courses/{c['id']}", json={"level": "vocational"})
    o = await offering(admin, c["id"], publish=True)
    await admin.patch(f"/offerings/{o['id']}", json={"max_participants": 5})
    await admin.post(f"/offerings/{o['id']}/close")
    await admin.post(f"/offerings/{o['id']}/complete")
    d = await offering(admin, c["id"])
    await admin.post(f"/offerings/{d['id']}/cancel")
    imported = await admin.post(
        "/imports", params={"provider_id": OTHER}, content=csv_file([row("e-1")]), headers={"content-type": "text/csv"}
    )
    assert imported.status_code == 200 and imported.json()["created"] == 1
    dry = await admin.post(
        "/imports",
        params={"provider_id": OTHER, "dry_run": "true"},
        content=csv_file([row("e-2")]),
        headers={"content-type": "text/csv"},
    )
    assert dry.status_code == 200  # a dry run changes nothing and is not audited
    assert [(action, target) for action, target, *_ in await audit_rows(engine)] == [
        ("institution.create", OWN),
        ("institution.create", OTHER),
        ("pricing_guideline.set", "2026-2027"),
        ("institution.update", OWN),
        ("course.create", c["id"]),
        ("course.update", c["id"]),
        ("offering.create", o["id"]),
        ("offering.publish", o["id"]),
        ("offering.update", o["id"]),
        ("offering.close", o["id"]),
        ("offering.complete", o["id"]),
        ("offering.create", d["id"]),
        ("offering.cancel", d["id"]),
        ("import.apply", OTHER),
    ]


# --- imports -------------------------------------------------------------------------------------------------------


async def test_provider_staff_import_only_their_own_rows(
    engine: AsyncEngine, admin: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    theirs = await course(admin, OTHER, "MAA2")
    their_offering = await offering(admin, theirs["id"], external_id="k-1")
    rows = [
        {**row("s-1"), "provider_id": OWN},  # line 2
        {**row("k-1", max_participants=3), "provider_id": OTHER},  # line 3: an existing offering of kao
        {**row("k-2"), "provider_id": OTHER},  # line 4
        row("s-2", code="FY1"),  # line 5: no provider: the importer's own
    ]
    data = csv_file(rows, columns=["provider_id", *COLUMNS])
    response = await anyone.post("/imports", content=data, headers={"content-type": "text/csv", **A_STAFF})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["rejected"]) == (2, 2)
    refusal = (
        "provider_id: 'kao' is another institution; the staff of 'sakky' may import only their own institution's "
        "courses and offerings"
    )
    assert [(r["line"], r["status"], r["errors"], r["offering_id"]) for r in report["rows"][1:3]] == [
        (3, "rejected", [refusal], None),  # kao's offering id is not told
        (4, "rejected", [refusal], None),
    ]
    assert [r["status"] for r in (report["rows"][0], report["rows"][3])] == ["created", "created"]
    async with engine.connect() as conn:
        providers = (
            await conn.execute(sa.select(offerings.c.provider_id, sa.func.count()).group_by(offerings.c.provider_id))
        ).all()
        kao_courses = (await conn.execute(sa.select(courses.c.code).where(courses.c.provider_id == OTHER))).scalars()
        assert sorted(providers) == [(OTHER, 1), (OWN, 2)] and list(kao_courses) == ["MAA2"]
    assert (await admin.get(f"/offerings/{their_offering['id']}")).json()["max_participants"] == 20

    for_them = await anyone.post(
        "/imports",
        params={"provider_id": OTHER},
        content=csv_file([row("k-3")]),
        headers={"content-type": "text/csv", **A_STAFF},
    )
    assert_problem(for_them, 403, "'kao'")
    counsellor = await anyone.post(
        "/imports", content=data, headers={"content-type": "text/csv", **bearer("counsellor", OWN)}
    )
    assert_problem(counsellor, 403, "provider_staff")
    [entry] = [r for r in await audit_rows(engine) if r[0] == "import.apply"]
    assert entry == ("import.apply", OWN, "staff-a", "provider_staff", OWN)


# --- Idempotency-Keys belong to their caller -------------------------------------------------------------------------


async def test_an_idempotency_key_replays_for_its_caller_only(
    engine: AsyncEngine, admin: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    ours = await course(admin, OWN, "MAA2")
    body = {"course_id": ours["id"], **plan()}
    first = await anyone.post("/offerings", json=body, headers={**A_STAFF, "Idempotency-Key": "k1"})
    again = await anyone.post("/offerings", json=body, headers={**A_STAFF, "Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    colleague = bearer("provider_staff", OWN, subject="staff-a2")
    theirs = await anyone.post("/offerings", json=body, headers={**colleague, "Idempotency-Key": "k1"})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    different = await anyone.post(
        "/offerings", json={**body, "max_participants": 9}, headers={**A_STAFF, "Idempotency-Key": "k1"}
    )
    assert_problem(different, 409, "different request body")
    async with engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(offerings))).scalar_one()
    assert count == 2
    creates = [r for r in await audit_rows(engine) if r[0] == "offering.create"]
    assert [(r[1], r[2]) for r in creates] == [(first.json()["id"], "staff-a"), (theirs.json()["id"], "staff-a2")]

    institution_body = {"id": "uusi", "names": {"fi": "Uusi"}, "kind": "other", "member": False}
    made = await admin.post("/institutions", json=institution_body, headers={"Idempotency-Key": "i1"})
    replay = await admin.post("/institutions", json=institution_body, headers={"Idempotency-Key": "i1"})
    assert (made.status_code, replay.status_code, replay.json()) == (201, 200, made.json())
    other_admin = bearer("network_admin", subject="other-admin")
    clash = await anyone.post("/institutions", json=institution_body, headers={**other_admin, "Idempotency-Key": "i1"})
    assert_problem(clash, 409, "already registered")  # ran anew for this caller: not a replay of the first


async def test_an_import_key_replays_for_its_caller_only(
    engine: AsyncEngine, admin: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    data = csv_file([row("s-1")])

    async def send(caller: dict[str, str]) -> httpx.Response:
        headers = {"content-type": "text/csv", "Idempotency-Key": "imp", **caller}
        return await anyone.post("/imports", content=data, headers=headers)

    first, again = await send(A_STAFF), await send(A_STAFF)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and first.json()["created"] == 1
    colleague = bearer("provider_staff", OWN, subject="staff-a2")
    theirs = await send(colleague)
    assert theirs.status_code == 200
    assert (theirs.json()["created"], theirs.json()["unchanged"]) == (0, 1)  # really run: the offering exists now
    assert len([r for r in await audit_rows(engine) if r[0] == "import.apply"]) == 2


# --- the documented contract ------------------------------------------------------------------------------------------


async def test_openapi_shows_which_routes_need_a_token_and_what_they_may_answer(anyone: httpx.AsyncClient) -> None:
    spec = (await anyone.get("/openapi.json")).json()
    paths = spec["paths"]
    prefix = "/api/catalogue"
    for path, method in [
        ("/institutions", "post"),
        ("/institutions/{institution_id}", "patch"),
        ("/pricing-guidelines/{academic_year}", "put"),
        ("/courses", "post"),
        ("/courses/{course_id}", "patch"),
        ("/offerings", "post"),
        ("/offerings/{offering_id}", "patch"),
        ("/offerings/{offering_id}/publish", "post"),
        ("/offerings/{offering_id}/cancel", "post"),
        ("/imports", "post"),
    ]:
        operation = paths[prefix + path][method]
        assert {"401", "403"} <= operation["responses"].keys(), (path, method)
        assert operation["security"] == [{"HTTPBearer": []}], (path, method)
        if "{" in path and "pricing" not in path:
            assert "404" in operation["responses"], (path, method)
    assert "security" not in paths[prefix + "/institutions"]["get"]
    assert paths[prefix + "/offerings"]["get"]["security"] == [{}, {"HTTPBearer": []}]  # a token is optional
    assert "404" in paths[prefix + "/offerings/{offering_id}"]["get"]["responses"]
    assert "get" in paths[prefix + "/audit-log"]
