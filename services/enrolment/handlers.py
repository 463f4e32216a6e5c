"""Enrolment use cases and event handlers; each runs inside its caller's transaction."""

from __future__ import annotations

import uuid
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
    enrolments,
    idempotency_keys,
    institutions,
    offering_tombstones,
    offerings,
    outbox,
    students,
)
from shared.bus import stage
from shared.db import upsert_if_newer
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


async def _facts(conn: AsyncConnection, enrolment_id: str) -> tuple[sa.Row[Any], dict[str, Any]]:
    row = (
        await conn.execute(
            sa.select(
                enrolments,
                offerings.c.provider_id,
                offerings.c.academic_year,
                offerings.c.member_price,
                offerings.c.external_price,
                offerings.c.free_cancellation_deadline,
            )
            .select_from(enrolments.join(offerings, offerings.c.id == enrolments.c.offering_id))
            .where(enrolments.c.id == enrolment_id)
        )
    ).one()
    facts = {
        "enrolment_id": row.id,
        "offering_id": row.offering_id,
        "provider_id": row.provider_id,
        "home_institution_id": row.home_institution_id,
        "student_ref": row.student_id,
        "academic_year": row.academic_year,
    }
    return row, facts


async def _emit(conn: AsyncConnection, data: EventData, enrolment_id: str, version: int, correlation_id: str) -> None:
    await stage(
        conn,
        outbox,
        new_event(data, source=SOURCE, subject=enrolment_id, sequence=version, correlation_id=correlation_id),
    )


async def _hold_seat(conn: AsyncConnection, offering_id: str) -> bool:
    """Race-free on both databases: the row lock / single writer serialises this conditional update."""
    held = await conn.execute(
        offerings.update()
        .where(
            offerings.c.id == offering_id,
            offerings.c.status == "published",
            offerings.c.held < offerings.c.max_participants,
        )
        .values(held=offerings.c.held + 1)
    )
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
    conn: AsyncConnection, cmd: RequestEnrolment, correlation_id: str, today: date | None = None
) -> tuple[bool, dict[str, Any]]:
    """Hold a seat (or waitlist) for a student. Returns (created, enrolment).

    The hot path of an opening-day rush: one lookup of offering and home institution, one of the
    student and an active enrolment, the seat, the insert and the outbox row; the event and the answer
    are built from values in hand rather than read back.
    """
    home_known = sa.select(institutions.c.id).where(institutions.c.id == cmd.home_institution_id).scalar_subquery()
    offering = (
        await conn.execute(sa.select(offerings, home_known.label("home")).where(offerings.c.id == cmd.offering_id))
    ).first()
    if offering is None:
        raise NotFound(
            f"Offering {cmd.offering_id!r} is not open for enrolment: it does not exist or is not published yet."
        )
    if offering.home is None:
        raise Invalid(f"Home institution {cmd.home_institution_id!r} is not registered in the catalogue.")
    domain.check_can_enrol(offering.status, offering.enrolment_opens, offering.enrolment_closes, today or date.today())
    student_id, active = await _student_and_active_enrolment(conn, cmd)
    if active is not None:
        return False, await views.get_enrolment(conn, active)

    enrolment_id = str(uuid.uuid4())
    seat = await _hold_seat(conn, cmd.offering_id)
    waitlist_seq = None
    if not seat:
        waitlist_seq = (
            await conn.execute(
                offerings.update()
                .where(offerings.c.id == cmd.offering_id)
                .values(waitlist_seq=offerings.c.waitlist_seq + 1)
                .returning(offerings.c.waitlist_seq)
            )
        ).scalar_one()
    now = _now()  # taken under the offering's row lock, so creation times follow the waitlist order
    status = Status.AWAITING_COMMITMENT if seat else Status.WAITLISTED
    await conn.execute(
        enrolments.insert().values(
            id=enrolment_id,
            offering_id=cmd.offering_id,
            student_id=student_id,
            home_institution_id=cmd.home_institution_id,
            status=status,
            holds_seat=seat,
            waitlist_seq=waitlist_seq,
            version=1,
            created_at=now,
            updated_at=now,
        )
    )
    facts = {
        "enrolment_id": enrolment_id,
        "offering_id": cmd.offering_id,
        "provider_id": offering.provider_id,
        "home_institution_id": cmd.home_institution_id,
        "student_ref": student_id,
        "academic_year": offering.academic_year,
    }
    position = None
    event: EventData
    if seat:
        event = EnrolmentRequested(
            **facts,
            member_price=offering.member_price,
            external_price=offering.external_price,
            free_cancellation_deadline=offering.free_cancellation_deadline,
        )
    else:
        position = await views.waitlist_position(conn, cmd.offering_id, waitlist_seq)
        event = EnrolmentWaitlisted(**facts, waitlist_position=position)
    await _emit(conn, event, enrolment_id, 1, correlation_id)
    student = cmd.student
    return True, {
        "id": enrolment_id,
        "offering_id": cmd.offering_id,
        "home_institution_id": cmd.home_institution_id,
        "status": status,
        "waitlist_position": position,
        "student_ref": student_id,
        "student": {"learner_id": student.learner_id, "name": student.name, "email": student.email, "erased": False},
        "commitment_id": None,
        "grade": None,
        "credits_earned": None,
        "created_at": now,
        "updated_at": now,
    }


