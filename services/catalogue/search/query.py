"""Answering a search: matching, facet counts (cached per index generation), sorting, one page of ids.

The statements are built once per *shape* of a search (which filters it has, how many words, which sort)
with bound parameters, so a search only binds its values: building and compiling them anew for every
request cost more CPU than SQLite spent running them.
"""

from __future__ import annotations

import functools
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


# Criteria fields compared for equality, with the offering_search column each one filters.
EQUAL = {
    "subject": "subject",
    "level": "level",
    "delivery_mode": "delivery_mode",
    "provider": "provider_id",
    "region": "region",
    "academic_year": "academic_year",
    "status": "status",
}


@dataclass(frozen=True)
class Shape:
    """What decides a search's SQL, apart from the values bound into it."""

    prefixes: tuple[bool, ...]  # per word: True for a prefix (two letters or more), False for that very word
    equal: tuple[str, ...]  # the EQUAL fields given
    language: bool
    open_on: bool
    drafts: str  # "all" (the network admin), "none" (the public catalogue) or "some" (a provider's staff)
    min_price: bool
    max_price: bool


def plan(criteria: Criteria, terms: list[str]) -> tuple[Shape, dict[str, Any]]:
    """The shape of a search and the values to bind into its statements."""
    params: dict[str, Any] = {}
    for i, term in enumerate(terms):
        if len(term) < 2:
            params[f"w{i}"] = term
        else:
            params[f"w{i}"], params[f"w{i}_high"] = prefix_bounds(term)
    equal = tuple(name for name in EQUAL if getattr(criteria, name) is not None)
    params.update((f"f_{name}", getattr(criteria, name)) for name in equal)
    if criteria.language:
        params["f_language"] = criteria.language
    if criteria.open_on:
        params["f_open_on"] = criteria.open_on
    drafts = "all" if criteria.drafts_of is None else "some" if criteria.drafts_of else "none"
    if drafts == "some":
        params["f_drafts_of"] = list(criteria.drafts_of or ())
    for name in ("min_price", "max_price"):
        if getattr(criteria, name) is not None:
            params[f"f_{name}"] = getattr(criteria, name)
    shape = Shape(
        prefixes=tuple(len(term) >= 2 for term in terms),
        equal=equal,
        language=bool(criteria.language),
        open_on=bool(criteria.open_on),
        drafts=drafts,
        min_price=criteria.min_price is not None,
        max_price=criteria.max_price is not None,
    )
    return shape, params


def _term_range(i: int, prefix: bool) -> sa.ColumnElement[bool]:
    """Words starting with word `i` of the query; a single letter matches only that very word."""
    t = course_terms.c
    if not prefix:
        return t.term == sa.bindparam(f"w{i}")
    return sa.and_(t.term >= sa.bindparam(f"w{i}"), t.term < sa.bindparam(f"w{i}_high"))


def _scores(i: int, prefix: bool) -> sa.Select[Any]:
    """Courses with a word starting with word `i`, each with its best weight (+1 for the exact word)."""
    t = course_terms.c
    score = sa.func.max(t.weight + sa.case((t.term == sa.bindparam(f"w{i}"), 1), else_=0)).label("score")
    return sa.select(t.course_id, score).where(_term_range(i, prefix)).group_by(t.course_id)


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


def _conditions(shape: Shape, *, words: bool = True, dense: bool = False) -> list[sa.ColumnElement[bool]]:
    d = offering_search.c
    course: sa.ColumnElement[Any] = sa.literal_column("+offering_search.course_id") if dense else d.course_id
    where: list[sa.ColumnElement[bool]] = []
    if words and shape.prefixes:
        # The courses with every word, as one set: PostgreSQL's planner estimates the intersection no
        # larger than its smaller part and fetches the few offerings by course, where separate IN
        # conditions made it scan every offering and test each against the second word's courses.
        courses = [sa.select(course_terms.c.course_id).where(_term_range(i, p)) for i, p in enumerate(shape.prefixes)]
        where.append(course.in_(courses[0] if len(courses) == 1 else sa.intersect(*courses)))
    where += [d[EQUAL[name]] == sa.bindparam(f"f_{name}") for name in shape.equal]
    if shape.language:
        where.append(d.languages.contains(sa.bindparam("f_language")))
    if shape.open_on:
        where += [d.status == "published", d.enrolment_opens <= sa.bindparam("f_open_on")]
        where.append(d.enrolment_closes >= sa.bindparam("f_open_on"))
    if shape.drafts != "all":
        public: sa.ColumnElement[bool] = d.status != "draft"
        if shape.drafts == "some":
            public = sa.or_(public, d.provider_id.in_(sa.bindparam("f_drafts_of", expanding=True)))
        where.append(public)
    if shape.min_price:
        where.append(d.member_price >= sa.bindparam("f_min_price"))
    if shape.max_price:
        where.append(d.member_price <= sa.bindparam("f_max_price"))
    return where


FACET_COLUMNS = {
    "subject": "subject",
    "level": "level",
    "delivery_mode": "delivery_mode",
    "provider": "provider_id",
    "region": "region",
}


