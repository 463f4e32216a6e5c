"""The enrolment hot path on both databases: the answer written once as JSON, Idempotency-Key replays
that run the work first (and roll it back), and billing's decisions taken under the row lock."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.enrolment import handlers
from services.enrolment.tables import audit_log, enrolments, idempotency_keys, offerings, outbox
from shared.errors import NotFound
from shared.events import CommitmentAccepted, CommitmentRejected, Envelope, new_event
from shared.idempotency import KEEP_S
from tests.integration.test_enrolment_support import TODAY, World, enrolment_body, enrolment_world
from tests.support.auth import bearer

pytestmark = pytest.mark.integration
COUNSELLOR = bearer("counsellor", "kao", subject="hot-path-counsellor")


@pytest.fixture
async def world(db_kind: str, tmp_path: Path) -> Any:
    async with enrolment_world(db_kind, tmp_path) as world:
        yield world


async def post(world: World, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {**COUNSELLOR, **({"Idempotency-Key": key} if key else {})}
    return await world.client.post("", json=body, headers=headers)


def decision(enrolment: dict[str, Any], *, accept: bool) -> Envelope:
    facts = {
        "commitment_id": str(uuid.uuid4()),
        "enrolment_id": enrolment["id"],
        "offering_id": enrolment["offering_id"],
        "payer_id": "kao",
        "payee_id": "sakky",
        "amount": Decimal("80.00"),
        "academic_year": "2026-2027",
    }
    data = CommitmentAccepted(**facts, decided_by="automatic") if accept else CommitmentRejected(**facts, reason="no")
    return new_event(data, source="billing", subject=facts["commitment_id"], sequence=2, correlation_id="t")


async def staged(world: World, routing_key: str) -> list[Envelope]:
    async with world.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.payload).where(outbox.c.routing_key == routing_key).order_by(outbox.c.id)
        )
        return [Envelope.from_json(row.payload) for row in rows]


async def test_the_answer_to_a_request_is_the_enrolment_as_read_back(world: World) -> None:
    offering_id = await world.offering("sakky", seats=1)
    seated = await post(world, enrolment_body(offering_id, "kao", "H1"), key="h1")
    waiting = await post(world, enrolment_body(offering_id, "kao", "H2"))
    for response in (seated, waiting):
        assert response.status_code == 201
        assert response.headers["content-type"] == "application/json"
        answer = response.json()
        assert response.headers["location"] == f"/api/enrolments/{answer['id']}"
        read_back = await world.client.get(f"/{answer['id']}", headers=COUNSELLOR)
        assert read_back.json() == answer
    assert (seated.json()["status"], seated.json()["waitlist_position"]) == ("awaiting_commitment", None)
    assert (waiting.json()["status"], waiting.json()["waitlist_position"]) == ("waitlisted", 1)
    replay = await post(world, enrolment_body(offering_id, "kao", "H1"), key="h1")
    assert (replay.status_code, replay.content) == (200, seated.content)
    assert replay.headers["location"] == seated.headers["location"]


async def test_the_requested_event_carries_the_offering_facts_and_prices(world: World) -> None:
    offering_id = await world.offering("sakky")
    answer = (await post(world, enrolment_body(offering_id, "kao", "F1"))).json()
    [event] = await staged(world, "enrolment.requested")
    assert (event.subject, event.sequence) == (answer["id"], 1)
    assert event.data == {
        "enrolment_id": answer["id"],
        "offering_id": offering_id,
        "provider_id": "sakky",
        "home_institution_id": "kao",
        "student_ref": answer["student_ref"],
        "academic_year": "2026-2027",
        "member_price": "80.00",
        "external_price": "100.00",
        "free_cancellation_deadline": (TODAY + timedelta(days=44)).isoformat(),
    }


async def test_a_request_for_a_full_offering_stages_only_its_waitlisting(world: World) -> None:
    """A request is written as seated before the seat row is locked (the lock is held for fewer statements);
    when the seats are gone, the same transaction takes its `requested` event back and waitlists it."""
    offering_id = await world.offering("sakky", seats=1)
    seated = (await post(world, enrolment_body(offering_id, "kao", "F1"))).json()
    waiting = (await post(world, enrolment_body(offering_id, "kao", "F2"))).json()
    assert [e.subject for e in await staged(world, "enrolment.requested")] == [seated["id"]]
    [waitlisted] = await staged(world, "enrolment.waitlisted")
    assert (waitlisted.subject, waitlisted.sequence, waitlisted.data["waitlist_position"]) == (waiting["id"], 1, 1)
    async with world.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(
                    enrolments.c.status, enrolments.c.holds_seat, enrolments.c.waitlist_seq, enrolments.c.version
                ).where(enrolments.c.id == waiting["id"])
            )
        ).one()
        held = (await conn.execute(sa.select(offerings.c.held).where(offerings.c.id == offering_id))).scalar_one()
    assert tuple(row) == ("waitlisted", False, 1, 1) and held == 1
    again = (await post(world, enrolment_body(offering_id, "kao", "F2"))).json()  # already waitlisted: same one
    assert again["id"] == waiting["id"]
    async with world.engine.connect() as conn:  # each request audited once, new or not, seated or not
        audited = (
            await conn.execute(
                sa.select(audit_log.c.target_id)
                .where(audit_log.c.action == "enrolment.request")
                .order_by(audit_log.c.at, audit_log.c.id)
            )
        ).scalars()
        assert sorted(audited) == sorted([seated["id"], waiting["id"], waiting["id"]])


WRITE = re.compile(r"\b(INSERT INTO|UPDATE|DELETE FROM)\s+\"?(\w+)")


@contextlib.contextmanager
def statements_during(world: World) -> Iterator[list[str]]:
    """Collects every statement run through SQLAlchemy on the world's engine, in order."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(world.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(world.engine.sync_engine, "before_cursor_execute", record)


