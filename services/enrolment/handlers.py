"""Enrolment use cases and event handlers; each runs inside its caller's transaction.

Statements are built once, here, and run with parameter dicts: on the hot paths (an enrolment
request, billing's decision on it) building a statement and its cache key per call cost more CPU
than the database spent running it. Facts that events need come back from the statement that
changed the row (RETURNING) or from values already in hand, not from a re-read.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.enrolment import domain, views
from services.enrolment.access import enrolment_not_found
from services.enrolment.domain import Status
from services.enrolment.tables import (
    ACTIVE,
    enrolments,
    idempotency_keys,
    institutions,
    offering_tombstones,
    offerings,
    outbox,
    students,
)
from shared.bus import stage, stage_with, unstage
from shared.db import Writes, insert_if_absent
from shared.errors import Invalid, NotFound
from shared.events import (
    CommitmentAccepted,
    CommitmentRejected,
    EnrolmentCancelled,
    EnrolmentCompleted,
    EnrolmentConfirmed,
    EnrolmentRejected,
    EnrolmentRequested,
    EnrolmentWaitlisted,
    EnrolmentWithdrawn,
    Envelope,
    EventData,
    InstitutionRegistered,
    OfferingCancelled,
    OfferingPublished,
    new_event,
)

SOURCE = "enrolment"


@dataclass(frozen=True)
class Student:
    learner_id: str
    name: str
    email: str


@dataclass(frozen=True)
class Withdraw:
    enrolment_id: str
    by: str = "student"


@dataclass(frozen=True)
class RecordResult:
    enrolment_id: str
    outcome: domain.Outcome
    grade: str | None = None
    credits: Decimal | None = None


@dataclass(frozen=True)
class RequestEnrolment:
    offering_id: str
    home_institution_id: str
    student: Student


def _now() -> datetime:
    return datetime.now(UTC)


# --- statements -------------------------------------------------------------------------------------
# Bind parameters of UPDATEs are named b_*: SQLAlchemy keeps plain column names for the SET clause, so
# extra column values given at execution (e.g. a transition's commitment_id) are set as well.

_active = enrolments.alias("active")
# The active statuses as literals, exactly as the partial unique index `uq_enrolments_one_active` names
# them: with bind parameters neither database can prove the lookup matches that index.
_ACTIVE_LITERALS: list[sa.ColumnElement[str]] = [sa.literal_column(f"'{status}'") for status in ACTIVE]

_OFFERING_AND_STUDENT = (
    sa.select(
        offerings.c.status,
        offerings.c.enrolment_opens,
        offerings.c.enrolment_closes,
        offerings.c.provider_id,
        offerings.c.academic_year,
        offerings.c.member_price,
        offerings.c.external_price,
        offerings.c.free_cancellation_deadline,
        sa.select(institutions.c.id).where(institutions.c.id == sa.bindparam("home")).scalar_subquery().label("home"),
        students.c.id.label("student_id"),
        students.c.name,
        students.c.email,
        # A correlated subquery, not a join: both columns of `uq_enrolments_one_active` are then in its
        # index condition. As a join, PostgreSQL's generic plan looked up the offering alone and
        # filtered all of its enrolments for the student (1,500 rows read for one; growing with the rush).
        sa.select(_active.c.id)
        .where(
            _active.c.offering_id == offerings.c.id,
            _active.c.student_id == students.c.id,
            _active.c.status.in_(_ACTIVE_LITERALS),
        )
        .scalar_subquery()
        .label("active_id"),
    )
    .select_from(
        offerings.outerjoin(
            students,
            sa.and_(
                students.c.home_institution_id == sa.bindparam("home"),
                students.c.learner_id == sa.bindparam("learner_id"),
            ),
        )
    )
    .where(offerings.c.id == sa.bindparam("offering_id"))
)
_UPDATE_STUDENT = (
    students.update()
    .where(students.c.id == sa.bindparam("b_id"))
    .values(name=sa.bindparam("b_name"), email=sa.bindparam("b_email"))
)
# An optimistically seated new enrolment whose offering turned out full (request_enrolment).
_TO_WAITLIST = (
    enrolments.update()
    .where(enrolments.c.id == sa.bindparam("b_id"))
    .values(holds_seat=False, created_at=sa.bindparam("at"), updated_at=sa.bindparam("at"))
)

# Race-free on both databases: the row lock / single writer serialises this conditional update.
_HOLD_SEAT = (
    offerings.update()
    .where(
        offerings.c.id == sa.bindparam("b_offering_id"),
        offerings.c.status == "published",
        offerings.c.held < offerings.c.max_participants,
    )
    .values(held=offerings.c.held + 1)
)
_NEXT_WAITLIST_SEQ = (
    offerings.update()
    .where(offerings.c.id == sa.bindparam("b_offering_id"))
    .values(waitlist_seq=offerings.c.waitlist_seq + 1)
    .returning(offerings.c.waitlist_seq)
)
_RELEASE_SEAT = (
    offerings.update()
    .where(offerings.c.id == sa.bindparam("b_offering_id"), offerings.c.held > 0)
    .values(held=offerings.c.held - 1)
)
_FIRST_WAITLISTED = (
    sa.select(enrolments.c.id)
    .where(enrolments.c.offering_id == sa.bindparam("offering_id"), enrolments.c.status == Status.WAITLISTED.value)
    .order_by(enrolments.c.waitlist_seq)
    .limit(1)
)

_FACTS = (
    sa.select(
        enrolments.c.offering_id,
        enrolments.c.home_institution_id,
        enrolments.c.student_id,
        offerings.c.provider_id,
        offerings.c.academic_year,
        offerings.c.member_price,
        offerings.c.external_price,
        offerings.c.free_cancellation_deadline,
    )
    .select_from(enrolments.join(offerings, offerings.c.id == enrolments.c.offering_id))
    .where(enrolments.c.id == sa.bindparam("enrolment_id"))
)
# What a changed enrolment's events say, returned by the UPDATE that changed it.
_RETURNED_FACTS = (
    enrolments.c.version,
    enrolments.c.offering_id,
    enrolments.c.home_institution_id,
    enrolments.c.student_id,
    sa.select(offerings.c.provider_id)
    .where(offerings.c.id == enrolments.c.offering_id)
    .correlate(enrolments)
    .scalar_subquery()
    .label("provider_id"),
    sa.select(offerings.c.academic_year)
    .where(offerings.c.id == enrolments.c.offering_id)
    .correlate(enrolments)
    .scalar_subquery()
    .label("academic_year"),
)
# The next version of an enrolment; the new status and other values come as execution parameters.
_ADVANCE = (
    enrolments.update()
    .where(enrolments.c.id == sa.bindparam("b_id"))
    .values(version=enrolments.c.version + 1)
    .returning(*_RETURNED_FACTS)
)
# Billing's decision moves only an enrolment still awaiting it (domain.confirm / domain.reject), checked
# by the UPDATE under the row lock: a late decision, or one racing a withdrawal, changes nothing.
_DECIDE = (
    enrolments.update()
    .where(enrolments.c.id == sa.bindparam("b_id"), enrolments.c.status == domain.AWAITING_DECISION.value)
    .values(version=enrolments.c.version + 1)
    .returning(*_RETURNED_FACTS)
)
_STATUS = sa.select(enrolments.c.status).where(enrolments.c.id == sa.bindparam("enrolment_id"))
_ENROLMENT_AND_OFFERING = (
    sa.select(
        enrolments.c.status,
        enrolments.c.offering_id,
        offerings.c.free_cancellation_deadline,
        offerings.c.late_withdrawal_percent,
        offerings.c.credits,
    )
    .select_from(enrolments.join(offerings, offerings.c.id == enrolments.c.offering_id))
    .where(enrolments.c.id == sa.bindparam("enrolment_id"))
    .with_for_update(of=enrolments)
)
_ACTIVE_IN_OFFERING = (
    sa.select(enrolments.c.id)
    .where(enrolments.c.offering_id == sa.bindparam("offering_id"), enrolments.c.status.in_(_ACTIVE_LITERALS))
    .order_by(enrolments.c.created_at, enrolments.c.id)
)
_TOMBSTONE = sa.select(offering_tombstones.c.version).where(offering_tombstones.c.id == sa.bindparam("offering_id"))
_OFFERING_EXISTS = sa.select(offerings.c.id).where(offerings.c.id == sa.bindparam("offering_id"))
_CANCEL_OFFERING = (
    offerings.update()
    .where(offerings.c.id == sa.bindparam("b_id"), offerings.c.version < sa.bindparam("b_version"))
    .values(status="cancelled", version=sa.bindparam("b_version"), held=0)
)
_UPDATE_OFFERING_IF_NEWER = offerings.update().where(
    offerings.c.id == sa.bindparam("b_id"), offerings.c.version < sa.bindparam("b_version")
)
_UPDATE_TOMBSTONE_IF_NEWER = offering_tombstones.update().where(
    offering_tombstones.c.id == sa.bindparam("b_id"), offering_tombstones.c.version < sa.bindparam("b_version")
)
_UPDATE_INSTITUTION_IF_NEWER = institutions.update().where(
    institutions.c.id == sa.bindparam("b_id"), institutions.c.version < sa.bindparam("b_version")
)


def _facts_of(enrolment_id: str, row: Any) -> dict[str, Any]:
    return {
        "enrolment_id": enrolment_id,
        "offering_id": row.offering_id,
        "provider_id": row.provider_id,
        "home_institution_id": row.home_institution_id,
        "student_ref": row.student_id,
        "academic_year": row.academic_year,
    }


async def _facts(conn: AsyncConnection, enrolment_id: str) -> tuple[Any, dict[str, Any]]:
    row = (await conn.execute(_FACTS, {"enrolment_id": enrolment_id})).one()
    return row, _facts_of(enrolment_id, row)


async def _emit(conn: AsyncConnection, data: EventData, enrolment_id: str, version: int, correlation_id: str) -> None:
    await stage(
        conn,
        outbox,
        new_event(data, source=SOURCE, subject=enrolment_id, sequence=version, correlation_id=correlation_id),
    )


async def _hold_seat(conn: AsyncConnection, offering_id: str) -> bool:
    held = await conn.execute(_HOLD_SEAT, {"b_offering_id": offering_id})
    return held.rowcount == 1


async def _emit_requested(conn: AsyncConnection, enrolment_id: str, version: int, correlation_id: str) -> None:
    row, facts = await _facts(conn, enrolment_id)
    await _emit(
        conn,
        EnrolmentRequested(
            **facts,
            member_price=row.member_price,
            external_price=row.external_price,
            free_cancellation_deadline=row.free_cancellation_deadline,
        ),
        enrolment_id,
        version,
        correlation_id,
    )


async def request_enrolment(
    conn: AsyncConnection,
    cmd: RequestEnrolment,
    correlation_id: str,
    today: date | None = None,
    before_seat: Callable[[dict[str, Any], Writes], Awaitable[None]] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Hold a seat (or waitlist) for a student. Returns (created, enrolment).

    `before_seat(answer, writes)` runs for a new enrolment just before the offering's seat row is
    locked, with the answer it gets if a seat is free (`awaiting_commitment`): the caller's own inserts
    for it (the audit row, the Idempotency-Key's stored answer), made through `writes`, then do not
    lengthen the time others wait for that lock. If the offering turns out full, the returned answer
    (`waitlisted`) is a new dict.

    The hot path of an opening-day rush: one lookup of the offering, the home institution, the student
    and an active enrolment; then the inserts (student, enrolment, outbox row, `before_seat`'s) and the
    seat update, last on SQLite; on PostgreSQL they travel as one statement (`shared.db.Writes`: the
    server runs the inserts right after the update, so no client round trip happens under the lock but
    the commit). The event and the answer are built from values in hand rather than read back.
    """
    student = cmd.student
    writes = Writes(conn)
    found = (
        await conn.execute(
            _OFFERING_AND_STUDENT,
            {"offering_id": cmd.offering_id, "home": cmd.home_institution_id, "learner_id": student.learner_id},
        )
    ).first()
    if found is None:
        raise NotFound(
            f"Offering {cmd.offering_id!r} is not open for enrolment: it does not exist or is not published yet."
        )
    if found.home is None:
        raise Invalid(f"Home institution {cmd.home_institution_id!r} is not registered in the catalogue.")
    domain.check_can_enrol(found.status, found.enrolment_opens, found.enrolment_closes, today or date.today())
    if found.student_id is None:
        student_id = str(uuid.uuid4())
        await writes.insert(
            students,
            {
                "id": student_id,
                "home_institution_id": cmd.home_institution_id,
                "learner_id": student.learner_id,
                "name": student.name,
                "email": student.email,
            },
        )
    else:
        student_id = str(found.student_id)
        if (found.name, found.email) != (student.name, student.email):
            await conn.execute(_UPDATE_STUDENT, {"b_id": student_id, "b_name": student.name, "b_email": student.email})
        if found.active_id is not None:
            return False, await views.get_enrolment(conn, found.active_id)

    # Optimistically seated: the enrolment row and its event are written first and the offering's seat
    # row is locked last. Every request for the offering waits for that lock, on PostgreSQL until the
    # holder commits, so it is held for as few statements as possible (with one hot offering the lock
    # wait was most of a request's time: docs/performance.md). If the seats went meanwhile, the same
    # transaction takes the event back and waitlists the row instead.
    enrolment_id = str(uuid.uuid4())
    now = _now()
    facts = {
        "enrolment_id": enrolment_id,
        "offering_id": cmd.offering_id,
        "provider_id": found.provider_id,
        "home_institution_id": cmd.home_institution_id,
        "student_ref": student_id,
        "academic_year": found.academic_year,
    }
    await writes.insert(
        enrolments,
        {
            "id": enrolment_id,
            "offering_id": cmd.offering_id,
            "student_id": student_id,
            "home_institution_id": cmd.home_institution_id,
            "status": Status.AWAITING_COMMITMENT.value,
            "holds_seat": True,
            "waitlist_seq": None,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        },
    )
    requested = EnrolmentRequested(
        **facts,
        member_price=found.member_price,
        external_price=found.external_price,
        free_cancellation_deadline=found.free_cancellation_deadline,
    )
    event = new_event(requested, source=SOURCE, subject=enrolment_id, sequence=1, correlation_id=correlation_id)
    await stage_with(writes, outbox, event)
    seated = {
        "id": enrolment_id,
        "offering_id": cmd.offering_id,
        "home_institution_id": cmd.home_institution_id,
        "status": Status.AWAITING_COMMITMENT,
        "waitlist_position": None,
        "student_ref": student_id,
        "student": {"learner_id": student.learner_id, "name": student.name, "email": student.email, "erased": False},
        "commitment_id": None,
        "grade": None,
        "credits_earned": None,
        "created_at": now,
        "updated_at": now,
    }
    if before_seat is not None:
        await before_seat(seated, writes)
    if (await writes.execute(_HOLD_SEAT, {"b_offering_id": cmd.offering_id})).rowcount == 1:
        return True, seated
    await unstage(conn, outbox, event.id)
    waitlist_seq = (await conn.execute(_NEXT_WAITLIST_SEQ, {"b_offering_id": cmd.offering_id})).scalar_one()
    now = _now()  # taken under the offering's row lock, so creation times follow the waitlist order
    await conn.execute(
        _TO_WAITLIST,
        {"b_id": enrolment_id, "status": Status.WAITLISTED.value, "waitlist_seq": waitlist_seq, "at": now},
    )
    position = await views.waitlist_position(conn, cmd.offering_id, waitlist_seq)
    await _emit(conn, EnrolmentWaitlisted(**facts, waitlist_position=position), enrolment_id, 1, correlation_id)
    waitlisted = {"status": Status.WAITLISTED, "waitlist_position": position, "created_at": now, "updated_at": now}
    return True, {**seated, **waitlisted}


