"""A search is answered in the API process from a columnar copy of the search rows
(`services/catalogue/search/facets.py`): its total, facet counts and page, in every sort but relevance;
the SQL of the same filters and sorts (`query.page_query`) is the reference. On both databases, for
searches drawn by hypothesis over a synthetic index, the offerings of the page are the ones SQL returns in
the same order, the total is how many SQL matches and every facet count equals the count over exactly
those offerings. And the copy is kept only for the generation it was read at."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalogue.search import Criteria, FacetCache, facets, next_generation, search
from services.catalogue.search.facets import LANGUAGES, Columns, ColumnStore
from services.catalogue.search.index import generation
from services.catalogue.search.query import page_query, plan
from services.catalogue.search.words import query_terms
from services.catalogue.tables import course_terms, offering_search
from shared.db import make_engine
from tests.support.infra import database, examples, migrate

pytestmark = pytest.mark.integration

DAY = date(2026, 9, 1)
SUBJECTS = ["mathematics", "history", "music"]
LEVELS = ["upper_secondary", "vocational"]
LANGUAGE_SETS = ["fi", "sv", "en", "fi,sv", "sv,en", "fi,en"]
MODES = ["online", "contact", "blended"]
PROVIDERS = ["sakky", "kao", "edupoli", "omnia"]
REGIONS = ["Kainuu", "Uusimaa", None]
YEARS = ["2026-2027", "2027-2028"]
STATUSES = ["draft", "published", "cancelled"]
WORDS = ["algebra", "algoritmi", "alku", "historia", "musiikki", "muoto", "a", "b"]
_o = offering_search.c
# The sorts as the API promises them, written out here rather than taken from the code under test.
SORTED_BY = {
    "start_date": (_o.start_date, _o.offering_id),
    "-start_date": (_o.start_date.desc(), _o.offering_id.desc()),
    "title": (_o.title_key, _o.start_date, _o.offering_id),
    "price": (_o.member_price, _o.start_date, _o.offering_id),
}
# Many ties (broken by start date, then id) and keys a collation may order otherwise than bytes do.
TITLE_KEYS = ["algebra", "algebra 2", "algebra-2", "algebra2", "alku", "Alku", "historia", "musiikki 10", "musiikki 9"]
OFFERINGS = 240
COURSES = 60


def rows(seed: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A synthetic index: offerings of COURSES courses, each course with two to four words."""
    rng = random.Random(seed)
    terms = [
        {"term": word, "course_id": f"c{c}", "weight": rng.randint(1, 3)}
        for c in range(COURSES)
        for word in rng.sample(WORDS, rng.randint(2, 4))
    ]
    offerings = []
    for i in range(OFFERINGS):
        opens = DAY + timedelta(days=rng.randint(-30, 30))
        offerings.append(
            {
                "offering_id": f"o{i:04d}",
                "course_id": f"c{rng.randrange(COURSES)}",
                "provider_id": rng.choice(PROVIDERS),
                "subject": rng.choice(SUBJECTS),
                "level": rng.choice(LEVELS),
                "languages": rng.choice(LANGUAGE_SETS),
                "delivery_mode": rng.choice(MODES),
                "region": rng.choice(REGIONS),
                "academic_year": rng.choice(YEARS),
                "status": rng.choice(STATUSES),
                "start_date": opens + timedelta(days=40),
                "enrolment_opens": opens,
                "enrolment_closes": opens + timedelta(days=rng.randint(0, 20)),
                "member_price": Decimal(rng.randint(0, 400)) + Decimal(rng.choice(["0", "0.5", "0.25"])),
                "title_key": rng.choice(TITLE_KEYS),
            }
        )
    return offerings, terms


async def fill(engine: AsyncEngine) -> None:
    offerings, terms = rows()
    async with engine.begin() as conn:
        await next_generation(conn)
        await conn.execute(offering_search.insert(), offerings)
        await conn.execute(course_terms.insert(), terms)


@pytest.fixture
def index(db_kind: str, tmp_path: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, AsyncEngine]]:
    """A filled search index and the loop its engine lives on (hypothesis tests are synchronous)."""
    loop = asyncio.new_event_loop()
    place = database(db_kind, tmp_path, "catalogue_facets")
    url = loop.run_until_complete(place.__aenter__())
    try:
        loop.run_until_complete(migrate("catalogue", url))
        engine = make_engine(url)
        loop.run_until_complete(fill(engine))
        yield loop, engine
        loop.run_until_complete(engine.dispose())
    finally:
        loop.run_until_complete(place.__aexit__(None, None, None))
        loop.close()


