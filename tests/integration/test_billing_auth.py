"""Billing behind bearer tokens: who sees which commitments, invoices and policies, who decides and
runs invoices, and the audit rows every change leaves. `tests/authz/matrix.csv` is the spec.

The cast: kao (a school, manual mode: its commitments wait for a decision) pays sakky (a provider);
jao is another school with its own commitment to sakky; gradia is another provider kao pays.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing import domain, handlers
from services.billing.tables import audit_log, commitments, invoices
from tests.integration.test_billing_support import World, billing_client, billing_engine
from tests.support.auth import ADMIN, bearer
from tests.support.infra import ROOT

pytestmark = pytest.mark.integration
SEPT, OCT = date(2026, 9, 1), date(2026, 10, 1)
RUN = {"period_start": "2026-09-01", "period_end": "2026-09-30"}


def staff(role: str, institution: str) -> dict[str, str]:
    return bearer(role, institution, subject=f"{role}@{institution}")


KAO_COUNSELLOR = staff("counsellor", "kao")
KAO_FINANCE = staff("finance", "kao")
SAKKY_FINANCE = staff("finance", "sakky")
SAKKY_COUNSELLOR = staff("counsellor", "sakky")
GRADIA_FINANCE = staff("finance", "gradia")
JAO_FINANCE = staff("finance", "jao")
JAO_COUNSELLOR = staff("counsellor", "jao")


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with billing_engine(db_kind, tmp_path) as engine:
        yield engine


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    world = World(engine)
    for slug in ("sakky", "gradia", "kao", "jao"):
        await world.institution(slug, business_id="1234567-8")
    async with engine.begin() as conn:
        for payer in ("kao", "jao"):
            await handlers.set_policy(conn, payer, domain.Mode.MANUAL, None)
    return world


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """No token unless a request brings one."""
    async with billing_client(engine, today=lambda: OCT, headers=None) as client:
        yield client


async def pending(world: World, provider: str, payer: str) -> str:
    """A commitment waiting for the payer's decision; returns its id."""
    row = await world.commitment(await world.request(provider, payer))
    assert row.status == "pending"
    return str(row.id)


async def charged(world: World, provider: str, payer: str) -> str:
    """An accepted commitment whose result was recorded in September: chargeable in full. Returns its id."""
    enrolment = await world.request(provider, payer, when=SEPT)
    await world.accept(enrolment)
    await world.complete(enrolment, "passed", "100", when=SEPT)
    return str((await world.commitment(enrolment)).id)


async def status_of(engine: AsyncEngine, commitment_id: str) -> str:
    async with engine.connect() as conn:
        query = sa.select(commitments.c.status).where(commitments.c.id == commitment_id)
        return str((await conn.execute(query)).scalar_one())


async def audit_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit_log).order_by(audit_log.c.at, audit_log.c.id))).all()
    return [dict(r._mapping) for r in rows]


def decided_events(events: list[dict[str, Any]]) -> list[str]:
    return [e["subject"] for e in events if e["type"].endswith(("commitment.accepted.v1", "commitment.rejected.v1"))]