async def _transition(conn: AsyncConnection, enrolment_id: str, new_status: Status, **values: Any) -> sa.Row[Any]:
    """Move an enrolment to `new_status` (and set `values`); returns its new version and event facts."""
    changes = {"b_id": enrolment_id, "status": new_status.value, "updated_at": _now(), **values}
    return (await conn.execute(_ADVANCE, changes)).one()


async def _decide(conn: AsyncConnection, enrolment_id: str, new_status: Status, **values: Any) -> sa.Row[Any] | None:
    """Billing's decision on an enrolment awaiting it; None (nothing changed) if it no longer awaits one.

    Raises NotFound when the enrolment is not here (yet), so that the event is retried.
    """
    changes = {"b_id": enrolment_id, "status": new_status.value, "updated_at": _now(), **values}
    row = (await conn.execute(_DECIDE, changes)).first()
    if row is None and (await conn.execute(_STATUS, {"enrolment_id": enrolment_id})).first() is None:
        raise NotFound(f"enrolment {enrolment_id} not found (yet)")
    return row


async def promote_waitlisted(conn: AsyncConnection, offering_id: str, correlation_id: str) -> int:
    """Give free seats to the first waitlisted students, in FIFO order. Returns how many moved."""
    promoted = 0
    while True:
        first = (await conn.execute(_FIRST_WAITLISTED, {"offering_id": offering_id})).first()
        if first is None or not await _hold_seat(conn, offering_id):
            return promoted
        row = await _transition(conn, first.id, Status.AWAITING_COMMITMENT, holds_seat=True, waitlist_seq=None)
        await _emit_requested(conn, first.id, row.version, correlation_id)
        promoted += 1


