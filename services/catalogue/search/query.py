"""Answering a search: matching, facet counts (cached per index generation), sorting, one page of ids."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue.search.index import generation
from services.catalogue.search.words import prefix_bounds, query_terms
from services.catalogue.tables import course_terms, offering_search

FACETS = ("subject", "level", "language", "delivery_mode", "provider", "region")


@dataclass(frozen=True)
class Criteria:
    """What a search asks for; `None` means "any"."""

    q: str | None = None
    subject: str | None = None
    level: str | None = None
    language: str | None = None
    delivery_mode: str | None = None
    provider: str | None = None
    region: str | None = None
    academic_year: str | None = None
    status: str | None = None
    open_on: date | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    sort: str = "start_date"
    # Whose drafts may match: None for every provider's (the network admin), else only these providers'
    # (a provider's own staff); the default, no one's, is the public catalogue.
    drafts_of: tuple[str, ...] | None = ()


@dataclass(frozen=True)
class Found:
    total: int
    offering_ids: list[str]
    facets: dict[str, list[dict[str, Any]]]


def _term_range(term: str) -> sa.ColumnElement[bool]:
    """Words starting with `term`; a single letter matches only that very word."""
    if len(term) < 2:
        return course_terms.c.term == term
    low, high = prefix_bounds(term)
    return sa.and_(course_terms.c.term >= low, course_terms.c.term < high)


def _scores(term: str) -> sa.Select[Any]:
    """Courses with a word starting with `term`, each with its best weight (+1 for the exact word)."""
    t = course_terms.c
    score = sa.func.max(t.weight + sa.case((t.term == term, 1), else_=0)).label("score")
    return sa.select(t.course_id, score).where(_term_range(term)).group_by(t.course_id)


def _order(sort: str, score: sa.ColumnElement[Any] | None) -> list[sa.ColumnElement[Any]]:
    d = offering_search.c
    if sort == "-start_date":
        return [d.start_date.desc(), d.offering_id.desc()]
    if sort == "title":
        return [d.title_key, d.start_date, d.offering_id]
    if sort == "price":
        return [d.member_price, d.start_date, d.offering_id]
    if sort == "relevance" and score is not None:
        return [score.desc(), d.start_date, d.offering_id]
    return [d.start_date, d.offering_id]


# Above this many hits SQLite does better walking the sort order's index and testing each row's course
# than fetching every hit by course and sorting them; `+column` keeps it off the course_id index.
DENSE = 1000


def _conditions(criteria: Criteria, terms: list[str], *, dense: bool = False) -> list[sa.ColumnElement[bool]]:
    d = offering_search.c
    course: sa.ColumnElement[Any] = sa.literal_column("+offering_search.course_id") if dense else d.course_id
    where: list[sa.ColumnElement[bool]] = []
    for term in terms:
        where.append(course.in_(sa.select(course_terms.c.course_id).where(_term_range(term))))
    equal = {
        d.subject: criteria.subject,
        d.level: criteria.level,
        d.delivery_mode: criteria.delivery_mode,
        d.provider_id: criteria.provider,
        d.region: criteria.region,
        d.academic_year: criteria.academic_year,
        d.status: criteria.status,
    }
    where += [column == value for column, value in equal.items() if value is not None]
    if criteria.language:
        where.append(d.languages.contains(criteria.language))
    if criteria.open_on:
        where += [d.status == "published", d.enrolment_opens <= criteria.open_on]
        where.append(d.enrolment_closes >= criteria.open_on)
    if criteria.drafts_of is not None:
        public: sa.ColumnElement[bool] = d.status != "draft"
        where.append(sa.or_(public, d.provider_id.in_(criteria.drafts_of)) if criteria.drafts_of else public)
    if criteria.min_price is not None:
        where.append(d.member_price >= criteria.min_price)
    if criteria.max_price is not None:
        where.append(d.member_price <= criteria.max_price)
    return where


FACET_COLUMNS = {
    "subject": "subject",
    "level": "level",
    "delivery_mode": "delivery_mode",
    "provider": "provider_id",
    "region": "region",
}


def _facet_query(where: list[sa.ColumnElement[bool]]) -> sa.CompoundSelect[Any]:
    """Total and facet counts in one statement: the hits are grouped once by their combination of facet
    values (a few hundred rows at most, since they are all fixed per course), and each facet is summed
    from those rows. Every facet counts with all filters applied."""
    d = offering_search.c
    columns = (d.subject, d.level, d.languages, d.delivery_mode, d.provider_id, d.region)
    combos = sa.select(*columns, sa.func.count().label("n")).where(*where).group_by(*columns).cte("combos")
    c = combos.c

    def named(text: str) -> sa.ColumnElement[Any]:
        return sa.literal_column(f"'{text}'", sa.String)

    parts = [sa.select(named("total").label("facet"), named("").label("value"), sa.func.sum(c.n).label("n"))]
    for facet, column in FACET_COLUMNS.items():
        parts.append(sa.select(named(facet), c[column], sa.func.sum(c.n)).group_by(c[column]))
    for language in ("fi", "sv", "en"):
        parts.append(
            sa.select(named("language"), named(language), sa.func.sum(c.n)).where(c.languages.contains(language))
        )
    return sa.union_all(*parts)


class FacetCache:
    """Totals and facet counts of recent searches, per index generation (so never stale), least recent out.

    The counts are the costly part of a search over thousands of hits; the page itself is an index walk.
    One per API process; a new generation simply stops matching the old entries.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[int, dict[str, list[dict[str, Any]]]]] = OrderedDict()

    def get(self, key: Hashable) -> tuple[int, dict[str, list[dict[str, Any]]]] | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: Hashable, value: tuple[int, dict[str, list[dict[str, Any]]]]) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