def ids_of(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


# --- commitments: seeing them -----------------------------------------------------------------------


async def test_commitments_are_seen_by_payer_and_payee_staff_and_listed_only_to_them(
    world: World, client: httpx.AsyncClient
) -> None:
    kao_to_sakky = await pending(world, "sakky", "kao")
    jao_to_sakky = await pending(world, "sakky", "jao")
    kao_to_gradia = await pending(world, "gradia", "kao")

    for headers in (KAO_COUNSELLOR, KAO_FINANCE, SAKKY_FINANCE, SAKKY_COUNSELLOR, ADMIN):
        response = await client.get(f"/commitments/{kao_to_sakky}", headers=headers)
        assert response.status_code == 200 and response.json()["payer_id"] == "kao"
    for headers in (JAO_FINANCE, JAO_COUNSELLOR, GRADIA_FINANCE):
        hidden = await client.get(f"/commitments/{kao_to_sakky}", headers=headers)
        missing = await client.get("/commitments/no-such-commitment", headers=headers)
        assert_problem(hidden, 404)
        assert hidden.json()["detail"] == f"Commitment {kao_to_sakky!r} does not exist."
        assert_problem(missing, 404)  # an invisible id answers just like one that does not exist

    assert ids_of(await client.get("/commitments", headers=ADMIN)) == {kao_to_sakky, jao_to_sakky, kao_to_gradia}
    assert ids_of(await client.get("/commitments", headers=KAO_FINANCE)) == {kao_to_sakky, kao_to_gradia}
    assert ids_of(await client.get("/commitments", headers=SAKKY_FINANCE)) == {kao_to_sakky, jao_to_sakky}
    assert ids_of(await client.get("/commitments", headers=JAO_FINANCE)) == {jao_to_sakky}
    assert ids_of(await client.get("/commitments", headers=GRADIA_FINANCE)) == {kao_to_gradia}
    listed = (await client.get("/commitments", headers=JAO_COUNSELLOR)).json()
    assert listed["total"] == 1 and [c["id"] for c in listed["items"]] == [jao_to_sakky]

    # Filters naming another institution find none of its commitments, only the caller's own.
    other = await client.get("/commitments", params={"payer": "kao"}, headers=JAO_FINANCE)
    assert ids_of(other) == set() and other.json()["total"] == 0
    by_payee = await client.get("/commitments", params={"payee": "gradia"}, headers=SAKKY_FINANCE)
    assert ids_of(by_payee) == set()
    theirs_to_us = await client.get("/commitments", params={"payer": "jao"}, headers=SAKKY_FINANCE)
    assert ids_of(theirs_to_us) == {jao_to_sakky}


# --- commitments: deciding them -------------------------------------------------------------------


async def test_the_payers_counsellor_accepts_and_the_audit_log_names_them(
    world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    commitment_id = await pending(world, "sakky", "kao")
    response = await client.post(f"/commitments/{commitment_id}/accept", headers=KAO_COUNSELLOR)
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["decided_by"]) == ("accepted", "counsellor")
    assert decided_events(await world.events()) == [commitment_id]

    [row] = await audit_rows(engine)
    assert (row["action"], row["target_id"]) == ("commitment.accept", commitment_id)
    assert (row["actor"], row["actor_role"], row["actor_institution_id"]) == ("counsellor@kao", "counsellor", "kao")
    assert row["request_id"] == response.headers["x-request-id"]

    log = await client.get("/audit-log", params={"target_id": commitment_id}, headers=ADMIN)
    assert log.status_code == 200 and [e["action"] for e in log.json()["items"]] == ["commitment.accept"]
    assert_problem(await client.get("/audit-log", headers=KAO_FINANCE), 403)


async def test_the_payee_sees_a_commitment_but_cannot_decide_it(
    world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    commitment_id = await pending(world, "sakky", "kao")
    assert (await client.get(f"/commitments/{commitment_id}", headers=SAKKY_FINANCE)).status_code == 200
    for verb in ("accept", "reject"):
        for headers in (SAKKY_FINANCE, SAKKY_COUNSELLOR):
            refused = await client.post(f"/commitments/{commitment_id}/{verb}", json={}, headers=headers)
            assert_problem(refused, 403)
            assert "paying institution" in refused.json()["detail"]
        bulk = await client.post(f"/commitments/{verb}", json={"ids": [commitment_id]}, headers=SAKKY_FINANCE)
        assert_problem(bulk, 403)
        assert bulk.json()["not_payer"] == [commitment_id]
    assert await status_of(engine, commitment_id) == "pending"
    assert decided_events(await world.events()) == [] and await audit_rows(engine) == []

    rejected = await client.post(
        f"/commitments/{commitment_id}/reject", json={"reason": "no funds"}, headers=KAO_FINANCE
    )
    assert rejected.status_code == 200 and rejected.json()["decided_by"] == "finance"
    assert [(r["action"], r["actor_role"]) for r in await audit_rows(engine)] == [("commitment.reject", "finance")]


async def test_another_schools_staff_get_404_and_nothing_changes(
    world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    commitment_id = await pending(world, "sakky", "kao")
    for verb in ("accept", "reject"):
        for headers in (JAO_FINANCE, JAO_COUNSELLOR, GRADIA_FINANCE):
            assert_problem(await client.post(f"/commitments/{commitment_id}/{verb}", headers=headers), 404)
    assert await status_of(engine, commitment_id) == "pending"
    assert decided_events(await world.events()) == [] and await audit_rows(engine) == []


async def test_a_bulk_decision_naming_a_foreign_id_changes_nothing(
    world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    own = [await pending(world, "sakky", "kao") for _ in range(2)]
    foreign = await pending(world, "sakky", "jao")
    provided = await pending(world, "kao", "jao")  # kao is only the provider of this one

    for verb in ("accept", "reject"):
        hidden = await client.post(f"/commitments/{verb}", json={"ids": [*own, foreign]}, headers=KAO_COUNSELLOR)
        assert_problem(hidden, 404)
        assert foreign in hidden.json()["detail"] and hidden.json()["missing"] == [foreign]
        assert not any(i in hidden.json()["detail"] for i in own)
        payee_only = await client.post(f"/commitments/{verb}", json={"ids": [*own, provided]}, headers=KAO_FINANCE)
        assert_problem(payee_only, 403)
        assert payee_only.json()["not_payer"] == [provided]
    for commitment_id in (*own, foreign, provided):
        assert await status_of(engine, commitment_id) == "pending"
    assert decided_events(await world.events()) == [] and await audit_rows(engine) == []

    accepted = await client.post("/commitments/accept", json={"ids": own}, headers=KAO_FINANCE)
    assert accepted.status_code == 200 and [c["status"] for c in accepted.json()] == ["accepted", "accepted"]
    rows = await audit_rows(engine)
    assert sorted((r["action"], r["target_id"]) for r in rows) == sorted(("commitment.accept", i) for i in own)
    assert {r["actor"] for r in rows} == {"finance@kao"}
    # The admin decides for anyone.
    done = await client.post("/commitments/reject", json={"ids": [foreign, provided]}, headers=ADMIN)
    assert done.status_code == 200 and {c["status"] for c in done.json()} == {"rejected"}
    assert len(await audit_rows(engine)) == 4


# --- policies -------------------------------------------------------------------------------------


async def test_policies_are_read_by_the_institutions_staff_and_set_only_by_the_admin(
    world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    for headers in (KAO_COUNSELLOR, KAO_FINANCE, ADMIN):
        response = await client.get("/policies/kao", headers=headers)
        assert response.status_code == 200 and response.json()["mode"] == "manual"
    for headers in (JAO_FINANCE, SAKKY_COUNSELLOR):
        assert_problem(await client.get("/policies/kao", headers=headers), 404)

    body = {"mode": "automatic", "yearly_budget": "1000.00"}
    for headers in (KAO_FINANCE, KAO_COUNSELLOR, JAO_FINANCE):
        assert_problem(await client.put("/policies/kao", json=body, headers=headers), 403)
    assert (await client.get("/policies/kao", headers=ADMIN)).json()["mode"] == "manual"
    assert await audit_rows(engine) == []

    put = await client.put("/policies/kao", json=body, headers=ADMIN)
    assert put.status_code == 200 and put.json()["yearly_budget"] == "1000.00"
    [row] = await audit_rows(engine)
    assert (row["action"], row["target_id"], row["actor"]) == ("policy.set", "kao", "test-admin")
    # A refused policy leaves no audit row: the row lives and dies with the change.
    bad = await client.put("/policies/kao", json={"mode": "manual", "yearly_budget": "5.00"}, headers=ADMIN)
    assert bad.status_code == 422 and len(await audit_rows(engine)) == 1


# --- invoices -------------------------------------------------------------------------------------


async def invoice_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(invoices))).scalar_one())


async def test_a_finance_invoice_run_covers_only_what_is_owed_to_their_institution(
    world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await charged(world, "sakky", "kao")
    await charged(world, "sakky", "jao")
    to_gradia = await charged(world, "gradia", "kao")

    refused = await client.post("/invoice-runs", json={**RUN, "payee_id": "gradia"}, headers=SAKKY_FINANCE)
    assert_problem(refused, 403)
    for headers in (KAO_COUNSELLOR, SAKKY_COUNSELLOR):
        assert_problem(await client.post("/invoice-runs", json=RUN, headers=headers), 403)
    assert await invoice_count(engine) == 0 and await audit_rows(engine) == []

    response = await client.post("/invoice-runs", json=RUN, headers={**SAKKY_FINANCE, "Idempotency-Key": "sept"})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["payee_id"] == "sakky"
    assert sorted((d["payee_id"], d["payer_id"]) for d in run["invoices"]) == [("sakky", "jao"), ("sakky", "kao")]
    assert run["invoiced_total"] == "240.00"
    async with engine.connect() as conn:
        gradia_billed = (
            await conn.execute(sa.select(commitments.c.billed_amount).where(commitments.c.id == to_gradia))
        ).scalar_one()
    assert gradia_billed == Decimal("0.00")  # not sakky's to invoice

    [row] = await audit_rows(engine)
    assert (row["action"], row["target_id"], row["actor"]) == ("invoice_run.create", run["id"], "finance@sakky")

    # Idempotency-Keys belong to their caller: gradia's "sept" is a run of its own, sakky's replays.
    replay = await client.post("/invoice-runs", json=RUN, headers={**SAKKY_FINANCE, "Idempotency-Key": "sept"})
    assert replay.status_code == 200 and replay.json() == run
    gradia = await client.post("/invoice-runs", json=RUN, headers={**GRADIA_FINANCE, "Idempotency-Key": "sept"})
    assert gradia.status_code == 201 and gradia.json()["id"] != run["id"]
    assert [(d["payee_id"], d["payer_id"]) for d in gradia.json()["invoices"]] == [("gradia", "kao")]
    assert [r["action"] for r in await audit_rows(engine)] == ["invoice_run.create"] * 2

    # The admin runs the whole network; nothing is left to invoice twice.
    network = await client.post("/invoice-runs", json=RUN, headers=ADMIN)
    assert network.status_code == 201 and network.json()["payee_id"] is None
    assert network.json()["invoice_count"] == 0 and await invoice_count(engine) == 3


async def test_an_invoice_is_seen_by_finance_of_payer_and_payee_only_in_every_format(
    world: World, client: httpx.AsyncClient
) -> None:
    await charged(world, "sakky", "kao")
    await charged(world, "gradia", "jao")
    run = (await client.post("/invoice-runs", json=RUN, headers=ADMIN)).json()
    invoice_id = next(d["id"] for d in run["invoices"] if d["payee_id"] == "sakky")
    formats = [
        ({"Accept": "application/json"}, {}, "application/json"),
        ({"Accept": "text/csv"}, {}, "text/csv"),
        ({"Accept": "application/xml"}, {}, "application/xml"),
        ({}, {"format": "csv"}, "text/csv"),
        ({}, {"format": "xml"}, "application/xml"),
    ]
    for accept, params, media in formats:
        for headers in (KAO_FINANCE, SAKKY_FINANCE, ADMIN):
            seen = await client.get(f"/invoices/{invoice_id}", params=params, headers={**headers, **accept})
            assert seen.status_code == 200 and seen.headers["content-type"].startswith(media)
        for headers in (JAO_FINANCE, GRADIA_FINANCE):
            hidden = await client.get(f"/invoices/{invoice_id}", params=params, headers={**headers, **accept})
            assert_problem(hidden, 404)
            assert invoice_id in hidden.json()["detail"] and "SAKKY" not in hidden.text
        assert_problem(
            await client.get(f"/invoices/{invoice_id}", params=params, headers={**KAO_COUNSELLOR, **accept}), 403
        )

    assert ids_of(await client.get("/invoices", headers=KAO_FINANCE)) == {invoice_id}
    assert ids_of(await client.get("/invoices", headers=SAKKY_FINANCE)) == {invoice_id}
    assert len(ids_of(await client.get("/invoices", headers=JAO_FINANCE))) == 1
    assert ids_of(await client.get("/invoices", params={"payee": "sakky"}, headers=JAO_FINANCE)) == set()
    assert len(ids_of(await client.get("/invoices", headers=ADMIN))) == 2
    assert_problem(await client.get("/invoices", headers=KAO_COUNSELLOR), 403)


# --- roles and anonymous callers, straight from the matrix --------------------------------------------

MATRIX = ROOT / "tests" / "authz" / "matrix.csv"
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/commitments/accept"): {"ids": ["c1"]},
    ("POST", "/commitments/reject"): {"ids": ["c1"]},
    ("PUT", "/policies/{institution_id}"): {"mode": "manual"},
    ("POST", "/invoice-runs"): RUN,
}
OTHER_ROLE_HEADERS = {
    "anonymous": {},
    "student": bearer("student", "kao", learner_id="L1"),
    "counsellor": KAO_COUNSELLOR,
    "provider_staff": bearer("provider_staff", "sakky"),
    "finance": KAO_FINANCE,
    "network_admin": ADMIN,
    "operations": bearer("operations"),
    "partner": bearer("partner"),
}


def refused_by_role() -> list[tuple[str, str, str, int]]:
    """Every billing route and role the matrix refuses whatever the data: 401 anonymous, 403 the role."""
    with MATRIX.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["service"] == "billing"]
    status = {"unauthenticated": 401, "forbidden": 403}
    refused = [
        (r["method"], r["path"], r["role"], status[r["own"]])
        for r in rows
        if r["own"] in status and r["other"] == r["own"]
    ]
    assert len(refused) > 40, "the matrix should list billing's routes"
    return refused


async def test_the_matrix_refuses_these_roles_whatever_they_ask(
    world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    commitment_id = await pending(world, "sakky", "kao")
    await charged(world, "sakky", "kao")
    run = (await client.post("/invoice-runs", json=RUN, headers=ADMIN)).json()
    ids = {"id": commitment_id, "institution_id": "kao"}
    before = await audit_rows(engine)
    wrong = []
    for method, path, role, status in refused_by_role():
        url = path.format(**{**ids, "id": run["invoices"][0]["id"]} if path.startswith("/invoices/") else ids)
        body = BODIES.get((method, path))
        if body and "ids" in body:
            body = {"ids": [commitment_id]}
        response = await client.request(method, url, json=body, headers=OTHER_ROLE_HEADERS[role])
        problem = response.headers.get("content-type") == "application/problem+json"
        challenge = status != 401 or response.headers.get("www-authenticate", "").startswith("Bearer")
        if response.status_code != status or not problem or not challenge:
            wrong.append(f"{role} {method} {path}: {response.status_code} {response.text[:120]}")
    assert wrong == []
    assert await status_of(engine, commitment_id) == "pending"
    assert await audit_rows(engine) == before