async def _release_seat(conn: AsyncConnection, offering_id: str) -> None:
    await conn.execute(_RELEASE_SEAT, {"b_offering_id": offering_id})


async def _upsert_if_newer(
    conn: AsyncConnection, update: sa.Update, table: sa.Table, key: str, version: int, values: dict[str, Any]
) -> bool:
    """shared.db.upsert_if_newer with this table's UPDATE built once: a stale event changes nothing.

    Returns whether the row is new (inserted now)."""
    updated = await conn.execute(update, {"b_id": key, "b_version": version, "version": version, **values})
    if updated.rowcount:
        return False
    return await insert_if_absent(conn, table, {"id": key, **values, "version": version})


# --- consumed events -------------------------------------------------------------------------------


async def on_institution(conn: AsyncConnection, event: Envelope) -> None:
    data = InstitutionRegistered.model_validate(event.data)
    await _upsert_if_newer(
        conn, _UPDATE_INSTITUTION_IF_NEWER, institutions, data.institution_id, event.sequence, {"member": data.member}
    )


async def on_offering(conn: AsyncConnection, event: Envelope) -> None:
    """Keep the local copy current; an older version than the one held is ignored."""
    data = OfferingPublished.model_validate(event.data)
    values = {
        "provider_id": data.provider_id,
        "academic_year": data.academic_year,
        "title": data.titles.fi or data.titles.sv or data.titles.en or data.offering_id,
        "start_date": data.start_date,
        "enrolment_opens": data.enrolment_opens,
        "enrolment_closes": data.enrolment_closes,
        "free_cancellation_deadline": data.free_cancellation_deadline,
        "max_participants": data.max_participants,
        "credits": data.credits,
        "late_withdrawal_percent": str(data.late_withdrawal_percent),
        "member_price": data.member_price,
        "external_price": data.external_price,
        "status": event.data.get("status", "published"),
    }
    tombstone = (await conn.execute(_TOMBSTONE, {"offering_id": data.offering_id})).first()
    if tombstone is not None and tombstone.version >= event.sequence:
        return
    new = await _upsert_if_newer(conn, _UPDATE_OFFERING_IF_NEWER, offerings, data.offering_id, event.sequence, values)
    if not new:  # a new offering has nobody waiting yet (enrolling needs its row): skip the lookup
        await promote_waitlisted(conn, data.offering_id, event.correlationid)