def writes_of(statements: list[str]) -> list[str]:
    """The table each INSERT/UPDATE/DELETE touches, in order; a statement that carries inserts as CTEs
    (`WITH w0 AS (INSERT …) UPDATE …`) adds them in the order written."""
    return [f"{verb.split()[0]} {table}" for statement in statements for verb, table in WRITE.findall(statement)]


async def test_the_key_and_audit_rows_are_written_before_the_seat_row_is_locked(world: World) -> None:
    """Every request for an offering queues for its seat row's lock (on PostgreSQL until the holder
    commits), so a request writes its own rows first, its stored Idempotency-Key answer too, and the seat
    update is its last statement before the commit."""
    offering_id = await world.offering("sakky", seats=5)
    with statements_during(world) as statements:
        answer = await post(world, enrolment_body(offering_id, "kao", "L1"), key="l1")
    assert answer.status_code == 201
    seen = writes_of(statements)
    assert seen[-1] == "UPDATE offerings"
    assert {"INSERT idempotency_keys", "INSERT audit_log", "INSERT enrolments"} <= set(seen[:-1])
    replay = await post(world, enrolment_body(offering_id, "kao", "L1"), key="l1")
    assert (replay.status_code, replay.content) == (200, answer.content)


async def test_on_postgresql_a_new_request_is_two_statements(world: World, db_kind: str) -> None:
    """Each statement on PostgreSQL is a round trip: the lookup, then the student, enrolment, outbox,
    audit and Idempotency-Key inserts travel with the seat update as one statement (its CTEs); the
    enrolment's foreign key to the student inserted beside it holds. SQLite runs them one by one."""
    offering_id = await world.offering("sakky", seats=5)
    with statements_during(world) as statements:
        answer = await post(world, enrolment_body(offering_id, "kao", "RT1"), key="rt1")
    assert answer.status_code == 201
    writes = writes_of(statements)
    assert writes[-1] == "UPDATE offerings"
    expected = {"INSERT students", "INSERT enrolments", "INSERT audit_log", "INSERT idempotency_keys"}
    if db_kind == "postgres":
        assert len(statements) == 2, statements
        expected.add("INSERT outbox")  # on SQLite the outbox row goes straight to sqlite3 (shared.direct)
    assert expected <= set(writes)
    async with world.engine.connect() as conn:
        stored = (
            await conn.execute(sa.select(enrolments.c.student_id).where(enrolments.c.id == answer.json()["id"]))
        ).one()
    assert stored.student_id == answer.json()["student_ref"]
    assert len(await staged(world, "enrolment.requested")) == 1


