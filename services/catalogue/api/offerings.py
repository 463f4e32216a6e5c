"""Routes: offerings — create, change, lifecycle, and the public search."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from services.catalogue import domain, handlers, search, views
from services.catalogue.api.common import IdempotencyKey, PageDep, create_once
from services.catalogue.api.models import CancelBody, Language, OfferingCreate, OfferingPatch, OfferingRead, SearchPage
from shared.errors import Invalid
from shared.http import correlation_id
from shared.service import EngineDep

router = APIRouter(tags=["offerings"])
Facet = Annotated[str | None, Query(max_length=100)]
Price = Annotated[Decimal | None, Query(ge=0, max_digits=12, decimal_places=2, description="member price, e.g. 120.00")]


@router.post("/offerings", status_code=201, response_model=OfferingRead)
async def create_offering(
    body: OfferingCreate, request: Request, engine: EngineDep, key: IdempotencyKey = None
) -> JSONResponse:
    """Create a draft offering of a course; prices default from the year's pricing guideline."""
    plan = domain.OfferingPlan(**body.model_dump(include=set(domain.PLAN_FIELDS)))
    cmd = handlers.CreateOffering(
        course_id=body.course_id,
        plan=plan,
        member_price=body.member_price,
        external_price=body.external_price,
        free_cancellation_deadline=body.free_cancellation_deadline,
        external_id=body.external_id,
    )
    return await create_once(request, engine, key, body, lambda conn: handlers.create_offering(conn, cmd), OfferingRead)


@router.get("/offerings", response_model=SearchPage)
async def search_offerings(
    request: Request,
    engine: EngineDep,
    page: PageDep,
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
) -> dict[str, Any]:
    """Search the catalogue: words (prefixes, any case and accents) over titles and descriptions in fi/sv/en and
    the course code, with facets; paginated, with facet counts."""
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
    )
    async with engine.connect() as conn:
        cache = getattr(request.app.state, "facet_cache", None)
        found = await search.search(conn, criteria, offset=page.offset, limit=page.page_size, cache=cache)
        items = await views.offerings_by_ids(conn, found.offering_ids)
    listing = {"total": found.total, "page": page.page, "page_size": page.page_size, "items": items}
    return {**listing, "facets": found.facets}


@router.get("/offerings/{offering_id}", response_model=OfferingRead)
async def get_offering(offering_id: str, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.get_offering(conn, offering_id)


@router.patch("/offerings/{offering_id}", response_model=OfferingRead)
async def update_offering(offering_id: str, body: OfferingPatch, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Change dates, limits, prices or deadline; a published offering's change publishes `offering.updated`.

    Lowering `max_participants` below the seats already held is allowed: the enrolment service keeps
    those enrolments and takes no new ones until seats free up.
    """
    async with engine.begin() as conn:
        return await handlers.update_offering(conn, offering_id, body.changes(), correlation_id(request))


@router.post("/offerings/{offering_id}/publish", response_model=OfferingRead)
async def publish_offering(offering_id: str, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Open a draft offering to enrolment; publishes `offering.published`."""
    async with engine.begin() as conn:
        return await handlers.publish_offering(conn, offering_id, correlation_id(request))


@router.post("/offerings/{offering_id}/cancel", response_model=OfferingRead)
async def cancel_offering(
    offering_id: str, request: Request, engine: EngineDep, body: CancelBody | None = None
) -> dict[str, Any]:
    """Cancel a draft, published or closed offering; publishes `offering.cancelled` (enrolments are cancelled and
    commitments voided downstream). Cancelling twice answers 409."""
    reason = body.reason if body else None
    async with engine.begin() as conn:
        return await handlers.cancel_offering(conn, offering_id, reason, correlation_id(request))


@router.post("/offerings/{offering_id}/close", response_model=OfferingRead)
async def close_offering(offering_id: str, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Stop enrolment now (published → closed); publishes `offering.updated`."""
    async with engine.begin() as conn:
        return await handlers.close_offering(conn, offering_id, correlation_id(request))


@router.post("/offerings/{offering_id}/complete", response_model=OfferingRead)
async def complete_offering(offering_id: str, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Mark the run finished (published/closed → completed); publishes `offering.updated`."""
    async with engine.begin() as conn:
        return await handlers.complete_offering(conn, offering_id, correlation_id(request))