async def _count(
    conn: AsyncConnection, where: list[sa.ColumnElement[bool]]
) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    total = 0
    counts: dict[str, list[dict[str, Any]]] = {name: [] for name in FACETS}
    for facet, value, n in (await conn.execute(_facet_query(where))).all():
        if facet == "total":
            total = int(n or 0)
        elif value is not None and n:
            counts[facet].append({"value": value, "count": int(n)})
    return total, {
        name: sorted(found, key=lambda item: (-item["count"], item["value"])) for name, found in counts.items()
    }


async def search(
    conn: AsyncConnection, criteria: Criteria, *, offset: int, limit: int, cache: FacetCache | None = None
) -> Found:
    """One page of matching offering ids, the total, and facet counts for the whole match."""
    terms = query_terms(criteria.q)
    where = _conditions(criteria, terms)
    key: Hashable = None
    counted = None
    if cache is not None:
        key = (str(conn.engine.url), await generation(conn), tuple(terms), replace(criteria, q=None, sort=""))
        counted = cache.get(key)
    if counted is None:
        counted = await _count(conn, where)
        if cache is not None:
            cache.put(key, counted)
    total, facets = counted
    if offset >= total:
        return Found(total, [], facets)

    d = offering_search
    score: sa.ColumnElement[Any] | None = None
    if terms and total > DENSE and conn.dialect.name == "sqlite":
        where = _conditions(criteria, terms, dense=True)
    page = sa.select(d.c.offering_id).where(*where)
    if criteria.sort == "relevance" and terms:
        # The joins below keep only matching courses: the IN conditions would repeat that work.
        page = sa.select(d.c.offering_id).where(*_conditions(criteria, []))
        for i, term in enumerate(terms):
            scored = _scores(term).subquery(f"s{i}")
            page = page.join_from(d, scored, scored.c.course_id == d.c.course_id)
            score = scored.c.score if score is None else score + scored.c.score
    ids = (await conn.execute(page.order_by(*_order(criteria.sort, score)).offset(offset).limit(limit))).scalars()
    return Found(total, list(ids), facets)
