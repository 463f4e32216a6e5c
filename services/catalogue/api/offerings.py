"""Routes: offerings — create, change, lifecycle (the provider's staff or the network admin), and the public
search (drafts only for their provider's staff and network admins)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue import domain, handlers, search, views
from services.catalogue.api.access import (
    OPTIONAL_TOKEN,
    WRITE_BY_ID_RESPONSES,
    MaybeCaller,
    ProviderStaff,
    check_provider,
    draft_providers,
    sees_drafts_of,
)
from services.catalogue.api.common import IdempotencyKey, audited, create_once
from services.catalogue.api.models import CancelBody, Language, OfferingCreate, OfferingPatch, OfferingRead, SearchPage
from services.catalogue.search.cache import generation_read, repeat_key
from shared.auth import Principal
from shared.errors import Invalid, NotFound
from shared.http import PageDep, correlation_id, problem_responses
from shared.service import EngineDep

router = APIRouter(tags=["offerings"])
Facet = Annotated[str | None, Query(max_length=100)]
Price = Annotated[Decimal | None, Query(ge=0, max_digits=12, decimal_places=2, description="member price, e.g. 120.00")]


async def _check_owner(conn: AsyncConnection, caller: Principal, offering_id: str) -> None:
    """404 for no such offering, 403 unless the caller may change it."""
    check_provider(caller, await views.offering_provider(conn, offering_id))


@router.post(
    "/offerings", status_code=201, response_model=OfferingRead, responses=problem_responses(401, 403, 404, 409)
)
async def create_offering(
    body: OfferingCreate, request: Request, engine: EngineDep, caller: ProviderStaff, key: IdempotencyKey = None
) -> JSONResponse:
    """Create a draft offering of a course (its provider's staff, or the network admin); prices default from the
    year's pricing guideline."""
    plan = domain.OfferingPlan(**body.model_dump(include=set(domain.PLAN_FIELDS)))
    cmd = handlers.CreateOffering(
        course_id=body.course_id,
        plan=plan,
        member_price=body.member_price,
        external_price=body.external_price,
        free_cancellation_deadline=body.free_cancellation_deadline,
        external_id=body.external_id,
    )

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        check_provider(caller, (await views.get_course(conn, body.course_id))["provider_id"])
        return await handlers.create_offering(conn, cmd)

    return await create_once(request, engine, caller, key, body, work, OfferingRead, "offering.create")


@router.get("/offerings", response_model=SearchPage, responses=problem_responses(401), openapi_extra=OPTIONAL_TOKEN)
async def search_offerings(
    request: Request,
    engine: EngineDep,
    page: PageDep,
    caller: MaybeCaller,
    q: Annotated[str | None, Query(max_length=200, description="words in titles, descriptions, code")] = None,
    subject: Facet = None,
    level: Facet = None,
    language: Language | None = None,
    delivery_mode: domain.DeliveryMode | None = None,
    provider: Facet = None,
    region: Facet = None,
    academic_year: Annotated[str | None, Query(pattern=r"^\d{4}-\d{4}$", examples=["2026-2027"])] = None,
    status: domain.OfferingStatus | None = None,
    open_now: Annotated[bool, Query(description="published, and enrolment open today")] = False,
    min_price: Price = None,
    max_price: Price = None,
    sort: Annotated[
        Literal["start_date", "-start_date", "title", "price", "relevance"],
        Query(description="`relevance` ranks by the words of `q` (without `q`: by start date)"),
    ] = "start_date",
) -> Response:
    """Search the catalogue: words (prefixes, any case and accents) over titles and descriptions in fi/sv/en and
    the course code, with facets; paginated, with facet counts.

    Public: no token needed. Drafts are found only by their provider's own staff and by network admins."""
    if academic_year:
        domain.check_academic_year(academic_year)
    if min_price is not None and max_price is not None and min_price > max_price:
        raise Invalid(f"min_price {min_price} is above max_price {max_price}.")
    criteria = search.Criteria(
        q=q,
        subject=subject,
        level=level,
        language=language,
        delivery_mode=delivery_mode,
        provider=provider,
        region=region,
        academic_year=academic_year,
        status=status,
        open_on=date.today() if open_now else None,
        min_price=min_price,
        max_price=max_price,
        sort=sort,
        drafts_of=draft_providers(caller),
    )
    state = request.app.state
    async with engine.connect() as conn:
        body = await views.search_answer(
            conn,
            criteria,
            page=page.page,
            page_size=page.page_size,
            facets=getattr(state, "facet_cache", None),
            answers=getattr(state, "search_cache", None),
            items=getattr(state, "item_cache", None),
            # an anonymous answer, by its raw query string too (`search.cache.RepeatedSearchMiddleware`)
            also_as=repeat_key(request.scope["query_string"], date.today()) if caller is None else None,
            index_generation=generation_read(request.scope, engine),
        )
    # Already the JSON of SearchPage (response_model stays for the OpenAPI schema): no second validation.
    return Response(body, media_type="application/json")


@router.get(
    "/offerings/{offering_id}",
    response_model=OfferingRead,
    responses=problem_responses(401, 404),
    openapi_extra=OPTIONAL_TOKEN,
)
async def get_offering(offering_id: str, engine: EngineDep, caller: MaybeCaller) -> dict[str, Any]:
    """One offering (public); a draft only for its provider's staff and network admins (404 for others)."""
    async with engine.connect() as conn:
        data = await views.get_offering(conn, offering_id)
    if data["status"] == domain.OfferingStatus.DRAFT and not sees_drafts_of(caller, data["provider_id"]):
        raise NotFound(f"Offering {offering_id!r} does not exist.")
    return data


@router.patch("/offerings/{offering_id}", response_model=OfferingRead, responses=WRITE_BY_ID_RESPONSES)
async def update_offering(
    offering_id: str, body: OfferingPatch, request: Request, engine: EngineDep, caller: ProviderStaff
) -> dict[str, Any]:
    """Change dates, limits, prices or deadline; a published offering's change publishes `offering.updated`.

    Lowering `max_participants` below the seats already held is allowed: the enrolment service keeps
    those enrolments and takes no new ones until seats free up.
    """
    async with audited(engine, caller, "offering.update", offering_id) as conn:
        await _check_owner(conn, caller, offering_id)
        return await handlers.update_offering(conn, offering_id, body.changes(), correlation_id(request))


@router.post("/offerings/{offering_id}/publish", response_model=OfferingRead, responses=WRITE_BY_ID_RESPONSES)
async def publish_offering(
    offering_id: str, request: Request, engine: EngineDep, caller: ProviderStaff
) -> dict[str, Any]:
    """Open a draft offering to enrolment; publishes `offering.published`."""
    async with audited(engine, caller, "offering.publish", offering_id) as conn:
        await _check_owner(conn, caller, offering_id)
        return await handlers.publish_offering(conn, offering_id, correlation_id(request))


@router.post("/offerings/{offering_id}/cancel", response_model=OfferingRead, responses=WRITE_BY_ID_RESPONSES)
async def cancel_offering(
    offering_id: str, request: Request, engine: EngineDep, caller: ProviderStaff, body: CancelBody | None = None
) -> dict[str, Any]:
    """Cancel a draft, published or closed offering; publishes `offering.cancelled` (enrolments are cancelled and
    commitments voided downstream). Cancelling twice answers 409."""
    reason = body.reason if body else None
    async with audited(engine, caller, "offering.cancel", offering_id) as conn:
        await _check_owner(conn, caller, offering_id)
        return await handlers.cancel_offering(conn, offering_id, reason, correlation_id(request))


@router.post("/offerings/{offering_id}/close", response_model=OfferingRead, responses=WRITE_BY_ID_RESPONSES)
async def close_offering(
    offering_id: str, request: Request, engine: EngineDep, caller: ProviderStaff
) -> dict[str, Any]:
    """Stop enrolment now (published → closed); publishes `offering.updated`."""
    async with audited(engine, caller, "offering.close", offering_id) as conn:
        await _check_owner(conn, caller, offering_id)
        return await handlers.close_offering(conn, offering_id, correlation_id(request))


@router.post("/offerings/{offering_id}/complete", response_model=OfferingRead, responses=WRITE_BY_ID_RESPONSES)
async def complete_offering(
    offering_id: str, request: Request, engine: EngineDep, caller: ProviderStaff
) -> dict[str, Any]:
    """Mark the run finished (published/closed → completed); publishes `offering.updated`."""
    async with audited(engine, caller, "offering.complete", offering_id) as conn:
        await _check_owner(conn, caller, offering_id)
        return await handlers.complete_offering(conn, offering_id, correlation_id(request))
