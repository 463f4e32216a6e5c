"""CSV import on both databases: a report per line, good rows applied together and bad ones refused with
reasons, upsert by the provider's ids, dry runs, whole-file refusals, idempotency, and the events it stages."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalogue.tables import course_terms, idempotency_keys, offering_search
from tests.integration.test_catalogue_service import catalogue_client, institution, row_counts, staged
from tests.support.infra import migrated_engine

pytestmark = pytest.mark.integration
TODAY = date.today()
COLUMNS = [
    "external_id",
    "code",
    "title_fi",
    "title_sv",
    "title_en",
    "description_fi",
    "subject",
    "level",
    "credits",
    "languages",
    "delivery_mode",
    "start_date",
    "end_date",
    "enrolment_opens",
    "enrolment_closes",
    "min_participants",
    "max_participants",
    "member_price",
    "external_price",
    "free_cancellation_deadline",
    "publish",
]


def row(external_id: str, code: str = "MAA2", **cells: Any) -> dict[str, Any]:
    start = TODAY + timedelta(days=30)
    return {
        "external_id": external_id,
        "code": code,
        "title_fi": "Funktiot",
        "title_sv": "Funktioner",
        "subject": "mathematics",
        "level": "upper_secondary",
        "credits": "2.5",
        "languages": "fi;sv",
        "delivery_mode": "online_self_paced",
        "start_date": start,
        "end_date": start + timedelta(days=60),
        "enrolment_opens": TODAY - timedelta(days=1),
        "enrolment_closes": start - timedelta(days=5),
        "max_participants": 20,
        **cells,
    }


def csv_file(rows: list[dict[str, Any]], columns: list[str] = COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine("catalogue", db_kind, tmp_path, "catalogue_import") as engine:
        yield engine


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with catalogue_client(engine) as client:
        await institution(client, "sakky")
        await institution(client, "kao", region="Kainuu")
        yield client


async def send(
    client: httpx.AsyncClient, data: bytes, *, provider: str | None = "sakky", status: int = 200, **params: Any
) -> dict[str, Any]:
    headers = {"content-type": "text/csv; charset=utf-8", **params.pop("headers", {})}
    query = {"provider_id": provider, **params} if provider else params
    response = await client.post("/imports", params=query, content=data, headers=headers)
    assert response.status_code == status, response.text
    return dict(response.json())


async def offering_events(engine: AsyncEngine) -> list[str]:
    return [e.routing_key for e in await staged(engine) if e.routing_key.startswith("offering.")]


async def everything(engine: AsyncEngine) -> dict[str, int]:
    counts = await row_counts(engine)
    async with engine.connect() as conn:
        for table in (offering_search, course_terms, idempotency_keys):
            counts[table.name] = int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
    return counts


async def test_good_rows_are_applied_and_bad_rows_refused_with_their_line_and_reasons(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    rows = [
        row("ext-1", publish="true"),  # line 2
        row("ext-2", end_date=TODAY),  # line 3
        row("ext-3", code="FY1", title_fi="Fysiikka", title_sv="", description_fi="Rivi 1\nRivi 2\nRivi 3"),  # 4-6
        row("ext-4", credits="x", languages="fi;de"),  # line 7
        row("ext-5", code="FY1", title_fi="Fysiikka", title_sv="", description_fi="Eri kuvaus"),  # line 8
        row("ext-1", member_price="10.00"),  # line 9
        row("ext-6", enrolment_opens=TODAY + timedelta(days=40), enrolment_closes=TODAY + timedelta(days=45)),
    ]
    report = await send(client, csv_file(rows))
    assert (report["created"], report["updated"], report["unchanged"], report["rejected"]) == (2, 0, 0, 5)
    assert [(r["line"], r["status"], r["errors"]) for r in report["rows"]] == [
        (2, "created", []),
        (3, "rejected", ["end_date is before start_date."]),
        (4, "created", []),
        (
            7,
            "rejected",
            ["credits: 'x' is not a number", "languages: 'fi;de' is not a list of fi, sv, en"],
        ),
        (
            8,
            "rejected",
            [
                "course 'FY1' is described differently on line 4 (descriptions); every row of one course must "
                "repeat the same course columns"
            ],
        ),
        (9, "rejected", ["external_id: 'ext-1' is also on line 2"]),
        (10, "rejected", ["enrolment_opens must be on or before start_date."]),
    ]
    first = (await client.get(f"/offerings/{report['rows'][0]['offering_id']}")).json()
    assert (first["status"], first["external_id"], first["provider_id"]) == ("published", "ext-1", "sakky")
    assert (first["member_price"], first["external_price"]) == ("100.00", "125.00")  # 2.5 × 40.00; +25 %
    assert first["titles"] == {"fi": "Funktiot", "sv": "Funktioner", "en": None}
    physics = (await client.get(f"/offerings/{report['rows'][2]['offering_id']}")).json()
    assert physics["status"] == "draft"
    [published] = await staged(engine, "offering.published")
    assert (published.subject, published.sequence) == (first["id"], 2)
    assert (published.data["late_withdrawal_percent"], published.data["credits"]) == ("100", "2.5")
    assert await offering_events(engine) == ["offering.published"]  # the draft is nobody else's business
    assert (await client.get("/offerings", params={"q": "rivi"})).json()["total"] == 1


async def test_reimporting_updates_only_what_changed(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    rows = [row("ext-1", publish="true"), row("ext-2"), row("ext-3", code="FY1", title_fi="Fysiikka")]
    created = await send(client, csv_file(rows))
    assert created["created"] == 3
    ids = [r["offering_id"] for r in created["rows"]]

    again = await send(client, csv_file(rows))
    assert [(r["status"], r["offering_id"]) for r in again["rows"]] == [("unchanged", i) for i in ids]
    assert (again["created"], again["updated"], again["unchanged"], again["rejected"]) == (0, 0, 3, 0)
    assert await offering_events(engine) == ["offering.published"]

    changed = [
        row("ext-1", publish="true", max_participants=12, title_en="Functions"),  # its course gets a title
        row("ext-2", title_en="Functions", publish="yes"),  # the same course, now published
        row("ext-3", code="FY1", title_fi="Fysiikka", member_price=""),  # empty cell: keeps the price
    ]
    report = await send(client, csv_file(changed))
    assert [r["status"] for r in report["rows"]] == ["updated", "updated", "unchanged"]
    [update] = await staged(engine, "offering.updated")
    assert (update.subject, update.sequence) == (ids[0], 3)
    assert update.data["max_participants"] == 12 and update.data["titles"]["en"] == "Functions"
    published = await staged(engine, "offering.published")
    assert [(e.subject, e.sequence) for e in published] == [(ids[0], 2), (ids[1], 2)]
    assert published[1].data["titles"]["en"] == "Functions"
    assert (await client.get(f"/offerings/{ids[2]}")).json()["member_price"] == "100.00"


async def test_a_dry_run_reports_the_same_and_changes_nothing(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    rows = [row("ext-1", publish="true"), row("ext-2", end_date=TODAY), row("ext-3", code="FY1")]
    before = await everything(engine)
    dry = await send(client, csv_file(rows), dry_run="true")
    assert await everything(engine) == before
    real = await send(client, csv_file(rows))
    assert dry["dry_run"] is True and real["dry_run"] is False
    summary = [(r["line"], r["status"], r["errors"]) for r in dry["rows"]]
    assert summary == [(r["line"], r["status"], r["errors"]) for r in real["rows"]]
    assert (dry["created"], dry["rejected"]) == (real["created"], real["rejected"]) == (2, 1)


@pytest.mark.parametrize(
    ("data", "content_type", "status", "phrase"),
    [
        (b"external_id,code\nx,y\n", "text/csv", 422, "Required columns are missing: subject, level, credits"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "text/csv", 422, "not UTF-8"),
        (b'{"rows": []}', "text/csv", 422, "Required columns are missing"),
        (b"", "text/csv", 422, "empty"),
        (csv_file([]), "text/csv", 422, "no rows"),
        (csv_file([row("a")]), "application/json", 415, "text/csv"),
        (b"x" * (1024 * 1024 + 1), "text/csv", 413, "larger than 1024 KiB"),
    ],
)
async def test_a_file_that_cannot_be_used_is_refused_and_changes_nothing(
    engine: AsyncEngine, client: httpx.AsyncClient, data: bytes, content_type: str, status: int, phrase: str
) -> None:
    before = await everything(engine)
    response = await client.post(
        "/imports", params={"provider_id": "sakky"}, content=data, headers={"content-type": content_type}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert phrase in response.json()["detail"]
    assert await everything(engine) == before


async def test_missing_columns_are_listed(client: httpx.AsyncClient) -> None:
    data = csv_file(
        [row("a")], columns=[c for c in COLUMNS if c not in ("credits", "title_fi", "title_sv", "title_en")]
    )
    response = await client.post("/imports", content=data, headers={"content-type": "text/csv"})
    assert response.status_code == 422
    assert response.json()["missing_columns"] == [
        "credits",
        "title_fi (or title_sv, title_en)",
        "provider_id (or ?provider_id= on the request)",
    ]


async def test_a_multipart_upload_with_providers_per_row(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    rows = [
        {**row("k-1"), "provider_id": "kao"},
        {**row("s-1"), "provider_id": "sakky"},
        {**row("x"), "provider_id": "x"},
    ]
    data = csv_file(rows, columns=["provider_id", *COLUMNS])
    response = await client.post("/imports", files={"file": ("tarjonta.csv", data, "text/csv")})
    assert response.status_code == 200, response.text
    report = response.json()
    assert [r["status"] for r in report["rows"]] == ["created", "created", "rejected"]
    assert report["rows"][2]["errors"] == ["provider_id: 'x' is not a registered institution"]
    kao = (await client.get(f"/offerings/{report['rows'][0]['offering_id']}")).json()
    assert (kao["provider_id"], kao["region"]) == ("kao", "Kainuu")
    no_file = await client.post("/imports", files={"upload": ("a.csv", data, "text/csv")})
    assert no_file.status_code == 422 and "field named `file`" in no_file.json()["detail"]


async def test_an_idempotency_key_replays_the_report(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    data = csv_file([row("ext-1", publish="true")])
    first = await send(client, data, headers={"Idempotency-Key": "import-1"})
    replay = await send(client, data, headers={"Idempotency-Key": "import-1"})
    assert replay == first and first["created"] == 1
    assert len(await staged(engine, "offering.published")) == 1
    other = await client.post(
        "/imports",
        params={"provider_id": "sakky"},
        content=csv_file([row("ext-2")]),
        headers={"content-type": "text/csv", "Idempotency-Key": "import-1"},
    )
    assert other.status_code == 409


async def test_existing_offerings_keep_their_course_and_a_cancelled_one_stays_cancelled(
    client: httpx.AsyncClient,
) -> None:
    created = await send(client, csv_file([row("ext-1", publish="true"), row("ext-2", code="FY1")]))
    moved = await send(client, csv_file([row("ext-1", code="FY1")]))
    assert moved["rows"][0]["errors"] == [
        "external_id 'ext-1' is an offering of course 'MAA2', not 'FY1'; an offering cannot move to another course"
    ]
    assert moved["rows"][0]["offering_id"] == created["rows"][0]["offering_id"]
    await client.post(f"/offerings/{created['rows'][0]['offering_id']}/cancel")
    same = await send(client, csv_file([row("ext-1")]))
    assert same["rows"][0]["status"] == "unchanged"
    changed = await send(client, csv_file([row("ext-1", max_participants=5)]))
    assert changed["rows"][0]["errors"] == ["The offering is cancelled; it can no longer be changed."]
    republished = await send(client, csv_file([row("ext-1", publish="true")]))
    assert republished["rows"][0]["errors"] == ["publish: the offering is cancelled and cannot be published again"]


async def test_given_prices_and_deadline_are_used_and_a_semicolon_file_is_read(client: httpx.AsyncClient) -> None:
    deadline = TODAY + timedelta(days=40)
    cells = row("ext-1", member_price="99,50", external_price="130", free_cancellation_deadline=deadline, credits="2,5")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, delimiter=";", lineterminator="\r\n")
    writer.writeheader()
    writer.writerow(cells)
    report = await send(client, out.getvalue().encode("utf-8-sig"))
    assert report["created"] == 1, report
    made = (await client.get(f"/offerings/{report['rows'][0]['offering_id']}")).json()
    assert (made["member_price"], made["external_price"], made["credits"]) == ("99.50", "130.00", "2.5")
    assert made["free_cancellation_deadline"] == str(deadline)
