"""Courses: create and change; a change visible in offerings re-announces every published one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue import domain, search, views
from services.catalogue.handlers.offerings import touch_offerings
from services.catalogue.tables import courses, offerings
from shared.errors import Conflict

# Course columns that offering events and the search rows carry (descriptions, contact: only the word index).
SHOWN_IN_OFFERINGS = {
    "title_fi",
    "title_sv",
    "title_en",
    "subject",
    "level",
    "credits",
    "languages",
    "delivery_mode",
}


@dataclass(frozen=True)
class CreateCourse:
    provider_id: str
    code: str
    titles: dict[str, str | None]
    subject: str
    level: str
    credits: Decimal
    languages: list[str]
    delivery_mode: str
    descriptions: dict[str, str | None] = field(default_factory=dict)
    teacher_contact: str | None = None


def course_row(cmd: CreateCourse) -> dict[str, Any]:
    """The row of a new, checked course (with a fresh id)."""
    return {
        "id": str(uuid.uuid4()),
        "provider_id": cmd.provider_id,
        "code": cmd.code,
        "title_fi": cmd.titles.get("fi") or None,
        "title_sv": cmd.titles.get("sv") or None,
        "title_en": cmd.titles.get("en") or None,
        "description_fi": cmd.descriptions.get("fi") or None,
        "description_sv": cmd.descriptions.get("sv") or None,
        "description_en": cmd.descriptions.get("en") or None,
        "subject": cmd.subject,
        "level": cmd.level,
        "credits": cmd.credits,
        "languages": ",".join(dict.fromkeys(cmd.languages)),
        "delivery_mode": cmd.delivery_mode,
        "teacher_contact": cmd.teacher_contact,
    }


async def create_course(conn: AsyncConnection, cmd: CreateCourse) -> dict[str, Any]:
    await views.get_institution(conn, cmd.provider_id)
    domain.require_text(cmd.titles, "A course title")
    duplicate = (
        await conn.execute(
            sa.select(courses.c.id).where(courses.c.provider_id == cmd.provider_id, courses.c.code == cmd.code)
        )
    ).first()
    if duplicate:
        raise Conflict(f"{cmd.provider_id} already has a course with code {cmd.code!r}.", course_id=duplicate.id)
    values = course_row(cmd)
    await search.next_generation(conn)
    await conn.execute(courses.insert().values(**values))
    await search.index_courses(conn, [values["id"]])
    return await views.get_course(conn, values["id"])


async def apply_course_diff(conn: AsyncConnection, course_id: str, diff: dict[str, Any], correlation_id: str) -> None:
    """Write a checked course change, re-index it, and touch its offerings if they show the change."""
    await search.next_generation(conn)
    await conn.execute(courses.update().where(courses.c.id == course_id).values(**diff))
    await search.index_courses(conn, [course_id])
    if diff.keys() & SHOWN_IN_OFFERINGS:
        ids = (await conn.execute(sa.select(offerings.c.id).where(offerings.c.course_id == course_id))).scalars()
        await touch_offerings(conn, list(ids), correlation_id)


async def update_course(
    conn: AsyncConnection, course_id: str, changes: dict[str, Any], correlation_id: str
) -> dict[str, Any]:
    """Change some fields (titles and descriptions merge per language); prices of offerings stay."""
    current = await views.get_course(conn, course_id)
    diff = domain.revise_course(current, changes)
    if diff:
        await apply_course_diff(conn, course_id, diff, correlation_id)
    return await views.get_course(conn, course_id)