async def on_commitment_accepted(conn: AsyncConnection, event: Envelope) -> None:
    data = CommitmentAccepted.model_validate(event.data)
    row = await _decide(conn, data.enrolment_id, Status.CONFIRMED, commitment_id=data.commitment_id)
    if row is None:
        return
    confirmed = EnrolmentConfirmed(**_facts_of(data.enrolment_id, row))
    await _emit(conn, confirmed, data.enrolment_id, row.version, event.correlationid)


async def on_commitment_rejected(conn: AsyncConnection, event: Envelope) -> None:
    data = CommitmentRejected.model_validate(event.data)
    row = await _decide(conn, data.enrolment_id, Status.REJECTED, holds_seat=False, commitment_id=data.commitment_id)
    if row is None:
        return
    await _release_seat(conn, row.offering_id)
    rejected = EnrolmentRejected(**_facts_of(data.enrolment_id, row), reason=data.reason)
    await _emit(conn, rejected, data.enrolment_id, row.version, event.correlationid)
    await promote_waitlisted(conn, row.offering_id, event.correlationid)


async def _enrolment_and_offering(conn: AsyncConnection, enrolment_id: str) -> Any:
    row = (await conn.execute(_ENROLMENT_AND_OFFERING, {"enrolment_id": enrolment_id})).first()
    if row is None:
        raise enrolment_not_found(enrolment_id)
    return row


