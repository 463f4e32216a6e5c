"""Invoice runs on real databases: one invoice per payee and payer, sequential numbers per payee, credit
notes for what was voided or re-priced after invoicing, the HTTP API (JSON, CSV), and reconciliation."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing import handlers, reconcile
from services.billing.domain import DocumentKind
from services.billing.tables import commitments, invoices
from tests.integration.test_billing_support import World, billing_client, billing_engine

pytestmark = pytest.mark.integration
D = Decimal
SEPT, OCT, NOV = date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)
SEPT_END, OCT_END = date(2026, 9, 30), date(2026, 10, 31)


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with billing_engine(db_kind, tmp_path) as engine:
        yield engine


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    world = World(engine)
    for slug in ("sakky", "gradia", "kao", "jao"):
        await world.institution(slug, business_id="1234567-8")
    return world


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with billing_client(engine, today=lambda: OCT) as client:
        yield client


async def charged(world: World, provider: str, payer: str, price: str = "120.00", *, when: date = SEPT) -> str:
    """An enrolment whose result was recorded on `when`: its commitment is chargeable in full."""
    enrolment = await world.request(provider, payer, member_price=price, when=when)
    await world.complete(enrolment, "passed", "100", when=when)
    return enrolment


def by_pair(documents: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["payee_id"], d["payer_id"]): d for d in documents}


async def test_a_run_makes_one_invoice_per_payee_and_payer_with_one_line_per_enrolment(
    world: World, client: httpx.AsyncClient
) -> None:
    a = await charged(world, "sakky", "kao", "120.00")
    b = await charged(world, "sakky", "kao", "33.34")
    c = await charged(world, "sakky", "jao", "80.00")
    d = await charged(world, "gradia", "kao", "45.50")
    late = await world.request("gradia", "kao", member_price="33.33")
    await world.withdraw(late, "50", when=date(2026, 9, 20))
    await world.request("sakky", "kao")  # accepted only: nothing owed yet
    await charged(world, "sakky", "kao", "999.00", when=date(2026, 10, 2))  # after the period: next run

    response = await client.post("/invoice-runs", json={"period_start": "2026-09-01", "period_end": "2026-09-30"})
    assert response.status_code == 201, response.text
    run = response.json()
    assert (run["invoice_count"], run["credit_note_count"], run["invoiced_total"], run["credited_total"]) == (
        3,
        0,
        "295.51",
        "0.00",
    )
    docs = by_pair(run["invoices"])
    assert {k: (v["number"], v["total"], v["line_count"]) for k, v in docs.items()} == {
        ("gradia", "kao"): ("GRADIA-2026-0001", "62.17", 2),  # 45.50 + 16.67 (33.33 at 50 %)
        ("sakky", "jao"): ("SAKKY-2026-0001", "80.00", 1),
        ("sakky", "kao"): ("SAKKY-2026-0002", "153.34", 2),
    }
    invoice = (await client.get(f"/invoices/{docs[('sakky', 'kao')]['id']}")).json()
    assert (invoice["kind"], invoice["issue_date"], invoice["due_date"], invoice["currency"]) == (
        "invoice",
        "2026-10-01",
        "2026-10-15",
        "EUR",
    )
    assert (invoice["vat_rate"], invoice["vat_amount"], invoice["net_total"], invoice["total"]) == (
        "0",
        "0.00",
        "153.34",
        "153.34",
    )
    lines = [(line["line_no"], line["enrolment_id"], line["offering_id"], line["amount"]) for line in invoice["lines"]]
    assert lines == [(1, a, "o1", "120.00"), (2, b, "o1", "33.34")]
    assert invoice["lines"][0]["commitment_id"] == (await world.commitment(a)).id
    gradia = (await client.get(f"/invoices/{docs[('gradia', 'kao')]['id']}")).json()
    assert [line["description"] for line in gradia["lines"]] == [
        "Course enrolment, offering o1, 2026-2027: result recorded",
        "Course enrolment, offering o1, 2026-2027: late withdrawal, 50 % of 33.33",
    ]
    assert {(await world.commitment(e)).billed_amount for e in (a, c, d)} == {D("120.00"), D("80.00"), D("45.50")}

    again = await client.post("/invoice-runs", json={"period_start": "2026-09-01", "period_end": "2026-09-30"})
    assert again.status_code == 201 and again.json()["invoice_count"] == 0


async def test_invoice_numbers_run_on_per_payee_across_runs(world: World) -> None:
    await charged(world, "sakky", "kao")
    await charged(world, "sakky", "jao")
    first = await world.run(SEPT, SEPT_END, today=OCT)
    await charged(world, "sakky", "kao", when=date(2026, 10, 5))
    await charged(world, "gradia", "kao", when=date(2026, 10, 5))
    second = await world.run(OCT, OCT_END, today=NOV)
    numbers = [d["number"] for d in first["invoices"] + second["invoices"]]
    assert numbers == ["SAKKY-2026-0001", "SAKKY-2026-0002", "GRADIA-2026-0001", "SAKKY-2026-0003"]
    await charged(world, "sakky", "kao", when=date(2026, 12, 20))
    next_year = await world.run(date(2026, 12, 1), date(2026, 12, 31), today=date(2027, 1, 2))
    assert [d["number"] for d in next_year["invoices"]] == ["SAKKY-2027-0001"]


async def test_concurrent_number_requests_get_distinct_consecutive_numbers(engine: AsyncEngine) -> None:
    async def take() -> str:
        async with engine.begin() as conn:
            return await handlers.next_number(conn, DocumentKind.INVOICE, "sakky", 2026)

    numbers = await asyncio.gather(*(take() for _ in range(20)))
    assert sorted(numbers) == [f"SAKKY-2026-{n:04d}" for n in range(1, 21)]


async def test_concurrent_runs_never_invoice_a_commitment_twice(world: World, engine: AsyncEngine) -> None:
    for payer in ("kao", "jao"):
        for _ in range(3):
            await charged(world, "sakky", payer)
    runs = await asyncio.gather(*(world.run(SEPT, SEPT_END, today=OCT) for _ in range(4)))
    documents = [d for run in runs for d in run["invoices"]]
    assert sorted(d["number"] for d in documents) == ["SAKKY-2026-0001", "SAKKY-2026-0002"]
    assert sum((D(d["total"]) for d in documents), D(0)) == D("720.00")
    async with engine.connect() as conn:
        assert (await reconcile.reconcile(conn)).ok


async def test_a_commitment_voided_after_invoicing_is_credited_in_the_next_run(world: World) -> None:
    kept = await charged(world, "sakky", "kao", "120.00")
    cancelled = await charged(world, "sakky", "kao", "80.00")
    other = await charged(world, "sakky", "jao", "50.00")
    first = await world.run(SEPT, SEPT_END, today=OCT)
    invoice = by_pair(first["invoices"])[("sakky", "kao")]
    await world.cancel(cancelled, when=date(2026, 10, 3))
    await world.cancel(other, when=date(2026, 11, 3))  # after October: credited in November's run
    second = await world.run(OCT, OCT_END, today=NOV)
    assert (second["invoice_count"], second["credit_note_count"], second["credited_total"]) == (0, 1, "80.00")
    note = second["credit_notes"][0]
    assert (note["number"], note["kind"], note["payee_id"], note["payer_id"], note["total"]) == (
        "SAKKY-CN-2026-0001",
        "credit_note",
        "sakky",
        "kao",
        "80.00",
    )
    assert note["original_invoice_id"] == invoice["id"]
    assert (await world.commitment(cancelled)).billed_amount == D("0.00")
    assert (await world.commitment(kept)).billed_amount == D("120.00")
    event = next(e for e in await world.events(note["id"]))
    assert event["type"] == "fi.tarjotin.credit_note.issued.v1"
    assert event["data"]["invoice_id"] == invoice["id"] and event["data"]["total"] == "80.00"
    assert event["data"]["commitment_ids"] == [(await world.commitment(cancelled)).id]
    third = await world.run(NOV, date(2026, 11, 30), today=date(2026, 12, 1))
    assert [(d["number"], d["total"]) for d in third["credit_notes"]] == [("SAKKY-CN-2026-0002", "50.00")]
    assert (await world.run(NOV, date(2026, 11, 30), today=date(2026, 12, 1)))["credit_note_count"] == 0


async def test_a_late_withdrawal_after_a_full_invoice_credits_the_difference(world: World) -> None:
    enrolment = await world.request("sakky", "kao", member_price="33.33", deadline=date(2026, 9, 14))
    first = await world.run(SEPT, SEPT_END, today=OCT)  # the run charges the deadline first
    assert [(d["number"], d["total"]) for d in first["invoices"]] == [("SAKKY-2026-0001", "33.33")]
    await world.withdraw(enrolment, "50", when=date(2026, 10, 10))
    second = await world.run(OCT, OCT_END, today=NOV)
    assert [(d["number"], d["total"]) for d in second["credit_notes"]] == [("SAKKY-CN-2026-0001", "16.66")]
    row = await world.commitment(enrolment)
    assert (row.chargeable_amount, row.billed_amount) == (D("16.67"), D("16.67"))


async def test_invoice_events_carry_the_number_totals_and_commitments(world: World) -> None:
    a = await charged(world, "sakky", "kao", "120.00")
    b = await charged(world, "sakky", "kao", "0.10")
    run = await world.run(SEPT, SEPT_END, today=OCT)
    invoice = run["invoices"][0]
    [event] = await world.events(invoice["id"])
    assert (event["type"], event["sequence"], event["source"]) == ("fi.tarjotin.invoice.issued.v1", 1, "billing")
    data = event["data"]
    assert (data["number"], data["total"], data["vat_rate"], data["period_start"], data["period_end"]) == (
        "SAKKY-2026-0001",
        "120.10",
        "0",
        "2026-09-01",
        "2026-09-30",
    )
    assert data["commitment_ids"] == [(await world.commitment(a)).id, (await world.commitment(b)).id]


async def test_an_idempotency_key_replays_the_run_instead_of_running_again(
    world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await charged(world, "sakky", "kao")
    body = {"period_start": "2026-09-01", "period_end": "2026-09-30"}
    first = await client.post("/invoice-runs", json=body, headers={"Idempotency-Key": "sept"})
    await charged(world, "sakky", "jao")
    replay = await client.post("/invoice-runs", json=body, headers={"Idempotency-Key": "sept"})
    other = await client.post(
        "/invoice-runs", json={**body, "period_end": "2026-09-29"}, headers={"Idempotency-Key": "sept"}
    )
    assert (first.status_code, replay.status_code, other.status_code) == (201, 200, 409)
    assert replay.json() == first.json()
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(invoices))).scalar_one() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"period_start": "2026-09-30", "period_end": "2026-09-01"}, "period_start"),
        ({"period_start": "2026-09-01"}, "period_end"),
        ({"period_start": "2026-09-01", "period_end": "not a date"}, "period_end"),
        ({"period_start": "2026-09-01", "period_end": "2026-09-30", "dry_run": True}, "dry_run"),
    ],
)
async def test_a_bad_run_request_is_refused_and_invoices_nothing(
    world: World, client: httpx.AsyncClient, engine: AsyncEngine, body: dict[str, Any], field: str
) -> None:
    await charged(world, "sakky", "kao")
    response = await client.post("/invoice-runs", json=body)
    assert response.status_code == 422 and field in response.json()["detail"]
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(invoices))).scalar_one() == 0


async def test_invoices_are_listed_by_payee_payer_kind_and_period_page_by_page(
    world: World, client: httpx.AsyncClient
) -> None:
    cancelled = await charged(world, "sakky", "kao")
    await charged(world, "sakky", "jao")
    await charged(world, "gradia", "kao")
    await world.run(SEPT, SEPT_END, today=OCT)
    await world.cancel(cancelled, when=date(2026, 10, 2))
    await charged(world, "sakky", "kao", "60.00", when=date(2026, 10, 2))
    await world.run(OCT, OCT_END, today=NOV)

    async def numbers(**params: Any) -> list[str]:
        response = await client.get("/invoices", params=params)
        assert response.status_code == 200, response.text
        return [d["number"] for d in response.json()["items"]]

    assert await numbers(payee="sakky") == [
        "SAKKY-2026-0001",
        "SAKKY-2026-0002",
        "SAKKY-2026-0003",
        "SAKKY-CN-2026-0001",
    ]
    assert await numbers(payer="kao", kind="credit_note") == ["SAKKY-CN-2026-0001"]
    assert await numbers(kind="invoice", period_start="2026-10-01") == ["SAKKY-2026-0003"]
    assert await numbers(period_end="2026-09-30") == ["GRADIA-2026-0001", "SAKKY-2026-0001", "SAKKY-2026-0002"]
    page = (await client.get("/invoices", params={"page": 2, "page_size": 2})).json()
    assert (page["total"], page["page"], len(page["items"])) == (5, 2, 2)
    note = (await client.get("/invoices", params={"kind": "credit_note"})).json()["items"][0]
    assert (note["original_invoice_number"], note["total"], note["line_count"]) == ("SAKKY-2026-0002", "120.00", 1)
    assert (await client.get("/invoices", params={"kind": "receipt"})).status_code == 422


async def test_an_invoice_exports_its_lines_as_csv(world: World, client: httpx.AsyncClient) -> None:
    a = await charged(world, "sakky", "kao", "120.00")
    late = await world.request("sakky", "kao", member_price="33.33")
    await world.withdraw(late, "50", when=date(2026, 9, 20))
    run = await world.run(SEPT, SEPT_END, today=OCT)
    response = await client.get(f"/invoices/{run['invoices'][0]['id']}", headers={"Accept": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert 'filename="SAKKY-2026-0001.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["line_no"], r["enrolment_id"], r["amount"], r["vat_rate"], r["vat_amount"]) for r in rows] == [
        ("1", a, "120.00", "0", "0.00"),
        ("2", late, "16.67", "0", "0.00"),
    ]
    assert {r["document_number"] for r in rows} == {"SAKKY-2026-0001"}
    assert sum(D(r["amount"]) for r in rows) == D("136.67")
    by_param = await client.get(f"/invoices/{run['invoices'][0]['id']}", params={"format": "csv"})
    assert by_param.text == response.text


async def test_an_unknown_invoice_or_an_unacceptable_format_gets_a_problem(
    world: World, client: httpx.AsyncClient
) -> None:
    await charged(world, "sakky", "kao")
    run = await world.run(SEPT, SEPT_END, today=OCT)
    missing = await client.get("/invoices/nope")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    pdf = await client.get(f"/invoices/{run['invoices'][0]['id']}", headers={"Accept": "application/pdf"})
    assert pdf.status_code == 406 and "application/xml" in pdf.json()["detail"]


# --- reconciliation ---------------------------------------------------------------------------


async def scenario(world: World) -> None:
    """Several payers and payees, a late withdrawal at 40 %, an interruption, a deadline charge, and
    commitments voided or re-priced after they were invoiced."""
    await world.institution("edupoli", member=False)
    await charged(world, "sakky", "kao", "120.00")
    await charged(world, "sakky", "jao", "33.33")
    external = await world.request("gradia", "edupoli", external_price="150.00")
    await world.accept(external)
    await world.complete(external, "passed", "100", when=SEPT)
    late = await world.request("gradia", "kao", member_price="99.99", when=SEPT)
    await world.withdraw(late, "40", when=date(2026, 9, 20))  # 39.996 → 40.00
    interrupted = await world.request("sakky", "kao", member_price="33.33", when=SEPT)
    await world.complete(interrupted, "interrupted", "50", when=date(2026, 9, 25))  # 16.67
    deadline = await world.request("gradia", "jao", member_price="80.00", deadline=date(2026, 9, 14))
    voided = await charged(world, "sakky", "kao", "55.55")
    await world.run(SEPT, SEPT_END, today=OCT)
    await world.cancel(voided, when=date(2026, 10, 4))  # credit note of 55.55
    await world.withdraw(deadline, "40", when=date(2026, 10, 6))  # invoiced 80.00 at the deadline → 32.00
    await charged(world, "sakky", "jao", "10.00", when=date(2026, 10, 8))
    await world.run(OCT, OCT_END, today=NOV)


async def test_a_full_scenario_reconciles_to_the_cent_and_tampering_is_caught(
    world: World, engine: AsyncEngine
) -> None:
    await scenario(world)
    async with engine.connect() as conn:
        result = await reconcile.reconcile(conn)
    assert result.ok, reconcile.format_table(result)
    table = {(r.payee_id, r.payer_id): (r.invoiced, r.credited, r.expected) for r in result.rows}
    assert table == {
        ("gradia", "edupoli"): (D("150.00"), D("0.00"), D("150.00")),
        ("gradia", "jao"): (D("80.00"), D("48.00"), D("32.00")),
        ("gradia", "kao"): (D("40.00"), D("0.00"), D("40.00")),
        ("sakky", "jao"): (D("43.33"), D("0.00"), D("43.33")),
        ("sakky", "kao"): (D("192.22"), D("55.55"), D("136.67")),
    }
    assert (result.total.invoiced, result.total.credited, result.total.expected) == (
        D("505.55"),
        D("103.55"),
        D("402.00"),
    )

    async with engine.begin() as conn:
        await conn.execute(
            commitments.update()
            .where(commitments.c.payee_id == "gradia", commitments.c.payer_id == "kao")
            .values(chargeable_amount=D("45.00"))
        )
        tampered = await reconcile.reconcile(conn)
    assert not tampered.ok
    assert [(r.payee_id, r.payer_id, r.difference) for r in tampered.rows if r.difference] == [
        ("gradia", "kao", D("-5.00"))
    ]
    assert tampered.total.difference == D("-5.00")
    assert "DIFFERENCES FOUND" in reconcile.format_table(tampered)


async def test_a_tampered_invoice_total_is_caught_against_its_lines(world: World, engine: AsyncEngine) -> None:
    await scenario(world)
    async with engine.begin() as conn:
        await conn.execute(invoices.update().where(invoices.c.number == "SAKKY-2026-0001").values(total=D("33.34")))
        result = await reconcile.reconcile(conn)
    assert not result.ok
    assert result.documents_off == ["SAKKY-2026-0001: total 33.34 ≠ lines 33.33 + VAT 0.00"]
    assert [(r.payee_id, r.payer_id, r.difference) for r in result.rows if r.difference] == [
        ("sakky", "jao", D("0.01"))
    ]


async def test_a_void_since_the_last_run_shows_until_the_next_run_credits_it(world: World, engine: AsyncEngine) -> None:
    enrolment = await charged(world, "sakky", "kao")
    await world.run(SEPT, SEPT_END, today=OCT)
    await world.cancel(enrolment, when=date(2026, 10, 2))
    async with engine.connect() as conn:
        waiting = await reconcile.reconcile(conn)
    assert not waiting.ok and waiting.total.difference == D("120.00")
    assert len(waiting.awaiting_run) == 1 and "billed 120.00, due 0.00" in waiting.awaiting_run[0]
    await world.run(OCT, OCT_END, today=NOV)
    async with engine.connect() as conn:
        assert (await reconcile.reconcile(conn)).ok


async def test_the_reconcile_command_prints_the_table_and_exits_non_zero_on_a_difference(
    db_kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with billing_engine(db_kind, tmp_path) as engine:
        world = World(engine)
        for slug in ("sakky", "kao"):
            await world.institution(slug)
        await charged(world, "sakky", "kao", "120.00")
        await world.run(SEPT, SEPT_END, today=OCT)
        url = engine.url.render_as_string(hide_password=False)
        assert await asyncio.to_thread(reconcile.main, ["--database-url", url]) == 0
        out = capsys.readouterr().out
        assert "sakky  kao" in out and "120.00" in out and "OK" in out
        async with engine.begin() as conn:
            await conn.execute(invoices.update().values(total=D("121.00"), net_total=D("121.00")))
        assert await asyncio.to_thread(reconcile.main, ["--database-url", url]) == 1
        assert "DIFFERENCES FOUND" in capsys.readouterr().out