@functools.lru_cache(maxsize=256)
def _facet_query(shape: Shape) -> sa.CompoundSelect[Any]:
    """Total and facet counts in one statement: the hits are grouped once by their combination of facet
    values (a few hundred rows at most, since they are all fixed per course), and each facet is summed
    from those rows. Every facet counts with all filters applied."""
    d = offering_search.c
    columns = (d.subject, d.level, d.languages, d.delivery_mode, d.provider_id, d.region)
    combos = sa.select(*columns, sa.func.count().label("n")).where(*_conditions(shape)).group_by(*columns).cte("combos")
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


@functools.lru_cache(maxsize=512)
def page_query(shape: Shape, sort: str, dense: bool) -> sa.Select[Any]:
    """The ids of one page of the match (`limit` and `offset` bound), in the order asked for."""
    d = offering_search
    score: sa.ColumnElement[Any] | None = None
    if sort == "relevance" and shape.prefixes:
        # The joins below keep only matching courses: the IN conditions would repeat that work.
        page = sa.select(d.c.offering_id).where(*_conditions(shape, words=False))
        for i, prefix in enumerate(shape.prefixes):
            scored = _scores(i, prefix).subquery(f"s{i}")
            page = page.join_from(d, scored, scored.c.course_id == d.c.course_id)
            score = scored.c.score if score is None else score + scored.c.score
    else:
        page = sa.select(d.c.offering_id).where(*_conditions(shape, dense=dense))
    limit, offset = sa.bindparam("limit", type_=sa.Integer), sa.bindparam("offset", type_=sa.Integer)
    return page.order_by(*_order(sort, score)).limit(limit).offset(offset)


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

    def clear(self) -> None:
        self._entries.clear()


async def _count(
    conn: AsyncConnection, shape: Shape, params: dict[str, Any]
) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    total = 0
    counts: dict[str, list[dict[str, Any]]] = {name: [] for name in FACETS}
    for facet, value, n in (await conn.execute(_facet_query(shape), params)).all():
        if facet == "total":
            total = int(n or 0)
        elif value is not None and n:
            counts[facet].append({"value": value, "count": int(n)})
    return total, {
        name: sorted(found, key=lambda item: (-item["count"], item["value"])) for name, found in counts.items()
    }


async def search(
    conn: AsyncConnection,
    criteria: Criteria,
    *,
    offset: int,
    limit: int,
    cache: FacetCache | None = None,
    index_generation: int | None = None,
) -> Found:
    """One page of matching offering ids, the total, and facet counts for the whole match.

    `index_generation`, if the caller has read it already, saves reading it again for the cache."""
    terms = query_terms(criteria.q)
    shape, params = plan(criteria, terms)
    key: Hashable = None
    counted = None
    if cache is not None:
        if index_generation is None:
            index_generation = await generation(conn)
        key = (conn.engine.url, index_generation, tuple(terms), replace(criteria, q=None, sort=""))
        counted = cache.get(key)
    if counted is None:
        counted = await _count(conn, shape, params)
        if cache is not None:
            cache.put(key, counted)
    total, facets = counted
    if offset >= total:
        return Found(total, [], facets)
    dense = bool(terms) and total > DENSE and conn.dialect.name == "sqlite"
    page = page_query(shape, criteria.sort, dense)
    ids = (await conn.execute(page, {**params, "limit": limit, "offset": offset})).scalars()
    return Found(total, list(ids), facets)


# Filters whose search statements are compiled at start-up (`warm`), each alone and with the words.
_WARM_FILTERS: tuple[dict[str, Any], ...] = (
    {},
    {"subject": "-"},
    {"level": "-"},
    {"language": "-"},
    {"delivery_mode": "-"},
    {"provider": "-"},
    {"region": "-"},
    {"academic_year": "-"},
    {"region": "-", "academic_year": "-"},
)


def common_criteria(today: date) -> list[Criteria]:
    """The public catalogue's common searches: no words, one or two, × no filter or one of the usual
    ones (region with year too), × open for enrolment today or not. Values that match nothing."""
    return [
        Criteria(q=q, open_on=open_on, **filters)
        for q in (None, "zz", "zz zy")
        for filters in _WARM_FILTERS
        for open_on in (None, today)
    ]


async def warm(conn: AsyncConnection, today: date) -> int:
    """Build, compile and run once the statements of the common searches (`common_criteria`), with each
    sort offered on the whole catalogue and relevance with words; returns how many statements ran.

    A search of a shape not met before costs 2-4 ms of CPU to build and compile its statements, 30-40 %
    of an uncached search, and after a start every shape is new: the first searches after a deploy
    would pay for it while a crowd waits behind them. The values match nothing, so each run is cheap.
    """
    ran = 0
    dense_too = conn.dialect.name == "sqlite"
    for criteria in common_criteria(today):
        terms = query_terms(criteria.q)
        shape, params = plan(criteria, terms)
        await conn.execute(_facet_query(shape), params)
        sorts = ["start_date"] + (["relevance"] if terms else [])
        if not terms and not shape.equal and not shape.open_on and not shape.language:
            sorts += ["-start_date", "title", "price"]
        for sort in sorts:
            for dense in (False, True) if terms and dense_too else (False,):
                await conn.execute(page_query(shape, sort, dense), {**params, "limit": 0, "offset": 0})
                ran += 1
        ran += 1
    return ran
