"""Reporting HTTP routes: every report as JSON (paginated), CSV or XLSX (every row).

Every report needs a bearer token (401 without one); who may read what (tests/authz/matrix.csv):

| report | roles | scope |
|---|---|---|
| participants | counsellor, provider staff, finance, network admin | staff: their institution's part |
| completions | those, and partner | staff: their institution's part; partner and admin: the network |
| billing | finance, network admin | finance: their institution's line only |
| supply-demand | counsellor, provider staff, finance, network admin, partner | the whole network (aggregates) |
| follow-up/{id} | counsellor of that institution, network admin | another institution's: 404 |

Students and operations staff read no report (403). "Their institution's part" is defined in
`views` (the figures of enrolments and commitments the institution is a party to, as provider or as
home institution); the scope is applied in the query, so JSON, CSV and XLSX carry the same rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reporting import export, views
from services.reporting.cache import ResponseCache
from shared.auth import Principal, Role, require
from shared.errors import Forbidden, NotFound
from shared.http import Page, PageDep, problem_responses

router = APIRouter(tags=["reports"])

FORMATS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report: JSON by default; CSV or XLSX by `format=` or the `Accept` header.",
        "content": {"application/json": {}, export.CSV: {}, export.XLSX: {}},
    }
}
STAFF = (Role.COUNSELLOR, Role.PROVIDER_STAFF, Role.FINANCE)
Participants = Annotated[Principal, Depends(require(*STAFF, Role.NETWORK_ADMIN))]
Completions = Annotated[Principal, Depends(require(*STAFF, Role.NETWORK_ADMIN, Role.PARTNER))]
Billing = Annotated[Principal, Depends(require(Role.FINANCE, Role.NETWORK_ADMIN))]
SupplyDemand = Annotated[Principal, Depends(require(*STAFF, Role.NETWORK_ADMIN, Role.PARTNER))]
FollowUp = Annotated[Principal, Depends(require(Role.COUNSELLOR, Role.NETWORK_ADMIN))]
REPORT = {**FORMATS, **problem_responses(401, 403)}
HIDDEN_REPORT = {**FORMATS, **problem_responses(401, 403, 404)}
Id = Annotated[str | None, Query(min_length=1, max_length=64)]
Year = Annotated[str | None, Query(description="e.g. `2026-2027` (1 Aug – 31 Jul)", max_length=9)]
FormatParam = Annotated[str | None, Query(alias="format", description="json, csv or xlsx; overrides `Accept`")]
AcceptHeader = Annotated[str | None, Header(alias="Accept")]


class Output:
    """Format negotiation and pagination shared by every report route."""

    def __init__(self, page: Page, format_param: str | None, accept: str | None) -> None:
        self.format = export.choose_format(format_param, accept)
        self.page: Page | None = page if self.format == "json" else None


async def output(page: PageDep, format_param: FormatParam = None, accept: AcceptHeader = None) -> Output:
    """Async (not the class itself as the dependency), so FastAPI does not call it in a worker thread."""
    return Output(page, format_param, accept)


OutputDep = Annotated[Output, Depends(output)]


async def get_cache(request: Request) -> ResponseCache:
    """The app's response cache, for the engine it serves (tests swap `app.state.engine`). Async, so that
    FastAPI calls it on the loop: a plain function would cost every report a worker-thread round trip."""
    state = request.app.state
    cache: ResponseCache | None = getattr(state, "report_cache", None)
    if cache is None or cache.engine is not state.engine:
        cache = state.report_cache = ResponseCache(state.engine)
    return cache


CacheDep = Annotated[ResponseCache, Depends(get_cache)]


def institution_scope(caller: Principal) -> str | None:
    """None (the whole network) for the network admin and partners; else the institution the caller acts for."""
    if caller.is_admin or caller.role is Role.PARTNER:
        return None
    if caller.role not in STAFF or caller.institution_id is None:  # guarded by `require` and the token rules
        raise Forbidden(f"A {caller.role.value} reads no institution's reports.")
    return caller.institution_id


async def _answer(
    cache: ResponseCache,
    output: Output,
    key: Hashable,
    build: Callable[[AsyncConnection, Page | None], Awaitable[export.Report]],
) -> Response:
    """The report from the cache while the read models are unchanged; `key` names everything it depends on."""
    page = output.page
    page_key = None if page is None else (page.page, page.page_size)
    answer = await cache.answer((key, page_key), output.format, lambda conn: build(conn, page))
    return answer.response()


@router.get("/participants", responses=REPORT, response_class=Response)
async def participants(
    caller: Participants,
    cache: CacheDep,
    output: OutputDep,
    academic_year: Year = None,
    provider: Id = None,
    offering_id: Id = None,
    home_institution: Id = None,
    group_by: Annotated[str, Query(description="offering (default) or home_institution")] = "offering",
) -> Response:
    """Per offering: seats, held (awaiting, confirmed or with a result), counts by status, by home institution.

    `group_by=home_institution`: per home institution, its students in other institutions' courses.

    Counsellors, provider staff and finance see their institution's part: its own offerings with every
    participant, other offerings with its own students only.
    """
    filters = views.Filters(
        academic_year=academic_year, provider=provider, offering_id=offering_id, home_institution=home_institution
    )
    scope = institution_scope(caller)
    key = ("participants", filters, group_by, scope)
    return await _answer(
        cache, output, key, lambda conn, page: views.participants(conn, filters, group_by, page, scope=scope)
    )


@router.get("/completions", responses=REPORT, response_class=Response)
async def completions(
    caller: Completions,
    cache: CacheDep,
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
    """Passed, failed, interrupted, completion rate (passed / results) and credits earned.

    Aggregate counts only, no student. Partners and the network admin see the whole network;
    counsellors, provider staff and finance the enrolments their institution is provider or home of.
    """
    filters = views.Filters(
        academic_year=academic_year,
        provider=provider,
        offering_id=offering_id,
        home_institution=home_institution,
        subject=subject,
    )
    scope = institution_scope(caller)
    key = ("completions", filters, group_by, scope)
    return await _answer(
        cache, output, key, lambda conn, page: views.completions(conn, filters, group_by, page, scope=scope)
    )


@router.get("/billing", responses=REPORT, response_class=Response)
async def billing(
    caller: Billing,
    cache: CacheDep,
    output: OutputDep,
    academic_year: Year = None,
    institution: Id = None,
    period_start: Annotated[date | None, Query(description="invoices and credit notes issued on or after")] = None,
    period_end: Annotated[date | None, Query(description="invoices and credit notes issued on or before")] = None,
) -> Response:
    """Per institution, owed to it (as provider) and by it (as home): committed, chargeable, invoiced,
    credited, voided. Money as exact decimal strings.

    Finance staff see their own institution's line only (`institution=` another one: no line).
    """
    filters = views.Filters(academic_year=academic_year)
    scope = institution_scope(caller)
    key = ("billing", filters, institution, period_start, period_end, scope)
    return await _answer(
        cache,
        output,
        key,
        lambda conn, page: views.billing(conn, filters, institution, period_start, period_end, page, scope=scope),
    )


@router.get("/supply-demand", responses=REPORT, response_class=Response)
async def supply_demand(
    _caller: SupplyDemand,
    cache: CacheDep,
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
    """Offerings, seats, requests, fill rate, waitlisted (unmet demand), offerings under their minimum.

    Aggregates over the whole network, the same for every role that may read it.
    """
    filters = views.Filters(
        academic_year=academic_year, subject=subject, level=level, region=region, provider=provider, period=period
    )
    key = ("supply-demand", filters, group_by)
    return await _answer(cache, output, key, lambda conn, page: views.supply_demand(conn, filters, group_by, page))


@router.get("/follow-up/{institution_id}", responses=HIDDEN_REPORT, response_class=Response)
async def follow_up(
    caller: FollowUp,
    institution_id: str,
    cache: CacheDep,
    output: OutputDep,
    academic_year: Year = None,
    provider: Id = None,
) -> Response:
    """A home institution's students with failed, interrupted or late-withdrawn enrolments, for counsellors.

    Students appear by pseudonymous `student_ref`; names come from `/api/enrolments/{enrolment_id}`.
    Personal data: only counsellors of that institution (and the network admin) see it; another
    institution's follow-up answers 404, whether or not that institution exists.
    """
    if not caller.acts_for(institution_id):
        raise NotFound(f"No follow-up report of institution {institution_id!r} is visible to you.")
    filters = views.Filters(academic_year=academic_year, provider=provider)
    key = ("follow-up", institution_id, filters)
    return await _answer(cache, output, key, lambda conn, page: views.follow_up(conn, institution_id, filters, page))
