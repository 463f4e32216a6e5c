"""Billing commitments on real databases: policies and budgets, bulk decisions, the lifecycle that
enrolment events drive, out-of-order and repeated events, and the free-cancellation deadline."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import aio_pika
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing import domain, handlers, views
from services.billing.app import build_worker, charge_due_loop
from services.billing.consumers import SUBSCRIPTIONS
from services.billing.handlers.common import update_versioned
from services.billing.settings import Settings
from services.billing.tables import idempotency_keys, inbox, outbox
from shared.bus import Consumer
from shared.bus.topology import declare_exchange
from shared.db import make_engine
from shared.errors import Conflict
from shared.events import Envelope
from tests.integration.test_billing_support import YEAR, World, billing_client, billing_engine
from tests.support.infra import AMQP_URL, BusNamespace, eventually

pytestmark = pytest.mark.integration
D = Decimal
START = date(2026, 9, 1)
DEADLINE = date(2026, 9, 14)


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with billing_engine(db_kind, tmp_path) as engine:
        yield engine


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    world = World(engine)
    await world.institution("sakky")
    await world.institution("kao")
    await world.institution("edupoli", member=False)
    return world


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with billing_client(engine) as client:
        yield client


def types(events: list[dict]) -> list[str]:
    return [e["type"].removeprefix("fi.tarjotin.").removesuffix(".v1") for e in events]


# --- policies and budgets -----------------------------------------------------------------------


async def test_members_default_to_automatic_and_outside_institutions_to_manual(
    world: World, client: httpx.AsyncClient
) -> None:
    member = (await client.get("/policies/kao")).json()
    outside = (await client.get("/policies/edupoli")).json()
    assert (member["mode"], member["yearly_budget"]) == ("automatic", None)
    assert (outside["mode"], outside["yearly_budget"]) == ("manual", None)
    external = await world.request("sakky", "edupoli")
    row = await world.commitment(external)
    assert (row.status, row.price_kind, row.amount) == ("pending", "external", D("150.00"))
    assert (await client.get("/policies/nowhere")).status_code == 404


async def test_a_policy_is_set_and_a_budget_in_manual_mode_is_refused_without_change(
    world: World, client: httpx.AsyncClient
) -> None:
    put = await client.put("/policies/kao", json={"mode": "automatic", "yearly_budget": "1000.00"})
    assert put.status_code == 200 and put.json()["yearly_budget"] == "1000.00"
    refused = await client.put("/policies/kao", json={"mode": "manual", "yearly_budget": "500.00"})
    assert refused.status_code == 422 and "automatic mode only" in refused.json()["detail"]
    assert (await client.get("/policies/kao")).json() == {
        "institution_id": "kao",
        "mode": "automatic",
        "yearly_budget": "1000.00",
    }
    manual = await client.put("/policies/kao", json={"mode": "manual"})
    assert manual.json() == {"institution_id": "kao", "mode": "manual", "yearly_budget": None}
    waiting = await world.request("sakky", "kao")
    assert (await world.commitment(waiting)).status == "pending"


async def test_beyond_the_yearly_budget_commitments_wait_for_approval(world: World, client: httpx.AsyncClient) -> None:
    await client.put("/policies/kao", json={"mode": "automatic", "yearly_budget": "250.00"})
    first, second, third = [await world.request("sakky", "kao") for _ in range(3)]
    statuses = [(await world.commitment(e)).status for e in (first, second, third)]
    assert statuses == ["accepted", "accepted", "pending"]  # 120 + 120 = 240; a third would be 360 > 250
    other_year = await world.request("sakky", "kao", year="2027-2028")
    assert (await world.commitment(other_year)).status == "accepted"

    # The budget counts the chargeable share once chargeable, and nothing once voided.
    await world.withdraw(first, "50")  # chargeable 60.00: used 60 + 120 = 180
    fourth = await world.request("sakky", "kao")  # 180 + 120 = 300 > 250
    assert (await world.commitment(fourth)).status == "pending"
    await world.withdraw(second, "0")  # voided: used 60
    fifth = await world.request("sakky", "kao")  # 60 + 120 = 180 ≤ 250
    assert (await world.commitment(fifth)).status == "accepted"
    sixth = await world.request("sakky", "kao", member_price="70.01")  # 180 + 70.01 = 250.01 > 250
    seventh = await world.request("sakky", "kao", member_price="70.00")  # 180 + 70.00 = 250.00 exactly
    assert [(await world.commitment(e)).status for e in (sixth, seventh)] == ["pending", "accepted"]


async def test_concurrent_automatic_acceptances_never_overrun_the_budget(world: World, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await handlers.set_policy(conn, "kao", domain.Mode.AUTOMATIC, D("600.00"))
    events = [world.requested("sakky", "kao") for _ in range(12)]
    await asyncio.gather(*(world.deliver(handlers.open_commitment, e) for e in events))
    statuses = [(await world.commitment(e.subject)).status for e in events]
    assert statuses.count("accepted") == 5 and statuses.count("pending") == 7  # 5 × 120.00 = 600.00
    async with engine.connect() as conn:
        assert await views.budget_used(conn, "kao", YEAR) == D("600.00")


# --- opening a commitment ----------------------------------------------------------------------


async def test_a_commitment_accepted_at_once_is_written_once_and_described_by_two_events(world: World) -> None:
    enrolment = await world.request("sakky", "kao", deadline=DEADLINE)
    row = await world.commitment(enrolment)
    assert (row.status, row.decided_by, row.version, row.enrolment_seq, row.price_kind) == (
        "accepted",
        "automatic",
        2,
        1,
        "member",
    )
    created, accepted = await world.events(row.id)
    commitment = {
        "commitment_id": row.id,
        "enrolment_id": enrolment,
        "offering_id": "o1",
        "payer_id": "kao",
        "payee_id": "sakky",
        "amount": "120.00",
        "academic_year": YEAR,
    }
    assert created["data"] == {**commitment, "price_kind": "member", "status": "pending"}
    assert accepted["data"] == {**commitment, "decided_by": "automatic"}
    assert [(e["type"], e["sequence"], e["subject"]) for e in (created, accepted)] == [
        ("fi.tarjotin.commitment.created.v1", 1, row.id),
        ("fi.tarjotin.commitment.accepted.v1", 2, row.id),
    ]
    assert {e["correlationid"] for e in (created, accepted)} == {f"c-{enrolment}"}


async def test_a_request_for_a_payer_not_yet_known_opens_nothing_until_the_payer_arrives(world: World) -> None:
    requested = world.requested("sakky", "omnia")
    with pytest.raises(handlers.PayerUnknown):
        await world.deliver(handlers.open_commitment, requested)
    assert await world.events() == []
    await world.institution("omnia")
    await world.deliver(handlers.open_commitment, requested)
    assert (await world.commitment(requested.subject)).status == "accepted"


async def test_in_one_batch_a_parked_withdrawal_is_applied_and_a_repeated_request_opens_nothing(
    world: World, engine: AsyncEngine
) -> None:
    consumer = Consumer(engine, inbox, SUBSCRIPTIONS, service="billing", amqp_url="", exchange="", queue="")
    requested = world.requested("sakky", "kao")
    withdrawn = world.withdrawn(requested.subject, "0")
    other = world.requested("sakky", "edupoli")
    again = requested.model_copy(update={"id": "a-second-delivery-with-its-own-id"})
    assert await consumer.apply([withdrawn, requested, other, again]) == [None] * 4
    row = await world.commitment(requested.subject)
    assert (row.status, row.reason, row.version) == ("voided", "withdrawn", 3)
    assert types(await world.events(row.id)) == ["commitment.created", "commitment.accepted", "commitment.voided"]
    assert (await world.commitment(other.subject)).status == "pending"
    assert await world.parked() == 0 and len(await world.events()) == 4


async def test_a_decision_on_a_commitment_changed_meanwhile_is_refused_and_changes_nothing(world: World) -> None:
    enrolment = await world.request("sakky", "edupoli")
    stale = await world.commitment(enrolment)
    await world.accept(enrolment)
    with pytest.raises(Conflict):
        async with world.engine.begin() as conn:
            await update_versioned(conn, stale, status="rejected")
    row = await world.commitment(enrolment)
    assert (row.status, row.version) == ("accepted", 2)


# --- bulk decisions -----------------------------------------------------------------------------


async def test_bulk_accept_is_all_or_nothing_and_names_the_ids_not_pending(
    world: World, client: httpx.AsyncClient
) -> None:
    pending = [await world.request("sakky", "edupoli") for _ in range(3)]
    ids = [(await world.commitment(e)).id for e in pending]
    done = await client.post(f"/commitments/{ids[0]}/accept", json={"decided_by": "finance"})
    assert done.status_code == 200
    refused = await client.post("/commitments/accept", json={"ids": ids, "decided_by": "finance"})
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    assert f"{ids[0]} (accepted)" in refused.json()["detail"]
    assert refused.json()["not_pending"] == [{"id": ids[0], "status": "accepted"}]
    assert [(await world.commitment(e)).status for e in pending[1:]] == ["pending", "pending"]

    unknown = await client.post("/commitments/accept", json={"ids": [ids[1], "nope"]})
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    assert (await world.commitment(pending[1])).status == "pending"

    accepted = await client.post("/commitments/accept", json={"ids": [ids[1], ids[2], ids[1]], "decided_by": "fin"})
    assert accepted.status_code == 200
    assert [(c["id"], c["status"], c["decided_by"]) for c in accepted.json()] == [
        (ids[1], "accepted", "fin"),
        (ids[2], "accepted", "fin"),
    ]
    assert types(await world.events(ids[2])) == ["commitment.created", "commitment.accepted"]


async def test_bulk_reject_is_all_or_nothing_and_carries_the_reason(world: World, client: httpx.AsyncClient) -> None:
    pending = [await world.request("sakky", "edupoli") for _ in range(2)]
    accepted = await world.request("sakky", "kao")
    ids = [(await world.commitment(e)).id for e in [*pending, accepted]]
    refused = await client.post("/commitments/reject", json={"ids": ids, "reason": "no funds"})
    assert refused.status_code == 409 and f"{ids[2]} (accepted)" in refused.json()["detail"]
    assert [(await world.commitment(e)).status for e in pending] == ["pending", "pending"]

    rejected = await client.post("/commitments/reject", json={"ids": ids[:2], "reason": "no funds"})
    assert rejected.status_code == 200
    assert [(c["status"], c["reason"]) for c in rejected.json()] == [("rejected", "no funds")] * 2
    event = (await world.events(ids[0]))[-1]
    assert event["type"] == "fi.tarjotin.commitment.rejected.v1" and event["data"]["reason"] == "no funds"
    assert event["sequence"] == 2
    bad = await client.post("/commitments/reject", json={"ids": []})
    assert bad.status_code == 422


# --- lifecycle ------------------------------------------------------------------------------------


async def test_a_withdrawal_voids_a_pending_commitment(world: World) -> None:
    enrolment = await world.request("sakky", "edupoli")
    await world.withdraw(enrolment, "0")
    row = await world.commitment(enrolment)
    assert (row.status, row.reason, row.version, row.amount) == ("voided", "withdrawn", 2, D("150.00"))


async def test_a_free_withdrawal_voids_an_accepted_commitment(world: World) -> None:
    enrolment = await world.request("sakky", "kao")
    await world.withdraw(enrolment, "0", when=date(2026, 9, 10))
    row = await world.commitment(enrolment)
    assert (row.status, row.reason, row.voided_on, row.chargeable_amount) == (
        "voided",
        "withdrawn",
        date(2026, 9, 10),
        None,
    )


@pytest.mark.parametrize(("price", "percent", "owed"), [("120.00", "50", "60.00"), ("33.33", "50", "16.67")])
async def test_a_late_withdrawal_leaves_the_late_share_chargeable(
    world: World, price: str, percent: str, owed: str
) -> None:
    enrolment = await world.request("sakky", "kao", member_price=price)
    await world.withdraw(enrolment, percent, when=date(2026, 9, 20))
    row = await world.commitment(enrolment)
    assert (row.status, row.reason, row.charge_percent, row.chargeable_amount) == (
        "chargeable",
        "late_withdrawal",
        D(percent),
        D(owed),
    )
    assert (row.amount, row.chargeable_on, row.version) == (D(price), date(2026, 9, 20), 3)
    event = (await world.events(row.id))[-1]
    assert event["type"] == "fi.tarjotin.commitment.chargeable.v1" and event["sequence"] == 3
    assert (event["data"]["chargeable_amount"], event["data"]["amount"], event["data"]["reason"]) == (
        owed,
        price,
        "late_withdrawal",
    )


async def test_a_late_withdrawal_after_the_deadline_charge_resets_to_the_late_share(world: World) -> None:
    enrolment = await world.request("sakky", "kao", deadline=DEADLINE)
    assert await world.charge_due(DEADLINE + timedelta(days=1)) == 1
    assert (await world.commitment(enrolment)).chargeable_amount == D("120.00")
    await world.withdraw(enrolment, "40", when=date(2026, 10, 1))
    row = await world.commitment(enrolment)
    assert (row.status, row.reason, row.chargeable_amount, row.chargeable_on, row.version) == (
        "chargeable",
        "late_withdrawal",
        D("48.00"),
        date(2026, 10, 1),
        4,
    )
    assert types(await world.events(row.id)) == [
        "commitment.created",
        "commitment.accepted",
        "commitment.chargeable",
        "commitment.chargeable",
    ]
    assert [e["sequence"] for e in await world.events(row.id)] == [1, 2, 3, 4]


async def test_a_withdrawal_from_the_waitlist_touches_nothing(world: World) -> None:
    event = world.requested("sakky", "kao")  # never delivered: a waitlisted student has no commitment
    await world.deliver(handlers.on_withdrawn, world.withdrawn(event.subject, "0", was_waitlisted=True))
    assert await world.parked() == 0
    assert await world.events() == []


@pytest.mark.parametrize("state", ["pending", "accepted", "chargeable"])
async def test_a_cancelled_offering_voids_the_commitment_whatever_its_state(world: World, state: str) -> None:
    payer = "edupoli" if state == "pending" else "kao"
    enrolment = await world.request("sakky", payer, deadline=DEADLINE)
    if state == "chargeable":
        await world.charge_due(DEADLINE + timedelta(days=1))
    assert (await world.commitment(enrolment)).status == state
    await world.cancel(enrolment, when=date(2026, 9, 30))
    row = await world.commitment(enrolment)
    assert (row.status, row.reason, row.voided_on) == ("voided", "offering_cancelled", date(2026, 9, 30))
    assert (await world.events(row.id))[-1]["data"]["reason"] == "offering_cancelled"


async def test_a_cancelled_offering_leaves_a_rejected_commitment_rejected(world: World) -> None:
    enrolment = await world.request("sakky", "edupoli")
    row = await world.commitment(enrolment)
    async with world.engine.begin() as conn:
        await handlers.decide(conn, row.id, accept=False, by="t", correlation_id="t")
    await world.cancel(enrolment)
    after = await world.commitment(enrolment)
    assert (after.status, after.version) == ("rejected", 2)


@pytest.mark.parametrize(
    ("outcome", "percent", "price", "owed", "reason"),
    [
        ("passed", "100", "120.00", "120.00", "result_recorded"),
        ("failed", "100", "120.00", "120.00", "result_recorded"),
        ("interrupted", "50", "33.33", "16.67", "interrupted"),
    ],
)
async def test_a_recorded_result_makes_the_commitment_chargeable(
    world: World, outcome: str, percent: str, price: str, owed: str, reason: str
) -> None:
    enrolment = await world.request("sakky", "kao", member_price=price)
    await world.complete(enrolment, outcome, percent, when=date(2026, 12, 18))
    row = await world.commitment(enrolment)
    assert (row.status, row.reason, row.chargeable_amount, row.chargeable_on) == (
        "chargeable",
        reason,
        D(owed),
        date(2026, 12, 18),
    )


def test_billing_listens_to_no_enrolment_event_but_requests_withdrawals_cancellations_and_results() -> None:
    assert set(SUBSCRIPTIONS) == {
        "institution.registered",
        "institution.updated",
        "enrolment.requested",
        "enrolment.withdrawn",
        "enrolment.cancelled",
        "enrolment.completed",
    }


# --- order and repetition ---------------------------------------------------------------------


async def test_a_withdrawal_that_overtakes_its_request_is_parked_and_applied_when_the_commitment_opens(
    world: World,
) -> None:
    requested = world.requested("sakky", "kao", when=date(2026, 9, 1))
    withdrawn = world.withdrawn(requested.subject, "50", when=date(2026, 9, 20))
    await world.deliver(handlers.on_withdrawn, withdrawn)
    assert await world.parked() == 1 and await world.events() == []
    await world.deliver(handlers.open_commitment, requested)
    row = await world.commitment(requested.subject)
    assert (row.status, row.chargeable_amount, row.chargeable_on) == ("chargeable", D("60.00"), date(2026, 9, 20))
    assert types(await world.events(row.id)) == ["commitment.created", "commitment.accepted", "commitment.chargeable"]
    assert await world.parked() == 0


async def test_a_cancellation_and_a_result_that_overtake_their_request_apply_in_enrolment_order(world: World) -> None:
    requested = world.requested("sakky", "kao")
    completed = world.completed(requested.subject, "passed", "100")
    cancelled = world.cancelled(requested.subject)
    await world.deliver(handlers.on_cancelled, cancelled)
    await world.deliver(handlers.on_completed, completed)
    await world.deliver(handlers.open_commitment, requested)
    row = await world.commitment(requested.subject)
    assert (row.status, row.reason) == ("voided", "offering_cancelled")


async def test_an_older_enrolment_event_changes_nothing(world: World) -> None:
    enrolment = await world.request("sakky", "kao")
    older = world.withdrawn(enrolment, "0")
    newer = world.completed(enrolment, "passed", "100")
    await world.deliver(handlers.on_completed, newer)
    await world.deliver(handlers.on_withdrawn, older)
    row = await world.commitment(enrolment)
    assert (row.status, row.chargeable_amount, row.version) == ("chargeable", D("120.00"), 3)


async def test_repeated_events_change_nothing_the_second_time(world: World) -> None:
    requested = world.requested("sakky", "kao")
    withdrawn = world.withdrawn(requested.subject, "50")
    for _ in range(2):
        await world.deliver(handlers.open_commitment, requested)
        await world.deliver(handlers.on_withdrawn, withdrawn)
    row = await world.commitment(requested.subject)
    assert (row.status, row.chargeable_amount, row.version) == ("chargeable", D("60.00"), 3)
    assert len(await world.events()) == 3


@contextlib.asynccontextmanager
async def consuming(engine: AsyncEngine, bus: BusNamespace) -> AsyncIterator[Consumer]:
    consumer = Consumer(
        engine,
        inbox,
        SUBSCRIPTIONS,
        service="billing",
        amqp_url=AMQP_URL,
        exchange=bus.exchange,
        queue=bus.queue("billing"),
        retry_delays_ms=(50, 100),
    )
    task = asyncio.ensure_future(consumer.run())
    try:
        await asyncio.wait_for(consumer.ready.wait(), 15)
        yield consumer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish(bus: BusNamespace, *events: Envelope) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_exchange(channel, bus.exchange)
        for event in events:
            await exchange.publish(
                aio_pika.Message(event.to_json(), message_id=event.id), routing_key=event.routing_key
            )


async def test_through_the_bus_a_redelivered_withdrawal_is_applied_once(
    world: World, engine: AsyncEngine, bus: BusNamespace
) -> None:
    requested = world.requested("sakky", "kao")
    withdrawn = world.withdrawn(requested.subject, "50")
    async with consuming(engine, bus):
        await publish(bus, withdrawn, requested, withdrawn, requested, withdrawn)

        async def settled() -> bool:
            rows = await world.events()
            return len(rows) >= 3

        await eventually(settled, timeout=20)
        await asyncio.sleep(0.5)
    row = await world.commitment(requested.subject)
    assert (row.status, row.chargeable_amount, row.version) == ("chargeable", D("60.00"), 3)
    assert types(await world.events(row.id)) == ["commitment.created", "commitment.accepted", "commitment.chargeable"]


# --- the free-cancellation deadline -----------------------------------------------------------


async def test_an_accepted_commitment_becomes_chargeable_the_day_after_its_deadline(world: World) -> None:
    accepted = await world.request("sakky", "kao", deadline=DEADLINE)
    pending = await world.request("sakky", "edupoli", deadline=DEADLINE)
    no_deadline = await world.request("sakky", "kao")
    assert await world.charge_due(DEADLINE) == 0
    assert (await world.commitment(accepted)).status == "accepted"
    assert await world.charge_due(DEADLINE + timedelta(days=3)) == 1
    row = await world.commitment(accepted)
    assert (row.status, row.reason, row.charge_percent, row.chargeable_amount, row.chargeable_on) == (
        "chargeable",
        "deadline_passed",
        D(100),
        D("120.00"),
        DEADLINE + timedelta(days=1),
    )
    assert [(await world.commitment(e)).status for e in (pending, no_deadline)] == ["pending", "accepted"]
    assert await world.charge_due(DEADLINE + timedelta(days=4)) == 0
    assert types(await world.events(row.id))[-1] == "commitment.chargeable"
    assert len(await world.events(row.id)) == 3


async def test_the_worker_loop_charges_due_commitments_on_its_clock(world: World, engine: AsyncEngine) -> None:
    enrolment = await world.request("sakky", "kao", deadline=DEADLINE)
    loop = asyncio.ensure_future(charge_due_loop(engine, 0.05, today=lambda: DEADLINE + timedelta(days=1)))
    try:

        async def charged() -> bool:
            return (await world.commitment(enrolment)).status == "chargeable"

        await eventually(charged, timeout=10)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


def test_the_billing_worker_runs_housekeeping_the_relay_the_consumer_and_the_deadline_loop(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/w.db", charge_due_interval_s=5)
    shared_engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/api.db")
    loops = build_worker(settings, engine=shared_engine)  # as `python -m services.billing all` does
    try:
        # repr: <coroutine object Relay.run at 0x…>
        assert [repr(c).split()[2] for c in loops] == [
            "_housekeeping",  # expired Idempotency-Keys of invoice runs, old published outbox rows
            "Relay.run",
            "Consumer.run",
            "charge_due_loop",
        ]
        housekeeping = inspect.getcoroutinelocals(loops[0])
        assert housekeeping["idempotency_keys"] is idempotency_keys
        assert housekeeping["outbox"] is outbox and housekeeping["outbox_keep_s"] == 7 * 86400
        clock = inspect.getcoroutinelocals(loops[3])
        assert clock["engine"] is shared_engine and clock["interval_s"] == 5
    finally:
        for coroutine in loops:
            coroutine.close()


def test_on_postgresql_the_billing_worker_also_listens_for_commits_in_other_processes() -> None:
    """On PostgreSQL the relay also LISTENs for the outbox trigger's notifications (from the API's
    process), on a plain asyncpg connection to the same database (without the options of SQLAlchemy's adapter)."""
    url = "postgresql+asyncpg://tarjotin:pw@127.0.0.1:5432/tarjotin_billing?prepared_statement_cache_size=100"
    loops = build_worker(Settings(database_url=url))
    try:
        assert [repr(c).split()[2] for c in loops] == [
            "_housekeeping",
            "Relay.run",
            "Relay.listen",
            "Consumer.run",
            "charge_due_loop",
        ]
        assert inspect.getcoroutinelocals(loops[2])["connect_args"] == {
            "host": "127.0.0.1",
            "port": 5432,
            "user": "tarjotin",
            "password": "pw",
            "database": "tarjotin_billing",
        }
    finally:
        for coroutine in loops:
            coroutine.close()


# --- the local copy of institutions -----------------------------------------------------------


async def test_the_local_copy_keeps_names_and_ids_for_invoices_and_ignores_older_updates(engine: AsyncEngine) -> None:
    world = World(engine)
    await world.institution(
        "sakky",
        name="Savon koulutuskuntayhtymä",
        business_id="1234567-8",
        einvoice_address="003712345678",
        municipality="Kuopio",
        sequence=2,
    )
    await world.institution("sakky", name="Old name", sequence=1)
    async with engine.connect() as conn:
        party = await views.party(conn, "sakky")
    assert (party.name, party.business_id, party.einvoice_address, party.municipality) == (
        "Savon koulutuskuntayhtymä",
        "1234567-8",
        "003712345678",
        "Kuopio",
    )
