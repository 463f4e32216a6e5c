"""Catalogue search on both databases: words in fi/sv/en (prefixes, any case, with or without accents),
facets and their counts, pagination totals, sorting, open_now, price range, and refusal of bad parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine.default import CACHE_HIT
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalogue import imports, search, views
from services.catalogue.app import build_api, warm_search
from services.catalogue.domain import academic_year_of
from services.catalogue.search import AnswerCache, Criteria, FacetCache
from services.catalogue.settings import Settings
from shared import metrics
from shared.db import forget_engines, make_engine
from tests.integration.test_catalogue_service import catalogue_client, course, institution, offering
from tests.support.apps import app_on, client_of
from tests.support.auth import ADMIN, bearer
from tests.support.infra import DB_KINDS, database, migrated_engine

pytestmark = pytest.mark.integration
TODAY = date.today()
LATE = 500  # days: always another academic year than the starts within 20..90 days


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine("catalogue", db_kind, tmp_path, "catalogue_search") as engine:
        yield engine


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with catalogue_client(engine) as client:
        await seed(client)
        yield client


async def seed(client: httpx.AsyncClient) -> None:
    """Four courses of three providers, nine offerings (seven published, one draft, one cancelled)."""
    await institution(client, "sakky", region="Pohjois-Savo")
    await institution(client, "kao", region="Kainuu")
    await institution(client, "edupoli", region="Uusimaa", member=False)
    maths = await course(
        client,
        "sakky",
        "MAA2",
        titles={"fi": "Matematiikka: funktiot", "sv": "Matematik: funktioner", "en": "Mathematics: functions"},
        descriptions={"fi": "Yhtälöt ja derivaatta"},
        credits="2.0",
    )
    mother_tongue = await course(
        client,
        "kao",
        "AI1",
        titles={"fi": "Äidinkieli ja kirjallisuus", "sv": "Modersmål och litteratur"},
        subject="finnish",
        languages=["fi", "sv"],
        delivery_mode="blended",
    )
    english = await course(
        client,
        "edupoli",
        "ENA1",
        titles={"fi": "Työelämän englanti", "en": "English for work"},
        descriptions={"en": "Emails, meetings and presentations"},
        subject="english",
        level="vocational",
        credits="1.0",
        languages=["en"],
        delivery_mode="online_scheduled",
    )
    physics = await course(
        client,
        "sakky",
        "FY1",
        titles={"fi": "Fysiikka", "sv": "Fysik", "en": "Physics"},
        descriptions={"fi": "Liikkeen funktiot ja mallit", "sv": "Rörelse och energi"},
        subject="physics",
        credits="2.0",
        languages=["sv"],
        delivery_mode="blended",
    )
    ids = {
        "A1": await offering(client, maths["id"], publish=True, start_in_days=30),
        "A2": await offering(client, maths["id"], publish=True, start_in_days=60, member_price="50.00"),
        "A3": await offering(client, maths["id"], start_in_days=90),
        "B1": await offering(client, mother_tongue["id"], publish=True, start_in_days=20),
        "B2": await offering(
            client, mother_tongue["id"], publish=True, start_in_days=70, enrolment_opens=str(TODAY + timedelta(10))
        ),
        "C1": await offering(client, english["id"], publish=True, start_in_days=40, member_price="200.00"),
        "C2": await offering(client, english["id"], start_in_days=50),
        "D1": await offering(client, physics["id"], publish=True, start_in_days=LATE),
        "D2": await offering(client, physics["id"], publish=True, start_in_days=80, member_price="120.00"),
    }
    cancelled = await client.post(f"/offerings/{ids['C2']['id']}/cancel")
    assert cancelled.status_code == 200
    client.ids = {name: o["id"] for name, o in ids.items()}  # type: ignore[attr-defined]


async def find(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/offerings", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def names(client: httpx.AsyncClient, result: dict[str, Any]) -> list[str]:
    by_id = {oid: name for name, oid in client.ids.items()}  # type: ignore[attr-defined]
    return [by_id[item["id"]] for item in result["items"]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("funktiot", {"A1", "A2", "A3", "D1", "D2"}),  # fi title (maths), fi description (physics)
        ("funktioner", {"A1", "A2", "A3"}),  # sv title
        ("Functions", {"A1", "A2", "A3"}),  # en title
        ("presentations", {"C1", "C2"}),  # en description
        ("rörelse", {"D1", "D2"}),  # sv description, typed with its accent
        ("RORELSE", {"D1", "D2"}),  # ... or without, in capitals
        ("matem", {"A1", "A2", "A3"}),  # a prefix
        ("äidink", {"B1", "B2"}),
        ("aidinkieli kirj", {"B1", "B2"}),  # every word must match
        ("matematiikka fysiikka", set()),
        ("maa2", {"A1", "A2", "A3"}),  # the course code
        ("ENA", {"C1", "C2"}),
        ("työelämä", {"C1", "C2"}),
        ("zzz", set()),
    ],
)
async def test_words_match_titles_descriptions_and_codes_in_every_language(
    client: httpx.AsyncClient, q: str, expected: set[str]
) -> None:
    result = await find(client, q=q, page_size=50)
    assert set(names(client, result)) == expected
    assert result["total"] == len(expected)


async def test_facets_count_the_current_match(client: httpx.AsyncClient) -> None:
    result = await find(client, status="published")
    assert result["total"] == 7
    assert result["facets"] == {
        "subject": [
            {"value": "finnish", "count": 2},
            {"value": "mathematics", "count": 2},
            {"value": "physics", "count": 2},
            {"value": "english", "count": 1},
        ],
        "level": [{"value": "upper_secondary", "count": 6}, {"value": "vocational", "count": 1}],
        "language": [{"value": "fi", "count": 4}, {"value": "sv", "count": 4}, {"value": "en", "count": 1}],
        "delivery_mode": [
            {"value": "blended", "count": 4},
            {"value": "online_self_paced", "count": 2},
            {"value": "online_scheduled", "count": 1},
        ],
        "provider": [{"value": "sakky", "count": 4}, {"value": "kao", "count": 2}, {"value": "edupoli", "count": 1}],
        "region": [
            {"value": "Pohjois-Savo", "count": 4},
            {"value": "Kainuu", "count": 2},
            {"value": "Uusimaa", "count": 1},
        ],
    }
    narrowed = await find(client, q="funktiot", status="published")
    assert narrowed["facets"]["subject"] == [{"value": "mathematics", "count": 2}, {"value": "physics", "count": 2}]
    assert narrowed["facets"]["language"] == [{"value": "fi", "count": 2}, {"value": "sv", "count": 2}]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"subject": "finnish"}, {"B1", "B2"}),
        ({"level": "vocational"}, {"C1", "C2"}),
        ({"language": "sv"}, {"B1", "B2", "D1", "D2"}),
        ({"language": "en", "status": "published"}, {"C1"}),
        ({"delivery_mode": "online_self_paced"}, {"A1", "A2", "A3"}),
        ({"provider": "sakky", "q": "fys"}, {"D1", "D2"}),
        ({"region": "Kainuu"}, {"B1", "B2"}),
        ({"academic_year": academic_year_of(TODAY + timedelta(LATE))}, {"D1"}),
        ({"status": "draft"}, {"A3"}),
        ({"status": "cancelled"}, {"C2"}),
        ({"subject": "finnish", "region": "Uusimaa"}, set()),
    ],
)
async def test_filters_narrow_the_match(client: httpx.AsyncClient, params: dict[str, Any], expected: set[str]) -> None:
    result = await find(client, page_size=50, **params)
    assert set(names(client, result)) == expected and result["total"] == len(expected)


async def test_pages_cover_the_match_once_with_a_steady_total(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    for page in (1, 2, 3, 4, 5):
        result = await find(client, page=page, page_size=2)
        assert (result["total"], result["page"], result["page_size"]) == (9, page, 2)
        seen += names(client, result)
    assert len(seen) == 9 and set(seen) == set(client.ids)  # type: ignore[attr-defined]
    beyond = await find(client, page=6, page_size=2)
    assert (beyond["total"], beyond["items"]) == (9, [])
    assert beyond["facets"]["provider"][0] == {"value": "sakky", "count": 5}


async def test_sorting(client: httpx.AsyncClient) -> None:
    published = {"status": "published", "page_size": 50}
    assert names(client, await find(client, **published)) == ["B1", "A1", "C1", "A2", "B2", "D2", "D1"]
    assert names(client, await find(client, sort="-start_date", **published)) == [
        "D1",
        "D2",
        "B2",
        "A2",
        "C1",
        "A1",
        "B1",
    ]
    # titles folded: aidinkieli < fysiikka < matematiikka < tyoelaman; then by start
    assert names(client, await find(client, sort="title", **published)) == ["B1", "B2", "D2", "D1", "A1", "A2", "C1"]
    by_price = await find(client, sort="price", **published)
    assert [i["member_price"] for i in by_price["items"]] == [
        "50.00",
        "80.00",
        "80.00",
        "120.00",
        "120.00",
        "120.00",
        "200.00",
    ]
    assert names(client, by_price)[:3] == ["A2", "A1", "D1"]


async def test_relevance_puts_title_matches_before_description_matches(client: httpx.AsyncClient) -> None:
    result = await find(client, q="funktiot", sort="relevance", status="published")
    assert names(client, result) == ["A1", "A2", "D2", "D1"]
    assert names(client, await find(client, sort="relevance", status="published"))[0] == "B1"  # no q: by start


async def test_open_now_means_published_and_enrolment_open_today(client: httpx.AsyncClient) -> None:
    result = await find(client, open_now="true", page_size=50)
    assert set(names(client, result)) == {"A1", "A2", "B1", "C1", "D1", "D2"}  # not the draft, B2 or the cancelled
    for item in result["items"]:
        assert item["status"] == "published"
        assert item["enrolment_opens"] <= str(TODAY) <= item["enrolment_closes"]


async def test_price_range_takes_the_member_price_inclusively(client: httpx.AsyncClient) -> None:
    result = await find(client, min_price="80.00", max_price="120", page_size=50)
    assert set(names(client, result)) == {"A1", "A3", "B1", "B2", "D1", "D2"}
    assert {i["member_price"] for i in result["items"]} == {"80.00", "120.00"}
    assert set(names(client, await find(client, min_price="120.01"))) == {"C1"}


async def test_new_and_changed_offerings_show_at_once(client: httpx.AsyncClient) -> None:
    before = await find(client, q="kirjallisuus")
    assert before["total"] == 2
    [b1] = [o for o in before["items"] if o["id"] == client.ids["B1"]]  # type: ignore[attr-defined]
    await offering(client, b1["course_id"], publish=True, start_in_days=33)
    assert (await find(client, q="kirjallisuus"))["total"] == 3
    await client.patch(f"/courses/{b1['course_id']}", json={"titles": {"en": "Mother tongue and literature"}})
    assert (await find(client, q="mother tongue"))["total"] == 3
    assert (await find(client, q="kirjallisuus", subject="finnish"))["facets"]["subject"] == [
        {"value": "finnish", "count": 3}
    ]
    await client.post(f"/offerings/{b1['id']}/cancel")
    assert (await find(client, q="kirjallisuus", status="published"))["total"] == 2


# --- answers are cached per API process until the index changes -----------------------------------------


def api_process(engine: AsyncEngine) -> FastAPI:
    """A catalogue app of its own (its own caches), as one more API process on the same database."""
    return app_on(build_api, Settings, engine)


def catalogue_of(app: FastAPI, headers: dict[str, str]) -> httpx.AsyncClient:
    return client_of(app, "/api/catalogue", headers)


def by_name(client: httpx.AsyncClient, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names_of = {oid: name for name, oid in client.ids.items()}  # type: ignore[attr-defined]
    return {names_of[item["id"]]: item for item in result["items"]}


async def test_a_repeated_anonymous_search_is_answered_before_fastapi_parses_it(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact query string asked again anonymously is answered by `RepeatedSearchMiddleware` from the
    answer cache (the endpoint does not run), with the request id and access metrics of any request;
    with a token, with another query string, or after a change, the endpoint answers."""
    app = client._transport.app  # type: ignore[attr-defined]
    anonymous = catalogue_of(app, {})
    ran: list[search.Criteria] = []
    answer = views.search_answer

    async def counted(conn: Any, criteria: search.Criteria, **kwargs: Any) -> bytes:
        ran.append(criteria)
        return await answer(conn, criteria, **kwargs)

    monkeypatch.setattr(views, "search_answer", counted)
    served = metrics.HTTP_REQUESTS.labels("catalogue", "GET", "/offerings", "200")
    before = served._value.get()
    query = "/offerings?q=matem&sort=title"
    first = await anonymous.get(query)
    again = await anonymous.get(query)
    assert first.status_code == again.status_code == 200 and again.content == first.content
    assert len(ran) == 1, ran  # the second from the middleware
    assert again.headers["content-type"] == "application/json" and again.headers["x-request-id"]
    assert served._value.get() == before + 2
    assert len((await anonymous.get("/offerings?sort=title&q=matem")).json()["items"]) == 2 and len(ran) == 2

    # the network admin sees the draft A3 with the same query string: never the anonymous answer
    ids = client.ids  # type: ignore[attr-defined]
    as_admin = (await client.get(query)).json()
    assert ids["A3"] in {item["id"] for item in as_admin["items"]} and len(ran) == 3
    assert ids["A3"] not in {item["id"] for item in (await anonymous.get(query)).json()["items"]}
    assert len(ran) == 3

    assert (await client.post(f"/offerings/{ids['A3']}/publish")).status_code == 200
    published = (await anonymous.get(query)).json()
    assert ids["A3"] in {item["id"] for item in published["items"]} and len(ran) == 4
    await anonymous.aclose()