async def test_a_waitlisted_request_stores_its_waitlisted_answer_under_its_key(world: World) -> None:
    """The key's answer is stored before the seat is tried, as if seated; a full offering corrects it."""
    offering_id = await world.offering("sakky", seats=1)
    await post(world, enrolment_body(offering_id, "kao", "W1"), key="w1")
    with statements_during(world) as statements:
        waiting = await post(world, enrolment_body(offering_id, "kao", "W2"), key="w2")
    assert (waiting.status_code, waiting.json()["status"], waiting.json()["waitlist_position"]) == (
        201,
        "waitlisted",
        1,
    )
    assert writes_of(statements).count("UPDATE idempotency_keys") == 1
    replay = await post(world, enrolment_body(offering_id, "kao", "W2"), key="w2")
    assert (replay.status_code, replay.content) == (200, waiting.content)
    assert (await world.client.get(f"/{waiting.json()['id']}", headers=COUNSELLOR)).json() == waiting.json()
    assert await world.count(idempotency_keys) == 2


async def test_a_replay_gets_the_first_answer_even_after_the_offering_closed(world: World) -> None:
    offering_id = await world.offering("sakky")
    first = await post(world, enrolment_body(offering_id, "kao", "R1"), key="r1")
    assert first.status_code == 201
    async with world.engine.begin() as conn:
        await conn.execute(offerings.update().values(enrolment_closes=TODAY - timedelta(days=1)))
    replay = await post(world, enrolment_body(offering_id, "kao", "R1"), key="r1")
    assert (replay.status_code, replay.json()) == (200, first.json())
    other_body = await post(world, enrolment_body(offering_id, "kao", "R2"), key="r1")
    assert other_body.status_code == 409
    assert "different request body" in other_body.json()["detail"]
    new_key = await post(world, enrolment_body(offering_id, "kao", "R2"), key="r2")
    assert new_key.status_code == 409
    assert "Enrolment closed" in new_key.json()["detail"]
    assert await world.count(enrolments) == 1
    assert await world.count(audit_log, audit_log.c.action == "enrolment.request") == 1
    assert await world.count(idempotency_keys) == 1


async def test_a_replay_changes_nothing_and_writes_no_second_audit_row_or_event(world: World) -> None:
    offering_id = await world.offering("sakky")
    first = await post(world, enrolment_body(offering_id, "kao", "N1"), key="n1")
    for _ in range(3):
        again = await post(world, enrolment_body(offering_id, "kao", "N1"), key="n1")
        assert (again.status_code, again.content) == (200, first.content)
    assert await world.count(enrolments) == 1
    assert await world.count(outbox) == 1
    assert await world.count(audit_log, audit_log.c.action == "enrolment.request") == 1
    async with world.engine.connect() as conn:
        held = (await conn.execute(sa.select(offerings.c.held).where(offerings.c.id == offering_id))).scalar_one()
    assert held == 1


async def test_an_expired_key_starts_a_new_request(world: World) -> None:
    offering_id = await world.offering("sakky")
    first = await post(world, enrolment_body(offering_id, "kao", "E1"), key="e1")
    async with world.engine.begin() as conn:
        await conn.execute(idempotency_keys.update().values(created_at=time.time() - KEEP_S - 60))
    again = await post(world, enrolment_body(offering_id, "kao", "E1"), key="e1")
    # Run again: the student already holds this enrolment, so it is answered (200) and stored anew.
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    async with world.engine.connect() as conn:
        created_at = (await conn.execute(sa.select(idempotency_keys.c.created_at))).scalar_one()
    assert created_at > time.time() - 60
    assert await world.count(enrolments) == 1