async def _student_and_active_enrolment(conn: AsyncConnection, cmd: RequestEnrolment) -> tuple[str, str | None]:
    """The student (stored or updated) and their active enrolment in the offering, if any."""
    active = enrolments.alias("active")
    row = (
        await conn.execute(
            sa.select(students.c.id, students.c.name, students.c.email, active.c.id.label("active_id"))
            .select_from(
                students.outerjoin(
                    active,
                    sa.and_(
                        active.c.student_id == students.c.id,
                        active.c.offering_id == cmd.offering_id,
                        active.c.status.in_(domain.ACTIVE),
                    ),
                )
            )
            .where(
                students.c.home_institution_id == cmd.home_institution_id,
                students.c.learner_id == cmd.student.learner_id,
            )
        )
    ).first()
    student = cmd.student
    if row is None:
        student_id = str(uuid.uuid4())
        await conn.execute(
            students.insert().values(
                id=student_id,
                home_institution_id=cmd.home_institution_id,
                learner_id=student.learner_id,
                name=student.name,
                email=student.email,
            )
        )
        return student_id, None
    if (row.name, row.email) != (student.name, student.email):
        await conn.execute(
            students.update().where(students.c.id == row.id).values(name=student.name, email=student.email)
        )
    return str(row.id), row.active_id


async def _transition(
    conn: AsyncConnection, enrolment_id: str, new_status: Status, *, release_seat: bool = False, **values: Any
) -> int:
    row = (await conn.execute(sa.select(enrolments.c.version).where(enrolments.c.id == enrolment_id))).one()
    version = row.version + 1
    changes: dict[str, Any] = {"status": new_status, "version": version, "updated_at": _now(), **values}
    if release_seat:
        changes["holds_seat"] = False
    await conn.execute(enrolments.update().where(enrolments.c.id == enrolment_id).values(**changes))
    return int(version)


async def promote_waitlisted(conn: AsyncConnection, offering_id: str, correlation_id: str) -> int:
    """Give free seats to the first waitlisted students, in FIFO order. Returns how many moved."""
    promoted = 0
    while True:
        first = (
            await conn.execute(
                sa.select(enrolments.c.id)
                .where(enrolments.c.offering_id == offering_id, enrolments.c.status == Status.WAITLISTED)
                .order_by(enrolments.c.waitlist_seq)
                .limit(1)
            )
        ).first()
        if first is None or not await _hold_seat(conn, offering_id):
            return promoted
        version = await _transition(conn, first.id, Status.AWAITING_COMMITMENT, holds_seat=True, waitlist_seq=None)
        await _emit_requested(conn, first.id, version, correlation_id)
        promoted += 1


async def _release_seat(conn: AsyncConnection, offering_id: str) -> None:
    await conn.execute(
        offerings.update().where(offerings.c.id == offering_id, offerings.c.held > 0).values(held=offerings.c.held - 1)
    )


# --- consumed events -------------------------------------------------------------------------------


async def on_institution(conn: AsyncConnection, event: Envelope) -> None:
    data = InstitutionRegistered.model_validate(event.data)
    await upsert_if_newer(conn, institutions, {"id": data.institution_id}, event.sequence, {"member": data.member})


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
    tombstone = (
        await conn.execute(sa.select(offering_tombstones.c.version).where(offering_tombstones.c.id == data.offering_id))
    ).first()
    if tombstone is not None and tombstone.version >= event.sequence:
        return
    await upsert_if_newer(conn, offerings, {"id": data.offering_id}, event.sequence, values)
    await promote_waitlisted(conn, data.offering_id, event.correlationid)