async def test_a_search_the_middleware_cannot_answer_reads_the_index_generation_once(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The middleware reads the index generation to look for a repeat; when it finds none, the endpoint
    takes that generation instead of reading it again (a round trip per search on PostgreSQL)."""
    anonymous = catalogue_of(client._transport.app, {})  # type: ignore[attr-defined]
    assert (await anonymous.get("/offerings?q=matem")).status_code == 200  # the columns read, a first answer
    reads: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "search_state.generation" in statement:
            reads.append(statement)

    event.listen(engine.sync_engine, "after_cursor_execute", note)
    try:
        for query in ("/offerings?q=funkt", "/offerings?subject=mathematics&page_size=2&page=2", "/offerings?q=matem"):
            reads.clear()
            assert (await anonymous.get(query)).status_code == 200
            assert len(reads) == 1, (query, reads)
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", note)
    await anonymous.aclose()


async def test_relevance_without_words_shares_the_start_date_answer(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `q`, relevance is start date (`search.page_sort`): the answer already made for the start-date
    order is served without searching again; with words, relevance is a page of its own."""
    anonymous = catalogue_of(client._transport.app, {})  # type: ignore[attr-defined]
    searched: list[search.Criteria] = []
    run = search.search

    async def counted(conn: Any, criteria: search.Criteria, **kwargs: Any) -> search.Found:
        searched.append(criteria)
        return await run(conn, criteria, **kwargs)

    monkeypatch.setattr(search, "search", counted)

    async def ask(query: str) -> list[str]:
        response = await anonymous.get(query)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    by_start = await ask("/offerings?subject=mathematics&sort=start_date")
    assert len(searched) == 1 and len(by_start) >= 2
    assert await ask("/offerings?sort=relevance&subject=mathematics") == by_start
    assert len(searched) == 1, searched  # the start-date answer (another query string: not the middleware)
    await ask("/offerings?q=matem&sort=start_date")
    await ask("/offerings?q=matem&sort=relevance")
    assert [c.sort for c in searched] == ["start_date", "start_date", "relevance"], searched
    await anonymous.aclose()


async def test_a_repeated_search_shows_every_change_made_since(client: httpx.AsyncClient) -> None:
    """The same anonymous search, asked again after each change (publish, edit, cancel), through the same API
    process: its cached answer must not outlive the change."""
    app = client._transport.app  # type: ignore[attr-defined]
    anonymous = catalogue_of(app, {})
    anonymous.ids = client.ids  # type: ignore[attr-defined]
    ids = client.ids  # type: ignore[attr-defined]
    params = {"q": "matem", "page_size": 50}
    first = await find(anonymous, **params)
    assert set(names(anonymous, first)) == {"A1", "A2"}  # A3 is a draft
    assert await find(anonymous, **params) == first and len(app.state.search_cache) > 0  # answered from the cache

    assert (await client.post(f"/offerings/{ids['A3']}/publish")).status_code == 200
    published = await find(anonymous, **params)
    assert set(names(anonymous, published)) == {"A1", "A2", "A3"} and published["total"] == 3
    assert published["facets"]["provider"] == [{"value": "sakky", "count": 3}]

    changed = await client.patch(f"/offerings/{ids['A1']}", json={"max_participants": 7, "member_price": "12.50"})
    assert changed.status_code == 200, changed.text
    edited = by_name(anonymous, await find(anonymous, **params))["A1"]
    assert (edited["max_participants"], edited["member_price"]) == (7, "12.50")
    cheapest = await find(anonymous, **params, sort="price")
    assert names(anonymous, cheapest)[0] == "A1"

    assert (await client.post(f"/offerings/{ids['A2']}/cancel")).status_code == 200
    after = by_name(anonymous, await find(anonymous, **params))
    assert after["A2"]["status"] == "cancelled"
    assert set(names(anonymous, await find(anonymous, **params, status="published"))) == {"A1", "A3"}

    renamed = await client.patch(f"/courses/{after['A1']['course_id']}", json={"titles": {"fi": "Algebra"}})
    assert renamed.status_code == 200, renamed.text
    titles = by_name(anonymous, await find(anonymous, **params))
    assert {item["titles"]["fi"] for item in titles.values()} == {"Algebra"}
    assert (await find(anonymous, q="algebra"))["total"] == 3
    await anonymous.aclose()


async def test_another_api_process_sees_a_change_at_once(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    """Split mode: the change goes through one API process, the search through another whose cache holds the
    answer from before; it reads the index generation from the database, so it answers anew."""
    ids = client.ids  # type: ignore[attr-defined]
    async with catalogue_of(api_process(engine), {}) as other:
        other.ids = ids  # type: ignore[attr-defined]
        before = await find(other, subject="mathematics")
        assert set(names(other, before)) == {"A1", "A2"}
        assert await find(other, subject="mathematics") == before
        assert (await client.post(f"/offerings/{ids['A3']}/publish")).status_code == 200
        assert set(names(other, await find(other, subject="mathematics"))) == {"A1", "A2", "A3"}
        assert (await client.post(f"/offerings/{ids['A1']}/cancel")).status_code == 200
        cancelled = by_name(other, await find(other, subject="mathematics"))
        assert cancelled["A1"]["status"] == "cancelled"
        moved = await client.patch("/institutions/sakky", json={"region": "Lappi"})
        assert moved.status_code == 200, moved.text
        regions = await find(other, subject="mathematics")
        assert {item["region"] for item in regions["items"]} == {"Lappi"}
        assert regions["facets"]["region"] == [{"value": "Lappi", "count": 3}]


async def test_cached_answers_are_kept_apart_by_what_the_caller_may_see(client: httpx.AsyncClient) -> None:
    """The same search by the network admin, the provider's staff, another provider's staff and an anonymous
    caller, twice in turns through one API process: the draft A3 only for those who may see it."""
    app = client._transport.app  # type: ignore[attr-defined]
    callers = {
        "admin": (ADMIN, {"A1", "A2", "A3"}),
        "sakky staff": (bearer("provider_staff", "sakky"), {"A1", "A2", "A3"}),
        "kao staff": (bearer("provider_staff", "kao"), {"A1", "A2"}),
        "anonymous": ({}, {"A1", "A2"}),
    }
    for _round in range(2):
        for who, (headers, expected) in callers.items():
            async with catalogue_of(app, headers) as caller:
                caller.ids = client.ids  # type: ignore[attr-defined]
                result = await find(caller, subject="mathematics")
                assert set(names(caller, result)) == expected and result["total"] == len(expected), who
                assert result["facets"]["subject"] == [{"value": "mathematics", "count": len(expected)}], who


def test_the_answer_cache_holds_one_generation_within_its_bounds() -> None:
    cache = AnswerCache(entries=3, max_bytes=10)
    cache.put("db", 5, "a", b"aaa")
    cache.put("db", 5, "b", b"bbb")
    assert cache.get("db", 5, "a") == b"aaa" and cache.get("db", 6, "a") is None and cache.get("other", 5, "a") is None
    cache.put("db", 5, "c", b"ccccc")  # 11 bytes in all: the least recently used answer goes
    assert cache.get("db", 5, "b") is None and len(cache) == 2
    cache.put("db", 4, "d", b"d")  # asked before a change committed: neither kept nor served
    assert cache.get("db", 4, "d") is None and cache.get("db", 5, "a") == b"aaa"
    cache.put("db", 6, "e", b"e")  # a newer generation: everything older is gone
    assert len(cache) == 1 and cache.get("db", 5, "a") is None and cache.get("db", 6, "e") == b"e"
    cache.put("db", 6, "big", b"x" * 11)
    assert cache.get("db", 6, "big") is None


async def test_a_large_import_refreshes_the_planner_statistics_on_postgresql(engine: AsyncEngine, db_kind: str) -> None:
    """After an import of ANALYZE_FROM_ROWS offerings or more, PostgreSQL knows how many rows the search tables
    hold (the import ran ANALYZE after committing), so the first searches get the plans of a full catalogue."""
    start = TODAY + timedelta(days=30)
    header = "external_id,code,title_fi,description_fi,subject,level,credits,languages,delivery_mode,"
    header += "start_date,end_date,enrolment_opens,enrolment_closes,max_participants,publish\n"
    lines = [
        f"X{i},K{i % 40},Kurssi {i % 40},Kuvaus {i % 40},mathematics,upper_secondary,2.0,fi,online_self_paced,"
        f"{start},{start + timedelta(days=60)},{TODAY},{start - timedelta(days=5)},20,true\n"
        for i in range(imports.ANALYZE_FROM_ROWS + 20)
    ]
    async with catalogue_client(engine) as admin:
        await institution(admin, "sakky")
        response = await admin.post(
            "/imports",
            params={"provider_id": "sakky"},
            content=(header + "".join(lines)).encode(),
            headers={"content-type": "text/csv"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["created"] == len(lines)
        assert (await find(admin, q="kurssi"))["total"] == len(lines)
    if db_kind != "postgres":
        return
    planned = sa.text("SELECT relname, reltuples FROM pg_class WHERE relname IN ('offering_search', 'course_terms')")
    async with engine.connect() as conn:
        sizes: dict[str, float] = {name: tuples for name, tuples in (await conn.execute(planned)).all()}
    assert sizes["offering_search"] == len(lines) and sizes["course_terms"] >= 40


@pytest.mark.skipif("postgres" not in DB_KINDS, reason="a PostgreSQL planner setting (TARJOTIN_TEST_DBS)")
async def test_on_postgresql_the_catalogue_plans_its_searches_for_tables_held_in_memory(tmp_path: Path) -> None:
    """The catalogue's own connections price an index read as in memory (random_page_cost 1.1): at the
    default of 4 a word search read every offering instead of the matching courses' ones by index, for
    three times the database CPU (docs/performance.md). Other engines keep the server's setting."""
    async with database("postgres", tmp_path, "catalogue_planner") as url:
        app = build_api(Settings(database_url=url))
        own: AsyncEngine = app.state.engine
        other = make_engine(url)
        try:
            async with own.connect() as conn, other.connect() as plain:
                assert (await conn.execute(sa.text("SHOW random_page_cost"))).scalar_one() == "1.1"
                assert (await plain.execute(sa.text("SHOW random_page_cost"))).scalar_one() == "4"
        finally:
            await own.dispose()
            await other.dispose()
            forget_engines()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page_size": 1000}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"sort": "popularity"}, "sort"),
        ({"min_price": "abc"}, "min_price"),
        ({"max_price": "1.234"}, "max_price"),
        ({"min_price": "-1"}, "min_price"),
        ({"language": "de"}, "language"),
        ({"delivery_mode": "by_post"}, "delivery_mode"),
        ({"status": "archived"}, "status"),
        ({"academic_year": "2026"}, "academic_year"),
        ({"academic_year": "2026-2028"}, "2026-2028"),
        ({"min_price": "100", "max_price": "50"}, "min_price"),
        ({"open_now": "perhaps"}, "open_now"),
        ({"q": "x" * 201}, "q"),
    ],
)
async def test_bad_parameters_get_a_problem(client: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    response = await client.get("/offerings", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and field in problem["detail"]


@pytest.mark.parametrize("warmed", [True, False])
async def test_after_the_start_up_warming_a_common_search_compiles_no_statement(
    engine: AsyncEngine, client: httpx.AsyncClient, warmed: bool
) -> None:
    """The first search of a common shape after a start is answered with statements compiled at start-up
    (without warming, the same search compiles its own: the test sees the difference). `client` seeded."""
    if warmed:
        await warm_search(engine, FacetCache())
    compiled: list[tuple[str, str]] = []

    def note(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        compiled.append((str(context.cache_hit), statement[:80]))

    facets = FacetCache()
    event.listen(engine.sync_engine, "after_cursor_execute", note)
    try:
        async with engine.connect() as conn:
            for criteria in (
                Criteria(q="funkt", subject="mathematics", open_on=TODAY),
                Criteria(q="matem funkt", open_on=TODAY),
                Criteria(region="Kainuu", open_on=TODAY),
                Criteria(q="funkt", open_on=TODAY, sort="relevance"),
            ):
                found = await search.search(conn, criteria, offset=0, limit=50, cache=facets)
                assert found.total >= 1, (criteria, found)
            await conn.rollback()
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", note)
    missed = [statement for outcome, statement in compiled if outcome != str(CACHE_HIT)]
    # per search the index generation, the words' courses for the three with words, the page ranked by
    # relevance, and for the first the columns, the ids by title (and the generation again, to check they
    # belong to it)
    assert len(compiled) == 4 + 3 + 1 + 3
    assert (missed == []) is warmed, missed
