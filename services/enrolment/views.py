"""Read queries for enrolment GET endpoints and the students' data exports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.enrolment.access import ENROLMENT_SOURCE, enrolment_not_found, student_not_found
from services.enrolment.domain import Status
from services.enrolment.tables import enrolments, offerings, students

_COLUMNS = (enrolments, students.c.learner_id, students.c.name, students.c.email, students.c.erased_at)


def _select() -> sa.Select[Any]:
    return sa.select(*_COLUMNS).select_from(ENROLMENT_SOURCE)


# Built once and run with parameters (see handlers.py).
_ENROLMENT = _select().where(enrolments.c.id == sa.bindparam("enrolment_id"))
_WAITLIST_POSITION = sa.select(sa.func.count()).where(
    enrolments.c.offering_id == sa.bindparam("offering_id"),
    enrolments.c.status == Status.WAITLISTED.value,
    enrolments.c.waitlist_seq <= sa.bindparam("seq"),
)


async def waitlist_position(conn: AsyncConnection, offering_id: str, seq: int | None) -> int | None:
    if seq is None:
        return None
    ahead = await conn.execute(_WAITLIST_POSITION, {"offering_id": offering_id, "seq": seq})
    return int(ahead.scalar_one())


def student_fields(row: Any) -> dict[str, Any]:
    """The personal part of an answer: empty once the student was erased."""
    return {"learner_id": row.learner_id, "name": row.name, "email": row.email, "erased": row.erased_at is not None}


def _as_dict(row: sa.Row[Any], position: int | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "offering_id": row.offering_id,
        "home_institution_id": row.home_institution_id,
        "status": row.status,
        "waitlist_position": position,
        "student_ref": row.student_id,
        "student": student_fields(row),
        "commitment_id": row.commitment_id,
        "grade": row.grade,
        "credits_earned": row.credits_earned,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def get_enrolment(
    conn: AsyncConnection, enrolment_id: str, scope: sa.ColumnElement[bool] | None = None
) -> dict[str, Any]:
    """One enrolment; one outside `scope` (see access.enrolment_scope) answers like a missing one."""
    query = _ENROLMENT if scope is None else _ENROLMENT.where(scope)
    row = (await conn.execute(query, {"enrolment_id": enrolment_id})).first()
    if row is None:
        raise enrolment_not_found(enrolment_id)
    position = (
        await waitlist_position(conn, row.offering_id, row.waitlist_seq) if row.status == Status.WAITLISTED else None
    )
    return _as_dict(row, position)


async def list_enrolments(
    conn: AsyncConnection,
    *,
    filters: dict[str, str | None],
    offset: int,
    limit: int,
    scope: sa.ColumnElement[bool] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    query = _select()
    if scope is not None:
        query = query.where(scope)
    for name, value in filters.items():
        if value is not None:
            query = query.where(enrolments.c[name] == value)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one()
    rows = (
        await conn.execute(query.order_by(enrolments.c.created_at, enrolments.c.id).offset(offset).limit(limit))
    ).all()
    items = []
    for row in rows:
        position = (
            await waitlist_position(conn, row.offering_id, row.waitlist_seq)
            if row.status == Status.WAITLISTED
            else None
        )
        items.append(_as_dict(row, position))
    return total, items


# --- a student's data export ------------------------------------------------------------------------


async def find_student(conn: AsyncConnection, home_institution_id: str, learner_id: str) -> sa.Row[Any] | None:
    """The (not erased) student with this learner id at this home institution, if any."""
    return (
        await conn.execute(
            sa.select(students).where(
                students.c.home_institution_id == home_institution_id, students.c.learner_id == learner_id
            )
        )
    ).first()


async def student_by_ref(conn: AsyncConnection, student_ref: str, scope: sa.ColumnElement[bool]) -> sa.Row[Any]:
    """A student by pseudonymous reference; one outside `scope` (access.student_scope) answers 404."""
    row = (await conn.execute(sa.select(students).where(students.c.id == student_ref, scope))).first()
    if row is None:
        raise student_not_found(student_ref)
    return row


async def student_export(conn: AsyncConnection, student: sa.Row[Any]) -> dict[str, Any]:
    """Everything this service holds about one student: personal fields and every enrolment with results."""
    rows = (
        await conn.execute(
            sa.select(
                enrolments,
                offerings.c.title.label("offering_title"),
                offerings.c.provider_id,
                offerings.c.academic_year,
            )
            .select_from(enrolments.join(offerings, offerings.c.id == enrolments.c.offering_id))
            .where(enrolments.c.student_id == student.id)
            .order_by(enrolments.c.created_at, enrolments.c.id)
        )
    ).all()
    items = []
    for row in rows:
        position = (
            await waitlist_position(conn, row.offering_id, row.waitlist_seq)
            if row.status == Status.WAITLISTED
            else None
        )
        items.append(
            {
                "id": row.id,
                "offering_id": row.offering_id,
                "offering_title": row.offering_title,
                "provider_id": row.provider_id,
                "academic_year": row.academic_year,
                "home_institution_id": row.home_institution_id,
                "status": row.status,
                "waitlist_position": position,
                "commitment_id": row.commitment_id,
                "withdrawn_by": row.withdrawn_by,
                "grade": row.grade,
                "credits_earned": row.credits_earned,
                "created_at": row.created_at,
                "updated_at": row.updated_at,
            }
        )
    return {
        "student_ref": student.id,
        "home_institution_id": student.home_institution_id,
        **student_fields(student),
        "erased_at": student.erased_at,
        "exported_at": datetime.now(UTC),
        "enrolments": items,
    }


def empty_export(home_institution_id: str) -> dict[str, Any]:
    """The export of a learner this service holds nothing about."""
    return {
        "student_ref": None,
        "home_institution_id": home_institution_id,
        "learner_id": None,
        "name": None,
        "email": None,
        "erased": False,
        "erased_at": None,
        "exported_at": datetime.now(UTC),
        "enrolments": [],
    }