async def on_commitment_accepted(conn: AsyncConnection, event: Envelope) -> None:
    data = CommitmentAccepted.model_validate(event.data)
    row = (await conn.execute(sa.select(enrolments.c.status).where(enrolments.c.id == data.enrolment_id))).first()
    if row is None:
        raise NotFound(f"enrolment {data.enrolment_id} not found (yet)")
    new_status = domain.confirm(row.status)
    if new_status is None:
        return
    version = await _transition(conn, data.enrolment_id, new_status, commitment_id=data.commitment_id)
    _row, facts = await _facts(conn, data.enrolment_id)
    await _emit(conn, EnrolmentConfirmed(**facts), data.enrolment_id, version, event.correlationid)


async def on_commitment_rejected(conn: AsyncConnection, event: Envelope) -> None:
    data = CommitmentRejected.model_validate(event.data)
    row = (
        await conn.execute(
            sa.select(enrolments.c.status, enrolments.c.offering_id).where(enrolments.c.id == data.enrolment_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"enrolment {data.enrolment_id} not found (yet)")
    new_status = domain.reject(row.status)
    if new_status is None:
        return
    version = await _transition(
        conn, data.enrolment_id, new_status, release_seat=True, commitment_id=data.commitment_id
    )
    await _release_seat(conn, row.offering_id)
    _row, facts = await _facts(conn, data.enrolment_id)
    await _emit(conn, EnrolmentRejected(**facts, reason=data.reason), data.enrolment_id, version, event.correlationid)
    await promote_waitlisted(conn, row.offering_id, event.correlationid)


async def _enrolment_and_offering(conn: AsyncConnection, enrolment_id: str) -> Any:
    row = (
        await conn.execute(
            sa.select(
                enrolments.c.status,
                enrolments.c.offering_id,
                offerings.c.free_cancellation_deadline,
                offerings.c.late_withdrawal_percent,
                offerings.c.credits,
            )
            .select_from(enrolments.join(offerings, offerings.c.id == enrolments.c.offering_id))
            .where(enrolments.c.id == enrolment_id)
            .with_for_update(of=enrolments)
        )
    ).first()
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
    version = await _transition(
        conn, cmd.enrolment_id, Status.WITHDRAWN, release_seat=True, waitlist_seq=None, withdrawn_by=cmd.by
    )
    if decision.frees_seat:
        await _release_seat(conn, row.offering_id)
    _row, facts = await _facts(conn, cmd.enrolment_id)
    event = EnrolmentWithdrawn(
        **facts, late=decision.late, charge_percent=decision.charge_percent, was_waitlisted=decision.was_waitlisted
    )
    await _emit(conn, event, cmd.enrolment_id, version, correlation_id)
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
    version = await _transition(
        conn, cmd.enrolment_id, Status(cmd.outcome.value), grade=cmd.grade, credits_earned=str(credits)
    )
    _row, facts = await _facts(conn, cmd.enrolment_id)
    event = EnrolmentCompleted(
        **facts, outcome=cmd.outcome.value, grade=cmd.grade, credits_earned=str(credits), charge_percent=charge
    )
    await _emit(conn, event, cmd.enrolment_id, version, correlation_id)
    return await views.get_enrolment(conn, cmd.enrolment_id)


async def on_offering_cancelled(conn: AsyncConnection, event: Envelope) -> None:
    """The provider cancelled the offering: cancel every active enrolment, tell each home institution."""
    data = OfferingCancelled.model_validate(event.data)
    await conn.execute(
        offerings.update()
        .where(offerings.c.id == data.offering_id, offerings.c.version < event.sequence)
        .values(status="cancelled", version=event.sequence, held=0)
    )
    exists = (await conn.execute(sa.select(offerings.c.id).where(offerings.c.id == data.offering_id))).first()
    if exists is None:
        await upsert_if_newer(conn, offering_tombstones, {"id": data.offering_id}, event.sequence, {})
        return
    active = (
        (
            await conn.execute(
                sa.select(enrolments.c.id)
                .where(enrolments.c.offering_id == data.offering_id, enrolments.c.status.in_(domain.ACTIVE))
                .order_by(enrolments.c.created_at, enrolments.c.id)
            )
        )
        .scalars()
        .all()
    )
    for enrolment_id in active:
        version = await _transition(conn, enrolment_id, Status.CANCELLED, release_seat=True, waitlist_seq=None)
        _row, facts = await _facts(conn, enrolment_id)
        await _emit(conn, EnrolmentCancelled(**facts, reason=data.reason), enrolment_id, version, event.correlationid)


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