async def withdraw(
    conn: AsyncConnection, cmd: Withdraw, correlation_id: str, today: date | None = None
) -> dict[str, Any]:
    """Withdraw from an offering: free before the deadline, charged after; a freed seat goes to the waitlist."""
    row = await _enrolment_and_offering(conn, cmd.enrolment_id)
    decision = domain.withdraw(
        row.status, row.free_cancellation_deadline, today or date.today(), Decimal(row.late_withdrawal_percent)
    )
    changed = await _transition(
        conn, cmd.enrolment_id, Status.WITHDRAWN, holds_seat=False, waitlist_seq=None, withdrawn_by=cmd.by
    )
    if decision.frees_seat:
        await _release_seat(conn, row.offering_id)
    event = EnrolmentWithdrawn(
        **_facts_of(cmd.enrolment_id, changed),
        late=decision.late,
        charge_percent=decision.charge_percent,
        was_waitlisted=decision.was_waitlisted,
    )
    await _emit(conn, event, cmd.enrolment_id, changed.version, correlation_id)
    if decision.frees_seat:
        await promote_waitlisted(conn, row.offering_id, correlation_id)
    return await views.get_enrolment(conn, cmd.enrolment_id)


async def record_result(conn: AsyncConnection, cmd: RecordResult, correlation_id: str) -> dict[str, Any]:
    """The provider records passed / failed / interrupted; the commitment becomes chargeable."""
    row = await _enrolment_and_offering(conn, cmd.enrolment_id)
    charge = domain.complete(row.status, cmd.outcome, Decimal(row.late_withdrawal_percent))
    credits = (
        cmd.credits
        if cmd.credits is not None
        else (Decimal(row.credits) if cmd.outcome == domain.Outcome.PASSED else Decimal(0))
    )
    changed = await _transition(
        conn, cmd.enrolment_id, Status(cmd.outcome.value), grade=cmd.grade, credits_earned=str(credits)
    )
    event = EnrolmentCompleted(
        **_facts_of(cmd.enrolment_id, changed),
        outcome=cmd.outcome.value,
        grade=cmd.grade,
        credits_earned=str(credits),
        charge_percent=charge,
    )
    await _emit(conn, event, cmd.enrolment_id, changed.version, correlation_id)
    return await views.get_enrolment(conn, cmd.enrolment_id)