async def test_a_late_or_repeated_decision_changes_nothing(world: World) -> None:
    offering_id = await world.offering("sakky")
    enrolment = (await post(world, enrolment_body(offering_id, "kao", "D1"))).json()
    async with world.engine.begin() as conn:
        await handlers.on_commitment_accepted(conn, decision(enrolment, accept=True))
        await handlers.on_commitment_accepted(conn, decision(enrolment, accept=True))
        await handlers.on_commitment_rejected(conn, decision(enrolment, accept=False))
    [confirmed] = await staged(world, "enrolment.confirmed")
    assert await staged(world, "enrolment.rejected") == []
    assert (confirmed.subject, confirmed.sequence) == (enrolment["id"], 2)
    assert confirmed.data == {
        "enrolment_id": enrolment["id"],
        "offering_id": offering_id,
        "provider_id": "sakky",
        "home_institution_id": "kao",
        "student_ref": enrolment["student_ref"],
        "academic_year": "2026-2027",
    }
    read = (await world.client.get(f"/{enrolment['id']}", headers=COUNSELLOR)).json()
    assert read["status"] == "confirmed" and read["commitment_id"] is not None


async def test_a_rejection_releases_the_seat_to_the_first_waitlisted(world: World) -> None:
    offering_id = await world.offering("sakky", seats=1)
    seated = (await post(world, enrolment_body(offering_id, "kao", "S1"))).json()
    waiting = (await post(world, enrolment_body(offering_id, "kao", "S2"))).json()
    async with world.engine.begin() as conn:
        await handlers.on_commitment_rejected(conn, decision(seated, accept=False))
    [rejected] = await staged(world, "enrolment.rejected")
    assert (rejected.subject, rejected.sequence, rejected.data["reason"]) == (seated["id"], 2, "no")
    promoted = (await world.client.get(f"/{waiting['id']}", headers=COUNSELLOR)).json()
    assert (promoted["status"], promoted["waitlist_position"]) == ("awaiting_commitment", None)
    assert [e.subject for e in await staged(world, "enrolment.requested")] == [seated["id"], waiting["id"]]


async def test_a_decision_for_an_enrolment_not_here_yet_is_retried(world: World) -> None:
    ghost = {"id": str(uuid.uuid4()), "offering_id": "nowhere"}
    async with world.engine.begin() as conn:
        with pytest.raises(NotFound):
            await handlers.on_commitment_accepted(conn, decision(ghost, accept=True))


async def test_the_request_lookup_finds_the_students_active_enrolment_by_both_index_columns(world: World) -> None:
    """The one-active check reads one index entry, not every enrolment of the offering.

    Written as a join, PostgreSQL's generic plan (the one a prepared statement settles on) looked the
    offering up alone and filtered all of its enrolments for the student: 1,500 rows read per request
    in the bench, more with every enrolment of an opening rush.
    """
    offering_id = await world.offering("sakky", seats=500)
    for i in range(40):
        await post(world, enrolment_body(offering_id, "kao", f"P{i}"))
    statement = handlers._OFFERING_AND_STUDENT
    async with world.engine.connect() as conn:
        compiled = statement.compile(dialect=conn.dialect)
        values = {"offering_id": offering_id, "home": "kao", "learner_id": "P7"}
        args = [values[name] for name in compiled.positiontup or ()]
        if conn.dialect.name == "sqlite":
            rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled.string}", tuple(args))).all()
            details = [str(row[-1]) for row in rows]
            assert any("uq_enrolments_one_active (offering_id=? AND student_id=?)" in d for d in details), details
        else:
            literals = ", ".join(f"'{value}'" for value in args)  # our own test values
            await conn.exec_driver_sql(f"PREPARE lookup AS {compiled.string}")
            await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            rows = (await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE lookup({literals})")).all()
            plan = json.dumps(rows[0][0])
            assert "Rows Removed by Join Filter" not in plan, plan
            assert re.search(r"uq_enrolments_one_active.*student_id", plan), plan
        found = (await conn.execute(statement, values)).one()
        assert found.active_id is not None  # and it still finds the enrolment
        await conn.rollback()
