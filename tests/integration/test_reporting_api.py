"""The reports over HTTP: JSON (paginated), CSV and XLSX by `format=` or `Accept`, problem+json on bad input."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting.app import build_api, build_worker
from services.reporting.export import XLSX
from services.reporting.settings import Settings
from shared.events import LocalizedText
from tests.integration.test_reporting_scenario import YEAR, feed, reporting_engine, scenario
from tests.support.apps import app_on, client_of

pytestmark = pytest.mark.integration
TITLE = "Mekaniikka – työ ja energia (Åbo)"


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with reporting_engine(db_kind, tmp_path, "reporting_api") as engine:
        network = scenario()
        network.update_offering("O2", titles=LocalizedText(fi=TITLE))
        await feed(engine, network.events)
        yield engine


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """The network admin's client: every report, in full (roles and scopes: test_reporting_auth.py)."""
    async with client_of(app_on(build_api, Settings, engine), "/api/reports") as client:
        yield client


def rows_of(response: httpx.Response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))


def sheet_of(response: httpx.Response) -> Any:
    return openpyxl.load_workbook(io.BytesIO(response.content)).active


def column(sheet: Any, header: str) -> int:
    headers = [cell.value for cell in sheet[1]]
    return headers.index(header) + 1


async def test_every_report_answers_json_by_default(client: httpx.AsyncClient) -> None:
    for path in ("/participants", "/completions", "/billing", "/supply-demand", "/follow-up/kao"):
        response = await client.get(path, params={"academic_year": YEAR})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["academic_year"] == YEAR and body["items"], path


async def test_json_is_paginated_with_totals_over_every_page(client: httpx.AsyncClient) -> None:
    first = (await client.get("/participants", params={"academic_year": YEAR, "page_size": 2})).json()
    second = (await client.get("/participants", params={"academic_year": YEAR, "page_size": 2, "page": 2})).json()
    assert (first["total"], first["page"], first["page_size"], len(first["items"])) == (3, 1, 2, 2)
    assert [i["offering_id"] for i in [*first["items"], *second["items"]]] == ["O2", "O1", "O3"]
    assert first["totals"] == second["totals"] and first["totals"]["held"] == 7


