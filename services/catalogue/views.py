"""Read queries for the catalogue's GET endpoints (also the source of event payloads)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue.domain import DEFAULT_GUIDELINE, Guideline
from services.catalogue.tables import courses, institutions, offerings, pricing_guidelines
from shared.errors import NotFound


def institution_dict(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "names": {"fi": row.name_fi, "sv": row.name_sv, "en": row.name_en},
        "kind": row.kind,
        "member": row.member,
        "municipality": row.municipality,
        "region": row.region,
        "business_id": row.business_id,
        "einvoice_address": row.einvoice_address,
    }


async def get_institution(conn: AsyncConnection, institution_id: str) -> dict[str, Any]:
    row = (await conn.execute(sa.select(institutions).where(institutions.c.id == institution_id))).first()
    if row is None:
        raise NotFound(f"Institution {institution_id!r} is not registered.")
    return institution_dict(row)


async def list_institutions(
    conn: AsyncConnection, *, member: bool | None, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    query = sa.select(institutions)
    if member is not None:
        query = query.where(institutions.c.member == member)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await conn.execute(query.order_by(institutions.c.id).offset(offset).limit(limit))).all()
    return total, [institution_dict(r) for r in rows]


def guideline_of(row: sa.Row[Any]) -> Guideline:
    return Guideline(
        price_per_credit=row.price_per_credit,
        external_surcharge_percent=row.external_surcharge_percent,
        late_withdrawal_percent=row.late_withdrawal_percent,
        free_cancellation_days=row.free_cancellation_days,
    )


async def guideline_for(conn: AsyncConnection, academic_year: str) -> Guideline:
    """The year's guideline, or the network's default until one is set."""
    row = (
        await conn.execute(sa.select(pricing_guidelines).where(pricing_guidelines.c.academic_year == academic_year))
    ).first()
    return DEFAULT_GUIDELINE if row is None else guideline_of(row)


async def all_guidelines(conn: AsyncConnection) -> dict[str, Guideline]:
    rows = (await conn.execute(sa.select(pricing_guidelines))).all()
    return {row.academic_year: guideline_of(row) for row in rows}


def course_dict(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "provider_id": row.provider_id,
        "code": row.code,
        "titles": {"fi": row.title_fi, "sv": row.title_sv, "en": row.title_en},
        "descriptions": {"fi": row.description_fi, "sv": row.description_sv, "en": row.description_en},
        "subject": row.subject,
        "level": row.level,
        "credits": row.credits,
        "languages": row.languages.split(","),
        "delivery_mode": row.delivery_mode,
        "teacher_contact": row.teacher_contact,
    }


async def get_course(conn: AsyncConnection, course_id: str) -> dict[str, Any]:
    row = (await conn.execute(sa.select(courses).where(courses.c.id == course_id))).first()
    if row is None:
        raise NotFound(f"Course {course_id!r} does not exist.")
    return course_dict(row)


async def list_courses(
    conn: AsyncConnection, *, provider: str | None, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    query = sa.select(courses)
    if provider:
        query = query.where(courses.c.provider_id == provider)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await conn.execute(query.order_by(courses.c.code).offset(offset).limit(limit))).all()
    return total, [course_dict(r) for r in rows]


_OFFERING_COLUMNS = (
    offerings,
    courses.c.code,
    courses.c.title_fi,
    courses.c.title_sv,
    courses.c.title_en,
    courses.c.subject,
    courses.c.level,
    courses.c.credits,
    courses.c.languages,
    courses.c.delivery_mode,
    institutions.c.region,
)


def _offering_query() -> sa.Select[Any]:
    return sa.select(*_OFFERING_COLUMNS).select_from(
        offerings.join(courses, courses.c.id == offerings.c.course_id).join(
            institutions, institutions.c.id == offerings.c.provider_id
        )
    )


def offering_dict(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "course_id": row.course_id,
        "course_code": row.code,
        "provider_id": row.provider_id,
        "titles": {"fi": row.title_fi, "sv": row.title_sv, "en": row.title_en},
        "subject": row.subject,
        "level": row.level,
        "credits": row.credits,
        "languages": row.languages.split(","),
        "delivery_mode": row.delivery_mode,
        "academic_year": row.academic_year,
        "start_date": row.start_date,
        "end_date": row.end_date,
        "enrolment_opens": row.enrolment_opens,
        "enrolment_closes": row.enrolment_closes,
        "min_participants": row.min_participants,
        "max_participants": row.max_participants,
        "member_price": row.member_price,
        "external_price": row.external_price,
        "free_cancellation_deadline": row.free_cancellation_deadline,
        "status": row.status,
        "region": row.region,
        "external_id": row.external_id,
        "late_withdrawal_percent": row.late_withdrawal_percent,
        "published_at": row.published_at,
        "cancellation_reason": row.cancellation_reason,
        "version": row.version,
    }


async def get_offering(conn: AsyncConnection, offering_id: str) -> dict[str, Any]:
    row = (await conn.execute(_offering_query().where(offerings.c.id == offering_id))).first()
    if row is None:
        raise NotFound(f"Offering {offering_id!r} does not exist.")
    return offering_dict(row)


async def offering_provider(conn: AsyncConnection, offering_id: str) -> str:
    """The providing institution of an offering (404 if there is no such offering)."""
    found = (await conn.execute(sa.select(offerings.c.provider_id).where(offerings.c.id == offering_id))).first()
    if found is None:
        raise NotFound(f"Offering {offering_id!r} does not exist.")
    return str(found.provider_id)


async def find_offerings(conn: AsyncConnection, *where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
    rows = (await conn.execute(_offering_query().where(*where))).all()
    return [offering_dict(r) for r in rows]


async def offerings_by_ids(conn: AsyncConnection, ids: list[str]) -> list[dict[str, Any]]:
    """Full offerings for the given ids, in the given order."""
    if not ids:
        return []
    rows = (await conn.execute(_offering_query().where(offerings.c.id.in_(ids)))).all()
    by_id = {row.id: offering_dict(row) for row in rows}
    return [by_id[i] for i in ids if i in by_id]