def _value(options: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly no filter, so that searches keep enough hits to count: a value, or one that matches nothing."""
    return st.sampled_from([None, None, None, None, *options, "absent"])


# bounds at offerings' very prices (and a cent off them), where `<` for `<=` would show
_PRICES = sorted({row["member_price"] for row in rows()[0]})
prices = st.one_of(
    st.sampled_from([None, None, None]),
    st.sampled_from(_PRICES),
    st.sampled_from(_PRICES).map(lambda p: p + Decimal("0.01")),
)
criteria_drawn = st.builds(
    Criteria,
    q=st.one_of(st.none(), st.lists(st.sampled_from([*WORDS, "al", "mu", "his", "zz"]), max_size=2).map(" ".join)),
    subject=_value(SUBJECTS),
    level=_value(LEVELS),
    language=st.sampled_from([None, None, *LANGUAGES]),
    delivery_mode=_value(MODES),
    provider=_value(PROVIDERS),
    region=_value(REGIONS[:-1]),
    academic_year=_value(YEARS),
    status=_value(STATUSES),
    open_on=st.sampled_from([None, None, None, *(DAY + timedelta(days=d) for d in (-31, -5, 0, 12, 40))]),
    min_price=prices,
    max_price=prices,
    sort=st.sampled_from(["start_date", "-start_date", "title", "price", "relevance"]),
    drafts_of=st.sampled_from([None, (), ("kao",), ("kao", "omnia")]),
)


def expected_facets(found_rows: list[sa.Row[Any]]) -> dict[str, list[dict[str, Any]]]:
    """The facet counts of these offerings, counted plainly."""
    columns = {"subject": "subject", "level": "level", "delivery_mode": "delivery_mode"}
    columns |= {"provider": "provider_id", "region": "region"}
    counted: dict[str, Counter[str]] = {facet: Counter() for facet in ("language", *columns)}
    for row in found_rows:
        for facet, column in columns.items():
            if row._mapping[column] is not None:
                counted[facet][row._mapping[column]] += 1
        for language in LANGUAGES:
            counted["language"][language] += language in row.languages
    return {
        facet: sorted(
            ({"value": v, "count": n} for v, n in counted[facet].items() if n),
            key=lambda item: (-item["count"], item["value"]),
        )
        for facet in ("subject", "level", "language", "delivery_mode", "provider", "region")
    }


def test_facet_counts_agree_with_the_offerings_sql_matches(
    index: tuple[asyncio.AbstractEventLoop, AsyncEngine],
) -> None:
    loop, engine = index
    cache = FacetCache()

    async def check(criteria: Criteria) -> None:
        shape, bound = plan(criteria, query_terms(criteria.q))
        async with engine.connect() as conn:
            found = await search(conn, criteria, offset=0, limit=OFFERINGS, cache=cache)
            # the SQL match on its own, in the sort asked for
            page = page_query(shape, criteria.sort)
            if criteria.sort in SORTED_BY:
                page = page.order_by(None).order_by(*SORTED_BY[criteria.sort])
            ids = (await conn.execute(page, bound.all(limit=OFFERINGS, offset=0))).scalars().all()
            # and a page further on, from the counts kept by the search above
            later = await search(conn, criteria, offset=7, limit=5, cache=cache)
            matched = (
                await conn.execute(sa.select(offering_search).where(offering_search.c.offering_id.in_(ids)))
            ).all()
        assert found.total == len(ids), criteria
        assert found.offering_ids == ids, criteria
        assert later.offering_ids == ids[7:12] and later.total == len(ids), criteria
        assert found.facets == expected_facets(list(matched)), criteria

    @settings(max_examples=examples(200), deadline=None, suppress_health_check=list(HealthCheck))
    @given(criteria=criteria_drawn)
    def each(criteria: Criteria) -> None:
        loop.run_until_complete(check(criteria))

    each()
    # and each bound at an offering's very price, where `<` for `<=` shows
    for price in _PRICES[::8]:
        loop.run_until_complete(check(Criteria(min_price=price, max_price=price, drafts_of=None)))
    # the draws reached both ends: searches that match nothing and searches that match many
    totals = [loop.run_until_complete(_total(engine, cache, c)) for c in (Criteria(q="zz"), Criteria(drafts_of=None))]
    assert totals == [0, OFFERINGS]


def test_titles_are_in_the_order_the_database_compares_them(
    index: tuple[asyncio.AbstractEventLoop, AsyncEngine], db_kind: str
) -> None:
    """The title order is read from the database, so its collation decides as it did when SQL chose the
    page: on PostgreSQL here a Finnish ICU collation (`alku` before `Alku`), on SQLite bytes (`Alku` first).
    Sorting the keys in Python would get one of the two wrong."""
    loop, engine = index

    async def scenario() -> tuple[list[str], list[Any]]:
        if db_kind == "postgres":
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text('ALTER TABLE offering_search ALTER COLUMN title_key TYPE varchar(300) COLLATE "fi-x-icu"')
                )
                await next_generation(conn)
        async with engine.connect() as conn:
            criteria = Criteria(sort="title", drafts_of=None)
            found = await search(conn, criteria, offset=0, limit=OFFERINGS, cache=FacetCache())
            expected = sa.select(_o.offering_id, _o.title_key).order_by(*SORTED_BY["title"])
            return found.offering_ids, list((await conn.execute(expected)).all())

    ids, expected = loop.run_until_complete(scenario())
    assert ids == [row.offering_id for row in expected]
    keys = [row.title_key for row in expected]
    assert (keys.index("alku") < keys.index("Alku")) is (db_kind == "postgres")


def test_a_kept_count_is_not_applied_to_another_copy_of_the_columns(
    index: tuple[asyncio.AbstractEventLoop, AsyncEngine],
) -> None:
    """A count kept for a generation whose columns were then read again (on PostgreSQL, a change that landed
    while they were read keeps them from being kept): its rows may be others, so the match is taken again."""
    loop, engine = index
    cache = FacetCache()
    criteria = Criteria(subject="history", sort="title", drafts_of=None)

    async def scenario() -> None:
        async with engine.connect() as conn:
            first = await search(conn, criteria, offset=0, limit=OFFERINGS, cache=cache)
            await conn.rollback()
        # the rows change under the same generation, and the next search reads another copy of them
        async with engine.begin() as conn:
            await conn.execute(offering_search.delete().where(offering_search.c.offering_id == first.offering_ids[0]))
        cache.columns.clear()
        async with engine.connect() as conn:
            again = await search(conn, criteria, offset=3, limit=4, cache=cache)
        assert again.total == first.total - 1 > 7
        assert again.offering_ids == first.offering_ids[4:8]

    loop.run_until_complete(scenario())


def test_ids_read_in_title_order_apart_from_the_rows_still_order_every_row_once(
    index: tuple[asyncio.AbstractEventLoop, AsyncEngine],
) -> None:
    """The ids in title order are a second statement: a change landing between the two reads (those columns
    are then not kept) may take an id away or add one; every row still has one place, the unknown id none."""
    loop, engine = index

    async def read() -> tuple[list[Any], list[str]]:
        async with engine.connect() as conn:
            rows = list((await conn.execute(facets._ROWS)).all())
            return rows, list((await conn.execute(facets._BY_TITLE)).scalars().all())

    rows, by_title = loop.run_until_complete(read())
    assert Columns(rows, by_title).page(np.ones(OFFERINGS, dtype=np.bool_), "title", 0, OFFERINGS) == by_title
    columns = Columns(rows, [*by_title[1:], "o9999"])
    assert columns.page(np.ones(OFFERINGS, dtype=np.bool_), "title", 0, OFFERINGS) == [*by_title[1:], by_title[0]]


async def _total(engine: AsyncEngine, cache: FacetCache, criteria: Criteria) -> int:
    async with engine.connect() as conn:
        return (await search(conn, criteria, offset=0, limit=1, cache=cache)).total


def test_columns_are_kept_only_for_the_generation_they_were_read_at(
    index: tuple[asyncio.AbstractEventLoop, AsyncEngine],
) -> None:
    loop, engine = index
    reads: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "offering_search.member_price" in statement:
            reads.append(statement)

    async def scenario() -> None:
        store = ColumnStore()
        async with engine.connect() as conn:
            current = await generation(conn)
            # read as of an older generation (a search that read it just before a change): used, not kept
            assert (await store.get(conn, current - 1)).size == OFFERINGS
            await store.get(conn, current - 1)
            assert len(reads) == 2
            await conn.rollback()

        # searches of the current generation at once, on connections already open (four on PostgreSQL; the
        # SQLite engine has one): one read, then kept
        conns = [await engine.connect() for _ in range(min(4, engine.pool.size()))]  # type: ignore[attr-defined]
        try:
            for conn in conns:
                await conn.execute(sa.select(1))
            got = await asyncio.gather(*(store.get(conn, current) for conn in conns))
            got.append(await store.get(conns[0], current))
        finally:
            for conn in conns:
                await conn.close()
        assert len(reads) == 3 and all(columns is got[0] for columns in got)
        # a change bumps the generation: the next search reads the rows again and sees the change
        async with engine.begin() as conn:
            await next_generation(conn)
            await conn.execute(offering_search.delete().where(offering_search.c.offering_id == "o0000"))
        async with engine.connect() as conn:
            assert (await store.get(conn, await generation(conn))).size == OFFERINGS - 1
        assert len(reads) == 4

    event.listen(engine.sync_engine, "after_cursor_execute", note)
    try:
        loop.run_until_complete(scenario())
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", note)
