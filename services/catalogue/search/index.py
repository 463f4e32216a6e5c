"""Keeping the search index current: handlers call these in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue.search.words import term_weights, title_key
from services.catalogue.tables import course_terms, courses, institutions, offering_search, offerings, search_state
from shared.db import insert_ignoring_duplicates


async def next_generation(conn: AsyncConnection) -> None:
    """Mark the index as changing in this transaction. Writing use cases call this before their first
    write: the row lock it takes then always comes first, so two catalogue writes wait for each other
    instead of deadlocking (PostgreSQL) over offering rows and this row taken in opposite orders."""
    s = search_state.c
    bumped = await conn.execute(search_state.update().where(s.id == 1).values(generation=s.generation + 1))
    if bumped.rowcount == 0:
        await conn.execute(insert_ignoring_duplicates(conn, search_state, {"id": 1, "generation": 1}))


_GENERATION = sa.select(search_state.c.generation).where(search_state.c.id == 1)


async def generation(conn: AsyncConnection) -> int:
    """The index generation: it changes with every committed change to the index. Read for every search that
    may be answered from a cache (one primary-key read of a prebuilt statement)."""
    value = (await conn.execute(_GENERATION)).scalar()
    return int(value or 0)


async def index_courses(conn: AsyncConnection, course_ids: Iterable[str]) -> None:
    """Rewrite the words of these courses."""
    ids = sorted(set(course_ids))
    if not ids:
        return
    await next_generation(conn)
    await conn.execute(course_terms.delete().where(course_terms.c.course_id.in_(ids)))
    rows = (await conn.execute(sa.select(courses).where(courses.c.id.in_(ids)))).all()
    values = [
        {"term": term, "course_id": row.id, "weight": weight}
        for row in rows
        for term, weight in term_weights(_course_texts(row)).items()
    ]
    if values:
        await conn.execute(course_terms.insert(), values)


def _course_texts(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "code": row.code,
        "titles": {"fi": row.title_fi, "sv": row.title_sv, "en": row.title_en},
        "descriptions": {"fi": row.description_fi, "sv": row.description_sv, "en": row.description_en},
        "subject": row.subject,
    }


async def index_offerings(conn: AsyncConnection, where: sa.ColumnElement[bool]) -> list[str]:
    """Rewrite the search rows of the offerings matching `where` (e.g. all of one course); returns their ids."""
    rows = (
        await conn.execute(
            sa.select(
                offerings,
                courses.c.subject,
                courses.c.level,
                courses.c.languages,
                courses.c.delivery_mode,
                courses.c.title_fi,
                courses.c.title_sv,
                courses.c.title_en,
                institutions.c.region,
            )
            .select_from(
                offerings.join(courses, courses.c.id == offerings.c.course_id).join(
                    institutions, institutions.c.id == offerings.c.provider_id
                )
            )
            .where(where)
        )
    ).all()
    ids = [row.id for row in rows]
    if not ids:
        return ids
    await next_generation(conn)
    await conn.execute(offering_search.delete().where(offering_search.c.offering_id.in_(ids)))
    await conn.execute(
        offering_search.insert(),
        [
            {
                "offering_id": row.id,
                "course_id": row.course_id,
                "provider_id": row.provider_id,
                "subject": row.subject,
                "level": row.level,
                "languages": row.languages,
                "delivery_mode": row.delivery_mode,
                "region": row.region,
                "academic_year": row.academic_year,
                "status": row.status,
                "start_date": row.start_date,
                "enrolment_opens": row.enrolment_opens,
                "enrolment_closes": row.enrolment_closes,
                "member_price": row.member_price,
                "title_key": title_key({"fi": row.title_fi, "sv": row.title_sv, "en": row.title_en}),
            }
            for row in rows
        ],
    )
    return ids