async def test_participants_as_csv_by_format_one_row_per_offering_in_utf8(client: httpx.AsyncClient) -> None:
    response = await client.get("/participants", params={"academic_year": YEAR, "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="participants-2026-2027.csv"'
    rows = rows_of(response)
    assert [r["offering_id"] for r in rows] == ["O2", "O1", "O3"]
    o2 = rows[0]
    assert (o2["title"], o2["seats"], o2["held"], o2["min_participants"]) == (TITLE, "2", "2", "3")
    assert o2["by_home_institution"] == "edupoli: held 1, awaiting_commitment 1; sakky: held 1, confirmed 1"
    assert "by_home_institution" in response.text.splitlines()[0]


async def test_billing_as_csv_by_accept_flattens_each_side_into_prefixed_money_columns(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/billing", params={"academic_year": YEAR}, headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = {r["institution_id"]: r for r in rows_of(response)}
    assert rows["sakky"]["as_provider_committed"] == "510.00"
    assert rows["sakky"]["as_provider_invoiced"] == "450.00"
    assert rows["kao"]["as_home_credited"] == "60.00"
    assert rows["edupoli"]["as_home_pending_count"] == "2"


async def test_billing_as_xlsx_writes_money_as_numbers_with_a_bold_frozen_filtered_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/billing", params={"academic_year": YEAR}, headers={"Accept": XLSX})
    assert response.headers["content-type"] == XLSX
    assert response.headers["content-disposition"] == 'attachment; filename="billing-2026-2027.xlsx"'
    sheet = sheet_of(response)
    assert sheet.freeze_panes == "A2"
    assert all(cell.font.bold for cell in sheet[1])
    assert sheet.auto_filter.ref is not None and sheet.auto_filter.ref.startswith("A1:")
    ids = [sheet.cell(row=r, column=1).value for r in range(2, sheet.max_row + 1)]
    assert ids == ["edupoli", "kao", "sakky"]
    committed = sheet.cell(row=4, column=column(sheet, "as_provider_committed"))
    assert committed.value == 510 and committed.number_format == "#,##0.00"
    invoiced = sheet.cell(row=3, column=column(sheet, "as_home_invoiced"))
    assert invoiced.value == 300 and isinstance(invoiced.value, int | float)
    count = sheet.cell(row=4, column=column(sheet, "as_provider_committed_count"))
    assert count.value == 4 and isinstance(count.value, int)
    width = sheet.column_dimensions["B"].width
    assert width is not None and width >= len("name") + 2


async def test_completions_as_xlsx_by_format_has_rates_as_percentages(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/completions", params={"academic_year": YEAR, "group_by": "home_institution", "format": "xlsx"}
    )
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="completions-by-home-institution-2026-2027.xlsx"'
    )
    sheet = sheet_of(response)
    rates = {
        sheet.cell(row=r, column=1).value: sheet.cell(row=r, column=column(sheet, "completion_rate"))
        for r in range(2, sheet.max_row + 1)
    }
    assert rates["kao"].value == 0.5 and rates["kao"].number_format == "0.00%"
    assert rates["sakky"].value is None  # no results yet: an empty cell, not 0 %


async def test_supply_demand_and_follow_up_export_with_their_own_file_names(client: httpx.AsyncClient) -> None:
    supply = await client.get("/supply-demand", params={"academic_year": YEAR, "group_by": "period", "format": "csv"})
    assert supply.headers["content-disposition"] == 'attachment; filename="supply-demand-2026-2027.csv"'
    assert [r["period"] for r in rows_of(supply)] == ["2026-09", "2026-10", "2027-01"]
    follow = await client.get("/follow-up/kao", params={"academic_year": YEAR}, headers={"Accept": XLSX})
    assert follow.headers["content-disposition"] == 'attachment; filename="follow-up-kao-2026-2027.xlsx"'
    sheet = sheet_of(follow)
    assert [sheet.cell(row=r, column=1).value for r in (2, 3)] == ["e4", "e3"]
    assert sheet.cell(row=2, column=column(sheet, "date")).is_date


async def test_accept_quality_values_choose_the_most_preferred_format(client: httpx.AsyncClient) -> None:
    accept = f"text/csv;q=0.5, {XLSX};q=0.9, application/json;q=0.1"
    response = await client.get("/participants", headers={"Accept": accept})
    assert response.headers["content-type"] == XLSX
    response = await client.get("/participants", headers={"Accept": "text/html,*/*"})
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/participants", {"format": "pdf"}),
        ("/participants", {"group_by": "subject"}),
        ("/participants", {"academic_year": "2026"}),
        ("/completions", {"group_by": "teacher"}),
        ("/supply-demand", {"group_by": "subject,colour"}),
        ("/supply-demand", {"period": "September"}),
        ("/billing", {"period_start": "2026-12-01", "period_end": "2026-11-01"}),
        ("/billing", {"period_start": "yesterday"}),
        ("/follow-up/kao", {"page_size": "0"}),
    ],
)
async def test_bad_parameters_are_problem_details_with_a_message(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]


async def test_follow_up_of_an_institution_reporting_never_heard_of_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/follow-up/no-such-school")
    assert response.status_code == 404
    assert "no-such-school" in response.json()["detail"]


async def test_a_read_only_api_process_answers_as_the_writers_does(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """The extra reporting API processes (`TARJOTIN_REPORTING_DATABASE_READ_ONLY`, decision 004) on their own
    read-only engine: the same answers, and their engine cannot write."""
    url = engine.url.render_as_string(hide_password=False)
    app = build_api(Settings(database_url=url, database_read_only=True))
    reader_engine = app.state.engine
    assert reader_engine is not engine
    try:
        async with client_of(app, "/api/reports") as reader:
            for path in ("/participants", "/completions", "/billing", "/supply-demand", "/follow-up/kao"):
                params = {"academic_year": YEAR}
                mine, theirs = await reader.get(path, params=params), await client.get(path, params=params)
                assert mine.status_code == 200, mine.text
                assert mine.json() == theirs.json()
        with pytest.raises(DBAPIError, match=r"read-only|readonly"):
            async with reader_engine.begin() as conn:
                await conn.execute(sa.text("UPDATE read_model_generation SET generation = generation + 1"))
    finally:
        await reader_engine.dispose()


def test_a_read_only_process_refuses_to_run_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARJOTIN_REPORTING_DATABASE_READ_ONLY", "true")
    settings = Settings(database_url="sqlite+aiosqlite:///unused.db")
    assert settings.database_read_only
    with pytest.raises(SystemExit, match=r"API-only processes"):
        build_worker(settings)
