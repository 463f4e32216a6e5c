"""Read queries for enrolment GET endpoints."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.enrolment.domain import Status
from services.enrolment.tables import enrolments, students
from shared.errors import NotFound

_COLUMNS = (enrolments, students.c.learner_id, students.c.name, students.c.email)


def _select() -> sa.Select[Any]:
    return sa.select(*_COLUMNS).select_from(enrolments.join(students, students.c.id == enrolments.c.student_id))


async def waitlist_position(conn: AsyncConnection, offering_id: str, seq: int | None) -> int | None:
    if seq is None:
        return None
    ahead = await conn.execute(
        sa.select(sa.func.count()).where(
            enrolments.c.offering_id == offering_id,
            enrolments.c.status == Status.WAITLISTED,
            enrolments.c.waitlist_seq <= seq,
        )
    )
    return int(ahead.scalar_one())


def _as_dict(row: sa.Row[Any], position: int | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "offering_id": row.offering_id,
        "home_institution_id": row.home_institution_id,
        "status": row.status,
        "waitlist_position": position,
        "student_ref": row.student_id,
        "student": {"learner_id": row.learner_id, "name": row.name, "email": row.email},
        "commitment_id": row.commitment_id,
        "grade": row.grade,
        "credits_earned": row.credits_earned,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def get_enrolment(conn: AsyncConnection, enrolment_id: str) -> dict[str, Any]:
    row = (await conn.execute(_select().where(enrolments.c.id == enrolment_id))).first()
    if row is None:
        raise NotFound(f"Enrolment {enrolment_id!r} does not exist.")
    position = (
        await waitlist_position(conn, row.offering_id, row.waitlist_seq) if row.status == Status.WAITLISTED else None
    )
    return _as_dict(row, position)


async def list_enrolments(
    conn: AsyncConnection, *, filters: dict[str, str | None], offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    query = _select()
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
