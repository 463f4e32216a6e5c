"""Reporting HTTP routes: every report as JSON (paginated), CSV or XLSX (every row)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reporting import export, views
from shared.http import Page
from shared.service import EngineDep

router = APIRouter(tags=["reports"])

FORMATS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report: JSON by default; CSV or XLSX by `format=` or the `Accept` header.",
        "content": {"application/json": {}, export.CSV: {}, export.XLSX: {}},
    }
}
Id = Annotated[str | None, Query(min_length=1, max_length=64)]
Year = Annotated[str | None, Query(description="e.g. `2026-2027` (1 Aug – 31 Jul)", max_length=9)]
FormatParam = Annotated[str | None, Query(alias="format", description="json, csv or xlsx; overrides `Accept`")]
AcceptHeader = Annotated[str | None, Header(alias="Accept")]


class Output:
    """Format negotiation and pagination shared by every report route."""

    def __init__(
        self,
        page: Annotated[Page, Depends()],
        format_param: FormatParam = None,
        accept: AcceptHeader = None,
    ) -> None:
        self.format = export.choose_format(format_param, accept)
        self.page: Page | None = page if self.format == "json" else None


OutputDep = Annotated[Output, Depends()]


async def _answer(
    engine: Any, output: Output, build: Callable[[AsyncConnection, Page | None], Awaitable[export.Report]]
) -> Response:
    async with engine.connect() as conn:
        report = await build(conn, output.page)
    return export.render(report, output.format)


@router.get("/participants", responses=FORMATS, response_class=Response)
async def participants(
    engine: EngineDep,
    output: OutputDep,
    academic_year: Year = None,
    provider: Id = None,
    offering_id: Id = None,
    home_institution: Id = None,
    group_by: Annotated[str, Query(description="offering (default) or home_institution")] = "offering",
) -> Response:
    """Per offering: seats, held (awaiting, confirmed or with a result), counts by status, by home institution.

    `group_by=home_institution`: per home institution, its students in other institutions' courses.
    """
    filters = views.Filters(
        academic_year=academic_year, provider=provider, offering_id=offering_id, home_institution=home_institution
    )
    return await _answer(engine, output, lambda conn, page: views.participants(conn, filters, group_by, page))


@router.get("/completions", responses=FORMATS, response_class=Response)
async def completions(
    engine: EngineDep,
    output: OutputDep,
    academic_year: Year = None,
    provider: Id = None,
    offering_id: Id = None,
    home_institution: Id = None,
    subject: Id = None,
    group_by: Annotated[
        str, Query(description="offering (default), provider, home_institution, subject or academic_year")
    ] = "offering",
) -> Response:
    """Passed, failed, interrupted, completion rate (passed / results) and credits earned."""
    filters = views.Filters(
        academic_year=academic_year,
        provider=provider,
        offering_id=offering_id,
        home_institution=home_institution,
        subject=subject,
    )
    return await _answer(engine, output, lambda conn, page: views.completions(conn, filters, group_by, page))


@router.get("/billing", responses=FORMATS, response_class=Response)
async def billing(
    engine: EngineDep,
    output: OutputDep,
    academic_year: Year = None,
    institution: Id = None,
    period_start: Annotated[date | None, Query(description="invoices and credit notes issued on or after")] = None,
    period_end: Annotated[date | None, Query(description="invoices and credit notes issued on or before")] = None,
) -> Response:
    """Per institution, owed to it (as provider) and by it (as home): committed, chargeable, invoiced,
    credited, voided. Money as exact decimal strings."""
    filters = views.Filters(academic_year=academic_year)
    return await _answer(
        engine,
        output,
        lambda conn, page: views.billing(conn, filters, institution, period_start, period_end, page),
    )


@router.get("/supply-demand", responses=FORMATS, response_class=Response)
async def supply_demand(
    engine: EngineDep,
    output: OutputDep,
    academic_year: Year = None,
    subject: Id = None,
    level: Id = None,
    region: Id = None,
    provider: Id = None,
    period: Annotated[str | None, Query(description="start month, e.g. `2026-09`", pattern=r"^\d{4}-\d{2}$")] = None,
    group_by: Annotated[
        str | None,
        Query(description="comma-separated: subject, level, region, academic_year, period (default the first four)"),
    ] = None,
) -> Response:
    """Offerings, seats, requests, fill rate, waitlisted (unmet demand), offerings under their minimum."""
    filters = views.Filters(
        academic_year=academic_year, subject=subject, level=level, region=region, provider=provider, period=period
    )
    return await _answer(engine, output, lambda conn, page: views.supply_demand(conn, filters, group_by, page))


@router.get("/follow-up/{institution_id}", responses=FORMATS, response_class=Response)
async def follow_up(
    institution_id: str,
    engine: EngineDep,
    output: OutputDep,
    academic_year: Year = None,
    provider: Id = None,
) -> Response:
    """A home institution's students with failed, interrupted or late-withdrawn enrolments, for counsellors.

    Students appear by pseudonymous `student_ref`; names come from `/api/enrolments/{enrolment_id}`.
    """
    filters = views.Filters(academic_year=academic_year, provider=provider)
    return await _answer(engine, output, lambda conn, page: views.follow_up(conn, institution_id, filters, page))