async def on_offering_cancelled(conn: AsyncConnection, event: Envelope) -> None:
    """The provider cancelled the offering: cancel every active enrolment, tell each home institution."""
    data = OfferingCancelled.model_validate(event.data)
    await conn.execute(_CANCEL_OFFERING, {"b_id": data.offering_id, "b_version": event.sequence})
    if (await conn.execute(_OFFERING_EXISTS, {"offering_id": data.offering_id})).first() is None:
        await _upsert_if_newer(
            conn, _UPDATE_TOMBSTONE_IF_NEWER, offering_tombstones, data.offering_id, event.sequence, {}
        )
        return
    active = (await conn.execute(_ACTIVE_IN_OFFERING, {"offering_id": data.offering_id})).scalars().all()
    for enrolment_id in active:
        changed = await _transition(conn, enrolment_id, Status.CANCELLED, holds_seat=False, waitlist_seq=None)
        cancelled = EnrolmentCancelled(**_facts_of(enrolment_id, changed), reason=data.reason)
        await _emit(conn, cancelled, enrolment_id, changed.version, event.correlationid)


# --- personal data ---------------------------------------------------------------------------------

ERASED_STUDENT = {"learner_id": None, "name": None, "email": None, "erased": True}


async def erase_student(conn: AsyncConnection, student_ref: str) -> bool:
    """Remove a student's personal data; the pseudonymous row and its enrolments stay. Returns whether
    anything was erased now (False: erased before).

    With the learner id gone the student can no longer be found by it: enrolling the same learner
    again makes a new pseudonymous student. Events never carried personal data, so none is published.
    Stored Idempotency-Key answers that showed the student are rewritten without it.
    """
    result = await conn.execute(
        students.update()
        .where(students.c.id == student_ref, students.c.erased_at.is_(None))
        .values(learner_id=None, name=None, email=None, erased_at=_now())
    )
    if result.rowcount != 1:
        return False
    # Keys live 24 h and erasures are rare: a scan of the table beats an index every request would pay for.
    pattern = "%" + orjson.dumps({"student_ref": student_ref})[1:-1].decode() + "%"  # %"student_ref":"<ref>"%
    column = idempotency_keys.c.body
    text = sa.func.convert_from(column, "UTF8") if conn.dialect.name == "postgresql" else sa.cast(column, sa.Text)
    stored = await conn.execute(sa.select(idempotency_keys.c.key, column).where(text.like(pattern)))
    for key, body in stored.all():
        answer = orjson.loads(body)
        if isinstance(answer, dict) and answer.get("student_ref") == student_ref and "student" in answer:
            answer["student"] = dict(ERASED_STUDENT)
            await conn.execute(
                idempotency_keys.update().where(idempotency_keys.c.key == key).values(body=orjson.dumps(answer))
            )
    return True
