"""Read queries for the catalogue's GET endpoints (also the source of event payloads)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue import search
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


def _as_stored(column: sa.ColumnElement[Any], kind: type[sa.types.TypeEngine[Any]]) -> sa.ColumnElement[Any]:
    """The column as the database holds it (no Python-level conversion per value)."""
    return sa.type_coerce(column, kind).label(column.name)


_o, _c = offerings.c, courses.c
# `OfferingRead`'s fields in its order; money as cents and decimals as their text, to be put on the wire as is.
_ITEMS = (
    sa.select(
        _o.id,
        _o.course_id,
        _c.code,
        _o.provider_id,
        _o.external_id,
        _c.title_fi,
        _c.title_sv,
        _c.title_en,
        _c.subject,
        _c.level,
        _as_stored(_c.credits, sa.String),
        _c.languages,
        _c.delivery_mode,
        _o.academic_year,
        _o.start_date,
        _o.end_date,
        _o.enrolment_opens,
        _o.enrolment_closes,
        _o.min_participants,
        _o.max_participants,
        _as_stored(_o.member_price, sa.BigInteger),
        _as_stored(_o.external_price, sa.BigInteger),
        _o.free_cancellation_deadline,
        _o.status,
        institutions.c.region,
        _as_stored(_o.late_withdrawal_percent, sa.String),
        _o.published_at,
        _o.cancellation_reason,
        _o.version,
    )
    .select_from(offerings.join(courses, _c.id == _o.course_id).join(institutions, institutions.c.id == _o.provider_id))
    .where(_o.id.in_(sa.bindparam("ids", expanding=True)))
)


def _money(cents: int) -> str:
    """Cents as `Money` writes them: `12000` → `"120.00"`."""
    if cents >= 0:
        return f"{cents // 100}.{cents % 100:02d}"
    return str(Decimal(cents).scaleb(-2))


def _item(row: tuple[Any, ...]) -> dict[str, Any]:
    """One row of `_ITEMS` as `OfferingRead` puts it on the wire (dates and the timestamp left to orjson)."""
    (id_, course_id, code, provider_id, external_id, fi, sv, en, subject, level, credits, languages, mode) = row[:13]
    (year, start, end, opens, closes, least, most, member, external, deadline, status, region) = row[13:25]
    late, published_at, reason, version = row[25:]
    return {
        "id": id_,
        "course_id": course_id,
        "course_code": code,
        "provider_id": provider_id,
        "external_id": external_id,
        "titles": {"fi": fi, "sv": sv, "en": en},
        "subject": subject,
        "level": level,
        "credits": str(Decimal(credits)),
        "languages": languages.split(","),
        "delivery_mode": mode,
        "academic_year": year,
        "start_date": start,
        "end_date": end,
        "enrolment_opens": opens,
        "enrolment_closes": closes,
        "min_participants": least,
        "max_participants": most,
        "member_price": _money(member),
        "external_price": _money(external),
        "free_cancellation_deadline": deadline,
        "status": status,
        "region": region,
        "late_withdrawal_percent": None if late is None else str(Decimal(late)),
        "published_at": published_at,
        "cancellation_reason": reason,
        "version": version,
    }


async def offering_items(
    conn: AsyncConnection, ids: list[str], cache: search.AnswerCache | None = None, index_generation: int = 0
) -> list[orjson.Fragment]:
    """The offerings with these ids as `OfferingRead` serialises them, in the given order, each already JSON:
    what a search answers, without validating every item through the response model (one prebuilt statement).

    `cache` keeps each item's JSON for the index generation (every change to an offering, its course or
    its provider's region bumps it), so a search reads and serialises only the offerings not shown since."""
    database = conn.engine.url
    found: dict[str, bytes] = {}
    missing = ids
    if cache is not None:
        missing = []
        for offering_id in ids:
            kept = cache.get(database, index_generation, offering_id)
            if kept is None:
                missing.append(offering_id)
            else:
                found[offering_id] = kept
    if missing:
        for row in await conn.execute(_ITEMS, {"ids": missing}):
            found[row[0]] = item = orjson.dumps(_item(row), option=orjson.OPT_UTC_Z)
            if cache is not None:
                cache.put(database, index_generation, row[0], item)
    return [orjson.Fragment(found[i]) for i in ids if i in found]


async def search_answer(
    conn: AsyncConnection,
    criteria: search.Criteria,
    *,
    page: int,
    page_size: int,
    facets: search.FacetCache | None = None,
    answers: search.AnswerCache | None = None,
    items: search.AnswerCache | None = None,
    also_as: Hashable | None = None,
    index_generation: int | None = None,
) -> bytes:
    """One page of a search as the JSON of `SearchPage`: the total, the offerings, the facet counts.

    A search asked before, since the index last changed, is answered from `answers` (one cheap read
    of the index generation); otherwise computed, serialised once with orjson (no response model
    validation of the 50 offerings) and kept, under `also_as` too if given (an anonymous search's raw
    query string: `search.cache.RepeatedSearchMiddleware`). `items` keeps each offering's JSON
    (`offering_items`). `index_generation`, if the caller read it for this request already, is not read
    again."""
    terms = search.query_terms(criteria.q)
    key = None
    if index_generation is None:
        caches = answers is not None or facets is not None or items is not None
        index_generation = await search.generation(conn) if caches else 0
    if answers is not None:
        key = (tuple(terms), replace(criteria, q=None, sort=search.page_sort(criteria.sort, terms)), page, page_size)
        found = answers.get(conn.engine.url, index_generation, key)
        if found is not None:
            return found
    hits = await search.search(
        conn,
        criteria,
        offset=(page - 1) * page_size,
        limit=page_size,
        cache=facets,
        index_generation=index_generation if facets is not None else None,
    )
    shown = await offering_items(conn, hits.offering_ids, items, index_generation)
    listing = {"total": hits.total, "page": page, "page_size": page_size, "items": shown, "facets": hits.facets}
    body = orjson.dumps(listing, option=orjson.OPT_UTC_Z)
    if answers is not None:
        answers.put(conn.engine.url, index_generation, key, body)
        if also_as is not None:
            answers.put(conn.engine.url, index_generation, also_as, body)
    return body
