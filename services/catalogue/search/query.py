"""Answering a search: matching, facet counts (cached per index generation), sorting, one page of ids.

The words of a search are looked up in SQL, everything else is answered from the columnar copy of the
search rows (`facets.Columns`): the match, its facet counts and its page in every sort but relevance,
which ranks by the words in SQL (`page_query`).

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

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue.search.facets import EQUAL, ORDERS, Columns, ColumnStore, Mask
from services.catalogue.search.index import generation
from services.catalogue.search.words import prefix_bounds, query_terms
from services.catalogue.tables import course_terms, offering_search


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


@dataclass(frozen=True)
class Bound:
    """The values a search binds: its words' and its filters'. The words' statement is given the words'
    alone: SQLAlchemy keys its statement cache by the names bound as well as by the statement."""

    words: dict[str, Any]
    filters: dict[str, Any]

    def all(self, **more: Any) -> dict[str, Any]:
        return {**self.words, **self.filters, **more}


def plan(criteria: Criteria, terms: list[str]) -> tuple[Shape, Bound]:
    """The shape of a search and the values to bind into its statements."""
    words: dict[str, Any] = {}
    for i, term in enumerate(terms):
        if len(term) < 2:
            words[f"w{i}"] = term
        else:
            words[f"w{i}"], words[f"w{i}_high"] = prefix_bounds(term)
    filters: dict[str, Any] = {}
    equal = tuple(name for name in EQUAL if getattr(criteria, name) is not None)
    filters.update((f"f_{name}", getattr(criteria, name)) for name in equal)
    if criteria.language:
        filters["f_language"] = criteria.language
    if criteria.open_on:
        filters["f_open_on"] = criteria.open_on
    drafts = "all" if criteria.drafts_of is None else "some" if criteria.drafts_of else "none"
    if drafts == "some":
        filters["f_drafts_of"] = list(criteria.drafts_of or ())
    for name in ("min_price", "max_price"):
        if getattr(criteria, name) is not None:
            filters[f"f_{name}"] = getattr(criteria, name)
    shape = Shape(
        prefixes=tuple(len(term) >= 2 for term in terms),
        equal=equal,
        language=bool(criteria.language),
        open_on=bool(criteria.open_on),
        drafts=drafts,
        min_price=criteria.min_price is not None,
        max_price=criteria.max_price is not None,
    )
    return shape, Bound(words, filters)


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
    if sort == "relevance" and score is not None:
        d = offering_search.c
        return [score.desc(), d.start_date, d.offering_id]
    return list(ORDERS.get(sort, ORDERS["start_date"]))


def _conditions(shape: Shape, *, words: bool = True) -> list[sa.ColumnElement[bool]]:
    d = offering_search.c
    where: list[sa.ColumnElement[bool]] = []
    if words and shape.prefixes:
        # The courses with every word, as one set: PostgreSQL's planner estimates the intersection no
        # larger than its smaller part and fetches the few offerings by course, where separate IN
        # conditions made it scan every offering and test each against the second word's courses.
        where.append(d.course_id.in_(words_query(shape.prefixes)))
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


@functools.lru_cache(maxsize=64)
def words_query(prefixes: tuple[bool, ...]) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """The courses that have every word of a search (bound as in `plan`)."""
    courses = [sa.select(course_terms.c.course_id).where(_term_range(i, p)) for i, p in enumerate(prefixes)]
    return courses[0] if len(courses) == 1 else sa.intersect(*courses)


def page_sort(sort: str, terms: list[str]) -> str:
    """The order a page is really in: relevance ranks by the words, so without words it is start date.
    Searches that differ only so get the same page (the answer cache's key); `Columns.page` takes only this."""
    return "start_date" if sort == "relevance" and not terms else sort


def ranks_by_relevance(sort: str, shape: Shape) -> bool:
    """Whether the page is ranked by the words in SQL; every other page comes from the columns."""
    return sort == "relevance" and bool(shape.prefixes)


@functools.lru_cache(maxsize=512)
def page_query(shape: Shape, sort: str) -> sa.Select[Any]:
    """The ids of one page of the match (`limit` and `offset` bound), in the order asked for: what a search
    ranked by relevance runs, and for the other sorts what the tests hold `Columns.page` to."""
    d = offering_search
    score: sa.ColumnElement[Any] | None = None
    if ranks_by_relevance(sort, shape):
        # The joins below keep only matching courses: the IN conditions would repeat that work.
        page = sa.select(d.c.offering_id).where(*_conditions(shape, words=False))
        for i, prefix in enumerate(shape.prefixes):
            scored = _scores(i, prefix).subquery(f"s{i}")
            page = page.join_from(d, scored, scored.c.course_id == d.c.course_id)
            score = scored.c.score if score is None else score + scored.c.score
    else:
        page = sa.select(d.c.offering_id).where(*_conditions(shape))
    limit, offset = sa.bindparam("limit", type_=sa.Integer), sa.bindparam("offset", type_=sa.Integer)
    return page.order_by(*_order(sort, score)).limit(limit).offset(offset)


@dataclass(frozen=True)
class Counted:
    """A match as counted: its total and facets, and which rows of which copy of the columns it is."""

    total: int
    facets: dict[str, list[dict[str, Any]]]
    serial: int  # of the `Columns` the match was taken from
    bits: NDArray[np.uint8]  # the match, one bit per row (1.25 kB per 10,000 offerings)

    @classmethod
    def of(cls, columns: Columns, mask: Mask) -> Counted:
        total, facets = columns.count(mask)
        return cls(total, facets, columns.serial, np.packbits(mask))

    def mask(self, columns: Columns) -> Mask | None:
        """The match over these columns, if it was taken from them."""
        if columns.serial != self.serial:
            return None
        return np.unpackbits(self.bits, count=columns.size).view(np.bool_)


class FacetCache:
    """Totals, facet counts and matched rows of recent searches, per index generation (so never stale),
    least recent out, and the columns they are counted from (`facets.ColumnStore`).

    A new generation simply stops matching the old entries. One per API process.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.columns = ColumnStore()
        self._entries: OrderedDict[Hashable, Counted] = OrderedDict()

    def get(self, key: Hashable) -> Counted | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: Hashable, value: Counted) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget the counts; the columns stay (they are the current generation's until it moves on)."""
        self._entries.clear()


async def _match(conn: AsyncConnection, criteria: Criteria, shape: Shape, bound: Bound, columns: Columns) -> Mask:
    courses = None
    if shape.prefixes:
        courses = (await conn.execute(words_query(shape.prefixes), bound.words)).scalars().all()
    return columns.match(criteria, courses)


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

    `cache` keeps the counts and the columns between searches (without one, the columns are read for this
    search alone); `index_generation`, if the caller has read it already, saves reading it again."""
    terms = query_terms(criteria.q)
    shape, bound = plan(criteria, terms)
    if cache is None:
        cache = FacetCache(size=0)
    if index_generation is None:
        index_generation = await generation(conn)
    columns = await cache.columns.get(conn, index_generation)
    key = (conn.engine.url, index_generation, tuple(terms), replace(criteria, q=None, sort=""))
    counted = cache.get(key)
    mask = None if counted is None else counted.mask(columns)
    if counted is None or mask is None:
        # (a kept count whose columns were not kept, as when a change landed while they were read: again)
        mask = await _match(conn, criteria, shape, bound, columns)
        counted = Counted.of(columns, mask)
        cache.put(key, counted)
    if offset >= counted.total:
        return Found(counted.total, [], counted.facets)
    sort = page_sort(criteria.sort, terms)
    if ranks_by_relevance(sort, shape):
        page = page_query(shape, sort)
        ids = list((await conn.execute(page, bound.all(limit=limit, offset=offset))).scalars())
    else:
        ids = columns.page(mask, sort, offset, limit)
    return Found(counted.total, ids, counted.facets)


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


async def warm(conn: AsyncConnection, today: date, cache: FacetCache | None = None) -> int:
    """Build, compile and run once the statements of the common searches (`common_criteria`): the words'
    courses and the page ranked by relevance; and read the columns into `cache`; returns how many
    statements ran.

    A search of a shape not met before costs 2-4 ms of CPU to build and compile its statements, 30-40 %
    of an uncached search, and after a start every shape is new: the first searches after a deploy
    would pay for it while a crowd waits behind them. The values match nothing, so each run is cheap.
    """
    ran = 0
    if cache is not None:
        await cache.columns.get(conn, await generation(conn))
        ran += 4  # the generation, the rows, the ids by title, the generation again
    words_seen: set[tuple[bool, ...]] = set()
    for criteria in common_criteria(today):
        terms = query_terms(criteria.q)
        shape, bound = plan(criteria, terms)
        if shape.prefixes and shape.prefixes not in words_seen:
            words_seen.add(shape.prefixes)
            await conn.execute(words_query(shape.prefixes), bound.words)
            ran += 1
        if ranks_by_relevance("relevance", shape):
            await conn.execute(page_query(shape, "relevance"), bound.all(limit=0, offset=0))
            ran += 1
    return ran
